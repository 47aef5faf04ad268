"""The one rank-aware module: torchrun environment, devices, and single- and two-process helpers."""

from __future__ import annotations

import json
import textwrap

import pytest
import torch
from torch import nn

from mixcollapse.training import dist


def test_single_process_helpers_are_identities(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    info, device = dist.setup("cpu")
    try:
        assert info.world_size == 1 and device.type == "cpu"
        assert dist.is_main() and dist.rank() == 0 and dist.world_size() == 1 and not dist.is_distributed()
        t = torch.tensor([1.0, 2.0])
        assert dist.all_reduce_sum(t) is t and t.tolist() == [1.0, 2.0]
        assert dist.broadcast_object({"a": 1}) == {"a": 1}
        assert dist.all_gather_object(5) == [5]
        model = nn.Linear(2, 2)
        assert dist.wrap(model, device) is model and dist.unwrap(model) is model
        dist.barrier()
        dist.broadcast_buffers(model)
    finally:
        dist.cleanup()


WORKER = textwrap.dedent(
    """
    import json, sys, torch
    from torch import nn
    from mixcollapse.training import dist
    torch.set_num_threads(1)
    info, device = dist.setup("cpu")
    r = dist.rank()
    bn = nn.BatchNorm1d(2)
    bn.running_mean.fill_(float(r + 1))
    dist.broadcast_buffers(bn)
    model = dist.wrap(nn.Linear(2, 2), device)
    out = {
        "rank": r, "world": dist.world_size(), "main": dist.is_main(), "backend": torch.distributed.get_backend(),
        "sum": dist.all_reduce_sum(torch.tensor([float(r + 1)])).item(),
        "bcast": dist.broadcast_object("from0" if r == 0 else "other"),
        "gather": dist.all_gather_object(r * 10),
        "bn": bn.running_mean.tolist(),
        "ddp": type(model).__name__, "unwrapped": type(dist.unwrap(model)).__name__,
    }
    del model  # a DDP wrapper alive at exit keeps the process group (see dist.cleanup)
    dist.cleanup()
    with open(f"result_{r}.json", "w") as f:  # one file per rank: stdout lines of two processes interleave
        json.dump(out, f)
    """
)


@pytest.mark.slow  # two torchrun processes: about 6 s of start-up
def test_two_process_gloo_helpers(tmp_path, torchrun):
    """Two processes under torchrun talk through gloo; every helper gives the distributed answer."""
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    torchrun([str(script)])
    results = [json.loads((tmp_path / f"result_{r}.json").read_text()) for r in range(2)]
    for r, res in enumerate(results):
        assert res["rank"] == r and res["world"] == 2 and res["main"] == (r == 0) and res["backend"] == "gloo"
        assert res["sum"] == 3.0 and res["bcast"] == "from0" and res["gather"] == [0, 10]
        assert res["bn"] == [1.0, 1.0]  # rank 0's running statistics everywhere
        assert res["ddp"] == "DistributedDataParallel" and res["unwrapped"] == "Linear"
