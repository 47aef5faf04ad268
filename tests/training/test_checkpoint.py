"""One checkpoint dict: round trip through load_model, atomic writes, clear errors on bad files."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import mixcollapse
from mixcollapse.config import to_dict
from mixcollapse.models import build_model
from mixcollapse.training import checkpoint as ckpt_mod
from mixcollapse.training.checkpoint import (
    CheckpointError,
    build_checkpoint,
    capture_rng,
    find_checkpoint,
    load_checkpoint,
    load_model,
    restore_rng,
    save_checkpoint,
)
from mixcollapse.training.optim import build_optimizer, build_scheduler

SRC = str(Path(mixcollapse.__file__).resolve().parents[1])


def _state(cfg, epoch: int = 1, seed: int = 0):
    """A checkpoint dict of a freshly built digits model whose batch-norm statistics moved."""
    torch.manual_seed(seed)
    model = build_model(cfg.model, 10, 1, 8)
    model.train()
    model(torch.randn(16, 1, 8, 8))  # non-trivial running statistics
    opt = build_optimizer(cfg.train, model)
    sched = build_scheduler(cfg.train, opt, 4)
    rng = [capture_rng(np.random.default_rng(seed))]
    state = build_checkpoint(
        model=model,
        optimizer=opt,
        scheduler=sched,
        epoch=epoch,
        config=to_dict(cfg),
        model_args={"num_classes": 10, "in_channels": 1, "image_size": 8},
        rng=rng,
    )
    return model, state


def test_load_model_round_trip(tmp_path, tiny_config):
    cfg = tiny_config("model.fixed_etf=true")
    model, state = _state(cfg)
    path = save_checkpoint(state, tmp_path / "checkpoints" / "last.pt")
    loaded, loaded_cfg = load_model(tmp_path)  # a run directory
    assert loaded_cfg == cfg and not loaded.training
    x = torch.randn(5, 1, 8, 8)
    model.eval()
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
        assert torch.equal(loaded.features(x), model.features(x))
    assert not loaded.classifier.weight.requires_grad  # rebuilt from the config: still a frozen ETF
    again, _ = load_model(path)  # a checkpoint file
    assert all(
        torch.equal(a, b) for a, b in zip(again.state_dict().values(), loaded.state_dict().values(), strict=True)
    )
    read = load_checkpoint(path)
    assert read["epoch"] == 1 and read["version"] == ckpt_mod.VERSION and read["world_size"] == 1


def test_rng_states_round_trip():
    import random

    gen = np.random.default_rng(5)
    torch.manual_seed(1)
    random.seed(2)
    saved = capture_rng(gen)
    first = (torch.rand(3), gen.random(3), random.random())
    restore_rng(saved, gen)
    second = (torch.rand(3), gen.random(3), random.random())
    assert torch.equal(first[0], second[0]) and np.array_equal(first[1], second[1]) and first[2] == second[2]


def test_atomic_write_keeps_the_old_file_when_saving_fails(tmp_path, tiny_config, monkeypatch):
    cfg = tiny_config()
    _, old = _state(cfg, epoch=1)
    _, new = _state(cfg, epoch=2)
    path = tmp_path / "last.pt"
    save_checkpoint(old, path)
    save_checkpoint(new, path)  # overwrite
    assert load_checkpoint(path)["epoch"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no temp files left

    def broken_save(obj, f, *args, **kwargs):
        f.write(b"partial bytes")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(old, path)
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def _one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


def test_bad_checkpoints_give_one_line_errors(tmp_path, tiny_config):
    with pytest.raises(CheckpointError, match="not a file") as err:
        load_checkpoint(tmp_path / "missing.pt")
    _one_line(err)

    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(os.urandom(2048))
    with pytest.raises(CheckpointError, match="truncated or corrupt") as err:
        load_checkpoint(garbage)
    _one_line(err)

    _, state = _state(tiny_config())
    good = save_checkpoint(state, tmp_path / "good.pt")
    data = good.read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt") as err:
        load_checkpoint(cut)
    _one_line(err)

    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(CheckpointError, match="not a mixcollapse checkpoint") as err:
        load_checkpoint(foreign)
    _one_line(err)

    pickled = tmp_path / "pickled.pt"
    torch.save({"format": "mixcollapse-checkpoint", "model": torch.nn.Linear(2, 2)}, pickled)  # a module object
    with pytest.raises(CheckpointError, match="not a mixcollapse checkpoint") as err:
        load_checkpoint(pickled)
    _one_line(err)

    future = tmp_path / "future.pt"
    torch.save({**state, "version": 99}, future)
    with pytest.raises(CheckpointError, match="format version 99") as err:
        load_checkpoint(future)
    _one_line(err)
    assert isinstance(err.value, ValueError)  # the CLI turns ValueErrors into one clear line


def test_find_checkpoint(tmp_path, tiny_config):
    _, state = _state(tiny_config())
    folder = tmp_path / "checkpoints"
    save_checkpoint(state, folder / "last.pt")
    save_checkpoint(state, folder / "epoch_0002.pt")
    assert find_checkpoint(tmp_path) == folder / "last.pt"
    assert find_checkpoint(tmp_path, "epoch_0002") == folder / "epoch_0002.pt"
    assert find_checkpoint(tmp_path, "epoch_0002.pt") == folder / "epoch_0002.pt"
    assert find_checkpoint(folder / "epoch_0002.pt") == folder / "epoch_0002.pt"
    with pytest.raises(CheckpointError, match="available: epoch_0002.pt, last.pt"):
        find_checkpoint(tmp_path, "epoch_0100")
    with pytest.raises(CheckpointError, match="no checkpoint yet"):
        find_checkpoint(tmp_path / "checkpoints")
    with pytest.raises(CheckpointError, match="neither"):
        find_checkpoint(tmp_path / "nowhere")


def test_a_killed_writes_temp_files_go_when_the_run_starts_again(tmp_path, tiny_config):
    """kill -9 during a checkpoint write leaves .last.pt.XXXX.tmp; the next start or resume removes it."""
    from mixcollapse.training.rundir import checkpoint_dir, prepare_run_dir

    cfg = tiny_config("train.epochs=1")
    run = prepare_run_dir(tmp_path / "run", cfg)
    stale = checkpoint_dir(run) / ".last.pt.k3x9q1.tmp"
    stale.write_bytes(b"\0" * 1000)
    kept = checkpoint_dir(run) / "epoch_0001.pt"
    kept.write_bytes(b"not a temp file")
    prepare_run_dir(run, cfg, resume=True)
    assert not stale.exists() and kept.exists()


def test_a_full_disk_during_a_checkpoint_write_keeps_the_previous_one(tmp_path, tiny_config, full_disk, monkeypatch):
    """torch's writer turns the failed write into "unexpected pos ..."; the ENOSPC itself is raised, the
    previous checkpoint is intact and no temp file is left."""
    _, old = _state(tiny_config(), epoch=1)
    _, new = _state(tiny_config(), epoch=2)
    path = save_checkpoint(old, tmp_path / "last.pt")
    full_disk(4096)
    with pytest.raises(OSError) as err:
        save_checkpoint(new, path)
    monkeypatch.undo()
    assert err.value.errno == errno.ENOSPC
    assert load_checkpoint(path)["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_weights_that_do_not_fit_their_config_are_one_line(tmp_path, tiny_config):
    cfg = tiny_config()
    _, state = _state(cfg)
    wider = tiny_config("model.hidden=48")  # the config says 48 units, the weights have 32
    path = save_checkpoint({**state, "config": to_dict(wider)}, tmp_path / "last.pt")
    with pytest.raises(CheckpointError, match="weights do not fit the model its config describes") as err:
        load_model(path)
    assert "size mismatch" in _one_line(err)
