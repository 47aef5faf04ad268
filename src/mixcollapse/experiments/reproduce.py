"""``mixcollapse reproduce``: each figure and table of the paper with one command, at the full, cpu or tiny scale.

``reproduce("fig1", scale="full", out="reproduce_out")`` does, in order:

1. **data**: every dataset the experiment needs is found before anything trains. At full scale a
   missing dataset stops the command with one line naming the files and how to get them; at tiny
   scale synthetic files in the real on-disk format are written to ``<out>/fake-data`` (one line
   says so, and every output carries the note).
2. **training**, shared between experiments through ``<out>``: the sweeps
   (``<out>/sweeps/<run>/``, see :mod:`mixcollapse.experiments.sweep`) and then the runs that reuse a sweep's
   best hyper-parameters (``<out>/runs/<run>/<best point>/``). A finished run is never trained
   again; a killed one resumes.
3. **analysis**: the experiment's step (:mod:`mixcollapse.experiments.steps`, ``STEPS``: the one place where
   step names are dispatched):
   ``configuration`` panels (analysis.run.analyze_run, cached in ``<out>/analysis``),
   ``trajectory`` (analysis.trajectory), ``classifier`` curves (metrics.jsonl) or a ``table``.
4. **outputs**: ``<out>/figures/<experiment>.png`` (.pdf too with ``--pdf``),
   ``<out>/tables/<experiment>.{csv,json,md}`` and ``<out>/experiments/<experiment>.json`` (what ran, on
   which data, the numbers, the files), which ``mixcollapse report`` turns into one HTML page.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from mixcollapse.experiments.cost import estimate_gpu_hours, trainings
from mixcollapse.experiments.launch import Launch, Runner
from mixcollapse.experiments.paper import (
    EXPERIMENTS,
    PAPER_EXPERIMENTS,
    Experiment,
    at_scale,
    experiments_runs,
    get_experiment,
    select_datasets,
)
from mixcollapse.experiments.runs import Context, ensure_runs, final_row, resolve_data, scale_note
from mixcollapse.experiments.scales import CPU_ARCHS, SCALES, cpu_datasets, cpu_preset, scale_threads
from mixcollapse.experiments.steps import STEPS
from mixcollapse.experiments.sweep import SWEEP_METHODS, launch_slots
from mixcollapse.files import atomic_write_text

_log = logging.getLogger(__name__)

MANIFEST_DIR = "experiments"


# ---- the command ------------------------------------------------------------------------------


def reproduce(
    name: str,
    *,
    scale: str = "full",
    out: str | Path = "reproduce_out",
    data_root: str | Path = "data",
    datasets: Sequence[str] | None = None,
    archs: Sequence[str] | None = None,
    download: bool = False,
    seeds: Sequence[int] | None = None,
    prune_checkpoints: bool = False,
    sweep: str = "full",
    launch: Launch = Launch(),
    log: Callable[[str], None] = _log.info,
) -> list[dict]:
    """Reproduce experiment ``name`` (or ``all``) into ``out``; return the manifests written.

    ``datasets`` limits the experiments to those datasets (paper.select_datasets: one drawn on
    CIFAR10 alone moves to the first of them), ``archs`` to those architectures. Shared runs are trained
    once per ``out``. ``seeds``: train every run with each of these seeds (hyper-parameters chosen once, on
    the preset seed's sweep); tables show the mean ± standard deviation over them and figures the first
    seed's runs.
    ``prune_checkpoints``: delete the checkpoints of sweep runs as soon as they can no longer be chosen
    (their metrics stay; docs/reproduce.md: disk space). ``sweep``: how a sweep picks its learning rate, ``full``
    (Appendix B.1: every point trained to the end) or ``halving`` (experiments.halving: successive halving,
    about a third of the cost; a documented deviation). ``launch``: where the runs train (this machine's
    GPUs or CPU, or Slurm jobs) and with how many torch threads (e.g. 1 for two commands side by side).
    """
    _check_choices(scale, sweep)
    names = list(PAPER_EXPERIMENTS) if name == "all" else [get_experiment(name).name]
    if scale == "cpu" and datasets is None:
        datasets = cpu_datasets()
        log(f"[reproduce] cpu scale: the datasets with a CPU recipe, {', '.join(datasets)} (--datasets to choose)")
    exps = select_experiments(names, datasets, scale, log, archs)
    keys = list(dict.fromkeys(k for e in exps for k in e.runs))
    datasets_used = list(dict.fromkeys(k.dataset for k in keys))
    if seeds is not None and (not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0):
        raise ValueError(f"--seeds {seeds}: give distinct seeds >= 0, e.g. --seeds 0,1,2")
    ctx = Context(
        out=Path(out),
        scale=scale,
        log=log,
        overrides=launch.overrides(),
        seeds=list(seeds) if seeds else None,
        sweep=sweep,
    )
    if scale == "cpu":
        for key in keys:
            cpu_preset(key.preset)  # a dataset without a CPU recipe stops here, before its data is searched
    for ds in datasets_used:  # before anything trains: cpu and full scale refuse missing data here
        ctx.sources[ds] = resolve_data(ds, scale, data_root, out, download)
    if scale == "full" and not launch.allow_cpu and launch.launcher != "slurm":  # Slurm jobs get GPUs on the cluster
        _need_a_gpu(names)
    slots, runner = launch_slots(launch, log)
    with scale_threads(scale):
        return _reproduce(exps, keys, datasets_used, ctx, slots, runner, prune_checkpoints)


def _check_choices(scale: str, sweep: str) -> None:
    if scale not in SCALES:
        raise ValueError(f"--scale {scale} is not one of: {', '.join(SCALES)}")
    if sweep not in SWEEP_METHODS:
        raise ValueError(f"--sweep {sweep} is not one of: {', '.join(SWEEP_METHODS)}")
    if scale == "cpu" and sweep != "full":
        raise ValueError("--sweep halving needs a sweep, and the CPU scale trains each run once with its recipe")


def _need_a_gpu(names: Sequence[str]) -> None:
    import torch

    if not torch.cuda.is_available():
        hours = estimate_gpu_hours(names)
        raise ValueError(
            f"--scale full trains for about {hours:.0f} A100-hours and no GPU is visible; on this "
            "machine use --scale cpu --datasets fashionmnist (real data, at most 20 minutes per run "
            "on 2 cores), --scale tiny for a minutes-long smoke test, or --allow-cpu to insist"
        )


def select_experiments(
    names: Sequence[str],
    datasets: Sequence[str] | None,
    scale: str,
    log: Callable[[str], None] = _log.info,
    archs: Sequence[str] | None = None,
) -> list[Experiment]:
    """The named experiments limited to ``datasets``, to ``archs`` and, at cpu scale, to the architectures with a
    CPU recipe.

    A single experiment with nothing left is an error; within ``all`` it is skipped with one line.
    """
    if scale == "cpu":
        archs = tuple(a for a in (archs or CPU_ARCHS) if a in CPU_ARCHS)
    archs = tuple(archs) if archs is not None else None
    out = []
    for n in names:
        try:
            out.append(select_datasets(at_scale(get_experiment(n), scale), datasets, archs))
        except ValueError as err:
            why = str(err)
            if archs is not None:
                why += (
                    f" at --scale cpu (CPU recipes: {', '.join(cpu_datasets())}); use --scale tiny or full for "
                    "the others"
                )
            if len(names) == 1:
                raise ValueError(why) from None
            log(f"[reproduce] skipping {why}")
    if not out:
        raise ValueError("no experiment has anything to draw with these --datasets at this scale")
    return out


def _reproduce(exps: list[Experiment], keys, datasets, ctx: Context, slots, runner: Runner, prune: bool) -> list[dict]:
    out, log = ctx.out, ctx.log
    out.mkdir(parents=True, exist_ok=True)
    log(f"[reproduce] {', '.join(e.name for e in exps)} at {ctx.scale} scale into {out}")
    for ds in datasets:
        log(f"[reproduce] data {ctx.sources[ds].describe(ds)}")
    tic = time.perf_counter()
    ensure_runs(keys, ctx, slots, runner, prune)
    train_seconds = time.perf_counter() - tic
    manifests = []
    for exp in exps:
        tic = time.perf_counter()
        log(f"[reproduce] {exp.name}: {exp.title}")
        result = STEPS[exp.step](exp, ctx)
        manifest = write_manifest(exp, ctx, result, train_seconds, time.perf_counter() - tic)
        for f in manifest.get("figures", [])[:1]:
            log(f"[reproduce] {exp.name}: figure {out / f}")
        manifests.append(manifest)
    log(f"[reproduce] done; `mixcollapse report {out}` gathers the figures and tables into one HTML page")
    return manifests


def write_manifest(exp: Experiment, ctx: Context, result: dict, train_seconds: float, seconds: float) -> dict:
    """``<out>/experiments/<name>.json``: the experiment, its data, its runs, its outputs."""
    synthetic = {ds: src.kind == "fake" for ds, src in ctx.sources.items() if ds in {k.dataset for k in exp.runs}}
    runs = {}
    for key in exp.runs:
        run_dir = ctx.runs[key.name]
        row = final_row(run_dir)
        runs[key.name] = {
            "run_dir": ctx.rel(run_dir),
            "hyper": ctx.hyper.get(key.name, []),
            "sweep": ctx.rel(ctx.sweeps[key.sweep_source().name]) if key.sweep_source().name in ctx.sweeps else None,
            "epochs": row.get("epoch"),
            "test_accuracy": row.get("test_accuracy"),
            "test_ece": row.get("test_ece"),
        }
        if key.name in ctx.seed_runs:
            runs[key.name]["seed_runs"] = {str(seed): ctx.rel(d) for seed, d in ctx.seed_runs[key.name].items()}
    reserved = {"name", "title", "expected", "step", "scale", "scale_note", "data", "synthetic", "runs", "sweep"}
    assert not reserved & set(result), f"step result overwrites {reserved & set(result)}"
    manifest = {
        "name": exp.name,
        "title": exp.title,
        "expected": exp.expected,
        "step": exp.step,
        "scale": ctx.scale,
        "scale_note": scale_note(ctx, exp.runs),
        "data": {ds: ctx.sources[ds].describe(ds) for ds in synthetic},
        "synthetic": any(synthetic.values()),
        "runs": runs,
        "sweep": ctx.sweep,
        "trainings_full_scale": sum(n for _, n in trainings(exp.runs)),  # of the runs drawn here
        "estimated_gpu_hours_full_scale": {  # with this call's --sweep
            "A100": round(estimate_gpu_hours([exp.name], "A100", sweep=ctx.sweep), 1),
            "H100": round(estimate_gpu_hours([exp.name], "H100", sweep=ctx.sweep), 1),
        },
        "seconds_training": round(train_seconds, 1),
        "seconds_analysis": round(seconds, 1),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        **result,
    }
    path = ctx.out / MANIFEST_DIR / f"{exp.name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(manifest, indent=2, default=_json_default))
    return manifest


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(type(obj).__name__)


def list_experiments() -> str:
    """The table printed by ``mixcollapse reproduce --list``."""
    lines = [
        f"{'experiment':<10} {'step':<13} {'trainings':>9} {'A100-h':>7} {'H100-h':>7} {'halving':>7}  what",
        f"{'-' * 10} {'-' * 13} {'-' * 9} {'-' * 7} {'-' * 7} {'-' * 7}  {'-' * 40}",
    ]
    rows = [(e.name, e.step, at_scale(e, "full").runs, [e.name], e.title) for e in EXPERIMENTS.values()]
    everything = list(PAPER_EXPERIMENTS)
    rows.append(("all", "", experiments_runs(everything), everything, "every experiment, shared runs trained once"))
    for name, step, runs, names, title in rows:
        n = sum(k for _, k in trainings(runs))
        lines.append(
            f"{name:<10} {step:<13} {n:>9} {estimate_gpu_hours(names):>7.0f} "
            f"{estimate_gpu_hours(names, 'H100'):>7.0f} {estimate_gpu_hours(names, 'H100', sweep='halving'):>7.0f}  "
            f"{title}"
        )
    lines.append("")
    lines.append(
        "trainings: full-scale runs needed (sweep points included); GPU-hours: estimates from counted "
        "FLOPs at 40% of the bf16 peak (docs/reproduce.md); halving: H100-hours with --sweep halving "
        "(successive halving instead of Appendix B.1's full sweeps). Experiments share runs through --out."
    )
    lines.append("Run one: mixcollapse reproduce fig1 [--scale tiny|cpu|full] [--data-root DIR] [--out DIR]")
    return "\n".join(lines)
