"""The --grid syntax: values, points and their names."""

from __future__ import annotations

import pytest

from mixcollapse.experiments.grid import parse_grid, point_name


def test_grid_syntax():
    grid = parse_grid(
        [
            "train.lr=logspace(0.01,0.25,10)",
            "train.weight_decay=linspace(0,0.05,3)",
            "mixing.alpha=[0.4, 1.0]",
            "train.epochs=5",
        ]
    )
    lr = grid["train.lr"]
    assert len(lr) == 10 and lr[0] == 0.01 and lr[-1] == 0.25 and lr == sorted(lr)
    ratios = [b / a for a, b in zip(lr, lr[1:], strict=False)]
    assert max(ratios) / min(ratios) < 1.001  # log-spaced (4 significant digits)
    assert grid["train.weight_decay"] == [0.0, 0.025, 0.05]
    assert grid["mixing.alpha"] == [0.4, 1.0] and grid["train.epochs"] == [5]
    assert point_name({"train.lr": 0.0143, "train.weight_decay": 0.025}) == "lr=0.0143_wd=0.025"
    for bad in ("train.lr", "lr=0.1", "train.lr=logspace(0,1,3)", "train.lr=linspace(1,2)"):
        with pytest.raises(ValueError):
            parse_grid([bad])
    with pytest.raises(ValueError, match="twice"):
        parse_grid(["train.lr=0.1", "train.lr=0.2"])
