"""The main job: mixup (alpha = 1) against the baseline (alpha = 0) on the embedded digits data.

Trains both networks, measures each with ``analyze_run`` (mixup-pair features of the same three
classes, the configuration in numbers, neural collapse, calibration, mixed test pairs), plots
both configurations side by side (the paper's Figure 1 against Figure 8) and the two runs'
numbers against lambda and over epochs, prints a table of the headline numbers and writes
``summary.json``. A killed demo picks up where it stopped when run again.

Per run, ``summary.json`` holds test_accuracy, ece, pair_prob_mae, figures (as before) and the
headline numbers of the analysis (HEADLINE_KEYS). Test accuracy, ECE and MCE are measured by the
analysis, in the same batch-norm state as the pair features (``bn_mode``), so they can differ in
the last digit from the training log's final epoch (which uses the stored statistics).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

from mixcollapse.analysis.measure import ANALYSIS_FILE
from mixcollapse.analysis.run import analyze_run
from mixcollapse.config import load_config
from mixcollapse.metrics.projection import project_classifier
from mixcollapse.training.loop import train
from mixcollapse.training.rundir import atomic_write_text, read_metrics

_log = logging.getLogger(__name__)

RUNS = (("mixup", 1.0), ("baseline", 0.0))
# Each run's own analysis figures; its measures, mixed test pairs and classifier geometry are drawn once, for both
# runs on shared axes (the comparison figures), not again per run.
RUN_FIGURES = ("configuration", "configuration_html", "reliability")
# Headline numbers copied from each run's analysis.json into summary.json (see analysis.measure.HEADLINE).
HEADLINE_KEYS = ("mce", "pair_mass", "other_logit_spread", "same_cos_mean", "same_cos_lambda_spread",
                 "channel_position_mae", "ufm_distance", "nc1", "nc3", "nc4_agreement", "test_pair_confidence",
                 "test_pair_error", "classifier_etf_distance")


def _has_run(run_dir: Path) -> bool:
    return (run_dir / "config.yaml").exists()


def run_demo(out_dir: str | Path = "demo_out", overrides: list[str] | tuple[str, ...] = (), overwrite: bool = False,
             progress: bool = True) -> dict:
    """Train, analyse and compare mixup and the baseline on digits; return the summary dict."""
    out_dir = Path(out_dir)
    summary_path = out_dir / "summary.json"
    if summary_path.exists() and not overwrite:
        return _show_finished(out_dir, summary_path, list(overrides))
    start = time.perf_counter()
    results, panels, sections, histories = {}, [], [], []
    for name, alpha in RUNS:
        cfg = load_config("digits", [*overrides, f"mixup.alpha={alpha}", f"name=digits-{name}",
                                     f"train.progress={str(progress).lower()}"])
        run_dir = out_dir / "runs" / name
        if overwrite:  # a finished demo, or an interrupted one whose settings may differ
            shutil.rmtree(run_dir, ignore_errors=True)
        _log.info(f"[demo] training {name} (alpha={alpha:g}) into {run_dir}")
        train(cfg, run_dir, resume=_has_run(run_dir))
        _log.info(f"[demo] measuring {name}: mixup-pair features, neural collapse, calibration")
        result = analyze_run(run_dir, overwrite=True, progress=progress, draw=RUN_FIGURES)
        analysis, feats = result.summary, result.features
        rows = feats.classifier_weight[analysis["classes"]]
        panels.append(dict(xy=result.xy, lam=feats.lam, same=feats.same, classifier_xy=project_classifier(rows),
                           title=f"{name} (α={alpha:g}): test acc {100 * analysis['test_accuracy']:.1f}%",
                           class_names=feats.meta["class_names"]))
        label = f"{name} (α={alpha:g})"
        sections.append((label, analysis))
        histories.append((label, read_metrics(run_dir)))
        results[name] = {
            "alpha": alpha,
            "test_accuracy": analysis["test_accuracy"],
            "ece": analysis["ece"],
            "pair_prob_mae": analysis["pair_prob_mae"],
            **{key: analysis.get(key) for key in HEADLINE_KEYS},
            "run_dir": str(run_dir),
            "analysis": str(feats.path.parent / ANALYSIS_FILE),
            "figures": analysis["figures"],
            "bn_mode": analysis["bn_mode"],
            "classes": analysis["classes"],
        }
    from mixcollapse.plots.figures import (  # matplotlib is imported when there is something to draw
        classifier_geometry_figure,
        confidence_by_lambda_figure,
        configuration_figure,
        configuration_measures_figure,
    )

    figures = out_dir / "figures"
    side_by_side = configuration_figure(panels, figures / "mixup_vs_baseline",
                                        suptitle="Last-layer features of mixup pairs, digits (Figure 1 vs Figure 8)")
    comparison = [
        *side_by_side,
        *configuration_measures_figure([(k, a["configuration"]) for k, a in sections],
                                       figures / "mixup_vs_baseline_measures",
                                       suptitle="The configuration in numbers, digits: mixup vs baseline"),
        *confidence_by_lambda_figure([(k, a["test_pairs"]) for k, a in sections if a.get("test_pairs")],
                                     figures / "mixup_vs_baseline_confidence",
                                     suptitle="Mixed test pairs of different classes (Figure 4 made measurable)"),
        *classifier_geometry_figure(histories, figures / "mixup_vs_baseline_classifier",
                                    suptitle="Classifier geometry during training (Figure 5)"),
    ]
    for name in results:
        results[name]["figures"] = [*results[name]["figures"], *map(str, comparison)]
    summary = {"runs": results, "overrides": list(overrides), "seconds": round(time.perf_counter() - start, 1),
               "comparison_figure": [str(p) for p in side_by_side],
               "comparison_figures": [str(p) for p in comparison]}
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(summary_path, json.dumps(summary, indent=2))
    _log.info(format_table(results))
    _log.info(f"[demo] figures: {side_by_side[0]}\n[demo] summary: {summary_path}")
    return summary


def _show_finished(out_dir: Path, summary_path: Path, overrides: list[str]) -> dict:
    """A finished demo run again: its results, shown, when the settings are the same; else say what to do."""
    summary = json.loads(summary_path.read_text())
    if summary.get("overrides", []) != overrides:
        raise FileExistsError(f"{out_dir} holds a finished demo with other settings ({summary.get('overrides', [])}); "
                              "pass --overwrite to replace it or choose another --out")
    _log.info(f"[demo] {out_dir} holds a finished demo ({summary_path}); its results (--overwrite runs it again):")
    _log.info(format_table(summary["runs"]))
    _log.info(f"[demo] figures: {summary['comparison_figure'][0]}\n[demo] summary: {summary_path}")
    return summary


TABLE = (  # (summary key, column title, width, format); the numbers the demo prints per run
    ("ece", "ECE", 7, ".4f"),
    ("mce", "MCE", 7, ".4f"),
    ("pair_prob_mae", "|p_a-λ|", 8, ".4f"),
    ("pair_mass", "p_a+p_b", 8, ".4f"),
    ("other_logit_spread", "K_λ spread", 10, ".4f"),
    ("same_cos_mean", "same cos", 8, ".4f"),
    ("ufm_distance", "UFM dist", 8, ".4f"),
    ("nc1", "NC1", 8, ".4g"),
    ("test_pair_error", "mixed err", 9, ".3f"),
)


def _cell(value, width: int, fmt: str) -> str:
    return f"{value:>{width}{fmt}}" if isinstance(value, (int, float)) else f"{'n/a':>{width}}"


def format_table(results: dict) -> str:
    """Plain-text table of test accuracy and the headline numbers per run (TABLE)."""
    lines = [f"{'run':<10} {'alpha':>5} {'test acc':>9} " + " ".join(f"{title:>{w}}" for _, title, w, _ in TABLE)]
    for name, r in results.items():
        cells = " ".join(_cell(r.get(key), w, fmt) for key, _, w, fmt in TABLE)
        lines.append(f"{name:<10} {r['alpha']:>5g} {100 * r['test_accuracy']:>8.2f}% {cells}")
    legend = ("|p_a-λ|: different-class softmax vs λ; p_a+p_b: mass on the mixed classes; K_λ spread: spread of "
              "the other logits (0 in Theorem 3.1);\nsame cos: same-class cos(h, w_a); UFM dist: distance to the "
              "UFM optimum for the network's classifier; NC1 on unmixed training data;\nmixed err: error on "
              "mixed test pairs of different classes")
    return "\n".join(lines) + "\n" + legend
