"""Jobs, slots and runners: GPUs split into slots, the commands they run, the runner a launch picks."""

from __future__ import annotations

import pytest

from mixcollapse.experiments.launch import (
    Job,
    Slot,
    job_environment,
    make_slots,
    parse_gpus,
    pick_runner,
    subprocess_runner,
    train_command,
)


def test_slots_and_commands(tmp_path):
    assert make_slots([], 1) == [Slot((), 1)]
    assert make_slots(["0", "1", "2", "3"], 2) == [Slot(("0", "1"), 2), Slot(("2", "3"), 2)]
    assert len(make_slots(["0", "1", "2"], 1)) == 3
    with pytest.raises(ValueError, match="needs as many GPUs"):
        make_slots(["0"], 2)
    assert parse_gpus("none") == [] and parse_gpus("0,3") == ["0", "3"]
    job = Job("x", tmp_path / "run", tmp_path / "x.yaml", tmp_path / "x.log", 2)
    single = train_command(job, Slot(("0",), 1))
    assert single[1:4] == ["-m", "mixcollapse", "train"] and "--resume" in single
    ddp = train_command(job, Slot(("0", "1"), 2))
    assert ddp[1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    assert job_environment(Slot(("2", "3"), 2))["CUDA_VISIBLE_DEVICES"] == "2,3"
    assert job_environment(Slot((), 1))["CUDA_VISIBLE_DEVICES"] == ""  # a CPU slot hides the GPUs
    assert pick_runner("auto", [Slot()]).__name__ == "inprocess_runner"
    assert pick_runner("auto", make_slots(["0", "1"], 1)) is subprocess_runner
    with pytest.raises(ValueError):
        pick_runner("inprocess", make_slots(["0"], 1))
