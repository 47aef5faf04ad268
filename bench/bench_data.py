"""The tensor pipeline against torchvision's per-sample path: data alone, and a whole training epoch.

    PYTHONPATH=src python bench/bench_data.py [--n 10000] [--repeat 3] [--json FILE]

Data alone: images per second of one epoch of batches of 128 from CIFAR10-format files (written by
``mixcollapse.data.fake``: the real on-disk format, 32x32x3 uint8), with CIFAR's augmentation (random
crop with padding 4 and horizontal flip) and without it, through ``build_loaders(pipeline=...)``:
``loader`` is torchvision's per-sample transforms in a DataLoader (PIL image, crop, flip, ToTensor,
Normalize, collate), ``tensor`` is ``mixcollapse.data.batches`` (one gather per batch). The real
FashionMNIST (no augmentation) is timed too when it is installed.

A training epoch: ``train()`` of a WRN-10-2 on 4096 of those images, bf16 autocast and channels_last,
one epoch with each pipeline, alternating, ``--repeat`` times; the epoch_seconds of metrics.jsonl
(training and evaluation) are compared. Medians; ratios within one run (absolute times drift).
Targets (issue: speed): data alone with crop + flip >= 10x faster; a training epoch no slower.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from mixcollapse.config import DataConfig, load_config
from mixcollapse.data.datasets import build_datasets, build_loaders
from mixcollapse.data.fake import write_fake_cifar10
from mixcollapse.data.locate import files_present
from mixcollapse.training.loop import train
from mixcollapse.training.rundir import read_metrics


def images_per_second(bundle, pipeline: str, repeat: int) -> float:
    """Median images/s of one epoch of the train loader (the first epoch warms up and is not counted)."""
    loader, _ = build_loaders(bundle, 128, pipeline=pipeline, seed=0)
    times, count = [], 0
    for k in range(repeat + 1):
        tic = time.perf_counter()
        count = sum(len(y) for _, y in loader)
        if k:
            times.append(time.perf_counter() - tic)
    return count / statistics.median(times)


def data_alone(root: Path, repeat: int) -> dict:
    out = {}
    cases = {
        "cifar10, crop + flip": DataConfig(name="cifar10", root=str(root), download=False),
        "cifar10, no augmentation": DataConfig(name="cifar10", root=str(root), download=False, augment=False),
    }
    real = DataConfig(name="fashionmnist", root=str(root), download=False)
    if files_present(real):
        cases["real fashionmnist (never augmented)"] = real
    for name, cfg in cases.items():
        bundle = build_datasets(cfg)
        loader, tensor = (images_per_second(bundle, p, repeat) for p in ("loader", "tensor"))
        out[name] = {
            "loader_images_per_s": loader,
            "tensor_images_per_s": tensor,
            "speedup": tensor / loader,
            "images": len(bundle.train),
        }
        print(f"{name:<38} per-sample {loader:9.0f} img/s   tensor {tensor:10.0f} img/s   {tensor / loader:6.1f}x")
    return out


def training_epoch(root: Path, repeat: int) -> dict:
    seconds: dict[str, list[float]] = {"loader": [], "tensor": []}
    overrides = [
        "data.name=cifar10",
        f"data.root={root}",
        "data.download=false",
        "data.train_limit=4096",
        "data.test_limit=1024",
        "model.name=wrn",
        "model.depth=10",
        "model.width=2",
        "train.epochs=1",
        "train.batch_size=128",
        "train.amp=bf16",
        "train.channels_last=true",
        "train.progress=false",
        "train.checkpoint_every=0",
        "train.checkpoint_epochs=[]",
        "data.num_workers=0",
    ]
    with tempfile.TemporaryDirectory() as runs:
        for k in range(repeat):
            for pipeline in ("loader", "tensor") if k % 2 == 0 else ("tensor", "loader"):
                cfg = load_config("digits", [*overrides, f"data.pipeline={pipeline}"])
                run = train(cfg, Path(runs) / f"{pipeline}-{k}")
                seconds[pipeline].append(read_metrics(run)[-1]["epoch_seconds"])
    loader, tensor = (statistics.median(seconds[p]) for p in ("loader", "tensor"))
    print(
        f"training epoch (WRN-10-2, 4096 images, bf16): per-sample {loader:.2f} s, tensor {tensor:.2f} s, "
        f"tensor / per-sample {tensor / loader:.3f}"
    )
    return {
        "loader_epoch_s": loader,
        "tensor_epoch_s": tensor,
        "ratio_tensor_over_loader": tensor / loader,
        "all_seconds": seconds,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10000, help="training images written (CIFAR10 format)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    parser.add_argument("--no-training", action="store_true", help="time the data alone")
    args = parser.parse_args(argv)
    print(f"torch threads: {torch.get_num_threads()}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_fake_cifar10(root, n_train=args.n, n_test=1024)
        result = {"data_alone": data_alone(root, args.repeat)}
        if not args.no_training:
            result["training_epoch"] = training_epoch(root, args.repeat)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
