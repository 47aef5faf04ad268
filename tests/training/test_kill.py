"""kill -9 at random moments of a real training process, then resume: the result is bitwise the uninterrupted run.

Each kill lands after training has started (the "[train] starting" line), anywhere in the run: inside an epoch,
between an epoch's metrics line and its checkpoint, during a checkpoint write, or before the first checkpoint.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import untimed_rows
from mixcollapse.config import load_config
from mixcollapse.training.checkpoint import load_checkpoint
from mixcollapse.training.loop import train

pytestmark = pytest.mark.slow

SETTINGS = (
    "data.train_limit=768",
    "train.batch_size=64",
    "model.hidden=32",
    "train.progress=false",
    "train.epochs=8",
    "train.checkpoint_every=1",
)
KILLS = {"tensor": 7, "loader": 4}  # the default pipeline more often; each kill and resume costs about 8 s


def _data(pipeline: str) -> list[str]:
    return [f"data.pipeline={pipeline}", f"data.num_workers={2 if pipeline == 'loader' else 0}"]


def _train(out: Path, pipeline: str) -> subprocess.Popen:
    """``mixcollapse train`` in a process of its own, to be killed."""
    cmd = [sys.executable, "-m", "mixcollapse", "train", "--out", str(out), *SETTINGS, *_data(pipeline)]
    return subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"}
    )


def _started(proc: subprocess.Popen) -> bool:
    for line in proc.stdout:
        if line.startswith("[train] starting"):
            return True
    return False


def _result(run: Path) -> tuple[list[dict], dict]:
    return untimed_rows(run), load_checkpoint(run / "checkpoints" / "last.pt")["model"]


def _config(pipeline: str):
    return load_config("digits", [*SETTINGS, *_data(pipeline)])


@pytest.mark.parametrize("pipeline", ["tensor", "loader"])  # loader: with two worker processes
def test_kill_9_at_random_moments_then_resume_equals_the_uninterrupted_run(tmp_path, pipeline):
    tic = time.monotonic()
    train(_config(pipeline), tmp_path / "straight")  # the same code in process: the reference
    training_seconds = time.monotonic() - tic
    rows, weights = _result(tmp_path / "straight")
    assert len(rows) == 8

    rng = random.Random(pipeline)
    for k in range(KILLS[pipeline]):
        run = tmp_path / f"killed-{k}"
        proc = _train(run, pipeline)
        assert _started(proc)
        time.sleep(rng.uniform(0.0, training_seconds))
        proc.kill()  # SIGKILL: no handler runs
        proc.wait()
        train(_config(pipeline), run, resume=True)
        got_rows, got_weights = _result(run)
        assert got_rows == rows, f"kill {k}: metrics differ"
        assert got_weights.keys() == weights.keys()
        assert all(torch.equal(got_weights[key], weights[key]) for key in weights), f"kill {k}: weights differ"
        assert not list((run / "checkpoints").glob(".*.tmp"))
