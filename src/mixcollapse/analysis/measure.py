"""Measure a trained network: mixup-pair features, the configuration in numbers, NC, calibration, figures.

``measure_model`` works on any ``nn.Module`` with ``features(x) -> (B, d)`` and a final linear
``classifier`` (``mixcollapse.models.adapter.with_linear_head`` adapts others) and any datasets of
``(x, y)``; it needs no run directory. It is a short list of steps, each a function of its own:
prepare the network (batch norm) -> neural collapse (NC1-NC4, whose class means centre the
channels) -> pair features and the configuration's measures (Theorem 3.1's predictions, the UFM
distance) -> held-out calibration and mixed test pairs (Figure 4, Appendix C) -> the summary,
written to ``analysis.json`` with the figures. Everything is streamed, so memory does not grow
with the number of samples or pairs. What each number means and every decision behind it (batch
norm, centring, the UFM's weight decay) are in docs/analysis.md.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
import time
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from mixcollapse.analysis.configuration import ConfigurationAccumulator
from mixcollapse.analysis.extract import (
    NO_BATCHNORM,
    BatchNormPlan,
    Loading,
    PairFeatures,
    extract_pair_features,
    has_batchnorm,
    load_pair_features,
    recalibrate_batchnorm,
    write_pairs,
    write_projection,
)
from mixcollapse.analysis.heldout import make_test_pairs, measure_calibration, measure_mixed_pairs
from mixcollapse.analysis.neural_collapse import NeuralCollapse, measure_neural_collapse
from mixcollapse.analysis.ufm import DEFAULT_UFM_WEIGHT_DECAY, PairMeasures, ufm_solver
from mixcollapse.config import AnalysisConfig, check_analysis_classes
from mixcollapse.data.datasets import dataset_labels
from mixcollapse.files import atomic_write_text, check_output_folder
from mixcollapse.machine import pick_device
from mixcollapse.metrics.geometry import classifier_geometry
from mixcollapse.metrics.projection import project_classifier
from mixcollapse.mixing import HiddenPairs, Mixing
from mixcollapse.mixup import choose_classes, pair_chunks, pair_count
from mixcollapse.models.adapter import check_contract

_log = logging.getLogger(__name__)

ANALYSIS_FILE = "analysis.json"

# Top-level scalars of analysis.json: the headline of each section (``mixcollapse analyze`` prints them).
HEADLINE = {
    "configuration": (
        "pair_prob_mae",
        "pair_mass",
        "other_logit_spread",
        "same_cos_mean",
        "same_cos_in_span",
        "offspan_energy",
        "same_cos_lambda_spread",
        "logit_position_mae",
        "channel_position_mae",
        "channel_middle_density_ratio",
        "off_channel_distance",
        "ufm_distance",
    ),
    "neural_collapse": ("nc1", "nc2_norm_cv", "nc2_etf_distance", "nc3", "nc4_agreement"),
    "calibration": ("test_accuracy", "ece", "mce"),
    "test_pairs": ("test_pair_confidence", "test_pair_error"),
    "classifier": ("classifier_norm_cv", "classifier_cos_std", "classifier_etf_distance"),
}


# Which headline measures mean something for which training loss (README: "Which measure for which loss").
# Softmax probabilities and the UFM (a cross-entropy model) say nothing about an MSE network, whose logits
# regress onto the mixed target; the geometry of the features applies to both.
MEASURES_BY_LOSS = {
    "ce": (
        "pair_prob_mae",
        "pair_mass",
        "other_logit_spread",
        "same_cos_mean",
        "same_cos_in_span",
        "offspan_energy",
        "channel_middle_density_ratio",
        "ufm_distance",
    ),
    "mse": (
        "logit_position_mae",
        "channel_position_mae",
        "off_channel_distance",
        "same_cos_mean",
        "same_cos_in_span",
        "offspan_energy",
        "channel_middle_density_ratio",
    ),
}


def headline_table(summary: dict) -> str:
    """A short plain-text report of one analysis: the classes, the headline numbers by section, the figures."""
    named = ", ".join(f"{c} ({n})" for c, n in zip(summary["classes"], summary["class_names"], strict=True))
    lines = [f"classes: {named}; {summary['num_pairs']} mixup pairs; batch norm: {summary['bn_mode']}"]
    for section, keys in HEADLINE.items():
        cells = [f"{k} {_number(summary.get(k))}" for k in keys if summary.get(k) is not None]
        if cells:
            lines.append(f"{section + ':':<17}" + "  ".join(cells))
    figures = summary.get("figure_files", {})
    if figures:
        main = [paths[0] for paths in figures.values() if paths]
        lines.append(f"figures: {main[0]} (+{len(main) - 1} more in {Path(main[0]).parent})")
    return "\n".join(lines)


def _number(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


@dataclass
class Analysis:
    """What measure_model / analyze_run produced: the saved summary, the projected points and the features."""

    summary: dict  # as written to analysis.json
    xy: np.ndarray  # (N, 2) projected features (Appendix B.2), memory-mapped from the features directory
    features: PairFeatures


@dataclass
class Network:
    """The one network state every measurement of an analysis uses (docs/analysis.md, batch norm)."""

    net: nn.Module  # unmixed training data, test data, mixed test pairs (eval mode)
    pair_net: nn.Module  # the mixup pairs, extracted in ``pair_mode``
    pair_mode: str  # extract_pair_features' bn_mode
    batches: Iterable[Tensor] | None  # mixed training batches (recalibration, train-mode filler)
    bn: dict  # analysis.json's ``bn`` record


def prepare_network(
    model: nn.Module,
    train_dataset,
    settings: AnalysisConfig,
    mixing: Mixing,
    mix_batches: Iterable[Tensor] | None = None,
    mix_batch_size: int = 128,
    device: str | torch.device = "cpu",
) -> Network:
    """Step 1: the network state of ``settings.bn_mode`` (recalibrate: a copy with statistics of mixup batches)."""
    batchnorm = has_batchnorm(model)
    bn = _bn_record(model, settings.bn_mode, settings.recalibrate_batches)
    batches = None
    if batchnorm and settings.bn_mode in ("recalibrate", "train"):
        num_classes = model.classifier.weight.shape[0]
        batches = (
            mix_batches
            if mix_batches is not None
            else mixing.batches(train_dataset, num_classes, mix_batch_size, seed=settings.seed)
        )
    if batchnorm and settings.bn_mode == "recalibrate":
        net = recalibrate_batchnorm(model, iter(batches), settings.recalibrate_batches, device)
        return Network(net, net, "eval", batches, bn)  # extracted in eval mode, recorded as recalibrate
    return Network(model, model, settings.bn_mode, batches, bn)


@dataclass
class Measuring:
    """What the steps of one measure_model call share: the model and the network state it is measured in, its
    training data, the analysis classes and their names, the settings, how the model was trained, the output."""

    model: nn.Module
    network: Network
    train_dataset: object
    classes: list[int]
    names: list[str]
    settings: AnalysisConfig
    training: Training
    out_dir: Path
    loader_args: dict  # batch_size, device, num_workers, progress
    meta: dict | None = None

    @property
    def weight_decay(self) -> float:
        """lambda_H of the UFM the features are compared with."""
        decay = self.settings.ufm_weight_decay
        return decay if decay is not None else DEFAULT_UFM_WEIGHT_DECAY


def measure_pairs(m: Measuring, nc: NeuralCollapse) -> tuple[PairFeatures, dict]:
    """Step 3: the mixup pairs of the classes through the network into features on disk and the configuration.

    The pairs are drawn in chunks onto disk (memory does not grow with their number), streamed
    through the network, the configuration accumulator and the UFM solver; returns the features
    and the ``configuration`` section of analysis.json.
    """
    a, W, classes, mixing = m.settings, m.model.classifier.weight.detach(), m.classes, m.training.mixing
    if a.mix_layer > 0:  # the pairs mixed at a hidden layer (their lambdas are the drawn ones: a blend)
        mixing = HiddenPairs(a.mix_layer, mixing)
    pair_dir = m.out_dir / ".pairs.partial"
    shutil.rmtree(pair_dir, ignore_errors=True)
    chunks = pair_chunks(dataset_labels(m.train_dataset), classes, a.pairs_per_class_pair, a.lam,
                         mixing.pair_alpha, a.grid_size, a.seed)  # fmt: skip
    shape = tuple(m.train_dataset[0][0].shape)
    chunks = (dataclasses.replace(c, lam=mixing.pair_lambdas(c.lam, shape)) for c in chunks)
    pairs = write_pairs(pair_dir, chunks, pair_count(len(classes), a.pairs_per_class_pair))
    solver, solver_note = ufm_solver()
    bias = m.model.classifier.bias
    acc = ConfigurationAccumulator(W, None if bias is None else bias.detach(), centres=nc.means - nc.global_mean)
    bn = m.network.bn
    extra = {"bn_mode": bn["pairs"], "recalibrate_batches": bn["recalibrate_batches"]} if has_batchnorm(m.model) else {}
    meta = {
        **(m.meta or {}),
        "classes": classes,
        "class_names": [m.names[c] for c in classes],
        "lam_mode": a.lam,
        "alpha": mixing.alpha,
        "mixing": m.training.mixing.describe(),
        "mix_layer": a.mix_layer,
        "seed": a.seed,
        **extra,
    }
    measure = PairMeasures(acc, W, solver, m.weight_decay, center=nc.global_mean, span_rows=W[classes])
    try:
        feats = extract_pair_features(
            m.network.pair_net,
            m.train_dataset,
            pairs,
            m.out_dir / "features",
            bn=BatchNormPlan(m.network.pair_mode, m.network.batches, a.recalibrate_batches),
            loading=Loading(**m.loader_args),
            mixing=mixing,
            callbacks=[measure],
            overwrite=True,
            meta=meta,
        )
    finally:
        shutil.rmtree(pair_dir, ignore_errors=True)  # the features directory holds a copy
    span = measure.compute()  # first: it flushes the last buffered pairs into the accumulator
    configuration = {**acc.compute(), **span}
    configuration.pop("same_class_means", None)
    configuration["feature_center"] = "global mean of the unmixed training features (subtracted before measuring)"
    configuration["ufm"] = {
        "weight_decay": m.weight_decay,
        "solver": solver_note,
        "bias": "ignored (the UFM has no classifier bias)" if bias is not None else "none",
    }
    return feats, configuration


def measure_heldout(m: Measuring, test_dataset, clock: _Clock | None = None) -> tuple[dict, dict | None]:
    """Step 4: calibration on the test set (Appendix C) and mixed test pairs of all classes (Figure 4)."""
    a, net = m.settings, m.network.net
    calibration = measure_calibration(net, test_dataset, m.model.classifier.weight.shape[0], **m.loader_args)
    if clock is not None:
        clock.lap("calibration")
    if a.test_pairs <= 0:
        return calibration, None
    tpairs = make_test_pairs(
        dataset_labels(test_dataset),
        a.test_pairs,
        lam_mode=a.lam,
        alpha=m.training.mixing.pair_alpha,
        grid_size=a.grid_size,
        seed=a.seed + 1,
    )
    mixing = m.training.mixing
    tpairs.lam = mixing.pair_lambdas(tpairs.lam, tuple(test_dataset[0][0].shape))
    test_pairs = measure_mixed_pairs(net, test_dataset, tpairs, mix=mixing.pair_images, **m.loader_args)
    test_pairs["classes"] = "all classes present in the test set"
    test_pairs["lam_mode"] = a.lam
    if clock is not None:
        clock.lap("test_pairs")
    return calibration, test_pairs


def classifier_section(W: Tensor, metrics_rows: Sequence[dict] | None = None) -> dict:
    """Figure 5's geometry of W at this checkpoint, with the run's per-epoch history when given."""
    classifier = classifier_geometry(W)
    if metrics_rows:
        classifier["history"] = {
            key: [row.get(key) for row in metrics_rows]
            for key in ("epoch", *(k for k in metrics_rows[-1] if k.startswith("classifier_")))
        }
    return classifier


def dataset_class_names(dataset, num_classes: int) -> list[str]:
    """The dataset's own class names (torchvision's ``classes``, through Subset and the toolkit's views), else
    the class indices as text."""
    while dataset is not None:
        names = getattr(dataset, "classes", None)
        if names is not None and len(names) == num_classes:
            return [str(n) for n in names]
        dataset = getattr(dataset, "dataset", None) or getattr(dataset, "base", None)
    return [str(c) for c in range(num_classes)]


def nc_subset(train_dataset, settings: AnalysisConfig):
    """The training samples neural collapse is measured on: all, or ``settings.nc_samples`` drawn with its seed."""
    n = len(train_dataset)
    if settings.nc_samples is None or settings.nc_samples >= n:
        return train_dataset
    chosen = np.sort(np.random.default_rng(settings.seed).choice(n, settings.nc_samples, replace=False))
    return torch.utils.data.Subset(train_dataset, chosen.tolist())


def resolve_classes(classes: Sequence[int] | None, settings: AnalysisConfig, num_classes: int) -> list[int]:
    """The three analysis classes: as given, else ``settings.classes``, else three drawn with ``settings.seed``."""
    if classes is None:
        classes = settings.classes if settings.classes is not None else choose_classes(num_classes, settings.seed)
    return check_analysis_classes(classes, num_classes)


def load_analysis(out_dir: str | Path) -> Analysis:
    """An analysis that ``measure_model`` wrote into ``out_dir``, read back (the big arrays memory-mapped)."""
    summary = json.loads((Path(out_dir) / ANALYSIS_FILE).read_text())
    features = Path(summary["features"])
    return Analysis(summary, np.load(features / "projection.npy", mmap_mode="r"), load_pair_features(features))


@dataclass(frozen=True)
class Training:
    """How the measured model was trained, which the analysis reproduces: its ``mixing`` method (the λ of the
    pairs, how a pair becomes an image; default mixup with α = 1), the mixed training ``mix_batches`` for
    batch-norm recalibration or train mode (default: drawn from the training set by ``mixing``,
    ``mix_batch_size`` at a time), and for Figure 5 the run's per-epoch ``metrics_rows`` (``classifier_*``
    keys of metrics.jsonl) up to ``checkpoint_epoch``."""

    mixing: Mixing = field(default_factory=Mixing)
    mix_batches: Iterable[Tensor] | None = None
    mix_batch_size: int = 128
    metrics_rows: Sequence[dict] | None = None
    checkpoint_epoch: int | None = None


@dataclass(frozen=True)
class Report:
    """How an analysis is reported: class names and a title for the figures, extra ``meta`` for analysis.json,
    which figures to ``draw`` (True, False, or names from plots.analysis.FIGURES), and a progress bar."""

    class_names: Sequence[str] | None = None
    title: str = ""
    meta: dict | None = None
    draw: bool | Collection[str] = True
    progress: bool = True


def measure_model(
    model: nn.Module,
    train_dataset,
    test_dataset=None,
    *,
    out_dir: str | Path,
    classes: Sequence[int] | None = None,
    settings: AnalysisConfig | None = None,
    training: Training = Training(),
    report: Report = Report(),
    device: str | torch.device = "auto",
    num_workers: int = 0,
    overwrite: bool = False,
) -> Analysis:
    """Measure ``model`` (``features(x)``, final linear ``classifier``) on its data; write analysis.json + figures.

    ``train_dataset``: un-augmented training samples ``(x, y)`` (pairs, NC); ``test_dataset`` (optional): test
    samples (calibration, mixed test pairs). ``classes``: the three analysis classes (default ``settings.classes``,
    else drawn with ``settings.seed``); ``settings``: AnalysisConfig. What is measured and how: docs/analysis.md.
    """
    check_contract(model)
    a = settings if settings is not None else AnalysisConfig()
    out_dir = _output_folder(out_dir, overwrite)
    device = pick_device(device)
    model = model.to(device)
    W = model.classifier.weight.detach()
    C = W.shape[0]
    names = list(report.class_names) if report.class_names is not None else dataset_class_names(train_dataset, C)
    loader_args = dict(batch_size=a.batch_size, device=device, num_workers=num_workers, progress=report.progress)
    clock = _Clock()
    network = prepare_network(
        model, train_dataset, a, training.mixing, training.mix_batches, training.mix_batch_size, device
    )
    clock.lap("recalibrate")
    chosen = resolve_classes(classes, a, C)
    m = Measuring(model, network, train_dataset, chosen, names, a, training, out_dir, loader_args, report.meta)
    out_dir.mkdir(parents=True, exist_ok=True)
    nc = measure_neural_collapse(network.net, nc_subset(train_dataset, a), C, scratch_dir=out_dir, **loader_args)
    clock.lap("neural_collapse")
    feats, configuration = measure_pairs(m, nc)
    clock.lap("pairs")
    calibration, test_pairs = measure_heldout(m, test_dataset, clock) if test_dataset is not None else (None, None)
    rows = feats.classifier_weight[m.classes]
    xy = write_projection(feats.path / "features.npy", rows, feats.path / "projection.npy")
    clock.lap("projection")
    sections = {"configuration": configuration, "neural_collapse": {**nc.metrics, "num_samples": int(nc.counts.sum())}}
    sections.update(
        calibration=calibration, test_pairs=test_pairs, classifier=classifier_section(W, training.metrics_rows)
    )
    return _finish(m, feats, xy, sections, report, clock)


def _finish(
    m: Measuring, feats: PairFeatures, xy: np.ndarray, sections: dict, report: Report, clock: _Clock
) -> Analysis:
    """Step 5: the figures, then analysis.json (written last: a folder holding it holds a finished analysis)."""
    figures = _draw(m.out_dir / "figures", xy, feats, m, sections, report)
    summary = summarize(sections, feats, m.classes, m.names, figures, m.network.bn, report.meta)
    clock.lap("figures")
    summary = to_json({**summary, "seconds": clock.laps})
    atomic_write_text(m.out_dir / ANALYSIS_FILE, json.dumps(summary, indent=2))
    return Analysis(summary=summary, xy=xy, features=feats)


def _output_folder(out_dir: str | Path, overwrite: bool) -> Path:
    """``out_dir``, checked before any work: a folder, and without an analysis unless ``overwrite``."""
    out_dir = check_output_folder(out_dir, "out_dir")
    if (out_dir / ANALYSIS_FILE).exists() and not overwrite:
        raise FileExistsError(
            f"{out_dir} already holds an analysis; pass overwrite=True to replace it or choose another out_dir"
        )
    return out_dir


def _draw(
    folder: Path, xy: np.ndarray, feats: PairFeatures, m: Measuring, sections: dict, report: Report
) -> dict[str, list[str]]:
    """The analysis's figures (``report.draw``), or none."""
    if not report.draw:
        return {}
    from mixcollapse.plots.analysis import AnalysisDrawing, draw_analysis  # matplotlib, plotly: only to draw

    only = {} if report.draw is True else {"only": tuple(report.draw)}
    classifier_xy = project_classifier(feats.classifier_weight[m.classes])
    drawing = AnalysisDrawing(
        xy,
        feats.pairs,
        classifier_xy,
        m.classes,
        m.names,
        report.title or "mixup pairs",
        m.network.bn["pairs"],
        to_json(sections),
        m.training.metrics_rows,
        m.training.checkpoint_epoch,
        m.settings.seed,
    )
    return draw_analysis(folder, drawing, **only)


def summarize(
    sections: dict,
    feats: PairFeatures,
    classes: list[int],
    names: Sequence[str],
    figures: dict[str, list[str]],
    bn: dict,
    meta: dict | None = None,
) -> dict:
    """Step 5: analysis.json's content: ``meta``, the headline scalars (HEADLINE), the sections, the bn record."""
    summary = {
        **(meta or {}),
        "classes": classes,
        "class_names": [names[c] for c in classes],
        "bn_mode": feats.meta["bn_mode"],
        "num_pairs": len(feats.pairs),
        "features": str(feats.path),
        "figures": [p for paths in figures.values() for p in paths],
        "figure_files": figures,
        "projection_center": "mean of the extracted features",
    }
    summary.update(_headline(sections))
    summary.update(sections)
    summary["bn"] = bn
    return summary


def _headline(sections: dict) -> dict:
    """The top-level scalars (HEADLINE), NaN/None where a section was skipped."""
    conf, cal, pairs, cls = (sections[k] for k in ("configuration", "calibration", "test_pairs", "classifier"))
    diff = pairs.get("different_class") if pairs else None
    values = {
        **{k: conf.get(k) for k in HEADLINE["configuration"]},
        **{k: sections["neural_collapse"].get(k) for k in HEADLINE["neural_collapse"]},
        "test_accuracy": cal["accuracy"] if cal else None,
        "ece": cal["ece"] if cal else None,
        "mce": cal["mce"] if cal else None,
        "test_pair_confidence": diff["mean_confidence"] if diff else None,
        "test_pair_error": diff["error_rate_overall"] if diff else None,
        "classifier_norm_cv": cls["norm_cv"],
        "classifier_cos_std": cls["cos_std"],
        "classifier_etf_distance": cls["etf_distance"],
    }
    return values


def to_json(value):
    """Plain JSON values: arrays and tensors to lists (matrices dropped), NaN/inf to null."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if isinstance(v, (np.ndarray, Tensor)) and np.ndim(v) > 1:
                continue  # matrices (class means, covariances) stay out of the JSON summary
            out[k] = to_json(v)
        return out
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return [to_json(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


class _Clock:
    """Wall seconds per phase, for the summary's ``seconds`` (where the time of an analysis goes)."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = round(now - self._last, 3)
        self._last = now
        _log.info(f"[analyze] {_STAGES.get(name, name)}: {self.laps[name]:.1f}s")


# What each timed stage of an analysis did, for its log line.
_STAGES = {
    "recalibrate": "network prepared (batch norm)",
    "neural_collapse": "neural collapse on the training data",
    "pairs": "mixup-pair features and the configuration",
    "calibration": "test-set calibration",
    "test_pairs": "mixed test pairs",
    "projection": "projection (Appendix B.2)",
    "figures": "figures and summary",
}


def _bn_record(model: nn.Module, mode: str, recalibrate_batches: int) -> dict:
    if not has_batchnorm(model):
        return {"pairs": NO_BATCHNORM, "unmixed": NO_BATCHNORM, "recalibrate_batches": None}
    unmixed = {
        "recalibrate": "recalibrate (the recalibrated copy, eval mode)",
        "eval": "eval (stored running statistics)",
        "train": "eval (stored running statistics; train-mode batch statistics are for pair extraction only)",
    }[mode]
    return {
        "pairs": mode,
        "unmixed": unmixed,
        "recalibrate_batches": recalibrate_batches if mode == "recalibrate" else None,
    }
