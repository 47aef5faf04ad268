"""Analysis of one trained run: mixup pairs -> features -> projection -> figures and numbers.

Reads a run directory (its config and a checkpoint), never the training loop's state.
Output, by default under ``RUN/analysis/<checkpoint name>/``:
``features/`` (see analysis.extract), ``figures/configuration.{png,pdf}`` and ``analysis.json``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from mixcollapse.analysis.configuration import configuration_metrics
from mixcollapse.analysis.extract import extract_pair_features, mixup_training_batches
from mixcollapse.analysis.projection import project_classifier, project_features
from mixcollapse.checkpoint import find_checkpoint, load_model
from mixcollapse.config import _merge, _nest, parse_override, validate
from mixcollapse.data import build_datasets, train_labels
from mixcollapse.dist import pick_device
from mixcollapse.mixup import choose_classes, make_pairs
from mixcollapse.plots import configuration_figure

ANALYSIS_FILE = "analysis.json"


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
) -> dict:
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
    feats = extract_pair_features(
        model, plain.train, pairs, out_dir / "features", bn_mode=a.bn_mode, train_batches=batches,
        recalibrate_batches=a.recalibrate_batches, batch_size=a.batch_size, device=torch_device,
        num_workers=cfg.data.num_workers, progress=progress, overwrite=True,
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
    metrics = configuration_metrics(
        features=np.asarray(feats.features), logits=np.asarray(feats.logits), lam=feats.lam,
        class_a=feats.pairs.class_a, class_b=feats.pairs.class_b, W=feats.classifier_weight,
    )
    summary = {
        "run_dir": str(run_dir),
        "checkpoint": str(ckpt_path),
        "classes": list(map(int, classes)),
        "bn_mode": feats.meta["bn_mode"],
        "num_pairs": len(pairs),
        "features": str(feats.path),
        "figures": [str(p) for p in figure],
        "projection": {"xy_file": None, "center": "mean of the extracted features"},
        **{k: v for k, v in metrics.items()},
    }
    tmp = out_dir / f".{ANALYSIS_FILE}.tmp"
    tmp.write_text(json.dumps(summary, indent=2, default=_json_default))
    os.replace(tmp, out_dir / ANALYSIS_FILE)
    summary["_xy"] = xy
    summary["_feats"] = feats
    return summary


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(type(obj).__name__)
