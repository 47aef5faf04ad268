"""The GPU check: what one GPU does with the toolkit, measured in one run and written to one JSON file.

    PYTHONPATH=src python bench/gpu_check.py --out DIR          # one H100/H200: sized for at most 8 minutes
    PYTHONPATH=src python bench/gpu_check.py --out DIR --tiny   # any machine, a CPU too: tiny sizes, seconds

Needs only what a GPU machine without internet has (torch, torchvision, timm, scipy, scikit-learn,
PyYAML): the data are CIFAR10-format files written by ``mixcollapse.data.fake`` (the real on-disk
format, synthetic images), nothing is downloaded and nothing is drawn. ``DIR/gpu_check.json`` is
rewritten after every section, so a check stopped part-way keeps what it measured; a section that
fails records its error and the others still run. Sections (keys of the JSON file):

* ``training``: WRN-40-10 and ViT-B/4 at the paper's settings (batch 128, mixup, bf16 autocast,
  channels_last for the WRN), each with the tensor pipeline and with the per-sample loader (8
  workers): images/s over ``steps`` steps after ``warmup`` steps, seconds per CIFAR10 epoch (50,000
  training and 10,000 test images), FLOPs per image counted with FlopCounterMode, achieved TFLOP/s and
  the fraction of the GPU's dense bf16 peak; then the tensor pipeline's step through ``torch.compile``
  (inductor): images/s, its ratio to the eager step and the compile time.
* ``ddp``: the same WRN steps inside a one-process DistributedDataParallel (nccl on a GPU, gloo on a
  CPU), against the plain model.
* ``analysis``: ``measure_model`` on the WRN (pair features and every measure, figures off): pairs/s.
* ``ufm``: ``theory.solver.optimal_features`` for 10^6 mixup problems, C = 100, d = 512, on the device.
* ``gpu_hours``: the full reproduction's GPU-hours from the measured throughput (each run's FLOPs over
  the achieved FLOP/s of its architecture), beside the README's estimates (40% of the bf16 peak).

``--tiny`` shrinks every size (tiny models, 256 images, 10^3 UFM problems) so that CI runs it on a CPU
and every key stays written; its numbers say nothing about a GPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import os
import platform
import socket
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch
import torch.distributed as tdist

from mixcollapse.catalog import get_spec
from mixcollapse.config import ExperimentConfig, model_label
from mixcollapse.data.datasets import build_datasets, build_loaders
from mixcollapse.data.fake import write_fake_cifar10
from mixcollapse.experiments.cost import FLOPS_PER_IMAGE, MFU, PEAK_BF16, estimate_gpu_hours, trainings
from mixcollapse.experiments.paper import EXPERIMENTS, RunKey, experiments_runs
from mixcollapse.experiments.scales import run_config
from mixcollapse.losses import get_loss
from mixcollapse.mixing import build_mixing
from mixcollapse.models import build_model
from mixcollapse.training.loop import evaluate, train_one_epoch
from mixcollapse.training.optim import build_optimizer, build_scheduler

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the FLOP counter of estimate_gpu_time.py, beside this file
from estimate_gpu_time import count_model_flops  # noqa: E402

OUT_FILE = "gpu_check.json"
ARCHS = ("wrn", "vit")  # WRN-40-10 and ViT-B/4 (tiny: small ones)
PIPELINES = ("tensor", "loader")
# Dense bf16 peak FLOP/s by device name (SXM parts; an H200 computes like an H100 SXM).
PEAKS = (("H200", 989e12), ("H100 PCIe", 756e12), ("H100", 989e12), ("A100", 312e12))


@dataclasses.dataclass(frozen=True)
class Sizes:
    """How much each section measures: the full check, or ``--tiny``."""

    n_train: int = 10_000
    n_test: int = 2_048
    warmup: int = 10
    steps: int = 40
    ddp_steps: int = 20
    pairs_per_class_pair: int = 2_000
    nc_samples: int = 5_000
    test_pairs: int = 2_000
    ufm_problems: int = 1_000_000
    ufm_classes: int = 100
    ufm_dim: int = 512
    workers: int = 8


TINY = Sizes(
    n_train=256,
    n_test=64,
    warmup=2,
    steps=3,
    ddp_steps=2,
    pairs_per_class_pair=20,
    nc_samples=64,
    test_pairs=40,
    ufm_problems=1_000,
    ufm_classes=10,
    ufm_dim=16,
    workers=2,
)
TINY_MODELS = {
    "wrn": ["model.depth=10", "model.width=1"],
    "vit": ["model.embed_dim=32", "model.vit_depth=1", "model.num_heads=2"],
}


def peak_flops(device: torch.device) -> tuple[str, float | None]:
    """The device's name and its dense bf16 peak FLOP/s (None when unknown, and on a CPU)."""
    if device.type != "cuda":
        return platform.processor() or "cpu", None
    name = torch.cuda.get_device_name(device)
    return name, next((peak for key, peak in PEAKS if key in name), None)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def check_config(arch: str, root: Path, sizes: Sizes, tiny: bool, pipeline: str = "tensor") -> ExperimentConfig:
    """The paper's full-scale mixup config of ``arch`` on CIFAR10, reading the synthetic files in ``root``."""
    hyper = [
        f"data.root={root}",
        "data.download=false",
        f"data.pipeline={pipeline}",
        f"data.num_workers={sizes.workers}",
        "train.progress=false",
        *(TINY_MODELS[arch] if tiny else []),
    ]
    if tiny:
        hyper.append("train.batch_size=32")
    return run_config(RunKey(arch, "cifar10", "mixup"), "full", late=hyper)


def count_flops(cfg: ExperimentConfig) -> tuple[float, float]:
    """FLOPs per image of one training step and one evaluation forward on CIFAR10's shapes (estimate_gpu_time's
    counter, on the meta device)."""
    train, evaluate, _ = count_model_flops(cfg.model, 10, 3, 32, cfg.train.batch_size)
    return train, evaluate


class _First:
    """The first ``n`` batches of a loader (its len is n)."""

    def __init__(self, loader, n: int) -> None:
        self.loader, self.n = loader, n

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        return itertools.islice(iter(self.loader), self.n)


def timed_steps(cfg: ExperimentConfig, device: torch.device, sizes: Sizes, steps: int, wrap=None) -> dict:
    """Images/s of ``steps`` training steps after ``sizes.warmup`` (synchronized at both ends), and evaluation."""
    bundle = build_datasets(cfg.data)
    torch.manual_seed(0)
    model = build_model(cfg.model, bundle.num_classes, bundle.in_channels, bundle.image_size).to(device)
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    train_loader, test_loader = build_loaders(
        bundle,
        cfg.train.batch_size,
        pipeline=cfg.data.pipeline,
        device=device,
        channels_last=cfg.train.channels_last,
        num_workers=min(cfg.data.num_workers, os.cpu_count() or 1),
        pin_memory=device.type == "cuda",
    )
    needed = sizes.warmup + steps
    if len(train_loader) < needed:
        raise ValueError(f"{len(train_loader)} batches, {needed} needed: raise Sizes.n_train")
    optimizer = build_optimizer(cfg.train, model)
    scheduler = build_scheduler(cfg.train, optimizer, len(train_loader))
    marks: dict[int, float] = {}

    def on_step(step: int, _: float) -> None:
        if step in (sizes.warmup, needed):
            synchronize(device)
            marks[step] = time.perf_counter()

    net = wrap(model) if wrap is not None else model
    train_one_epoch(
        net,
        get_loss(cfg.train.loss),
        optimizer,
        scheduler,
        _First(train_loader, needed),
        device,
        1,
        num_classes=bundle.num_classes,
        mixing=build_mixing(cfg.mixing),
        rng=np.random.default_rng(0),
        amp=cfg.train.amp,
        channels_last=cfg.train.channels_last,
        on_step=on_step,
    )
    images_per_s = steps * cfg.train.batch_size / (marks[needed] - marks[sizes.warmup])
    out = {"images_per_s": images_per_s, "steps": steps, "batch_size": cfg.train.batch_size}
    if cfg.data.pipeline == "tensor" and wrap is None:
        for _ in range(2):  # the first pass warms up
            synchronize(device)
            tic = time.perf_counter()
            evaluate(
                model, test_loader, device, bundle.num_classes, amp=cfg.train.amp, channels_last=cfg.train.channels_last
            )
            synchronize(device)
        out["eval_images_per_s"] = len(bundle.test) / (time.perf_counter() - tic)
    return out


def training_section(root: Path, device: torch.device, sizes: Sizes, tiny: bool, peak: float | None) -> dict:
    result = {}
    for arch in ARCHS:
        base = check_config(arch, root, sizes, tiny)
        title = model_label(base)
        train_flops, eval_flops = count_flops(base)
        entry = {"model": title, "train_flops_per_image": train_flops, "eval_flops_per_image": eval_flops}
        for pipeline in PIPELINES:
            cfg = check_config(arch, root, sizes, tiny, pipeline)
            run = timed_steps(cfg, device, sizes, sizes.steps)
            ips = run["images_per_s"]
            row = {
                "images_per_s": ips,
                "train_tflops": ips * train_flops / 1e12,
                "fraction_of_bf16_peak": None if peak is None else ips * train_flops / peak,
                "amp": cfg.train.amp,
                "channels_last": cfg.train.channels_last,
                "batch_size": run["batch_size"],
                "workers": cfg.data.num_workers if pipeline == "loader" else 0,
            }
            if "eval_images_per_s" in run:
                n_train, n_test = get_spec("cifar10").sizes
                steps = n_train // cfg.train.batch_size
                row["eval_images_per_s"] = run["eval_images_per_s"]
                row["eval_tflops"] = run["eval_images_per_s"] * eval_flops / 1e12
                row["seconds_per_cifar10_epoch"] = (
                    steps * cfg.train.batch_size / ips + n_test / run["eval_images_per_s"]
                )
            entry[pipeline] = row
            print(
                f"[gpu-check] {title} {pipeline:<6}: {ips:9.0f} images/s, {row['train_tflops']:.1f} TFLOP/s"
                + (f" ({100 * row['fraction_of_bf16_peak']:.0f}% of peak)" if peak else ""),
                flush=True,
            )
        entry["compiled"] = compiled_row(check_config(arch, root, sizes, tiny), device, sizes, train_flops, peak)
        entry["compiled_over_eager"] = entry["compiled"]["images_per_s"] / entry["tensor"]["images_per_s"]
        print(
            f"[gpu-check] {title} compiled: {entry['compiled']['images_per_s']:9.0f} images/s "
            f"({entry['compiled_over_eager']:.2f}x eager), {entry['compiled']['compile_seconds']:.0f} s to compile",
            flush=True,
        )
        entry["tensor_over_loader"] = entry["tensor"]["images_per_s"] / entry["loader"]["images_per_s"]
        entry["seconds_per_cifar10_epoch"] = entry["tensor"]["seconds_per_cifar10_epoch"]
        result[arch] = entry
    return result


def compiled_row(cfg: ExperimentConfig, device: torch.device, sizes: Sizes, train_flops: float, peak) -> dict:
    """The tensor pipeline's step with ``torch.compile`` (inductor): images/s, and the compile time (the call's wall
    time less its timed steps and the eager warm-up's share)."""
    tic = time.perf_counter()
    run = timed_steps(cfg, device, sizes, sizes.steps, wrap=torch.compile)
    ips = run["images_per_s"]
    steps_s = (sizes.warmup + sizes.steps) * cfg.train.batch_size / ips
    return {
        "images_per_s": ips,
        "train_tflops": ips * train_flops / 1e12,
        "fraction_of_bf16_peak": None if peak is None else ips * train_flops / peak,
        "compile_seconds": max(0.0, time.perf_counter() - tic - steps_s),
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ddp_section(root: Path, device: torch.device, sizes: Sizes, tiny: bool) -> dict:
    """WRN steps in a one-process DistributedDataParallel against the plain model (same steps, same data)."""
    cfg = check_config("wrn", root, sizes, tiny)
    backend = "nccl" if device.type == "cuda" else "gloo"
    plain = timed_steps(cfg, device, sizes, sizes.ddp_steps)["images_per_s"]
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()))
    tdist.init_process_group(backend, rank=0, world_size=1)
    try:
        ids = (
            [device.index if device.index is not None else torch.cuda.current_device()]
            if device.type == "cuda"
            else None
        )
        ddp = timed_steps(
            cfg,
            device,
            sizes,
            sizes.ddp_steps,
            wrap=lambda m: torch.nn.parallel.DistributedDataParallel(m, device_ids=ids),
        )["images_per_s"]
    finally:
        tdist.destroy_process_group()
    print(f"[gpu-check] DDP ({backend}, 1 process): {ddp:.0f} images/s, plain {plain:.0f}", flush=True)
    return {
        "model": model_label(cfg),
        "backend": backend,
        "world_size": 1,
        "images_per_s": ddp,
        "plain_images_per_s": plain,
        "ddp_over_plain": ddp / plain,
        "steps": sizes.ddp_steps,
    }


def analysis_section(root: Path, device: torch.device, sizes: Sizes, tiny: bool, out: Path) -> dict:
    """measure_model on a WRN (random weights: the time does not depend on them), figures off."""
    from mixcollapse.analysis.measure import Report, measure_model

    cfg = check_config("wrn", root, sizes, tiny)
    bundle = build_datasets(dataclasses.replace(cfg.data, augment=False))
    torch.manual_seed(0)
    model = build_model(cfg.model, bundle.num_classes, bundle.in_channels, bundle.image_size)
    settings = dataclasses.replace(
        cfg.analysis,
        classes=[0, 1, 2],
        pairs_per_class_pair=sizes.pairs_per_class_pair,
        nc_samples=sizes.nc_samples,
        test_pairs=sizes.test_pairs,
    )
    synchronize(device)
    tic = time.perf_counter()
    result = measure_model(
        model,
        bundle.train,
        bundle.test,
        out_dir=out / "analysis",
        settings=settings,
        device=device,
        num_workers=min(sizes.workers, os.cpu_count() or 1),
        report=Report(draw=False, progress=False),
        overwrite=True,
    )
    synchronize(device)
    seconds = time.perf_counter() - tic
    pairs = len(result.features.lam)
    laps = result.summary.get("seconds", {})
    pair_seconds = laps.get("pairs")
    print(f"[gpu-check] analysis: {pairs} pairs in {seconds:.1f} s", flush=True)
    return {
        "model": model_label(cfg),
        "pairs": pairs,
        "seconds": seconds,
        "pairs_per_s": pairs / seconds,
        "pair_features_and_measures_per_s": pairs / pair_seconds if pair_seconds else None,
        "laps_seconds": laps,
        "bn_mode": settings.bn_mode,
        "nc_samples": sizes.nc_samples,
        "test_pairs": sizes.test_pairs,
    }


def ufm_section(device: torch.device, sizes: Sizes) -> dict:
    """Mixup UFM optima for ``ufm_problems`` soft targets on the device; the largest relative gradient left."""
    from mixcollapse.etf import simplex_etf
    from mixcollapse.mixup import mixup_targets
    from mixcollapse.theory.solver import feature_gradient, optimal_features

    C, d, N = sizes.ufm_classes, sizes.ufm_dim, sizes.ufm_problems
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randint(0, C, (N,), generator=gen), torch.randint(0, C, (N,), generator=gen)
    lam = torch.rand(N, generator=gen, dtype=torch.float64)
    targets = mixup_targets(lam.to(device), a.to(device), b.to(device), C)
    W = simplex_etf(C, d).to(device)
    weight_decay = 1e-4
    optimal_features(W, targets[: min(N, 1000)], weight_decay)  # warm-up: kernels, allocator
    synchronize(device)
    tic = time.perf_counter()
    H = optimal_features(W, targets, weight_decay)
    synchronize(device)
    seconds = time.perf_counter() - tic
    sample = torch.arange(0, N, max(1, N // 10_000), device=device)
    grad = feature_gradient(W, H[sample], targets[sample], weight_decay)
    rel = (grad.norm(dim=1) / H[sample].norm(dim=1).clamp_min(1.0)).max().item()
    print(f"[gpu-check] UFM: {N} problems (C={C}, d={d}) in {seconds:.2f} s", flush=True)
    return {
        "problems": N,
        "num_classes": C,
        "dim": d,
        "seconds": seconds,
        "problems_per_s": N / seconds,
        "max_relative_gradient": rel,
        "weight_decay": weight_decay,
    }


def gpu_hours_section(training: dict, device_name: str) -> dict:
    """The full reproduction's GPU-hours from the measured throughput of each architecture, and the estimates."""
    rates = {
        arch: (training[arch]["tensor"]["train_tflops"] * 1e12, training[arch]["tensor"].get("eval_tflops", 0.0) * 1e12)
        for arch in training
    }
    per_experiment = {}
    for name in [*EXPERIMENTS, "all"]:
        names = list(EXPERIMENTS) if name == "all" else [name]
        seconds = 0.0
        for key, n in trainings(experiments_runs(names)):
            cfg = run_config(key, "full")
            train_f, eval_f = FLOPS_PER_IMAGE[(key.arch, key.dataset)]
            n_train, n_test = get_spec(key.dataset).sizes
            t = cfg.train
            train_part = t.epochs * (n_train // t.batch_size) * t.batch_size * train_f / rates[key.arch][0]
            eval_part = math.ceil(t.epochs / t.eval_every) * n_test * eval_f / rates[key.arch][1]
            seconds += n * (train_part + eval_part)
        per_experiment[name] = {
            "measured_gpu_hours": seconds / 3600,
            "estimated_h100_hours": estimate_gpu_hours(names, "H100"),
            "estimated_a100_hours": estimate_gpu_hours(names, "A100"),
        }
    return {
        "device": device_name,
        "assumed_fraction_of_peak_in_estimates": MFU,
        "estimate_peaks": PEAK_BF16,
        "experiments": per_experiment,
        "how": "each run's FLOPs (cost.FLOPS_PER_IMAGE x images x epochs) over the achieved train and eval "
        "FLOP/s of its architecture measured here on CIFAR10 shapes (tensor pipeline)",
    }


def _write(path: Path, report: dict) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2, default=str))
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for gpu_check.json")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes (CI on a CPU): every key, no meaning")
    parser.add_argument("--device", default="auto", help="auto (cuda when present), cuda, cuda:N or cpu")
    args = parser.parse_args(argv)
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True
    sizes = TINY if args.tiny else Sizes()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name, peak = peak_flops(device)
    report: dict = {
        "tiny": args.tiny,
        "device": name,
        "bf16_peak_flops": peak,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cpu_count": os.cpu_count(),
        "sizes": dataclasses.asdict(sizes),
    }
    print(f"[gpu-check] {name}, torch {torch.__version__}; writing {out / OUT_FILE}", flush=True)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        write_fake_cifar10(root, n_train=sizes.n_train, n_test=sizes.n_test)
        sections = {
            "training": lambda: training_section(root, device, sizes, args.tiny, peak),
            "ddp": lambda: ddp_section(root, device, sizes, args.tiny),
            "analysis": lambda: analysis_section(root, device, sizes, args.tiny, Path(tmp)),
            "ufm": lambda: ufm_section(device, sizes),
            "gpu_hours": lambda: gpu_hours_section(report["training"], name),
        }
        for key, section in sections.items():
            tic = time.perf_counter()
            try:
                report[key] = section()
            except Exception as err:  # recorded: the other sections still run
                report[key] = {"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()}
                print(f"[gpu-check] {key} failed: {type(err).__name__}: {err}", flush=True)
            report.setdefault("section_seconds", {})[key] = time.perf_counter() - tic
            _write(out / OUT_FILE, report)
    report["seconds"] = time.perf_counter() - start
    _write(out / OUT_FILE, report)
    print(f"[gpu-check] done in {report['seconds']:.0f} s: {out / OUT_FILE}", flush=True)
    return report


if __name__ == "__main__":
    main()
