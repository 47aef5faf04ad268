"""Bad theory parameters: one ValueError each; the simplex ETF in dimension C - 1."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mixcollapse.etf import simplex_etf
from mixcollapse.mixup import mixup_targets
from mixcollapse.theory import different_class_logits, expected_loss, monte_carlo_loss, same_class_K

LAMBDAS = np.array([0.0, 1e-12, 0.5, 1.0])


def pair_targets(C: int, lam: np.ndarray, i: int = 0, ip: int = 1) -> torch.Tensor:
    n = len(lam)
    return mixup_targets(torch.as_tensor(lam), torch.full((n,), i), torch.full((n,), ip), C)


# C = 1000 costs over a second a case: it runs with the slow tests.
GRID = [
    pytest.param(C, m, lam_h, marks=[pytest.mark.slow] if C == 1000 else [])
    for C in (2, 10, 1000)
    for m in (0.1, 30.0)
    for lam_h in (1e-9, 10.0)
]


@pytest.mark.parametrize(
    "call",
    [
        lambda: same_class_K(1, 1.0, 1e-3),
        lambda: same_class_K(10, 0.0, 1e-3),
        lambda: same_class_K(10, 1.0, 0.0),
        lambda: different_class_logits(1.5, 10, 1.0, 1e-3),
        lambda: expected_loss(10, 1.0, 1e-3, alpha=0.0),
        lambda: expected_loss(10, 1.0, 1e-3, classes=[0, 10]),
        lambda: monte_carlo_loss(10, 8, 1.0, 1e-3),
        lambda: simplex_etf(10, 8),
    ],
)
def test_bad_parameters_raise_value_error(call):
    with pytest.raises(ValueError):
        call()


def test_etf_in_dimension_C_minus_1():
    W = simplex_etf(5, 4, 2.0)
    assert W.shape == (5, 4)
    assert torch.allclose(W.norm(dim=1), torch.full((5,), 2.0, dtype=torch.float64))
    G = W @ W.T / 4.0
    assert torch.allclose(G[~torch.eye(5, dtype=torch.bool)], torch.tensor(-0.25, dtype=torch.float64))
