"""Hyper-parameter sweeps (Appendix B.1): a grid of runs, resumable, spread over one machine's GPUs.

Grid syntax (one ``--grid`` per key; the sweep is the product of all keys, in the order given)::

    train.lr=logspace(0.01,0.25,10)        10 log-spaced values from 0.01 to 0.25, both included
    train.weight_decay=linspace(0,0.05,3)  3 evenly spaced values: 0, 0.025, 0.05
    train.weight_decay=[0,0.05]            a YAML list
    mixup.alpha=0.4                        one value

``logspace``/``linspace`` values are rounded to 4 significant digits, so that a run's name and its
config hold the same number. A run is named by its values, e.g. ``lr=0.0143_wd=0.025``.

A sweep directory holds ``sweep.json`` (every run's state and final test accuracy, and the best
run), ``configs/<run>.yaml`` (each run's resolved config; ``mixcollapse train --preset`` redoes
it), ``logs/<run>.log`` (output of subprocess launches) and the run directories ``<run>/``.

Resumable: a run whose metrics reach ``train.epochs`` and whose last checkpoint exists is never
redone; every other run is (re)started with ``--resume``, so a killed sweep continues where it
stopped. The best run has the highest final-epoch test accuracy, as in the paper.

Scheduling: the GPUs are split into slots of ``nproc_per_node`` GPUs; each slot runs one job at a
time, with ``CUDA_VISIBLE_DEVICES`` set to its GPUs and torchrun DDP when it has several
processes. Without GPUs there is one CPU slot and jobs run one after another. How a job starts is
a parameter, a *runner* ``runner(job, slot) -> exit code``: :func:`subprocess_runner`
(``python -m mixcollapse train``, or ``torch.distributed.run`` for DDP), :func:`inprocess_runner`
(``train()`` in this process: one CPU process, no start-up cost), or a stub in tests.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
import queue
import re
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from mixcollapse.config import ExperimentConfig, dump_yaml
from mixcollapse.data.specs import FAKE_MARKER
from mixcollapse.files import atomic_write_text
from mixcollapse.training.rundir import (
    CONFIG_FILE,
    RESUME_FREE_FIELDS,
    config_differences,
    holds_run,
    last_checkpoint_path,
    read_config,
    read_metrics,
)

_log = logging.getLogger(__name__)

SWEEP_FILE = "sweep.json"
PRUNED_MARKER = "PRUNED.txt"  # in a run's checkpoints/: its checkpoints were deleted after the sweep chose another
SELECTION = "highest final-epoch test_accuracy (Appendix B.1); ties: the first in grid order"
SHORT_NAMES = {"train.lr": "lr", "train.weight_decay": "wd", "mixup.alpha": "alpha", "train.batch_size": "bs"}


# ---- grids ------------------------------------------------------------------------------------


def _sig4(x: float) -> float:
    return float(f"{x:.4g}")


def parse_values(spec: str) -> list:
    """``logspace(a,b,n)``, ``linspace(a,b,n)``, a YAML list or one YAML value -> list of values."""
    match = re.fullmatch(r"\s*(logspace|linspace)\((.*)\)\s*", spec)
    if match:
        kind, args = match.group(1), [a.strip() for a in match.group(2).split(",")]
        try:
            lo, hi, n = float(args[0]), float(args[1]), int(args[2])
            if len(args) != 3:
                raise ValueError
        except (ValueError, IndexError):
            raise ValueError(f"'{spec}' must be {kind}(start,stop,count) with numbers and an integer count") from None
        if n < 1:
            raise ValueError(f"'{spec}': the count must be >= 1")
        if kind == "logspace" and (lo <= 0 or hi <= 0):
            raise ValueError(f"'{spec}': logspace needs positive start and stop")
        if n == 1:
            return [_sig4(lo)]
        if kind == "logspace":
            a, b = math.log(lo), math.log(hi)
            return [_sig4(math.exp(a + (b - a) * i / (n - 1))) for i in range(n)]
        return [_sig4(lo + (hi - lo) * i / (n - 1)) for i in range(n)]
    try:
        value = yaml.safe_load(spec)
    except yaml.YAMLError:
        raise ValueError(f"grid values '{spec}' are neither logspace(...), linspace(...) nor YAML") from None
    values = list(value) if isinstance(value, list) else [value]
    if not values:
        raise ValueError(f"grid values '{spec}' are empty")
    return values


def parse_grid(specs: Sequence[str]) -> dict[str, list]:
    """``["train.lr=logspace(0.01,0.25,10)", ...]`` -> ``{"train.lr": [0.01, ...], ...}`` (order kept)."""
    grid: dict[str, list] = {}
    for spec in specs:
        key, sep, raw = spec.partition("=")
        key = key.strip()
        if not sep or not key or "." not in key:
            raise ValueError(f"grid '{spec}' must look like section.key=values, e.g. train.lr=logspace(0.01,0.25,10)")
        if key in grid:
            raise ValueError(f"grid key '{key}' is given twice")
        grid[key] = parse_values(raw)
    return grid


def grid_points(grid: dict[str, list]) -> list[dict[str, Any]]:
    """Every combination of the grid's values, the last key varying fastest."""
    keys = list(grid)
    return [dict(zip(keys, values, strict=False)) for values in itertools.product(*(grid[k] for k in keys))]


def point_overrides(point: dict[str, Any]) -> list[str]:
    """``{"train.lr": 0.01}`` -> ``["train.lr=0.01"]`` (values as JSON, which YAML reads back exactly)."""
    return [f"{k}={json.dumps(v)}" for k, v in point.items()]


def point_name(point: dict[str, Any]) -> str:
    """A run directory name for a grid point: ``lr=0.0143_wd=0.025``."""
    parts = []
    for key, value in point.items():
        short = SHORT_NAMES.get(key, key.rsplit(".", 1)[-1])
        text = f"{value:g}" if isinstance(value, float) else str(value)
        parts.append(f"{short}={text}")
    return re.sub(r"[^A-Za-z0-9=._+,-]", "-", "_".join(parts)) or "run"


# ---- jobs and slots ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """One training run to bring to its final epoch."""

    name: str  # unique within one launch, e.g. "wrn-cifar10-mixup/lr=0.01"
    run_dir: Path
    config_path: Path  # the resolved config (YAML) that `mixcollapse train --preset` reads
    log_path: Path
    epochs: int
    overrides: tuple[str, ...] = ()  # the grid point (hyper-parameters) this run differs by
    point: str = ""  # the grid point's name ("" : the run directory's)
    seed: int | None = None  # the training seed, when the sweep repeats each point over seeds


@dataclass(frozen=True)
class Slot:
    """Where one job runs: CUDA_VISIBLE_DEVICES entries (empty: CPU) and the number of processes."""

    devices: tuple[str, ...] = ()
    nproc: int = 1

    def describe(self) -> str:
        where = f"GPU {','.join(self.devices)}" if self.devices else "CPU"
        return where + (f" x{self.nproc} processes" if self.nproc > 1 else "")


Runner = Callable[[Job, Slot], int]


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
        raise ValueError(f"--gpus {spec}: '{bad[0]}' is not a GPU index (0, 1, ...) or UUID (GPU-..., MIG-...); "
                         "pass auto, none, or a list such as 0,1")
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
    return [Slot(tuple(gpus[i * nproc_per_node:(i + 1) * nproc_per_node]), nproc_per_node) for i in range(n)]


# ---- run directories --------------------------------------------------------------------------


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


def final_metrics(run_dir: str | Path) -> dict:
    """The last epoch's metrics row of a run ({} before its first epoch)."""
    rows = read_metrics(run_dir) if Path(run_dir).is_dir() else []
    return rows[-1] if rows else {}


def _synthetic(root: str) -> bool:
    return os.path.isfile(os.path.join(root, FAKE_MARKER))


def check_run_dir(run_dir: Path, cfg: ExperimentConfig) -> None:
    """Refuse a run directory that holds a run of another config (or of synthetic data when real is asked).

    ``analysis.*`` settings are ignored: they never change training, and the analysis is given its
    settings explicitly.
    """
    if not holds_run(run_dir) or not (run_dir / CONFIG_FILE).exists():
        return  # nothing trained yet: a failed start is taken over
    saved = read_config(run_dir)
    diffs = [d for d in config_differences(saved, cfg, ignore=RESUME_FREE_FIELDS) if not d.startswith("analysis.")]
    if _synthetic(saved.data.root) != _synthetic(cfg.data.root):
        what = "synthetic files" if _synthetic(saved.data.root) else "the real data"
        diffs.append(f"it was trained on {what} ({saved.data.root})")
    if diffs:
        shown = "; ".join(diffs[:3]) + ("; ..." if len(diffs) > 3 else "")
        raise ValueError(f"{run_dir} holds a run of another config ({shown}); choose another --out or remove it")


def write_job(name: str, cfg: ExperimentConfig, run_dir: Path, config_path: Path, log_path: Path,
              overrides: Sequence[str] = (), point: str = "", seed: int | None = None) -> Job:
    """Check ``run_dir`` against ``cfg``, write ``cfg`` to ``config_path`` and describe the job."""
    check_run_dir(run_dir, cfg)
    config_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(config_path, dump_yaml(cfg))
    return Job(name, run_dir, config_path, log_path, cfg.train.epochs, tuple(overrides), point, seed)


def plan_sweep(sweep_dir: str | Path, grid: dict[str, list], configure: Callable[[list[str]], ExperimentConfig],
               prefix: str = "", seeds: Sequence[int] | None = None) -> list[Job]:
    """One job per grid point (and per seed of ``seeds``); ``configure(point_overrides)`` resolves each config.

    With seeds, a point's run with its config's own seed keeps the point's name; the others are named
    ``<point>-seed<s>`` and train with ``train.seed=s``.
    """
    sweep_dir = Path(sweep_dir)
    jobs = []
    for point in grid_points(grid):
        base, overrides = point_name(point), point_overrides(point)
        own = configure(overrides)
        for seed in seeds or [None]:
            same = seed is None or seed == own.train.seed
            name = base if same else f"{base}-seed{seed}"
            cfg = own if same else configure([*overrides, f"train.seed={seed}"])
            jobs.append(write_job(f"{prefix}{name}", cfg, sweep_dir / name, sweep_dir / "configs" / f"{name}.yaml",
                                  sweep_dir / "logs" / f"{name}.log", overrides, point=base, seed=seed))
    return jobs


# ---- runners ----------------------------------------------------------------------------------


def train_args(job: Job) -> list[str]:
    """The interpreter's arguments that train (or resume) the job: ``-m mixcollapse train ... --resume``."""
    return ["-m", "mixcollapse", "train", "--preset", str(job.config_path), "--out", str(job.run_dir), "--resume"]


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
        train(load_config(job.config_path), job.run_dir, resume=True)
    except Exception:  # noqa: BLE001 - one failed run must not stop the others
        handler.stream.write(traceback.format_exc())
        return 1
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        handler.close()
    return 0


LAUNCHERS = ("auto", "subprocess", "inprocess", "slurm")


def launch_slots(launcher: str, gpus, nproc_per_node: int, slurm=None,
                 log: Callable[[str], None] = _log.info) -> tuple[list[Slot], Runner]:
    """The slots and the runner of ``launcher``: this machine's GPUs (or its CPU), or Slurm jobs through submitit
    (``slurm``: experiments.slurm.SlurmOptions)."""
    if launcher == "slurm":
        if slurm is None:
            raise ValueError("--launcher slurm needs its options (experiments.slurm.SlurmOptions)")
        from mixcollapse.experiments.slurm import slurm_runner, slurm_slots

        return slurm_slots(slurm), slurm_runner(slurm, log)
    slots = make_slots(parse_gpus(gpus), nproc_per_node)
    return slots, pick_runner(launcher, slots)


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


# ---- scheduling -------------------------------------------------------------------------------


def run_jobs(jobs: Sequence[Job], slots: Sequence[Slot], runner: Runner = subprocess_runner,
             log: Callable[[str], None] = _log.info,
             on_done: Callable[[Job, dict[str, dict]], None] | None = None) -> dict[str, dict]:
    """Bring every job to its final epoch: finished ones are skipped, the rest run on free slots.

    Returns ``{job.name: {"state", "returncode", "seconds"}}`` with state ``finished`` (already,
    or now) or ``failed`` (the runner's exit code was not 0, or the run stopped short).
    ``on_done(job, status)`` is called after each job that ran, one call at a time.
    """
    if not slots:
        raise ValueError("no slot to run jobs on")
    status: dict[str, dict] = {}
    todo = []
    for job in jobs:
        if run_state(job.run_dir, job.epochs) == "finished":
            status[job.name] = {"state": "finished", "returncode": None, "seconds": 0.0, "skipped": True}
        else:
            todo.append(job)
    if jobs:
        log(f"[sweep] {len(jobs) - len(todo)} of {len(jobs)} runs already finished; {len(todo)} to run "
            f"on {len(slots)} slot(s): {', '.join(s.describe() for s in slots)}")
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
        finished = code == 0 and run_state(job.run_dir, job.epochs) == "finished"
        row = final_metrics(job.run_dir)
        with lock:
            status[job.name] = {"state": "finished" if finished else "failed", "returncode": code,
                                "seconds": round(seconds, 1)}
        if finished:
            acc = row.get("test_accuracy")
            log(f"[sweep] {job.name}: finished in {seconds:.0f}s, test accuracy "
                f"{'n/a' if acc is None else f'{100 * acc:.2f}%'}")
        else:
            log(f"[sweep] {job.name}: FAILED (exit code {code}); see {job.log_path}")
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


def summarize_sweep(sweep_dir: str | Path, jobs: Sequence[Job], grid: dict[str, list],
                    status: dict[str, dict] | None = None) -> dict:
    """Write ``sweep.json`` (every run's state and final metrics, and the best run) and return it."""
    sweep_dir = Path(sweep_dir)
    rows = []
    for job in jobs:
        metrics = final_metrics(job.run_dir)
        state = run_state(job.run_dir, job.epochs)
        if state != "finished" and (status or {}).get(job.name, {}).get("state") == "failed":
            state = "failed"
        rows.append({
            "name": job.run_dir.name,
            "point": job.point or job.run_dir.name,
            "seed": job.seed,
            "run_dir": os.path.relpath(job.run_dir, sweep_dir),
            "config": os.path.relpath(job.config_path, sweep_dir),
            "log": os.path.relpath(job.log_path, sweep_dir),
            "overrides": list(job.overrides),
            "state": state,
            "epochs_done": metrics.get("epoch", 0),
            "epochs": job.epochs,
            "test_accuracy": metrics.get("test_accuracy"),
            "test_ece": metrics.get("test_ece"),
        })
    done = [r for r in rows if r["state"] == "finished" and r["test_accuracy"] is not None]
    points = _seed_points(rows) if any(r["seed"] is not None for r in rows) else None
    candidates = done if points is None else [p for p in points if p["state"] == "finished"]
    best = max(candidates, key=lambda r: r["test_accuracy"]) if candidates else None  # max keeps the first of ties
    result = {"format": "mixcollapse-sweep", "version": 1, "grid": grid, "selection": SELECTION,
              "complete": len(done) == len(rows), "runs": rows, "best": best,
              "updated": time.strftime("%Y-%m-%dT%H:%M:%S")}
    if points is not None:
        result["points"] = points
    sweep_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(sweep_dir / SWEEP_FILE, json.dumps(result, indent=2))
    return result


def _seed_points(rows: list[dict]) -> list[dict]:
    """Each grid point over its seeds: mean and sample standard deviation of the final test accuracy and ECE,
    once every seed's run has finished; ``run_dir`` is the first seed's run."""
    by_point: dict[str, list[dict]] = {}
    for row in rows:
        by_point.setdefault(row["point"], []).append(row)
    out = []
    for name, runs in by_point.items():
        finished = all(r["state"] == "finished" and r["test_accuracy"] is not None for r in runs)
        entry = {"name": name, "run_dir": runs[0]["run_dir"], "overrides": runs[0]["overrides"],
                 "seeds": [r["seed"] for r in runs], "state": "finished" if finished else "unfinished"}
        for key in ("test_accuracy", "test_ece"):
            values = [r[key] for r in runs]
            ok = finished and all(v is not None for v in values)
            entry[key] = float(np.mean(values)) if ok else None
            entry[f"{key}_std"] = float(np.std(values, ddof=1)) if ok and len(values) > 1 else None
            entry[f"{key}_by_seed"] = values
        out.append(entry)
    return out


def run_sweep(sweep_dir: str | Path, grid: dict[str, list], configure: Callable[[list[str]], ExperimentConfig], *,
              slots: Sequence[Slot] = (Slot(),), runner: Runner = subprocess_runner,
              log: Callable[[str], None] = _log.info, prune: bool = False, seeds: Sequence[int] | None = None) -> dict:
    """Plan, run (resumably) and summarize one sweep; return the contents of ``sweep.json``.

    ``sweep.json`` is rewritten after every run; ``prune`` deletes the checkpoints of finished runs
    that can no longer be the best as soon as they are out of the race (see prune_checkpoints).
    """
    jobs = plan_sweep(sweep_dir, grid, configure, seeds=seeds)
    status = run_jobs(jobs, slots, runner, log, on_done=sweep_progress(sweep_dir, jobs, grid, prune, log))
    result = summarize_sweep(sweep_dir, jobs, grid, status)
    if prune:
        prune_checkpoints(sweep_dir, result)
    return result


def sweep_progress(sweep_dir: str | Path, jobs: Sequence[Job], grid: dict[str, list], prune: bool,
                   log: Callable[[str], None] = _log.info) -> Callable[[Job, dict[str, dict]], None]:
    """An ``on_done`` for run_jobs: rewrite the sweep's sweep.json (and prune) when one of its jobs ends."""
    names = {job.name for job in jobs}

    def on_done(job: Job, status: dict[str, dict]) -> None:
        if job.name in names:
            result = summarize_sweep(sweep_dir, jobs, grid, status)
            deleted = prune_checkpoints(sweep_dir, result) if prune else []
            if deleted:
                log(f"[sweep] deleted {len(deleted)} checkpoint(s) of runs that can no longer be the best")

    return on_done


def prune_checkpoints(sweep_dir: str | Path, result: dict) -> list[Path]:
    """Delete the checkpoints of every finished run but the best so far; return the files deleted.

    Safe while the sweep is still running: the best is the first of the highest final accuracies
    among finished runs, so a finished run that is not the best now can never become it (a later
    run can only displace the best). Unfinished runs keep theirs (they resume from them). Metrics
    and configs stay, and a PRUNED.txt marker keeps each pruned run finished (never retrained).
    Run after every finished run, this bounds a sweep's disk use to the running jobs plus one. With
    seeds, the unit is a grid point: its runs keep their checkpoints until all of its seeds have finished.
    """
    if not result.get("best"):
        return []
    sweep_dir, deleted = Path(sweep_dir), []
    open_points = {p["name"] for p in result.get("points") or [] if p["state"] != "finished"}
    for row in result["runs"]:
        point = row.get("point", row["name"])
        if point == result["best"]["name"] or row["state"] != "finished" or point in open_points:
            continue
        folder = last_checkpoint_path(sweep_dir / row["run_dir"]).parent
        files = sorted(folder.glob("*.pt")) if folder.is_dir() else []
        if files:
            atomic_write_text(folder / PRUNED_MARKER, f"checkpoints deleted {time.strftime('%Y-%m-%d %H:%M')}: the "
                              f"sweep chose {result['best']['name']}; metrics.jsonl is complete\n")
        for f in files:
            f.unlink()
            deleted.append(f)
    return deleted


def format_sweep(result: dict) -> str:
    """Plain-text table of a sweep's runs, the best marked with '*'; with seeds, one line per grid point."""
    best = (result.get("best") or {}).get("name")
    if result.get("points"):
        lines = [f"  {'grid point':<28} {'seeds':<10} {'test acc (mean ± std)':>22} {'ECE (mean ± std)':>18}"]
        for p in result["points"]:
            acc = "-" if p["test_accuracy"] is None else \
                f"{100 * p['test_accuracy']:.2f} ± {100 * (p['test_accuracy_std'] or 0):.2f}%"
            ece = "-" if p["test_ece"] is None else f"{p['test_ece']:.4f} ± {p['test_ece_std'] or 0:.4f}"
            seeds = ",".join(map(str, p["seeds"]))
            lines.append(f"{'*' if p['name'] == best else ' '} {p['name']:<28} {seeds:<10} {acc:>22} {ece:>18}")
        return "\n".join(lines)
    lines = [f"  {'run':<28} {'state':<10} {'epochs':>9} {'test acc':>9} {'ECE':>7}"]
    for r in result["runs"]:
        acc = "-" if r["test_accuracy"] is None else f"{100 * r['test_accuracy']:.2f}%"
        ece = "-" if r["test_ece"] is None else f"{r['test_ece']:.4f}"
        mark = "*" if r["name"] == best else " "
        done = f"{r['epochs_done']:>4}/{r['epochs']:<4}"
        lines.append(f"{mark} {r['name']:<28} {r['state']:<10} {done} {acc:>9} {ece:>7}")
    return "\n".join(lines)
