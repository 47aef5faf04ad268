"""The four analysis steps of ``reproduce``, one per kind of figure or table of the paper (``STEPS``).

``configuration`` (Figures 1, 2, 7-12: a scatter per run, checkpoint and class subset, each analysed by
``analysis.run.analyze_run`` and cached under ``<out>/analysis``), ``trajectory`` (Figure 3),
``classifier`` (Figure 5: curves from metrics.jsonl) and ``table`` (Tables 1 and 2). Each takes the
experiment and the reproduction's :class:`~mixcollapse.experiments.runs.Context`, draws its figure or
writes its table, and returns the numbers its manifest records.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from mixcollapse.catalog import title as dataset_title
from mixcollapse.config import model_label
from mixcollapse.experiments.paper import (
    ARCH_SHORT,
    ARCH_TITLES,
    PAPER_DATASETS,
    Experiment,
    Panel,
    RunKey,
    panel_rows,
    trajectory_lams,
)
from mixcollapse.experiments.runs import Context, _pct, analysis_overrides, final_row, run_label, scale_note
from mixcollapse.experiments.scales import run_config, scale_epoch
from mixcollapse.experiments.tables import format_table, write_table
from mixcollapse.files import atomic_write_text
from mixcollapse.plots.paper import draw_classifier_curves, draw_configuration_grid, draw_trajectory_grid
from mixcollapse.training.rundir import read_metrics


def analyze_panel(panel: Panel, ctx: Context) -> dict:
    """Features, projection and numbers of one configuration panel (analysis cached under ``<out>/analysis``)."""
    from mixcollapse.metrics.projection import project_classifier, project_features

    run_dir, cfg = ctx.runs[panel.run.name], ctx.configs[panel.run.name]
    checkpoint, epoch = _panel_checkpoint(panel, ctx)
    # The analysis settings of this scale, whatever the run saved (they never change training).
    overrides = analysis_overrides(cfg) + ([] if panel.seed is None else [f"analysis.seed={panel.seed}"])
    out_dir = (
        ctx.out / "analysis" / panel.run.name / (checkpoint.stem + ("" if panel.seed is None else f"-seed{panel.seed}"))
    )
    summary, feats = _cached_analysis(run_dir, checkpoint, out_dir, overrides, draw=ctx.scale != "tiny")
    classes = [int(c) for c in summary["classes"]]
    rows = feats.classifier_weight[classes]
    xy = project_features(np.asarray(feats.features), rows, center=True)  # Appendix B.2, mean-centred
    row = final_row(run_dir, epoch)
    if row.get("test_accuracy") is None:  # an epoch training did not evaluate: the analysis's own test pass
        row = {**row, "test_accuracy": summary.get("test_accuracy"), "test_ece": summary.get("ece")}
    when = f"epoch {row.get('epoch', epoch)}" if epoch is not None else ""
    names = feats.meta.get("class_names")
    subset = f"classes {', '.join(feats.meta.get('class_names', map(str, classes)))}"
    title = (
        f"{run_label(panel.run, cfg)}\n{when + ' · ' if when else ''}test acc {_pct(row.get('test_accuracy'))}"
        f" · {_bn_label(summary.get('bn_mode', '?'))}" + (f"\n{subset}" if panel.seed is not None else "")
    )
    drawn = dict(
        xy=xy,
        lam=np.asarray(feats.lam),
        same=np.asarray(feats.same),
        classifier_xy=project_classifier(rows),
        title=title,
        class_names=names,
    )
    record = {
        "run": panel.run.name,
        "checkpoint": ctx.rel(checkpoint),
        "epoch": row.get("epoch"),
        "classes": classes,
        "class_names": names,
        "bn_mode": summary.get("bn_mode"),
        "test_accuracy": row.get("test_accuracy"),
        "test_ece": row.get("test_ece"),
        "pair_prob_mae": summary.get("pair_prob_mae"),
        "analysis": ctx.rel(out_dir),
    }
    return {"panel": drawn, "record": record}


def _panel_checkpoint(panel: Panel, ctx: Context) -> tuple[Path, int | None]:
    """The checkpoint a panel reads (its epoch at this scale, or the last) and that epoch (None: the last)."""
    from mixcollapse.training.checkpoint import find_checkpoint

    run_dir, cfg = ctx.runs[panel.run.name], ctx.configs[panel.run.name]
    epoch = panel.checkpoint_epoch
    if epoch is not None and ctx.scale != "full":
        epoch = scale_epoch(epoch, run_config(panel.run, "full").train.epochs, cfg.train.epochs)
    name = None if epoch is None else f"epoch_{epoch:04d}.pt"
    if name is not None and not (run_dir / "checkpoints" / name).is_file() and (run_dir / "checkpoints").is_dir():
        raise ValueError(
            f"{panel.run.name} in {run_dir} was trained (for another experiment) without keeping the "
            f"checkpoint of epoch {epoch}; reproduce this experiment into another --out"
        )
    return find_checkpoint(run_dir, name), epoch


def _cached_analysis(run_dir: Path, checkpoint: Path, out_dir: Path, overrides: list[str], draw: bool):
    """analyze_run's summary and features, read back when ``out_dir`` holds them for this very checkpoint file
    and these settings (``source.json``), else measured (with the per-run figures when ``draw``)."""
    from mixcollapse.analysis.extract import load_pair_features
    from mixcollapse.analysis.measure import ANALYSIS_FILE
    from mixcollapse.analysis.run import analyze_run

    stat = checkpoint.stat()
    source = {
        "checkpoint": str(checkpoint.resolve()),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "overrides": overrides,
    }
    source_file = out_dir / "source.json"
    if (out_dir / ANALYSIS_FILE).is_file() and source_file.is_file() and json.loads(source_file.read_text()) == source:
        return json.loads((out_dir / ANALYSIS_FILE).read_text()), load_pair_features(out_dir / "features")
    analysis = analyze_run(
        run_dir, checkpoint=checkpoint, out_dir=out_dir, overrides=overrides, overwrite=True, progress=False, draw=draw
    )
    atomic_write_text(source_file, json.dumps(source))
    return analysis.summary, analysis.features


def _bn_label(mode: str) -> str:
    """``BN recalibrate`` / ``BN train`` / ``BN eval``, or ``no batch norm`` (a ViT: "none (the model has ...)")."""
    return "no batch norm" if mode.startswith("none") else f"BN {mode.split(' ')[0]}"


def configuration_step(exp: Experiment, ctx: Context) -> dict:
    """Configuration scatters (Figures 1, 2, 7-12): one panel per run/checkpoint/class subset; with
    ``exp.measures``, a table of those analysis numbers, a row per panel."""
    panels = panel_rows(exp, ctx.scale)
    rows = [[analyze_panel(p, ctx) for p in row] for row in panels]
    figure = draw_configuration_grid(
        [[r["panel"] for r in row] for row in rows], ctx.out / "figures" / exp.name, _suptitle(exp, ctx)
    )
    records = [r["record"] for row in rows for r in row]
    out = {"figures": [ctx.rel(p) for p in figure], "panels": records}
    if exp.measures:
        out["tables"] = [_measures_table(exp, ctx, [p.run for row in panels for p in row], records)]
    return out


def _measures_table(exp: Experiment, ctx: Context, keys: list[RunKey], records: list[dict]) -> dict:
    """The analysis numbers ``exp.measures`` of every panel's run (``keys``, in the order of ``records``), written
    beside the figure and printed."""
    header = ["run", "training", *exp.measures]
    rows = []
    for key, r in zip(keys, records, strict=True):
        summary = json.loads((ctx.out / r["analysis"] / "analysis.json").read_text())
        cells = [None if summary.get(k) is None else round(float(summary[k]), 4) for k in exp.measures]
        rows.append([key.name, run_label(key, ctx.configs[key.name]), *cells])
    caption = (f"{exp.name}: the configuration in numbers, per run (analysis.json; the test set's accuracy and "
               f"ECE of the analysed checkpoint). Measured at {scale_note(ctx, exp.runs)}.")  # fmt: skip
    files = write_table(ctx.out / "tables" / exp.name, header, rows, caption, ctx.scale)
    ctx.log(format_table(header, rows, caption))
    return {"caption": caption, "header": header, "rows": rows, "files": [ctx.rel(f) for f in files]}


def trajectory_step(exp: Experiment, ctx: Context) -> dict:
    """Figure 3: paths of mixes through the layers, for every run of the experiment (ViT and WRN)."""
    from mixcollapse.analysis.trajectory import save_trajectories

    panels, records = [], []
    for key in exp.runs_extra:
        cfg = ctx.configs[key.name]
        result = _trajectories(ctx.runs[key.name], cfg, trajectory_lams(exp, ctx.scale), ctx.scale)
        where = save_trajectories(result, ctx.out / "analysis" / key.name / "trajectory")
        panels.append(_trajectory_row(result, run_label(key, cfg)))
        readout = result["readout"]
        records.append(
            {
                "run": key.name,
                "projection": result["projection"],
                "bn_mode": result["bn_mode"],
                "layers": result["layer_names"],
                "probe_r2": result["r2"],
                "classes": result["classes"],
                "class_names": result["class_names"],
                "pairs": np.unique(result["pair"], axis=0).tolist(),
                "readout": readout,
                "files": ctx.rel(where),
            }
        )
        ctx.log(f"[reproduce] {exp.name} {key.name}: {readout_note(readout['small_lambda'], readout['layers'], '; ')}")
    figure = draw_trajectory_grid(panels, ctx.out / "figures" / exp.name, _suptitle(exp, ctx))
    return {"figures": [ctx.rel(p) for p in figure], "trajectories": records}


def _trajectories(run_dir: Path, cfg, lams: Sequence[float], scale: str) -> dict:
    """layer_trajectories of a run's final model on its data, with the three classes' names."""
    from mixcollapse.analysis.run import run_data
    from mixcollapse.analysis.trajectory import layer_trajectories
    from mixcollapse.data.datasets import train_labels
    from mixcollapse.machine import pick_device
    from mixcollapse.mixup import choose_classes
    from mixcollapse.training.checkpoint import load_model

    device = pick_device("auto")
    model, _ = load_model(run_dir, device=device)
    a, data = cfg.analysis, run_data(cfg)
    plain = data.plain
    classes = a.classes if a.classes is not None else choose_classes(plain.num_classes, a.seed)
    result = layer_trajectories(
        model,
        plain.train,
        train_labels(plain),
        classes,
        lams=lams,
        reference_batches=data.batches,
        reference_size=2048 if scale == "full" else 4 * cfg.train.batch_size,
        bn_mode=a.bn_mode,
        recalibrate_batches=a.recalibrate_batches,
        seed=a.seed,
        mixing=data.mixing,
        device=device,
    )
    return {**result, "class_names": [plain.class_names[c] for c in classes]}


def _trajectory_row(result: dict, label: str) -> list[dict]:
    """Figure 3's row of one run: the same-class paths, the different-class paths, the classifier read per layer."""
    names = result["class_names"]
    how = (
        "CLS token per block, final classifier"
        if result["projection"] == "classifier"
        else "pooled features per stage, linear probes"
    )
    row = []
    for kind, same in (("same class", True), ("different class", False)):
        sel = result["same"] == same
        title = f"{label}\n{how}: {kind} ({names[0]}{'' if same else ' + ' + names[1]})"
        row.append(
            dict(
                xy=result["xy"][sel],
                lam=result["lam"][sel],
                same=result["same"][sel],
                classifier_xy=result["classifier_xy"],
                class_names=names,
                title=title,
            )
        )
    readout = result["readout"]
    row.append(
        dict(
            layer_names=result["layer_names"],
            per_lambda=readout["per_lambda"],
            class_names=names,
            title=f"{label}\nthe final classifier read at every layer, "
            f"{len(result['readout_pairs'])} pairs {names[0]} + {names[1]}",
            note=readout_note(readout["small_lambda"], readout["layers"]),
        )
    )
    return row


def readout_note(small: dict, layers: Sequence[str] = (), sep: str = "\n") -> str:
    """Figure 3's number in words: where the major and the minor class of small-lambda mixes reach half their
    final probability (median over the mixes; mixcollapse.analysis.readout)."""
    unit = "block" if layers and layers[-1].startswith("block") else "layer"
    return (
        f"minor weight ≤ {small['minor_weight_at_most']:g}: half the final probability at {unit} "
        f"{small['major_half_depth']:g} (major class), {small['minor_half_depth']:g} (minor){sep}median of "
        f"{small['mixes']} mixes; the minor class later in {100 * small['minor_later_share']:.0f}%, "
        f"earlier in {100 * small['minor_earlier_share']:.0f}%"
    )


def classifier_step(exp: Experiment, ctx: Context) -> dict:
    """Figure 5: the classifier's norm CV and cosine std per epoch, from every run's metrics.jsonl."""
    curves = {}
    for key in exp.runs_extra:
        rows = [r for r in read_metrics(ctx.runs[key.name]) if r.get("classifier_norm_cv") is not None]
        curves[key.name] = {
            "arch": key.arch,
            "dataset": key.dataset,
            "model": model_label(ctx.configs[key.name]),
            "epoch": [r["epoch"] for r in rows],
            "norm_cv": [r["classifier_norm_cv"] for r in rows],
            "cos_std": [r.get("classifier_cos_std") for r in rows],
        }
    data_path = ctx.out / "figures" / f"{exp.name}.json"
    data_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(data_path, json.dumps(curves, indent=2))
    figure = draw_classifier_curves(
        curves,
        ctx.out / "figures" / exp.name,
        _suptitle(exp, ctx),
        {d: dataset_title(d) for d in PAPER_DATASETS},
        ARCH_TITLES,
    )
    final = {
        k: {
            "norm_cv": c["norm_cv"][-1] if c["norm_cv"] else None,
            "cos_std": c["cos_std"][-1] if c["cos_std"] else None,
        }
        for k, c in curves.items()
    }
    return {"figures": [ctx.rel(p) for p in figure], "curves": ctx.rel(data_path), "final": final}


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
        line = [paper_name if ctx.scale == "full" else f"{paper_name} (as {used})", dataset_title(dataset)]
        for variant, _ in t.columns:
            key = RunKey(arch, dataset, variant)
            cell = _measured(ctx, key, t.metric, scale, digits)
            paper = t.paper.get((arch, dataset, variant))
            line += [cell.pop("shown"), paper]
            cells.append(
                {"run": key.name, "arch": arch, "dataset": dataset, "variant": variant, **cell, "paper": paper}
            )
        rows.append(line)
    caption = f"{t.caption} Measured at {scale_note(ctx, exp.runs)}."
    files = write_table(ctx.out / "tables" / exp.name, header, rows, caption, ctx.scale)
    ctx.log(format_table(header, rows, caption))
    return {
        "tables": [
            {
                "caption": caption,
                "metric": t.metric,
                "percent": t.percent,
                "header": header,
                "rows": rows,
                "cells": cells,
                "files": [ctx.rel(f) for f in files],
            }
        ]
    }


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
    return {
        "measured": round(mean, digits + 2),
        "std": round(std, digits + 2),
        "seeds": list(runs),
        "values": [round(v, digits + 2) for v in values],
        "shown": f"{mean:.{digits}f} ± {std:.{digits}f}",
    }


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
                title = re.sub(
                    r"WRN on (\w+) at epochs [\d, and]+\d",
                    f"{' and '.join(ARCH_SHORT[a] for a, _, _ in said)} on \\1: {listed} (the paper: WRN "
                    f"only, at {said[0][2]}; the same fractions for the ViT)",
                    title,
                )
    return f"{exp.name}: {title}\n{scale_note(ctx, exp.runs)}"


# The one place where an experiment's step name becomes code.
STEPS: dict[str, Callable[[Experiment, Context], dict]] = {
    "configuration": configuration_step,
    "trajectory": trajectory_step,
    "classifier": classifier_step,
    "table": table_step,
}
