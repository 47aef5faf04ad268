"""The paper's phenomenon on the real FashionMNIST at the CPU scale, both architectures: every target, measured.

    python bench/bench_cpu_fashionmnist.py [--out DIR] [--data-root DIR] [--json FILE] [--threads N]
                                           [--experiments fig1 fig8 ... | --all]

Runs ``mixcollapse reproduce`` at ``--scale cpu --datasets fashionmnist`` for every experiment of the
paper (what ``reproduce all`` does, one experiment at a time so each gets its time; ``--experiments`` for
some of them, whose runs alone are then measured and targeted; ``--all`` for the one command ``reproduce all``,
timed as a user runs it: every run trained first, then every figure) into ``--out`` (runs
are shared, a finished run is never trained again, a killed bench continues where it stopped), then reads
each run's ``analysis.json`` and ``metrics.jsonl`` and Figure 3's manifest, and writes one JSON file with
the measured numbers beside the targets of the CPU recipes (presets/wrn-fashionmnist-cpu.yaml,
presets/vit-fashionmnist-cpu.yaml), for the WRN and the ViT alike:

* baseline: accuracy on the unmixed training data >= 99% (the terminal phase);
* mixup (alpha = 1): pair_prob_mae <= 0.10 and at most half the baseline's; pair_mass >= 0.90;
  same_cos_in_span >= 0.95; channel_middle_density_ratio >= 2 (denser in the middle of the channel);
* WRN only: MSE mixup channel_position_mae <= 0.05 (features are convex combinations of the class
  means); fixed-ETF mixup ufm_distance below the learned-classifier mixup run's (Figures 2 and 7);
* every run with a learned classifier: its distance to a simplex ETF falls over training (Figure 5);
* Figure 3's read-out (mixcollapse.analysis.readout): where the major and the minor class of small-lambda
  mixes reach half their gain, per architecture (no target: the paper's claim, measured);
* test accuracy and ECE of each run beside Table 1 / Table 2 (no target).

Wall times are the runs' own (training only, from metrics.jsonl, with their thread counts) and each
experiment's; the 20-minute budget per run is for a quiet machine with one thread per core (``--threads
1`` runs two benchmarks' worth of runs side by side, each slower). It is a benchmark, not a test: it
reports what it measures, reached or not.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
from pathlib import Path

import yaml

from mixcollapse.experiments.launch import Launch
from mixcollapse.experiments.paper import EXPERIMENTS, TABLE1, TABLE2
from mixcollapse.experiments.reproduce import reproduce, select_experiments
from mixcollapse.machine import available_cores, cpu_bf16_supported, cpu_model
from mixcollapse.training.rundir import atomic_write_text, read_metrics

RUNS = {"wrn": ("mixup", "baseline", "mse", "etf", "alpha0.4"), "vit": ("mixup", "baseline", "alpha0.4", "adamw")}
KEYS = (
    "same_cos_in_span",
    "same_cos_mean",
    "offspan_energy",
    "pair_prob_mae",
    "pair_mass",
    "logit_position_mae",
    "channel_position_mae",
    "channel_middle_density_ratio",
    "off_channel_distance",
    "ufm_distance",
    "nc1",
    "classifier_etf_distance",
)
RUN_BUDGET_S = 20 * 60
ALL_BUDGET_S = 150 * 60


def run_numbers(out: Path, arch: str, variant: str) -> dict:
    """The analysis headline, training accuracy and wall time of the run ``<arch>-fashionmnist-<variant>``."""
    name = f"{arch}-fashionmnist-{variant}"
    analysis = json.loads((out / "analysis" / name / "last" / "analysis.json").read_text())
    run_dir = out / "runs" / name / "cpu"
    rows = read_metrics(run_dir)
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    etf = [r["classifier_etf_distance"] for r in rows]
    numbers = {k: analysis.get(k) for k in KEYS}
    numbers.update(
        train_accuracy_unmixed=analysis["neural_collapse"]["accuracy"],
        test_accuracy=rows[-1]["test_accuracy"],
        test_ece=rows[-1]["test_ece"],
        epochs=len(rows),
        train_seconds=round(sum(r["epoch_seconds"] for r in rows), 1),
        threads=config["train"]["threads"],
        amp=config["train"]["amp"],
        classifier_etf_distance_first=etf[0],
        classifier_etf_distance_last=etf[-1],
        classifier_etf_distance_ratio=etf[-1] / etf[0],
        classifier_etf_distance_falls=etf[-1] < etf[0],
        analysis_seconds=round(sum(analysis.get("seconds", {}).values()), 1),
    )
    return numbers


def _check(value, bound, op) -> dict:
    ok = value is not None and {"<=": value <= bound, ">=": value >= bound, "<": value < bound, ">": value > bound}[op]
    return {"measured": value, "target": f"{op} {bound}", "met": bool(ok)}


def targets(runs: dict) -> dict:
    """Each target of each architecture (keys ``<arch>_<what>``): the measured value, the bound, whether it is met."""
    out = {}
    for arch, by_variant in runs.items():
        if "mixup" not in by_variant or "baseline" not in by_variant:
            continue
        mix, base = by_variant["mixup"], by_variant["baseline"]
        out.update(
            {
                f"{arch}_baseline_train_accuracy_unmixed": _check(base["train_accuracy_unmixed"], 0.99, ">="),
                f"{arch}_mixup_pair_prob_mae": _check(mix["pair_prob_mae"], 0.10, "<="),
                f"{arch}_mixup_pair_prob_mae_over_baseline": _check(
                    mix["pair_prob_mae"] / base["pair_prob_mae"], 0.5, "<="
                ),
                f"{arch}_mixup_pair_mass": _check(mix["pair_mass"], 0.90, ">="),
                f"{arch}_mixup_same_cos_in_span": _check(mix["same_cos_in_span"], 0.95, ">="),
                f"{arch}_mixup_channel_middle_density_ratio": _check(mix["channel_middle_density_ratio"], 2.0, ">="),
            }
        )
        if "mse" in by_variant:
            out[f"{arch}_mse_channel_position_mae"] = _check(by_variant["mse"]["channel_position_mae"], 0.05, "<=")
        if "etf" in by_variant:
            out[f"{arch}_etf_ufm_distance_below_mixup"] = _check(
                by_variant["etf"]["ufm_distance"], mix["ufm_distance"], "<"
            )
        for variant, numbers in by_variant.items():
            if variant != "etf":  # a fixed ETF classifier is at distance 0 throughout: nothing to converge
                out[f"{arch}_{variant}_classifier_etf_distance_falls"] = _check(
                    numbers["classifier_etf_distance_ratio"], 1.0, "<"
                )
    return out


def timing(runs: dict) -> dict:
    """Each run's training time as it was trained, with its thread count (the 20-minute budget is for a quiet
    machine with one thread per core; runs trained side by side with one thread each take longer)."""
    return {
        f"{arch}-{v}": {
            "train_seconds": r["train_seconds"],
            "threads": r["threads"],
            "amp": r["amp"],
            "budget_seconds": RUN_BUDGET_S,
            "within_budget": r["train_seconds"] <= RUN_BUDGET_S,
        }
        for arch, by_variant in runs.items()
        for v, r in by_variant.items()
    }


def readout(out: Path) -> dict:
    """Figure 3's read-out per architecture, from its manifest (mixcollapse.analysis.readout); {} without it."""
    path = out / "experiments" / "fig3.json"
    if not path.is_file():
        return {}
    manifest = json.loads(path.read_text())
    return {
        t["run"].split("-")[0]: {"layers": t["layers"], "class_names": t["class_names"], **t["readout"]["small_lambda"]}
        for t in manifest["trajectories"]
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench_out/cpu-fashionmnist", help="reproduce output directory (shared runs)")
    parser.add_argument("--data-root", default="data", help="where FashionMNIST lives (then the usual search)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per run (default: one per core)")
    parser.add_argument("--json", default=None, help="numbers file (default: OUT/bench_cpu_fashionmnist.json)")
    parser.add_argument(
        "--experiments",
        nargs="+",
        choices=list(EXPERIMENTS),
        default=list(EXPERIMENTS),
        help="the experiments to reproduce one at a time (default: all of them)",
    )
    parser.add_argument("--all", action="store_true", help="one call of `reproduce all`, timed as one command")
    args = parser.parse_args(argv)
    out = Path(args.out)
    tic = time.perf_counter()
    seconds = {}
    for name in ["all"] if args.all else args.experiments:
        start = time.perf_counter()
        reproduce(
            name,
            scale="cpu",
            datasets=["fashionmnist"],
            out=out,
            data_root=args.data_root,
            launch=Launch(threads=args.threads),
        )
        seconds[name] = round(time.perf_counter() - start, 1)
    if args.all:
        args.experiments = list(EXPERIMENTS)
    drawn = {k.name for n in args.experiments for k in select_experiments([n], ["fashionmnist"], "cpu")[0].runs}
    analysed = {n for n in drawn if (out / "analysis" / n / "last" / "analysis.json").is_file()}
    runs = {
        arch: {v: run_numbers(out, arch, v) for v in variants if f"{arch}-fashionmnist-{v}" in analysed}
        for arch, variants in RUNS.items()
    }
    trained = sum(r["train_seconds"] + r["analysis_seconds"] for by in runs.values() for r in by.values())
    result = {
        "machine": {
            "cores": available_cores(),
            "cpu_bf16": cpu_bf16_supported(),
            "python": platform.python_version(),
            "processor": platform.processor() or platform.machine(),
            "cpu_model": cpu_model(),
        },
        "runs": runs,
        "targets": targets(runs),
        "timing": timing(runs),
        "fig3_readout": readout(out),
        "experiments": args.experiments,
        "all_seconds": {
            "measured_this_invocation": round(time.perf_counter() - tic, 1),
            "runs_train_and_analysis": round(trained, 1),
            "target": f"<= {ALL_BUDGET_S}",
            "what": "the experiments above at --scale cpu --datasets fashionmnist (all of them: "
            "reproduce all); a bench that resumed a finished output directory measures less than a "
            "fresh one",
        },
        "table1_paper": {f"{a}-{v}": TABLE1.paper[(a, "fashionmnist", v)] for a in RUNS for v in ("baseline", "mixup")},
        "table2_paper_cifar10": {
            f"{a}-{v}": TABLE2.paper[(a, "cifar10", v)] for a in RUNS for v in ("baseline", "mixup", "alpha0.4")
        },
        "command_seconds": seconds,
    }
    path = Path(args.json) if args.json else out / "bench_cpu_fashionmnist.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(result, indent=2))
    for key, t in result["targets"].items():
        value = t["measured"]
        shown = f"{value:.4g}" if isinstance(value, float) else value
        print(f"{'met   ' if t['met'] else 'MISSED'} {key}: {shown} (target {t['target']})")
    for arch, by_variant in runs.items():
        for v, r in by_variant.items():
            print(
                f"{arch}-{v:>8}: test accuracy {100 * r['test_accuracy']:.2f}%, ECE {r['test_ece']:.4f}, train "
                f"{r['train_seconds']:.0f} s over {r['epochs']} epochs with {r['threads']} thread(s), {r['amp']}"
            )
    for arch, r in result["fig3_readout"].items():
        print(
            f"fig3 {arch}: half the final probability at layer {r['major_half_depth']:g} (major class), "
            f"{r['minor_half_depth']:g} (minor); the minor class later in {100 * r['minor_later_share']:.0f}%, "
            f"earlier in {100 * r['minor_earlier_share']:.0f}% of {r['mixes']} mixes"
        )
    print(f"numbers: {path}")
    return result


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")  # progress lines
    main()
