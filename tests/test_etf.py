"""Simplex ETF (eq. 3): norms, cosines, sum-zero rows, the d = C - 1 case, the frozen classifier."""

from __future__ import annotations

import pytest
import torch

from mixcollapse.etf import fix_classifier_to_etf, random_partial_orthogonal, simplex_etf, sum_zero_basis


@pytest.mark.parametrize("C, d, m", [(4, 6, 1.0), (4, 4, 2.5), (4, 3, 1.0), (10, 9, 0.7), (10, 64, -1.5), (2, 1, 1.0)])
def test_simplex_etf_geometry(C, d, m):
    W = simplex_etf(C, d, multiplier=m, seed=1)
    assert W.shape == (C, d)
    assert torch.allclose(W.norm(dim=1), torch.full((C,), abs(m), dtype=W.dtype), atol=1e-12)
    U = W / W.norm(dim=1, keepdim=True)
    cos = U @ U.T
    off = cos[~torch.eye(C, dtype=torch.bool)]
    assert torch.allclose(off, torch.full_like(off, -1.0 / (C - 1)), atol=1e-12)
    assert torch.allclose(W.sum(dim=0), torch.zeros(d, dtype=W.dtype), atol=1e-12)
    gram = m**2 * C / (C - 1) * (torch.eye(C, dtype=W.dtype) - 1.0 / C)
    assert torch.allclose(W @ W.T, gram, atol=1e-12)


def test_simplex_etf_is_seeded():
    assert torch.equal(simplex_etf(5, 8, seed=3), simplex_etf(5, 8, seed=3))
    assert not torch.allclose(simplex_etf(5, 8, seed=3), simplex_etf(5, 8, seed=4))


@pytest.mark.parametrize("C, d, m", [(1, 3, 1.0), (5, 3, 1.0), (3, 3, 0.0), (3, 3, float("inf"))])
def test_simplex_etf_rejects_impossible_shapes(C, d, m):
    with pytest.raises(ValueError):
        simplex_etf(C, d, multiplier=m)


def test_helpers_are_orthonormal():
    B = sum_zero_basis(6)
    assert torch.allclose(B.T @ B, torch.eye(5, dtype=B.dtype), atol=1e-12)
    assert torch.allclose(B.sum(dim=0), torch.zeros(5, dtype=B.dtype), atol=1e-12)
    Q = random_partial_orthogonal(7, 4, seed=0)
    assert torch.allclose(Q.T @ Q, torch.eye(4, dtype=Q.dtype), atol=1e-12)


def test_fix_classifier_to_etf_sets_and_freezes():
    layer = torch.nn.Linear(12, 5)
    fix_classifier_to_etf(layer, multiplier=2.0, seed=7)
    assert torch.allclose(layer.weight, simplex_etf(5, 12, 2.0, 7, dtype=torch.float32))
    assert torch.equal(layer.bias, torch.zeros(5))
    assert not layer.weight.requires_grad and not layer.bias.requires_grad
