"""Vectorized safeguarded Newton for increasing scalar functions with a guaranteed bracket."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def solve_increasing(
    fun: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
    lo: np.ndarray,
    hi: np.ndarray,
    xtol: float = 4e-16,
    max_iter: int = 200,
) -> np.ndarray:
    """Root of each strictly increasing f on [lo, hi] with f(lo) <= 0 <= f(hi), elementwise.

    ``fun(x)`` returns (f(x), f'(x)). A Newton step that leaves the current bracket (or a
    non-finite one) is replaced by bisection, so the iteration always converges; it stops when
    every bracket is narrower than ``xtol * max(1, |x|)`` or f(x) == 0.
    """
    lo, hi = np.array(lo, dtype=np.float64), np.array(hi, dtype=np.float64)
    lo, hi = np.broadcast_arrays(lo, hi)
    lo, hi = lo.copy(), hi.copy()
    x = 0.5 * (lo + hi)
    done = np.zeros(x.shape, dtype=bool)
    for _ in range(max_iter):
        f, df = fun(x)
        tol = xtol * np.maximum(1.0, np.abs(x))
        done |= (f == 0) | (hi - lo <= tol)
        if np.all(done):
            break
        lo = np.where(f < 0, x, lo)
        hi = np.where(f > 0, x, hi)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            step = x - f / df
        inside = np.isfinite(step) & (step > lo) & (step < hi)
        x_new = np.where(inside, step, 0.5 * (lo + hi))
        # a Newton step this small has converged even if the far end of the bracket never moved
        small = inside & (np.abs(x_new - x) <= tol)
        x = np.where(done, x, x_new)
        done |= small
    return x
