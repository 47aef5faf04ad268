"""The training loop: mixup (eq. 1), loss, optimizer and schedule of Appendix B.1, DDP, checkpoints.

``train(cfg, run_dir)`` is one linear loop over plain functions, ``train_one_epoch`` and
``evaluate`` (torchvision references' shape); it runs unchanged under ``python`` and under
``torchrun --nproc_per_node N`` (DDP; nccl on GPUs, gloo on CPU; see ``mixcollapse.training.dist``).

Per epoch, rank 0 appends one JSON line to ``run_dir/metrics.jsonl``:

    epoch            1-based
    train_loss       mean mixup loss over the epoch's batches (weighted by batch size, all ranks)
    train_accuracy   argmax of the mixed input vs its dominant label (label_a when lambda >= 0.5,
                     else label_b); plain training accuracy without mixing
    test_loss        cross-entropy on one-hot test labels (whatever the training loss)
    test_accuracy    on the whole test set
    test_ece         expected calibration error (Appendix C), 15 equal-width bins, float64
                     (mixcollapse.metrics.calibration.CalibrationAccumulator)
    lr               learning rate of the epoch's first optimizer step
    epoch_seconds    wall time of training and evaluation in this epoch
    classifier_*     mixcollapse.metrics.geometry.classifier_geometry of W (Figure 5): norm_cv,
                     cos_mean, cos_std, cos_max_dev, norm_mean, etf_cos, etf_distance, num_classes
The test_* keys are null on epochs skipped by ``train.eval_every`` (the final epoch is always
evaluated); non-finite numbers are written as null.

Resume is exact (bitwise on the same machine and thread count, tested on one and two processes):
the checkpoint restores every random stream, including the train loader's generator, which draws
the order of samples and, with ``data.pipeline = tensor`` (the default, no worker processes), the
crop offsets and flips; with ``data.pipeline = loader`` worker processes start anew each epoch,
seeded from that generator, so they too repeat an uninterrupted run.

Distributed details: ``train.batch_size`` is the global batch; each of N ranks takes
batch_size / N and mixes within its own share. Evaluation is exact: each rank evaluates a
disjoint, unpadded shard of the test set (``build_loaders``' ShardSampler) with rank 0's
batch-norm buffers, and the sums (loss, correct, count, calibration bins) are all-reduced.
"""

from __future__ import annotations

import copy
import logging
import random
import signal
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from mixcollapse.config import ExperimentConfig, config_from_dict, to_dict, validate
from mixcollapse.data.batches import TensorBatches, set_epoch
from mixcollapse.data.datasets import DataBundle, build_datasets, build_loaders
from mixcollapse.losses import get_loss
from mixcollapse.machine import available_cores
from mixcollapse.metrics.calibration import ECE_BINS, CalibrationAccumulator
from mixcollapse.metrics.geometry import classifier_geometry
from mixcollapse.mixing import Mixing, build_mixing
from mixcollapse.models import build_model
from mixcollapse.progress import progress_bar
from mixcollapse.training import dist
from mixcollapse.training.board import log_epoch, log_hparams, open_board
from mixcollapse.training.checkpoint import (
    CheckpointError,
    build_checkpoint,
    capture_rng,
    load_checkpoint,
    load_weights,
    restore_rng,
    save_checkpoint,
)
from mixcollapse.training.interrupt import TrainingInterrupted, deferred_signals, stop_signals
from mixcollapse.training.optim import build_optimizer, build_scheduler, current_lr
from mixcollapse.training.rundir import (
    RunDirError,
    append_metrics,
    check_run_dir,
    epoch_checkpoint_path,
    last_checkpoint_path,
    prepare_run_dir,
    read_metrics,
    resume_differences,
    truncate_metrics,
)

_log = logging.getLogger(__name__)


class DivergedError(ValueError):
    """The training loss became inf or NaN; the message names the epoch, the loss and the settings to change."""


def _autocast(device: torch.device, amp: str):
    """bf16 autocast when ``amp == 'bf16'`` (no loss scaling needed), else a no-op context."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp == "bf16")


def _to_device(x: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    x = x.to(device, non_blocking=True)
    if channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def train_one_epoch(
    model: nn.Module,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    data_loader: DataLoader,
    device: torch.device,
    epoch: int,
    *,
    num_classes: int,
    mixing: Mixing,
    rng: np.random.Generator,
    amp: str = "none",
    channels_last: bool = False,
    progress: bool = False,
    on_step: Callable[[int, float], None] | None = None,
) -> dict[str, float]:
    """One pass over ``data_loader`` with ``mixing`` (mixup, eq. 1, or another method); the scheduler steps per
    iteration.

    Every batch is mixed by ``mixing`` (mixup: with a permutation of itself, lambda ~ Beta(alpha, alpha) per
    batch or per sample; alpha = 0 is the baseline, one-hot targets). Returns train_loss, train_accuracy
    (vs the dominant label) and lr (of the first step), reduced over all ranks; a train_loss that is not
    finite means training diverged (the caller decides what to do: ``train`` stops with a DivergedError).
    """
    model.train()
    lr = current_lr(optimizer)
    sums = torch.zeros(3, dtype=torch.float64, device=device)  # loss * B, correct, B
    tic = time.perf_counter()
    for step, (x, y) in enumerate(progress_bar(data_loader, f"epoch {epoch}", progress), start=1):
        x, y = _to_device(x, device, channels_last), y.to(device, non_blocking=True)
        with _autocast(device, amp):
            logits, batch = mixing.forward(model, x, y, num_classes, rng)  # (B, C)
        loss = loss_fn(logits, mixing.targets(batch))  # the losses compute in float32
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        with torch.no_grad():
            dominant = torch.where(batch.lam >= 0.5, batch.label_a, batch.label_b)
            sums[0] += loss.detach().double() * y.shape[0]
            sums[1] += (logits.argmax(dim=1) == dominant).sum()
            sums[2] += y.shape[0]
        if on_step is not None:
            on_step(step, time.perf_counter() - tic)
    dist.all_reduce_sum(sums)
    loss_sum, correct, count = sums.tolist()
    if count == 0:
        raise ValueError("the training loader yielded no batches (training set smaller than one batch?)")
    return {"train_loss": loss_sum / count, "train_accuracy": correct / count, "lr": lr}


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data_loader: DataLoader,
    device: torch.device,
    num_classes: int,
    *,
    amp: str = "none",
    channels_last: bool = False,
    progress: bool = False,
) -> dict[str, float]:
    """test_loss (CE on one-hot labels), test_accuracy and test_ece over the whole test set.

    Under DDP each rank passes its own disjoint shard and gets the totals of all shards; pass the
    unwrapped model.
    """
    model.eval()
    sums = torch.zeros(3, dtype=torch.float64, device=device)  # CE sum, correct, count
    calib = CalibrationAccumulator(ECE_BINS)
    # An empty update creates the bins, so a rank with an empty shard still takes part in the reduction.
    calib.accumulate(torch.zeros(0, num_classes, device=device), torch.zeros(0, dtype=torch.long, device=device))
    for x, y in progress_bar(data_loader, "test set", progress):
        x, y = _to_device(x, device, channels_last), y.to(device, non_blocking=True)
        with _autocast(device, amp):
            logits = model(x)
        logits = logits.float()  # (B, C)
        sums[0] += F.cross_entropy(logits, y, reduction="sum").double()
        sums[1] += (logits.argmax(dim=1) == y).sum()
        sums[2] += y.shape[0]
        calib.accumulate(logits, y)
    dist.all_reduce_sum(sums)
    for bins in (calib.count, calib.conf_sum, calib.correct_sum):
        dist.all_reduce_sum(bins)
    loss_sum, correct, count = sums.tolist()
    if count == 0:
        raise ValueError("the test set is empty")
    return {"test_loss": loss_sum / count, "test_accuracy": correct / count, "test_ece": calib.compute()["ece"]}


def _format_row(row: dict, epochs: int) -> str:
    text = f"epoch {row['epoch']}/{epochs}  train loss {row['train_loss']:.4f} acc {100 * row['train_accuracy']:.2f}%"
    if row.get("test_loss") is not None:
        text += f"  test loss {row['test_loss']:.4f} acc {100 * row['test_accuracy']:.2f}% ece {row['test_ece']:.4f}"
    return text + f"  lr {row['lr']:.3g}  {row['epoch_seconds']:.1f}s"


def _on_main(step: Callable[[], object]) -> None:
    """``step()`` on rank 0 (a run-directory check or write); every rank raises if it failed (none waits forever)."""
    error: BaseException | None = None
    if dist.is_main():
        try:
            step()
        except Exception as err:  # re-raised on every rank below
            error = err
    message = dist.broadcast_object(None if error is None else str(error))
    if error is not None:
        raise error
    if message is not None:
        raise RunDirError(message)


def train(
    cfg: ExperimentConfig,
    run_dir: str | Path,
    *,
    resume: bool = False,
    until_epoch: int | None = None,
    stop_after_epoch: int | None = None,
) -> Path:
    """Train ``cfg`` into ``run_dir`` (config.yaml, metrics.jsonl, checkpoints/); return ``run_dir``.

    ``resume=True`` continues from ``checkpoints/last.pt`` (the same config is required, see
    mixcollapse.training.rundir) and reproduces the uninterrupted run: weights, optimizer, schedule, RNG
    states and the shuffling order are restored and metrics of epochs after the checkpoint are
    dropped. Without a checkpoint, a resumed run starts from scratch; a finished run returns at once.

    ``until_epoch=N`` trains to epoch N of the run's own schedule (the learning rate still follows
    ``train.epochs``), writes epoch N's checkpoint and returns: the run is then the first N epochs of
    the full run, and a later resume (or a higher N) continues it to the same end. N must be an epoch
    that evaluates the test set (a multiple of ``train.eval_every``, or the last). Successive halving
    (experiments.halving) trains its rungs this way.

    ``stop_after_epoch=N`` returns after epoch N's bookkeeping as if the process were killed there
    (for tests of resumption; checkpoints are written only where they are due).
    """
    validate(cfg)  # a config built in Python has not been through load_config's checks
    check_until_epoch(cfg, until_epoch)
    if cfg.train.threads > 0:
        torch.set_num_threads(cfg.train.threads)
    _, device = dist.setup(cfg.train.device)
    try:
        out = _train(cfg, Path(run_dir), device, resume, until_epoch or cfg.train.epochs, stop_after_epoch)
    except BaseException:
        dist.abandon()  # no collective on the error path: the other ranks may be anywhere
        raise
    dist.cleanup()
    return out


@dataclass
class _Run:
    """One process's training run: its config and folder, where it runs, and everything it trains."""

    cfg: ExperimentConfig
    run_dir: Path
    device: torch.device
    rank: int
    world: int
    bundle: DataBundle
    model: nn.Module
    model_args: dict
    train_loader: DataLoader | TensorBatches
    test_loader: DataLoader | TensorBatches
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    loss_fn: Callable
    mixup_rng: np.random.Generator
    ddp_model: nn.Module | None = None  # the model as it trains (DDP-wrapped on several processes)

    @property
    def main(self) -> bool:
        return self.rank == 0


def check_until_epoch(cfg: ExperimentConfig, epoch: int | None) -> None:
    """Refuse an ``until_epoch`` outside the run or between two evaluations of the test set (ValueError)."""
    t = cfg.train
    if epoch is None or epoch == t.epochs:
        return
    if not 1 <= epoch <= t.epochs:
        raise ValueError(f"--until-epoch {epoch} is not an epoch of this run (1 to train.epochs={t.epochs})")
    if epoch % t.eval_every != 0:
        raise ValueError(
            f"--until-epoch {epoch} does not evaluate the test set (train.eval_every={t.eval_every}); "
            f"pick a multiple of {t.eval_every} or the last epoch, {t.epochs}"
        )


def _train(
    cfg: ExperimentConfig, run_dir: Path, device: torch.device, resume: bool, end: int, stop_after_epoch: int | None
) -> Path:
    """The steps of a run in order: check its folder, build it, restore it, train epoch by epoch, finish."""
    world = dist.world_size()
    if cfg.train.batch_size % world != 0:
        raise ValueError(
            f"train.batch_size={cfg.train.batch_size} (the global batch) must be divisible by {world} processes"
        )
    # Nothing is written until the data, the model and the checkpoint to resume from have been read: input
    # that fails (missing data, a corrupt checkpoint) leaves the run directory as it was.
    _on_main(lambda: check_run_dir(run_dir, cfg, resume))
    run = _build(cfg, run_dir, device, dist.rank(), world)
    start = _resume(run) if resume else 0
    _on_main(lambda: prepare_run_dir(run_dir, cfg, resume))
    if run.main:
        truncate_metrics(run_dir, start)  # epochs after the checkpoint (or of a failed start) are trained again
        _log.info(_start_line(run, start))
    if start >= end:
        return run_dir
    run.ddp_model = dist.wrap(run.model, device)
    board = _board(cfg, run_dir, start) if run.main and cfg.train.tensorboard else None
    state, saved = None, start  # the last finished epoch's checkpoint (rank 0), the last epoch written
    try:
        with stop_signals():
            for epoch in range(start + 1, end + 1):
                row = _run_epoch(run, epoch, first=epoch == start + 1)
                state = _state(run, epoch, row)  # from here on an interrupt keeps this epoch
                _record(run, row, board)
                if _due(cfg.train, epoch) or epoch == end:
                    saved = _save(run, state, epoch)
                if stop_after_epoch is not None and epoch >= stop_after_epoch:
                    return run_dir
    except KeyboardInterrupt as err:  # TrainingInterrupted from a stop signal, or Ctrl-C under a host's own handler
        if run.main:
            _save_on_interrupt(err, state, saved, cfg, run_dir)
        raise
    finally:
        if board is not None:
            board.close()
    if run.main and end < cfg.train.epochs:
        _log.info(f"[train] stopped at epoch {end} of {cfg.train.epochs} as asked; --resume continues the run")
    elif run.main:
        _log.info(
            f"[train] done: metrics in {run_dir / 'metrics.jsonl'}, checkpoints in {run_dir / 'checkpoints'}; "
            f"analyse the run with: mixcollapse analyze {run_dir}"
        )
    return run_dir


def _build(cfg: ExperimentConfig, run_dir: Path, device: torch.device, rank: int, world: int) -> _Run:
    """Data, model and optimizer of ``cfg``; the same initial weights on every rank, then per-rank streams."""
    t = cfg.train
    torch.manual_seed(t.seed)  # DDP would broadcast rank 0's weights anyway
    bundle = build_datasets(cfg.data)
    model = build_model(cfg.model, bundle.num_classes, bundle.in_channels, bundle.image_size).to(device)
    if t.channels_last:
        model = model.to(memory_format=torch.channels_last)
    model_args = {"num_classes": bundle.num_classes, "in_channels": bundle.in_channels, "image_size": bundle.image_size}
    torch.manual_seed(t.seed + rank)
    random.seed(t.seed + rank)
    mixup_rng = np.random.default_rng(t.seed + rank)
    workers = min(cfg.data.num_workers, available_cores())
    if workers < cfg.data.num_workers and rank == 0 and cfg.data.pipeline == "loader":
        _log.info(f"[train] data.num_workers={cfg.data.num_workers} capped at the {workers} available CPU cores")
    train_loader, test_loader = build_loaders(
        bundle,
        t.batch_size // world,
        pipeline=cfg.data.pipeline,
        device=device,
        channels_last=t.channels_last,
        num_workers=workers,
        seed=t.seed,
        distributed=world > 1,
        pin_memory=device.type == "cuda",
    )
    optimizer = build_optimizer(t, model)
    scheduler = build_scheduler(t, optimizer, len(train_loader))
    return _Run(
        cfg,
        run_dir,
        device,
        rank,
        world,
        bundle,
        model,
        model_args,
        train_loader,
        test_loader,
        optimizer,
        scheduler,
        get_loss(t.loss),
        mixup_rng,
    )


def _resume(run: _Run) -> int:
    """Load the last checkpoint into the run (weights, optimizer, schedule, random streams); its epoch (0: none)."""
    last_path = last_checkpoint_path(run.run_dir)
    if not last_path.is_file():
        if run.main:
            _log.info(f"[train] --resume: {run.run_dir} has no checkpoint yet, so the run starts from the beginning")
        return 0
    state = load_checkpoint(last_path, map_location="cpu")
    diffs = resume_differences(config_from_dict(state["config"]), run.cfg)
    if diffs:
        raise CheckpointError(f"checkpoint {last_path} was trained with another config ({'; '.join(diffs)})")
    load_weights(run.model, state["model"], last_path)
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    start = int(state["epoch"])
    if len(state["rng"]) == run.world:
        restore_rng(state["rng"][run.rank], run.mixup_rng, run.device)
        if state["loader"] is not None and run.train_loader.generator is not None:
            run.train_loader.generator.set_state(state["loader"])
    else:
        warnings.warn(
            f"checkpoint was written by {len(state['rng'])} processes, resuming with {run.world}: "
            "random streams are reseeded, so the run will not match an uninterrupted one",
            stacklevel=3,
        )
        torch.manual_seed(run.cfg.train.seed + 1000 * start + run.rank)
        run.mixup_rng = np.random.default_rng([run.cfg.train.seed, start, run.rank])
    return start


def _run_epoch(run: _Run, epoch: int, first: bool = False) -> dict:
    """One epoch of mixup training, the test set when due (train.eval_every), and the classifier's geometry."""
    cfg, t, main = run.cfg, run.cfg.train, run.main
    set_epoch(run.train_loader, epoch - 1)  # under DDP the order is a function of the epoch
    tic = time.perf_counter()
    row: dict = {"epoch": epoch}
    watch = _cpu_time_check(cfg, len(run.train_loader), epoch) if first and run.device.type == "cpu" and main else None
    row.update(
        train_one_epoch(
            run.ddp_model,
            run.loss_fn,
            run.optimizer,
            run.scheduler,
            run.train_loader,
            run.device,
            epoch,
            num_classes=run.bundle.num_classes,
            mixing=build_mixing(cfg.mixing),
            rng=run.mixup_rng,
            amp=t.amp,
            channels_last=t.channels_last,
            progress=t.progress and main,
            on_step=watch,
        )
    )
    if not np.isfinite(row["train_loss"]):
        raise DivergedError(
            f"training diverged in epoch {epoch} (train loss {row['train_loss']}) with "
            f"train.lr={t.lr:g}, train.weight_decay={t.weight_decay:g}, train.batch_size={t.batch_size}"
            f", mixing.alpha={cfg.mixing.alpha:g}; lower train.lr (or add train.warmup_epochs) and "
            "train again"
        )
    if epoch % t.eval_every == 0 or epoch == t.epochs:
        dist.broadcast_buffers(run.model)
        row.update(
            evaluate(
                run.model,
                run.test_loader,
                run.device,
                run.bundle.num_classes,
                amp=t.amp,
                channels_last=t.channels_last,
                progress=t.progress and main,
            )
        )
    else:
        row.update(test_loss=None, test_accuracy=None, test_ece=None)
    row["epoch_seconds"] = time.perf_counter() - tic
    row.update({f"classifier_{k}": v for k, v in classifier_geometry(run.model.classifier.weight).items()})
    return row


def _state(run: _Run, epoch: int, row: dict) -> dict | None:
    """The checkpoint of ``epoch`` as a copy on the CPU (rank 0; None elsewhere): what an interrupt writes later."""
    rng_states = dist.all_gather_object(capture_rng(run.mixup_rng, run.device))
    if not run.main:
        return None
    loader_state = run.train_loader.generator.get_state() if run.train_loader.generator is not None else None
    state = build_checkpoint(
        model=run.model,
        optimizer=run.optimizer,
        scheduler=run.scheduler,
        epoch=epoch,
        config=to_dict(run.cfg),
        model_args=run.model_args,
        rng=rng_states,
        loader=loader_state,
        metrics=row,
    )
    return _cpu_copy(state)


def _record(run: _Run, row: dict, board) -> None:
    """An epoch's metrics line, its TensorBoard scalars and its log line (rank 0)."""
    if run.main:
        append_metrics(run.run_dir, row)
        if board is not None:
            log_epoch(board, row)
        _log.info(_format_row(row, run.cfg.train.epochs))


def _save(run: _Run, state: dict | None, epoch: int) -> int:
    """Write the epoch's checkpoints (rank 0) and wait for them on every rank; the epoch now saved."""
    if run.main:
        _write(state, run.cfg, run.run_dir)
    dist.barrier()
    return epoch


def _cpu_copy(value):
    """``value`` with every tensor copied to the CPU: a snapshot that later optimizer steps do not touch."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {k: _cpu_copy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_cpu_copy(v) for v in value)
    return copy.deepcopy(value)


def _write(state: dict, cfg: ExperimentConfig, run_dir: Path) -> None:
    """``state`` as checkpoints/last.pt, and as epoch_NNNN.pt when its epoch is kept (rank 0)."""
    if state["epoch"] in cfg.train.checkpoint_epochs:
        save_checkpoint(state, epoch_checkpoint_path(run_dir, state["epoch"]))
    save_checkpoint(state, last_checkpoint_path(run_dir))


def _due(t, epoch: int) -> bool:
    """Whether ``epoch`` writes checkpoints: a kept epoch, the last, or every ``train.checkpoint_every``."""
    periodic = t.checkpoint_every > 0 and epoch % t.checkpoint_every == 0
    return epoch in t.checkpoint_epochs or epoch == t.epochs or periodic


def _save_on_interrupt(
    err: KeyboardInterrupt, state: dict | None, saved: int, cfg: ExperimentConfig, run_dir: Path
) -> None:
    """The last finished epoch's checkpoint when it is newer than the last one written, and where to go on."""
    what = signal.Signals(err.signum).name if isinstance(err, TrainingInterrupted) else "interrupted"
    resume = f"mixcollapse train --out {run_dir} --resume"
    if state is None:
        _log.warning(
            f"[train] {what}: stopped before the first epoch ended; nothing to save ({resume} starts it "
            "from the beginning)"
        )
        return
    if state["epoch"] > saved:
        with deferred_signals():  # a second Ctrl-C waits for the write; the previous last.pt stays until replaced
            rows = read_metrics(run_dir)
            if not rows or rows[-1]["epoch"] < state["epoch"]:  # stopped between the snapshot and its metrics line
                append_metrics(run_dir, state["metrics"])
            _write(state, cfg, run_dir)
    _log.warning(
        f"[train] {what}: stopped; epoch {state['epoch']} of {cfg.train.epochs} is saved in "
        f"{last_checkpoint_path(run_dir)}; continue with: {resume}"
    )


CPU_WARNING_SECONDS = 3600.0  # a run projected to take longer than this on a CPU gets one line saying so


def _cpu_time_check(cfg: ExperimentConfig, steps: int, epoch: int) -> Callable[[int, float], None]:
    """A train_one_epoch hook: after a few steps, one warning line when the run would take over an hour on this CPU."""

    def check(step: int, seconds: float) -> None:
        if step != min(3, steps):
            return
        per_epoch = seconds / step * steps
        remaining = per_epoch * (cfg.train.epochs - epoch + 1)
        if remaining > CPU_WARNING_SECONDS:
            left = cfg.train.epochs - epoch + 1
            _log.warning(
                f"[train] on this CPU an epoch takes about {_duration(per_epoch)} ({seconds / step:.1f} s per batch "
                f"of {cfg.train.batch_size}), the {left} epochs left about {_duration(remaining)}: this config is "
                "sized for a GPU; on a CPU use a smaller scale (e.g. --preset wrn-fashionmnist-cpu, or fewer "
                "train.epochs and data.train_limit)"
            )

    return check


def _duration(seconds: float) -> str:
    for unit, size in (("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


def _start_line(run: _Run, start: int) -> str:
    cfg, t, device = run.cfg, run.cfg.train, run.device
    what = f"resuming after epoch {start}" if start else "starting"
    how = f"{'bf16 autocast' if t.amp == 'bf16' else 'float32'}{', channels_last' if t.channels_last else ''}"
    if device.type == "cpu":
        how += f", {torch.get_num_threads()} torch thread{'s' if torch.get_num_threads() > 1 else ''}"
    return f"[train] {what}: {cfg.name} -> {run.run_dir} on {device} x{run.world} ({how})"


def _board(cfg: ExperimentConfig, run_dir: Path, start: int):
    """The run's TensorBoard writer (events after epoch ``start`` purged), with its hyper-parameters on a new run."""
    board = open_board(run_dir, start)
    if start == 0:
        log_hparams(board, to_dict(cfg))
    return board
