"""Calibration: ECE/MCE (Section 2.5, Table 2, Appendix C), reliability diagrams, Figure 4's argument.

ECE as Appendix C defines it (Pakdaman Naeini et al. 2015): the top-1 softmax confidences are
gathered into M equal-width bins, bin k = [k/M, (k+1)/M) for k < M - 1 and the last bin
[(M-1)/M, 1] closed, so a confidence of exactly 1.0 counts in the last bin; ECE = sum_m |B_m|/n
|acc(B_m) - conf(B_m)|, MCE the largest gap. Everything is float64. (torchmetrics'
``multiclass_calibration_error`` differs in two ways: it bins float32 confidences and gives a
confidence of exactly 1.0 a bin of its own, which float32 softmax fills for any top probability
above 1 - 3e-8; on saturated networks the two ECEs differ. The tests hold this module to a hand
computation of Appendix C, and to torchmetrics where the conventions agree.)
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

F64 = torch.float64


ECE_BINS = 15  # the toolkit's ECE everywhere: training, analysis, Table 2 (Appendix C)


def confidence_bins(conf: Tensor, n_bins: int) -> Tensor:
    """Appendix C's bin of each confidence in [0, 1]: floor(conf M), a confidence of 1.0 in the last bin."""
    return (conf.to(F64) * n_bins).floor().long().clamp_(0, n_bins - 1)


class CalibrationAccumulator:
    """Streams (scores, targets) batches into per-bin counts, confidence sums and correct sums (float64).

    ECE, MCE and the reliability diagram come from these O(n_bins) sums (module docstring), so memory
    does not grow with the number of samples.
    """

    def __init__(self, n_bins: int = ECE_BINS, *, from_logits: bool = True) -> None:
        self.n_bins = int(n_bins)
        self.from_logits = from_logits
        self.count: Tensor | None = None  # (n_bins,) float64
        self.conf_sum: Tensor | None = None
        self.correct_sum: Tensor | None = None

    @torch.no_grad()
    def accumulate(self, scores: Tensor, targets: Tensor) -> None:
        """Add logits (or probabilities if from_logits=False) (B, C) and integer targets (B,)."""
        scores = scores.detach().to(F64)
        probs = torch.softmax(scores, dim=1) if self.from_logits else scores
        if self.count is None:
            self.count = torch.zeros(self.n_bins, dtype=F64, device=probs.device)
            self.conf_sum = torch.zeros_like(self.count)
            self.correct_sum = torch.zeros_like(self.count)
        conf, pred = probs.max(dim=1)
        correct = (pred == targets.to(probs.device)).to(F64)
        idx = confidence_bins(conf, self.n_bins)
        self.count.index_add_(0, idx, torch.ones_like(conf))
        self.conf_sum.index_add_(0, idx, conf)
        self.correct_sum.index_add_(0, idx, correct)

    def compute(self) -> dict:
        """ece, mce, num_samples and the reliability diagram: bin_edges, bin_centers, accuracy, confidence, counts."""
        if self.count is None:
            raise RuntimeError("CalibrationAccumulator.compute() called before any accumulate()")
        n = self.count.sum()
        gap = torch.where(self.count > 0, (self.correct_sum - self.conf_sum).abs() / self.count.clamp_min(1), 0.0)
        count_np = self.count.cpu().numpy()
        with np.errstate(invalid="ignore", divide="ignore"):
            accuracy = np.where(count_np > 0, self.correct_sum.cpu().numpy() / count_np, np.nan)
            confidence = np.where(count_np > 0, self.conf_sum.cpu().numpy() / count_np, np.nan)
        edges = np.linspace(0.0, 1.0, self.n_bins + 1)
        return {
            "ece": float((gap * self.count).sum() / n),
            "mce": float(gap.max()),
            "num_samples": int(n),
            "bin_edges": edges,
            "bin_centers": (edges[:-1] + edges[1:]) / 2,
            "accuracy": accuracy,
            "confidence": confidence,
            "counts": count_np.astype(np.int64),
        }


class ConfidenceByLambdaAccumulator:
    """Figure 4 made measurable: confidence and misclassification of mixed pairs per lambda bin.

    A mixed example x = lam x_a + (1 - lam) x_b counts as correct when the network predicts its
    dominant class: class_a if lam > 0.5, class_b if lam < 0.5; at lam == 0.5 exactly either
    class counts as correct. Same-class pairs (class_a == class_b) are correct when predicting that
    class. Lambda bins are equal-width on [0, 1], [k/M, (k+1)/M), the last one closed at 1.
    """

    def __init__(self, n_bins: int = 10) -> None:
        self.n_bins = int(n_bins)
        self.sums: Tensor | None = None  # (4, n_bins): count, confidence, wrong, target confidence

    @torch.no_grad()
    def accumulate(self, lam: Tensor, probs: Tensor, class_a: Tensor, class_b: Tensor) -> None:
        """Add lam (B,), softmax probabilities (B, C) and the pair's classes (B,), (B,)."""
        probs = probs.detach().to(F64)
        dev = probs.device
        lam = lam.detach().to(dev, F64)
        a, b = class_a.to(dev, torch.long), class_b.to(dev, torch.long)
        if self.sums is None:
            self.sums = torch.zeros(4, self.n_bins, dtype=F64, device=dev)
        conf, pred = probs.max(dim=1)
        correct = torch.where(lam > 0.5, pred == a, torch.where(lam < 0.5, pred == b, (pred == a) | (pred == b)))
        idx = (lam * self.n_bins).long().clamp(0, self.n_bins - 1)
        vals = torch.stack([torch.ones_like(lam), conf, (~correct).to(F64), torch.maximum(lam, 1 - lam)])  # (4, B)
        self.sums.index_add_(1, idx, vals)

    def compute(self) -> dict:
        """bin_edges, bin_centers, counts, confidence (mean top-1 prob), error_rate, target_confidence.

        target_confidence is the mean of max(lam, 1 - lam), the top probability of the mixup target
        itself (the "gauge" of Section 2.5); all per-bin arrays are numpy, NaN where a bin is empty.
        """
        if self.sums is None:
            raise RuntimeError("ConfidenceByLambdaAccumulator.compute() called before any accumulate()")
        s = self.sums.cpu().numpy()
        count = s[0]
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(count > 0, s / count, np.nan)
        edges = np.linspace(0.0, 1.0, self.n_bins + 1)
        n = count.sum()
        return {
            "bin_edges": edges,
            "bin_centers": (edges[:-1] + edges[1:]) / 2,
            "counts": count.astype(np.int64),
            "confidence": mean[1],
            "error_rate": mean[2],
            "target_confidence": mean[3],
            "mean_confidence": float(s[1].sum() / n) if n > 0 else math.nan,
            "error_rate_overall": float(s[2].sum() / n) if n > 0 else math.nan,
        }
