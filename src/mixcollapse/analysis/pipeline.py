"""Analysis of one trained run: mixup pairs -> features -> projection -> figures and numbers.

Reads a run directory (its config and a checkpoint), never the training loop's state.
Output, by default under ``RUN/analysis/<checkpoint name>/``:
``features/`` (see analysis.extract), ``figures/configuration.{png,pdf}`` and ``analysis.json``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import torch

from mixcollapse.analysis.configuration import ConfigurationAccumulator
from mixcollapse.analysis.extract import PairFeatures, extract_pair_features, mixup_training_batches
from mixcollapse.analysis.projection import project_classifier, project_features
from mixcollapse.checkpoint import find_checkpoint, load_model
from mixcollapse.config import _merge, _nest, parse_override, validate
from mixcollapse.data import build_datasets, train_labels
from mixcollapse.dist import pick_device
from mixcollapse.mixup import choose_classes, make_pairs
from mixcollapse.plots import configuration_figure

ANALYSIS_FILE = "analysis.json"


@dataclass
class Analysis:
    """What analyze_run produced: the saved summary, the projected points and the features."""

    summary: dict  # as written to analysis.json
    xy: np.ndarray  # (N, 2) projected features (Appendix B.2)
    features: PairFeatures


def _apply_analysis_overrides(cfg, overrides) -> None:
    for text in overrides:
        key, value = parse_override(text)
        if not key.startswith(("analysis.", "data.root", "data.num_workers")):
            raise ValueError(f"analyze takes analysis.* overrides only (and data.root), got '{key}'")
        _merge(cfg, _nest(key, value))
    validate(cfg)


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
) -> Analysis:
    """Extract mixup-pair features of a run's checkpoint, plot the configuration, measure it."""
    run_dir = Path(run_dir)
    ckpt_path = find_checkpoint(run_dir, checkpoint)
    torch_device = pick_device(device)
    model, cfg = load_model(ckpt_path, device=torch_device)
    if data_root is not None:
        cfg.data.root = data_root
    _apply_analysis_overrides(cfg, overrides)
    out_dir = Path(out_dir) if out_dir is not None else run_dir / "analysis" / ckpt_path.stem
    if (out_dir / ANALYSIS_FILE).exists() and not overwrite:
        raise FileExistsError(f"{out_dir} already holds an analysis; pass --overwrite to replace it or choose --out")

    a = cfg.analysis
    plain = build_datasets(cfg.data, train_augment=False)
    classes = a.classes if a.classes is not None else choose_classes(plain.num_classes, a.seed)
    pairs = make_pairs(train_labels(plain), classes, a.pairs_per_class_pair, a.lam, cfg.mixup.alpha,
                       a.grid_size, a.seed)
    needs_batches = a.bn_mode in ("recalibrate", "train")
    batches = None
    if needs_batches:
        augmented = build_datasets(cfg.data, train_augment=None)
        batches = mixup_training_batches(augmented.train, plain.num_classes, cfg.mixup.alpha,
                                         cfg.train.batch_size, seed=a.seed)
    config_acc = ConfigurationAccumulator(model.classifier.weight.detach(), _bias(model))
    feats = extract_pair_features(
        model, plain.train, pairs, out_dir / "features", bn_mode=a.bn_mode, train_batches=batches,
        recalibrate_batches=a.recalibrate_batches, batch_size=a.batch_size, device=torch_device,
        num_workers=cfg.data.num_workers, progress=progress, overwrite=True,
        callbacks=[lambda batch: _accumulate_configuration(config_acc, batch)],
        meta={"run_dir": str(run_dir), "checkpoint": str(ckpt_path), "classes": list(map(int, classes)),
              "class_names": [plain.class_names[c] for c in classes], "lam_mode": a.lam,
              "alpha": cfg.mixup.alpha, "seed": a.seed, "dataset": cfg.data.name},
    )
    rows = feats.classifier_weight[classes]
    xy = project_features(np.asarray(feats.features), rows, center=True)
    label = f"{cfg.model.name} · {cfg.data.name} · α={cfg.mixup.alpha:g}"
    figure = configuration_figure(
        [dict(xy=xy, lam=feats.lam, same=feats.same, classifier_xy=project_classifier(rows),
              title=f"{label}\nBN: {feats.meta['bn_mode']}", class_names=[plain.class_names[c] for c in classes])],
        out_dir / "figures" / "configuration",
    )
    metrics = _jsonable(config_acc.compute())
    summary = {
        "run_dir": str(run_dir),
        "checkpoint": str(ckpt_path),
        "classes": list(map(int, classes)),
        "bn_mode": feats.meta["bn_mode"],
        "num_pairs": len(pairs),
        "features": str(feats.path),
        "figures": [str(p) for p in figure],
        "projection_center": "mean of the extracted features",
        **metrics,
    }
    tmp = out_dir / f".{ANALYSIS_FILE}.tmp"
    tmp.write_text(json.dumps(summary, indent=2, default=_json_default))
    os.replace(tmp, out_dir / ANALYSIS_FILE)
    return Analysis(summary=json.loads(json.dumps(summary, default=_json_default)), xy=xy, features=feats)


def _bias(model) -> torch.Tensor | None:
    bias = model.classifier.bias
    return None if bias is None else bias.detach()


def _accumulate_configuration(acc: ConfigurationAccumulator, batch: dict) -> None:
    """Feed one extraction batch (tensors on the model's device) into the configuration sums."""
    pairs, device = batch["pairs"], batch["features"].device
    as_tensor = lambda a: torch.as_tensor(np.asarray(a), device=device)  # noqa: E731
    acc.accumulate(batch["features"], batch["logits"], as_tensor(pairs.lam), as_tensor(pairs.class_a),
                   as_tensor(pairs.class_b), as_tensor(pairs.same))


def _jsonable(metrics: dict) -> dict:
    """Scalars and per-bin lists for JSON; NaN becomes null."""
    out = {}
    for key, value in metrics.items():
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu().numpy()
        if isinstance(value, np.ndarray):
            if value.ndim > 1:
                continue  # matrices (e.g. same_class_means) stay out of the JSON summary
            value = [None if isinstance(v, float) and np.isnan(v) else v for v in value.tolist()]
        elif isinstance(value, float) and np.isnan(value):
            value = None
        out[key] = value
    return out


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(type(obj).__name__)
