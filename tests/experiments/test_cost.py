"""The GPU bill of the paper: shared runs counted once, sweeps point by point."""

from __future__ import annotations

import pytest

from mixcollapse.experiments.cost import estimate_gpu_hours, trainings
from mixcollapse.experiments.paper import EXPERIMENTS, RunKey


def run_key(name: str) -> RunKey:
    """``"wrn-cifar10-mixup"`` as a RunKey."""
    return RunKey(*name.split("-", 2))


def test_gpu_estimates_count_shared_runs_once():
    single = {n: estimate_gpu_hours([n]) for n in EXPERIMENTS}
    everything = estimate_gpu_hours(list(EXPERIMENTS))
    assert all(h > 0 for h in single.values())
    assert max(single.values()) < everything < sum(single.values())
    assert single["table1"] == pytest.approx(single["fig8"])  # the same runs
    assert estimate_gpu_hours(["fig1"], "H100") < single["fig1"]
    assert dict(trainings([run_key("wrn-cifar10-baseline")])) == {
        run_key("wrn-cifar10-mixup"): 10,
        run_key("wrn-cifar10-baseline"): 1,
    }
