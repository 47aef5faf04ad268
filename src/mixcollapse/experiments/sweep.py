"""Hyper-parameter sweeps (Appendix B.1): a grid of runs (``experiments.grid``), resumable, spread over slots.

A sweep directory holds ``sweep.json`` (every run's state and final test accuracy, and the best
run), ``configs/<run>.yaml`` (each run's resolved config; ``mixcollapse train --preset`` redoes
it), ``logs/<run>.log`` (output of subprocess launches) and the run directories ``<run>/``.

Resumable: a run whose metrics reach ``train.epochs`` and whose last checkpoint exists is never
redone; every other run is (re)started with ``--resume``, so a killed sweep continues where it
stopped. The best run has the highest final-epoch test accuracy, as in the paper. Jobs run on the
slots and with the runner of :func:`launch_slots` (this machine's GPUs or CPU, or Slurm).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from mixcollapse.config import ExperimentConfig, dump_yaml
from mixcollapse.data.locate import FAKE_MARKER
from mixcollapse.experiments.grid import grid_points, point_name, point_overrides
from mixcollapse.experiments.launch import (
    PRUNED_MARKER,
    Job,
    Launch,
    Runner,
    Slot,
    final_metrics,
    make_slots,
    parse_gpus,
    pick_runner,
    run_jobs,
    run_state,
    subprocess_runner,
)
from mixcollapse.files import atomic_write_text
from mixcollapse.training.rundir import (
    CONFIG_FILE,
    RESUME_FREE_FIELDS,
    config_differences,
    holds_run,
    last_checkpoint_path,
    read_config,
)

_log = logging.getLogger(__name__)

SWEEP_FILE = "sweep.json"
SELECTION = "highest final-epoch test_accuracy (Appendix B.1); ties: the first in grid order"


# ---- run directories --------------------------------------------------------------------------


def _synthetic(root: str) -> bool:
    return os.path.isfile(os.path.join(root, FAKE_MARKER))


def check_job_dir(run_dir: Path, cfg: ExperimentConfig) -> None:
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


def write_job(
    name: str,
    cfg: ExperimentConfig,
    run_dir: Path,
    config_path: Path,
    log_path: Path,
    overrides: Sequence[str] = (),
    point: str = "",
    seed: int | None = None,
) -> Job:
    """Check ``run_dir`` against ``cfg``, write ``cfg`` to ``config_path`` and describe the job."""
    check_job_dir(run_dir, cfg)
    config_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(config_path, dump_yaml(cfg))
    return Job(name, run_dir, config_path, log_path, cfg.train.epochs, tuple(overrides), point, seed)


def plan_sweep(
    sweep_dir: str | Path,
    grid: dict[str, list],
    configure: Callable[[list[str]], ExperimentConfig],
    prefix: str = "",
    seeds: Sequence[int] | None = None,
) -> list[Job]:
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
            jobs.append(
                write_job(
                    f"{prefix}{name}",
                    cfg,
                    sweep_dir / name,
                    sweep_dir / "configs" / f"{name}.yaml",
                    sweep_dir / "logs" / f"{name}.log",
                    overrides,
                    point=base,
                    seed=seed,
                )
            )
    return jobs


# ---- runners ----------------------------------------------------------------------------------


def launch_slots(launch: Launch, log: Callable[[str], None] = _log.info) -> tuple[list[Slot], Runner]:
    """The slots and the runner of ``launch``: this machine's GPUs (or its CPU), or Slurm jobs through submitit."""
    if launch.runner is not None:
        return make_slots(parse_gpus(launch.gpus), launch.nproc_per_node), launch.runner
    if launch.launcher == "slurm":
        if launch.slurm is None:
            raise ValueError("--launcher slurm needs its options (experiments.slurm.SlurmOptions)")
        from mixcollapse.experiments.slurm import slurm_runner, slurm_slots

        return slurm_slots(launch.slurm), slurm_runner(launch.slurm, log)
    slots = make_slots(parse_gpus(launch.gpus), launch.nproc_per_node)
    return slots, pick_runner(launch.launcher, slots)


# ---- scheduling -------------------------------------------------------------------------------


def summarize_sweep(
    sweep_dir: str | Path, jobs: Sequence[Job], grid: dict[str, list], status: dict[str, dict] | None = None
) -> dict:
    """Write ``sweep.json`` (every run's state and final metrics, and the best run) and return it."""
    sweep_dir = Path(sweep_dir)
    rows = []
    for job in jobs:
        metrics = final_metrics(job.run_dir)
        state = run_state(job.run_dir, job.epochs)
        if state != "finished" and (status or {}).get(job.name, {}).get("state") == "failed":
            state = "failed"
        rows.append(
            {
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
            }
        )
    done = [r for r in rows if r["state"] == "finished" and r["test_accuracy"] is not None]
    points = _seed_points(rows) if any(r["seed"] is not None for r in rows) else None
    candidates = done if points is None else [p for p in points if p["state"] == "finished"]
    best = max(candidates, key=lambda r: r["test_accuracy"]) if candidates else None  # max keeps the first of ties
    result = {
        "format": "mixcollapse-sweep",
        "version": 1,
        "grid": grid,
        "selection": SELECTION,
        "complete": len(done) == len(rows),
        "runs": rows,
        "best": best,
        "updated": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
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
        entry = {
            "name": name,
            "run_dir": runs[0]["run_dir"],
            "overrides": runs[0]["overrides"],
            "seeds": [r["seed"] for r in runs],
            "state": "finished" if finished else "unfinished",
        }
        for key in ("test_accuracy", "test_ece"):
            values = [r[key] for r in runs]
            ok = finished and all(v is not None for v in values)
            entry[key] = float(np.mean(values)) if ok else None
            entry[f"{key}_std"] = float(np.std(values, ddof=1)) if ok and len(values) > 1 else None
            entry[f"{key}_by_seed"] = values
        out.append(entry)
    return out


def run_sweep(
    sweep_dir: str | Path,
    grid: dict[str, list],
    configure: Callable[[list[str]], ExperimentConfig],
    *,
    slots: Sequence[Slot] = (Slot(),),
    runner: Runner = subprocess_runner,
    log: Callable[[str], None] = _log.info,
    prune: bool = False,
    seeds: Sequence[int] | None = None,
) -> dict:
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


def sweep_progress(
    sweep_dir: str | Path,
    jobs: Sequence[Job],
    grid: dict[str, list],
    prune: bool,
    log: Callable[[str], None] = _log.info,
) -> Callable[[Job, dict[str, dict]], None]:
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
            atomic_write_text(
                folder / PRUNED_MARKER,
                f"checkpoints deleted {time.strftime('%Y-%m-%d %H:%M')}: the "
                f"sweep chose {result['best']['name']}; metrics.jsonl is complete\n",
            )
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
            acc = (
                "-"
                if p["test_accuracy"] is None
                else f"{100 * p['test_accuracy']:.2f} ± {100 * (p['test_accuracy_std'] or 0):.2f}%"
            )
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
