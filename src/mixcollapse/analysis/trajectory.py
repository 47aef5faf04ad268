"""Layer-wise trajectories of mixed inputs (Figure 3): each layer's representation of a mix, projected.

Two training images x_a, x_b (of one class, or of two classes) are mixed, x = lam x_a + (1 - lam) x_b,
for several lam; ``model.intermediates(x)`` gives one representation per layer, and each layer is
projected to the plane of Appendix B.2 for three classes (the images' classes and a third one).

Projections (``projection``):

* ``classifier`` (the paper's Figure 3, ViT): every layer lives in the classifier's space (the
  ViT's CLS token through the final norm), so Appendix B.2's map A Q of the final classifier's three
  rows applies to each layer. Each layer is centred by its own mean over a reference set of mixup
  training images. The first entry (the CLS token plus its position embedding, before any block)
  does not depend on the input, so its centred value is exactly zero: trajectories start at the
  origin, as in the paper.
* ``probe`` (WRN, which the paper did not show; any model): the stages have different widths, so
  for every layer but the last a linear probe is fitted by ridge regression, on the reference
  set, from the centred layer features to the centred final logits of the three classes,
  z = W3 h (bias left out). Probe outputs are mapped to the plane by G = A U S^-1 U^T D^-1 (D the
  row norms of W3, W3/D = U S V^T); for the last layer the probe is W3 itself and G W3 = A Q, so
  the last point is exactly Appendix B.2's projection. The path starts at the origin (the input,
  before any layer: a point we prepend). ``r2`` reports how much of the final logits' variance
  each probe explains on the reference set.

Batch norm follows ``bn_mode`` as in :mod:`mixcollapse.analysis.extract`: ``train`` runs mixes
inside batches filled up with mixup training samples, ``recalibrate`` and ``eval`` run in eval mode.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mixcollapse.analysis.extract import NO_BATCHNORM, bn_network, has_batchnorm
from mixcollapse.analysis.readout import fit_probe, layer_logits, readout_summary, softmax
from mixcollapse.files import atomic_write, atomic_write_json
from mixcollapse.metrics.projection import project_classifier, projection_matrix, triangle_vertices
from mixcollapse.mixing import Mixing

PROJECTIONS = ("auto", "classifier", "probe")


def pick_pairs(labels: np.ndarray, classes: Sequence[int], seed: int = 0) -> dict[str, tuple[int, int]]:
    """Two random training images of ``classes[0]`` (``same``) and one each of classes 0 and 1 (``different``)."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    a = np.flatnonzero(labels == classes[0])
    b = np.flatnonzero(labels == classes[1])
    if len(a) == 0 or len(b) == 0:
        raise ValueError(f"classes {classes[0]} and {classes[1]} need training images for the trajectories")
    same = rng.choice(a, size=2, replace=len(a) < 2)
    return {"same": (int(same[0]), int(same[1])), "different": (int(rng.choice(a)), int(rng.choice(b)))}


def pick_different_pairs(labels: np.ndarray, classes: Sequence[int], n: int, seed: int = 0) -> list[tuple[int, int]]:
    """``n`` pairs (image of ``classes[0]``, image of ``classes[1]``): :func:`pick_pairs`' different pair first,
    then pairs drawn with ``seed`` + 1."""
    labels = np.asarray(labels)
    first = pick_pairs(labels, classes, seed)["different"]
    rng = np.random.default_rng(seed + 1)
    a, b = np.flatnonzero(labels == classes[0]), np.flatnonzero(labels == classes[1])
    return [first, *zip(rng.choice(a, n - 1).tolist(), rng.choice(b, n - 1).tolist(), strict=True)][:n]


def _mixes(dataset, ia: int, ib: int, lam: torch.Tensor, mixing: Mixing) -> torch.Tensor:
    """The training images ``ia`` and ``ib`` mixed at every ``lam`` (len(lam), ...) by ``mixing``."""
    x_a, x_b = dataset[ia][0], dataset[ib][0]
    index = np.arange(len(lam))  # where a method places something per pair (CutMix's box): the same for every pair
    return mixing.pair_images(x_a.expand(len(lam), *x_a.shape), x_b.expand(len(lam), *x_b.shape), lam, index)


@torch.no_grad()
def _layers(net: nn.Module, x: torch.Tensor, filler: torch.Tensor | None, device) -> list[np.ndarray]:
    """``net.intermediates`` of ``x`` (B, ...) as float64 arrays, run inside ``filler`` when given."""
    n = len(x)
    if filler is not None:
        x = torch.cat([x, filler[: max(0, len(filler) - n)]])
    return [h[:n].double().cpu().numpy() for h in net.intermediates(x.to(device))]


def logit_plane(rows: np.ndarray) -> np.ndarray:
    """G (2, 3) with G (W3 h) = A Q h: from the three classes' logits to Appendix B.2's plane."""
    rows = np.asarray(rows, dtype=np.float64)
    norms = np.linalg.norm(rows, axis=1)
    U, S, _ = np.linalg.svd(rows / norms[:, None], full_matrices=False)
    return triangle_vertices() @ U @ np.diag(1.0 / S) @ U.T @ np.diag(1.0 / norms)


def project_layers(
    mix_layers: list[np.ndarray], ref_layers: list[np.ndarray], rows: np.ndarray, projection: str
) -> tuple[np.ndarray, list[float] | None]:
    """(K, L', 2) paths of K mixes through the layers, and the probes' R^2 (``probe`` only)."""
    rows = np.asarray(rows, dtype=np.float64)
    if projection == "classifier":
        d = rows.shape[1]
        bad = [i for i, h in enumerate(mix_layers) if h.shape[1] != d]
        if bad:
            raise ValueError(
                f"projection 'classifier' needs every layer in the classifier's {d}-dim space, but "
                f"layer {bad[0]} has {mix_layers[bad[0]].shape[1]} dims; use projection 'probe'"
            )
        P = projection_matrix(rows)  # (2, d)
        xy = [(h - r.mean(0)) @ P.T for h, r in zip(mix_layers, ref_layers, strict=True)]
        return np.stack(xy, axis=1), None
    if projection == "probe":
        G = logit_plane(rows)
        target = ref_layers[-1] @ rows.T  # (n, 3) final logits of the three classes, bias left out
        xy, r2 = [np.zeros((len(mix_layers[0]), 2))], []  # the origin: the input, before any layer
        for i, (h, r) in enumerate(zip(mix_layers, ref_layers, strict=True)):
            if i == len(mix_layers) - 1:
                P, fit = rows.T, 1.0  # the last layer: the classifier itself, exact
            else:
                P, fit = fit_probe(r, target)
            xy.append(((h - r.mean(0)) @ P) @ G.T)
            r2.append(fit)
        return np.stack(xy, axis=1), r2
    raise ValueError(f"projection '{projection}' is not one of: {', '.join(PROJECTIONS)}")


def layer_trajectories(
    model: nn.Module,
    dataset,
    labels: np.ndarray,
    classes: Sequence[int],
    *,
    lams: Sequence[float],
    reference_batches: Iterator[torch.Tensor],
    reference_size: int = 1024,
    projection: str = "auto",
    bn_mode: str = "recalibrate",
    recalibrate_batches: int = 50,
    seed: int = 0,
    readout_pairs: int = 32,
    mixing: Mixing | None = None,
    device: str | torch.device = "cpu",
) -> dict:
    """Paths through the layers of mixes of a same-class and a different-class pair of training images.

    ``dataset`` yields un-augmented training images by index and ``labels`` their classes;
    ``classes`` are the three classes of the projection (the pairs use the first two);
    ``projection`` is ``classifier``, ``probe`` or ``auto`` (classifier when every layer has the
    classifier's width, as in a ViT; probe otherwise, as in a WRN);
    ``reference_batches`` yields mixed training batches (centring, probes, batch-norm filler);
    ``readout_pairs`` different-class pairs (the drawn one first) are mixed at the same ``lams`` and read by
    the final classifier at every layer (:mod:`mixcollapse.analysis.readout`; 0 skips it); ``mixing`` mixes
    the images (default: mixup's blend; CutMix's lambdas become box areas).
    Returns plain arrays: ``xy`` (P, L', 2), ``lam``, ``same`` (P,), ``pair`` (P, 2) image indices,
    ``classifier_xy`` (3, 2), ``readout_probs`` (R, L', 2: p of each image's class per layer) and
    ``readout_lam`` (R,), then ``readout`` (the half depths, :func:`~mixcollapse.analysis.readout.readout_summary`),
    ``layer_names``, ``r2`` (probe) and the settings used.
    """
    if len(classes) != 3 or len(set(classes)) != 3:
        raise ValueError(f"the trajectories need three distinct classes, got {list(classes)}")
    device = torch.device(device)
    model = model.to(device)
    was_training = model.training
    batches = iter(reference_batches)
    pairs = pick_pairs(labels, classes, seed)
    readout = pick_different_pairs(labels, classes, readout_pairs, seed) if readout_pairs > 0 else []
    mixing = mixing if mixing is not None else Mixing()
    lams = mixing.pair_lambdas(np.asarray(lams, dtype=np.float64), tuple(dataset[0][0].shape))
    lam = torch.tensor(list(lams), dtype=torch.float32)
    meta = [(kind == "same", ia, ib, float(v)) for kind, (ia, ib) in pairs.items() for v in lam]
    try:
        net = bn_network(model, bn_mode, batches, recalibrate_batches, device)
        ref_layers = _reference_layers(net, batches, reference_size, device)
        x = torch.cat([_mixes(dataset, ia, ib, lam, mixing) for ia, ib in [*pairs.values(), *readout]])
        all_layers = _chunked_layers(net, x, next(batches) if net.training else None, device)
        mix_layers = [h[: len(meta)] for h in all_layers]
        read_layers = [h[len(meta) :] for h in all_layers]
    finally:
        model.train(was_training)

    settings = {"bn_mode": bn_mode if has_batchnorm(model) else NO_BATCHNORM, "seed": seed}
    layers = (mix_layers, read_layers, ref_layers)
    return _result(net, layers, meta, classes, readout, lams, projection, settings)


def _result(
    net: nn.Module,
    layers: tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]],
    meta: list,
    classes: Sequence[int],
    readout: list,
    lams: Sequence[float],
    projection: str,
    settings: dict,
) -> dict:
    """layer_trajectories' arrays: the paths projected onto the classes' plane, and the classifier read per layer.

    ``layers``: every layer's representation of the mixes, of the readout pairs' mixes and of the reference images.
    """
    mix_layers, read_layers, ref_layers = layers
    weight = net.classifier.weight.detach().double().cpu().numpy()
    bias = None if net.classifier.bias is None else net.classifier.bias.detach().double().cpu().numpy()
    rows = weight[list(classes)]
    if projection == "auto":  # classifier when every layer has the classifier's width (ViT), else probe (WRN)
        projection = "classifier" if all(h.shape[1] == rows.shape[1] for h in mix_layers) else "probe"
    xy, r2 = project_layers(mix_layers, ref_layers, rows, projection)
    n_layers = len(mix_layers)
    if projection == "probe":
        names = ["input", *(f"layer {i + 1}" for i in range(n_layers))]
    else:
        names = ["embedding", *(f"block {i}" for i in range(1, n_layers))]
    if readout:
        probs = softmax(layer_logits(read_layers, ref_layers, weight, bias, projection))[..., list(classes[:2])]
        read_lam = np.tile(np.asarray(list(lams), dtype=np.float64), len(readout))
    else:
        probs, read_lam = np.zeros((0, xy.shape[1], 2)), np.zeros(0)
    return {
        "xy": xy,
        "lam": np.array([m[3] for m in meta]),
        "same": np.array([m[0] for m in meta]),
        "pair": np.array([[m[1], m[2]] for m in meta], dtype=np.int64),
        "classes": [int(c) for c in classes],
        "classifier_xy": project_classifier(rows),
        "readout_probs": probs,
        "readout_lam": read_lam,
        "readout": readout_summary(probs, read_lam, names) if readout else None,
        "readout_pairs": [list(p) for p in readout],
        "layer_names": names,
        "r2": r2,
        "projection": projection,
        "reference_size": int(len(ref_layers[0])),
        **settings,
    }


ARRAYS = ("xy", "lam", "same", "pair", "classifier_xy", "readout_probs", "readout_lam")


def _reference_layers(net: nn.Module, batches: Iterator[torch.Tensor], size: int, device) -> list[np.ndarray]:
    """Every layer's representation of the first ``size`` images of the mixed training batches."""
    parts: list[list[np.ndarray]] = []
    count = 0
    for x in batches:
        parts.append(_layers(net, x, None, device))
        count += len(x)
        if count >= size:
            break
    return [np.concatenate(layer)[:size] for layer in zip(*parts, strict=True)]


def _chunked_layers(net: nn.Module, x: torch.Tensor, filler: torch.Tensor | None, device) -> list[np.ndarray]:
    """Every layer's representation of ``x``: with batch statistics a quarter of a training batch at a time
    inside ``filler``, else 256 at a time."""
    chunk = max(1, len(filler) // 4) if filler is not None else 256
    parts = [_layers(net, x[i : i + chunk], filler, device) for i in range(0, len(x), chunk)]
    return [np.concatenate(p) for p in zip(*parts, strict=True)]


def save_trajectories(result: dict, path: str | Path) -> Path:
    """``path`` (a directory): ``trajectories.npz`` with the arrays (``np.load``) and ``trajectories.json`` with the
    rest."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    atomic_write(path / "trajectories.npz", lambda f: np.savez(f, **{k: np.asarray(result[k]) for k in ARRAYS}))
    atomic_write_json(path / "trajectories.json", {k: v for k, v in result.items() if k not in ARRAYS})
    return path


__all__ = [
    "PROJECTIONS",
    "pick_pairs",
    "pick_different_pairs",
    "logit_plane",
    "project_layers",
    "layer_trajectories",
    "save_trajectories",
]
