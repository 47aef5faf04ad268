"""The optimal features of any classifier: against scipy, float32 starts, threads, ill conditioning."""

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
from scipy import optimize

from mixcollapse.etf import simplex_etf
from mixcollapse.mixup import mixup_targets
from mixcollapse.theory import feature_gradient, optimal_features, theorem_features
from mixcollapse.theory.solver import _in_threads


def pair_targets(C: int, lam: np.ndarray, i: int = 0, ip: int = 1) -> torch.Tensor:
    n = len(lam)
    return mixup_targets(torch.as_tensor(lam), torch.full((n,), i), torch.full((n,), ip), C)


def _explicit_objective(W: np.ndarray, y: np.ndarray, lam_h: float):
    def f(h: np.ndarray) -> float:
        z = W @ h
        return np.logaddexp.reduce(z) - y @ z + 0.5 * lam_h * h @ h

    return f


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


@pytest.mark.slow
def test_speed_benchmark_runs_end_to_end_on_a_small_problem():
    # the benchmark measures, it is not a test of speed: this only keeps the script working
    bench = Path(__file__).resolve().parents[2] / "bench" / "bench_theory.py"
    env = {**os.environ, "BENCH_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(bench), "--samples", "300", "--scipy-samples", "2"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "solver random W: 300 samples" in proc.stdout and "ours at scipy's accuracy" in proc.stdout
