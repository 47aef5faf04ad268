"""Runs side by side: their configurations on shared axes, their measures in one table, their training curves.

``mixcollapse compare RUN_A RUN_B ...`` (one run works too: its training curves and CSV files). Each run's
analysis is read from ``RUN/analysis/<checkpoint>/`` and made first when it is missing (``analyze_run``
with the run's own settings). Outputs in ``out``: ``configurations.png``, ``training_curves.png`` (.pdf too with
``--pdf``), ``measures.csv`` (one row per run: the headline numbers of analysis.json) and ``metrics.csv`` (every epoch
of every run, with a ``run`` column).
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mixcollapse.analysis.extract import load_pair_features
from mixcollapse.analysis.measure import ANALYSIS_FILE, HEADLINE
from mixcollapse.analysis.run import analyze_run
from mixcollapse.files import atomic_write_text, check_output_folder
from mixcollapse.metrics.projection import project_classifier
from mixcollapse.plots.figures import configuration_figure, training_curves_figure
from mixcollapse.training.checkpoint import find_checkpoint
from mixcollapse.training.rundir import read_metrics

_log = logging.getLogger(__name__)

MEASURES = (
    "test_accuracy",
    "ece",
    *(k for keys in HEADLINE.values() for k in keys if k not in ("test_accuracy", "ece")),
)


def compare_runs(
    runs: Sequence[str | Path],
    out: str | Path = "compare_out",
    checkpoint: str | None = None,
    data_root: str | None = None,
) -> dict:
    """Compare ``runs`` (run directories) into ``out``; returns {"runs": [...], "files": [...], "table": text}."""
    if not runs:
        raise ValueError("name at least one run directory")
    names = _labels([Path(r) for r in runs])
    checkpoints = [find_checkpoint(run, checkpoint) for run in runs]  # every run checked before anything is written
    out = check_output_folder(out)
    summaries = [_analysis(Path(run), ckpt, data_root) for run, ckpt in zip(runs, checkpoints, strict=True)]
    histories = [(name, read_metrics(run)) for name, run in zip(names, runs, strict=True)]
    out.mkdir(parents=True, exist_ok=True)
    files = [
        *_configurations(names, summaries, out / "configurations"),
        *training_curves_figure(histories, out / "training_curves", suptitle="Training: " + ", ".join(names)),
    ]
    rows = [[name, *(s.get(k) for k in MEASURES)] for name, s in zip(names, summaries, strict=True)]
    files.append(atomic_write_text(out / "measures.csv", _csv(["run", *MEASURES], rows)))
    keys = list(dict.fromkeys(k for _, h in histories for row in h for k in row))
    metric_rows = [[name, *(row.get(k) for k in keys)] for name, h in histories for row in h]
    files.append(atomic_write_text(out / "metrics.csv", _csv(["run", *keys], metric_rows)))
    return {"runs": [str(r) for r in runs], "files": [str(f) for f in files], "table": _table(names, summaries)}


def _labels(runs: list[Path]) -> list[str]:
    """Short names for the runs: the folder names, with their parents where two are alike."""
    names = [r.resolve().name for r in runs]
    if len(set(names)) < len(names):
        names = [f"{r.resolve().parent.name}/{r.resolve().name}" for r in runs]
    return names


def _analysis(run: Path, ckpt: Path, data_root: str | None) -> dict:
    """The run's analysis of checkpoint ``ckpt``: read from its folder, or made now."""
    path = run / "analysis" / ckpt.stem / ANALYSIS_FILE
    if path.is_file():
        return json.loads(path.read_text())
    _log.info(f"[compare] {run} has no analysis of {ckpt.name} yet: analysing it")
    return analyze_run(run, checkpoint=ckpt, data_root=data_root).summary


def _configurations(names: list[str], summaries: list[dict], stem: Path) -> list[Path]:
    """The runs' configurations side by side, on shared axes (one radius for all panels)."""
    panels = []
    for name, s in zip(names, summaries, strict=True):
        feats = load_pair_features(s["features"])
        xy = np.load(Path(s["features"]) / "projection.npy", mmap_mode="r")
        rows = feats.classifier_weight[s["classes"]]
        panels.append(
            dict(
                xy=np.asarray(xy),
                lam=feats.lam,
                same=feats.same,
                classifier_xy=project_classifier(rows),
                title=f"{name}\ntest acc {100 * s['test_accuracy']:.1f}%"
                if s.get("test_accuracy") is not None
                else name,
                class_names=s["class_names"],
            )
        )
    radius = max(float(np.abs(p["xy"]).max()) for p in panels if len(p["xy"])) if panels else 1.0
    return configuration_figure(
        [{**p, "radius": radius} for p in panels], stem, suptitle="Last-layer features of mixup pairs (shared axes)"
    )


def _csv(header: list, rows: list[list]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([header, *rows])
    return buf.getvalue()


def _table(names: list[str], summaries: list[dict]) -> str:
    """The headline measures, one column per run."""
    width = max(12, *(len(n) for n in names))
    lines = [f"{'measure':<30}" + "".join(f"{n:>{width + 2}}" for n in names)]
    for key in MEASURES:
        values = [s.get(key) for s in summaries]
        if all(v is None for v in values):
            continue
        cells = "".join(f"{v:>{width + 2}.4g}" if isinstance(v, float) else f"{'-':>{width + 2}}" for v in values)
        lines.append(f"{key:<30}{cells}")
    return "\n".join(lines)
