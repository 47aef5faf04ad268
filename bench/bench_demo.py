"""Time the whole demo (two trainings, two analyses, figures) against its 5-minute budget, and against the
way it ran before the tensor pipeline and the lighter figures, in one run.

    PYTHONPATH=src python bench/bench_demo.py [--repeat N] [--epochs E] [--json FILE]

Two variants, alternating, each ``--repeat`` times in a fresh temporary folder:

* ``before``: the earlier behaviour, restored by settings and patches: the runs one after the other
  (``jobs=1``) in float32 (``train.amp=none``, no channels_last), ``data.pipeline=loader``
  (torchvision's per-sample path in a DataLoader), every figure written as PNG and PDF and cut to its
  tight bounding box, and every analysis figure drawn for each run as well as for both together;
* ``now``: the defaults: the two runs side by side (two processes), bf16 autocast and channels_last
  where the CPU runs bf16 natively, ``data.pipeline=tensor``, PNG only, figures laid out by
  ``tight_layout`` saved without a second layout pass, each run's own figures only where the
  comparison figures do not show it.

For each: wall time; figure time (each run's "figures" lap in analysis.json, plus the demo's four
comparison figures); the headline numbers of both runs (bf16 moves them within seed noise; the
pipeline and the side-by-side processes alone change nothing). Prints best-of ratios now / before
and the wall time against the budget. Run it on a quiet machine; compare ratios, not seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import tempfile
import time
from pathlib import Path

import torch

import mixcollapse.experiments.demo as demo
import mixcollapse.plots.analysis as plot_analysis
import mixcollapse.plots.figures as plot_figures
from mixcollapse.experiments.demo import run_demo
from mixcollapse.plots.formats import figure_formats

BUDGET_SECONDS = 300.0
VARIANTS = {  # overrides, figure formats, jobs
    "before": (["data.pipeline=loader", "train.amp=none", "train.channels_last=false"], ("png", "pdf"), 1),
    "now": ([], ("png",), None),
}
# The demo's comparison figures: run_demo imports them from plots.figures when it draws, so patching works (the
# analyses' figures are timed by their own "figures" lap).
COMPARISON = [
    "configuration_figure",
    "configuration_measures_figure",
    "confidence_by_lambda_figure",
    "classifier_geometry_figure",
]


@contextlib.contextmanager
def figure_clock():
    """Seconds spent in the figure functions the demo calls (they are imported where called, so patching works)."""
    spent = [0.0]
    saved = {(plot_figures, name): getattr(plot_figures, name) for name in COMPARISON}

    def timed(fn):
        def wrapper(*args, **kwargs):
            tic = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[0] += time.perf_counter() - tic

        return wrapper

    for (module, name), fn in saved.items():
        setattr(module, name, timed(fn))
    try:
        yield spent
    finally:
        for (module, name), fn in saved.items():
            setattr(module, name, fn)


@contextlib.contextmanager
def earlier_figures():
    """The earlier figure behaviour: every figure cropped (a second layout pass), every analysis figure per run."""
    save, run_figures = plot_figures.save_figure, demo.RUN_FIGURES

    def cropped(fig, stem, formats=None, *, crop=True):
        return save(fig, stem, formats, crop=True)

    plot_figures.save_figure, demo.RUN_FIGURES = cropped, plot_analysis.FIGURES
    try:
        yield
    finally:
        plot_figures.save_figure, demo.RUN_FIGURES = save, run_figures


def one_demo(variant: str, epochs: int | None) -> dict:
    overrides, formats, jobs = VARIANTS[variant]
    overrides = [*overrides, *([f"train.epochs={epochs}"] if epochs else [])]
    earlier = earlier_figures() if variant == "before" else contextlib.nullcontext()
    with tempfile.TemporaryDirectory() as out, figure_formats(*formats), earlier, figure_clock() as spent:
        tic = time.perf_counter()
        summary = run_demo(out, overrides, progress=False, jobs=jobs)
        wall = time.perf_counter() - tic
        runs = summary["runs"]
        laps = sum(json.loads(Path(r["analysis"]).read_text())["seconds"]["figures"] for r in runs.values())
    return {
        "wall_s": wall,
        "figures_s": spent[0] + laps,
        "numbers": {name: {k: runs[name][k] for k in ("test_accuracy", "ece", "pair_prob_mae")} for name in runs},
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=None, help="train.epochs of both runs (default: the demo's)")
    parser.add_argument("--json", default=None, help="also write the measurements to this JSON file")
    args = parser.parse_args(argv)
    print(f"cores: {os.cpu_count()}, torch threads: {torch.get_num_threads()}")
    results: dict[str, list[dict]] = {"before": [], "now": []}
    for k in range(args.repeat):
        for variant in ("before", "now") if k % 2 == 0 else ("now", "before"):
            r = one_demo(variant, args.epochs)
            results[variant].append(r)
            print(
                f"{variant:<6} run {k + 1}: {r['wall_s']:.1f} s, figures {r['figures_s']:.1f} s; "
                f"pair_prob_mae mixup {r['numbers']['mixup']['pair_prob_mae']:.4f} "
                f"vs baseline {r['numbers']['baseline']['pair_prob_mae']:.4f}"
            )
    best = {v: {key: min(r[key] for r in rs) for key in ("wall_s", "figures_s")} for v, rs in results.items()}
    ratios = {key: best["now"][key] / best["before"][key] for key in ("wall_s", "figures_s")}
    print(
        f"now / before (best of {args.repeat}): wall time {ratios['wall_s']:.2f}, figure time {ratios['figures_s']:.2f}"
    )
    for variant, rs in results.items():
        print(
            f"{variant:<6} numbers: "
            + "; ".join(
                f"{run} " + ", ".join(f"{k} {v:.4f}" for k, v in numbers.items())
                for run, numbers in rs[0]["numbers"].items()
            )
        )
    now = best["now"]["wall_s"]
    print(
        f"demo wall time: {now:.1f} s = {now / BUDGET_SECONDS:.2f} x the {BUDGET_SECONDS:.0f} s budget "
        f"({'within' if now < BUDGET_SECONDS else 'OVER'} budget)"
    )
    report = {"best": best, "ratios_now_over_before": ratios, "runs": results}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return report


if __name__ == "__main__":
    main()
