"""Neural collapse NC1-NC4 of unmixed training features (Papyan, Han & Donoho, PNAS 2020).

Two streaming passes keep memory independent of the number of samples (C x d and d x d state):
``MeanAccumulator`` (class means) then ``CovarianceAccumulator`` (within-class covariance and the
NC4 agreement, which both need the means). ``nc_metrics`` turns the results into numbers.
The tests hold the streaming path to a plain all-in-memory reference (tests/reference.py).
Classes without samples are ignored throughout (their mean rows are zero and their counts 0).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from mixcollapse.metrics.geometry import classifier_geometry, etf_cosine, etf_distance, norms_and_cosines

F64 = torch.float64

# Relative cut-off on the eigenvalues of Sigma_B for its pseudo-inverse (NC1): 1e-12 of the largest
# eigenvalue is 1e-6 of the largest centred-mean singular value, i.e. float32 resolution of features.
NC1_RTOL = 1e-12


class MeanAccumulator:
    """First pass: per-class feature sums and counts, giving class means and the global mean."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = int(num_classes)
        self.sums: Tensor | None = None  # (C, d) float64
        self.counts: Tensor | None = None  # (C,) float64 (exact integers below 2**53)

    @torch.no_grad()
    def accumulate(self, H: Tensor, y: Tensor) -> None:
        """Add a batch of features H (B, d) with labels y (B,)."""
        H = H.detach().to(F64)
        y = y.to(H.device, torch.long)
        if self.sums is None:
            self.sums = torch.zeros(self.num_classes, H.shape[1], dtype=F64, device=H.device)
            self.counts = torch.zeros(self.num_classes, dtype=F64, device=H.device)
        self.sums.index_add_(0, y, H)
        self.counts.index_add_(0, y, torch.ones_like(y, dtype=F64))  # no bincount: it syncs on CUDA

    def compute(self) -> tuple[Tensor, Tensor, Tensor]:
        """Class means M (C, d) (zero rows for absent classes), counts (C,) int64, global mean (d,)."""
        if self.sums is None:
            raise RuntimeError("MeanAccumulator.compute() called before any accumulate()")
        means = self.sums / self.counts.clamp_min(1).unsqueeze(1)
        global_mean = self.sums.sum(0) / self.counts.sum()
        return means, self.counts.round().long(), global_mean


class CovarianceAccumulator:
    """Second pass: within-class covariance Sigma_W and NC4 agreement, given the class means."""

    def __init__(self, means: Tensor, counts: Tensor) -> None:
        self.means = means.detach().to(F64)  # (C, d)
        self.counts = counts.to(self.means.device)
        present = self.counts > 0
        # Squared norms of the centres, +inf for absent classes so they are never the nearest.
        self._sq = torch.where(present, (self.means**2).sum(1), torch.inf)  # (C,)
        d = self.means.shape[1]
        self.scatter = torch.zeros(d, d, dtype=F64, device=self.means.device)
        self.n = torch.zeros((), dtype=F64, device=self.means.device)
        self.agree = torch.zeros((), dtype=F64, device=self.means.device)
        self.n_logits = torch.zeros((), dtype=F64, device=self.means.device)

    @torch.no_grad()
    def accumulate(self, H: Tensor, y: Tensor, logits: Tensor | None = None) -> None:
        """Add features H (B, d), labels y (B,) and, for NC4, the network's logits (B, C)."""
        H = H.detach().to(self.means.device, F64)
        y = y.to(H.device, torch.long)
        Hc = H - self.means[y]  # (B, d) centred by their class mean
        self.scatter += Hc.T @ Hc
        self.n += H.shape[0]
        if logits is not None:
            # Nearest class centre: argmin_c ||h - mu_c||^2 = argmin_c ||mu_c||^2 - 2 <h, mu_c>.
            ncc = (self._sq - 2.0 * H @ self.means.T).argmin(1)  # (B,)
            net = logits.detach().to(H.device).argmax(1)
            self.agree += (ncc == net).sum()
            self.n_logits += H.shape[0]

    def compute(self) -> dict[str, Tensor | float]:
        """sigma_w (d, d), sigma_b (d, d), nc4_agreement (NaN without logits), num_samples."""
        present = self.counts > 0
        M = self.means[present]
        n = self.counts[present].to(F64)
        Mc = M - (n.unsqueeze(1) * M).sum(0) / n.sum()
        return {
            "sigma_w": self.scatter / self.n,
            "sigma_b": Mc.T @ Mc / M.shape[0],
            "nc4_agreement": float(self.agree / self.n_logits) if self.n_logits > 0 else math.nan,
            "num_samples": int(self.n),
        }


def nc1(centred_means: Tensor, sigma_w: Tensor, rtol: float = NC1_RTOL) -> float:
    """NC1 = tr(Sigma_W Sigma_B^+)/C (Papyan et al. 2020, Figure 6), Sigma_B = Mc^T Mc / C.

    Sigma_B^+ comes from the thin SVD of the centred means Mc (C, d), never a d x d eigensolve:
    Sigma_B = V diag(s^2/C) V^T, so tr(Sigma_W Sigma_B^+) = sum_k v_k^T Sigma_W v_k / (s_k^2/C).
    Kept: at most C-1 directions (sum_c n_c (mu_c - mu_G) = 0, so rank Sigma_B <= C-1) whose
    eigenvalue exceeds rtol times the largest.
    """
    Mc = centred_means.to(F64)
    C = Mc.shape[0]
    _, s, Vh = torch.linalg.svd(Mc, full_matrices=False)  # (k,), (k, d)
    eig = s**2 / C
    keep = (eig > rtol * eig[0]) & (torch.arange(eig.shape[0], device=eig.device) < C - 1)
    V = Vh[keep]  # (r, d)
    quad = ((V @ sigma_w.to(F64)) * V).sum(1)  # v_k^T Sigma_W v_k
    return float((quad / eig[keep]).sum() / C)


def nc_metrics(
    means: Tensor,
    counts: Tensor,
    sigma_w: Tensor,
    W: Tensor,
    *,
    nc4_agreement: float | None = None,
    rtol: float = NC1_RTOL,
) -> dict[str, float]:
    """NC1-NC4 (Papyan et al. 2020) from class means (C, d), counts (C,), Sigma_W (d, d), classifier W (C, d).

    nc1: tr(Sigma_W Sigma_B^+)/C (see ``nc1``). NC2 on the centred means Mc = M - mu_G (mu_G the
    sample mean of all features): nc2_norm_cv = Std_c ||Mc_c|| / Avg_c ||Mc_c|| (equinorm);
    nc2_cos_mean, nc2_cos_std over pairs c != c' of cosines (equiangularity); nc2_max_angle =
    Avg_{c != c'} |cos + 1/(C-1)| (maximal angle); nc2_etf_distance = Procrustes distance of Mc to
    the nearest simplex ETF (geometry.etf_distance). nc3 = || W/||W||_F - Mc/||Mc||_F ||_F
    (self-duality). nc4_agreement: fraction of samples where argmax of the logits equals the nearest
    class mean (1 - NC4's mismatch); NaN if not given. w_*: ``classifier_geometry(W)``.
    """
    present = counts.to(means.device) > 0
    M = means.to(F64)[present]
    n = counts.to(means.device, F64)[present]
    C = M.shape[0]
    Mc = M - (n.unsqueeze(1) * M).sum(0) / n.sum()
    Wp = W.detach().to(means.device, F64)[present]

    norms, cos = norms_and_cosines(Mc)
    etf_cos = etf_cosine(C)
    nc2 = torch.stack(
        [norms.std(correction=0) / norms.mean(), cos.mean(), cos.std(correction=0), (cos - etf_cos).abs().mean()]
    ).tolist()
    nc3 = float((Wp / Wp.norm() - Mc / Mc.norm()).norm())
    out = {
        "num_classes": C,
        "num_samples": int(n.sum()),
        "nc1": nc1(Mc, sigma_w.to(means.device), rtol),
        "nc2_norm_cv": nc2[0],
        "nc2_cos_mean": nc2[1],
        "nc2_cos_std": nc2[2],
        "nc2_max_angle": nc2[3],
        "nc2_etf_distance": etf_distance(Mc),
        "nc3": nc3,
        "nc4_agreement": math.nan if nc4_agreement is None else float(nc4_agreement),
        "etf_cos": etf_cos,
    }
    out.update({f"w_{k}": v for k, v in classifier_geometry(W).items() if k not in ("num_classes", "etf_cos")})
    return out
