"""Speed of the mixup UFM solvers: ``python bench/bench_theory.py`` (CPU; prints times and ratios).

Ours is timed with one torch thread and with all cores (set BENCH_THREADS to time one count only);
scipy always with one BLAS thread, its fastest setting here.

1. Figure 6 (closed form): K_lambda and features for 5000 lambdas x 9 class pairs, plus both losses.
2. General solver: 100,000 samples, C = 100, d = 512, mixup targets (ours: best of 3 runs), against
   scipy.optimize one problem at a time (timed on a subsample and extrapolated per problem), with
   the accuracy reached.
   scipy always runs with one BLAS thread, its fastest setting here (its d = 512 matrix-vector
   products are too small to split, and one problem at a time is sequential); ours with one
   thread and with every core, in the same run. "Equal accuracy" is ours at the loosest
   tolerance that is at least as accurate as the most accurate scipy method, timed against the
   fastest scipy method; and, per method, ours at the loosest tolerance at least as accurate as
   that method, timed against it.
"""

from __future__ import annotations

import argparse
import math
import os
import time

# Thread counts for torch (ours): one, and every core. Set before numpy and torch load, which size
# their thread pools from these variables; scipy's BLAS is held to one thread below.
_ONLY = os.environ.get("BENCH_THREADS")
THREAD_COUNTS = sorted({int(_ONLY)} if _ONLY else {1, os.cpu_count() or 1})
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, str(max(THREAD_COUNTS)))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy import optimize  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from mixcollapse.etf import simplex_etf  # noqa: E402
from mixcollapse.metrics.projection import projection_matrix  # noqa: E402
from mixcollapse.mixup import mixup_targets  # noqa: E402
from mixcollapse.theory.closed_form import amplified_coefficients, different_class_logits, theorem_coefficients  # noqa: E402
from mixcollapse.theory.loss import monte_carlo_loss, pair_grid, sample_lambdas  # noqa: E402
from mixcollapse.theory.solver import feature_gradient, feature_objective, optimal_features  # noqa: E402


def timed(fn, repeat: int = 1):
    best, out = math.inf, None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def random_mixup_targets(N: int, C: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    i, j = torch.randint(0, C, (N,), generator=gen), torch.randint(0, C, (N,), generator=gen)
    return mixup_targets(torch.rand(N, generator=gen, dtype=torch.float64), i, j, C)


def scipy_one(W: np.ndarray, y: np.ndarray, lam_h: float, method: str) -> np.ndarray:
    """One problem with scipy.optimize in h (R^d), from h = 0, as tightly as the method allows."""

    def f(h):
        z = W @ h
        lse = np.logaddexp.reduce(z)
        return lse - y @ z + 0.5 * lam_h * h @ h, W.T @ (np.exp(z - lse) - y) + lam_h * h

    def hessp(h, v):
        z = W @ h
        p = np.exp(z - np.logaddexp.reduce(z))
        u = W @ v
        return W.T @ (p * u - p * (p @ u)) + lam_h * v

    if method == "L-BFGS-B":
        opts = {"gtol": 1e-10, "ftol": 1e-15, "maxiter": 10000}
        return optimize.minimize(f, np.zeros(W.shape[1]), jac=True, method=method, options=opts).x
    return optimize.minimize(f, np.zeros(W.shape[1]), jac=True, hessp=hessp, method=method, options={"gtol": 1e-12}).x


def loosest(ladder: dict[float, tuple[float, float]], g_max: float, rel_max: float) -> float:
    """The loosest tolerance whose (max |grad|, max rel diff) are both within the given ones."""
    return next((t for t, (g, r) in ladder.items() if g <= g_max and r <= rel_max), 1e-12)


def ours_at(times: dict, W: torch.Tensor, Y: torch.Tensor, lam_h: float, tol: float, threads: int) -> float:
    """Best of 3 seconds of ours at ``tol`` with ``threads`` torch threads, measured once per pair."""
    if (tol, threads) not in times:
        torch.set_num_threads(threads)
        times[tol, threads] = timed(lambda: optimal_features(W, Y, lam_h, tol=tol), 3)[0]
    return times[tol, threads]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=100_000, help="problems for the general solver")
    parser.add_argument("--scipy-samples", type=int, default=200, help="problems solved one at a time by scipy")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []

    # 1. Figure 6 in closed form
    C, d, m, lam_h = 10, 100, 3.0, 1e-6
    W = simplex_etf(C, d, m)
    lam = sample_lambdas(1.0, 5000, 0)

    WP = W.numpy() @ projection_matrix(W[[5, 6, 9]]).T  # (C, 2)

    def figure6():  # roots, features of both panels (as coefficients on W's rows), projected
        i, ip, lams = pair_grid([5, 6, 9], lam)
        A = theorem_coefficients(C, m, lam_h, i, ip, lams)
        A_amp = amplified_coefficients(A, i, ip, lams)
        return (A - A.mean(0)) @ WP, (A_amp - A_amp.mean(0)) @ WP

    t_fig, _ = timed(figure6, 5)
    t_roots, _ = timed(lambda: different_class_logits(lam, C, m, lam_h), 5)
    t_loss, _ = timed(lambda: monte_carlo_loss(C, d, m, lam_h, 1.0, [5, 6, 9], 5000, 0), 3)
    rows += [
        ("figure 6: roots K_lambda, <w_i,h> (5000 lambdas)", t_roots, ""),
        ("figure 6: roots + both panels' features, projected", t_fig, "5000 lambdas x 9 pairs x 2 panels"),
        ("figure 6: Monte Carlo loss of one panel", t_loss, "45,000 features, explicit CE + decay"),
    ]

    # 2. General solver vs scipy, C = 100, d = 512
    C, d, N, lam_h = 100, 512, args.samples, 5e-4
    gen = torch.Generator().manual_seed(0)
    cases = {
        "random W": torch.randn(C, d, generator=gen, dtype=torch.float64) * 3 / math.sqrt(d),
        "ETF W": simplex_etf(C, d, 3.0),
    }
    for name, Wc in cases.items():
        Y = random_mixup_targets(N, C, 1)
        n_sp = args.scipy_samples
        ours = {}  # threads -> seconds at the default tol
        for k in THREAD_COUNTS:
            torch.set_num_threads(k)
            ours[k], H = timed(lambda Wc=Wc, Y=Y: optimal_features(Wc, Y, lam_h), 3)
            g_ours = feature_gradient(Wc, H, Y, lam_h).norm(dim=1).max().item()
            rows.append(
                (
                    f"solver {name}: {N:,} samples, C={C}, d={d}, {k} thread{'s' if k > 1 else ''}",
                    ours[k],
                    f"{ours[k] / N * 1e6:.0f} us/problem; max |grad| {g_ours:.1e}",
                )
            )
        best_g, best_rel, per_sp_best = math.inf, math.inf, math.inf  # the best of the scipy methods
        scipy_runs = {}  # method -> (seconds per problem, max |grad|, max rel diff to ours)
        for method in ("L-BFGS-B", "trust-ncg"):
            with threadpool_limits(limits=1):
                t_sp, Hs = timed(
                    lambda Wc=Wc, Y=Y, method=method, n_sp=n_sp: np.stack(
                        [scipy_one(Wc.numpy(), Y[k].numpy(), lam_h, method) for k in range(n_sp)]
                    )
                )
            Hs = torch.as_tensor(Hs)
            per_sp = t_sp / n_sp
            per_sp_best = min(per_sp_best, per_sp)
            rel = ((H[:n_sp] - Hs).norm(dim=1) / H[:n_sp].norm(dim=1)).max().item()
            df = (feature_objective(Wc, H[:n_sp], Y[:n_sp], lam_h) - feature_objective(Wc, Hs, Y[:n_sp], lam_h)).max()
            g_sp = feature_gradient(Wc, Hs, Y[:n_sp], lam_h).norm(dim=1).max().item()
            best_g, best_rel = min(best_g, g_sp), min(best_rel, rel)
            scipy_runs[method] = (per_sp, g_sp, rel)
            faster = ", ".join(f"{per_sp / (t / N):.0f}x with {k}" for k, t in ours.items())
            rows.append(
                (
                    f"  scipy {method}, one at a time ({n_sp} problems)",
                    t_sp,
                    f"{per_sp * 1e3:.2f} ms/problem: ours is faster by {faster} thread(s); "
                    f"max |grad| {g_sp:.1e}; max rel diff to ours {rel:.1e}; "
                    f"objective ours - scipy <= {float(df):.1e}",
                )
            )
        # equal accuracy: ours at the loosest tolerance at which it is at least as accurate (max
        # |grad|, and distance to our default solution, no larger) as the scipy result it is
        # compared with; the accuracy does not depend on the threads. Two comparisons: each method
        # against ours at its own accuracy, and (stricter) the fastest method against ours at the
        # accuracy of the most accurate one.
        ladder = {}  # tol -> (max |grad|, max rel diff)
        for tol in (1e-5, 1e-6, 1e-7, 1e-8, 1e-9, 1e-10, 1e-12):
            H_eq = optimal_features(Wc, Y, lam_h, tol=tol)
            g_eq = feature_gradient(Wc, H_eq, Y, lam_h).norm(dim=1).max().item()
            ladder[tol] = (g_eq, ((H_eq - H).norm(dim=1) / H.norm(dim=1)).max().item())
            if g_eq <= best_g and ladder[tol][1] <= best_rel:
                break
        times = {}  # (tol, threads) -> seconds, best of 3
        comparisons = [(f"{m}'s", m, *run) for m, run in scipy_runs.items()]
        comparisons.append(("scipy's", "the faster scipy method", per_sp_best, best_g, best_rel))
        for label, against, per_sp, g_sp, rel in comparisons:
            tol = loosest(ladder, g_sp, rel)
            for k in THREAD_COUNTS:
                t_eq = ours_at(times, Wc, Y, lam_h, tol, k)
                rows.append(
                    (
                        f"  ours at {label} accuracy (tol={tol:g}), {k} thread{'s' if k > 1 else ''}",
                        t_eq,
                        f"{t_eq / N * 1e6:.0f} us/problem: {per_sp / (t_eq / N):.0f}x faster than {against}; "
                        f"max |grad| {ladder[tol][0]:.1e} (scipy {g_sp:.1e}), "
                        f"max rel diff {ladder[tol][1]:.1e} (scipy {rel:.1e})",
                    )
                )

    width = max(len(r[0]) for r in rows)
    print(f"{'benchmark':<{width}}  {'seconds':>9}  notes")
    for name, t, note in rows:
        print(f"{name:<{width}}  {t:>9.4f}  {note}")
    print(f"threads: torch {', '.join(map(str, THREAD_COUNTS))} (ours, of {os.cpu_count()} cores), BLAS 1 (scipy)")


if __name__ == "__main__":
    main()
