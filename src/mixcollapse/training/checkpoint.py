"""One checkpoint dict that resumes everything, written atomically; and loading a model for analysis.

Keys (format version 1)::

    format        "mixcollapse-checkpoint"
    version       1
    epoch         completed epochs (1-based count; the next run starts at this epoch + 1)
    model         state_dict of the unwrapped model (no DDP "module." prefix)
    model_args    {"num_classes", "in_channels", "image_size"}: with config["model"], rebuilds the model
    optimizer     optimizer state_dict
    scheduler     LambdaLR state_dict (its step count and the LRSchedule fields)
    rng           one entry per rank: {"torch", "cuda" (or None), "numpy" (the mixup Generator's
                  bit_generator.state), "python" (random.getstate())}
    loader        the single-process train loader's shuffling Generator state (None under DDP, where
                  DistributedSampler's order is a function of seed and epoch)
    world_size    number of processes that trained
    config        the resolved config dict (mixcollapse.config.to_dict)
    metrics       the last epoch's metrics row
    torch_version

No GradScaler: bf16 autocast does not need loss scaling. Loading uses ``torch.load(...,
weights_only=True)``: every entry is tensors and plain Python values.
"""

from __future__ import annotations

import pickle
import random
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mixcollapse.config import ConfigError, ExperimentConfig, config_from_dict
from mixcollapse.files import atomic_write
from mixcollapse.training.rundir import CHECKPOINT_DIR, LAST_CHECKPOINT

FORMAT = "mixcollapse-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint file is missing, foreign, of another format version, or damaged (one-line message)."""


def capture_rng(mixup_rng: np.random.Generator, device: torch.device | None = None) -> dict:
    """This process's random states: torch CPU, CUDA (of ``device``), the mixup Generator, ``random``."""
    cuda = None
    if device is not None and device.type == "cuda":
        cuda = torch.cuda.get_rng_state(device)
    return {
        "torch": torch.get_rng_state(),
        "cuda": cuda,
        "numpy": mixup_rng.bit_generator.state,
        "python": random.getstate(),
    }


def restore_rng(state: dict, mixup_rng: np.random.Generator, device: torch.device | None = None) -> None:
    """Inverse of ``capture_rng``."""
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and device is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)
    mixup_rng.bit_generator.state = state["numpy"]
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def build_checkpoint(
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    epoch: int,
    config: dict,
    model_args: dict,
    rng: list[dict],
    loader: torch.Tensor | None = None,
    metrics: dict | None = None,
) -> dict:
    """The checkpoint dict (see the module docstring); ``model`` must be unwrapped (no DDP)."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "epoch": int(epoch),
        "model": model.state_dict(),
        "model_args": dict(model_args),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "rng": rng,
        "loader": loader,
        "world_size": len(rng),
        "config": config,
        "metrics": metrics or {},
        "torch_version": str(torch.__version__),  # TorchVersion is not a weights_only type
    }


def save_checkpoint(state: dict, path: str | Path) -> Path:
    """Write ``state`` to ``path`` atomically: temp file in the same directory, fsync, os.replace.

    A failed or interrupted write leaves any previous file at ``path`` intact and no temp file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = _WriteErrors()
    try:
        return atomic_write(path, lambda f: torch.save(state, writer.wrap(f)))
    except RuntimeError:
        if writer.error is not None:  # torch reports a failed write as "unexpected pos ...": raise the cause
            raise writer.error from None
        raise


class _WriteErrors:
    """Remembers the OSError (ENOSPC, EIO, ...) a file's write raised, which torch's writer replaces by its own."""

    def __init__(self) -> None:
        self.error: OSError | None = None

    def wrap(self, f):
        outer = self

        class _File:
            def write(self, data) -> int:
                try:
                    return f.write(data)
                except OSError as err:
                    outer.error = outer.error or err
                    raise

            def flush(self) -> None:
                f.flush()

        return _File()


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Read and validate a checkpoint; CheckpointError with one line when it cannot be used."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} is not a file")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; its directory sits at the very end
        raise CheckpointError(f"checkpoint {path} cannot be read: not a complete torch archive (truncated or corrupt)")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        if "weights only" in str(err).lower():  # a pickle of arbitrary objects: none of ours
            raise CheckpointError(
                f"{path} is not a mixcollapse checkpoint (it holds arbitrary Python objects)"
            ) from None
        raise CheckpointError(f"checkpoint {path} cannot be read (truncated or corrupt: {_first_line(err)})") from None
    except (
        RuntimeError,
        EOFError,
        OSError,
        zipfile.BadZipFile,
        ValueError,
        AttributeError,
        KeyError,
        IndexError,
    ) as err:
        raise CheckpointError(f"checkpoint {path} cannot be read (truncated or corrupt: {_first_line(err)})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a mixcollapse checkpoint")
    if state.get("version") != VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {state.get('version')!r}; this mixcollapse reads version {VERSION}"
        )
    missing = [k for k in ("epoch", "model", "model_args", "config") if k not in state]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {', '.join(missing)} (truncated or corrupt)")
    return state


def _first_line(err: BaseException, limit: int = 160) -> str:
    text = " ".join(str(err).split())
    return text[:limit] or type(err).__name__


def find_checkpoint(run_dir_or_checkpoint: str | Path, checkpoint: str | Path | None = None) -> Path:
    """The checkpoint file meant by a run directory and an optional checkpoint name or path.

    ``find_checkpoint(RUN)`` -> RUN/checkpoints/last.pt; ``find_checkpoint(RUN, "epoch_0100")`` or
    ``"epoch_0100.pt"`` -> RUN/checkpoints/epoch_0100.pt; an existing file path is returned as is
    (as the first argument or as ``checkpoint``).
    """
    base = Path(run_dir_or_checkpoint)
    if checkpoint is None:
        if base.is_file():
            return base
        if not base.is_dir():
            raise CheckpointError(f"{base} is neither a run directory nor a checkpoint file")
        last = base / CHECKPOINT_DIR / LAST_CHECKPOINT
        if not last.is_file():
            raise CheckpointError(f"run directory {base} has no checkpoint yet ({last} is missing)")
        return last
    ckpt = Path(checkpoint)
    if ckpt.is_file():
        return ckpt
    folder = base / CHECKPOINT_DIR
    for candidate in (folder / ckpt.name, folder / f"{ckpt.name}.pt"):
        if candidate.is_file():
            return candidate
    known = ", ".join(sorted(p.name for p in folder.glob("*.pt"))) if folder.is_dir() else "none"
    raise CheckpointError(f"no checkpoint '{checkpoint}' in {folder} (available: {known})")


@dataclass(frozen=True)
class Trained:
    """A trained model rebuilt from its checkpoint, with the checkpoint's config, epoch and path."""

    model: nn.Module
    config: ExperimentConfig
    epoch: int
    path: Path


def load_trained(
    run_dir_or_checkpoint: str | Path, device: str | torch.device = "cpu", checkpoint: str | Path | None = None
) -> Trained:
    """Rebuild a trained model from a checkpoint (its own config and sizes), in eval mode, on ``device``.

    Needs neither the training loop nor the dataset's files. ``run_dir_or_checkpoint`` is a run
    directory (its last.pt, or ``checkpoint``) or a checkpoint file; the file is read once.
    """
    from mixcollapse.models import build_model  # models import timm; keep importing this module light

    path = find_checkpoint(run_dir_or_checkpoint, checkpoint)
    state = load_checkpoint(path, map_location="cpu")
    try:
        cfg = config_from_dict(state["config"])
    except ConfigError as err:
        raise CheckpointError(f"checkpoint {path} holds an invalid config ({err})") from None
    args = state["model_args"]
    model = build_model(cfg.model, int(args["num_classes"]), int(args["in_channels"]), int(args["image_size"]))
    load_weights(model, state["model"], path)
    return Trained(model.to(device).eval(), cfg, int(state["epoch"]), path)


def load_model(
    run_dir_or_checkpoint: str | Path, device: str | torch.device = "cpu", checkpoint: str | Path | None = None
) -> tuple[nn.Module, ExperimentConfig]:
    """The model and config of :func:`load_trained`."""
    trained = load_trained(run_dir_or_checkpoint, device, checkpoint)
    return trained.model, trained.config


def load_weights(model: nn.Module, weights: dict, path: str | Path) -> None:
    """``model.load_state_dict(weights)``; CheckpointError with one line when they do not fit the model."""
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:  # missing or unexpected keys, size mismatches: torch lists each on its own line
        detail = next((line.strip() for line in str(err).splitlines()[1:] if line.strip()), str(err).splitlines()[0])
        raise CheckpointError(
            f"checkpoint {path}: its weights do not fit the model its config describes ({detail}); "
            "the file was changed after training or belongs to another config"
        ) from None
