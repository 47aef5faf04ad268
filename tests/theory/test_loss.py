"""Eq. 2's loss at the optimum: quadrature against adaptive integration and Monte Carlo; the amplified features."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from mixcollapse.etf import simplex_etf
from mixcollapse.theory import (
    amplification,
    amplified_features,
    different_class_loss,
    expected_loss,
    feature_objective,
    monte_carlo_loss,
    same_class_loss,
    theorem_features,
)


@pytest.mark.slow  # scipy's adaptive quadrature and a Monte Carlo check: over a second
def test_expected_loss_quadrature_matches_adaptive_and_monte_carlo():
    C, m, lam_h = 10, 3.0, 1e-6
    for alpha in (0.3, 1.0, 4.0):
        q = expected_loss(C, m, lam_h, alpha, classes=[0, 1, 2])
        ref, _ = integrate.quad(
            lambda x, a=alpha: different_class_loss(x, C, m, lam_h) * stats.beta.pdf(x, a, a),
            0,
            1,
            limit=500,
            epsabs=1e-12,
        )
        assert q["different_class"] == pytest.approx(ref, abs=1e-6)
        assert q["loss"] == pytest.approx((q["same_class"] + 2 * q["different_class"]) / 3, rel=1e-12)
        mc = monte_carlo_loss(C, 12, m, lam_h, alpha, [0, 1, 2], samples=4000, seed=3)
        assert abs(mc["loss"] - q["loss"]) < 4 * mc["stderr"]
        assert mc["same_class"] == pytest.approx(same_class_loss(C, m, lam_h), rel=1e-9)
    all_classes = expected_loss(C, m, lam_h, 1.0)
    assert all_classes["loss"] == pytest.approx((all_classes["same_class"] + 9 * all_classes["different_class"]) / 10)


def test_amplified_features_cost_a_little_more():
    assert amplification(0.5) == pytest.approx(0.4)
    assert amplification(0.3) == pytest.approx(amplification(0.7))
    C, m, lam_h = 10, 3.0, 1e-6
    W = simplex_etf(C, 20, m)
    lam = np.linspace(0, 1, 101)
    i, ip = np.zeros(lam.size, int), np.array([0] * 50 + [1] * 51)
    H = theorem_features(W, i, ip, lam, lam_h)
    Ha = amplified_features(W, H, i, ip, lam)
    Y = torch.zeros(lam.size, C, dtype=torch.float64)
    Y[torch.arange(lam.size), torch.as_tensor(i)] += torch.as_tensor(lam)
    Y[torch.arange(lam.size), torch.as_tensor(ip)] += torch.as_tensor(1 - lam)
    base, amp = feature_objective(W, H, Y, lam_h), feature_objective(W, Ha, Y, lam_h)
    assert torch.equal(H[:50], Ha[:50])  # same-class features are not amplified
    assert (amp[50:] >= base[50:] - 1e-12).all() and (amp[50:] - base[50:]).max() < 1e-3
