"""Shared fixtures: a tiny digits config that trains in well under a second per epoch on a CPU."""

from __future__ import annotations

import dataclasses
import errno
import os

import pytest

# One thread everywhere, subprocesses (torchrun workers, CLI runs) included: on a small shared CPU,
# OpenMP threads waiting for each other make tiny convolutions 10-50x slower; one is fast and
# deterministic.
os.environ.setdefault("OMP_NUM_THREADS", "1")

from mixcollapse.config import ExperimentConfig, load_config

# 384 training images (6 batches of 64), a 32-unit small CNN, no progress bar.
TINY_OVERRIDES = ("data.train_limit=384", "train.batch_size=64", "model.hidden=32", "train.progress=false")


@pytest.fixture
def tiny_config():
    """Factory: ``tiny_config("train.epochs=3", ...)`` -> the digits preset shrunk, plus overrides."""

    def make(*overrides: str) -> ExperimentConfig:
        return load_config("digits", [*TINY_OVERRIDES, *overrides])

    return make


def untimed_rows(run) -> list[dict]:
    """A run's metrics rows without their wall times: what a resumed or relaunched run must repeat bit for bit."""
    from mixcollapse.training.rundir import read_metrics

    return [{k: v for k, v in row.items() if k != "epoch_seconds"} for row in read_metrics(run)]


@pytest.fixture(scope="session")
def _tiny_run_once(tmp_path_factory):
    from mixcollapse.training.loop import train

    run = tmp_path_factory.mktemp("tiny-run") / "run"
    train(load_config("digits", [*TINY_OVERRIDES, *TINY_RUN_SETTINGS]), run, stop_after_epoch=1)
    return run


TINY_RUN_SETTINGS = ("train.epochs=2", "train.checkpoint_every=1")


@pytest.fixture
def tiny_run(_tiny_run_once, tmp_path):
    """A copy of one tiny digits run (TINY_OVERRIDES + TINY_RUN_SETTINGS) killed after epoch 1's checkpoint:
    trained once per session, copied for each test that changes it."""
    import shutil

    return shutil.copytree(_tiny_run_once, tmp_path / "tiny-run")


@pytest.fixture(autouse=True)
def single_thread():
    """Every test runs with one torch thread (see OMP_NUM_THREADS above)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def no_machine_datasets(monkeypatch):
    """Tests see only the data they write: $MIXCOLLAPSE_DATA and the system folders (Debian's FashionMNIST)
    are not searched, so a machine with the real data installed runs the same tests as one without.
    Tests of the real data use ``real_fashionmnist`` instead."""
    from mixcollapse.catalog import CATALOG, DATA_ENV

    monkeypatch.delenv(DATA_ENV, raising=False)
    for name in list(CATALOG):
        with_system_dirs(monkeypatch, name, ())


def with_system_dirs(monkeypatch, name: str, dirs: tuple[str, ...]):
    """The catalog's spec of ``name`` with ``dirs`` as its system folders, for the rest of the test."""
    from mixcollapse.catalog import CATALOG

    spec = CATALOG[name]
    if spec.files is not None:
        spec = dataclasses.replace(spec, files=dataclasses.replace(spec.files, system_dirs=tuple(dirs)))
        monkeypatch.setitem(CATALOG, name, spec)
    return spec


REAL_FASHIONMNIST = "/usr/share/datasets/fashion-mnist"


@pytest.fixture
def real_fashionmnist() -> str:
    """The folder of the real FashionMNIST (Debian's dataset-fashion-mnist); skips the test without it."""
    if not os.path.isfile(os.path.join(REAL_FASHIONMNIST, "train-images-idx3-ubyte.gz")):
        pytest.skip(
            f"the real FashionMNIST is not installed in {REAL_FASHIONMNIST} "
            "(apt-get install dataset-fashion-mnist; .ci/run installs it)"
        )
    return REAL_FASHIONMNIST


# gloo sometimes aborts a worker while the interpreter exits, after all its work is done and the
# process group is destroyed (rare, on a loaded machine): torch's teardown, not ours.
TEARDOWN_ABORT = "terminate called without an active exception"


@pytest.fixture
def torchrun(tmp_path):
    """``torchrun(args, nproc=2)`` runs ``python -m torch.distributed.run --standalone`` on CPU/gloo.

    Returns the CompletedProcess; fails the test on a non-zero exit, except for gloo's teardown
    abort (then it warns and the caller's checks on the written files decide).
    """
    import os
    import subprocess
    import sys
    import warnings
    from pathlib import Path

    import mixcollapse

    src = str(Path(mixcollapse.__file__).resolve().parents[1])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "",
           "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}  # fmt: skip

    def run(args: list[str], nproc: int = 2, timeout: float = 240) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc), *args]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=tmp_path)
        if proc.returncode != 0:
            output = proc.stdout[-3000:] + proc.stderr[-3000:]
            assert TEARDOWN_ABORT in proc.stderr, output
            warnings.warn(f"torchrun worker aborted in gloo's teardown: {TEARDOWN_ABORT}", stacklevel=2)
        return proc

    return run


class _Disk:
    """Files of at most ``capacity`` bytes each: a write beyond raises ENOSPC, as a full disk's write does."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.real_fdopen = os.fdopen

    def fdopen(self, fd, mode="r", *args, **kwargs):
        f = self.real_fdopen(fd, mode, *args, **kwargs)
        if "w" not in mode:
            return f
        disk, written = self, [0]
        real_write = f.write

        def write(data):
            if written[0] + len(data) > disk.capacity:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            written[0] += len(data)
            return real_write(data)

        f.write = write
        return f


@pytest.fixture
def full_disk(monkeypatch):
    """``full_disk(capacity)``: from then on, until ``monkeypatch.undo()``, every file opened for writing through
    os.fdopen (atomic writes: checkpoints, config.yaml) takes at most ``capacity`` bytes and then fails with
    ENOSPC, as on a full disk."""

    def fill(capacity: int) -> None:
        monkeypatch.setattr(os, "fdopen", _Disk(capacity).fdopen)

    return fill
