"""Argument checks shared by the theory modules: one clear ValueError per bad parameter."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def check_classes(num_classes: int) -> int:
    """C >= 2 (a mixup pair needs two classes to mix)."""
    if int(num_classes) != num_classes or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes}; use at least two classes")
    return int(num_classes)


def check_dim(dim: int, num_classes: int) -> int:
    """d >= C-1, the smallest dimension a simplex ETF of C classes fits in (section 3)."""
    if int(dim) != dim or dim < num_classes - 1:
        raise ValueError(f"dim must be an integer >= num_classes - 1 = {num_classes - 1}, got {dim}; raise --dim")
    return int(dim)


def check_positive(name: str, value: float) -> float:
    """A finite number > 0 (weight decays, alpha)."""
    if not (isinstance(value, (int, float, np.floating, np.integer)) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value}")
    return float(value)


def check_multiplier(m: float) -> float:
    """The ETF multiplier m is a non-zero finite real (eq. 3); only m^2 enters the optimal features."""
    if not (isinstance(m, (int, float, np.floating, np.integer)) and math.isfinite(m) and m != 0):
        raise ValueError(f"the ETF multiplier m must be a non-zero finite number, got {m}")
    return float(m)


def check_lambdas(lam: float | Sequence[float] | np.ndarray) -> np.ndarray:
    """Mixing coefficients as a float64 array, each in [0, 1]."""
    arr = np.asarray(lam, dtype=np.float64)
    if arr.size and not np.all((arr >= 0) & (arr <= 1)):
        bad = arr[~((arr >= 0) & (arr <= 1))].ravel()[0]
        raise ValueError(f"every mixing coefficient lambda must lie in [0, 1], got {bad}")
    return arr


def check_class_subset(classes: Sequence[int], num_classes: int) -> list[int]:
    """Distinct class indices in [0, C)."""
    out = []
    for c in classes:
        if int(c) != c or not 0 <= c < num_classes:
            raise ValueError(f"class index {c} is out of range; use indices in 0..{num_classes - 1}")
        out.append(int(c))
    if len(set(out)) != len(out):
        raise ValueError(f"class indices must be distinct, got {list(classes)}")
    if not out:
        raise ValueError("the class subset is empty; give at least one class index")
    return out


def check_ufm(num_classes: int, multiplier: float, weight_decay: float) -> tuple[int, float, float]:
    """(C, m, lambda_H) for the ETF unconstrained features model of Theorem 3.1."""
    return (
        check_classes(num_classes),
        check_multiplier(multiplier),
        check_positive("the feature weight decay lambda_H", weight_decay),
    )
