"""``mixcollapse reproduce``: each figure and table of the paper with one command, at full or tiny scale.

``reproduce("fig1", scale="full", out="reproduce_out")`` does, in order:

1. **data**: every dataset the experiment needs is found before anything trains. At full scale a
   missing dataset stops the command with one line naming the files and how to get them; at tiny
   scale synthetic files in the real on-disk format are written to ``<out>/fake-data`` (one line
   says so, and every output carries the note).
2. **training**, shared between experiments through ``<out>``: the sweeps
   (``<out>/sweeps/<run>/``, see :mod:`mixcollapse.experiments.sweep`) and then the runs that reuse a sweep's
   best hyper-parameters (``<out>/runs/<run>/<best point>/``). A finished run is never trained
   again; a killed one resumes.
3. **analysis**: the experiment's step (``STEPS``; the one place where step names are dispatched):
   ``configuration`` panels (analysis.run.analyze_run, cached in ``<out>/analysis``),
   ``trajectory`` (analysis.trajectory), ``classifier`` curves (metrics.jsonl) or a ``table``.
4. **outputs**: ``<out>/figures/<experiment>.png`` (.pdf too with ``--pdf``),
   ``<out>/tables/<experiment>.{csv,json,md}`` and ``<out>/experiments/<experiment>.json`` (what ran, on
   which data, the numbers, the files), which ``mixcollapse report`` turns into one HTML page.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mixcollapse.config import model_label, training_label
from mixcollapse.experiments.registry import (
    ARCH_SHORT,
    ARCH_TITLES,
    CPU_ARCHS,
    DATASET_TITLES,
    EXPERIMENTS,
    SCALES,
    Experiment,
    Panel,
    RunKey,
    at_scale,
    cpu_datasets,
    cpu_preset,
    estimate_gpu_hours,
    experiments_runs,
    get_experiment,
    panel_rows,
    plan_runs,
    run_config,
    scale_epoch,
    scale_threads,
    select_datasets,
    sweep_grid,
    trainings,
    trajectory_lams,
)
from mixcollapse.experiments.sweep import (
    Runner,
    format_sweep,
    launch_slots,
    make_slots,
    parse_gpus,
    plan_sweep,
    run_jobs,
    summarize_sweep,
    sweep_progress,
    write_job,
)
from mixcollapse.experiments.sweep import prune_checkpoints as prune_sweep
from mixcollapse.experiments.tables import format_table, write_table
from mixcollapse.files import atomic_write_text
from mixcollapse.plots.paper import draw_classifier_curves, draw_configuration_grid, draw_trajectory_grid
from mixcollapse.training.rundir import read_metrics

_log = logging.getLogger(__name__)

MANIFEST_DIR = "experiments"


@dataclass
class Context:
    """What the steps of one ``reproduce`` call share."""

    out: Path
    scale: str
    sources: dict = field(default_factory=dict)  # dataset -> fakedata.DataSource
    runs: dict[str, Path] = field(default_factory=dict)  # run name -> run directory
    hyper: dict[str, list[str]] = field(default_factory=dict)  # run name -> chosen hyper-parameter overrides
    configs: dict = field(default_factory=dict)  # run name -> its resolved ExperimentConfig at this scale
    sweeps: dict[str, Path] = field(default_factory=dict)  # run name -> its sweep directory (swept runs)
    overrides: list[str] = field(default_factory=list)  # applied last to every run (e.g. train.threads)
    seeds: list[int] | None = None  # training seeds (--seeds): tables average them, figures show the first
    seed_runs: dict[str, dict[int, Path]] = field(default_factory=dict)  # run name -> seed -> run directory
    log: Callable[[str], None] = _log.info

    def rel(self, path: str | Path) -> str:
        """``path`` relative to the output directory (manifests stay valid when ``out`` moves)."""
        try:
            return str(Path(path).resolve().relative_to(self.out.resolve()))
        except ValueError:
            return str(path)


# ---- data -------------------------------------------------------------------------------------


def resolve_data(dataset: str, scale: str, data_root: str | Path, out: str | Path, download: bool = False):
    """Where ``dataset`` is read from at ``scale`` (a fakedata.DataSource); cpu and full scale refuse missing data.

    Tiny scale never downloads: without the real files (searched as data.locate_files does) it
    writes synthetic files in the real on-disk format to ``<out>/fake-data``. The cpu and full
    scales use the real files (full: downloaded first when ``download``) and raise ValueError with
    one line naming the folders searched and how to install the data when they are missing.
    """
    from mixcollapse.config import DataConfig
    from mixcollapse.data.fake import ensure_data
    from mixcollapse.data.specs import DOWNLOAD_HINT, SPECS, DataError

    root = str(Path(data_root).expanduser().resolve())
    cfg = DataConfig(name=dataset, root=root, download=download and scale == "full")
    if scale == "tiny":
        return ensure_data(cfg, allow_fake=True, fake_root=Path(out).resolve() / "fake-data")
    try:
        source = ensure_data(cfg, allow_fake=False)
    except DataError as err:
        hint = "--scale tiny runs without it" if scale == "cpu" else \
            "or let torchvision download it (--download); --scale tiny runs without it"
        why = str(err).replace(DOWNLOAD_HINT, "")
        raise ValueError(f"--scale {scale} needs the real data: {why}; {hint}") from None
    if source.kind == "fake":
        raise ValueError(f"--scale {scale} needs the real {SPECS[dataset].title} files, but {source.root} holds "
                         "synthetic ones (FAKE_DATA.txt); point --data-root at the real data")
    return source


def data_overrides(source) -> list[str]:
    """Config overrides that point a run at ``source`` (found already: training never downloads)."""
    return [f"data.root={source.root}", "data.download=false"]


# ---- training ---------------------------------------------------------------------------------


def ensure_runs(keys: Sequence[RunKey], ctx: Context, slots, runner: Runner, prune: bool = False) -> None:
    """Train what ``keys`` need (sweeps first, then the runs reusing a sweep's best) and record the run directories."""
    late = {ds: data_overrides(src) + ctx.overrides for ds, src in ctx.sources.items()}
    if ctx.scale == "cpu":
        _ensure_single_runs(keys, ctx, slots, runner, late)
        return
    plan = plan_runs(keys)
    jobs, sweeps = [], {}
    for key in plan.swept:
        sweep_dir = ctx.out / "sweeps" / key.name
        grid = sweep_grid(key.arch, ctx.scale)

        def configure(hyper: list[str], key: RunKey = key):
            return run_config(key, ctx.scale, hyper, late[key.dataset])

        planned = plan_sweep(sweep_dir, grid, configure, prefix=f"{key.name}/")
        sweeps[key] = (sweep_dir, grid, planned)
        jobs += planned
    progress = [sweep_progress(d, planned, grid, prune, ctx.log) for d, grid, planned in sweeps.values()]
    status = run_jobs(jobs, slots, runner, ctx.log, on_done=lambda job, st: [p(job, st) for p in progress])
    for key, (sweep_dir, grid, planned) in sweeps.items():
        result = summarize_sweep(sweep_dir, planned, grid, status)
        if prune:
            prune_sweep(sweep_dir, result)
        best = result["best"]
        if best is None:
            raise ValueError(f"every run of the sweep {sweep_dir} failed; see its logs/ and rerun to retry")
        ctx.log(f"[reproduce] sweep {key.name}: best {best['name']} of {len(result['runs'])}\n{format_sweep(result)}")
        if not result["complete"]:
            ctx.log(f"[reproduce] warning: sweep {key.name} is incomplete; the best of its finished runs is used "
                    "(a rerun retries the others)")
        ctx.runs[key.name] = sweep_dir / best["run_dir"]
        ctx.hyper[key.name] = list(best["overrides"])
        ctx.configs[key.name] = run_config(key, ctx.scale, best["overrides"], late[key.dataset])
        ctx.sweeps[key.name] = sweep_dir

    jobs = []
    for key in plan.inherited:
        source = key.sweep_source().name
        hyper, point = ctx.hyper[source], ctx.runs[source].name
        base = ctx.out / "runs" / key.name
        cfg = run_config(key, ctx.scale, hyper, late[key.dataset])
        jobs.append(write_job(key.name, cfg, base / point, base / f"{point}.yaml", base / f"{point}.log", hyper))
        ctx.runs[key.name], ctx.hyper[key.name], ctx.configs[key.name] = base / point, list(hyper), cfg
    status = run_jobs(jobs, slots, runner, ctx.log)
    _raise_on_failure(jobs, status)
    _ensure_seed_runs(keys, ctx, slots, runner, late)


def _ensure_single_runs(keys: Sequence[RunKey], ctx: Context, slots, runner: Runner, late: dict) -> None:
    """The CPU scale: every run trains once with its recipe's settings, no sweep (``<out>/runs/<run>/cpu``)."""
    jobs = []
    for key in keys:
        cfg = run_config(key, ctx.scale, (), late[key.dataset])
        base = ctx.out / "runs" / key.name
        jobs.append(write_job(key.name, cfg, base / "cpu", base / "cpu.yaml", base / "cpu.log", []))
        ctx.runs[key.name], ctx.hyper[key.name], ctx.configs[key.name] = base / "cpu", [], cfg
    ctx.log(f"[reproduce] cpu scale: no learning-rate sweep; each of the {len(jobs)} runs trains once with its "
            "recipe's settings (presets/<arch>-<dataset>-cpu.yaml)")
    status = run_jobs(jobs, slots, runner, ctx.log)
    _raise_on_failure(jobs, status)
    _ensure_seed_runs(keys, ctx, slots, runner, late)


def _ensure_seed_runs(keys: Sequence[RunKey], ctx: Context, slots, runner: Runner, late: dict) -> None:
    """With ``ctx.seeds``: each run again for every seed other than its config's own (``<run dir>-seed<s>``), with
    the hyper-parameters chosen on the sweep; the figures' runs become the first seed's."""
    if not ctx.seeds:
        return
    jobs = []
    for key in keys:
        own, base, cfg = ctx.runs[key.name], ctx.out / "runs" / key.name, ctx.configs[key.name]
        runs, configs = {}, {}
        for seed in ctx.seeds:
            if seed == cfg.train.seed:
                runs[seed], configs[seed] = own, cfg
                continue
            point = f"{own.name}-seed{seed}"
            configs[seed] = run_config(key, ctx.scale, ctx.hyper[key.name], [*late[key.dataset], f"train.seed={seed}"])
            jobs.append(write_job(f"{key.name}/seed{seed}", configs[seed], base / point, base / f"{point}.yaml",
                                  base / f"{point}.log", ctx.hyper[key.name]))
            runs[seed] = base / point
        ctx.seed_runs[key.name] = runs
        ctx.runs[key.name], ctx.configs[key.name] = runs[ctx.seeds[0]], configs[ctx.seeds[0]]
    ctx.log(f"[reproduce] seeds {', '.join(map(str, ctx.seeds))}: {len(jobs)} more runs with the chosen "
            "hyper-parameters; the tables show the mean and standard deviation over the seeds, the figures the "
            f"runs of seed {ctx.seeds[0]}")
    status = run_jobs(jobs, slots, runner, ctx.log)
    _raise_on_failure(jobs, status)


def _raise_on_failure(jobs, status: dict) -> None:
    failed = [j for j in jobs if status[j.name]["state"] != "finished"]
    if failed:
        raise ValueError(f"run {failed[0].name} failed; see {failed[0].log_path} (a rerun resumes it)")


def analysis_overrides(cfg) -> list[str]:
    """Every ``analysis.*`` value of ``cfg`` as overrides (JSON values read back exactly by YAML)."""
    from dataclasses import asdict

    return [f"analysis.{k}={json.dumps(v)}" for k, v in asdict(cfg.analysis).items()]


def final_row(run_dir: Path, epoch: int | None = None) -> dict:
    """The metrics row of ``epoch`` (default: the last) of a run."""
    rows = read_metrics(run_dir)
    if epoch is not None:
        rows = [r for r in rows if int(r.get("epoch", 0)) == epoch]
    return rows[-1] if rows else {}


# ---- labels -----------------------------------------------------------------------------------


def run_label(key: RunKey, cfg) -> str:
    """Model, dataset and what the training was (loss, mixup α, fixed ETF, optimizer), from the run's config."""
    return f"{model_label(cfg)} · {DATASET_TITLES[key.dataset]} · {training_label(cfg)}"


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


# ---- step: configuration ----------------------------------------------------------------------


def analyse_panel(panel: Panel, ctx: Context) -> dict:
    """Features, projection and numbers of one configuration panel (analysis cached under ``<out>/analysis``)."""
    from mixcollapse.analysis.extract import load_pair_features
    from mixcollapse.analysis.measure import ANALYSIS_FILE
    from mixcollapse.analysis.run import analyze_run
    from mixcollapse.metrics.projection import project_classifier, project_features
    from mixcollapse.training.checkpoint import find_checkpoint

    run_dir = ctx.runs[panel.run.name]
    cfg = ctx.configs[panel.run.name]
    epoch = None
    if panel.checkpoint_epoch is not None:
        epoch = panel.checkpoint_epoch
        if ctx.scale != "full":
            epoch = scale_epoch(epoch, run_config(panel.run, "full").train.epochs, cfg.train.epochs)
    name = None if epoch is None else f"epoch_{epoch:04d}.pt"
    if name is not None and not (run_dir / "checkpoints" / name).is_file() and (run_dir / "checkpoints").is_dir():
        raise ValueError(f"{panel.run.name} in {run_dir} was trained (for another experiment) without keeping the "
                         f"checkpoint of epoch {epoch}; reproduce this experiment into another --out")
    checkpoint = find_checkpoint(run_dir, name)
    # The analysis settings of this scale, whatever the run saved (they never change training).
    overrides = analysis_overrides(cfg) + ([] if panel.seed is None else [f"analysis.seed={panel.seed}"])
    tag = checkpoint.stem + ("" if panel.seed is None else f"-seed{panel.seed}")
    out_dir = ctx.out / "analysis" / panel.run.name / tag
    stat = checkpoint.stat()
    source = {"checkpoint": str(checkpoint.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
              "overrides": overrides}
    source_file = out_dir / "source.json"
    cached = (out_dir / ANALYSIS_FILE).is_file() and source_file.is_file() and \
        json.loads(source_file.read_text()) == source
    if cached:
        summary = json.loads((out_dir / ANALYSIS_FILE).read_text())
        feats = load_pair_features(out_dir / "features")
    else:
        # The per-run figures of analyze_run (reliability, measures, ...) on real data only: seconds each.
        analysis = analyze_run(run_dir, checkpoint=checkpoint, out_dir=out_dir, overrides=overrides, overwrite=True,
                               progress=False, draw=ctx.scale != "tiny")
        summary, feats = analysis.summary, analysis.features
        atomic_write_text(source_file, json.dumps(source))
    classes = [int(c) for c in summary["classes"]]
    rows = feats.classifier_weight[classes]
    xy = project_features(np.asarray(feats.features), rows, center=True)  # Appendix B.2, mean-centred
    row = final_row(run_dir, epoch)
    if row.get("test_accuracy") is None:  # an epoch training did not evaluate: the analysis's own test pass
        row = {**row, "test_accuracy": summary.get("test_accuracy"), "test_ece": summary.get("ece")}
    when = f"epoch {row.get('epoch', epoch)}" if epoch is not None else ""
    subset = f"classes {', '.join(feats.meta.get('class_names', map(str, classes)))}"
    title = (f"{run_label(panel.run, cfg)}\n{when + ' · ' if when else ''}test acc {_pct(row.get('test_accuracy'))}"
             f" · {_bn_label(summary.get('bn_mode', '?'))}" + (f"\n{subset}" if panel.seed is not None else ""))
    return {
        "panel": dict(xy=xy, lam=np.asarray(feats.lam), same=np.asarray(feats.same),
                      classifier_xy=project_classifier(rows), title=title,
                      class_names=feats.meta.get("class_names")),
        "record": {"run": panel.run.name, "checkpoint": ctx.rel(checkpoint), "epoch": row.get("epoch"),
                   "classes": classes, "class_names": feats.meta.get("class_names"), "bn_mode": summary.get("bn_mode"),
                   "test_accuracy": row.get("test_accuracy"), "test_ece": row.get("test_ece"),
                   "pair_prob_mae": summary.get("pair_prob_mae"), "analysis": ctx.rel(out_dir)},
    }


def _bn_label(mode: str) -> str:
    """``BN recalibrate`` / ``BN train`` / ``BN eval``, or ``no batch norm`` (a ViT: "none (the model has ...)")."""
    return "no batch norm" if mode.startswith("none") else f"BN {mode.split(' ')[0]}"


def configuration_step(exp: Experiment, ctx: Context) -> dict:
    """Configuration scatters (Figures 1, 2, 7-12): one panel per run/checkpoint/class subset."""
    rows = [[analyse_panel(p, ctx) for p in row] for row in panel_rows(exp, ctx.scale)]
    figure = draw_configuration_grid([[r["panel"] for r in row] for row in rows], ctx.out / "figures" / exp.name,
                                     _suptitle(exp, ctx))
    return {"figures": [ctx.rel(p) for p in figure], "panels": [r["record"] for row in rows for r in row]}


# ---- step: trajectory -------------------------------------------------------------------------


def trajectory_step(exp: Experiment, ctx: Context) -> dict:
    """Figure 3: paths of mixes through the layers, for every run of the experiment (ViT and WRN)."""
    from mixcollapse.analysis.extract import mixup_training_batches
    from mixcollapse.analysis.trajectory import layer_trajectories, save_trajectories
    from mixcollapse.data.datasets import build_datasets, train_labels
    from mixcollapse.machine import pick_device
    from mixcollapse.mixup import choose_classes
    from mixcollapse.training.checkpoint import load_model

    device = pick_device("auto")
    panels, records = [], []
    for key in exp.runs_extra:
        run_dir = ctx.runs[key.name]
        model, _ = load_model(run_dir, device=device)
        cfg = ctx.configs[key.name]
        a = cfg.analysis
        plain = build_datasets(cfg.data, train_augment=False)
        augmented = build_datasets(cfg.data, train_augment=None)
        classes = a.classes if a.classes is not None else choose_classes(plain.num_classes, a.seed)
        batches = mixup_training_batches(augmented.train, plain.num_classes, cfg.mixup.alpha or 1.0,
                                         cfg.train.batch_size, seed=a.seed)
        result = layer_trajectories(
            model, plain.train, train_labels(plain), classes, lams=trajectory_lams(exp, ctx.scale),
            reference_batches=batches, reference_size=2048 if ctx.scale == "full" else 4 * cfg.train.batch_size,
            bn_mode=a.bn_mode, recalibrate_batches=a.recalibrate_batches, seed=a.seed, device=device,
        )
        names = [plain.class_names[c] for c in classes]
        result["class_names"] = names
        where = save_trajectories(result, ctx.out / "analysis" / key.name / "trajectory")
        how = "CLS token per block, final classifier" if result["projection"] == "classifier" else \
            "pooled features per stage, linear probes"
        label = f"{run_label(key, cfg)}\n{how}"
        row = []
        for kind, same in (("same class", True), ("different class", False)):
            sel = result["same"] == same
            row.append(dict(xy=result["xy"][sel], lam=result["lam"][sel], same=result["same"][sel],
                            classifier_xy=result["classifier_xy"], class_names=names,
                            title=f"{label}: {kind} ({names[0]}{'' if same else ' + ' + names[1]})"))
        readout = result["readout"]
        row.append(dict(layer_names=result["layer_names"], per_lambda=readout["per_lambda"], class_names=names,
                        title=f"{run_label(key, cfg)}\nthe final classifier read at every layer, "
                              f"{len(result['readout_pairs'])} pairs {names[0]} + {names[1]}",
                        note=readout_note(readout["small_lambda"], readout["layers"])))
        panels.append(row)
        records.append({"run": key.name, "projection": result["projection"], "bn_mode": result["bn_mode"],
                        "layers": result["layer_names"], "probe_r2": result["r2"], "classes": result["classes"],
                        "class_names": names, "pairs": np.unique(result["pair"], axis=0).tolist(),
                        "readout": readout, "files": ctx.rel(where)})
        ctx.log(f"[reproduce] {exp.name} {key.name}: {readout_note(readout['small_lambda'], readout['layers'], '; ')}")
    figure = draw_trajectory_grid(panels, ctx.out / "figures" / exp.name, _suptitle(exp, ctx))
    return {"figures": [ctx.rel(p) for p in figure], "trajectories": records}


def readout_note(small: dict, layers: Sequence[str] = (), sep: str = "\n") -> str:
    """Figure 3's number in words: where the major and the minor class of small-lambda mixes reach half their
    final probability (median over the mixes; mixcollapse.analysis.readout)."""
    unit = "block" if layers and layers[-1].startswith("block") else "layer"
    return (f"minor weight ≤ {small['minor_weight_at_most']:g}: half the final probability at {unit} "
            f"{small['major_half_depth']:g} (major class), {small['minor_half_depth']:g} (minor){sep}median of "
            f"{small['mixes']} mixes; the minor class later in {100 * small['minor_later_share']:.0f}%, "
            f"earlier in {100 * small['minor_earlier_share']:.0f}%")


# ---- step: classifier -------------------------------------------------------------------------


def classifier_step(exp: Experiment, ctx: Context) -> dict:
    """Figure 5: the classifier's norm CV and cosine std per epoch, from every run's metrics.jsonl."""
    curves = {}
    for key in exp.runs_extra:
        rows = [r for r in read_metrics(ctx.runs[key.name]) if r.get("classifier_norm_cv") is not None]
        curves[key.name] = {"arch": key.arch, "dataset": key.dataset, "model": model_label(ctx.configs[key.name]),
                            "epoch": [r["epoch"] for r in rows],
                            "norm_cv": [r["classifier_norm_cv"] for r in rows],
                            "cos_std": [r.get("classifier_cos_std") for r in rows]}
    data_path = ctx.out / "figures" / f"{exp.name}.json"
    data_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(data_path, json.dumps(curves, indent=2))
    figure = draw_classifier_curves(curves, ctx.out / "figures" / exp.name, _suptitle(exp, ctx), DATASET_TITLES,
                                    ARCH_TITLES)
    final = {k: {"norm_cv": c["norm_cv"][-1] if c["norm_cv"] else None,
                 "cos_std": c["cos_std"][-1] if c["cos_std"] else None} for k, c in curves.items()}
    return {"figures": [ctx.rel(p) for p in figure], "curves": ctx.rel(data_path), "final": final}


# ---- step: table ------------------------------------------------------------------------------


def table_step(exp: Experiment, ctx: Context) -> dict:
    """Tables 1 and 2: the final-epoch metric of each run beside the paper's value; printed and saved."""

    t = exp.table
    scale = 100.0 if t.percent else 1.0
    digits = 2 if t.percent else 3
    header = ["Network", "Dataset"]
    for _, title in t.columns:
        header += [f"{title} (measured)", f"{title} (paper)"]
    rows, cells = [], []
    for arch, dataset in t.rows:
        used = model_label(ctx.configs[RunKey(arch, dataset, t.columns[0][0]).name])
        paper_name = ARCH_TITLES[arch]
        line = [paper_name if ctx.scale == "full" else f"{paper_name} (as {used})", DATASET_TITLES[dataset]]
        for variant, _ in t.columns:
            key = RunKey(arch, dataset, variant)
            cell = _measured(ctx, key, t.metric, scale, digits)
            paper = t.paper.get((arch, dataset, variant))
            line += [cell.pop("shown"), paper]
            cells.append({"run": key.name, "arch": arch, "dataset": dataset, "variant": variant, **cell,
                          "paper": paper})
        rows.append(line)
    caption = f"{t.caption} Measured at {scale_note(ctx, exp.runs)}."
    files = write_table(ctx.out / "tables" / exp.name, header, rows, caption, ctx.scale)
    ctx.log(format_table(header, rows, caption))
    return {"tables": [{"caption": caption, "metric": t.metric, "percent": t.percent, "header": header,
                        "rows": rows, "cells": cells, "files": [ctx.rel(f) for f in files]}]}


def _measured(ctx: Context, key: RunKey, metric: str, scale: float, digits: int) -> dict:
    """A table cell: the run's final ``metric``, or over ``ctx.seeds`` its mean and sample standard deviation
    (shown as "mean ± std"); ``values`` per seed."""
    runs = ctx.seed_runs.get(key.name) or {None: ctx.runs[key.name]}
    values = [final_row(run).get(metric) for run in runs.values()]
    values = [None if v is None else scale * v for v in values]
    if len(values) == 1 or any(v is None for v in values):
        measured = None if values[0] is None or None in values else round(values[0], digits + 2)
        return {"measured": measured, "shown": None if measured is None else round(measured, digits)}
    mean, std = float(np.mean(values)), float(np.std(values, ddof=1))
    return {"measured": round(mean, digits + 2), "std": round(std, digits + 2), "seeds": list(runs),
            "values": [round(v, digits + 2) for v in values], "shown": f"{mean:.{digits}f} ± {std:.{digits}f}"}


def _suptitle(exp: Experiment, ctx: Context) -> str:
    """The experiment's title (the paper's model names only at full scale) over the scale and data line."""
    title = exp.title
    if ctx.scale != "full":
        title = re.sub(r"\b(WRN|WideResNet)-40-10\b", "WRN", title).replace("ViT-B/4", "ViT")
        kept = [p for row in exp.panels for p in row if p.checkpoint_epoch is not None and p.run.name in ctx.configs]
        if kept:  # Figure 10's epochs at this scale: the same fractions of training, per architecture
            said = []
            for arch in dict.fromkeys(p.run.arch for p in kept):
                mine = [p for p in kept if p.run.arch == arch]
                full = run_config(mine[0].run, "full").train.epochs
                here = ctx.configs[mine[0].run.name].train.epochs
                listed = ", ".join(str(scale_epoch(p.checkpoint_epoch, full, here)) for p in mine)
                paper = ", ".join(str(p.checkpoint_epoch) for p in mine)
                said.append((arch, f"{listed} of {here}", f"{paper} of {full}"))
            if len(said) == 1:
                title = re.sub(r"at epochs [\d, and]+\d", f"at epochs {said[0][1]} (the paper: {said[0][2]})", title)
            else:  # a row beyond the paper (Experiment.extra_rows): each architecture's epochs
                listed = "; ".join(f"{ARCH_SHORT[a]} at epochs {here}" for a, here, _ in said)
                title = re.sub(r"WRN on (\w+) at epochs [\d, and]+\d",
                               f"{' and '.join(ARCH_SHORT[a] for a, _, _ in said)} on \\1: {listed} (the paper: WRN "
                               f"only, at {said[0][2]}; the same fractions for the ViT)", title)
    return f"{exp.name}: {title}\n{scale_note(ctx, exp.runs)}"


# The one place where an experiment's step name becomes code.
STEPS: dict[str, Callable[[Experiment, Context], dict]] = {
    "configuration": configuration_step,
    "trajectory": trajectory_step,
    "classifier": classifier_step,
    "table": table_step,
}


# ---- the command ------------------------------------------------------------------------------


def reproduce(
    name: str,
    *,
    scale: str = "full",
    out: str | Path = "reproduce_out",
    data_root: str | Path = "data",
    datasets: Sequence[str] | None = None,
    threads: int | None = None,
    gpus: str | Sequence[str] | None = "auto",
    nproc_per_node: int = 1,
    download: bool = False,
    launcher: str = "auto",
    allow_cpu: bool = False,
    prune_checkpoints: bool = False,
    seeds: Sequence[int] | None = None,
    slurm=None,
    runner: Runner | None = None,
    log: Callable[[str], None] = _log.info,
) -> list[dict]:
    """Reproduce experiment ``name`` (or ``all``) into ``out``; return the manifests written.

    ``datasets`` limits the experiments to those datasets (experiments.select_datasets: one drawn on
    CIFAR10 alone moves to the first of them). ``threads`` sets every run's torch threads (e.g. 1
    for two commands side by side on two cores). Shared runs are trained once per ``out``.
    ``prune_checkpoints``: delete the checkpoints of sweep runs as soon as they can no longer be
    chosen (their metrics stay; docs/reproduce.md: disk space). ``seeds``: train every run with each of these
    seeds (hyper-parameters chosen once, on the preset seed's sweep); tables show the mean ± standard
    deviation over them and figures the first seed's runs. ``runner`` overrides how training
    jobs start (see :mod:`mixcollapse.experiments.sweep`); by default it follows ``launcher`` and the GPUs, or
    with ``launcher="slurm"`` submits each training as a Slurm job (``slurm``: experiments.slurm.SlurmOptions).
    """
    if scale not in SCALES:
        raise ValueError(f"--scale {scale} is not one of: {', '.join(SCALES)}")
    names = list(EXPERIMENTS) if name == "all" else [get_experiment(name).name]
    if scale == "cpu" and datasets is None:
        datasets = cpu_datasets()
        log(f"[reproduce] cpu scale: the datasets with a CPU recipe, {', '.join(datasets)} (--datasets to choose)")
    exps = select_experiments(names, datasets, scale, log)
    out = Path(out)
    keys = list(dict.fromkeys(k for e in exps for k in e.runs))
    datasets_used = list(dict.fromkeys(k.dataset for k in keys))
    if threads is not None and threads < 1:
        raise ValueError(f"--threads {threads} must be >= 1")
    if seeds is not None and (not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0):
        raise ValueError(f"--seeds {seeds}: give distinct seeds >= 0, e.g. --seeds 0,1,2")
    ctx = Context(out=out, scale=scale, log=log, overrides=[] if threads is None else [f"train.threads={threads}"],
                  seeds=list(seeds) if seeds else None)
    if scale == "cpu":
        for key in keys:
            cpu_preset(key.preset)  # a dataset without a CPU recipe stops here, before its data is searched
    for ds in datasets_used:  # before anything trains: cpu and full scale refuse missing data here
        ctx.sources[ds] = resolve_data(ds, scale, data_root, out, download)
    if scale == "full" and not allow_cpu and launcher != "slurm":  # Slurm jobs get their GPUs on the cluster
        import torch

        if not torch.cuda.is_available():
            hours = estimate_gpu_hours(names)
            raise ValueError(f"--scale full trains for about {hours:.0f} A100-hours and no GPU is visible; on this "
                             "machine use --scale cpu --datasets fashionmnist (real data, at most 20 minutes per run "
                             "on 2 cores), --scale tiny for a minutes-long smoke test, or --allow-cpu to insist")
    slots, picked = launch_slots(launcher, gpus, nproc_per_node, slurm, log) if runner is None else (
        make_slots(parse_gpus(gpus), nproc_per_node), runner)
    runner = picked
    with scale_threads(scale):
        return _reproduce(exps, keys, datasets_used, ctx, slots, runner, prune_checkpoints)


def select_experiments(names: Sequence[str], datasets: Sequence[str] | None, scale: str,
                       log: Callable[[str], None] = _log.info) -> list[Experiment]:
    """The named experiments limited to ``datasets`` and, at cpu scale, to the architectures with a CPU recipe.

    A single experiment with nothing left is an error; within ``all`` it is skipped with one line.
    """
    archs = CPU_ARCHS if scale == "cpu" else None
    out = []
    for n in names:
        try:
            out.append(select_datasets(at_scale(get_experiment(n), scale), datasets, archs))
        except ValueError as err:
            why = str(err)
            if archs is not None:
                why += (f" at --scale cpu (CPU recipes: {', '.join(cpu_datasets())}); use --scale tiny or full for "
                        "the others")
            if len(names) == 1:
                raise ValueError(why) from None
            log(f"[reproduce] skipping {why}")
    if not out:
        raise ValueError("no experiment has anything to draw with these --datasets at this scale")
    return out


def scale_note(ctx: Context, keys: Sequence[RunKey]) -> str:
    """One line for titles and captions: the scale and the data of ``keys``' runs (real or synthetic, sizes)."""
    from mixcollapse.data.specs import SPECS

    cfgs = [ctx.configs[k.name] for k in keys if k.name in ctx.configs]
    data = []
    for ds in dict.fromkeys(k.dataset for k in keys):
        src = ctx.sources.get(ds)
        if src is None:
            continue
        title = SPECS[ds].title if ds in SPECS else ds
        kind = "SYNTHETIC files, not the real data" if src.kind == "fake" else "real data"
        limits = {c.data.train_limit for c in cfgs if c.data.name == ds}
        size = f"first {min(limits):,} training images of " if limits and None not in limits else ""
        data.append(f"{size}{title} ({kind})")
    models = ", ".join(dict.fromkeys(model_label(c) for c in cfgs))
    epochs = "/".join(str(e) for e in sorted({c.train.epochs for c in cfgs}))
    what = {"full": "full scale (Appendix B.1)", "cpu": "CPU scale (one run per variant, no sweep)",
            "tiny": "TINY scale: a smoke test, not the paper's result"}[ctx.scale]
    return f"{what} · {models}, {epochs} epochs · {'; '.join(data)}"


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
        runs[key.name] = {"run_dir": ctx.rel(run_dir), "hyper": ctx.hyper.get(key.name, []),
                          "sweep": ctx.rel(ctx.sweeps[key.sweep_source().name]) if key.sweep_source().name in
                          ctx.sweeps else None,
                          "epochs": row.get("epoch"), "test_accuracy": row.get("test_accuracy"),
                          "test_ece": row.get("test_ece")}
        if key.name in ctx.seed_runs:
            runs[key.name]["seed_runs"] = {str(seed): ctx.rel(d) for seed, d in ctx.seed_runs[key.name].items()}
    reserved = {"name", "title", "expected", "step", "scale", "scale_note", "data", "synthetic", "runs"}
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
        "trainings_full_scale": sum(n for _, n in trainings(exp.runs)),  # of the runs drawn here
        "estimated_gpu_hours_full_scale": {"A100": round(estimate_gpu_hours([exp.name], "A100"), 1),
                                           "H100": round(estimate_gpu_hours([exp.name], "H100"), 1)},
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
    lines = [f"{'experiment':<10} {'step':<13} {'trainings':>9} {'A100-h':>7} {'H100-h':>7}  what",
             f"{'-' * 10} {'-' * 13} {'-' * 9} {'-' * 7} {'-' * 7}  {'-' * 40}"]
    for exp in EXPERIMENTS.values():
        n = sum(k for _, k in trainings(at_scale(exp, "full").runs))
        lines.append(f"{exp.name:<10} {exp.step:<13} {n:>9} {estimate_gpu_hours([exp.name]):>7.0f} "
                     f"{estimate_gpu_hours([exp.name], 'H100'):>7.0f}  {exp.title}")
    everything = list(EXPERIMENTS)
    n = sum(k for _, k in trainings(experiments_runs(everything)))
    lines.append(f"{'all':<10} {'':<13} {n:>9} {estimate_gpu_hours(everything):>7.0f} "
                 f"{estimate_gpu_hours(everything, 'H100'):>7.0f}  every experiment, shared runs trained once")
    lines.append("")
    lines.append("trainings: full-scale runs needed (sweep points included); GPU-hours: estimates from counted "
                 "FLOPs at 40% of the bf16 peak (docs/reproduce.md). Experiments share runs through --out.")
    lines.append("Run one: mixcollapse reproduce fig1 [--scale tiny|cpu|full] [--data-root DIR] [--out DIR]")
    return "\n".join(lines)
