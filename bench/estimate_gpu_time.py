"""Estimate the GPU time of every experiment at full scale by counting FLOPs (no GPU needed).

    PYTHONPATH=src python bench/estimate_gpu_time.py            # counts, checks, prints the tables
    PYTHONPATH=src python bench/estimate_gpu_time.py --markdown # only the Markdown table (docs/reproduce.md)

How: torch.utils.flop_counter.FlopCounterMode counts the FLOPs of one forward+backward (training)
and one forward (evaluation) of each full-size model (WRN-40-10, ViT-B/4) at batch 128 on each
dataset's image size, on the meta device (shapes only: seconds on a CPU, no memory). Per run:
epochs x (full training batches of 128 x train FLOPs + test images x eval FLOPs); per experiment:
every training it needs (sweep points included, runs shared with other experiments counted once
within the experiment) divided by an assumed sustained throughput, 40% of the dense bf16 peak
(A100: 312 TFLOP/s, H100 SXM: 989 TFLOP/s). Not counted: batch norm, activations, softmax, the
optimizer step, data loading, the analysis (minutes). These are estimates, not measurements; the
FLOPs per image are also stored in mixcollapse.experiments.cost.FLOPS_PER_IMAGE, which `reproduce --list`
uses: this script says when they disagree.
"""

from __future__ import annotations

import argparse
import sys

import torch
from torch.utils.flop_counter import FlopCounterMode

from mixcollapse.experiments.cost import FLOPS_PER_IMAGE, MFU, PEAK_BF16, estimate_gpu_hours, run_flops, trainings
from mixcollapse.experiments.paper import ARCHS, EXPERIMENTS, RunKey, at_scale, experiments_runs
from mixcollapse.experiments.paper import PAPER_DATASETS as DATASETS
from mixcollapse.experiments.scales import run_config
from mixcollapse.models import build_model

BATCH = 128
IMAGE = {"fashionmnist": (1, 28), "cifar10": (3, 32), "cifar100": (3, 32)}
CLASSES = {"fashionmnist": 10, "cifar10": 10, "cifar100": 100}


def count_flops(arch: str, dataset: str, batch: int = BATCH) -> tuple[float, float, dict]:
    """(train FLOPs per image, eval FLOPs per image, FLOPs by operator of the training step)."""
    cfg = run_config(RunKey(arch, dataset, "mixup"), "full")
    channels, size = IMAGE[dataset]
    return count_model_flops(cfg.model, CLASSES[dataset], channels, size, batch)


def count_model_flops(
    model_cfg, classes: int, channels: int, size: int, batch: int = BATCH
) -> tuple[float, float, dict]:
    """FLOPs per image of one soft-target training step (forward + backward) and one evaluation forward of the
    model ``model_cfg`` builds, counted on the meta device (shapes only), and the training step's by operator."""
    with torch.device("meta"):
        model = build_model(model_cfg, classes, channels, size)
        x = torch.randn(batch, channels, size, size)
        target = torch.randn(batch, classes).softmax(-1)
    with FlopCounterMode(display=False) as counter:
        loss = -(target * model(x).log_softmax(-1)).sum(-1).mean()
        loss.backward()
    train = counter.get_total_flops() / batch
    by_op = {str(k): v for k, v in counter.get_flop_counts().get("Global", {}).items()}
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    return train, counter.get_total_flops() / batch, by_op


def markdown_table(flops: dict) -> str:
    lines = [
        "| experiment | command | trainings | A100-hours | H100-hours | H100-hours, `--sweep halving` |",
        "|---|---|---:|---:|---:|---:|",
    ]
    rows = [(name, name, [name], at_scale(EXPERIMENTS[name], "full").runs) for name in EXPERIMENTS]
    everything = list(EXPERIMENTS)
    rows.append(("**all**", "all", everything, experiments_runs(everything)))
    for label, command, names, runs in rows:
        n = sum(k for _, k in trainings(runs))
        lines.append(
            f"| {label} | `mixcollapse reproduce {command} --scale full` | {n} | "
            f"{estimate_gpu_hours(names, 'A100', flops):.0f} | "
            f"{estimate_gpu_hours(names, 'H100', flops):.0f} | "
            f"{estimate_gpu_hours(names, 'H100', flops, sweep='halving'):.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--markdown", action="store_true", help="print only the Markdown table")
    args = parser.parse_args(argv)
    measured, mismatch = {}, []
    for arch in ARCHS:
        for dataset in DATASETS:
            train, evaluate, by_op = count_flops(arch, dataset)
            measured[(arch, dataset)] = (train, evaluate)
            stored = FLOPS_PER_IMAGE[(arch, dataset)]
            if abs(stored[0] - train) > 0.01 * train or abs(stored[1] - evaluate) > 0.01 * evaluate:
                mismatch.append((arch, dataset, train, evaluate))
            if not args.markdown:
                ops = ", ".join(
                    f"{k.split('.')[1] if '.' in k else k} {v / BATCH / 1e9:.2f}"
                    for k, v in sorted(by_op.items(), key=lambda kv: -kv[1])[:4]
                )
                print(
                    f"{arch:<4} {dataset:<13} train {train / 1e9:7.2f} GFLOP/image, eval {evaluate / 1e9:6.2f}; "
                    f"top operators (GFLOP/image): {ops}"
                )
    if args.markdown:
        print(markdown_table(measured))
        return 0
    print()
    print(
        f"Assumed throughput: {MFU:.0%} of the bf16 peak: "
        + ", ".join(f"{gpu} {MFU * peak / 1e12:.0f} TFLOP/s" for gpu, peak in PEAK_BF16.items())
    )
    for arch in ARCHS:
        for dataset in DATASETS:
            key = RunKey(arch, dataset, "mixup")
            f = run_flops(key, measured)
            print(
                f"one {key.name} run: {f / 1e18:.2f} EFLOP = "
                + ", ".join(f"{f / (MFU * p) / 3600:.1f} {g}-hours" for g, p in PEAK_BF16.items())
            )
    print()
    print(markdown_table(measured))
    if mismatch:
        print("\nmixcollapse.experiments.cost.FLOPS_PER_IMAGE differs from the counts; paste these:", file=sys.stderr)
        for arch, dataset, train, evaluate in mismatch:
            print(f'    ("{arch}", "{dataset}"): ({train / 1e9:.4g}e9, {evaluate / 1e9:.4g}e9),', file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
