"""TensorBoard event files of a run: per-epoch scalars, the hyper-parameters, the analysed configurations.

Written through ``torch.utils.tensorboard`` into ``RUN/tensorboard/`` by rank 0 (``train.tensorboard``,
on by default); ``metrics.jsonl`` stays the source of truth and holds the same numbers. Watch runs
live with ``tensorboard --logdir runs/``. Tags: ``train/loss``, ``train/accuracy``, ``test/loss``,
``test/accuracy``, ``test/ece``, ``lr``, ``time/epoch_seconds`` and ``classifier/<measure>`` (Figure 5's
geometry), at step = epoch; the hyper-parameters in TensorBoard's HPARAMS tab with the test and
training numbers as its metrics; ``configuration/<analysis>`` images at the analysed checkpoint's
epoch (written by ``mixcollapse analyze``). A resumed run purges the events after its checkpoint,
as it truncates metrics.jsonl.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

BOARD_DIR = "tensorboard"
METRIC_TAGS = ("test/accuracy", "test/ece", "test/loss", "train/loss", "train/accuracy")
# metrics.jsonl key -> tag (classifier_* keys become classifier/*)
_TAGS = {
    "train_loss": "train/loss",
    "train_accuracy": "train/accuracy",
    "test_loss": "test/loss",
    "test_accuracy": "test/accuracy",
    "test_ece": "test/ece",
    "lr": "lr",
    "epoch_seconds": "time/epoch_seconds",
}
# The hyper-parameters shown (config keys, as section.key)
HPARAMS = (
    "data.name",
    "model.name",
    "model.depth",
    "model.width",
    "model.fixed_etf",
    "mixing.method",
    "mixing.alpha",
    "mixing.per_sample",
    "mixing.label_smoothing",
    "train.loss",
    "train.optimizer",
    "train.lr",
    "train.weight_decay",
    "train.momentum",
    "train.batch_size",
    "train.epochs",
    "train.schedule",
    "train.seed",
    "train.amp",
)


def open_board(run_dir: str | Path, purge_after: int = 0):
    """A SummaryWriter on ``run_dir/tensorboard``; events of epochs after ``purge_after`` (a resumed run's
    checkpoint) from earlier writers are dropped by TensorBoard."""
    from torch.utils.tensorboard import SummaryWriter  # imported only when a run writes event files

    return SummaryWriter(str(Path(run_dir) / BOARD_DIR), purge_step=purge_after + 1 if purge_after else None)


def epoch_scalars(row: dict) -> dict[str, float]:
    """The tags and values of one metrics.jsonl row (None, the epoch and the class count left out)."""
    out = {}
    for key, value in row.items():
        tag = _TAGS.get(key) or (f"classifier/{key[len('classifier_') :]}" if key.startswith("classifier_") else None)
        if tag is None or tag == "classifier/num_classes" or value is None:
            continue
        out[tag] = float(value)
    return out


def log_epoch(writer, row: dict) -> None:
    """One epoch's row as scalars at step = epoch, flushed (a live view shows it at once)."""
    for tag, value in epoch_scalars(row).items():
        writer.add_scalar(tag, value, row["epoch"])
    writer.flush()


def log_hparams(writer, config: dict) -> None:
    """The run's hyper-parameters (HPARAMS tab), with the per-epoch test and train scalars as its metrics."""
    from torch.utils.tensorboard.summary import hparams

    values = {}
    for key in HPARAMS:
        section, name = key.split(".")
        value = config.get(section, {}).get(name)
        if isinstance(value, (bool, int, float, str)):
            values[key] = value
    experiment, start, end = hparams(values, {tag: 0.0 for tag in METRIC_TAGS})
    for summary in (experiment, start, end):
        writer.file_writer.add_summary(summary)
    writer.flush()


def log_image(run_dir: str | Path, tag: str, png: str | Path, step: int) -> None:
    """A saved figure (PNG) as an image event of the run at ``step``."""
    from PIL import Image

    with Image.open(png) as image:
        pixels = np.asarray(image.convert("RGB"))
    writer = open_board(run_dir)
    try:
        writer.add_image(tag, pixels, step, dataformats="HWC")
    finally:
        writer.close()
