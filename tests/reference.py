"""Independent references the tests hold the toolkit to: plain, all-in-memory, slow on purpose.

Each is written apart from the streaming code it checks (per-sample loops, dense matrices, the
torchmetrics functions themselves), so an error in the toolkit cannot hide in the reference.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torchmetrics.functional.classification import multiclass_calibration_error

from mixcollapse.analysis.configuration import _CHAN_ROWS, _DIFF_ROWS, _SAME_ROWS, _finalize, lambda_bin_index
from mixcollapse.experiments.sweep import SWEEP_FILE
from mixcollapse.metrics.calibration import CalibrationAccumulator, ConfidenceByLambdaAccumulator
from mixcollapse.metrics.collapse import NC1_RTOL

F64 = torch.float64


def _probabilities(scores: Tensor, from_logits: bool) -> Tensor:
    """Softmax of logits in float64, or the given probabilities as float64."""
    scores = scores.detach().to(F64)
    return torch.softmax(scores, dim=1) if from_logits else scores


def configuration_metrics_dense(
    H: Tensor,
    logits: Tensor | None,
    lam: Tensor,
    class_a: Tensor,
    class_b: Tensor,
    same: Tensor,
    W: Tensor,
    b: Tensor | None = None,
    *,
    centres: Tensor | None = None,
    H_opt: Tensor | None = None,
    n_lambda_bins: int = 20,
    position_range: tuple[float, float] = (-0.5, 1.5),
    n_position_bins: int = 40,
) -> dict:
    """All-in-memory configuration measures of N mixup pairs; the tests' reference for the accumulator.

    A Python loop over samples (slow): for real data feed ``ConfigurationAccumulator`` instead.

    Keys: those of ``ConfigurationAccumulator.compute``.
    """
    W = W.detach().to(F64)
    dev = W.device
    H = H.detach().to(dev, F64)
    if logits is None:
        logits = H @ W.T + (0.0 if b is None else b.detach().to(dev, F64))
    z = logits.detach().to(dev, F64)
    lam = lam.detach().to(dev, F64)
    a, bb = class_a.to(dev, torch.long), class_b.to(dev, torch.long)
    same = same.to(dev, torch.bool)
    C = W.shape[0]
    L = n_lambda_bins
    idx = lambda_bin_index(lam, L)

    # Straightforward per-sample loops over the masked subsets, independent of the streaming code.
    same_sums = np.zeros((len(_SAME_ROWS), L))
    class_sums = torch.zeros_like(W)
    class_counts = torch.zeros(C, dtype=F64, device=dev)
    for i in torch.nonzero(same).flatten().tolist():
        h, w = H[i], W[a[i]]
        cos = float(h @ w / (h.norm() * w.norm()))
        nrm = float(h.norm())
        same_sums[:, idx[i]] += [1.0, cos, cos**2, nrm, nrm**2]
        class_sums[a[i]] += h
        class_counts[a[i]] += 1

    diff_sums = np.zeros((len(_DIFF_ROWS), L))
    chan_sums = np.zeros((len(_CHAN_ROWS), L)) if centres is not None else None
    hist = np.zeros(n_position_bins + 2) if centres is not None else None
    P = torch.softmax(z, dim=1)
    for i in torch.nonzero(~same).flatten().tolist():
        ai, bi, li = int(a[i]), int(bb[i]), float(lam[i])
        others = [j for j in range(C) if j not in (ai, bi)]
        zo = z[i, others] if others else torch.zeros(1, dtype=F64, device=dev)
        std_o = float(zo.std(correction=0)) if others else 0.0
        gap = float(max(z[i, ai], z[i, bi]) - zo.mean())
        p_a = float(P[i, ai])
        s_pos = float(z[i, ai] - z[i, bi] + 1.0) / 2.0
        diff_sums[:, idx[i]] += [
            1.0,
            li,
            p_a,
            p_a**2,
            abs(p_a - li),
            p_a + float(P[i, bi]),
            std_o,
            gap,
            abs(s_pos - li),
        ]
        if centres is not None:
            c_a, c_b = centres[ai].to(dev, F64), centres[bi].to(dev, F64)
            seg = c_a - c_b
            t = float((H[i] - c_b) @ seg / (seg @ seg))
            off = float((H[i] - c_b - t * seg).norm() / seg.norm())
            if math.isfinite(t) and math.isfinite(off):
                ends = float(0 <= t <= 0.2) + float(0.8 <= t <= 1)
                chan_sums[:, idx[i]] += [1.0, t, t**2, abs(t - li), off, float(0.4 <= t <= 0.6), ends]
                lo, hi = position_range
                k = math.floor((t - lo) / (hi - lo) * n_position_bins)
                hist[min(max(k, -1), n_position_bins) + 1] += 1

    ufm = np.zeros(4)
    if H_opt is not None:
        Ho = H_opt.detach().to(dev, F64)
        ufm[:] = [float((H * Ho).sum()), float((Ho * Ho).sum()), float((H * H).sum()), H.shape[0]]
    return _finalize(
        same_sums, diff_sums, chan_sums, hist, position_range, ufm, class_sums, class_counts, num_classes=C
    )


def nc_metrics_dense(H: Tensor, y: Tensor, logits: Tensor, W: Tensor, rtol: float = NC1_RTOL) -> dict[str, float]:
    """All-in-memory reference for ``nc_metrics`` on features H (N, d), labels y (N,), logits (N, C)."""
    H = H.detach().to(F64)
    y = y.to(H.device, torch.long)
    W = W.detach().to(H.device, F64)
    classes = [c for c in range(W.shape[0]) if bool((y == c).any())]
    C = len(classes)
    M = torch.stack([H[y == c].mean(0) for c in classes])  # (C, d)
    mu_G = H.mean(0)
    Mc = M - mu_G
    # Within-class covariance over all samples; between-class covariance over classes.
    centre_of = torch.zeros(W.shape[0], H.shape[1], dtype=F64, device=H.device)
    centre_of[classes] = M
    D = H - centre_of[y]
    sigma_w = D.T @ D / H.shape[0]
    sigma_b = sum(torch.outer(m, m) for m in Mc) / C
    nc1 = float(torch.trace(sigma_w @ torch.linalg.pinv(sigma_b, rtol=rtol, hermitian=True)) / C)

    norms = Mc.norm(dim=1)
    cos = torch.tensor(
        [float(Mc[i] @ Mc[j] / (norms[i] * norms[j])) for i in range(C) for j in range(C) if i != j], dtype=F64
    )
    Wp = W[classes]
    dist = torch.cdist(H, M)  # (N, C)
    ncc = torch.tensor(classes, device=H.device)[dist.argmin(1)]
    return {
        "num_classes": C,
        "num_samples": H.shape[0],
        "nc1": nc1,
        "nc2_norm_cv": float(norms.std(correction=0) / norms.mean()),
        "nc2_cos_mean": float(cos.mean()),
        "nc2_cos_std": float(cos.std(correction=0)),
        "nc2_max_angle": float((cos + 1.0 / (C - 1)).abs().mean()),
        "nc3": float((Wp / Wp.norm() - Mc / Mc.norm()).norm()),
        "nc4_agreement": float((ncc == logits.to(H.device).argmax(1)).to(F64).mean()),
    }


def printed_theorem_inner_product(
    K: np.ndarray | float, num_classes: int, multiplier: float, weight_decay: float, sign: float = 1.0
) -> np.ndarray:
    """Theorem 3.1's formula exactly as printed in the main text (kept to show that it does not hold)."""
    C, m, lam_h = num_classes, multiplier, weight_decay
    K = np.asarray(K, dtype=np.float64)
    Q = C * m**2 / ((1 - C) * K * lam_h)
    with np.errstate(invalid="ignore", over="ignore"):
        return K + np.log(2 - C + Q + sign * 0.5 * np.sqrt((C - 2 - Q) ** 2 - 4 * np.exp(-C * K)))


def read_sweep(sweep_dir: str | Path) -> dict:
    """The ``sweep.json`` of a sweep directory."""
    path = Path(sweep_dir) / SWEEP_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {sweep_dir} is not a sweep directory")
    return json.loads(path.read_text())


def expected_calibration_error(scores: Tensor, targets: Tensor, n_bins: int = 15, *, from_logits: bool = True) -> float:
    """ECE (Appendix C; Pakdaman Naeini et al. 2015) of logits or probabilities (N, C), via torchmetrics.

    Probabilities are formed here so torchmetrics never has to guess whether its input is logits
    (it takes any input inside [0, 1] for probabilities).
    """
    probs = _probabilities(scores, from_logits)
    ce = multiclass_calibration_error(probs, targets.to(probs.device), probs.shape[1], n_bins=n_bins, norm="l1")
    return float(ce)


def max_calibration_error(scores: Tensor, targets: Tensor, n_bins: int = 15, *, from_logits: bool = True) -> float:
    """MCE: the largest |acc - conf| over bins (norm='max' in torchmetrics); empty bins count as 0."""
    probs = _probabilities(scores, from_logits)
    ce = multiclass_calibration_error(probs, targets.to(probs.device), probs.shape[1], n_bins=n_bins, norm="max")
    return float(ce)


def reliability_diagram_data(probs: Tensor, targets: Tensor, n_bins: int = 15) -> dict:
    """Per-bin accuracy, mean confidence and counts of probabilities (N, C) for a reliability diagram.

    Hand-written because torchmetrics returns only the scalar error, not its bins. Keys: bin_edges
    (n_bins+1,), bin_centers, accuracy, confidence (NaN for empty bins), counts (numpy arrays), and
    ece, mce, num_samples. Bins follow torchmetrics' convention (module docstring).
    """
    acc = CalibrationAccumulator(n_bins, from_logits=False)
    acc.accumulate(probs, targets)
    return acc.compute()


def confidence_by_lambda(lam: Tensor, probs: Tensor, class_a: Tensor, class_b: Tensor, n_bins: int = 10) -> dict:
    """Per lambda-bin mean confidence, misclassification rate and counts of mixed pairs (Figure 4).

    See ``ConfidenceByLambdaAccumulator`` for the definition of a correct prediction and the keys.
    """
    acc = ConfidenceByLambdaAccumulator(n_bins)
    acc.accumulate(lam, probs, class_a, class_b)
    return acc.compute()
