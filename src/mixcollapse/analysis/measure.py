"""Measure a trained network: mixup-pair features, the configuration in numbers, NC, calibration, figures.

``measure_model`` works on any ``nn.Module`` with ``features(x) -> (B, d)`` and a final linear
``classifier`` (wrap other models with ``with_linear_head``) and any datasets of ``(x, y)``; it
needs no run directory. ``analyze_run`` is a thin wrapper that loads a run's checkpoint and
config, builds its datasets and draws the run's classifier history (Figure 5) as well.
Everything is streamed: the pairs are drawn in chunks onto disk and read a batch at a time, the
network's outputs go through accumulators batch by batch, features and their projections to
files with plain writes (read back in chunks), so memory does not grow with the number of samples
or pairs. (Figures read the pairs' lambdas and classes for the points they draw.)

What is measured (``analysis.json``, sections below; top-level scalars are the headline numbers):

* ``neural_collapse``: NC1-NC4 on the unmixed training data (``neural_collapse.py``: one forward
  pass for the class means, a re-read of its features for the covariances).
* ``configuration``: the mixup pairs of the three analysis classes (``configuration.py``): same-
  class cosine with the class's classifier row and its spread across lambda; different-class
  p_a against lambda (pair_prob_mae, the curve), mass p_a + p_b on the pair, equality of the
  other logits (other_logit_spread, Theorem 3.1's K_lambda), position t along the channel between
  the class means of unmixed training features (the NC class means) and its density; and
  ufm_distance, the distance of the features to the optimum of the unconstrained features model
  for the network's own classifier, after the best scalar rescaling (with ufm_distance_in_span,
  the same for the features' component in the classifier's row space, and classifier_span_energy,
  the share of the features' energy in that space: the UFM optimum lies entirely in it).
* ``calibration``: ECE (torchmetrics, 15 bins), MCE, reliability diagram, accuracy on test data.
* ``test_pairs``: Figure 4 made measurable: confidence and misclassification against lambda of
  mixed test pairs over all classes (``heldout.py``).
* ``classifier``: Figure 5's geometry of W at this checkpoint (and, for a run, per epoch).

Decisions (recorded in the output's ``bn`` section):

* Batch norm. All measurements use one network state. ``recalibrate``: the running statistics of
  a copy are re-estimated once on mixup training batches (``extract.recalibrate_batchnorm``) and
  that copy, in eval mode, produces the pair features (extracted with bn_mode='eval', recorded
  as 'recalibrate'), the NC features, the test calibration and the mixed test pairs. ``eval``:
  the stored statistics throughout. ``train``: pair features with batch statistics of batches
  composed like training batches (the paper's choice); batch statistics with filler samples are
  a device for pair extraction only, so the unmixed training data, the test set and the mixed
  test pairs use the stored running statistics (eval mode), as the training's own evaluation does.
* Centring: features are measured after subtracting the global mean of the unmixed training
  features (NC2/NC3 centre the class means the same way, Appendix B.2 centres the plotted
  features): a ReLU network's features share a large common component that the classifier's
  bias absorbs and the UFM does not have. The logits are the network's own.
* Class centres of the channel position: the class means of unmixed training features.
* UFM distance: targets y = lam e_a + (1 - lam) e_b per pair; W = the network's classifier
  weight; the classifier bias is left out (the UFM of eq. 2 has none); lambda_H =
  ``analysis.ufm_weight_decay`` (default: the run's training weight decay; 1e-4, Appendix B.1's
  value, for ``measure_model`` without one). The optimum is solved as the pairs stream past, for
  buffers of up to 4096 pairs (fewer for wide features; one solve per distinct target;
  ``PairMeasures``), to a relative error of 1e-8 (``UFM_TOL``).
* Mixed test pairs: all classes (calibration concerns the whole classifier), lambda from the
  training distribution (Beta(1, 1) for a baseline), ``analysis.test_pairs`` pairs in all.
* Figures (``figures/``): configuration (PNG, PDF) and configuration.html (interactive),
  configuration_measures, reliability, confidence_by_lambda, classifier_geometry (Figure 5, runs
  only). Scatters show at most 100,000 (static) and 20,000 (HTML) randomly chosen pairs; every
  number uses all pairs.
"""

from __future__ import annotations

import functools
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from mixcollapse.analysis.configuration import ConfigurationAccumulator
from mixcollapse.analysis.extract import (
    NpyAppender,
    PairFeatures,
    extract_pair_features,
    has_batchnorm,
    iter_npy_rows,
    mixup_training_batches,
    recalibrate_batchnorm,
    write_pairs,
)
from mixcollapse.analysis.heldout import make_test_pairs, measure_calibration, measure_mixed_pairs
from mixcollapse.analysis.neural_collapse import measure_neural_collapse
from mixcollapse.config import AnalysisConfig, apply_overrides, model_label, training_label
from mixcollapse.data.datasets import SPECS, build_datasets
from mixcollapse.metrics.geometry import classifier_geometry
from mixcollapse.metrics.projection import project_classifier, projection_matrix
from mixcollapse.mixup import choose_classes, mixup_targets, pair_chunks, pair_count
from mixcollapse.plots.figures import (
    classifier_geometry_figure,
    confidence_by_lambda_figure,
    configuration_figure,
    configuration_measures_figure,
    reliability_figure,
)
from mixcollapse.plots.interactive import configuration_html
from mixcollapse.training.checkpoint import find_checkpoint, load_model
from mixcollapse.training.dist import pick_device
from mixcollapse.training.rundir import read_metrics

ANALYSIS_FILE = "analysis.json"
UFM_TOL = 1e-8  # relative error of the UFM optima the features are compared with
DEFAULT_UFM_WEIGHT_DECAY = 1e-4  # Appendix B.1's weight decay (WRN); used when no training config says otherwise
MAX_SCATTER_POINTS = 100_000  # static scatter: more points only hide each other; the numbers use all pairs
CHUNK_BYTES = 4 << 20  # float64 bytes per chunk when re-reading features from disk (4 MiB)

# Top-level scalars of analysis.json: the headline of each section (``mixcollapse analyze`` prints them).
HEADLINE = {
    "configuration": ("pair_prob_mae", "pair_mass", "other_logit_spread", "same_cos_mean", "same_cos_in_span",
                      "offspan_energy", "same_cos_lambda_spread", "logit_position_mae", "channel_position_mae",
                      "channel_middle_density_ratio", "off_channel_distance", "ufm_distance"),
    "neural_collapse": ("nc1", "nc2_norm_cv", "nc2_etf_distance", "nc3", "nc4_agreement"),
    "calibration": ("test_accuracy", "ece", "mce"),
    "test_pairs": ("test_pair_confidence", "test_pair_error"),
    "classifier": ("classifier_norm_cv", "classifier_cos_std", "classifier_etf_distance"),
}


# Which headline measures mean something for which training loss (README: "Which measure for which loss").
# Softmax probabilities and the UFM (a cross-entropy model) say nothing about an MSE network, whose logits
# regress onto the mixed target; the geometry of the features applies to both.
MEASURES_BY_LOSS = {
    "ce": ("pair_prob_mae", "pair_mass", "other_logit_spread", "same_cos_mean", "same_cos_in_span", "offspan_energy",
           "channel_middle_density_ratio", "ufm_distance"),
    "mse": ("logit_position_mae", "channel_position_mae", "off_channel_distance", "same_cos_mean", "same_cos_in_span",
            "offspan_energy", "channel_middle_density_ratio"),
}


@dataclass
class Analysis:
    """What measure_model / analyze_run produced: the saved summary, the projected points and the features."""

    summary: dict  # as written to analysis.json
    xy: np.ndarray  # (N, 2) projected features (Appendix B.2), memory-mapped from the features directory
    features: PairFeatures


class _LinearHead(nn.Module):
    """A model split at its final linear layer: features(x) is the model with that layer as identity."""

    def __init__(self, body: nn.Module, classifier: nn.Linear) -> None:
        super().__init__()
        self.body, self.classifier = body, classifier

    def features(self, x: Tensor) -> Tensor:
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.body(x))


def with_linear_head(model: nn.Module, head: str = "fc") -> nn.Module:
    """Give any model the toolkit's contract, ``features(x)`` and ``classifier``, by splitting off its head.

    ``head`` names the final ``nn.Linear`` as a dotted attribute path (torchvision ResNet: ``fc``;
    timm: ``head`` or ``head.fc``; torchvision ViT: ``heads.head``). Works when the head's input
    is the model's last-layer feature, i.e. the model ends with that layer. The model itself is
    not changed: the returned module holds a copy whose head is an identity, and the head.
    """
    import copy

    *parents, leaf = head.split(".")
    owner = model
    for name in parents:
        owner = getattr(owner, name)
    linear = getattr(owner, leaf)
    if not isinstance(linear, nn.Linear):
        raise ValueError(f"model.{head} is a {type(linear).__name__}, not the final nn.Linear; pass head=...")
    body = copy.deepcopy(model)
    body_owner = body
    for name in parents:
        body_owner = getattr(body_owner, name)
    setattr(body_owner, leaf, nn.Identity())
    return _LinearHead(body, copy.deepcopy(linear))


def _check_contract(model: nn.Module) -> None:
    if not callable(getattr(model, "features", None)) or not isinstance(getattr(model, "classifier", None), nn.Linear):
        raise ValueError("the model needs features(x) -> (B, d) and a final nn.Linear `classifier`; "
                         "wrap it with mixcollapse.analysis.measure.with_linear_head(model, head='fc')")


def dataset_labels(dataset) -> np.ndarray:
    """Int labels of a dataset in index order: its ``labels``/``targets`` or a TensorDataset's last tensor,
    else read sample by sample."""
    for name in ("labels", "targets"):
        labels = getattr(dataset, name, None)
        if labels is not None and len(labels) == len(dataset):
            return np.asarray(labels, dtype=np.int64)
    if isinstance(dataset, torch.utils.data.TensorDataset):
        return dataset.tensors[-1].cpu().numpy().astype(np.int64)
    return np.array([int(dataset[i][1]) for i in range(len(dataset))], dtype=np.int64)


def ufm_solver() -> tuple[Callable | None, str]:
    """The theory package's batched general UFM solver, or None with the reason.

    Solved to a relative error of UFM_TOL: the features it is compared with are float32 (7
    digits) and the distance is reported to a few digits, so tighter solves only cost time.
    """
    try:
        from mixcollapse.theory import optimal_features
    except ImportError as err:
        return None, f"unavailable: the general UFM solver (mixcollapse.theory.optimal_features) is missing ({err})"
    return functools.partial(optimal_features, tol=UFM_TOL), f"mixcollapse.theory.optimal_features (tol={UFM_TOL:g})"


class PairMeasures:
    """The extraction callback: batches of pairs into the configuration sums, with their UFM optimum.

    ``extract_pair_features(..., callbacks=[measure])`` then ``measure.flush()``. Batches are
    buffered up to ``buffer_rows`` pairs (bounded memory: O(buffer_rows (d + C)); by default at most
    4096 pairs and 32 MB per float64 array of features) and then measured
    together, because the UFM solver's cost per pair falls with the number of pairs it solves at
    once. For the buffered pairs, ``solver(W, Y, weight_decay)`` (the theory's ``optimal_features``)
    gives the UFM-optimal features for the mixup targets Y = lam e_a + (1 - lam) e_b and the
    classifier W (C, d), bias left out, solved once per distinct target (same-class pairs share
    theirs); ``solver=None`` skips the UFM distance. ``center`` (d,), optional, is subtracted from
    the features first (the pipeline passes the global mean of the unmixed training features);
    the logits are used as given.

    ``span_rows`` (k, d), optional: the classifier rows of the analysed classes, whose span is the
    plane of Appendix B.2's figure. Then ``same_cos_in_span`` = Avg over same-class pairs of
    cos(P h, w_a), P the projector onto that span (the cosine the figure shows), and
    ``offspan_energy`` = sum ||h - P h||^2 / sum ||h||^2 over all pairs (the share of the features
    that the figure does not show).
    """

    def __init__(self, acc: ConfigurationAccumulator, W: Tensor, solver: Callable | None, weight_decay: float,
                 center: Tensor | None = None, buffer_rows: int | None = None, span_rows: Tensor | None = None):
        # default: at most 4096 rows and 32 MB per float64 (rows, d) array
        if buffer_rows is None:
            buffer_rows = min(4096, max(512, (1 << 22) // W.shape[1]))
        self.acc, self.solver, self.weight_decay, self.buffer_rows = acc, solver, weight_decay, int(buffer_rows)
        self.W = W.detach().to(torch.float64)  # (C, d): the UFM's classifier, without the bias
        self.W_given = W.detach()  # in its own precision: the solver takes its rank at that precision
        eps = torch.finfo(W.dtype if W.dtype.is_floating_point else torch.float64).eps
        self.center = None if center is None else center.detach()
        self._buffer: list[tuple] = []
        self._rows = 0
        # Orthonormal basis (d, r) of the classifier's row space: the UFM optimum lies in it.
        _, S, Vh = torch.linalg.svd(self.W, full_matrices=False)
        self._span = Vh[S > S.max() * max(self.W.shape) * eps].T
        self._sums = torch.zeros(2, dtype=torch.float64, device=self.W.device)  # ||H||^2, ||H in span||^2
        self._rows_basis = None  # orthonormal (d, k) basis of span(span_rows)
        if span_rows is not None:
            self._rows_basis = torch.linalg.qr(span_rows.detach().to(self.W.device, torch.float64).T).Q
        self._plane = torch.zeros(4, dtype=torch.float64, device=self.W.device)  # sum cos, same count, off, total

    def __call__(self, batch: dict) -> None:
        pairs, H = batch["pairs"], batch["features"]
        device = H.device
        as_tensor = lambda a: torch.as_tensor(np.asarray(a), device=device)  # noqa: E731
        self._buffer.append((H.detach(), batch["logits"].detach(), as_tensor(pairs.lam), as_tensor(pairs.class_a),
                             as_tensor(pairs.class_b)))
        self._rows += len(H)
        if self._rows >= self.buffer_rows:
            self.flush()

    def flush(self) -> None:
        """Measure the buffered pairs (call once after the last batch)."""
        if not self._buffer:
            return
        H, logits, lam, a, b = (torch.cat(parts) for parts in zip(*self._buffer, strict=True))
        self._buffer, self._rows = [], 0
        if self.center is not None:
            H = H.to(torch.float64) - self.center.to(H.device, torch.float64)
        H64 = H.to(torch.float64)
        self._sums += torch.stack([(H64 * H64).sum(), ((H64 @ self._span.to(H.device)) ** 2).sum()]).to(self._sums)
        if self._rows_basis is not None:
            self._plane += self._plane_sums(H64, a, a == b).to(self._plane)
        H_opt = None
        if self.solver is not None:
            Y = mixup_targets(lam, a, b, self.W.shape[0])
            unique, inverse = torch.unique(Y, dim=0, return_inverse=True)
            H_opt = self.solver(self.W_given.to(H.device), unique, self.weight_decay)[inverse].to(torch.float64)
        self.acc.accumulate(H, logits, lam, a, b, a == b, H_opt=H_opt)

    def _plane_sums(self, H: Tensor, a: Tensor, same: Tensor) -> Tensor:
        """[sum of cos(P h, w_a) over same-class rows, their count, sum ||h - P h||^2, sum ||h||^2]."""
        Q = self._rows_basis.to(H.device)
        h_sq = (H * H).sum(1)
        in_sq = ((H @ Q) ** 2).sum(1)
        w_a = self.W.to(H.device)[a]
        # <P h, w_a> = <h, w_a> because w_a lies in the span.
        cos = (H * w_a).sum(1) / (in_sq.sqrt() * w_a.norm(dim=1)).clamp_min(torch.finfo(torch.float64).tiny)
        return torch.stack([torch.where(same, cos, 0.0).sum(), same.sum().to(H.dtype),
                            (h_sq - in_sq).clamp_min(0).sum(), h_sq.sum()])

    def compute(self) -> dict[str, float]:
        """classifier_span_energy = ||H P||^2 / ||H||^2 (P: projector onto W's row space, where the UFM
        optimum lies) and ufm_distance_in_span = min_s ||H P - s H*|| / ||H P||, the UFM distance of the
        part of the features that reaches the logits (NaN without the solver)."""
        self.flush()
        h_sq, span_sq = self._sums.tolist()
        dot, opt_sq = self.acc.ufm[0].item(), self.acc.ufm[1].item()
        in_span = math.sqrt(max(span_sq - dot**2 / opt_sq, 0.0) / span_sq) if opt_sq > 0 and span_sq > 0 else math.nan
        out = {"classifier_span_energy": span_sq / h_sq if h_sq > 0 else math.nan, "ufm_distance_in_span": in_span}
        if self._rows_basis is not None:
            cos_sum, n_same, off, total = self._plane.tolist()
            out["same_cos_in_span"] = cos_sum / n_same if n_same > 0 else math.nan
            out["offspan_energy"] = off / total if total > 0 else math.nan
        return out


def _project(features_file: Path, rows: np.ndarray, out_file: Path) -> np.ndarray:
    """Appendix B.2's projection of all features, centred by their mean, into ``out_file`` (N, 2).

    Two passes of plain chunked reads (the mean first, then the centred points, appended to
    ``out_file``), so memory does not grow with N; returns ``out_file`` memory-mapped.
    """
    P = projection_matrix(rows).T  # (d, 2)
    total, count = np.zeros(2), 0
    for block in iter_npy_rows(features_file, CHUNK_BYTES):
        total += (block.astype(np.float64) @ P).sum(axis=0)
        count += len(block)
    mean = total / max(count, 1)  # centring the features centres their projections
    out = NpyAppender(out_file, (count, 2), np.float64)
    with out:
        for block in iter_npy_rows(features_file, CHUNK_BYTES):
            out.append(block.astype(np.float64) @ P - mean)
    return np.load(out_file, mmap_mode="r")


def _to_json(value):
    """Plain JSON values: arrays and tensors to lists (matrices dropped), NaN/inf to null."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if isinstance(v, (np.ndarray, Tensor)) and np.ndim(v) > 1:
                continue  # matrices (class means, covariances) stay out of the JSON summary
            out[k] = _to_json(v)
        return out
    if isinstance(value, (list, tuple)):
        return [_to_json(v) for v in value]
    if isinstance(value, Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return [_to_json(v) for v in value.tolist()]
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


def _write_json(path: Path, obj: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2))
    os.replace(tmp, path)


def _bn_record(model: nn.Module, mode: str, recalibrate_batches: int) -> dict:
    if not has_batchnorm(model):
        none = "none (the model has no batch norm)"
        return {"pairs": none, "unmixed": none, "recalibrate_batches": None}
    unmixed = {
        "recalibrate": "recalibrate (the recalibrated copy, eval mode)",
        "eval": "eval (stored running statistics)",
        "train": "eval (stored running statistics; train-mode batch statistics are for pair extraction only)",
    }[mode]
    return {"pairs": mode, "unmixed": unmixed,
            "recalibrate_batches": recalibrate_batches if mode == "recalibrate" else None}


def measure_model(
    model: nn.Module,
    train_dataset,
    test_dataset=None,
    *,
    out_dir: str | Path,
    classes: Sequence[int] | None = None,
    settings: AnalysisConfig | None = None,
    alpha: float = 1.0,
    class_names: Sequence[str] | None = None,
    mix_batches: Iterable[Tensor] | None = None,
    mix_batch_size: int = 128,
    metrics_rows: Sequence[dict] | None = None,
    checkpoint_epoch: int | None = None,
    title: str = "",
    meta: dict | None = None,
    device: str | torch.device = "auto",
    num_workers: int = 0,
    draw: bool = True,
    overwrite: bool = False,
    progress: bool = True,
) -> Analysis:
    """Measure ``model`` (``features(x)``, final linear ``classifier``) on its data; write analysis.json + figures.

    ``train_dataset`` yields un-augmented training samples ``(x, y)`` (mixup pairs and NC are drawn
    from it), ``test_dataset`` (optional) test samples for calibration and the mixed test pairs.
    ``classes``: the three analysis classes (default ``settings.classes``, else three drawn with
    ``settings.seed``); ``settings``: the analysis knobs (``AnalysisConfig``: pairs, lambda mode,
    batch-norm mode, ufm_weight_decay, test_pairs, ...); ``alpha``: the training mixup alpha (the
    lambda distribution; 0 = a baseline). ``mix_batches``: mixed training batches for batch-norm
    recalibration or train mode (default: drawn from ``train_dataset`` with ``alpha``).
    ``metrics_rows``: per-epoch rows with ``classifier_*`` keys (metrics.jsonl) for Figure 5.
    ``draw=False`` skips the figures. See the module docstring for what is measured and how.
    """
    _check_contract(model)
    a = settings if settings is not None else AnalysisConfig()
    out_dir = Path(out_dir)
    if (out_dir / ANALYSIS_FILE).exists() and not overwrite:
        raise FileExistsError(f"{out_dir} already holds an analysis; pass --overwrite to replace it or choose --out")
    device = pick_device(device)
    model = model.to(device)
    W = model.classifier.weight.detach()
    C = W.shape[0]
    labels = dataset_labels(train_dataset)
    names = list(class_names) if class_names is not None else [str(c) for c in range(C)]
    if classes is None:
        classes = a.classes if a.classes is not None else choose_classes(C, a.seed)
    classes = [int(c) for c in classes]
    if len(classes) != 3 or len(set(classes)) != 3 or not all(0 <= c < C for c in classes):
        raise ValueError(f"classes={classes} must be three distinct class indices in 0..{C - 1}")
    weight_decay = a.ufm_weight_decay if a.ufm_weight_decay is not None else DEFAULT_UFM_WEIGHT_DECAY

    # One network state for every measurement (module docstring).
    clock = _Clock()
    batchnorm = has_batchnorm(model)
    bn = _bn_record(model, a.bn_mode, a.recalibrate_batches)
    batches = None
    if batchnorm and a.bn_mode in ("recalibrate", "train"):
        batches = mix_batches if mix_batches is not None else mixup_training_batches(
            train_dataset, C, alpha, mix_batch_size, seed=a.seed)
    if batchnorm and a.bn_mode == "recalibrate":
        net = recalibrate_batchnorm(model, iter(batches), a.recalibrate_batches, device)
        pair_net, pair_mode = net, "eval"  # the prepared copy; recorded as recalibrate below
    else:
        net, pair_net, pair_mode = model, model, a.bn_mode
    clock.lap("recalibrate")
    loader_args = dict(batch_size=a.batch_size, device=device, num_workers=num_workers, progress=progress)

    # Neural collapse on unmixed training data; its class means are the channel's centres.
    out_dir.mkdir(parents=True, exist_ok=True)
    nc = measure_neural_collapse(net, train_dataset, C, scratch_dir=out_dir, **loader_args)
    clock.lap("neural_collapse")

    # Mixup pairs of the three classes, drawn in chunks onto disk (memory does not grow with their
    # number), then streamed through the network and the configuration accumulator.
    pair_dir = out_dir / ".pairs.partial"
    shutil.rmtree(pair_dir, ignore_errors=True)
    pairs = write_pairs(
        pair_dir,
        pair_chunks(labels, classes, a.pairs_per_class_pair, a.lam, alpha, a.grid_size, a.seed),
        pair_count(len(classes), a.pairs_per_class_pair),
    )
    solver, solver_note = ufm_solver()
    bias = model.classifier.bias
    acc = ConfigurationAccumulator(W, None if bias is None else bias.detach(), centres=nc.means - nc.global_mean)
    extra = {"bn_mode": bn["pairs"], "recalibrate_batches": bn["recalibrate_batches"]} if batchnorm else {}
    measure = PairMeasures(acc, W, solver, weight_decay, center=nc.global_mean, span_rows=W[classes])
    try:
        feats = extract_pair_features(
            pair_net, train_dataset, pairs, out_dir / "features", bn_mode=pair_mode, train_batches=batches,
            recalibrate_batches=a.recalibrate_batches, overwrite=True, callbacks=[measure],
            meta={**(meta or {}), "classes": classes, "class_names": [names[c] for c in classes], "lam_mode": a.lam,
                  "alpha": alpha, "seed": a.seed, **extra},
            **loader_args,
        )
    finally:
        shutil.rmtree(pair_dir, ignore_errors=True)  # the features directory holds a copy
    span = measure.compute()  # flushes the last buffered pairs
    clock.lap("pairs")
    configuration = {**acc.compute(), **span}
    configuration.pop("same_class_means", None)
    configuration["feature_center"] = "global mean of the unmixed training features (subtracted before measuring)"
    configuration["ufm"] = {"weight_decay": weight_decay, "solver": solver_note,
                            "bias": "ignored (the UFM has no classifier bias)" if bias is not None else "none"}
    neural = {**nc.metrics, "num_samples": int(nc.counts.sum())}

    # Held-out data: calibration and Figure 4 on mixed test pairs.
    calibration = test_pairs = None
    if test_dataset is not None:
        calibration = measure_calibration(net, test_dataset, C, **loader_args)
        clock.lap("calibration")
        if a.test_pairs > 0:
            tpairs = make_test_pairs(dataset_labels(test_dataset), a.test_pairs, lam_mode=a.lam, alpha=alpha,
                                     grid_size=a.grid_size, seed=a.seed + 1)
            test_pairs = measure_mixed_pairs(net, test_dataset, tpairs, **loader_args)
            test_pairs["classes"] = "all classes present in the test set"
            test_pairs["lam_mode"] = a.lam
            del tpairs
            clock.lap("test_pairs")

    classifier = classifier_geometry(W)
    if metrics_rows:
        classifier["history"] = {
            key: [row.get(key) for row in metrics_rows]
            for key in ("epoch", *(k for k in metrics_rows[-1] if k.startswith("classifier_")))
        }

    rows = feats.classifier_weight[classes]
    xy = _project(feats.path / "features.npy", rows, feats.path / "projection.npy")
    clock.lap("projection")
    figures: dict[str, list[str]] = {}
    if draw:
        figures = _draw(out_dir / "figures", xy, feats, rows, classes, names, title or "mixup pairs", bn["pairs"],
                        configuration, calibration, test_pairs, metrics_rows, checkpoint_epoch, a.seed)

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
    sections = {"configuration": configuration, "neural_collapse": neural, "calibration": calibration,
                "test_pairs": test_pairs, "classifier": classifier}
    summary.update(_headline(sections))
    summary.update(sections)
    summary["bn"] = bn
    clock.lap("figures")
    summary["seconds"] = clock.laps
    summary = _to_json(summary)
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_json(out_dir / ANALYSIS_FILE, summary)
    return Analysis(summary=summary, xy=xy, features=feats)


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


def _draw(fig_dir: Path, xy, feats: PairFeatures, rows, classes, names, title, bn_mode, configuration, calibration,
          test_pairs, metrics_rows, checkpoint_epoch, seed) -> dict[str, list[str]]:
    """Every figure of one analysis, from the numbers just measured (plots compute nothing)."""
    out: dict[str, list[str]] = {}
    shown = np.arange(len(xy))
    if len(xy) > MAX_SCATTER_POINTS:
        shown = np.sort(np.random.default_rng(seed).choice(len(xy), MAX_SCATTER_POINTS, replace=False))
    lam, same = np.asarray(feats.lam), np.asarray(feats.same)
    class_names = [names[c] for c in classes]
    out["configuration"] = configuration_figure(
        [dict(xy=xy[shown], lam=lam[shown], same=same[shown], classifier_xy=project_classifier(rows),
              title=f"{title}\nBN: {bn_mode}", class_names=class_names)],
        fig_dir / "configuration",
    )
    out["configuration_html"] = [configuration_html(
        fig_dir / "configuration.html", xy, lam, feats.pairs.class_a, feats.pairs.class_b, feats.pairs.index_a,
        feats.pairs.index_b, class_names=names, classifier_xy=project_classifier(rows), classifier_labels=class_names,
        title=f"{title} (BN: {bn_mode})", seed=seed)]
    series = [(title, _to_json(configuration))]
    out["configuration_measures"] = configuration_measures_figure(series, fig_dir / "configuration_measures",
                                                                  suptitle=f"{title}: the configuration in numbers")
    if calibration is not None:
        out["reliability"] = reliability_figure([(title, _to_json(calibration))], fig_dir / "reliability")
    if test_pairs is not None and test_pairs.get("different_class") is not None:
        out["confidence_by_lambda"] = confidence_by_lambda_figure(
            [(title, _to_json(test_pairs))], fig_dir / "confidence_by_lambda",
            suptitle=f"{title}: mixed test pairs of different classes (Figure 4)")
    if metrics_rows:
        out["classifier_geometry"] = classifier_geometry_figure(
            [(title, metrics_rows)], fig_dir / "classifier_geometry", mark_epoch=checkpoint_epoch,
            suptitle=f"{title}: classifier W during training (Figure 5)")
    return {k: [str(p) for p in v] for k, v in out.items()}


def describe_data(bundle, cfg) -> str:
    """``FashionMNIST (real data, first 2,000 training images)``, ``CIFAR10 (SYNTHETIC files, ...)``: for titles."""
    kind = "SYNTHETIC files, not the real data" if bundle.synthetic else \
        "embedded" if bundle.name == "digits" else "real data"
    title = SPECS[bundle.name].title if bundle.name in SPECS else bundle.name
    if cfg.data.train_limit is not None:
        kind += f", first {len(bundle.train):,} training images"
    return f"{title} ({kind})"


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
    draw: bool = True,
) -> Analysis:
    """Measure a run's checkpoint with ``measure_model``: output under ``RUN/analysis/<checkpoint name>/``.

    Loads the model and its resolved config from the checkpoint, builds the run's datasets (un-
    augmented for pairs and NC; augmented mixup batches for batch-norm recalibration, as trained),
    and adds the run's per-epoch classifier geometry (metrics.jsonl) to the figures and JSON.
    lambda_H of the UFM defaults to the run's train.weight_decay.
    """
    run_dir = Path(run_dir)
    ckpt_path = find_checkpoint(run_dir, checkpoint)
    torch_device = pick_device(device)
    model, cfg = load_model(ckpt_path, device=torch_device)
    if data_root is not None:
        cfg.data.root = data_root
    apply_overrides(cfg, overrides, allowed=("analysis.", "data.root", "data.num_workers"))
    out_dir = Path(out_dir) if out_dir is not None else run_dir / "analysis" / ckpt_path.stem
    if (out_dir / ANALYSIS_FILE).exists() and not overwrite:
        raise FileExistsError(f"{out_dir} already holds an analysis; pass --overwrite to replace it or choose --out")
    a = cfg.analysis
    if a.ufm_weight_decay is None:
        a.ufm_weight_decay = cfg.train.weight_decay if cfg.train.weight_decay > 0 else DEFAULT_UFM_WEIGHT_DECAY
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
              "loss": cfg.train.loss, "measures_for_this_loss": list(MEASURES_BY_LOSS[cfg.train.loss])},
        device=torch_device, num_workers=cfg.data.num_workers, draw=draw, overwrite=True, progress=progress,
    )
    return result
