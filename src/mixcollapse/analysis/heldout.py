"""Measurements on held-out test data: calibration (Section 2.5, Appendix C) and Figure 4 made measurable.

``measure_calibration`` streams the test set once into a ``CalibrationAccumulator`` (ECE and MCE
with Appendix C's 15 bins, the reliability diagram), with accuracy and loss.

``measure_mixed_pairs`` streams mixed test pairs x = lam x_a + (1 - lam) x_b through the network
and records, per lambda bin, the mean top-1 confidence and the misclassification rate against
the pair's dominant class (``ConfidenceByLambdaAccumulator``). Figure 4's argument says both
move together as lambda nears 0.5: the feature travels along the channel towards the decision
boundary, so confidence drops and errors rise, which is how mixup calibrates. Only logits are
needed, so nothing is written to disk. Different-class and same-class pairs are kept apart:
the argument is about different-class pairs (same-class mixtures keep a one-hot target).

Both put the network in eval mode and restore its mode on return: pass the network in the
batch-norm state the measurement is about (see docs/analysis.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mixcollapse.metrics.calibration import ECE_BINS, CalibrationAccumulator, ConfidenceByLambdaAccumulator
from mixcollapse.mixup import MixedPairImages, PairSet, make_pairs
from mixcollapse.progress import progress_bar

LAMBDA_BINS = 10


@torch.no_grad()
def measure_calibration(
    net: nn.Module,
    dataset,
    num_classes: int,
    *,
    n_bins: int = ECE_BINS,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    num_workers: int = 0,
    progress: bool = False,
) -> dict:
    """ECE, MCE, reliability diagram, accuracy and cross-entropy of ``net`` on ``dataset`` (one pass).

    Keys: ece, mce, n_bins, num_samples, accuracy, loss, and the diagram: bin_edges, bin_centers,
    accuracy_by_bin, confidence_by_bin, counts (numpy; NaN in empty bins).
    """
    device = torch.device(device)
    was_training = net.training
    net.eval()
    acc = CalibrationAccumulator(n_bins)
    correct, loss, n = 0, 0.0, 0
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    try:
        for x, y in progress_bar(loader, "test calibration", progress):
            y = torch.as_tensor(y).to(device)
            z = net.classifier(net.features(x.to(device))).float()  # (B, C)
            acc.accumulate(z, y)
            correct += int((z.argmax(1) == y).sum())
            loss += float(F.cross_entropy(z.double(), y, reduction="sum"))
            n += len(y)
    finally:
        net.train(was_training)
    if n == 0:
        raise ValueError("the test set is empty")
    out = acc.compute()
    return {
        "ece": out["ece"],
        "mce": out["mce"],
        "n_bins": n_bins,
        "num_samples": out["num_samples"],
        "accuracy": correct / n,
        "loss": loss / n,
        "bin_edges": out["bin_edges"],
        "bin_centers": out["bin_centers"],
        "accuracy_by_bin": out["accuracy"],
        "confidence_by_bin": out["confidence"],
        "counts": out["counts"],
    }


def pairs_per_class_pair_for(num_pairs: int, num_classes: int) -> int:
    """Pairs per unordered class pair (same-class included) so that all classes give >= num_pairs pairs."""
    n_class_pairs = num_classes * (num_classes + 1) // 2
    return max(1, -(-num_pairs // n_class_pairs))


def make_test_pairs(
    labels: np.ndarray,
    num_pairs: int,
    *,
    lam_mode: str = "beta",
    alpha: float = 1.0,
    grid_size: int = 11,
    seed: int = 0,
    classes: Sequence[int] | None = None,
) -> PairSet:
    """Mixup pairs of test images over all classes present in ``labels`` (or ``classes``), about num_pairs.

    All classes, not the three plotted ones: calibration is a property of the whole classifier.
    lambda as in ``make_pairs`` (the training distribution; Beta(1, 1) for a baseline).
    """
    labels = np.asarray(labels)
    present = sorted(int(c) for c in np.unique(labels)) if classes is None else list(classes)
    per = pairs_per_class_pair_for(num_pairs, len(present))
    return make_pairs(labels, present, per, lam_mode, alpha, grid_size, seed)


@torch.no_grad()
def measure_mixed_pairs(
    net: nn.Module,
    dataset,
    pairs: PairSet,
    *,
    mix: Callable | None = None,
    n_bins: int = LAMBDA_BINS,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    num_workers: int = 0,
    progress: bool = False,
) -> dict:
    """Confidence and misclassification against lambda of mixed pairs of ``dataset`` images (Figure 4).

    Returns {"num_pairs", "n_bins", "different_class": {...}, "same_class": {...}}, each group with
    ConfidenceByLambdaAccumulator's keys (bin_edges, bin_centers, counts, confidence, error_rate,
    target_confidence, mean_confidence, error_rate_overall), or None for a group without pairs. ``mix`` turns a
    pair into an image (a mixing method's ``pair_images``; default: mixup's blend).
    """
    device = torch.device(device)
    was_training = net.training
    net.eval()
    groups = {name: ConfidenceByLambdaAccumulator(n_bins) for name in ("different_class", "same_class")}
    seen = {"different_class": 0, "same_class": 0}
    loader = torch.utils.data.DataLoader(
        MixedPairImages(dataset, pairs, mix), batch_size=batch_size, shuffle=False, num_workers=num_workers
    )
    try:
        for x, idx in progress_bar(loader, "mixed test pairs", progress):
            probs = torch.softmax(net.classifier(net.features(x.to(device))).double(), dim=1)  # (B, C)
            sl = slice(int(idx[0]), int(idx[-1]) + 1)  # the loader keeps the pairs' order
            lam, a, b = (
                torch.from_numpy(np.asarray(v[sl])).to(device) for v in (pairs.lam, pairs.class_a, pairs.class_b)
            )
            same = a == b
            for name, mask in (("different_class", ~same), ("same_class", same)):
                k = int(mask.sum())
                if k == len(same):
                    groups[name].accumulate(lam, probs, a, b)
                elif k:
                    groups[name].accumulate(lam[mask], probs[mask], a[mask], b[mask])
                seen[name] += k
    finally:
        net.train(was_training)
    out: dict = {"num_pairs": len(pairs), "n_bins": n_bins}
    for name, acc in groups.items():
        out[name] = acc.compute() if seen[name] else None
    return out
