"""Successive halving against the full sweep on the same grid: the two picks, what each costs, and seed noise.

    PYTHONPATH=src python bench/bench_halving.py --scale tiny --out DIR [--noise-seeds 1,2] [--json FILE]
    PYTHONPATH=src python bench/bench_halving.py --scale cpu --preset wrn-fashionmnist \\
        --grid "train.lr=logspace(0.01,0.25,5)" --out DIR

Trains the grid twice through ``mixcollapse sweep`` (in-process): in full (Appendix B.1) into ``DIR/full`` and with
``--sweep halving`` into ``DIR/halving``. Both are resumable, so a killed benchmark continues; a finished folder
is read, not retrained. Reports

* each pick, its final test accuracy, and the full sweep's final accuracy of the halving pick (the same run
  trained to the end: the two must agree, a halted run being the first epochs of the full one), so the
  *regret* = best final accuracy - the halving pick's final accuracy, read in the full sweep;
* the cost: epochs trained (every run's last epoch, summed) and seconds of training (each epoch's
  ``epoch_seconds``, summed, so a resumed sweep counts only what it trained), and their ratio halving / full;
* with ``--noise-seeds``: the full pick retrained with those seeds, the sample standard deviation of its
  final test accuracy over them and the preset seed: the seed noise the regret is measured against.

Needs the real data at ``--scale cpu`` (FashionMNIST: ``apt-get install dataset-fashion-mnist``); the tiny
scale reads it when present and writes synthetic files otherwise (the JSON says which).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from mixcollapse.experiments.launch import Launch
from mixcollapse.experiments.tune import sweep_preset
from mixcollapse.machine import cpu_bf16_supported, cpu_model
from mixcollapse.training.rundir import read_metrics

TINY_GRID = "train.lr=logspace(0.01,0.25,10)"  # Appendix B.1's WRN grid


def cost(sweep_dir: Path, result: dict) -> dict:
    """Epochs and seconds of training in a sweep's runs (every epoch's epoch_seconds, summed)."""
    rows = [read_metrics(sweep_dir / r["run_dir"]) for r in result["runs"]]
    return {
        "epochs": int(sum(r[-1]["epoch"] for r in rows if r)),
        "seconds": round(float(sum(x.get("epoch_seconds", 0.0) for r in rows for x in r)), 1),
    }


def seed_noise(args, pick: dict, seeds: list[int]) -> dict:
    """The full sweep's pick retrained with ``seeds``: its final test accuracies and their sample std."""
    result = sweep_preset(
        args.preset,
        Path(args.out) / "noise",
        [f"{o.split('=', 1)[0]}=[{o.split('=', 1)[1]}]" for o in pick["overrides"]],
        scale=args.scale,
        seeds=[0, *seeds],
        launch=Launch("inprocess"),
    )
    values = [r["test_accuracy"] for r in result["runs"]]
    return {"seeds": [0, *seeds], "test_accuracy": values, "std": float(np.std(values, ddof=1))}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=("tiny", "cpu"), default="tiny")
    parser.add_argument("--preset", default="wrn-fashionmnist")
    parser.add_argument("--grid", action="append", default=None, help=f"default: {TINY_GRID}")
    parser.add_argument("--out", required=True)
    parser.add_argument("--noise-seeds", default="", help="retrain the full pick with these seeds, e.g. 1,2")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    grid = args.grid or [TINY_GRID]
    sweeps, seconds = {}, {}
    for method in ("full", "halving"):
        tic = time.perf_counter()
        out = Path(args.out) / method
        sweeps[method] = sweep_preset(
            args.preset, out, grid, scale=args.scale, method=method, launch=Launch("inprocess")
        )
        seconds[method] = round(time.perf_counter() - tic, 1)
    full, halving = sweeps["full"], sweeps["halving"]
    by_point = {r["name"]: r for r in full["runs"]}
    pick = halving["best"]["name"]
    spent = {m: cost(Path(args.out) / m, sweeps[m]) for m in sweeps}
    result = {
        "machine": {"cpu": cpu_model(), "bf16_native": cpu_bf16_supported(), "python": platform.python_version()},
        "scale": args.scale,
        "preset": args.preset,
        "grid": full["grid"],
        "full": {"pick": full["best"]["name"], "test_accuracy": full["best"]["test_accuracy"], **spent["full"]},
        "halving": {
            "pick": pick,
            "test_accuracy": halving["best"]["test_accuracy"],
            "same_run_in_full_sweep": by_point[pick]["test_accuracy"],
            "rungs": halving["halving"]["rungs"],
            "decisions": halving["halving"]["decisions"],
            **spent["halving"],
        },
        "regret": full["best"]["test_accuracy"] - by_point[pick]["test_accuracy"],
        "cost_ratio": {k: spent["halving"][k] / spent["full"][k] for k in ("epochs", "seconds")},
        "wall_seconds_this_call": seconds,
        "final_accuracy_by_point": {r["name"]: r["test_accuracy"] for r in full["runs"]},
    }
    result["synthetic_data"] = (Path(args.out) / "full" / "fake-data").exists()
    if args.noise_seeds:
        result["seed_noise"] = seed_noise(args, full["best"], [int(s) for s in args.noise_seeds.split(",")])
    print(json.dumps({k: v for k, v in result.items() if k != "final_accuracy_by_point"}, indent=1))
    noise = result.get("seed_noise", {}).get("std")
    print(
        f"full sweep: {result['full']['pick']} ({100 * result['full']['test_accuracy']:.2f}%), "
        f"{spent['full']['epochs']} epochs; halving: {pick} ({100 * result['halving']['test_accuracy']:.2f}%), "
        f"{spent['halving']['epochs']} epochs ({result['cost_ratio']['epochs']:.2f} of the cost); regret "
        f"{100 * result['regret']:.2f} points" + ("" if noise is None else f" (seed noise: std {100 * noise:.2f})")
    )
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
