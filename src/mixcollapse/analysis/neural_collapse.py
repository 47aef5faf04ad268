"""Neural collapse of a network on its unmixed training data: the two streaming passes behind NC1-NC4.

Papyan, Han & Donoho (PNAS 2020), measured as in ``collapse.py``. Pass 1 runs the network once
over the dataset, feeds the class means (``MeanAccumulator``) and writes each batch's features,
logits and labels to a scratch file; pass 2 reads that file back in chunks into the within-class
covariance and the nearest-class-centre agreement (``CovarianceAccumulator``), which both need
the finished means. So the network runs once, and memory is O(C d + d^2 + one batch) whatever
the number of samples (the scratch file is read with plain reads, not memory-mapped).

The class means double as the class centres of the channel position in the mixup configuration
(``ConfigurationAccumulator(centres=...)``).

Batch norm: pass the network in the state the measurement is about; ``measure_neural_collapse``
puts it in eval mode for the passes and restores its mode afterwards (see docs/analysis.md for which
statistics it holds: the recalibrated copy, or the stored ones).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from mixcollapse.metrics.collapse import CovarianceAccumulator, MeanAccumulator, nc_metrics
from mixcollapse.progress import progress_bar


@dataclass
class NeuralCollapse:
    """NC1-NC4 of one network on one dataset, with the class means that produced them."""

    metrics: dict  # nc_metrics' keys (nc1, nc2_*, nc3, nc4_agreement, w_*), plus accuracy
    means: Tensor  # (C, d) float64 class means of the features (zero rows for absent classes)
    counts: Tensor  # (C,) int64 samples per class
    global_mean: Tensor  # (d,) float64


def _loader(dataset, batch_size: int, num_workers: int) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)


@torch.no_grad()
def measure_neural_collapse(
    net: nn.Module,
    dataset,
    num_classes: int,
    *,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    num_workers: int = 0,
    scratch_dir: str | Path | None = None,
    progress: bool = False,
) -> NeuralCollapse:
    """NC1-NC4 of ``net`` (``features(x)``, ``classifier``) on ``dataset`` of unmixed ``(x, y)`` samples.

    Two streaming passes (module docstring): one forward pass, then a re-read of its features
    from a scratch file in ``scratch_dir`` (default: the system's temporary directory), deleted
    afterwards. ``net`` runs in eval mode; its mode is restored on return.
    """
    device = torch.device(device)
    was_training = net.training
    net.eval()
    W = net.classifier.weight.detach()
    means_acc = MeanAccumulator(num_classes)
    correct = 0
    sizes: list[int] = []
    d = None
    try:
        with tempfile.TemporaryDirectory(dir=scratch_dir, prefix="mixcollapse-nc-") as tmp:
            scratch = Path(tmp) / "unmixed.bin"
            with open(scratch, "wb") as f:
                for x, y in progress_bar(_loader(dataset, batch_size, num_workers), "NC pass 1", progress):
                    y = torch.as_tensor(y).to(device)
                    h = net.features(x.to(device))  # (B, d)
                    z = net.classifier(h)  # (B, C)
                    means_acc.accumulate(h, y)
                    correct += int((z.argmax(1) == y).sum())
                    d = h.shape[1]
                    # One record per batch: features and logits (float32), labels (int64).
                    f.write(h.float().cpu().numpy().tobytes())
                    f.write(z.float().cpu().numpy().tobytes())
                    f.write(y.cpu().numpy().astype(np.int64).tobytes())
                    sizes.append(len(y))
            if not sizes:
                raise ValueError("the dataset for the neural-collapse measurement is empty")
            means, counts, global_mean = means_acc.compute()
            cov_acc = CovarianceAccumulator(means, counts)
            with open(scratch, "rb") as f:
                for B in sizes:
                    h = np.fromfile(f, dtype=np.float32, count=B * d).reshape(B, d)
                    z = np.fromfile(f, dtype=np.float32, count=B * num_classes).reshape(B, num_classes)
                    y = np.fromfile(f, dtype=np.int64, count=B)
                    dev = means.device
                    cov_acc.accumulate(
                        torch.from_numpy(h).to(dev), torch.from_numpy(y).to(dev), torch.from_numpy(z).to(dev)
                    )
    finally:
        net.train(was_training)
    cov = cov_acc.compute()
    metrics = nc_metrics(means, counts, cov["sigma_w"], W, nc4_agreement=cov["nc4_agreement"])
    metrics["accuracy"] = correct / int(counts.sum())
    return NeuralCollapse(metrics=metrics, means=means, counts=counts, global_mean=global_mean)
