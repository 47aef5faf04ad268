"""Calibration: ECE/MCE (Section 2.5, Table 2, Appendix C), reliability diagrams, Figure 4's argument.

The toolkit's ECE is torchmetrics' ``multiclass_calibration_error`` (equal-width bins on the top-1
softmax probability, Appendix C's formula). ``CalibrationAccumulator`` streams the same per-bin
sums in O(n_bins) memory and reproduces torchmetrics' binning convention exactly:

* bin k holds confidences in [k/M, (k+1)/M) (left-closed, right-open; ``torch.bucketize(...,
  right=True) - 1``), with bin edges ``torch.linspace(0, 1, M+1)`` in float32;
* the confidence is rounded to float32 before binning (torchmetrics casts it with ``.float()``);
* a confidence of exactly 1.0 falls in an extra (M+1)-th bin [1, 1] of its own. Float32 softmax
  rounds any top probability above 1 - 3e-8 to 1.0, so confident networks fill this bin, and
  merging it into the last bin would change the ECE. Reliability diagrams (for drawing) show M bins
  with that extra bin merged into the last one, i.e. the last bin drawn is [1 - 1/M, 1].
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

F64 = torch.float64


class CalibrationAccumulator:
    """Streams (scores, targets) batches into per-bin counts, confidence sums and correct sums.

    ECE, MCE and the reliability diagram come from these O(n_bins) sums and equal torchmetrics'
    on the same inputs (its binning convention is reproduced; see the module docstring).
    """

    def __init__(self, n_bins: int = 15, *, from_logits: bool = True) -> None:
        self.n_bins = int(n_bins)
        self.from_logits = from_logits
        self.count: Tensor | None = None  # (n_bins + 1,) float64, last slot: confidence == 1.0
        self.conf_sum: Tensor | None = None
        self.correct_sum: Tensor | None = None
        self._edges32: Tensor | None = None

    @torch.no_grad()
    def accumulate(self, scores: Tensor, targets: Tensor) -> None:
        """Add logits (or probabilities if from_logits=False) (B, C) and integer targets (B,)."""
        scores = scores.detach().to(F64)
        probs = torch.softmax(scores, dim=1) if self.from_logits else scores
        if self.count is None:
            dev = probs.device
            self.count = torch.zeros(self.n_bins + 1, dtype=F64, device=dev)
            self.conf_sum = torch.zeros_like(self.count)
            self.correct_sum = torch.zeros_like(self.count)
            self._edges32 = torch.linspace(0, 1, self.n_bins + 1, dtype=torch.float32, device=dev)
        conf, pred = probs.max(dim=1)
        correct = (pred == targets.to(probs.device)).to(F64)
        idx = torch.bucketize(conf.float(), self._edges32, right=True) - 1  # torchmetrics' convention
        self.count.index_add_(0, idx, torch.ones_like(conf))
        self.conf_sum.index_add_(0, idx, conf)
        self.correct_sum.index_add_(0, idx, correct)

    def compute(self) -> dict:
        """ece, mce, num_samples and the reliability diagram: bin_edges, bin_centers, accuracy, confidence, counts."""
        if self.count is None:
            raise RuntimeError("CalibrationAccumulator.compute() called before any accumulate()")
        n = self.count.sum()
        nonempty = self.count > 0
        gap = torch.where(nonempty, (self.correct_sum - self.conf_sum).abs() / self.count.clamp_min(1), 0.0)
        ece = float((gap * self.count).sum() / n)
        mce = float(gap.max())
        # Drawn bins: merge the [1, 1] slot into the last bin.
        count = self.count[:-1].clone()
        conf = self.conf_sum[:-1].clone()
        correct = self.correct_sum[:-1].clone()
        count[-1] += self.count[-1]
        conf[-1] += self.conf_sum[-1]
        correct[-1] += self.correct_sum[-1]
        with np.errstate(invalid="ignore", divide="ignore"):
            count_np = count.cpu().numpy()
            accuracy = np.where(count_np > 0, correct.cpu().numpy() / count_np, np.nan)
            confidence = np.where(count_np > 0, conf.cpu().numpy() / count_np, np.nan)
        edges = np.linspace(0.0, 1.0, self.n_bins + 1)
        return {
            "ece": ece,
            "mce": mce,
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
