"""The training loop on the embedded digits: loss goes down, exact resume, DDP, run directories."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchmetrics.functional.classification import multiclass_calibration_error

from mixcollapse.config import MixingConfig, load_config
from mixcollapse.data.datasets import build_datasets, build_loaders
from mixcollapse.data.locate import DataError
from mixcollapse.mixing import build_mixing
from mixcollapse.training.checkpoint import CheckpointError, load_checkpoint, load_model
from mixcollapse.training.loop import evaluate, train, train_one_epoch
from mixcollapse.training.rundir import (
    RunDirError,
    append_metrics,
    holds_run,
    prepare_run_dir,
    read_config,
    read_metrics,
    truncate_metrics,
)

TIMING = ("epoch_seconds",)
GEOMETRY = ("norm_cv", "cos_mean", "cos_std", "etf_cos", "etf_distance", "num_classes")


def _without_timing(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in TIMING} for row in rows]


def _weights(run_dir: Path) -> dict:
    return load_checkpoint(run_dir / "checkpoints" / "last.pt")["model"]


# ---- training -----------------------------------------------------------------------------------


def test_short_run_lowers_the_loss_and_writes_the_run_directory(tmp_path, tiny_config):
    cfg = tiny_config("train.epochs=4", "train.lr=0.05", "train.checkpoint_every=0", "train.checkpoint_epochs=[2]")
    out = train(cfg, tmp_path / "run")
    assert out == tmp_path / "run"
    rows = read_metrics(out)
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
    expected = {
        "epoch",
        "train_loss",
        "train_accuracy",
        "test_loss",
        "test_accuracy",
        "test_ece",
        "lr",
        "epoch_seconds",
        *(f"classifier_{k}" for k in GEOMETRY),
    }
    assert expected <= set(rows[0])
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    assert rows[-1]["test_accuracy"] > 0.5  # ten classes: chance is 0.1
    assert 0 <= rows[-1]["test_ece"] <= 1
    assert [r["lr"] for r in rows] == pytest.approx([0.05, 0.005, 0.0005, 0.0005])  # milestones 1, 2, 4 of 4
    assert read_config(out) == cfg
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["epoch_0002.pt", "last.pt"]
    assert not (out / "figures").exists()  # nothing drawn at training time, no empty folder
    assert load_checkpoint(out / "checkpoints" / "epoch_0002.pt")["epoch"] == 2
    last = load_checkpoint(out / "checkpoints" / "last.pt")
    assert last["epoch"] == 4 and last["metrics"]["epoch"] == 4


def test_baseline_fixed_etf_mse_and_per_sample_mixup(tmp_path, tiny_config):
    cfg = tiny_config("train.epochs=1", "mixing.alpha=0", "model.fixed_etf=true", "train.loss=mse")
    before = load_config("digits", ["model.fixed_etf=true", "model.hidden=32"])
    from mixcollapse.models import build_model

    etf = build_model(before.model, 10, 1, 8).classifier.weight.detach().clone()
    run = train(cfg, tmp_path / "etf")
    assert torch.equal(_weights(run)["classifier.weight"], etf)  # frozen: never trained
    row = read_metrics(run)[0]
    assert row["classifier_etf_distance"] == pytest.approx(0.0, abs=1e-6)
    assert row["classifier_cos_mean"] == pytest.approx(-1 / 9, abs=1e-6)
    run = train(tiny_config("train.epochs=1", "mixing.per_sample=true", "mixing.alpha=0.4"), tmp_path / "ps")
    assert len(read_metrics(run)) == 1


def test_bf16_autocast_and_channels_last_run_on_cpu(tmp_path, tiny_config):
    cfg = tiny_config("train.epochs=1", "train.amp=bf16", "train.channels_last=true", "train.eval_every=5")
    row = read_metrics(train(cfg, tmp_path / "bf16"))[0]
    assert all(row[k] is not None and row[k] == row[k] for k in ("train_loss", "test_loss", "test_accuracy"))


@pytest.mark.parametrize("per_sample", [False, True])
def test_train_one_epoch_hands_the_loss_the_mixed_targets(per_sample):
    """Images that are their own one-hot label: a mixed image lam e_a + (1 - lam) e_b *is* its mixup target,
    so the target the loss receives must equal the input the model received, batch after batch."""
    C = 6
    y = torch.arange(48) % C
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(F.one_hot(y, C).float(), y),
        batch_size=8,
        shuffle=True,
        generator=torch.Generator().manual_seed(0),
    )
    seen_inputs, seen_targets = [], []
    model = torch.nn.Linear(C, C)
    model.register_forward_pre_hook(lambda module, args: seen_inputs.append(args[0].detach().clone()))

    def loss_fn(logits, target):
        seen_targets.append(target.detach().clone())
        return F.mse_loss(logits, target)

    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    train_one_epoch(
        model,
        loss_fn,
        optimizer,
        scheduler,
        loader,
        torch.device("cpu"),
        1,
        num_classes=C,
        mixing=build_mixing(MixingConfig(alpha=1.0, per_sample=per_sample)),
        rng=np.random.default_rng(0),
    )
    assert len(seen_targets) == len(seen_inputs) == 6
    for x, target in zip(seen_inputs, seen_targets, strict=True):
        torch.testing.assert_close(target, x, rtol=0, atol=1e-6)
    mixed = torch.cat(seen_targets)
    assert ((mixed > 1e-3) & (mixed < 1 - 1e-3)).any()  # really mixed, not one-hot


def test_evaluate_is_exact_over_the_whole_test_set(tiny_config):
    cfg = tiny_config("data.test_limit=101")
    bundle = build_datasets(cfg.data)
    _, test_loader = build_loaders(bundle, 32)
    torch.manual_seed(0)
    from mixcollapse.models import build_model

    model = build_model(cfg.model, 10, 1, 8).eval()
    got = evaluate(model, test_loader, torch.device("cpu"), 10)
    x = torch.stack([bundle.test[i][0] for i in range(len(bundle.test))])
    y = torch.tensor([bundle.test[i][1] for i in range(len(bundle.test))])
    with torch.no_grad():
        logits = model(x)
    assert len(y) == 101
    assert got["test_loss"] == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-5)
    assert got["test_accuracy"] == (logits.argmax(1) == y).sum().item() / 101
    probs = torch.softmax(logits.double(), dim=1)
    ece = multiclass_calibration_error(probs, y, 10, n_bins=15, norm="l1").item()
    assert got["test_ece"] == pytest.approx(ece, abs=1e-6)


# ---- resume -------------------------------------------------------------------------------------


MIXINGS = {  # every mixing method, as the tests of training and resumption run them
    "mixup": (),
    "manifold": ("mixing.method=manifold", "mixing.alpha=2.0"),
    "cutmix": ("mixing.method=cutmix",),
    "smoothing": ("mixing.method=none", "mixing.label_smoothing=0.1"),
}


@pytest.mark.parametrize(  # mixup in the fast set; the other methods' resumption with the slow tests
    "mixing", [m if m == "mixup" else pytest.param(m, marks=pytest.mark.slow) for m in MIXINGS]
)
def test_resume_after_interruption_equals_the_uninterrupted_run(tmp_path, tiny_config, mixing):
    cfg = tiny_config("train.epochs=4", "train.checkpoint_every=2", *MIXINGS[mixing])
    straight = train(cfg, tmp_path / "straight")
    cut = train(cfg, tmp_path / "cut", stop_after_epoch=3)  # killed after epoch 3, last checkpoint: epoch 2
    assert [r["epoch"] for r in read_metrics(cut)] == [1, 2, 3]
    assert load_checkpoint(cut / "checkpoints" / "last.pt")["epoch"] == 2
    train(cfg, cut, resume=True)  # drops epoch 3's line, trains epochs 3 and 4 again
    assert _without_timing(read_metrics(cut)) == _without_timing(read_metrics(straight))
    a, b = _weights(straight), _weights(cut)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow  # three short trainings (about 4 s); with loader workers starting every epoch about 10 s
@pytest.mark.parametrize("pipeline", ["tensor", "loader"])
def test_resume_with_random_crops_and_flips_equals_the_uninterrupted_run(tmp_path, tiny_config, pipeline):
    """CIFAR's augmentation, drawn by the tensor pipeline from its checkpointed generator, or by two loader workers
    seeded each epoch from the checkpointed loader generator: a resumed run sees the same augmentations."""
    from mixcollapse.data.fake import write_fake_cifar10

    write_fake_cifar10(tmp_path / "data", n_train=128, n_test=40)
    cfg = tiny_config(
        "data.name=cifar10",
        f"data.root={tmp_path / 'data'}",
        "data.num_workers=2",
        f"data.pipeline={pipeline}",
        "data.train_limit=128",
        "train.batch_size=32",
        "train.epochs=4",
        "train.checkpoint_every=2",
    )
    assert cfg.data.augment
    straight = train(cfg, tmp_path / "straight")
    cut = train(cfg, tmp_path / "cut", stop_after_epoch=3)
    train(cfg, cut, resume=True)
    assert _without_timing(read_metrics(cut)) == _without_timing(read_metrics(straight))
    a, b = _weights(straight), _weights(cut)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_run_stopped_until_an_epoch_is_the_first_epochs_of_the_full_run_and_continues_to_it(tmp_path, tiny_config):
    """Successive halving's rungs: ``until_epoch`` keeps the full run's schedule and writes the rung's checkpoint
    (here no checkpoint is due at epoch 2), and a resume goes on to the same end."""
    cfg = tiny_config("train.epochs=4", "train.checkpoint_every=0", "train.schedule=cosine")
    straight = train(cfg, tmp_path / "straight")
    rung = train(cfg, tmp_path / "rung", until_epoch=2)
    assert _without_timing(read_metrics(rung)) == _without_timing(read_metrics(straight))[:2]
    assert read_metrics(rung)[1]["lr"] == read_metrics(straight)[1]["lr"] > read_metrics(straight)[2]["lr"]
    assert load_checkpoint(rung / "checkpoints" / "last.pt")["epoch"] == 2
    train(cfg, rung, resume=True, until_epoch=2)  # already there: nothing trains
    assert len(read_metrics(rung)) == 2
    train(cfg, rung, resume=True)
    assert _without_timing(read_metrics(rung)) == _without_timing(read_metrics(straight))
    a, b = _weights(straight), _weights(rung)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_without_a_checkpoint_starts_over_and_a_finished_run_returns(tmp_path, tiny_config):
    cfg = tiny_config("train.epochs=2", "train.checkpoint_every=0")
    reference = train(cfg, tmp_path / "ref")
    run = train(cfg, tmp_path / "run", stop_after_epoch=1)  # no checkpoint: checkpoint_every=0
    assert not (run / "checkpoints" / "last.pt").exists() and len(read_metrics(run)) == 1
    train(cfg, run, resume=True)
    assert _without_timing(read_metrics(run)) == _without_timing(read_metrics(reference))
    before = (run / "metrics.jsonl").read_text()
    train(cfg, run, resume=True)  # finished: nothing to do
    assert (run / "metrics.jsonl").read_text() == before


def test_a_failed_start_never_blocks_its_retry(tmp_path, tiny_config):
    """Missing data is found before anything is written; a start that fails later but before its first
    checkpoint (Ctrl-C, a divergence) leaves config.yaml and metrics rows but no run: a plain rerun takes it over."""
    run = tmp_path / "run"
    with pytest.raises(DataError):
        train(tiny_config("data.name=fashionmnist", f"data.root={tmp_path / 'none'}"), run)
    assert not run.exists()  # nothing is written before the data and the model are built
    cfg = tiny_config("train.epochs=2", "train.checkpoint_every=0")
    train(cfg, run, stop_after_epoch=1)  # killed after one epoch, before any checkpoint
    assert len(read_metrics(run)) == 1 and not holds_run(run)
    train(cfg, run)  # no --resume needed, nothing refused
    reference = train(cfg, tmp_path / "ref")
    assert _without_timing(read_metrics(run)) == _without_timing(read_metrics(reference))  # each epoch once
    assert read_config(run) == cfg and holds_run(run)
    with pytest.raises(RunDirError, match="already holds a run"):
        train(cfg, run)


def test_resume_refuses_another_config(tmp_path, tiny_config):
    run = train(tiny_config("train.epochs=1"), tmp_path / "run")
    with pytest.raises(RunDirError, match=r"train\.lr: 0\.1 -> 0\.2"):
        train(tiny_config("train.epochs=1", "train.lr=0.2"), run, resume=True)
    with pytest.raises(RunDirError, match="epochs"):
        train(tiny_config("train.epochs=2"), run, resume=True)
    # fields that do not change what is trained may differ; config.yaml then holds the new values
    free = tiny_config("train.epochs=1", "train.progress=true", "train.device=cpu", "analysis.seed=5")
    train(free, run, resume=True)
    assert read_config(run) == free


def test_resume_checks_the_checkpoint_config(tmp_path, tiny_config):
    cfg = tiny_config("train.epochs=2", "train.checkpoint_every=1")
    run = train(cfg, tmp_path / "run", stop_after_epoch=1)
    (run / "config.yaml").unlink()  # config.yaml lost: the checkpoint's own config still guards resume
    with pytest.raises(CheckpointError, match="another config"):
        train(tiny_config("train.epochs=2", "train.checkpoint_every=1", "mixing.alpha=0.2"), run, resume=True)


# ---- run directory ------------------------------------------------------------------------------


def test_a_new_run_refuses_a_directory_holding_a_run(tmp_path, tiny_config):
    cfg = tiny_config()
    prepare_run_dir(tmp_path / "run", cfg)
    prepare_run_dir(tmp_path / "run", cfg)  # no checkpoint yet: not a run, taken over
    (tmp_path / "run" / "checkpoints" / "epoch_0001.pt").write_bytes(b"")  # now something to resume from
    with pytest.raises(RunDirError) as err:
        prepare_run_dir(tmp_path / "run", cfg)
    message = str(err.value)
    assert message == (
        f"run directory {tmp_path / 'run'} already holds a run; pass --resume (resume=True) to continue it or choose "
        "another --out (run_dir)"
    )
    prepare_run_dir(tmp_path / "run", cfg, resume=True)  # same config: fine
    (tmp_path / "empty").mkdir()
    prepare_run_dir(tmp_path / "empty", cfg)  # an empty directory is not a run
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunDirError, match="is a file"):
        prepare_run_dir(tmp_path / "file", cfg)


def test_metrics_file_helpers(tmp_path):
    for epoch in (1, 2, 3):
        append_metrics(tmp_path, {"epoch": epoch, "loss": float("nan") if epoch == 2 else 0.5})
    assert read_metrics(tmp_path)[1]["loss"] is None  # strict JSON: NaN is written as null
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 4, "lo')  # cut off by a kill
    assert [r["epoch"] for r in read_metrics(tmp_path)] == [1, 2, 3]
    truncate_metrics(tmp_path, 2)
    assert (tmp_path / "metrics.jsonl").read_text().count("\n") == 2
    assert [r["epoch"] for r in read_metrics(tmp_path)] == [1, 2]
    with pytest.raises(RunDirError, match="does not exist"):
        read_metrics(tmp_path / "missing")


# ---- DDP ----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_two_process_gloo_ddp_run_through_the_cli(tmp_path, torchrun):
    """torchrun --nproc_per_node 2 -m mixcollapse train: rank 0 writes, evaluation is exact."""
    out = tmp_path / "ddp"
    overrides = ["train.epochs=2", "train.batch_size=64", "data.train_limit=384", "data.test_limit=121",
                 "model.hidden=32", "train.progress=false", "train.device=cpu", "train.checkpoint_every=1"]  # fmt: skip
    proc = torchrun(["-m", "mixcollapse", "train", "--preset", "digits", "--out", str(out), *overrides])
    rows = read_metrics(out)
    assert [r["epoch"] for r in rows] == [1, 2]  # one line per epoch: rank 0 only
    assert rows[1]["train_loss"] < rows[0]["train_loss"]
    state = load_checkpoint(out / "checkpoints" / "last.pt")
    assert state["epoch"] == 2 and state["world_size"] == 2 and len(state["rng"]) == 2
    assert not any(k.startswith("module.") for k in state["model"])  # the unwrapped model
    assert (proc.stdout + proc.stderr).count("epoch 2/2") == 1  # one summary line per epoch, from rank 0
    # Sharded evaluation with rank 0's buffers = one process evaluating the saved model on the whole set.
    model, cfg = load_model(out)
    _, test_loader = build_loaders(build_datasets(cfg.data), 64)
    single = evaluate(model, test_loader, torch.device("cpu"), 10)
    assert rows[1]["test_accuracy"] == single["test_accuracy"]
    assert rows[1]["test_loss"] == pytest.approx(single["test_loss"], rel=1e-6)
    assert rows[1]["test_ece"] == pytest.approx(single["test_ece"], abs=1e-9)
    json.dumps(rows)  # strict JSON


DDP_SCRIPT = """
import sys
from mixcollapse.config import load_config
from mixcollapse.training.loop import train

cfg = load_config("digits", sys.argv[4:])
train(cfg, sys.argv[1], resume=sys.argv[3] == "resume", stop_after_epoch=int(sys.argv[2]) or None)
"""


@pytest.mark.slow
@pytest.mark.parametrize("mixing", ["mixup", "manifold"])  # CutMix draws from the same per-rank stream as mixup
def test_two_process_resume_equals_the_uninterrupted_ddp_run(tmp_path, torchrun, mixing):
    """Per-rank RNG states (lambdas, partners, layers) and the sampler epoch survive a DDP resume; manifold
    mixup's hooks sit on the module DDP wraps."""
    script = tmp_path / "ddp_train.py"
    script.write_text(DDP_SCRIPT)
    overrides = ["train.epochs=3", "train.batch_size=64", "data.train_limit=256", "model.hidden=16",
                 "train.progress=false", "train.device=cpu", "train.checkpoint_every=1", *MIXINGS[mixing]]  # fmt: skip

    def launch(out: Path, stop: int, mode: str) -> None:
        torchrun([str(script), str(out), str(stop), mode, *overrides])

    launch(tmp_path / "straight", 0, "new")
    launch(tmp_path / "cut", 2, "new")
    launch(tmp_path / "cut", 0, "resume")
    assert _without_timing(read_metrics(tmp_path / "cut")) == _without_timing(read_metrics(tmp_path / "straight"))
    a, b = _weights(tmp_path / "straight"), _weights(tmp_path / "cut")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_run_too_long_for_this_cpu_says_so_once_and_workers_are_capped(tmp_path, tiny_config, caplog, monkeypatch):
    import logging

    from mixcollapse.training import loop

    monkeypatch.setattr(loop, "CPU_WARNING_SECONDS", 0.0)  # any run is "too long"
    monkeypatch.setattr(loop, "available_cores", lambda: 1)
    caplog.set_level(logging.INFO, logger="mixcollapse")
    train(tiny_config("train.epochs=2", "data.num_workers=4", "data.pipeline=loader"), tmp_path / "run")
    warnings = [r.message for r in caplog.records if "on this CPU an epoch takes about" in r.message]
    assert len(warnings) == 1 and "the 2 epochs left about" in warnings[0] and "wrn-fashionmnist-cpu" in warnings[0]
    assert any("data.num_workers=4 capped at the 1 available CPU cores" in r.message for r in caplog.records)


@pytest.mark.slow  # three torchrun agents, two processes each time: about 30 s
def test_two_nodes_on_localhost_equal_the_two_process_single_node_run(tmp_path, torchrun):
    """Two torchrun agents (one process each) meeting through c10d rendezvous, as two nodes of a cluster would:
    the same run, bitwise, as one agent with two processes."""
    import os
    import socket
    import subprocess
    import sys

    overrides = ["train.epochs=2", "train.batch_size=64", "data.train_limit=256", "model.hidden=16",
                 "train.progress=false", "train.device=cpu", "train.checkpoint_every=1"]  # fmt: skip
    train_args = ["-m", "mixcollapse", "train", "--preset", "digits", *overrides]
    torchrun([*train_args, "--out", str(tmp_path / "one-node")])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "CUDA_VISIBLE_DEVICES": "",
        "PYTHONPATH": os.pathsep.join(
            [str(Path(__file__).resolve().parents[2] / "src"), os.environ.get("PYTHONPATH", "")]
        ),
    }
    node = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes",
        "2",
        "--nproc_per_node",
        "1",
        "--rdzv-backend",
        "c10d",
        "--rdzv-endpoint",
        f"127.0.0.1:{port}",
        "--rdzv-id",
        "two-nodes",
        *train_args,
        "--out",
        str(tmp_path / "two-nodes"),
    ]
    agents = [
        subprocess.Popen(node, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(2)
    ]
    outputs = [agent.communicate(timeout=240)[0] for agent in agents]
    assert all(agent.returncode == 0 for agent in agents), outputs[0][-2000:] + outputs[1][-2000:]
    one, two = tmp_path / "one-node", tmp_path / "two-nodes"
    assert load_checkpoint(two / "checkpoints" / "last.pt")["world_size"] == 2
    assert _without_timing(read_metrics(two)) == _without_timing(read_metrics(one))
    a, b = _weights(one), _weights(two)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
