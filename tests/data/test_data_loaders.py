"""build_loaders: seeded shuffling, ordered test set, tiny sets, distributed samplers; both pipelines."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist

from mixcollapse.config import DataConfig
from mixcollapse.data.batches import set_epoch
from mixcollapse.data.datasets import ShardSampler, build_datasets, build_loaders


def bundle(limit: int = 50):
    return build_datasets(DataConfig(train_limit=limit, test_limit=30))


def epoch(loader) -> torch.Tensor:
    return torch.cat([x.flatten(1) for x, _ in loader])


@pytest.mark.parametrize("pipeline", ["tensor", "loader"])
def test_same_seed_same_order(pipeline):
    b = bundle()
    first, _ = build_loaders(b, 8, seed=5, pipeline=pipeline)
    second, _ = build_loaders(b, 8, seed=5, pipeline=pipeline)
    other, _ = build_loaders(b, 8, seed=6, pipeline=pipeline)
    assert torch.equal(epoch(first), epoch(second))
    assert not torch.equal(epoch(first), epoch(other))
    assert len(first) == 6  # drop_last: 50 // 8


@pytest.mark.parametrize("pipeline", ["tensor", "loader"])
def test_test_loader_keeps_order_and_everything(pipeline):
    b = bundle()
    _, test = build_loaders(b, 8, pipeline=pipeline)
    labels = torch.cat([y for _, y in test])
    assert labels.tolist() == [b.test[i][1] for i in range(30)]


@pytest.mark.parametrize("pipeline", ["tensor", "loader"])
def test_tiny_set_keeps_its_only_batch(pipeline):
    train, _ = build_loaders(bundle(limit=5), 128, pipeline=pipeline)
    assert len(train) == 1 and len(next(iter(train))[1]) == 5


def test_shard_sampler_is_disjoint_and_complete():
    shards = [list(ShardSampler(10, rank=r, world=3)) for r in range(3)]
    assert sorted(sum(shards, [])) == list(range(10)) and [len(s) for s in shards] == [4, 3, 3]


@pytest.mark.parametrize("pipeline", ["tensor", "loader"])
def test_distributed_single_process(tmp_path, pipeline):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        b = bundle()
        train, test = build_loaders(b, 8, seed=1, distributed=True, pipeline=pipeline)
        set_epoch(train, 0)
        a = epoch(train)
        assert torch.equal(a, epoch(train))  # the order is a function of the epoch
        set_epoch(train, 1)
        assert not torch.equal(a, epoch(train))
        assert len(torch.cat([y for _, y in test])) == 30
        if pipeline == "loader":
            assert isinstance(test.sampler, ShardSampler) and len(test.dataset) == len(test.sampler) == 30
    finally:
        dist.destroy_process_group()
