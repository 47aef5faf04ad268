"""The mixup configuration over mixup pairs: what Theorem 3.1 and Figures 1-2 say, made measurable.

A mixup pair is x = lam x_a + (1 - lam) x_b (lam is the weight of class_a); ``same`` marks
same-class pairs. Theorem 3.1 (ETF classifier) predicts:
* same-class features h = c w_a, independent of lam: cosine with w_a equal to 1, norm flat in lam;
* different-class features in span{w_a, w_b} with all other logits equal, flowing between the two
  vertices as lam moves (the "channel"), and mixup training pushes softmax p_a towards lam.

``ConfigurationAccumulator`` streams batches into per-lambda-bin sums (memory O(C d + bins),
independent of N) and its result equals a per-sample reference on the same data (tests/reference.py).
``ufm_distance`` compares measured features with the UFM optimum for the model's own classifier.

Definitions used below (per sample; z the logits, p = softmax(z), O = classes other than a, b):
* other-logit spread = Avg_i Std_{j in O}(z_ij) / Avg_i (max(z_ia, z_ib) - Avg_{j in O} z_ij), a
  ratio of means (scale-free, robust to samples whose gap is near 0); 0 exactly when every
  sample's other logits are equal (Theorem 3.1, K_lam). NaN for C < 3; identically 0 for C = 3.
* channel position t = <h - c_b, c_a - c_b> / ||c_a - c_b||^2, with c_k the given class centres
  (e.g. class means of unmixed training features, or ``same_class_means`` of an earlier run):
  t = 0 at c_b, 1 at c_a, and t = lam for linear interpolation of the centres (the MSE picture of
  Figure 2). off_channel_distance = ||h - (c_b + t (c_a - c_b))|| / ||c_a - c_b||.
* logit position s = (z_a - z_b + 1) / 2: where the logits sit between the two classes' one-hot
  targets (s = 1 at e_a, 0 at e_b, measured along e_a - e_b). An MSE-trained network regresses its
  logits onto the mixed target lam e_a + (1 - lam) e_b, so s = lam there (logit_position_mae =
  Avg |s - lam|); for cross-entropy the logits are unbounded and p_a is the measure instead.
* channel_middle_density_ratio = (different-class pairs with t in [0.4, 0.6]) / (the mean count of
  the two end fifths, t in [0, 0.2] and [0.8, 1]): 1 for points spread evenly along the segment
  (linear interpolation, as MSE gives), > 1 when they crowd the middle of the channel (Figure 1:
  "the density of different-class mixup points increases as lambda approaches 0.5").
* lambda bins: M equal-width bins, bin k = [k/M, (k+1)/M) (floor(lam M)), lam = 1 in the last.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

F64 = torch.float64

# Rows of the per-lambda-bin sums.
_SAME_ROWS = ("count", "cos", "cos_sq", "norm", "norm_sq")
_DIFF_ROWS = ("count", "lam", "p_a", "p_a_sq", "abs_err", "mass", "other_std", "other_gap", "logit_pos_err")
_CHAN_ROWS = ("count", "t", "t_sq", "abs_err", "off", "middle", "ends")


def lambda_bin_index(lam: Tensor, n_bins: int) -> Tensor:
    """Index of lam's equal-width bin on [0, 1]: floor(lam * n_bins), with lam = 1 in the last bin."""
    return (lam * n_bins).floor().long().clamp(0, n_bins - 1)


def _in(t: Tensor, lo: float, hi: float) -> Tensor:
    """1.0 where lo <= t <= hi, else 0.0."""
    return ((t >= lo) & (t <= hi)).to(t.dtype)


def ufm_distance(H: Tensor, H_opt: Tensor) -> float:
    """min_s ||H - s H_opt||_F / ||H||_F: distance to the UFM optimum after the best global rescaling.

    The scale s* = <H, H_opt> / ||H_opt||_F^2 has a closed form (least squares in one variable);
    scale-free in both arguments. H, H_opt (N, d) with matching rows.
    """
    return ufm_distance_stats(H, H_opt)["distance"]


def ufm_distance_stats(H: Tensor, H_opt: Tensor) -> dict[str, float]:
    """scale s*, distance (see ``ufm_distance``) and mean_sample_distance = Avg_i ||h_i - s* h*_i|| / ||h_i||."""
    H = H.detach().to(F64)
    H_opt = H_opt.detach().to(H.device, F64)
    s = (H * H_opt).sum() / (H_opt * H_opt).sum()
    R = H - s * H_opt
    per_sample = R.norm(dim=1) / H.norm(dim=1)
    out = torch.stack([s, R.norm() / H.norm(), per_sample.mean()]).tolist()
    return {"scale": out[0], "distance": out[1], "mean_sample_distance": out[2]}


def _per_sample(
    H: Tensor, logits: Tensor, lam: Tensor, a: Tensor, b: Tensor, W: Tensor, centres: Tensor | None
) -> dict[str, Tensor]:
    """Per-sample quantities (all (B,), float64), vectorized over the batch."""
    C = logits.shape[1]
    h_norm = H.norm(dim=1)
    w_a = W[a]  # (B, d)
    cos = (H * w_a).sum(1) / (h_norm * w_a.norm(dim=1)).clamp_min(torch.finfo(F64).tiny)
    p = torch.softmax(logits, dim=1)
    p_a = p.gather(1, a.unsqueeze(1)).squeeze(1)
    p_b = p.gather(1, b.unsqueeze(1)).squeeze(1)
    z_a = logits.gather(1, a.unsqueeze(1)).squeeze(1)
    z_b = logits.gather(1, b.unsqueeze(1)).squeeze(1)
    cols = torch.arange(C, device=H.device)
    other = (cols != a.unsqueeze(1)) & (cols != b.unsqueeze(1))  # (B, C)
    n_other = other.sum(1).clamp_min(1)
    z_o = torch.where(other, logits, 0.0)
    mean_o = z_o.sum(1) / n_other
    std_o = (torch.where(other, logits - mean_o.unsqueeze(1), 0.0) ** 2).sum(1).div(n_other).sqrt()
    out = {
        "norm": h_norm,
        "cos": cos,
        "p_a": p_a,
        "mass": p_a + p_b,
        "other_std": std_o,
        "other_gap": torch.maximum(z_a, z_b) - mean_o,
        "logit_position": (z_a - z_b + 1.0) / 2.0,
    }
    if centres is not None:
        c_a, c_b = centres[a], centres[b]
        D = c_a - c_b  # (B, d)
        D_sq = (D * D).sum(1)
        t = ((H - c_b) * D).sum(1) / D_sq
        out["t"] = t
        out["off"] = (H - c_b - t.unsqueeze(1) * D).norm(dim=1) / D_sq.sqrt()
    return out


class ConfigurationAccumulator:
    """Streams mixup-pair batches into the sums behind the configuration measures (module docstring).

    W (C, d) and optional bias b (C,) are the model's classifier (b is used only to form logits
    when a batch comes without them); centres (C, d), optional, enable the channel-position
    measures; position_range and n_position_bins fix the histogram of t (values outside are
    counted as under/overflow). Memory: O(C d + n_lambda_bins + n_position_bins).
    """

    def __init__(
        self,
        W: Tensor,
        b: Tensor | None = None,
        n_lambda_bins: int = 20,
        *,
        centres: Tensor | None = None,
        position_range: tuple[float, float] = (-0.5, 1.5),
        n_position_bins: int = 40,
    ) -> None:
        self.W = W.detach().to(F64)
        dev = self.W.device
        C, d = self.W.shape
        self.b = None if b is None else b.detach().to(dev, F64)
        self.centres = None if centres is None else centres.detach().to(dev, F64)
        self.n_lambda_bins = int(n_lambda_bins)
        self.position_range = (float(position_range[0]), float(position_range[1]))
        self.n_position_bins = int(n_position_bins)
        L = self.n_lambda_bins
        self.same = torch.zeros(len(_SAME_ROWS), L, dtype=F64, device=dev)
        self.diff = torch.zeros(len(_DIFF_ROWS), L, dtype=F64, device=dev)
        self.chan = torch.zeros(len(_CHAN_ROWS), L, dtype=F64, device=dev)
        self.hist = torch.zeros(self.n_position_bins + 2, dtype=F64, device=dev)  # [under, bins..., over]
        self.class_sums = torch.zeros(C, d, dtype=F64, device=dev)  # same-class feature sums
        self.class_counts = torch.zeros(C, dtype=F64, device=dev)
        self.ufm = torch.zeros(4, dtype=F64, device=dev)  # <H, H*>, ||H*||^2, ||H||^2, rows

    @torch.no_grad()
    def accumulate(
        self,
        H: Tensor,
        logits: Tensor | None,
        lam: Tensor,
        class_a: Tensor,
        class_b: Tensor,
        same: Tensor,
        *,
        H_opt: Tensor | None = None,
    ) -> None:
        """Add features H (B, d), logits (B, C) or None (then H W^T + b), lam, class_a, class_b, same (B,).

        H_opt (B, d), optional: the UFM-optimal features for these pairs (adds ufm_scale/ufm_distance).
        """
        dev = self.W.device
        H = H.detach().to(dev, F64)
        if logits is None:
            z = H @ self.W.T + (0.0 if self.b is None else self.b)
        else:
            z = logits.detach().to(dev, F64)
        lam = lam.detach().to(dev, F64)
        a, b = class_a.to(dev, torch.long), class_b.to(dev, torch.long)
        same = same.to(dev, torch.bool)
        diff = ~same
        q = _per_sample(H, z, lam, a, b, self.W, self.centres)
        idx = lambda_bin_index(lam, self.n_lambda_bins)
        one = torch.ones_like(lam)

        # torch.where, not multiplication by a mask: a NaN in the other group must not leak in.
        S = torch.stack([one, q["cos"], q["cos"] ** 2, q["norm"], q["norm"] ** 2])
        self.same.index_add_(1, idx, torch.where(same, S, 0.0))
        p, position = q["p_a"], (q["logit_position"] - lam).abs()
        D = torch.stack([one, lam, p, p**2, (p - lam).abs(), q["mass"], q["other_std"], q["other_gap"], position])
        self.diff.index_add_(1, idx, torch.where(diff, D, 0.0))
        self.class_sums.index_add_(0, a, torch.where(same.unsqueeze(1), H, 0.0))
        self.class_counts.index_add_(0, a, same.to(F64))

        if self.centres is not None:
            t = q["t"]
            ok = diff & torch.isfinite(t) & torch.isfinite(q["off"])
            ends = _in(t, 0.0, 0.2) + _in(t, 0.8, 1.0)
            T = torch.stack([one, t, t**2, (t - lam).abs(), q["off"], _in(t, 0.4, 0.6), ends])
            self.chan.index_add_(1, idx, torch.where(ok, T, 0.0))
            lo, hi = self.position_range
            k = ((t - lo) / (hi - lo) * self.n_position_bins).floor().nan_to_num(0.0)
            k = k.clamp(-1, self.n_position_bins).long() + 1  # 0: underflow, n+1: overflow
            self.hist.index_add_(0, k, ok.to(F64))

        if H_opt is not None:
            Ho = H_opt.detach().to(dev, F64)
            self.ufm += torch.stack([(H * Ho).sum(), (Ho * Ho).sum(), (H * H).sum(), one.sum()])

    def compute(self) -> dict:
        """The configuration measures.

        Keys (scalars are floats, curves numpy arrays over lambda bins, NaN for empty bins):
        lambda_bin_edges, lambda_bin_centers;
        same-class: same_count, same_cos_mean, same_cos_std (of cos(h, w_a)), same_norm_mean,
        same_counts_by_lambda, same_cos_by_lambda, same_norm_by_lambda, same_cos_lambda_spread (std
        over filled bins of the per-bin mean cosine), same_norm_lambda_cv (std / mean over filled bins
        of the per-bin mean norm ||h||);
        different-class: diff_count, pair_prob_mae = Avg |p_a - lam|, pair_mass = Avg (p_a + p_b),
        logit_position_mae = Avg |(z_a - z_b + 1) / 2 - lam| (the MSE measure),
        other_logit_spread (module docstring), diff_counts_by_lambda, lambda_mean_by_lambda,
        pair_prob_by_lambda, pair_prob_std_by_lambda;
        with centres: channel_count, channel_position_mean, channel_position_mae = Avg |t - lam|,
        off_channel_distance, channel_position_by_lambda, channel_position_std_by_lambda,
        position_hist_edges, position_hist_counts, position_hist_density (integrates to the fraction
        of samples inside position_range), position_underflow, position_overflow,
        channel_middle_density_ratio (module docstring);
        with H_opt: ufm_scale, ufm_distance (``ufm_distance`` over all pairs);
        same_class_means (C, d) tensor, NaN rows for classes without same-class pairs.
        """
        return _finalize(
            self.same.cpu().numpy(),
            self.diff.cpu().numpy(),
            self.chan.cpu().numpy() if self.centres is not None else None,
            self.hist.cpu().numpy() if self.centres is not None else None,
            self.position_range,
            self.ufm.cpu().numpy(),
            self.class_sums,
            self.class_counts,
            num_classes=self.W.shape[0],
        )


def _per_bin(sums: np.ndarray) -> np.ndarray:
    """Per-bin means: each row divided by the bin's count (row 0), NaN for empty bins."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(sums[0] > 0, sums / sums[0], np.nan)


def _pooled_std(s: float, s2: float, n: float) -> float:
    return math.sqrt(max(s2 / n - (s / n) ** 2, 0.0)) if n > 0 else math.nan


def _same_class_measures(same: np.ndarray) -> dict:
    """Same-class pairs: Theorem 3.1.1 says cos(h, w_a) = 1 and nothing depends on lam."""
    nan = math.nan
    n_s = same[0].sum()
    m = _per_bin(same)
    filled = same[0] > 0
    cos_bins, norm_bins = m[1][filled], m[3][filled]
    return {
        "same_count": int(n_s),
        "same_cos_mean": same[1].sum() / n_s if n_s > 0 else nan,
        "same_cos_std": _pooled_std(same[1].sum(), same[2].sum(), n_s),
        "same_norm_mean": same[3].sum() / n_s if n_s > 0 else nan,
        "same_counts_by_lambda": same[0].astype(np.int64),
        "same_cos_by_lambda": m[1],
        "same_norm_by_lambda": m[3],
        "same_cos_lambda_spread": float(cos_bins.std()) if filled.any() else nan,
        "same_norm_lambda_cv": float(norm_bins.std() / norm_bins.mean()) if filled.any() else nan,
    }


def _different_class_measures(diff: np.ndarray, num_classes: int) -> dict:
    """Different-class pairs: p_a against lam, mass on the pair, equality of the other logits."""
    nan = math.nan
    n_d = diff[0].sum()
    m = _per_bin(diff)
    with np.errstate(invalid="ignore", divide="ignore"):
        p_std = np.sqrt(np.maximum(m[3] - m[2] ** 2, 0.0))
    return {
        "diff_count": int(n_d),
        "pair_prob_mae": diff[4].sum() / n_d if n_d > 0 else nan,
        "pair_mass": diff[5].sum() / n_d if n_d > 0 else nan,
        "logit_position_mae": diff[8].sum() / n_d if n_d > 0 else nan,
        "other_logit_spread": diff[6].sum() / diff[7].sum() if n_d > 0 and num_classes >= 3 else nan,
        "diff_counts_by_lambda": diff[0].astype(np.int64),
        "lambda_mean_by_lambda": m[1],
        "pair_prob_by_lambda": m[2],
        "pair_prob_std_by_lambda": p_std,
    }


def _channel_measures(chan: np.ndarray, hist: np.ndarray, position_range: tuple[float, float]) -> dict:
    """Different-class pairs along the channel between the class centres: position t and its density."""
    nan = math.nan
    n_c = chan[0].sum()
    m = _per_bin(chan)
    with np.errstate(invalid="ignore", divide="ignore"):
        t_std = np.sqrt(np.maximum(m[2] - m[1] ** 2, 0.0))
    lo, hi = position_range
    n_pos = hist.shape[0] - 2
    total = hist.sum()
    return {
        "channel_count": int(n_c),
        "channel_position_mean": chan[1].sum() / n_c if n_c > 0 else nan,
        "channel_position_mae": chan[3].sum() / n_c if n_c > 0 else nan,
        "off_channel_distance": chan[4].sum() / n_c if n_c > 0 else nan,
        "channel_position_by_lambda": m[1],
        "channel_position_std_by_lambda": t_std,
        "position_hist_edges": np.linspace(lo, hi, n_pos + 1),
        "position_hist_counts": hist[1:-1].astype(np.int64),
        "position_hist_density": hist[1:-1] / (total * (hi - lo) / n_pos) if total > 0 else hist[1:-1] * nan,
        "position_underflow": int(hist[0]),
        "position_overflow": int(hist[-1]),
        "channel_middle_density_ratio": 2 * chan[5].sum() / chan[6].sum() if chan[6].sum() > 0 else nan,
    }


def _finalize(
    same: np.ndarray,
    diff: np.ndarray,
    chan: np.ndarray | None,
    hist: np.ndarray | None,
    position_range: tuple[float, float],
    ufm: np.ndarray,
    class_sums: Tensor,
    class_counts: Tensor,
    num_classes: int,
) -> dict:
    """Turn the per-bin sums into means, spreads and curves (shared by the streaming path and the tests' reference)."""
    edges = np.linspace(0.0, 1.0, same.shape[1] + 1)
    out: dict = {"lambda_bin_edges": edges, "lambda_bin_centers": (edges[:-1] + edges[1:]) / 2}
    out.update(_same_class_measures(same))
    out.update(_different_class_measures(diff, num_classes))
    if chan is not None:
        out.update(_channel_measures(chan, hist, position_range))
    if ufm[3] > 0:
        dot, opt_sq, h_sq = ufm[0], ufm[1], ufm[2]
        # min_s ||H - s H*||^2 = ||H||^2 - <H, H*>^2 / ||H*||^2 (closed form; absolute error ~1e-8).
        out["ufm_scale"] = dot / opt_sq
        out["ufm_distance"] = math.sqrt(max(h_sq - dot**2 / opt_sq, 0.0) / h_sq)
    counts = class_counts.unsqueeze(1)
    out["same_class_means"] = torch.where(counts > 0, class_sums / counts.clamp_min(1), torch.nan)
    return {k: float(v) if isinstance(v, np.floating) else v for k, v in out.items()}
