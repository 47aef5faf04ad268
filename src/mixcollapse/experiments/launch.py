"""Running training jobs: a job (one run to bring to its final epoch), the slots it may run on, and runners.

The GPUs are split into slots of ``nproc_per_node`` GPUs; each slot runs one job at a time, with
``CUDA_VISIBLE_DEVICES`` set to its GPUs and torchrun DDP when it has several processes. Without GPUs
there is one CPU slot and jobs run one after another. How a job starts is a *runner*
``runner(job, slot) -> exit code``: :func:`subprocess_runner` (``python -m mixcollapse train``, or
``torch.distributed.run`` for DDP), :func:`inprocess_runner` (``train()`` in this process: one CPU
process, no start-up cost), the Slurm runner of :mod:`mixcollapse.experiments.slurm`, or a stub in tests.
A job whose run directory already holds its target epoch (its final one, or its halving rung: ``Job.until``) is
never run again (:func:`run_jobs`).
"""

from __future__ import annotations

import itertools
import logging
import os
import queue
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from mixcollapse.training.rundir import CONFIG_FILE, last_checkpoint_path, read_metrics

_log = logging.getLogger(__name__)

PRUNED_MARKER = "PRUNED.txt"  # in a run's checkpoints/: its checkpoints were deleted after the sweep chose another


@dataclass(frozen=True)
class Job:
    """One training run to bring to its final epoch (or, with ``until``, to that epoch of its schedule)."""

    name: str  # unique within one launch, e.g. "wrn-cifar10-mixup/lr=0.01"
    run_dir: Path
    config_path: Path  # the resolved config (YAML) that `mixcollapse train --preset` reads
    log_path: Path
    epochs: int
    overrides: tuple[str, ...] = ()  # the grid point (hyper-parameters) this run differs by
    point: str = ""  # the grid point's name ("" : the run directory's)
    seed: int | None = None  # the training seed, when the sweep repeats each point over seeds
    until: int | None = None  # stop after this epoch (`train --until-epoch`): a rung of successive halving

    @property
    def target(self) -> int:
        """The epoch this job brings its run to."""
        return self.until or self.epochs


@dataclass(frozen=True)
class Slot:
    """Where one job runs: CUDA_VISIBLE_DEVICES entries (empty: CPU) and the number of processes."""

    devices: tuple[str, ...] = ()
    nproc: int = 1

    def describe(self) -> str:
        where = f"GPU {','.join(self.devices)}" if self.devices else "CPU"
        return where + (f" x{self.nproc} processes" if self.nproc > 1 else "")


Runner = Callable[[Job, Slot], int]


@dataclass(frozen=True)
class Launch:
    """Where and how training jobs run: ``launcher`` (auto, subprocess, inprocess or slurm), this machine's
    ``gpus`` in slots of ``nproc_per_node`` processes, torch ``threads`` of every run (None: each run's own),
    the Slurm options (``slurm``: experiments.slurm.SlurmOptions), a ``runner`` that replaces the launcher's
    (tests), and ``allow_cpu``: train the full scale without a visible GPU."""

    launcher: str = "auto"
    gpus: str | Sequence[str] | None = "auto"
    nproc_per_node: int = 1
    threads: int | None = None
    slurm: object | None = None
    runner: Runner | None = None
    allow_cpu: bool = False

    def overrides(self) -> list[str]:
        """The config overrides of every run this launch trains (its thread count)."""
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"--threads {self.threads} must be >= 1")
        return [] if self.threads is None else [f"train.threads={self.threads}"]


def visible_gpus() -> list[str]:
    """This machine's GPUs as CUDA_VISIBLE_DEVICES entries (the parent's own setting when it has one)."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [d.strip() for d in env.split(",") if d.strip() and d.strip() != "-1"]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def parse_gpus(spec: str | Sequence[str] | None) -> list[str]:
    """``auto`` (every visible GPU), ``none``/``cpu`` (no GPU), or ``0,1,2`` (CUDA_VISIBLE_DEVICES entries)."""
    if spec is None:
        return []
    if not isinstance(spec, str):
        return [str(s) for s in spec]
    spec = spec.strip()
    if spec == "auto":
        return visible_gpus()
    if spec in ("", "none", "cpu"):
        return []
    gpus = [g.strip() for g in spec.split(",") if g.strip()]
    bad = [g for g in gpus if not (g.isdigit() or g.startswith(("GPU-", "MIG-")))]
    if bad:
        raise ValueError(
            f"--gpus {spec}: '{bad[0]}' is not a GPU index (0, 1, ...) or UUID (GPU-..., MIG-...); "
            "pass auto, none, or a list such as 0,1"
        )
    if len(set(gpus)) != len(gpus):
        raise ValueError(f"--gpus {spec} names a GPU twice")
    return gpus


def make_slots(gpus: Sequence[str], nproc_per_node: int = 1) -> list[Slot]:
    """Split ``gpus`` into slots of ``nproc_per_node`` GPUs; no GPUs: one CPU slot."""
    if nproc_per_node < 1:
        raise ValueError(f"--nproc-per-node={nproc_per_node} must be >= 1")
    if not gpus:
        return [Slot((), nproc_per_node)]
    if nproc_per_node > len(gpus):
        raise ValueError(f"--nproc-per-node={nproc_per_node} needs as many GPUs, but only {len(gpus)} are given")
    n = len(gpus) // nproc_per_node
    return [Slot(tuple(gpus[i * nproc_per_node : (i + 1) * nproc_per_node]), nproc_per_node) for i in range(n)]


def run_state(run_dir: str | Path, epochs: int) -> str:
    """``finished`` (metrics reach ``epochs`` and the last checkpoint exists, or was pruned), ``partial`` or ``new``."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return "new"
    rows = read_metrics(run_dir)
    kept = last_checkpoint_path(run_dir)
    if rows and int(rows[-1].get("epoch", 0)) >= epochs and (kept.is_file() or (kept.parent / PRUNED_MARKER).is_file()):
        return "finished"
    return "partial" if rows or (run_dir / CONFIG_FILE).exists() else "new"


def final_metrics(run_dir: str | Path, epoch: int | None = None) -> dict:
    """The last epoch's metrics row of a run, or that of ``epoch`` ({} before it, or without a run directory)."""
    rows = read_metrics(run_dir) if Path(run_dir).is_dir() else []
    if epoch is not None:
        rows = [r for r in rows if r.get("epoch") == epoch]
    return rows[-1] if rows else {}


def train_args(job: Job) -> list[str]:
    """The interpreter's arguments that train (or resume) the job: ``-m mixcollapse train ... --resume``."""
    until = [] if job.until is None else ["--until-epoch", str(job.until)]
    return [
        "-m",
        "mixcollapse",
        "train",
        "--preset",
        str(job.config_path),
        "--out",
        str(job.run_dir),
        "--resume",
        *until,
    ]


def train_command(job: Job, slot: Slot) -> list[str]:
    """``python -m mixcollapse train`` for the job; through torch.distributed.run for a slot of several processes."""
    train = train_args(job)
    if slot.nproc > 1:
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={slot.nproc}", *train]
    return [sys.executable, *train]


def job_environment(slot: Slot) -> dict[str, str]:
    """This process's environment with the slot's GPUs (none for a CPU slot) and this package importable."""
    env = dict(os.environ)
    env["CUDA_VISIBLE_DEVICES"] = ",".join(slot.devices)
    src = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([src, *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])])
    return env


def subprocess_runner(job: Job, slot: Slot) -> int:
    """Run the job as a child process on its slot, output appended to its log; return the exit code."""
    job.log_path.parent.mkdir(parents=True, exist_ok=True)
    cmd = train_command(job, slot)
    with open(job.log_path, "a") as log:
        log.write(f"\n# {time.strftime('%Y-%m-%d %H:%M:%S')} on {slot.describe()}: {' '.join(cmd)}\n")
        log.flush()
        return subprocess.run(cmd, env=job_environment(slot), stdout=log, stderr=subprocess.STDOUT).returncode


def inprocess_runner(job: Job, slot: Slot) -> int:
    """Run the job with ``train()`` in this process (one CPU process); a failure's traceback goes to its log."""
    if slot.devices or slot.nproc > 1:
        raise ValueError("the in-process launcher runs one process without GPUs; use --launcher subprocess")
    from mixcollapse.config import load_config
    from mixcollapse.training.loop import train

    # The job's log lines (and a failure's traceback) go to its log file, as a subprocess's output does.
    job.log_path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(job.log_path)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("mixcollapse")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(min(level or logging.INFO, logging.INFO))
    try:
        train(load_config(job.config_path), job.run_dir, resume=True, until_epoch=job.until)
    except Exception:  # noqa: BLE001 - one failed run must not stop the others
        handler.stream.write(traceback.format_exc())
        return 1
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        handler.close()
    return 0


LAUNCHERS = ("auto", "subprocess", "inprocess", "slurm")


def pick_runner(launcher: str, slots: Sequence[Slot]) -> Runner:
    """``auto``: in-process for one CPU slot of one process, subprocesses otherwise."""
    if launcher not in LAUNCHERS or launcher == "slurm":
        raise ValueError(f"--launcher {launcher} is not one of: {', '.join(LAUNCHERS[:3])}")
    single_cpu = len(slots) == 1 and not slots[0].devices and slots[0].nproc == 1
    if launcher == "inprocess" and not single_cpu:
        raise ValueError("--launcher inprocess runs one CPU process; it cannot use GPUs or --nproc-per-node > 1")
    if launcher == "inprocess" or (launcher == "auto" and single_cpu):
        return inprocess_runner
    return subprocess_runner


def _outcome(job: Job, finished: bool, code: int, seconds: float) -> str:
    """One line on how a job ended: its time and test accuracy, or where its log is."""
    if not finished:
        return f"[sweep] {job.name}: FAILED (exit code {code}); see {job.log_path}"
    acc = final_metrics(job.run_dir).get("test_accuracy")
    what = "finished" if job.until is None else f"reached epoch {job.until}"
    return (
        f"[sweep] {job.name}: {what} in {seconds:.0f}s, test accuracy {'n/a' if acc is None else f'{100 * acc:.2f}%'}"
    )


def run_jobs(
    jobs: Sequence[Job],
    slots: Sequence[Slot],
    runner: Runner = subprocess_runner,
    log: Callable[[str], None] = _log.info,
    on_done: Callable[[Job, dict[str, dict]], None] | None = None,
) -> dict[str, dict]:
    """Bring every job to its final epoch: finished ones are skipped, the rest run on free slots.

    Returns ``{job.name: {"state", "returncode", "seconds"}}`` with state ``finished`` (already,
    or now) or ``failed`` (the runner's exit code was not 0, or the run stopped short).
    ``on_done(job, status)`` is called after each job that ran, one call at a time.
    """
    if not slots:
        raise ValueError("no slot to run jobs on")
    done = {job.name for job in jobs if run_state(job.run_dir, job.target) == "finished"}
    status = {name: {"state": "finished", "returncode": None, "seconds": 0.0, "skipped": True} for name in done}
    todo = [job for job in jobs if job.name not in done]
    if jobs:
        where = f"{len(slots)} slot(s): {', '.join(s.describe() for s in slots)}"
        log(f"[sweep] {len(jobs) - len(todo)} of {len(jobs)} runs already finished; {len(todo)} to run on {where}")
    free: queue.Queue[Slot] = queue.Queue()
    for slot in slots:
        free.put(slot)
    lock = threading.Lock()
    counter = itertools.count(1)

    def work(job: Job) -> None:
        slot = free.get()
        try:
            index = next(counter)
            log(f"[sweep] ({index}/{len(todo)}) {job.name} on {slot.describe()}")
            tic = time.perf_counter()
            code = runner(job, slot)
            seconds = time.perf_counter() - tic
        finally:
            free.put(slot)
        finished = code == 0 and run_state(job.run_dir, job.target) == "finished"
        with lock:
            status[job.name] = {
                "state": "finished" if finished else "failed",
                "returncode": code,
                "seconds": round(seconds, 1),
            }
        log(_outcome(job, finished, code, seconds))
        if on_done is not None:
            with lock:
                on_done(job, status)

    if len(slots) == 1:
        for job in todo:  # in the main thread: Ctrl-C stops at once
            work(job)
    else:
        with ThreadPoolExecutor(max_workers=len(slots)) as pool:
            for future in [pool.submit(work, job) for job in todo]:
                future.result()
    return status
