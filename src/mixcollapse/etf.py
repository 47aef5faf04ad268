"""Simplex equiangular tight frames (eq. 3 of the paper) and the fixed-ETF classifier."""

from __future__ import annotations

import math

import torch


def sum_zero_basis(num_classes: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Orthonormal basis (C, C-1) of the subspace of R^C orthogonal to the ones vector."""
    C = num_classes
    centred = torch.eye(C, dtype=dtype) - torch.full((C, C), 1.0 / C, dtype=dtype)
    # The first C-1 left singular vectors span the range of the centring projector (rank C-1).
    U, _, _ = torch.linalg.svd(centred)
    return U[:, : C - 1]


def random_partial_orthogonal(rows: int, cols: int, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Seeded random (rows, cols) matrix with orthonormal columns (rows >= cols)."""
    gen = torch.Generator().manual_seed(seed)
    G = torch.randn(rows, cols, generator=gen, dtype=torch.float64)
    Q, R = torch.linalg.qr(G)
    Q = Q * torch.sign(torch.diagonal(R))  # unique (Haar-distributed) choice of signs
    return Q.to(dtype)


def simplex_etf(
    num_classes: int, dim: int, multiplier: float = 1.0, seed: int = 0, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """Simplex ETF W (C, d) with rows of norm |m| and pairwise cosines -1/(C-1) (eq. 3).

    For d >= C this is eq. 3 literally, m sqrt(C/(C-1)) (I - 11^T/C) U^T with U (d, C) a seeded
    random partial orthogonal matrix. For d = C-1 (the smallest dimension an ETF fits in) U cannot
    have C orthonormal columns, so the centring projector is written as B B^T with B an orthonormal
    basis of the sum-zero subspace and W = m sqrt(C/(C-1)) B V^T with V (d, C-1) random orthogonal.
    """
    C, d = int(num_classes), int(dim)
    if C < 2:
        raise ValueError(f"a simplex ETF needs at least 2 classes, got num_classes={C}")
    if d < C - 1:
        raise ValueError(f"a simplex ETF of {C} classes needs dim >= {C - 1}, got dim={d}")
    if multiplier == 0 or not math.isfinite(multiplier):
        raise ValueError(f"the ETF multiplier must be a non-zero finite number, got {multiplier}")
    scale = multiplier * math.sqrt(C / (C - 1))
    if d >= C:
        U = random_partial_orthogonal(d, C, seed)
        centred = torch.eye(C, dtype=torch.float64) - 1.0 / C
        W = scale * centred @ U.T
    else:
        V = random_partial_orthogonal(d, C - 1, seed)
        W = scale * sum_zero_basis(C) @ V.T
    return W.to(dtype)


@torch.no_grad()
def fix_classifier_to_etf(classifier: torch.nn.Linear, multiplier: float = 1.0, seed: int = 0) -> None:
    """Set a linear classifier to a simplex ETF (zero bias) and freeze it (Section 3.2, Figure 7)."""
    C, d = classifier.weight.shape
    classifier.weight.copy_(simplex_etf(C, d, multiplier, seed, dtype=classifier.weight.dtype))
    if classifier.bias is not None:
        classifier.bias.zero_()
    classifier.requires_grad_(False)
