"""Eq. 2 over W and the features together: the classifier becomes a simplex ETF."""

from __future__ import annotations

import pytest

from mixcollapse.theory.joint import solve_joint


def test_joint_problem_finds_a_simplex_etf():
    res = solve_joint(4, 6, 1e-2, 1e-2, alpha=1.0, nodes=6, seed=0)
    g = res["geometry"]
    assert g["norm_cv"] < 1e-4 and g["cos_std"] < 1e-4 and g["etf_distance"] < 1e-4
    assert g["cos_mean"] == pytest.approx(-1 / 3, abs=1e-4)
    assert res["objective"] == pytest.approx(res["data_loss"] + res["classifier_term"], rel=1e-9)
