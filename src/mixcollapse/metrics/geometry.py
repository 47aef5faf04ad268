"""Geometry of a set of class vectors: equinorm, equiangularity, distance to a simplex ETF (Figure 5).

Used on the classifier W (per epoch during training, so it is a handful of C x C and (C-1) x d
operations) and on the centred class means (NC2, see ``collapse.py``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def etf_cosine(num_classes: int) -> float:
    """Cosine between any two distinct vectors of a simplex ETF, -1/(C-1) (eq. 3)."""
    return -1.0 / (num_classes - 1)


def norms_and_cosines(X: Tensor) -> tuple[Tensor, Tensor]:
    """Row norms (C,) and the off-diagonal pairwise cosines (C(C-1)/2,) of X (C, d), in float64."""
    X = X.detach().to(torch.float64)
    norms = X.norm(dim=1)  # (C,)
    U = X / norms.clamp_min(torch.finfo(torch.float64).tiny).unsqueeze(1)
    G = U @ U.T  # (C, C)
    i, j = torch.triu_indices(X.shape[0], X.shape[0], offset=1, device=X.device)
    return norms, G[i, j]


def _sum_zero_basis(C: int, device: torch.device) -> Tensor:
    """Helmert basis (C, C-1): orthonormal columns spanning the vectors of R^C that sum to zero."""
    k = torch.arange(1, C, device=device, dtype=torch.float64)  # (C-1,)
    j = torch.arange(C, device=device, dtype=torch.float64).unsqueeze(1)  # (C, 1)
    B = torch.where(j < k, 1.0, torch.where(j == k, -k, 0.0))
    return B / torch.sqrt(k * (k + 1))


def nearest_simplex_etf(X: Tensor) -> Tensor:
    """The simplex ETF (C, d) closest to X (C, d) in Frobenius norm, over all multipliers and rotations.

    Every simplex ETF of eq. 3 is m E V^T with E = sqrt(C/(C-1)) B (B an orthonormal basis of the
    sum-zero subspace, so E E^T = C/(C-1)(I - 11^T/C)), m a real multiplier and V (d, C-1) with
    orthonormal columns. For fixed V the best m is <X, E V^T>/C; the best V solves an orthogonal
    Procrustes problem: with X^T E = U S Z^T (thin SVD), V = U Z^T and m = sum(S)/C. Needs d >= C-1.
    Row order is irrelevant: permuting the rows of an ETF gives another ETF.
    """
    C, d = X.shape
    if d < C - 1:
        raise ValueError(f"no simplex ETF of {C} classes fits in dimension {d} < {C - 1}")
    X = X.detach().to(torch.float64)
    E = math.sqrt(C / (C - 1)) * _sum_zero_basis(C, X.device)  # (C, C-1)
    U, S, Zh = torch.linalg.svd(X.T @ E, full_matrices=False)  # (d, C-1), (C-1,), (C-1, C-1)
    m = S.sum() / C
    return m * (E @ Zh.T @ U.T)


def etf_distance(X: Tensor) -> float:
    """Relative distance ||X - X_etf||_F / ||X||_F to the nearest simplex ETF (Procrustes; in [0, 1]).

    Zero exactly when X is a simplex ETF of any multiplier (sign included) and any rotation, and
    scale-free; it is the sine of the angle between X and the cone of simplex ETFs. NaN when X = 0
    or when d < C-1 (no ETF fits). X is not centred first: a common offset 1 v^T (which leaves the
    softmax unchanged) counts as distance, as in Figure 5 and the assumption of Theorem 3.1.
    """
    C, d = X.shape
    Xd = X.detach().to(torch.float64)
    norm = Xd.norm()
    if d < C - 1 or C < 2 or norm == 0:
        return float("nan")
    return float((Xd - nearest_simplex_etf(Xd)).norm() / norm)


def classifier_geometry(W: Tensor) -> dict[str, float]:
    """Figure 5's measures of the classifier W (C, d): norm CV, cosine statistics, ETF distance.

    norm_cv = Std_i ||w_i|| / Avg_i ||w_i|| (population std); cos_mean, cos_std over the pairs
    i != i' of <w_i, w_i'>/(||w_i|| ||w_i'||) (population std; each unordered pair once, which gives
    the same mean and std as ordered pairs); cos_max_dev = max over pairs of |cos + 1/(C-1)|;
    etf_cos = -1/(C-1); etf_distance: see ``etf_distance``; norm_mean = Avg_i ||w_i||.
    """
    C = W.shape[0]
    if C < 2:
        raise ValueError(f"classifier geometry needs at least 2 classes, got {C}")
    norms, cos = norms_and_cosines(W)
    etf_cos = etf_cosine(C)
    stats = torch.stack(
        [
            norms.mean(),
            norms.std(correction=0) / norms.mean(),
            cos.mean(),
            cos.std(correction=0),
            (cos - etf_cos).abs().max(),
        ]
    ).tolist()  # one device-to-host transfer
    return {
        "num_classes": C,
        "norm_mean": stats[0],
        "norm_cv": stats[1],
        "cos_mean": stats[2],
        "cos_std": stats[3],
        "cos_max_dev": stats[4],
        "etf_cos": etf_cos,
        "etf_distance": etf_distance(W),
    }
