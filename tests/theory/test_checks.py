"""Bad theory parameters: one ValueError each; the simplex ETF in dimension C - 1."""

from __future__ import annotations

import pytest
import torch

from mixcollapse.etf import simplex_etf
from mixcollapse.theory import different_class_logits, expected_loss, monte_carlo_loss, same_class_K


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
