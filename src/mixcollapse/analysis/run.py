"""A run directory's checkpoint through ``measure_model``: ``mixcollapse analyze RUN``.

Loads the model and its resolved config from the checkpoint, builds the run's datasets, and adds
the run's per-epoch classifier geometry (metrics.jsonl, Figure 5) to the figures and the JSON.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Collection, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from mixcollapse.analysis.extract import has_batchnorm
from mixcollapse.analysis.measure import (
    ANALYSIS_FILE,
    MEASURES_BY_LOSS,
    Analysis,
    Report,
    Training,
    load_analysis,
    measure_model,
)
from mixcollapse.analysis.ufm import DEFAULT_UFM_WEIGHT_DECAY
from mixcollapse.catalog import get_spec
from mixcollapse.catalog import title as dataset_title
from mixcollapse.config import ExperimentConfig, apply_overrides, model_label, training_label
from mixcollapse.data.datasets import DataBundle, build_datasets
from mixcollapse.files import check_output_folder
from mixcollapse.machine import pick_device
from mixcollapse.mixing import Mixing, build_mixing
from mixcollapse.training.board import BOARD_DIR, log_image
from mixcollapse.training.checkpoint import load_trained
from mixcollapse.training.rundir import read_metrics


def describe_data(bundle, cfg) -> str:
    """``FashionMNIST (real data, first 2,000 training images)``, ``CIFAR10 (SYNTHETIC files, ...)``: for titles."""
    kind = (
        "SYNTHETIC files, not the real data"
        if bundle.synthetic
        else "embedded"
        if bundle.name == "digits"
        else "real data"
    )
    title = dataset_title(bundle.name)
    if cfg.data.train_limit is not None:
        kind += f", first {len(bundle.train):,} training images"
    return f"{title} ({kind})"


_log = logging.getLogger(__name__)


@dataclass
class RunData:
    """A run's data as its analyses read it: the datasets without augmentation (``plain``), the run's mixing
    method, and mixed training batches drawn as the run trained (its augmentation and mixing) for batch-norm
    recalibration."""

    plain: DataBundle
    mixing: Mixing
    batches: Iterator[torch.Tensor] | None


def run_data(cfg: ExperimentConfig, batches: bool = True) -> RunData:
    """:class:`RunData` of ``cfg`` (``batches=False``: no mixed batches); one set-up for analyses and trajectories."""
    plain, mixing = build_datasets(cfg.data, train_augment=False), build_mixing(cfg.mixing)
    if not batches:
        return RunData(plain, mixing, None)
    augments = cfg.data.augment and get_spec(cfg.data.name).augmentable
    train = build_datasets(cfg.data, train_augment=True).train if augments else plain.train
    return RunData(plain, mixing, mixing.batches(train, plain.num_classes, cfg.train.batch_size, cfg.analysis.seed))


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
    ``analysis.classes`` is overridden, so analyses of other class subsets sit side by side. Reads the
    model and its resolved config from the checkpoint, the run's data (:func:`run_data`) and its per-epoch
    classifier geometry (metrics.jsonl, Figure 5). An analysis already in the output folder, made with
    the same checkpoint and settings, is read back instead of measured again (``overwrite`` measures
    anew; other settings without it are an error). lambda_H of the UFM defaults to the run's
    train.weight_decay. ``threads``: torch threads on a CPU (default: the run's ``train.threads`` when set).
    """
    run_dir = Path(run_dir)
    torch_device = pick_device(device)
    trained = load_trained(run_dir, device=torch_device, checkpoint=checkpoint)
    cfg = _analysis_config(trained.config, data_root, overrides)
    threads = threads if threads is not None else cfg.train.threads
    if threads and torch_device.type == "cpu":
        torch.set_num_threads(threads)
    name = trained.path.stem
    if cfg.analysis.classes is not None and cfg.analysis.classes != trained.config.analysis.classes:
        name += "_classes-" + "-".join(str(c) for c in cfg.analysis.classes)
    if cfg.analysis.mix_layer:
        name += f"_layer-{cfg.analysis.mix_layer}"
    out_dir = check_output_folder(out_dir if out_dir is not None else run_dir / "analysis" / name)
    a = cfg.analysis
    settings = {"checkpoint": str(trained.path), **asdict(a)}
    if (out_dir / ANALYSIS_FILE).exists() and not overwrite:
        return _finished(out_dir, settings)
    data = run_data(cfg, batches=a.bn_mode in ("recalibrate", "train") and has_batchnorm(trained.model))
    report = _report(run_dir, trained.path, cfg, data.plain, settings, draw, progress)
    result = measure_model(
        trained.model,
        data.plain.train,
        data.plain.test,
        out_dir=out_dir,
        settings=a,
        device=torch_device,
        training=Training(data.mixing, data.batches, metrics_rows=_history(run_dir), checkpoint_epoch=trained.epoch),
        report=report,
        num_workers=cfg.data.num_workers,
        overwrite=True,
    )
    if cfg.train.tensorboard:
        _board_image(run_dir, name, result.summary, trained.epoch)
    return result


def _history(run_dir: Path) -> list[dict] | None:
    """The run's per-epoch classifier geometry (metrics.jsonl, Figure 5), when the run directory holds it."""
    if not (run_dir.is_dir() and (run_dir / "metrics.jsonl").exists()):
        return None
    return [r for r in read_metrics(run_dir) if "classifier_norm_cv" in r] or None


def _report(
    run_dir: Path,
    checkpoint: Path,
    cfg: ExperimentConfig,
    plain: DataBundle,
    settings: dict,
    draw: bool | Collection[str],
    progress: bool,
) -> Report:
    """How a run's analysis is reported: its title, and the run, data and settings in analysis.json."""
    meta = {
        "run_dir": str(run_dir),
        "checkpoint": str(checkpoint),
        "dataset": cfg.data.name,
        "data_source": plain.source,
        "synthetic_data": plain.synthetic,
        "training": training_label(cfg),
        "loss": cfg.train.loss,
        "measures_for_this_loss": list(MEASURES_BY_LOSS[cfg.train.loss]),
        "analysis_settings": settings,
    }
    title = f"{model_label(cfg)} · {training_label(cfg)}\n{describe_data(plain, cfg)}, {cfg.train.epochs} epochs"
    return Report(plain.class_names, title, meta, draw, progress)


def _analysis_config(cfg: ExperimentConfig, data_root: str | None, overrides) -> ExperimentConfig:
    """The run's config with the analysis overrides (``analysis.*``, where the data is) and the UFM's lambda_H."""
    cfg = copy.deepcopy(cfg)
    if data_root is not None:
        cfg.data.root = data_root
    apply_overrides(cfg, overrides, allowed=("analysis.", "data.root", "data.num_workers"))
    if cfg.analysis.ufm_weight_decay is None:
        cfg.analysis.ufm_weight_decay = (
            cfg.train.weight_decay if cfg.train.weight_decay > 0 else DEFAULT_UFM_WEIGHT_DECAY
        )
    return cfg


def _finished(out_dir: Path, settings: dict) -> Analysis:
    """The analysis already in ``out_dir``, read back, when it was made with ``settings``; else say what to do."""
    saved = json.loads((out_dir / ANALYSIS_FILE).read_text()).get("analysis_settings")
    settings = json.loads(json.dumps(settings))  # as analysis.json holds them (tuples become lists)
    if saved is not None and saved != settings:
        diffs = "; ".join(f"{k}: {saved.get(k)!r} -> {v!r}" for k, v in settings.items() if saved.get(k) != v)
        raise FileExistsError(
            f"{out_dir} holds an analysis made with other settings ({diffs}); pass --overwrite "
            "(overwrite=True) to replace it or choose another --out (out_dir=...)"
        )
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
