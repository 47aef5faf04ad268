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
import multiprocessing
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from mixcollapse.analysis.measure import ANALYSIS_FILE, load_analysis
from mixcollapse.analysis.run import analyze_run
from mixcollapse.config import ExperimentConfig, config_from_dict, load_config, to_dict
from mixcollapse.files import atomic_write_text
from mixcollapse.machine import available_cores, cpu_bf16_supported, pick_device
from mixcollapse.metrics.projection import project_classifier
from mixcollapse.training.loop import train
from mixcollapse.training.rundir import read_metrics

_log = logging.getLogger(__name__)

RUNS = (("mixup", 1.0), ("baseline", 0.0))
# Each run's own analysis figures; its measures, mixed test pairs and classifier geometry are drawn once, for both
# runs on shared axes (the comparison figures), not again per run.
RUN_FIGURES = ("configuration", "configuration_html", "reliability")
# Headline numbers copied from each run's analysis.json into summary.json (see analysis.measure.HEADLINE).
HEADLINE_KEYS = (
    "mce",
    "pair_mass",
    "other_logit_spread",
    "same_cos_mean",
    "same_cos_lambda_spread",
    "channel_position_mae",
    "ufm_distance",
    "nc1",
    "nc3",
    "nc4_agreement",
    "test_pair_confidence",
    "test_pair_error",
    "classifier_etf_distance",
)


def _has_run(run_dir: Path) -> bool:
    return (run_dir / "config.yaml").exists()


def run_demo(
    out_dir: str | Path = "demo_out",
    overrides: list[str] | tuple[str, ...] = (),
    overwrite: bool = False,
    progress: bool = True,
    jobs: int | None = None,
) -> dict:
    """Train, analyse and compare mixup and the baseline on digits; return the summary dict.

    ``jobs``: runs trained and measured side by side, each in a process of its own (default: one per
    available CPU core, at most two). Each run is seeded and single-threaded (the preset's
    ``train.threads=1``), so its numbers are the same either way; on two cores side by side takes
    about half the time. The processes are spawned: from a script, call this under
    ``if __name__ == "__main__":`` (as any multiprocessing code), or pass ``jobs=1``. Where it is
    faster, the runs train with bf16 autocast and channels_last (``machine_overrides``).
    """
    out_dir = Path(out_dir)
    summary_path = out_dir / "summary.json"
    if summary_path.exists() and not overwrite:
        return _show_finished(out_dir, summary_path, list(overrides))
    start = time.perf_counter()
    jobs = min(len(RUNS), available_cores()) if jobs is None else jobs
    if jobs < 1:
        raise ValueError(f"jobs={jobs} must be >= 1")
    planned = _plan(out_dir, list(overrides), progress and jobs == 1)
    (out_dir / "runs").mkdir(parents=True, exist_ok=True)  # a path that cannot hold it fails here, before any start
    if overwrite:  # a finished demo, or an interrupted one whose settings may differ
        for *_, run_dir in planned:
            shutil.rmtree(run_dir, ignore_errors=True)
    folders = train_and_measure([(name, cfg, run_dir) for name, _, cfg, run_dir in planned], jobs, progress)
    results, panels, sections, histories = {}, [], [], []
    for (name, alpha, _, run_dir), folder in zip(planned, folders, strict=True):
        result = load_analysis(folder)
        label = f"{name} (α={alpha:g})"
        panels.append(_panel(result, label))
        sections.append((label, result.summary))
        histories.append((label, read_metrics(run_dir)))
        results[name] = _run_summary(result, alpha, run_dir)
    side_by_side, comparison = _comparison_figures(out_dir / "figures", panels, sections, histories)
    for name in results:
        results[name]["figures"] = [*results[name]["figures"], *map(str, comparison)]
    summary = {
        "runs": results,
        "overrides": list(overrides),
        "seconds": round(time.perf_counter() - start, 1),
        "comparison_figure": [str(p) for p in side_by_side],
        "comparison_figures": [str(p) for p in comparison],
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(summary_path, json.dumps(summary, indent=2))
    _log.info(f"[demo] done in {summary['seconds']:.0f} s")
    return summary


def _plan(out_dir: Path, overrides: list[str], progress: bool) -> list[tuple]:
    """(name, alpha, config, run directory) of each run; every config is checked before anything is trained."""
    machine = machine_overrides(load_config("digits", overrides))
    planned = []
    for name, alpha in RUNS:
        settings = [f"mixing.alpha={alpha}", f"name=digits-{name}", f"train.progress={str(progress).lower()}"]
        planned.append((name, alpha, load_config("digits", [*machine, *overrides, *settings]), out_dir / "runs" / name))
    return planned


def _panel(result, label: str) -> dict:
    """One run's configuration scatter for the side-by-side figure."""
    analysis, feats = result.summary, result.features
    rows = feats.classifier_weight[analysis["classes"]]
    return dict(
        xy=result.xy,
        lam=feats.lam,
        same=feats.same,
        classifier_xy=project_classifier(rows),
        title=f"{label}: test acc {100 * analysis['test_accuracy']:.1f}%",
        class_names=feats.meta["class_names"],
    )


def _run_summary(result, alpha: float, run_dir: Path) -> dict:
    """summary.json's entry of one run: its headline numbers and where its files are."""
    analysis = result.summary
    return {
        "alpha": alpha,
        "test_accuracy": analysis["test_accuracy"],
        "ece": analysis["ece"],
        "pair_prob_mae": analysis["pair_prob_mae"],
        **{key: analysis.get(key) for key in HEADLINE_KEYS},
        "run_dir": str(run_dir),
        "analysis": str(result.features.path.parent / ANALYSIS_FILE),
        "figures": analysis["figures"],
        "bn_mode": analysis["bn_mode"],
        "classes": analysis["classes"],
    }


def _comparison_figures(figures: Path, panels: list[dict], sections: list, histories: list) -> tuple[list, list]:
    """The runs on shared axes: the configurations side by side, then the measures, confidences and classifier."""
    from mixcollapse.plots.figures import (  # matplotlib is imported when there is something to draw
        classifier_geometry_figure,
        confidence_by_lambda_figure,
        configuration_figure,
        configuration_measures_figure,
    )

    side_by_side = configuration_figure(
        panels,
        figures / "mixup_vs_baseline",
        suptitle="Last-layer features of mixup pairs, digits (Figure 1 vs Figure 8)",
    )
    comparison = [
        *side_by_side,
        *configuration_measures_figure(
            [(k, a["configuration"]) for k, a in sections],
            figures / "mixup_vs_baseline_measures",
            suptitle="The configuration in numbers, digits: mixup vs baseline",
        ),
        *confidence_by_lambda_figure(
            [(k, a["test_pairs"]) for k, a in sections if a.get("test_pairs")],
            figures / "mixup_vs_baseline_confidence",
            suptitle="Mixed test pairs of different classes (Figure 4 made measurable)",
        ),
        *classifier_geometry_figure(
            histories,
            figures / "mixup_vs_baseline_classifier",
            suptitle="Classifier geometry during training (Figure 5)",
        ),
    ]
    return side_by_side, comparison


def machine_overrides(cfg: ExperimentConfig) -> list[str]:
    """bf16 autocast and channels_last for the demo's runs on a GPU and on a CPU that runs bf16 natively (1.6x
    faster per epoch on the digits network on AVX512-BF16), before the user's overrides; nothing elsewhere, where
    emulated bf16 is slower than float32. The numbers move within seed noise (README, Performance)."""
    device = pick_device(cfg.train.device)
    if device.type == "cuda" or (device.type == "cpu" and cpu_bf16_supported()):
        return ["train.amp=bf16", "train.channels_last=true"]
    return []


def train_and_measure(
    runs: list[tuple[str, ExperimentConfig, Path]], jobs: int = 1, progress: bool = False
) -> list[Path]:
    """Train (or resume, or skip when finished) and then analyse each ``(name, config, run directory)``,
    ``jobs`` at a time; the analysis folders, in order.

    Side by side, each run goes to a spawned process (a fork would copy torch's thread pools), its log
    lines come out prefixed with its name, and its errors are raised here as they were raised there.
    """
    if jobs == 1 or len(runs) == 1:
        return [
            Path(_train_and_measure_one(name, to_dict(cfg), str(run_dir), progress, False))
            for name, cfg, run_dir in runs
        ]
    prefix = _log.isEnabledFor(logging.INFO) and bool(logging.getLogger("mixcollapse").handlers)
    _log.info(f"[demo] training and measuring {', '.join(name for name, _, _ in runs)} side by side ({jobs} processes)")
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        futures = [
            pool.submit(_train_and_measure_one, name, to_dict(cfg), str(run_dir), False, prefix)
            for name, cfg, run_dir in runs
        ]
        try:
            return [Path(future.result()) for future in futures]
        except BrokenProcessPool:
            raise ChildProcessError(
                "a process of the demo ended abruptly (killed, out of memory, or started from a "
                "script without `if __name__ == '__main__':`); run the demo again to continue "
                "where it stopped, or with jobs=1 (--jobs 1)"
            ) from None


def _train_and_measure_one(name: str, cfg_dict: dict, run_dir: str, progress: bool, prefix: bool) -> str:
    """One run of the demo: train it, then measure it (``analyze_run``); its analysis folder. ``prefix``: in a
    worker process, send the log lines to standard error (the progress stream) as ``name | line``."""
    if prefix:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(f"{name:<8} | %(message)s"))
        logger = logging.getLogger("mixcollapse")
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    cfg, path = config_from_dict(cfg_dict), Path(run_dir)
    _log.info(f"[demo] training {name} (alpha={cfg.mixing.alpha:g}) into {path}")
    train(cfg, path, resume=_has_run(path))
    _log.info(f"[demo] measuring {name}: mixup-pair features, neural collapse, calibration")
    result = analyze_run(path, overwrite=True, progress=progress, draw=RUN_FIGURES)
    sys.stderr.flush()
    return str(result.features.path.parent)


def _show_finished(out_dir: Path, summary_path: Path, overrides: list[str]) -> dict:
    """A finished demo run again: its results, shown, when the settings are the same; else say what to do."""
    summary = json.loads(summary_path.read_text())
    if summary.get("overrides", []) != overrides:
        raise FileExistsError(
            f"{out_dir} holds a finished demo with other settings ({summary.get('overrides', [])}); "
            "pass --overwrite (overwrite=True) to replace it or choose another --out (out_dir)"
        )
    _log.info(f"[demo] {out_dir} holds a finished demo ({summary_path}); its results (--overwrite runs it again):")
    return summary


def describe_summary(summary: dict, out_dir: str | Path) -> str:
    """The demo's results as the command prints them: the table, the comparison figure, the summary file."""
    return (
        f"{format_summary(summary['runs'])}\nfigures: {summary['comparison_figure'][0]}\n"
        f"summary: {Path(out_dir) / 'summary.json'}"
    )


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


def format_summary(results: dict) -> str:
    """Plain-text table of test accuracy and the headline numbers per run (TABLE)."""
    lines = [f"{'run':<10} {'alpha':>5} {'test acc':>9} " + " ".join(f"{title:>{w}}" for _, title, w, _ in TABLE)]
    for name, r in results.items():
        cells = " ".join(_cell(r.get(key), w, fmt) for key, _, w, fmt in TABLE)
        lines.append(f"{name:<10} {r['alpha']:>5g} {100 * r['test_accuracy']:>8.2f}% {cells}")
    legend = (
        "|p_a-λ|: different-class softmax vs λ; p_a+p_b: mass on the mixed classes; K_λ spread: spread of "
        "the other logits (0 in Theorem 3.1);\nsame cos: same-class cos(h, w_a); UFM dist: distance to the "
        "UFM optimum for the network's classifier; NC1 on unmixed training data;\nmixed err: error on "
        "mixed test pairs of different classes"
    )
    return "\n".join(lines) + "\n" + legend
