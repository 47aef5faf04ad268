"""Theorem 3.1 in closed form: against the general solver, its roots, its limits, a 60-digit solution."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mixcollapse.etf import simplex_etf
from mixcollapse.mixup import mixup_targets
from mixcollapse.theory import (
    different_class_logits,
    feature_gradient,
    inner_product_from_K,
    optimal_features,
    same_class_equation,
    same_class_K,
    theorem_features,
)
from reference import printed_theorem_inner_product

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


@pytest.mark.parametrize("C, m, lam_h", GRID)
def test_closed_form_matches_general_solver(C, m, lam_h):
    W = simplex_etf(C, C - 1 if C > 2 else 3, m, seed=1)
    i, ip = np.zeros(LAMBDAS.size, int), np.ones(LAMBDAS.size, int)
    H = theorem_features(W, i, ip, LAMBDAS, lam_h)
    Y = pair_targets(C, LAMBDAS)
    Hs = optimal_features(W, Y, lam_h)
    # relative error; C = 2, lambda = 1/2 has the optimum h = 0, measured against the batch's scale
    scale = torch.maximum(Hs.norm(dim=1), 1e-9 * Hs.norm(dim=1).max())
    err = (H - Hs).norm(dim=1) / scale
    assert err.max() < 1e-6, err
    # stationarity: the gradient of the objective vanishes (relative to the size of its terms)
    for feats in (H, Hs):
        g = feature_gradient(W, feats, Y, lam_h).norm(dim=1)
        assert (g <= 1e-9 * (abs(m) + lam_h * feats.norm(dim=1) + 1)).all(), g


def test_same_class_K_is_the_unique_negative_root():
    for C, m, lam_h in [(2, 1.0, 1e-3), (10, 3.0, 1e-6), (1000, 30.0, 1e-9), (1000, 0.1, 10.0)]:
        K = same_class_K(C, m, lam_h)
        assert K < 0
        x = K * np.logspace(-4, 4, 2001)  # K times factors on both sides, all negative
        f = same_class_equation(x, C, m, lam_h)
        signs = np.sign(f[np.isfinite(f)])
        assert np.count_nonzero(np.diff(signs)) == 1  # exactly one sign change: a unique root
        assert abs(same_class_equation(K * (1 + 1e-9), C, m, lam_h)) > abs(same_class_equation(K, C, m, lam_h))


def test_large_C_and_m_do_not_overflow():
    K = same_class_K(100000, 1e3, 1e-12)
    sol = different_class_logits(np.array([0.0, 0.3, 1.0]), 100000, 1e3, 1e-12)
    assert math.isfinite(K) and np.all(np.isfinite(sol.K)) and np.all(np.isfinite(sol.inner_i))


def test_lambda_endpoints_reduce_to_same_class_and_are_continuous():
    C, m, lam_h = 10, 3.0, 1e-6
    K = same_class_K(C, m, lam_h)
    sol = different_class_logits(np.array([0.0, 1.0]), C, m, lam_h)
    assert np.allclose(sol.K, K, rtol=1e-12)
    assert np.allclose([sol.inner_i[1], sol.inner_ip[1]], [(1 - C) * K, K], rtol=1e-12)
    assert np.allclose([sol.inner_i[0], sol.inner_ip[0]], [K, (1 - C) * K], rtol=1e-12)
    near = different_class_logits(np.array([1e-16, 1 - 1e-16]), C, m, lam_h)
    assert np.allclose(near.K, sol.K, rtol=1e-7) and np.allclose(near.inner_i, sol.inner_i, rtol=1e-7, atol=1e-7)
    lam = np.linspace(0, 1, 20001)
    a = different_class_logits(lam, C, m, lam_h).inner_i
    assert np.all(np.diff(a) > 0)  # the logit of class i increases with its target weight


def test_root_choice_and_printed_formula_typo():
    C, m, lam_h = 10, 3.0, 1e-6
    lam = np.array([0.1, 0.3, 0.7, 0.9])
    sol = different_class_logits(lam, C, m, lam_h)
    big = inner_product_from_K(sol.K, C, m, lam_h, larger=True)
    small = inner_product_from_K(sol.K, C, m, lam_h, larger=False)
    assert np.allclose(np.where(lam > 0.5, big, small), sol.inner_i, rtol=1e-9)
    assert np.allclose(np.where(lam > 0.5, small, big), sol.inner_ip, rtol=1e-9)
    printed = printed_theorem_inner_product(sol.K, C, m, lam_h, sign=1.0)
    assert not np.allclose(printed[lam > 0.5], sol.inner_i[lam > 0.5], rtol=1e-3)


@pytest.mark.parametrize("m, lam_h", [(1000.0, 1e-12), (1.0, 1e-3), (30.0, 1e-9)])
def test_two_class_logits_against_a_60_digit_solution(m, lam_h):
    """C = 2: sigmoid(2a) + mu a = lambda solved by bisection in 60-digit arithmetic (mpmath); near lambda = 1
    with m^2/lambda_H large, a plain sigmoid(2a) - lambda cancels; at lambda = 1 a equals -K (same class)."""
    import mpmath

    mpmath.mp.dps = 60
    mu = mpmath.mpf(lam_h) / (2 * mpmath.mpf(m) ** 2)

    def exact(lam: float):
        lo, hi = mpmath.mpf(-100), mpmath.mpf(100)
        for _ in range(260):
            mid = (lo + hi) / 2
            if 1 / (1 + mpmath.exp(-2 * mid)) + mu * mid > lam:
                hi = mid
            else:
                lo = mid
        return (lo + hi) / 2

    lams = np.array([1.0, 1 - 1e-12, 1 - 1e-6, 0.9, 0.5, 0.1, 1e-9, 0.0])
    a = different_class_logits(lams, 2, m, lam_h).inner_i
    for lam, got in zip(lams, a, strict=True):
        want = exact(float(lam))
        assert abs(got - want) <= 1e-14 * max(1.0, abs(float(want))), (lam, got, float(want))
    assert a[0] == pytest.approx(-same_class_K(2, m, lam_h), rel=1e-14)
