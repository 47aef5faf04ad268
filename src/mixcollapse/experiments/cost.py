"""What the paper costs on GPUs: FLOPs of a run and GPU-hours of an experiment at full scale (an estimate).

Each run's FLOPs are its images times the measured FLOPs per image of its model (one forward and
backward per training image, one forward per test image), counted by ``bench/estimate_gpu_time.py``
with torch's FlopCounterMode; the time assumes a sustained fraction (:data:`MFU`) of the GPU's dense
bf16 peak. Slurm jobs take their default time limit from here (:func:`config_gpu_seconds`).
"""

from __future__ import annotations

import math

from mixcollapse.catalog import get_spec
from mixcollapse.config import ExperimentConfig
from mixcollapse.experiments.halving import halving_rungs, trained_epochs
from mixcollapse.experiments.paper import RunKey, experiments_runs, plan_runs
from mixcollapse.experiments.scales import run_config, sweep_grid

# FLOPs per image of one forward+backward (train) and one forward (eval) of the full-size models,
# counted by bench/estimate_gpu_time.py with torch.utils.flop_counter.FlopCounterMode at batch 128
# (on the meta device; rerun it after changing a model and paste its output here).
FLOPS_PER_IMAGE: dict[tuple[str, str], tuple[float, float]] = {
    ("wrn", "fashionmnist"): (37.09e9, 12.36e9),
    ("wrn", "cifar10"): (48.45e9, 16.15e9),
    ("wrn", "cifar100"): (48.45e9, 16.15e9),
    ("vit", "fashionmnist"): (25.76e9, 8.587e9),
    ("vit", "cifar10"): (33.60e9, 11.20e9),
    ("vit", "cifar100"): (33.60e9, 11.20e9),
}


# Assumed sustained throughput: 40% of the dense bf16 peak (A100: 312 TFLOP/s, H100 SXM: 989 TFLOP/s).
MFU = 0.40
PEAK_BF16 = {"A100": 312e12, "H100": 989e12}


def config_flops(cfg: ExperimentConfig, flops: dict | None = None, until: int | None = None) -> float | None:
    """FLOPs of training ``cfg`` to its end (or to epoch ``until``): every epoch's steps plus its test-set
    evaluations; None when its model and dataset have no FLOP count (only the paper's full-size models on the
    paper's datasets have one)."""
    per_image = (flops or FLOPS_PER_IMAGE).get((cfg.model.name, cfg.data.name))
    sizes = get_spec(cfg.data.name).sizes
    if per_image is None or sizes is None:
        return None
    (train_f, eval_f), (n_train, n_test), t = per_image, sizes, cfg.train
    per_epoch = (n_train // t.batch_size) * t.batch_size * train_f
    epochs = until or t.epochs
    evals = epochs // t.eval_every + (epochs == t.epochs and t.epochs % t.eval_every != 0)
    return epochs * per_epoch + evals * n_test * eval_f


def gpu_seconds(total_flops: float, gpu: str = "H100", gpus: int = 1) -> float:
    """The time ``total_flops`` take at :data:`MFU` of ``gpus`` GPUs' bf16 peak."""
    return total_flops / (MFU * PEAK_BF16[gpu] * max(1, gpus))


def run_flops(key: RunKey, flops: dict | None = None) -> float:
    """FLOPs of one full-scale training of ``key`` (:func:`config_flops` of its full-scale config)."""
    return config_flops(run_config(key, "full"), flops)


def sweep_flops(key: RunKey, points: int, sweep: str = "full", flops: dict | None = None) -> float:
    """FLOPs of a sweep of ``points`` full-scale runs of ``key``: each to its end (``full``), or to the rungs
    of successive halving (``halving``: experiments.halving.trained_epochs, no run failing)."""
    cfg = run_config(key, "full")
    if sweep == "full":
        return points * config_flops(cfg, flops)
    total, before = 0.0, 0.0
    for n, epoch in trained_epochs(points, halving_rungs(cfg.train.epochs, cfg.train.eval_every)):
        reached = config_flops(cfg, flops, until=epoch)
        total += n * (reached - before)  # the survivors continue from the last rung
        before = reached
    return total


def trainings(keys) -> list[tuple[RunKey, int]]:
    """(run, number of full-scale trainings) for everything ``keys`` needs: sweeps counted point by point."""
    plan = plan_runs(keys)
    out = [(k, math.prod(len(v) for v in sweep_grid(k.arch, "full").values())) for k in plan.swept]
    return out + [(k, 1) for k in plan.inherited]


def estimate_gpu_hours(names, gpu: str = "A100", flops: dict | None = None, sweep: str = "full") -> float:
    """GPU-hours for the named experiments at full scale, shared runs counted once (an estimate); ``sweep``:
    the learning-rate sweeps in full (Appendix B.1) or by successive halving."""
    keys = experiments_runs(names)
    swept = set(plan_runs(keys).swept)
    total = sum(sweep_flops(k, n, sweep, flops) if k in swept else n * run_flops(k, flops) for k, n in trainings(keys))
    return gpu_seconds(total, gpu) / 3600
