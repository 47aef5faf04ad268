"""The three scales of a reproduction: ``full`` (the paper's settings), ``cpu`` (the real data with a recipe that
reaches the terminal phase on a 2-core CPU) and ``tiny`` (any config shrunk to seconds, same code path).

``tiny`` shrinks in one place (:func:`tiny_overrides`, big_vision's ``runlocal``): a few images, a few
epochs, small models; the checkpoint epochs of Figure 10 keep their fractions of training (100, 300,
500 of 500 -> 1, 2, 3 of 3). ``cpu`` reads the presets ``<arch>-<dataset>-cpu.yaml`` and sets what depends
on the machine (:func:`cpu_overrides`). :func:`run_config` is a run of the paper at a scale.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path

from mixcollapse.config import PRESET_DIR, ExperimentConfig, load_config, num_classes
from mixcollapse.experiments.grid import parse_grid
from mixcollapse.experiments.paper import GRIDS, PAPER_DATASETS, RUN_EXTRAS, VARIANTS, VIT_FIG10_EPOCHS, RunKey
from mixcollapse.machine import available_cores, cpu_bf16_supported

SCALES = ("tiny", "cpu", "full")


CPU_ARCHS = ("wrn", "vit")  # architectures with a CPU-scale recipe (presets/<arch>-<dataset>-cpu.yaml)


TINY_RUN_EXTRAS: dict[str, tuple[str, ...]] = {
    **{f"wrn-{d}-mixup": RUN_EXTRAS["wrn-cifar10-mixup"] for d in PAPER_DATASETS},
    **{f"vit-{d}-mixup": (f"train.checkpoint_epochs={list(VIT_FIG10_EPOCHS)}",) for d in PAPER_DATASETS},
}


# The tiny scale, in one place (big_vision's runlocal): same model families, same analysis, same
# code path; a few images, a few epochs, small models. The checkpoint epochs of Figure 10 keep their
# fractions of training (100, 300, 500 of 500 -> 1, 2, 3 of 3).
TINY_EPOCHS = 3


TINY_BATCH = 32


TINY_TRAIN_IMAGES = 128  # at least TINY_IMAGES_PER_CLASS per class on average (CIFAR100: 500)


TINY_IMAGES_PER_CLASS = 5


TINY_TEST_IMAGES = 64


TINY_THREADS = 1  # torch intra-op threads while a tiny experiment runs (see scale_threads)


TINY_MODELS = {
    "wrn": ("model.depth=10", "model.width=1"),  # WRN-10-1: stage widths 16, 32, 64
    "vit": ("model.embed_dim=32", "model.vit_depth=2", "model.num_heads=2"),  # patch size 4 kept
    "small": ("model.hidden=16",),
}


@contextlib.contextmanager
def scale_threads(scale: str):
    """Run the block with one intra-op thread at tiny scale (restored afterwards).

    The tiny models are too small to gain from intra-op parallelism, and on a shared CPU OpenMP
    threads that wait for a descheduled sibling make a tiny WRN step up to 20x slower.
    """
    if scale != "tiny":
        yield
        return
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(TINY_THREADS)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def scale_epoch(epoch: int, full_epochs: int, epochs: int = TINY_EPOCHS) -> int:
    """A full-scale epoch at the same fraction of a ``epochs``-epoch run (at least 1)."""
    return min(epochs, max(1, math.floor(epoch * epochs / full_epochs + 0.5)))


def tiny_overrides(cfg: ExperimentConfig) -> list[str]:
    """Overrides that shrink the resolved full-scale ``cfg`` to a run of seconds on a CPU."""
    t = cfg.train
    train_images = max(TINY_TRAIN_IMAGES, TINY_IMAGES_PER_CLASS * num_classes(cfg))
    kept = sorted({scale_epoch(e, t.epochs) for e in t.checkpoint_epochs})
    out = [
        f"train.epochs={TINY_EPOCHS}",
        f"train.batch_size={TINY_BATCH}",
        f"train.checkpoint_epochs={kept}",
        "train.checkpoint_every=0",
        "train.progress=false",
        "train.amp=none",
        "train.channels_last=false",
        f"data.train_limit={train_images}",
        f"data.test_limit={TINY_TEST_IMAGES}",
        "data.num_workers=0",
        "analysis.pairs_per_class_pair=16",
        f"analysis.batch_size={TINY_BATCH}",
        "analysis.recalibrate_batches=2",
        "analysis.test_pairs=64",
        *TINY_MODELS.get(cfg.model.name, ()),
    ]
    if t.warmup_epochs > 0:
        out.append("train.warmup_epochs=1")
    return out


def _cpu_recipe(preset: str | Path) -> Path:
    """Where the CPU-scale recipe of a full-scale preset lives (``wrn-fashionmnist`` -> ``wrn-fashionmnist-cpu``)."""
    return PRESET_DIR / f"{Path(str(preset)).stem}-cpu.yaml"


def cpu_preset(preset: str | Path) -> str:
    """The CPU-scale recipe of a full-scale preset name (``wrn-fashionmnist`` -> ``wrn-fashionmnist-cpu``)."""
    path = _cpu_recipe(preset)
    if not path.is_file():
        known = ", ".join(sorted(p.stem.removesuffix("-cpu") for p in PRESET_DIR.glob("*-cpu.yaml")))
        raise ValueError(
            f"--scale cpu has no recipe for {Path(str(preset)).stem} (recipes: {known}); "
            "use --scale tiny for a smoke test or --scale full on a GPU"
        )
    return path.stem


def cpu_datasets(archs: tuple[str, ...] = CPU_ARCHS) -> list[str]:
    """The datasets with a CPU-scale recipe for one of ``archs`` (presets ``<arch>-<dataset>-cpu.yaml``)."""
    return [d for d in PAPER_DATASETS if any(_cpu_recipe(f"{a}-{d}").is_file() for a in archs)]


def cpu_overrides(cfg: ExperimentConfig) -> list[str]:
    """CPU-scale settings that depend on the machine: no loader workers (the data is in memory), one torch
    thread per core available (unless the recipe fixes train.threads), bf16 autocast only where the CPU runs
    bf16 natively (elsewhere it is slower than float32)."""
    out = ["data.num_workers=0"]
    if cfg.train.threads == 0:
        out.append(f"train.threads={available_cores()}")
    if cfg.train.amp == "bf16" and not cpu_bf16_supported():
        out.append("train.amp=none")
    return out


def scaled_config(
    preset: str | Path,
    overrides: list[str] | tuple[str, ...] = (),
    scale: str = "full",
    late: list[str] | tuple[str, ...] = (),
) -> ExperimentConfig:
    """``load_config(preset, overrides)`` at ``scale``: shrunk by :func:`tiny_overrides` at tiny scale, the
    ``<preset>-cpu`` recipe at cpu scale; ``late`` last."""
    if scale not in SCALES:
        raise ValueError(f"scale '{scale}' is not one of: {', '.join(SCALES)}")
    if scale == "cpu":
        preset = cpu_preset(preset)
    cfg = load_config(preset, [*overrides, *late])
    if scale == "tiny":
        cfg = load_config(preset, [*overrides, *tiny_overrides(cfg), *late])
    elif scale == "cpu":
        cfg = load_config(preset, [*overrides, *cpu_overrides(cfg), *late])
    return cfg


def run_overrides(key: RunKey, scale: str = "full") -> list[str]:
    """The overrides that make ``key`` from its preset (hyper-parameters excluded)."""
    variant = VARIANTS[key.variant]
    if scale == "cpu":  # the CPU recipes keep Figure 10's epochs themselves
        return [f"name={key.name}", *variant.overrides, *variant.cpu]
    extras = TINY_RUN_EXTRAS if scale == "tiny" else RUN_EXTRAS
    return [f"name={key.name}", *variant.overrides, *extras.get(key.name, ())]


def run_config(
    key: RunKey, scale: str = "full", hyper: list[str] | tuple[str, ...] = (), late: list[str] | tuple[str, ...] = ()
) -> ExperimentConfig:
    """The resolved config of run ``key`` at ``scale`` with hyper-parameter overrides ``hyper``."""
    return scaled_config(key.preset, [*run_overrides(key, scale), *hyper], scale, late)


def sweep_grid(arch: str, scale: str = "full") -> dict[str, list]:
    """Appendix B.1's grid for ``arch``; at tiny scale the first and last learning rate, other keys their last value."""
    grid = parse_grid(GRIDS[arch])
    if scale == "cpu":
        raise ValueError("the CPU scale trains each run once with its recipe's settings: no sweep")
    if scale == "tiny":
        grid = {k: ([v[0], v[-1]] if k == "train.lr" else [v[-1]]) for k, v in grid.items()}
    return grid
