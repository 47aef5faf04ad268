"""Hyper-parameter sweeps (Appendix B.1): a grid of runs (``experiments.grid``), resumable, spread over slots.

A sweep directory holds ``sweep.json`` (every run's state and final test accuracy, and the best
run), ``configs/<run>.yaml`` (each run's resolved config; ``mixcollapse train --preset`` redoes
it), ``logs/<run>.log`` (output of subprocess launches) and the run directories ``<run>/``.

Resumable: a run whose metrics reach ``train.epochs`` and whose last checkpoint exists is never
redone; every other run is (re)started with ``--resume``, so a killed sweep continues where it
stopped. The best run has the highest final-epoch test accuracy, as in the paper. Jobs run on the
slots and with the runner of :func:`launch_slots` (this machine's GPUs or CPU, or Slurm). With
``method="halving"`` (``--sweep halving``) the runs go rung by rung and only the best third of the points
goes on from each (experiments.halving); the others are ``halted`` at their rung.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

import numpy as np

from mixcollapse.config import ExperimentConfig, dump_yaml, load_config
from mixcollapse.data.locate import FAKE_MARKER
from mixcollapse.experiments.grid import grid_points, point_name, point_overrides
from mixcollapse.experiments.halving import ETA, HALVING_SELECTION, halving_rungs, survivors
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

SWEEP_METHODS = ("full", "halving")


@dataclass
class SweepPlan:
    """One sweep on its way: its directory, grid and jobs (each to its final epoch), and with ``method="halving"``
    the rungs (experiments.halving), the runs stopped at a rung (``halted``: name -> epoch) and each rung's
    decision."""

    sweep_dir: Path
    grid: dict[str, list]
    jobs: list[Job]
    method: str = "full"
    halted: dict[str, int] = field(default_factory=dict)
    decisions: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.method not in SWEEP_METHODS:
            raise ValueError(f"--sweep {self.method} is not one of: {', '.join(SWEEP_METHODS)}")
        self.sweep_dir = Path(self.sweep_dir)

    @cached_property
    def rungs(self) -> list[int]:
        """The epochs the sweep's runs stop at to be compared: only the last (the full sweep) or the halving rungs."""
        if not self.jobs:
            return []
        epochs = self.jobs[0].epochs
        if self.method == "full":
            return [epochs]
        # the rungs must be epochs that evaluate the test set: the resolved config's train.eval_every says which
        return halving_rungs(epochs, load_config(self.jobs[0].config_path).train.eval_every)

    def stage_jobs(self, stage: int) -> list[Job]:
        """The jobs of rung ``stage``: every run not yet halted, to the rung's epoch."""
        if stage >= len(self.rungs):
            return []
        epoch = self.rungs[stage]
        until = None if epoch == self.jobs[0].epochs else epoch
        return [replace(job, until=until) for job in self.jobs if job.name not in self.halted]

    def decide(self, stage: int) -> None:
        """After rung ``stage`` (not the last): halt every point but the best third by test accuracy at its epoch.

        With seeds a point's score is its seeds' mean, and a point missing one is halted; only the runs'
        metrics are read, so a resumed sweep decides the same.
        """
        if stage >= len(self.rungs) - 1:
            return
        epoch = self.rungs[stage]
        alive = [job for job in self.jobs if job.name not in self.halted]
        points: dict[str, list[Job]] = {}
        for job in alive:
            points.setdefault(job.point or job.run_dir.name, []).append(job)
        scores = [(name, _mean_at(runs, epoch)) for name, runs in points.items()]
        kept = survivors(scores)
        for name, runs in points.items():
            if name not in kept:
                self.halted.update({job.name: epoch for job in runs})
        self.decisions.append({"epoch": epoch, "test_accuracy": dict(scores), "kept": kept})


def _mean_at(runs: Sequence[Job], epoch: int) -> float | None:
    """The mean test accuracy of ``runs`` at ``epoch`` (None if one of them has none there: not reached, or not
    evaluated)."""
    values = [final_metrics(job.run_dir, epoch).get("test_accuracy") for job in runs]
    return None if any(v is None for v in values) else float(np.mean(values))


def run_sweeps(
    plans: Sequence[SweepPlan],
    slots: Sequence[Slot],
    runner: Runner,
    log: Callable[[str], None] = _log.info,
    prune: bool = False,
) -> list[dict]:
    """Bring every sweep's runs to their end, the sweeps' jobs sharing the slots, rung by rung; the sweeps' results.

    A full sweep is one rung (every run to its final epoch). A halving sweep trains every run to the first
    rung, decides which points go on (SweepPlan.decide), and so on. Each sweep.json is rewritten whenever
    one of its jobs ends; ``prune`` deletes checkpoints of runs that can no longer be the best.
    """
    status: dict[str, dict] = {}
    progress = [sweep_progress(plan, prune, log) for plan in plans]
    for stage in range(max((len(plan.rungs) for plan in plans), default=0)):
        jobs = [job for plan in plans for job in plan.stage_jobs(stage)]
        if any(plan.method == "halving" for plan in plans):
            log(f"[sweep] rung {stage + 1}: {len(jobs)} run(s) to epoch {_rung_epochs(plans, stage)}")

        def on_done(job: Job, current: dict[str, dict]) -> None:
            for step in progress:
                step(job, {**status, **current})

        status.update(run_jobs(jobs, slots, runner, log, on_done=on_done))
        for plan in plans:
            plan.decide(stage)
    results = []
    for plan in plans:
        result = summarize_sweep(plan, status)
        if prune:
            prune_checkpoints(plan.sweep_dir, result)
        results.append(result)
    return results


def _rung_epochs(plans: Sequence[SweepPlan], stage: int) -> str:
    return ", ".join(sorted({str(p.rungs[stage]) for p in plans if stage < len(p.rungs)}))


def summarize_sweep(plan: SweepPlan, status: dict[str, dict] | None = None) -> dict:
    """Write ``sweep.json`` (every run's state and final metrics, the best run, and halving's rungs) and return it.

    States: ``finished`` (trained to the end), ``halted`` (stopped at a halving rung), ``failed``, ``partial``
    or ``new``. The best is the highest final-epoch test accuracy among finished runs.
    """
    sweep_dir = plan.sweep_dir
    rows = [_summary_row(plan, job, status or {}) for job in plan.jobs]
    done = [r for r in rows if r["state"] == "finished" and r["test_accuracy"] is not None]
    points = _seed_points(rows) if any(r["seed"] is not None for r in rows) else None
    candidates = done if points is None else [p for p in points if p["state"] == "finished"]
    best = max(candidates, key=lambda r: r["test_accuracy"]) if candidates else None  # max keeps the first of ties
    result = {
        "format": "mixcollapse-sweep",
        "version": 1,
        "method": plan.method,
        "grid": plan.grid,
        "selection": SELECTION if plan.method == "full" else HALVING_SELECTION,
        "complete": all(r["state"] in ("finished", "halted") for r in rows),
        "runs": rows,
        "best": best,
        "updated": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    if plan.method == "halving":
        result["halving"] = {"eta": ETA, "rungs": plan.rungs, "decisions": plan.decisions}
    if points is not None:
        result["points"] = points
    sweep_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(sweep_dir / SWEEP_FILE, json.dumps(result, indent=2))
    return result


def _summary_row(plan: SweepPlan, job: Job, status: dict[str, dict]) -> dict:
    """One run's line in sweep.json."""
    metrics = final_metrics(job.run_dir)
    halted = plan.halted.get(job.name)
    state = run_state(job.run_dir, halted or job.epochs)
    if state == "finished" and halted is not None:
        state = "halted"
    elif state != "finished" and status.get(job.name, {}).get("state") == "failed":
        state = "failed"
    return {
        "name": job.run_dir.name,
        "point": job.point or job.run_dir.name,
        "seed": job.seed,
        "run_dir": os.path.relpath(job.run_dir, plan.sweep_dir),
        "config": os.path.relpath(job.config_path, plan.sweep_dir),
        "log": os.path.relpath(job.log_path, plan.sweep_dir),
        "overrides": list(job.overrides),
        "state": state,
        "epochs_done": metrics.get("epoch", 0),
        "epochs": job.epochs,
        "halted_at": halted,
        "test_accuracy": metrics.get("test_accuracy"),
        "test_ece": metrics.get("test_ece"),
    }


def _seed_points(rows: list[dict]) -> list[dict]:
    """Each grid point over its seeds: mean and sample standard deviation of the final test accuracy and ECE,
    once every seed's run has finished; ``run_dir`` is the first seed's run."""
    by_point: dict[str, list[dict]] = {}
    for row in rows:
        by_point.setdefault(row["point"], []).append(row)
    out = []
    for name, runs in by_point.items():
        finished = all(r["state"] == "finished" and r["test_accuracy"] is not None for r in runs)
        halted = any(r["state"] == "halted" for r in runs)
        entry = {
            "name": name,
            "run_dir": runs[0]["run_dir"],
            "overrides": runs[0]["overrides"],
            "seeds": [r["seed"] for r in runs],
            "state": "finished" if finished else "halted" if halted else "unfinished",
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
    method: str = "full",
) -> dict:
    """Plan, run (resumably) and summarize one sweep; return the contents of ``sweep.json``.

    ``method``: ``full`` (Appendix B.1: every point to the end) or ``halving`` (experiments.halving).
    ``sweep.json`` is rewritten after every run; ``prune`` deletes the checkpoints of runs that can no
    longer be the best as soon as they are out of the race (see prune_checkpoints).
    """
    plan = SweepPlan(Path(sweep_dir), grid, plan_sweep(sweep_dir, grid, configure, seeds=seeds), method)
    return run_sweeps([plan], slots, runner, log, prune)[0]


def sweep_progress(
    plan: SweepPlan, prune: bool, log: Callable[[str], None] = _log.info
) -> Callable[[Job, dict[str, dict]], None]:
    """An ``on_done`` for run_jobs: rewrite the sweep's sweep.json (and prune) when one of its jobs ends."""
    names = {job.name for job in plan.jobs}

    def on_done(job: Job, status: dict[str, dict]) -> None:
        if job.name in names:
            result = summarize_sweep(plan, status)
            deleted = prune_checkpoints(plan.sweep_dir, result) if prune else []
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
    A run halted at a successive-halving rung is out of the race at once and loses its checkpoints then
    (a full sweep in the same directory later trains it again from the start).
    """
    best = (result.get("best") or {}).get("name")
    sweep_dir, deleted = Path(sweep_dir), []
    open_points = {p["name"] for p in result.get("points") or [] if p["state"] not in ("finished", "halted")}
    for row in result["runs"]:
        point = row.get("point", row["name"])
        out = row["state"] == "halted" or (row["state"] == "finished" and best is not None)
        if point == best or not out or point in open_points:
            continue
        folder = last_checkpoint_path(sweep_dir / row["run_dir"]).parent
        files = sorted(folder.glob("*.pt")) if folder.is_dir() else []
        if files:
            atomic_write_text(
                folder / PRUNED_MARKER,
                f"checkpoints deleted {time.strftime('%Y-%m-%d %H:%M')}: the "
                f"sweep chose {best or 'other runs'}; metrics.jsonl is complete\n",
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
        return "\n".join(lines + _halving_lines(result))
    lines = [f"  {'run':<28} {'state':<10} {'epochs':>9} {'test acc':>9} {'ECE':>7}"]
    for r in result["runs"]:
        acc = "-" if r["test_accuracy"] is None else f"{100 * r['test_accuracy']:.2f}%"
        ece = "-" if r["test_ece"] is None else f"{r['test_ece']:.4f}"
        mark = "*" if r["name"] == best else " "
        done = f"{r['epochs_done']:>4}/{r['epochs']:<4}"
        lines.append(f"{mark} {r['name']:<28} {r['state']:<10} {done} {acc:>9} {ece:>7}")
    return "\n".join(lines + _halving_lines(result))


def _halving_lines(result: dict) -> list[str]:
    """A halving sweep's rungs and who went on from each (nothing for a full sweep)."""
    halving = result.get("halving")
    if not halving:
        return []
    lines = [f"successive halving, rungs at epochs {', '.join(map(str, halving['rungs']))}:"]
    for d in halving["decisions"]:
        lines.append(
            f"  after epoch {d['epoch']}: {len(d['kept'])} of {len(d['test_accuracy'])} go on ({', '.join(d['kept'])})"
        )
    return lines
