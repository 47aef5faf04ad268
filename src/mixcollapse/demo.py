"""The main job: mixup (alpha = 1) against the baseline (alpha = 0) on the embedded digits data.

Trains both networks, extracts mixup-pair features for the same three classes, plots both
configurations side by side (the paper's Figure 1 against Figure 8), prints test accuracy and
ECE, and writes ``summary.json``. A killed demo picks up where it stopped when run again.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from mixcollapse.analysis.pipeline import analyze_run
from mixcollapse.analysis.projection import project_classifier
from mixcollapse.config import load_config
from mixcollapse.plots import configuration_figure
from mixcollapse.rundir import read_metrics
from mixcollapse.train import train

RUNS = (("mixup", 1.0), ("baseline", 0.0))


def _has_run(run_dir: Path) -> bool:
    return (run_dir / "config.yaml").exists()


def run_demo(out_dir: str | Path = "demo_out", overrides: list[str] | tuple[str, ...] = (), overwrite: bool = False,
             progress: bool = True) -> dict:
    """Train, analyse and compare mixup and the baseline on digits; return the summary dict."""
    out_dir = Path(out_dir)
    summary_path = out_dir / "summary.json"
    if summary_path.exists() and not overwrite:
        raise FileExistsError(f"{out_dir} already holds a finished demo; pass --overwrite or choose another --out")
    start = time.perf_counter()
    results, panels = {}, []
    for name, alpha in RUNS:
        cfg = load_config("digits", [*overrides, f"mixup.alpha={alpha}", f"name=digits-{name}",
                                     f"train.progress={str(progress).lower()}"])
        run_dir = out_dir / "runs" / name
        if overwrite and summary_path.exists():
            import shutil

            shutil.rmtree(run_dir, ignore_errors=True)
        print(f"[demo] training {name} (alpha={alpha:g}) into {run_dir}", flush=True)
        train(cfg, run_dir, resume=_has_run(run_dir))
        print(f"[demo] extracting mixup-pair features of {name}", flush=True)
        result = analyze_run(run_dir, overwrite=True, progress=progress)
        analysis, feats = result.summary, result.features
        last = read_metrics(run_dir)[-1]
        rows = feats.classifier_weight[analysis["classes"]]
        panels.append(dict(xy=result.xy, lam=feats.lam, same=feats.same, classifier_xy=project_classifier(rows),
                           title=f"{name} (α={alpha:g}): test acc {100 * last['test_accuracy']:.1f}%",
                           class_names=feats.meta["class_names"]))
        results[name] = {
            "alpha": alpha,
            "test_accuracy": last["test_accuracy"],
            "ece": last["test_ece"],
            "pair_prob_mae": analysis["pair_prob_mae"],
            "run_dir": str(run_dir),
            "figures": analysis["figures"],
            "bn_mode": analysis["bn_mode"],
            "classes": analysis["classes"],
        }
    side_by_side = configuration_figure(panels, out_dir / "figures" / "mixup_vs_baseline",
                                        suptitle="Last-layer features of mixup pairs, digits (Figure 1 vs Figure 8)")
    for name in results:
        results[name]["figures"] = [*results[name]["figures"], *map(str, side_by_side)]
    summary = {"runs": results, "seconds": round(time.perf_counter() - start, 1),
               "comparison_figure": [str(p) for p in side_by_side]}
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = summary_path.with_name(".summary.json.tmp")
    tmp.write_text(json.dumps(summary, indent=2))
    os.replace(tmp, summary_path)
    print(format_table(results))
    print(f"[demo] figures: {side_by_side[0]}\n[demo] summary: {summary_path}")
    return summary


def format_table(results: dict) -> str:
    """Plain-text table of test accuracy, ECE and pair_prob_mae per run."""
    lines = [f"{'run':<10} {'alpha':>5} {'test acc':>9} {'ECE':>7} {'pair |p_a-λ|':>13}"]
    for name, r in results.items():
        lines.append(f"{name:<10} {r['alpha']:>5g} {100 * r['test_accuracy']:>8.2f}% {r['ece']:>7.4f} "
                     f"{r['pair_prob_mae']:>13.4f}")
    return "\n".join(lines)
