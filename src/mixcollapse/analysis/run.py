"""A run directory's checkpoint through ``measure_model``: ``mixcollapse analyze RUN``.

Loads the model and its resolved config from the checkpoint, builds the run's datasets, and adds
the run's per-epoch classifier geometry (metrics.jsonl, Figure 5) to the figures and the JSON.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection
from dataclasses import asdict
from pathlib import Path

import torch

from mixcollapse.analysis.extract import has_batchnorm, mixup_training_batches
from mixcollapse.analysis.measure import ANALYSIS_FILE, MEASURES_BY_LOSS, Analysis, load_analysis, measure_model
from mixcollapse.analysis.ufm import DEFAULT_UFM_WEIGHT_DECAY
from mixcollapse.catalog import title as dataset_title
from mixcollapse.config import apply_overrides, model_label, training_label
from mixcollapse.data.datasets import build_datasets
from mixcollapse.files import check_output_folder
from mixcollapse.machine import pick_device
from mixcollapse.training.board import BOARD_DIR, log_image
from mixcollapse.training.checkpoint import find_checkpoint, load_model
from mixcollapse.training.rundir import read_metrics


def describe_data(bundle, cfg) -> str:
    """``FashionMNIST (real data, first 2,000 training images)``, ``CIFAR10 (SYNTHETIC files, ...)``: for titles."""
    kind = "SYNTHETIC files, not the real data" if bundle.synthetic else \
        "embedded" if bundle.name == "digits" else "real data"
    title = dataset_title(bundle.name)
    if cfg.data.train_limit is not None:
        kind += f", first {len(bundle.train):,} training images"
    return f"{title} ({kind})"


_log = logging.getLogger(__name__)


def _checkpoint_epoch(path: Path) -> int | None:
    try:  # mmap: reads the small entries, not the weights
        return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["epoch"])
    except Exception:  # noqa: BLE001 - only a figure annotation depends on it
        return None


def analyze_run(
    run_dir: str | Path,
    *,
    checkpoint: str | Path | None = None,
    out_dir: str | Path | None = None,
    data_root: str | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    overwrite: bool = False,
    device: str = "auto",
    progress: bool = True,
    draw: bool | Collection[str] = True,
    threads: int | None = None,
) -> Analysis:
    """Measure a run's checkpoint with ``measure_model``: output under ``RUN/analysis/<name>/``.

    ``<name>`` is the checkpoint's name (``last``, ``epoch_0100``), followed by ``_classes-a-b-c`` when
    ``analysis.classes`` is overridden, so analyses of other class subsets sit side by side. Loads the
    model and its resolved config from the checkpoint, builds the run's datasets (un-augmented for
    pairs and NC; augmented mixup batches for batch-norm recalibration, as trained), and adds the run's
    per-epoch classifier geometry (metrics.jsonl) to the figures and JSON. An analysis already in the output
    folder, made with the same checkpoint and settings, is read back instead of measured again (``overwrite``
    measures anew; other settings without it are an error). lambda_H of the UFM defaults
    to the run's train.weight_decay. ``threads``: torch threads on a CPU (default: the run's
    ``train.threads`` when set, else torch's default).
    """
    run_dir = Path(run_dir)
    ckpt_path = find_checkpoint(run_dir, checkpoint)
    torch_device = pick_device(device)
    model, cfg = load_model(ckpt_path, device=torch_device)
    if data_root is not None:
        cfg.data.root = data_root
    trained_classes = cfg.analysis.classes
    apply_overrides(cfg, overrides, allowed=("analysis.", "data.root", "data.num_workers"))
    threads = threads if threads is not None else cfg.train.threads
    if threads and torch_device.type == "cpu":
        torch.set_num_threads(threads)
    name = ckpt_path.stem
    if cfg.analysis.classes is not None and cfg.analysis.classes != trained_classes:
        name += "_classes-" + "-".join(str(c) for c in cfg.analysis.classes)
    out_dir = check_output_folder(out_dir if out_dir is not None else run_dir / "analysis" / name)
    a = cfg.analysis
    if a.ufm_weight_decay is None:
        a.ufm_weight_decay = cfg.train.weight_decay if cfg.train.weight_decay > 0 else DEFAULT_UFM_WEIGHT_DECAY
    settings = {"checkpoint": str(ckpt_path), **asdict(a)}
    if (out_dir / ANALYSIS_FILE).exists() and not overwrite:
        return _finished(out_dir, settings)
    plain = build_datasets(cfg.data, train_augment=False)
    batches = None
    if a.bn_mode in ("recalibrate", "train") and has_batchnorm(model):
        augmented = build_datasets(cfg.data, train_augment=None)
        batches = mixup_training_batches(augmented.train, plain.num_classes, cfg.mixup.alpha, cfg.train.batch_size,
                                         seed=a.seed)
    rows = None
    if run_dir.is_dir() and (run_dir / "metrics.jsonl").exists():
        rows = [r for r in read_metrics(run_dir) if "classifier_norm_cv" in r] or None
    label = f"{model_label(cfg)} · {training_label(cfg)}\n{describe_data(plain, cfg)}, {cfg.train.epochs} epochs"
    result = measure_model(
        model, plain.train, plain.test, out_dir=out_dir, settings=a, alpha=cfg.mixup.alpha,
        class_names=plain.class_names, mix_batches=batches, metrics_rows=rows,
        checkpoint_epoch=_checkpoint_epoch(ckpt_path), title=label,
        meta={"run_dir": str(run_dir), "checkpoint": str(ckpt_path), "dataset": cfg.data.name,
              "data_source": plain.source, "synthetic_data": plain.synthetic, "training": training_label(cfg),
              "loss": cfg.train.loss, "measures_for_this_loss": list(MEASURES_BY_LOSS[cfg.train.loss]),
              "analysis_settings": settings},
        device=torch_device, num_workers=cfg.data.num_workers, draw=draw, overwrite=True, progress=progress,
    )
    if cfg.train.tensorboard:
        _board_image(run_dir, name, result.summary, _checkpoint_epoch(ckpt_path))
    return result


def _finished(out_dir: Path, settings: dict) -> Analysis:
    """The analysis already in ``out_dir``, read back, when it was made with ``settings``; else say what to do."""
    saved = json.loads((out_dir / ANALYSIS_FILE).read_text()).get("analysis_settings")
    settings = json.loads(json.dumps(settings))  # as analysis.json holds them (tuples become lists)
    if saved is not None and saved != settings:
        diffs = "; ".join(f"{k}: {saved.get(k)!r} -> {v!r}" for k, v in settings.items() if saved.get(k) != v)
        raise FileExistsError(f"{out_dir} holds an analysis made with other settings ({diffs}); pass --overwrite "
                              "(overwrite=True) to replace it or choose another --out (out_dir=...)")
    _log.info(f"[analyze] {out_dir} already holds this analysis; its results (--overwrite measures again):")
    return load_analysis(out_dir)


def _board_image(run_dir: Path, name: str, summary: dict, epoch: int | None) -> None:
    """The configuration figure into the run's TensorBoard events at the checkpoint's epoch (when it was drawn)."""
    pngs = [p for p in summary.get("figure_files", {}).get("configuration", []) if p.endswith(".png")]
    if not pngs or epoch is None:
        return
    try:
        log_image(run_dir, f"configuration/{name}", pngs[0], epoch)
    except OSError as err:  # a run folder we may not write to: the analysis itself is complete
        _log.warning(f"[analyze] the configuration was not added to {run_dir / BOARD_DIR}: {err}")
