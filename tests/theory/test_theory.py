"""The mixup UFM (section 3): closed form vs an independent solver, losses, joint problem, CLI."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import integrate, optimize, stats

from mixcollapse.etf import simplex_etf
from mixcollapse.mixup import mixup_targets
from mixcollapse.theory import (
    amplification,
    amplified_features,
    different_class_logits,
    different_class_loss,
    expected_loss,
    feature_gradient,
    feature_objective,
    inner_product_from_K,
    monte_carlo_loss,
    optimal_features,
    same_class_equation,
    same_class_K,
    same_class_loss,
    theorem_features,
)
from mixcollapse.theory.joint import solve_joint
from mixcollapse.theory.solver import _in_threads
from reference import printed_theorem_inner_product

LAMBDAS = np.array([0.0, 1e-12, 0.5, 1.0])


def pair_targets(C: int, lam: np.ndarray, i: int = 0, ip: int = 1) -> torch.Tensor:
    n = len(lam)
    return mixup_targets(torch.as_tensor(lam), torch.full((n,), i), torch.full((n,), ip), C)


# C = 1000 costs over a second a case: it runs with the slow tests.
GRID = [
    pytest.param(C, m, lam_h, marks=[pytest.mark.slow] if C == 1000 else [])
    for C in (2, 10, 1000) for m in (0.1, 30.0) for lam_h in (1e-9, 10.0)
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


def _explicit_objective(W: np.ndarray, y: np.ndarray, lam_h: float):
    def f(h: np.ndarray) -> float:
        z = W @ h
        return np.logaddexp.reduce(z) - y @ z + 0.5 * lam_h * h @ h

    return f


def test_solver_general_classifier_matches_scipy():
    gen = torch.Generator().manual_seed(0)
    for C, d in [(6, 20), (12, 5)]:  # full row rank, and C > d (rank-deficient)
        W = torch.randn(C, d, generator=gen, dtype=torch.float64)
        Y = torch.distributions.Dirichlet(torch.ones(C, dtype=torch.float64)).sample((5,))
        lam_h = 1e-2
        H = optimal_features(W, Y, lam_h)
        for n in range(Y.shape[0]):
            f = _explicit_objective(W.numpy(), Y[n].numpy(), lam_h)
            ref = optimize.minimize(f, np.zeros(d), method="BFGS", options={"gtol": 1e-12}).x
            assert np.allclose(H[n].numpy(), ref, rtol=1e-5, atol=1e-6)
        assert feature_gradient(W, H, Y, lam_h).norm(dim=1).max() < 1e-10


def _mixup_targets(N: int, C: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    a, b = torch.randint(0, C, (N,), generator=gen), torch.randint(0, C, (N,), generator=gen)
    return mixup_targets(torch.rand(N, generator=gen, dtype=torch.float64), a, b, C)


def _conditioned_W(C: int, d: int, spread: float, seed: int) -> torch.Tensor:
    """A (C, d) classifier with singular values from 3 down to 3 * spread (W W^T: condition number spread^-2)."""
    gen = torch.Generator().manual_seed(seed)
    U = torch.linalg.qr(torch.randn(C, C, generator=gen, dtype=torch.float64))[0]
    V = torch.linalg.qr(torch.randn(d, C, generator=gen, dtype=torch.float64))[0]
    return 3 * (U * torch.logspace(0, math.log10(spread), C, dtype=torch.float64)) @ V.T


@pytest.mark.parametrize("spread", [1.0, 0.03, 1e-3])  # W W^T with condition number 1, 1e3 and 1e6
def test_float32_first_iterations_do_not_change_the_answer(spread):
    C, d, lam_h = 40, 96, 5e-4
    W = _conditioned_W(C, d, spread, seed=3)
    Y = _mixup_targets(300, C, 4)
    mixed = optimal_features(W, Y, lam_h)
    plain = optimal_features(W, Y, lam_h, float32_start=False)
    tight = optimal_features(W, Y, lam_h, float32_start=False, tol=1e-15)
    for H in (mixed, plain):
        assert ((H - tight).norm(dim=1) / tight.norm(dim=1)).max() < 1e-10
        assert feature_gradient(W, H, Y, lam_h).norm(dim=1).max() < 1e-12
    # and against scipy, one problem at a time, with the analytic gradient (BFGS itself stalls
    # short of 1e-6 on the ill-conditioned W; there the vanishing gradient is the check)
    Wn = W.numpy()
    for n in range(3 if spread == 1.0 else 0):
        y = Y[n].numpy()
        f = _explicit_objective(Wn, y, lam_h)

        def grad(h, y=y):
            z = Wn @ h
            return Wn.T @ (np.exp(z - np.logaddexp.reduce(z)) - y) + lam_h * h

        ref = optimize.minimize(f, np.zeros(d), jac=grad, method="BFGS", options={"gtol": 1e-10}).x
        assert np.allclose(mixed[n].numpy(), ref, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("spread", [1.0, 1e-3])
def test_a_loose_tol_is_met_and_does_not_warn(spread):
    # looser tolerances stop earlier; tol bounds an estimate of the error (from the contraction of
    # the Newton steps), which for W W^T with condition number 1e6 can be slightly optimistic (by
    # up to 1.6x here)
    C, d, lam_h = 40, 96, 5e-4
    W = _conditioned_W(C, d, spread, seed=5)
    Y = _mixup_targets(300, C, 6)
    tight = optimal_features(W, Y, lam_h, float32_start=False, tol=1e-15)
    for tol in (1e-4, 1e-6, 1e-8, 1e-10):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            H = optimal_features(W, Y, lam_h, tol=tol)
        err = (H - tight).norm(dim=1) / tight.norm(dim=1).clamp_min(1.0)
        assert err.max() <= (1 if spread == 1.0 else 2) * tol, (tol, err.max())


def test_chunks_solved_in_threads_match_one_thread():
    # with several torch threads, chunks are solved in parallel, each single-threaded
    W = _conditioned_W(30, 64, 0.3, seed=8)
    Y = _mixup_targets(2000, 30, 9)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = optimal_features(W, Y, 5e-4, chunk_size=300)
        torch.set_num_threads(2)
        two = optimal_features(W, Y, 5e-4, chunk_size=300)
        assert torch.get_num_threads() == 2  # the caller's setting is restored
    finally:
        torch.set_num_threads(before)
    assert ((one - two).norm(dim=1) / one.norm(dim=1)).max() < 1e-12


def test_a_failing_chunk_stops_the_thread_pool_and_restores_the_threads():
    ran = []

    def chunk(k):
        if k == 0:
            raise ValueError("bad chunk")
        time.sleep(0.05)
        ran.append(k)
        return torch.zeros(0)

    before = torch.get_num_threads()
    with pytest.raises(ValueError, match="bad chunk"):
        _in_threads(chunk, range(40), 2)
    assert torch.get_num_threads() == before
    assert len(ran) < 10  # the chunks not yet started were dropped


def test_float32_etf_keeps_rank_C_minus_1():
    # in float64 a float32 ETF's last singular value is ~1e-8, not 0; the solver must not invert it
    C, lam_h = 10, 1e-3
    W = simplex_etf(C, 20, 2.0, seed=0)
    lam = np.array([0.1, 0.5, 0.9])
    expected = theorem_features(W, np.zeros(3, int), np.ones(3, int), lam, lam_h)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        H = optimal_features(W.float(), pair_targets(C, lam), lam_h)
    assert H.dtype == torch.float32
    assert ((H.double() - expected).norm(dim=1) / expected.norm(dim=1)).max() < 1e-5


def test_solver_warns_when_W_is_too_ill_conditioned():
    W = _conditioned_W(40, 40, 1e-6, seed=3)  # condition number of W W^T: 1e12
    with pytest.warns(RuntimeWarning, match="did not converge"):
        optimal_features(W, _mixup_targets(50, 40, 4), 5e-4)


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


def test_joint_problem_finds_a_simplex_etf():
    res = solve_joint(4, 6, 1e-2, 1e-2, alpha=1.0, nodes=6, seed=0)
    g = res["geometry"]
    assert g["norm_cv"] < 1e-4 and g["cos_std"] < 1e-4 and g["etf_distance"] < 1e-4
    assert g["cos_mean"] == pytest.approx(-1 / 3, abs=1e-4)
    assert res["objective"] == pytest.approx(res["data_loss"] + res["classifier_term"], rel=1e-9)


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


@pytest.mark.slow
def test_speed_benchmark_runs_end_to_end_on_a_small_problem():
    # the benchmark measures, it is not a test of speed: this only keeps the script working
    bench = Path(__file__).resolve().parents[2] / "bench" / "bench_theory.py"
    env = {**os.environ, "BENCH_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(bench), "--samples", "300", "--scipy-samples", "2"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "solver random W: 300 samples" in proc.stdout and "ours at scipy's accuracy" in proc.stdout


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


def test_figure6_draws_each_pair_once_so_lambda_colours_a_channel_end_to_end():
    from mixcollapse.theory.figure6 import figure6_data
    from mixcollapse.theory.loss import pair_grid

    data = figure6_data(samples=200, classes=[4, 1, 7], seed=3)
    assert len(data["lam"]) == 6 * 200  # 3 same-class and 3 different-class pairs, not 9 ordered ones
    diff = ~data["same"]
    # An ordered grid lays (b, a, 1 - lambda) on (a, b, lambda): the same point twice, in opposite colours.
    points = {tuple(np.round(p, 9)) for p in data["optimal_xy"][diff]}
    assert len(points) == int(diff.sum())
    i, ip, lam = pair_grid([4, 1, 7], np.array([0.25]), ordered=False)
    assert list(zip(i.tolist(), ip.tolist(), strict=True)) == [(4, 4), (4, 1), (4, 7), (1, 1), (1, 7), (7, 7)]
    assert len(pair_grid([4, 1, 7], np.array([0.25]))[0]) == 9  # the loss's expectation keeps both orders
