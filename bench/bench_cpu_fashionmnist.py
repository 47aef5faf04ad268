"""The paper's phenomenon on the real FashionMNIST at the CPU scale: every target of the recipe, measured.

    python bench/bench_cpu_fashionmnist.py [--out DIR] [--data-root DIR] [--json FILE]

Runs ``mixcollapse reproduce`` at ``--scale cpu --datasets fashionmnist`` for Figures 1, 8, 2
(baseline / MSE mixup / CE mixup), 7 (fixed ETF) and 5 and Tables 1 and 2 into ``--out`` (runs are
shared, a finished run is never trained again, a killed bench continues where it stopped), then
reads each run's ``analysis.json`` and ``metrics.jsonl`` and writes one JSON file with the
measured numbers beside the targets of the CPU recipe (presets/wrn-fashionmnist-cpu.yaml):

* baseline: accuracy on the unmixed training data >= 99% (the terminal phase);
* mixup (alpha = 1): pair_prob_mae <= 0.10 and at most half the baseline's; pair_mass >= 0.90;
  same_cos_in_span >= 0.95; channel_middle_density_ratio > 1 (denser in the middle of the channel);
* MSE mixup: channel_position_mae <= 0.05 (features are convex combinations of the class means);
* fixed-ETF mixup: ufm_distance below the learned-classifier mixup run's;
* every run: the classifier's distance to a simplex ETF falls over training (Figure 5);
* test accuracy and ECE of each run beside Table 1 / Table 2 (no target).

Wall times are the runs' own (training only, from metrics.jsonl, with their thread counts) and the
whole command's; the 20-minute budget per run is for a quiet machine with one thread per core
(``--threads 1`` runs two benchmarks' worth of runs side by side, each slower). It is a benchmark,
not a test: it reports what it measures, reached or not.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import yaml

from mixcollapse.experiments.registry import TABLE1, available_cores, cpu_bf16_supported
from mixcollapse.experiments.reproduce import reproduce
from mixcollapse.training.rundir import atomic_write_text, read_metrics

EXPERIMENTS = ("fig1", "fig8", "fig2", "fig7", "fig5", "table1", "table2")
RUNS = ("mixup", "baseline", "mse", "etf")
KEYS = ("same_cos_in_span", "same_cos_mean", "offspan_energy", "pair_prob_mae", "pair_mass", "logit_position_mae",
        "channel_position_mae", "channel_middle_density_ratio", "off_channel_distance", "ufm_distance", "nc1",
        "classifier_etf_distance")
RUN_BUDGET_S = 20 * 60
FIG1_FIG8_BUDGET_S = 60 * 60


def run_numbers(out: Path, variant: str) -> dict:
    """The analysis headline, training accuracy and wall time of the run ``wrn-fashionmnist-<variant>``."""
    name = f"wrn-fashionmnist-{variant}"
    analysis = json.loads((out / "analysis" / name / "last" / "analysis.json").read_text())
    run_dir = out / "runs" / name / "cpu"
    rows = read_metrics(run_dir)
    threads = yaml.safe_load((run_dir / "config.yaml").read_text())["train"]["threads"]
    etf = [r["classifier_etf_distance"] for r in rows]
    numbers = {k: analysis.get(k) for k in KEYS}
    numbers.update(
        train_accuracy_unmixed=analysis["neural_collapse"]["accuracy"],
        test_accuracy=rows[-1]["test_accuracy"],
        test_ece=rows[-1]["test_ece"],
        epochs=len(rows),
        train_seconds=round(sum(r["epoch_seconds"] for r in rows), 1),
        threads=threads,
        classifier_etf_distance_first=etf[0],
        classifier_etf_distance_last=etf[-1],
        classifier_etf_distance_ratio=etf[-1] / etf[0],
        classifier_etf_distance_falls=etf[-1] < etf[0],
        analysis_seconds=round(sum(analysis.get("seconds", {}).values()), 1),
    )
    return numbers


def targets(runs: dict) -> dict:
    """Each target: the measured value, the bound and whether it is met."""
    mix, base, mse, etf = (runs[v] for v in RUNS)

    def check(value, bound, op):
        ok = value is not None and {"<=": value <= bound, ">=": value >= bound, "<": value < bound,
                                    ">": value > bound}[op]
        return {"measured": value, "target": f"{op} {bound}", "met": bool(ok)}

    out = {
        "baseline_train_accuracy_unmixed": check(base["train_accuracy_unmixed"], 0.99, ">="),
        "mixup_pair_prob_mae": check(mix["pair_prob_mae"], 0.10, "<="),
        "mixup_pair_prob_mae_over_baseline": check(mix["pair_prob_mae"] / base["pair_prob_mae"], 0.5, "<="),
        "mixup_pair_mass": check(mix["pair_mass"], 0.90, ">="),
        "mixup_same_cos_in_span": check(mix["same_cos_in_span"], 0.95, ">="),
        "mixup_channel_middle_density_ratio": check(mix["channel_middle_density_ratio"], 1.0, ">"),
        "mse_channel_position_mae": check(mse["channel_position_mae"], 0.05, "<="),
        "etf_ufm_distance_below_mixup": check(etf["ufm_distance"], mix["ufm_distance"], "<"),
    }
    for variant in RUNS:
        if variant != "etf":  # a fixed ETF classifier is at distance 0 throughout: nothing to converge
            out[f"{variant}_classifier_etf_distance_falls"] = check(runs[variant]["classifier_etf_distance_ratio"],
                                                                    1.0, "<")
    return out


def timing(runs: dict) -> dict:
    """Each run's training time as it was trained, with its thread count (the 20-minute budget is for a quiet
    machine with one thread per core; runs trained side by side with one thread each take longer)."""
    out = {}
    for v, r in runs.items():
        out[v] = {"train_seconds": r["train_seconds"], "threads": r["threads"], "budget_seconds": RUN_BUDGET_S,
                  "within_budget": r["train_seconds"] <= RUN_BUDGET_S}
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench_out/cpu-fashionmnist", help="reproduce output directory (shared runs)")
    parser.add_argument("--data-root", default="data", help="where FashionMNIST lives (then the usual search)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per run (default: one per core)")
    parser.add_argument("--json", default=None, help="numbers file (default: OUT/bench_cpu_fashionmnist.json)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    tic = time.perf_counter()
    seconds = {}
    for name in EXPERIMENTS:
        start = time.perf_counter()
        reproduce(name, scale="cpu", datasets=["fashionmnist"], out=out, data_root=args.data_root,
                  threads=args.threads)
        seconds[name] = round(time.perf_counter() - start, 1)
    runs = {v: run_numbers(out, v) for v in RUNS}
    fig1_fig8 = runs["mixup"]["train_seconds"] + runs["baseline"]["train_seconds"] + \
        runs["mixup"]["analysis_seconds"] + runs["baseline"]["analysis_seconds"]
    result = {
        "machine": {"cores": available_cores(), "cpu_bf16": cpu_bf16_supported(), "python": platform.python_version(),
                    "processor": platform.processor() or platform.machine()},
        "runs": runs,
        "targets": targets(runs),
        "timing": timing(runs),
        "fig1_fig8_seconds": {"measured": round(fig1_fig8, 1), "target": f"<= {FIG1_FIG8_BUDGET_S}",
                              "met": fig1_fig8 <= FIG1_FIG8_BUDGET_S,
                              "what": "training + analysis of the mixup and baseline runs"},
        "table1_paper": {v: TABLE1.paper[("wrn", "fashionmnist", v)] for v in ("baseline", "mixup")},
        "command_seconds": seconds,
        "wall_seconds_this_invocation": round(time.perf_counter() - tic, 1),
    }
    path = Path(args.json) if args.json else out / "bench_cpu_fashionmnist.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(result, indent=2))
    for key, t in result["targets"].items():
        value = t["measured"]
        shown = f"{value:.4g}" if isinstance(value, float) else value
        print(f"{'met   ' if t['met'] else 'MISSED'} {key}: {shown} (target {t['target']})")
    for v, r in runs.items():
        print(f"{v:>8}: test accuracy {100 * r['test_accuracy']:.2f}%, ECE {r['test_ece']:.4f}, "
              f"train {r['train_seconds']:.0f} s over {r['epochs']} epochs with {r['threads']} thread(s)")
    print(f"numbers: {path}")
    return result


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
