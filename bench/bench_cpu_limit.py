"""How close the CPU recipes train to what this machine can do: its practical peak, measured, against the recipes'
training steps, in one run.

    PYTHONPATH=src python bench/bench_cpu_limit.py [--json FILE] [--threads N] [--steps N] [--no-bf16]
                                                   [--recipes wrn vit] [--compile] [--avx2]

1. The practical peak, in float32 and (where the CPU runs it natively) bf16, with the recipes' thread settings:
   the best of large matrix products (``torch.mm``: MKL in float32, oneDNN in bf16) and a large 3x3 convolution,
   channels_last (oneDNN), forward and backward. Which kernels ran is read from torch's profiler (the aten ops
   under each measurement) and ``torch.__config__``; the CPU's ISA from ``torch.backends.cpu``.
2. The training step of each CPU recipe (presets/wrn-fashionmnist-cpu.yaml, presets/vit-fashionmnist-cpu.yaml) as
   ``mixcollapse train`` runs it: the same model, mixing, loss, optimizer and schedule, ``train_one_epoch`` over
   batches of the recipe's size in memory (random images: the speed does not depend on them). FLOP per image
   from ``torch.utils.flop_counter.FlopCounterMode`` on one step (forward, backward; the optimizer's few FLOP
   are not counted), images/s and FLOP/s measured, and the fraction of the peak of the precision the recipe runs
   in (``train.amp``, bf16 only where native). ``--compile`` adds the same step with ``torch.compile`` (inductor),
   its compile time apart. Each variant's profile by operator (the ten ops with the most self time) says where
   the time goes.
3. ``--avx2`` reruns 1 and 2 in a child process limited to AVX2 (``ONEDNN_MAX_CPU_ISA=AVX2``,
   ``ATEN_CPU_CAPABILITY=avx2``, no bf16): the kernels of a CPU without AVX-512 or native bf16, on this one.

It is a benchmark, not a test: it reports what it measures. Compare within one run; absolute seconds drift.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from mixcollapse.config import load_config
from mixcollapse.losses import get_loss
from mixcollapse.machine import available_cores, cpu_bf16_supported, cpu_model
from mixcollapse.mixing import build_mixing
from mixcollapse.models import build_model
from mixcollapse.training.loop import train_one_epoch
from mixcollapse.training.optim import build_optimizer, build_scheduler

RECIPES = {"wrn": "wrn-fashionmnist-cpu", "vit": "vit-fashionmnist-cpu"}


def _best_seconds(fn, repeat: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(repeat):
        tic = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - tic)
    return best


def _ops(fn) -> list[str]:
    """The aten ops one call of ``fn`` ran, by self CPU time: which kernels did the work."""
    return [entry["op"] for entry in _profile(fn)[:4]]


def peak(dtype: torch.dtype, repeat: int = 5) -> dict:
    """The best GFLOP/s of large matrix products and of a large convolution (forward + backward) in ``dtype``."""
    results = {}
    for n in (1024, 2048, 4096):
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        s = _best_seconds(lambda a=a, b=b: torch.mm(a, b), repeat)
        results[f"mm{n}"] = {"gflops": 2 * n**3 / s / 1e9, "ops": _ops(lambda a=a, b=b: torch.mm(a, b))}
    conv = torch.nn.Conv2d(128, 128, 3, padding=1, bias=False).to(dtype=dtype, memory_format=torch.channels_last)
    x = torch.randn(64, 128, 28, 28, dtype=dtype).contiguous(memory_format=torch.channels_last).requires_grad_()

    def step() -> None:
        conv(x).sum().backward()

    flop = 3 * 2 * 64 * 128 * 28 * 28 * 128 * 9  # forward, and the two products of the backward
    s = _best_seconds(step, repeat)
    results["conv3x3_128ch_fwd_bwd"] = {"gflops": flop / s / 1e9, "ops": _ops(step)}
    best = max(results, key=lambda k: results[k]["gflops"])
    return {"gflops": results[best]["gflops"], "best": best, "measurements": results}


def _batches(cfg, steps: int, generator: torch.Generator) -> list[tuple[torch.Tensor, torch.Tensor]]:
    size = 28  # FashionMNIST
    shape = (cfg.train.batch_size, 1, size, size)
    return [(torch.randn(shape, generator=generator), torch.randint(0, 10, (shape[0],), generator=generator))] * steps


def recipe_step(name: str, steps: int, bf16: bool, compiled: bool) -> dict:
    """Images/s, FLOP/s and the operator profile of the recipe's training step (train_one_epoch, in memory)."""
    cfg = load_config(RECIPES[name], [] if bf16 else ["train.amp=none"])
    torch.manual_seed(0)
    model = build_model(cfg.model, 10, 1, 28)
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(cfg.train, model)
    scheduler = build_scheduler(cfg.train, optimizer, steps)
    mixing, loss_fn = build_mixing(cfg.mixing), get_loss(cfg.train.loss)
    batches = _batches(cfg, steps, torch.Generator().manual_seed(0))

    def run(net, some) -> None:
        _epoch(net, loss_fn, optimizer, scheduler, some, mixing, cfg.train.amp, cfg.train.channels_last)

    net, compile_s = model, None
    if compiled:
        net = torch.compile(model)
        tic = time.perf_counter()
        run(net, batches[:2])
        compile_s = time.perf_counter() - tic
    with FlopCounterMode(display=False) as counter:
        run(model, batches[:1])
    flop_per_image = counter.get_total_flops() / cfg.train.batch_size
    run(net, batches[:2])  # warm-up
    tic = time.perf_counter()
    run(net, batches)
    seconds = time.perf_counter() - tic
    images = steps * cfg.train.batch_size
    profile = _profile(lambda: run(net, batches[:3]))
    return {
        "precision": "bf16" if cfg.train.amp == "bf16" else "float32",
        "compiled": compiled,
        "compile_seconds": compile_s,
        "images_per_second": images / seconds,
        "gflop_per_image": flop_per_image / 1e9,
        "gflops": images * flop_per_image / seconds / 1e9,
        "seconds_per_recipe_epoch": cfg.data.train_limit / (images / seconds),
        "profile": profile,
    }


def _epoch(model, loss_fn, optimizer, scheduler, batches, mixing, amp, channels_last) -> None:
    train_one_epoch(
        model,
        loss_fn,
        optimizer,
        scheduler,
        batches,
        torch.device("cpu"),
        1,
        num_classes=10,
        mixing=mixing,
        rng=np.random.default_rng(0),
        amp=amp,
        channels_last=channels_last,
    )


def _profile(fn) -> list[dict]:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) or 1
    return [{"op": e.key, "self_share": round(e.self_cpu_time_total / total, 3)} for e in events[:10]]


def cpu_description() -> str:
    """The CPU's name, family/model and vector extensions, from /proc/cpuinfo (Linux; the name alone elsewhere)."""
    try:
        first = Path("/proc/cpuinfo").read_text().split("\n\n")[0]  # the first core's block
        info = dict(line.split(":", 1) for line in first.splitlines() if ":" in line)
    except OSError:
        return cpu_model()
    info = {k.strip(): v.strip() for k, v in info.items()}
    flags = set(info.get("flags", "").split())
    isa = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    return f"{cpu_model()} (family {info.get('cpu family', '?')}, model {info.get('model', '?')}; {' '.join(isa)})"


def measure(args) -> dict:
    torch.set_num_threads(args.threads)
    bf16 = cpu_bf16_supported() and not args.no_bf16
    config = torch.__config__.show()
    out = {
        "cpu": cpu_description(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": args.threads,
        "isa": torch.backends.cpu.get_cpu_capability(),
        "onednn_max_isa": os.environ.get("ONEDNN_MAX_CPU_ISA", "(all)"),
        "bf16_native": bf16,
        "kernels": [line.strip() for line in config.splitlines() if "MKL" in line or "oneDNN" in line][:4],
        "peak": {"float32": peak(torch.float32)},
        "recipes": {},
    }
    if bf16:
        out["peak"]["bf16"] = peak(torch.bfloat16)
    for name in args.recipes:
        variants = [recipe_step(name, args.steps, bf16, compiled=False)]
        if args.compile:
            variants.append(recipe_step(name, args.steps, bf16, compiled=True))
        for v in variants:
            v["fraction_of_peak"] = v["gflops"] / out["peak"][v["precision"]]["gflops"]
        out["recipes"][name] = variants
    return out


def report(result: dict) -> None:
    print(f"{result['cpu']} · {result['threads']} threads · ISA {result['isa']}, oneDNN max {result['onednn_max_isa']}")
    for precision, p in result["peak"].items():
        ops = p["measurements"][p["best"]]["ops"]
        print(f"  practical peak {precision}: {p['gflops']:.0f} GFLOP/s ({p['best']}: {ops})")
    for name, variants in result["recipes"].items():
        for v in variants:
            how = "compiled" if v["compiled"] else "eager"
            extra = f", compile {v['compile_seconds']:.0f} s" if v["compiled"] else ""
            print(
                f"  {name} {how} {v['precision']}: {v['images_per_second']:.0f} images/s, {v['gflops']:.0f} GFLOP/s "
                f"= {100 * v['fraction_of_peak']:.0f}% of the peak, "
                f"{v['seconds_per_recipe_epoch']:.2f} s per epoch{extra}"
            )
            print("    time goes to: " + ", ".join(f"{p['op']} {100 * p['self_share']:.0f}%" for p in v["profile"][:5]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--threads", type=int, default=available_cores())
    p.add_argument("--steps", type=int, default=16, help="training steps timed per variant (default 16: an epoch)")
    p.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    p.add_argument("--no-bf16", action="store_true", help="float32 only, as on a CPU without native bf16")
    p.add_argument("--compile", action="store_true", help="also the torch.compile'd step (inductor)")
    p.add_argument("--avx2", action="store_true", help="also the same in a child limited to AVX2, without bf16")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    result = measure(args)
    if args.child:
        print(json.dumps(result))
        return
    report(result)
    if args.avx2:
        env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}
        cmd = [sys.executable, __file__, "--child", "--no-bf16", "--threads", str(args.threads)]
        cmd += ["--steps", str(args.steps), "--recipes", *args.recipes] + (["--compile"] if args.compile else [])
        child = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
        result["avx2"] = json.loads(child.stdout.strip().splitlines()[-1])
        print("AVX2 only, float32 (ONEDNN_MAX_CPU_ISA=AVX2, ATEN_CPU_CAPABILITY=avx2):")
        report(result["avx2"])
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
