"""Eq. 2 over W and the features together: the classifier becomes a simplex ETF."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mixcollapse.mixup import mixup_targets
from mixcollapse.theory.joint import solve_joint

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


def test_joint_problem_finds_a_simplex_etf():
    res = solve_joint(4, 6, 1e-2, 1e-2, alpha=1.0, nodes=6, seed=0)
    g = res["geometry"]
    assert g["norm_cv"] < 1e-4 and g["cos_std"] < 1e-4 and g["etf_distance"] < 1e-4
    assert g["cos_mean"] == pytest.approx(-1 / 3, abs=1e-4)
    assert res["objective"] == pytest.approx(res["data_loss"] + res["classifier_term"], rel=1e-9)
