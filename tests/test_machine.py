"""What the machine and the process offer: cores, the torchrun environment, the device a setting means."""

from __future__ import annotations

import pytest
import torch

from mixcollapse import machine


def test_cores_and_cpu_name_are_read_without_torch():
    assert 1 <= machine.available_cores() <= (__import__("os").cpu_count() or 1)
    assert isinstance(machine.cpu_model(), str) and machine.cpu_model()


def test_env_info(monkeypatch):
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    assert machine.env_info() == machine.DistInfo(0, 1, 0) and not machine.env_info().distributed
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    info = machine.env_info()
    assert (info.rank, info.world_size, info.local_rank, info.distributed) == (3, 4, 1, True)
    monkeypatch.setenv("RANK", "x")
    with pytest.raises(ValueError, match="torchrun"):
        machine.env_info()


def test_pick_device():
    assert machine.pick_device("cpu") == torch.device("cpu")
    assert machine.pick_device(torch.device("cpu")) == torch.device("cpu")
    if torch.cuda.is_available():
        assert machine.pick_device("auto", local_rank=0) == torch.device("cuda:0")
    else:
        assert machine.pick_device("auto") == torch.device("cpu")
        with pytest.raises(ValueError, match="CUDA is not available"):
            machine.pick_device("cuda")
    with pytest.raises(ValueError, match="unknown device"):
        machine.pick_device("tpu")
