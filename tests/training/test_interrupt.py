"""Ctrl-C and SIGTERM save the last finished epoch; the printed hint resumes it to the uninterrupted run's bits."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import untimed_rows
from mixcollapse.config import load_config
from mixcollapse.training.checkpoint import load_checkpoint
from mixcollapse.training.interrupt import TrainingInterrupted, stop_signals
from mixcollapse.training.loop import train
from mixcollapse.training.rundir import RunDirError

# Twelve short epochs, periodic checkpoints every 10: the signal lands after epoch 3, before the first one.
SETTINGS = (
    "data.train_limit=512",
    "train.batch_size=64",
    "model.hidden=32",
    "train.progress=false",
    "train.epochs=12",
    "train.checkpoint_every=10",
    "train.tensorboard=false",
)


def _result(run: Path) -> tuple[list[dict], dict]:
    return untimed_rows(run), load_checkpoint(run / "checkpoints" / "last.pt")["model"]


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _interrupted(run: Path, sig: int, after_epoch: int = 3) -> tuple[int, str]:
    """``mixcollapse train`` in a process of its own, sent ``sig`` once epoch ``after_epoch`` is logged."""
    cmd = [sys.executable, "-m", "mixcollapse", "train", "--out", str(run), *SETTINGS]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        # A shell starts background commands with SIGINT ignored, and the training rightly leaves an ignored signal
        # alone (nohup): give the child the default disposition, as an interactive terminal would.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith(f"epoch {after_epoch}/"):
            proc.send_signal(sig)
            break
    lines += proc.stdout.readlines()
    return proc.wait(), "".join(lines)


@pytest.mark.slow  # two interrupted trainings and their resumes, one reference: about 25 s
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_before_the_first_checkpoint_saves_and_the_printed_hint_resumes_bitwise(tmp_path, sig):
    straight = train(load_config("digits", SETTINGS), tmp_path / "straight")
    rows, weights = _result(straight)

    run = tmp_path / "cut"
    code, output = _interrupted(run, sig)
    assert code == 128 + sig, output
    saved = load_checkpoint(run / "checkpoints" / "last.pt")["epoch"]
    assert 3 <= saved < 10  # the epoch it stopped after, not a periodic checkpoint
    hints = re.findall(r"continue with: (mixcollapse train .*--resume)", output)
    assert hints and len(set(hints)) == 1, output  # the loop's line and the CLI's say the same
    assert f"epoch {saved} of 12 is saved" in output

    resumed = subprocess.run([sys.executable, "-m", *shlex.split(hints[0])], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming after epoch {saved}" in resumed.stdout + resumed.stderr
    got_rows, got_weights = _result(run)
    assert got_rows == rows
    assert _same(got_weights, weights)


def test_an_interrupt_in_process_writes_the_last_finished_epoch(tmp_path, tiny_config, monkeypatch):
    cfg = tiny_config("train.epochs=5", "train.checkpoint_every=0")
    from mixcollapse.training import loop

    real = loop._run_epoch

    def run_epoch(run, epoch, *args, **kwargs):
        if epoch == 3:
            raise TrainingInterrupted(signal.SIGTERM)  # as the handler would, in the middle of epoch 3
        return real(run, epoch, *args, **kwargs)

    monkeypatch.setattr(loop, "_run_epoch", run_epoch)
    with pytest.raises(TrainingInterrupted):
        train(cfg, tmp_path / "run")
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["epoch"] == 2
    monkeypatch.setattr(loop, "_run_epoch", real)
    train(cfg, tmp_path / "run", resume=True)
    (rows, weights), (straight_rows, straight_weights) = _result(tmp_path / "run"), _result(train(cfg, tmp_path / "s"))
    assert rows == straight_rows and _same(weights, straight_weights)


def test_an_interrupt_in_the_first_epoch_says_the_resume_starts_from_the_beginning(
    tmp_path, tiny_config, caplog, monkeypatch
):
    from mixcollapse.training import loop

    def run_epoch(*args, **kwargs):
        raise TrainingInterrupted(signal.SIGINT)

    monkeypatch.setattr(loop, "_run_epoch", run_epoch)
    with pytest.raises(TrainingInterrupted), caplog.at_level("INFO", logger="mixcollapse"):
        train(tiny_config("train.epochs=2"), tmp_path / "run")
    assert "nothing to save" in caplog.text
    assert not (tmp_path / "run" / "checkpoints" / "last.pt").exists()
    monkeypatch.undo()
    caplog.clear()
    with caplog.at_level("INFO", logger="mixcollapse"):
        train(tiny_config("train.epochs=2"), tmp_path / "run", resume=True)
    assert "has no checkpoint yet, so the run starts from the beginning" in caplog.text


def test_stop_signals_raise_in_the_block_and_the_old_handlers_come_back():
    before = signal.getsignal(signal.SIGTERM)
    with stop_signals(), pytest.raises(TrainingInterrupted) as err:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises as soon as the signal arrives
    assert err.value.signum == signal.SIGTERM and err.value.exit_code == 143
    assert signal.getsignal(signal.SIGTERM) == before


# ---- resume with the run's own config --------------------------------------------------------------


def test_resume_without_a_preset_continues_with_the_saved_config(tmp_path):
    from mixcollapse.cli.main import main

    run = tmp_path / "run"
    settings = [*SETTINGS[:-3], "train.epochs=4", "train.checkpoint_every=1", "train.tensorboard=false"]
    assert main(["train", "--out", str(run), *settings, "train.progress=false"]) == 0
    straight_rows, straight_weights = _result(run)
    cut = tmp_path / "cut"
    train(load_config("digits", settings), cut, stop_after_epoch=2)
    assert main(["train", "--out", str(cut), "--resume"]) == 0  # no preset, no override: the run's own config
    rows, weights = _result(cut)
    assert rows == straight_rows and _same(weights, straight_weights)


def test_resume_accepts_bookkeeping_overrides_and_refuses_a_changed_result(tmp_path, tiny_config):
    cfg = tiny_config("train.epochs=3", "train.checkpoint_every=1")
    train(cfg, tmp_path / "run", stop_after_epoch=1)
    train(
        tiny_config("train.epochs=3", "train.checkpoint_every=2", "train.progress=false"), tmp_path / "run", resume=True
    )  # checkpointing and progress output change nothing that is trained
    with pytest.raises(RunDirError, match=r"train\.lr: 0\.1 -> 0\.2"):
        train(tiny_config("train.epochs=3", "train.lr=0.2"), tmp_path / "run", resume=True)


def test_a_constant_schedule_run_extended_on_resume_is_the_longer_run(tmp_path, tiny_config):
    short = train(tiny_config("train.schedule=constant", "train.epochs=2"), tmp_path / "run")
    train(tiny_config("train.schedule=constant", "train.epochs=4"), short, resume=True)
    longer = train(tiny_config("train.schedule=constant", "train.epochs=4"), tmp_path / "longer")
    assert _result(short)[0] == _result(longer)[0]
    assert _same(_result(short)[1], _result(longer)[1])


def test_a_step_schedule_run_is_not_extended_and_the_error_says_why(tmp_path, tiny_config):
    run = train(tiny_config("train.epochs=2"), tmp_path / "run")
    with pytest.raises(RunDirError, match=r"train\.epochs: 2 -> 4.*a longer run with this schedule is a new run"):
        train(tiny_config("train.epochs=4"), run, resume=True)
