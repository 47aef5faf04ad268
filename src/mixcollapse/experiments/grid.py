"""Grids of hyper-parameters (Appendix B.1's sweeps): ``--grid`` text to values, points and their names.

Syntax (one ``--grid`` per key; the grid is the product of all keys, in the order given)::

    train.lr=logspace(0.01,0.25,10)        10 log-spaced values from 0.01 to 0.25, both included
    train.weight_decay=linspace(0,0.05,3)  3 evenly spaced values: 0, 0.025, 0.05
    train.weight_decay=[0,0.05]            a YAML list
    mixing.alpha=0.4                        one value

``logspace``/``linspace`` values are rounded to 4 significant digits, so that a run's name and its
config hold the same number. A run is named by its values, e.g. ``lr=0.0143_wd=0.025``.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Sequence
from typing import Any

import yaml

SHORT_NAMES = {"train.lr": "lr", "train.weight_decay": "wd", "mixing.alpha": "alpha", "train.batch_size": "bs"}


def _sig4(x: float) -> float:
    return float(f"{x:.4g}")


def parse_values(spec: str) -> list:
    """``logspace(a,b,n)``, ``linspace(a,b,n)``, a YAML list or one YAML value -> list of values."""
    match = re.fullmatch(r"\s*(logspace|linspace)\((.*)\)\s*", spec)
    if match:
        kind, args = match.group(1), [a.strip() for a in match.group(2).split(",")]
        try:
            lo, hi, n = float(args[0]), float(args[1]), int(args[2])
            if len(args) != 3:
                raise ValueError
        except (ValueError, IndexError):
            raise ValueError(f"'{spec}' must be {kind}(start,stop,count) with numbers and an integer count") from None
        if n < 1:
            raise ValueError(f"'{spec}': the count must be >= 1")
        if kind == "logspace" and (lo <= 0 or hi <= 0):
            raise ValueError(f"'{spec}': logspace needs positive start and stop")
        if n == 1:
            return [_sig4(lo)]
        if kind == "logspace":
            a, b = math.log(lo), math.log(hi)
            return [_sig4(math.exp(a + (b - a) * i / (n - 1))) for i in range(n)]
        return [_sig4(lo + (hi - lo) * i / (n - 1)) for i in range(n)]
    try:
        value = yaml.safe_load(spec)
    except yaml.YAMLError:
        raise ValueError(f"grid values '{spec}' are neither logspace(...), linspace(...) nor YAML") from None
    values = list(value) if isinstance(value, list) else [value]
    if not values:
        raise ValueError(f"grid values '{spec}' are empty")
    return values


def parse_grid(specs: Sequence[str]) -> dict[str, list]:
    """``["train.lr=logspace(0.01,0.25,10)", ...]`` -> ``{"train.lr": [0.01, ...], ...}`` (order kept)."""
    grid: dict[str, list] = {}
    for spec in specs:
        key, sep, raw = spec.partition("=")
        key = key.strip()
        if not sep or not key or "." not in key:
            raise ValueError(f"grid '{spec}' must look like section.key=values, e.g. train.lr=logspace(0.01,0.25,10)")
        if key in grid:
            raise ValueError(f"grid key '{key}' is given twice")
        grid[key] = parse_values(raw)
    return grid


def grid_points(grid: dict[str, list]) -> list[dict[str, Any]]:
    """Every combination of the grid's values, the last key varying fastest."""
    keys = list(grid)
    return [dict(zip(keys, values, strict=False)) for values in itertools.product(*(grid[k] for k in keys))]


def point_overrides(point: dict[str, Any]) -> list[str]:
    """``{"train.lr": 0.01}`` -> ``["train.lr=0.01"]`` (values as JSON, which YAML reads back exactly)."""
    return [f"{k}={json.dumps(v)}" for k, v in point.items()]


def point_name(point: dict[str, Any]) -> str:
    """A run directory name for a grid point: ``lr=0.0143_wd=0.025``."""
    parts = []
    for key, value in point.items():
        short = SHORT_NAMES.get(key, key.rsplit(".", 1)[-1])
        text = f"{value:g}" if isinstance(value, float) else str(value)
        parts.append(f"{short}={text}")
    return re.sub(r"[^A-Za-z0-9=._+,-]", "-", "_".join(parts)) or "run"
