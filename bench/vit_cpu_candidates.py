"""How the ViT CPU recipe (presets/vit-fashionmnist-cpu.yaml) was chosen: candidates trained on the real
FashionMNIST, each measured over its training time.

    python bench/vit_cpu_candidates.py [--out DIR] [--json FILE] [--only NAME ...] [--jobs 2]

Each candidate is a set of overrides on the full-scale preset ``vit-fashionmnist`` (Appendix B.1's Adam with
10 warm-up epochs and cosine annealing, batch 128, patch 4), trained with mixup (alpha = 1) through
``mixcollapse train`` with one torch thread, ``--jobs`` candidates side by side. Checkpoints are kept at a
quarter, half, three quarters and the end of training; ``mixcollapse analyze`` measures each (300 pairs per class
pair, the recipe's analysis otherwise), and the JSON file holds, per candidate and checkpoint, the training
seconds spent so far and the configuration numbers that the recipe's targets read (pair_prob_mae, pair_mass,
same_cos_in_span, channel_middle_density_ratio, accuracy on the unmixed training images; the baselines are
measured by bench/bench_cpu_fashionmnist.py on the chosen recipe). Finished runs and analyses are reused, so a
killed probe continues where it stopped.

``--speed`` measures, alone on the machine, each candidate's training step in float32 and bf16 autocast, with
one thread and one per core, and in float32 with AVX2-level kernels (``AVX2_ENV``: what a CPU without AVX-512
runs, approximated on this one).

It is a measurement, not a test: it reports what each candidate reached, whatever that is.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from mixcollapse.machine import cpu_model

COMMON = (
    "data.name=fashionmnist",
    "data.num_workers=0",
    "train.threads=1",
    "train.progress=false",
    "train.batch_size=128",
    "train.optimizer=adam",
    "train.schedule=cosine",
    "train.warmup_epochs=10",
    "train.amp=none",
    "train.eval_every=25",
    "train.checkpoint_every=25",
    "train.tensorboard=false",
)
# name -> overrides. Width, depth, heads, training subset, epochs, lr and weight decay differ.
CANDIDATES: dict[str, tuple[str, ...]] = {
    "d64-L4-n2000-e400": (
        "model.embed_dim=64",
        "model.vit_depth=4",
        "model.num_heads=4",
        "data.train_limit=2000",
        "train.epochs=400",
        "train.lr=1e-3",
        "train.weight_decay=0",
    ),
    "d96-L6-n2000-e160": (
        "model.embed_dim=96",
        "model.vit_depth=6",
        "model.num_heads=3",
        "data.train_limit=2000",
        "train.epochs=160",
        "train.lr=1e-3",
        "train.weight_decay=0",
    ),
    "d64-L4-n2000-e400-wd5e-4": (
        "model.embed_dim=64",
        "model.vit_depth=4",
        "model.num_heads=4",
        "data.train_limit=2000",
        "train.epochs=400",
        "train.lr=1e-3",
        "train.weight_decay=5e-4",
    ),
    "d64-L6-n1000-e500": (
        "model.embed_dim=64",
        "model.vit_depth=6",
        "model.num_heads=4",
        "data.train_limit=1000",
        "train.epochs=500",
        "train.lr=1e-3",
        "train.weight_decay=5e-5",
    ),
}
# Kernel settings of a CPU without AVX-512 (most laptops, older servers), on a CPU that has it: ATen's own
# vectorised kernels, oneDNN's and MKL's capped at AVX2 (bf16 autocast is then emulated, so it is not measured).
AVX2_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
STEP_SCRIPT = """
import json, sys, time, torch
from mixcollapse.config import load_config
from mixcollapse.models import build_model
threads, amp, overrides = int(sys.argv[1]), sys.argv[2] == "bf16", sys.argv[3:]
torch.set_num_threads(threads)
torch.manual_seed(0)
cfg = load_config("vit-fashionmnist", overrides)
model = build_model(cfg.model, 10, 1, 28)
opt = torch.optim.Adam(model.parameters(), 1e-3)
x, y = torch.randn(cfg.train.batch_size, 1, 28, 28), torch.randint(0, 10, (cfg.train.batch_size,))
times = []
for _ in range(12):
    tic = time.perf_counter()
    with torch.autocast("cpu", torch.bfloat16, enabled=amp):
        loss = torch.nn.functional.cross_entropy(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    times.append(time.perf_counter() - tic)
print(json.dumps(sorted(times[2:])[len(times[2:]) // 2] * 1000))
"""
KEYS = ("pair_prob_mae", "pair_mass", "same_cos_in_span", "channel_middle_density_ratio", "ufm_distance", "nc1")


def _epochs(overrides) -> int:
    return int(next(o for o in overrides if o.startswith("train.epochs=")).split("=")[1])


def probe(name: str, overrides: tuple[str, ...], out: Path, data_root: str) -> dict:
    """Train one candidate (reused when finished), analyse its kept checkpoints, return its numbers over time."""
    run = out / name
    epochs = _epochs(overrides)
    kept = sorted({max(1, round(epochs * f)) for f in (0.25, 0.5, 0.75)})
    args = [
        *COMMON,
        *overrides,
        "mixing.alpha=1.0",
        f"train.checkpoint_epochs={kept}",
        "analysis.pairs_per_class_pair=300",
        "analysis.bn_mode=train",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    log = out / f"{name}.log"
    metrics = run / "metrics.jsonl"
    if not (run / "checkpoints" / "last.pt").is_file() or len(metrics.read_text().splitlines()) < epochs:
        resume = ["--resume"] if (run / "config.yaml").is_file() else []
        with open(log, "a") as f:
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "mixcollapse",
                    "train",
                    "--preset",
                    "vit-fashionmnist",
                    "--out",
                    str(run),
                    "--data-root",
                    data_root,
                    *resume,
                    *args,
                ],
                check=True,
                stdout=f,
                stderr=f,
                env=env,
            )
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    points = []
    for epoch in [*kept, epochs]:
        ckpt = run / "checkpoints" / ("last.pt" if epoch == epochs else f"epoch_{epoch:04d}.pt")
        dest = out / "analysis" / name / f"epoch_{epoch}"
        result = dest / "analysis.json"
        if not result.is_file():
            with open(log, "a") as f:
                subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "mixcollapse",
                        "analyze",
                        str(run),
                        "--checkpoint",
                        str(ckpt),
                        "--out",
                        str(dest),
                        "--threads",
                        "1",
                        "--json",
                    ],
                    check=True,
                    stdout=f,
                    stderr=f,
                    env=env,
                )
        analysis = json.loads(result.read_text())
        upto = rows[:epoch]
        tested = [r for r in upto if r.get("test_accuracy") is not None]
        points.append(
            {
                "epoch": epoch,
                "train_seconds": round(sum(r["epoch_seconds"] for r in upto), 1),
                "train_accuracy_unmixed": analysis["neural_collapse"]["accuracy"],
                **{k: analysis.get(k) for k in KEYS},
                "test_accuracy": tested[-1]["test_accuracy"] if tested else None,
                "test_ece": tested[-1]["test_ece"] if tested else None,
            }
        )
    return {"overrides": list(overrides), "mixup_alpha": 1.0, "threads": 1, "points": points}


def step_times(overrides: tuple[str, ...]) -> dict:
    """Median ms per training step (forward, backward, Adam) of one batch of the candidate's ViT, alone on the
    machine: float32 and bf16 autocast, one thread and one per core, and float32 with AVX2-level kernels."""
    cores = os.cpu_count() or 1
    settings = [
        (1, "none", {}),
        (cores, "none", {}),
        (1, "bf16", {}),
        (cores, "bf16", {}),
        (1, "none", AVX2_ENV),
        (cores, "none", AVX2_ENV),
    ]
    out = {}
    for threads, amp, extra in settings:
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), **extra}
        done = subprocess.run(
            [sys.executable, "-c", STEP_SCRIPT, str(threads), amp, *overrides],
            check=True,
            capture_output=True,
            text=True,
            env=env,
        )
        key = f"{'float32' if amp == 'none' else 'bf16'}_{threads}thread{'s' if threads > 1 else ''}" + (
            "_avx2_kernels" if extra else ""
        )
        out[key] = round(float(done.stdout.strip().splitlines()[-1]), 1)
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench_out/vit-cpu-candidates")
    parser.add_argument("--data-root", default="data")
    parser.add_argument("--json", default="docs/results/vit_cpu_candidates.json")
    parser.add_argument("--only", nargs="*", default=None, help="candidate names (default: all)")
    parser.add_argument("--jobs", type=int, default=2, help="candidates trained side by side, one thread each")
    parser.add_argument(
        "--speed",
        action="store_true",
        help="only measure the step time of each candidate's ViT (quiet machine), into the same JSON",
    )
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names = args.only or list(CANDIDATES)
    path = Path(args.json)
    result = json.loads(path.read_text()) if path.is_file() else {"candidates": {}}
    result["machine"] = {
        "processor": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "lscpu_model": cpu_model(),
        "jobs_side_by_side": args.jobs,
        "common_overrides": list(COMMON),
        "preset": "vit-fashionmnist",
    }

    if args.speed:
        for name in names:
            result["candidates"].setdefault(name, {})["step_ms_batch128"] = step_times(CANDIDATES[name])
            print(f"{name}: {result['candidates'][name]['step_ms_batch128']}", flush=True)
        path.write_text(json.dumps(result, indent=2) + "\n")
        return result

    def one(name):
        tic = time.perf_counter()
        numbers = probe(name, CANDIDATES[name], out, args.data_root)
        print(f"{name}: done in {time.perf_counter() - tic:.0f} s", flush=True)
        for p in numbers["points"]:
            print(
                f"  epoch {p['epoch']:4d} ({p['train_seconds']:.0f} s): train acc {p['train_accuracy_unmixed']:.4f} "
                f"|p_a-l| {p['pair_prob_mae']:.4f} mass {p['pair_mass']:.3f} cos {p['same_cos_in_span']:.3f} "
                f"middle {p['channel_middle_density_ratio']:.2f} test {p['test_accuracy']}",
                flush=True,
            )
        return name, numbers

    with ThreadPoolExecutor(args.jobs) as pool:
        for name, numbers in pool.map(one, names):
            result["candidates"][name] = {**result["candidates"].get(name, {}), **numbers}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"numbers: {path}")
    return result


if __name__ == "__main__":
    main()
