"""The final classifier read at every layer: when does a network see the second class of a mix (Figure 3)?

Section 2.4 of the paper reads Figure 3 as: "for very small λ, the network first classifies the image
as class 1 and only in deeper layers it realizes the image is also partially class 2" (manifold-mixup-
like behaviour in earlier layers). This module turns that reading into numbers.

For a mix x = λ x_a + (1 − λ) x_b of two images of different classes, every layer's representation
is read by the final classifier ("logit lens"), giving per layer the softmax probabilities p_a and p_b
of the two classes:

* ``classifier`` read-out (ViT): each layer's CLS token through the final norm lives in the
  classifier's space, so the logits are W h_l + b, the network's own output at the last block.
* ``probe`` read-out (WRN, any model whose layers differ in width): ridge probes from each layer's
  centred features to the centred final logits of all classes, plus the mean final logits of the
  reference set (so the point before any layer reads the reference mean); the last layer is the
  classifier itself.

The mix's **major** class is the one of weight max(λ, 1 − λ), its **minor** class the other. A class's
*half depth* is the first layer l >= 1 (block l of a ViT; the first entry, the input-independent
embedding or the probe's input point, is left out) at which its probability reaches half its final
value: p(l) >= p(L) / 2. The paper's claim holds where, for small minor weights, the minor class reaches
it later than the major class: ``minor_lag`` (layers) > 0. Intermediate read-outs carry each layer's own
class priors (the final classifier was trained on the last layer only), so the summary is a median over
many pairs, and the per-lambda probabilities are kept beside it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

SMALL_MINOR = 0.3  # the summary's "small lambda": minor weights in (0, SMALL_MINOR]
RIDGE = 1e-3  # probes' ridge, relative to the mean feature variance


def fit_probe(F: np.ndarray, Z: np.ndarray, ridge: float = RIDGE) -> tuple[np.ndarray, float]:
    """Ridge regression of centred Z (n, k) on centred F (n, d): P (d, k) and the R^2 of the fit."""
    Fc, Zc = F - F.mean(0), Z - Z.mean(0)
    d = Fc.shape[1]
    gram = Fc.T @ Fc
    scale = np.trace(gram) / d if d else 0.0
    if scale == 0:  # a constant layer (the ViT's embedding entry): predicts nothing
        return np.zeros((d, Z.shape[1])), 0.0
    P = np.linalg.solve(gram + ridge * scale * np.eye(d), Fc.T @ Zc)
    total = float((Zc**2).sum())
    r2 = 1.0 - float(((Zc - Fc @ P) ** 2).sum()) / total if total > 0 else 0.0
    return P, r2


def layer_logits(
    mix_layers: list[np.ndarray],
    ref_layers: list[np.ndarray],
    weight: np.ndarray,
    bias: np.ndarray | None,
    projection: str,
) -> np.ndarray:
    """(K, L', C) logits of the final classifier read at every layer (L' = L, or L + 1 with the probe's input point).

    ``mix_layers``/``ref_layers``: per layer (K, d_l) / (n, d_l) features of the mixes and of the reference
    set; ``weight`` (C, d) and ``bias`` (C,) the classifier; ``projection`` as in the trajectories.
    """
    weight = np.asarray(weight, dtype=np.float64)
    bias = np.zeros(len(weight)) if bias is None else np.asarray(bias, dtype=np.float64)
    if projection == "classifier":
        return np.stack([h @ weight.T + bias for h in mix_layers], axis=1)
    if projection != "probe":
        raise ValueError(f"projection '{projection}' is not one of: classifier, probe")
    final = ref_layers[-1] @ weight.T  # (n, C) final logits of the reference set, bias left out
    mean = final.mean(0) + bias
    out = [np.tile(mean, (len(mix_layers[0]), 1))]  # the input, before any layer: the reference mean
    for i, (h, r) in enumerate(zip(mix_layers, ref_layers, strict=True)):
        if i == len(mix_layers) - 1:
            out.append(h @ weight.T + bias)  # the classifier itself, exact
        else:
            P, _ = fit_probe(r, final)
            out.append((h - r.mean(0)) @ P + mean)
    return np.stack(out, axis=1)


def softmax(z: np.ndarray) -> np.ndarray:
    """Softmax over the last axis."""
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def half_depth(p: np.ndarray) -> int:
    """First layer l >= 1 with p[l] >= p[-1] / 2 (p[0], the input-independent first entry, left out)."""
    p = np.asarray(p, dtype=np.float64)
    return int(np.flatnonzero(p[1:] >= p[-1] / 2)[0]) + 1


def _median(values: Sequence[float]) -> float | None:
    return float(np.median(values)) if len(values) else None


def readout_summary(probs: np.ndarray, lam: np.ndarray, layer_names: Sequence[str]) -> dict:
    """Half depths of the major and minor class of every different-class mix, and their summary.

    ``probs`` (K, L', 2): p of the first image's class and of the second's per layer; ``lam`` (K,) the first
    image's weight. Mixes with lambda in {0, 0.5, 1} have no minor (or no major) class and are left out of
    the depths. Returns ``per_lambda`` (mean probabilities per layer over the pairs, median half depths) and
    ``small_lambda``: over the mixes whose minor weight is at most ``SMALL_MINOR``, the median half depth of
    each class (layers, and as a fraction of the last layer), ``minor_lag`` (median of minor − major, in
    layers), ``minor_later_share`` and ``minor_earlier_share`` (shares of the mixes with the minor class
    later, earlier; the rest reach half at the same layer).
    """
    probs, lam = np.asarray(probs, dtype=np.float64), np.asarray(lam, dtype=np.float64)
    last = probs.shape[1] - 1
    rows = []
    for p, v in zip(probs, lam, strict=True):
        if v in (0.0, 0.5, 1.0):
            continue
        major, minor = (0, 1) if v > 0.5 else (1, 0)
        rows.append((min(v, 1 - v), v, half_depth(p[:, major]), half_depth(p[:, minor])))
    per_lambda = {}
    for v in np.unique(lam):
        sel = lam == v
        mine = [r for r in rows if r[1] == v]
        per_lambda[f"{v:g}"] = {
            "pairs": int(sel.sum()),
            "p_first": probs[sel, :, 0].mean(0).round(5).tolist(),
            "p_second": probs[sel, :, 1].mean(0).round(5).tolist(),
            "major_half_depth": _median([r[2] for r in mine]),
            "minor_half_depth": _median([r[3] for r in mine]),
        }
    small = [r for r in rows if r[0] <= SMALL_MINOR]
    major = _median([r[2] for r in small])
    minor = _median([r[3] for r in small])
    return {
        "layers": list(layer_names),
        "small_lambda": {
            "minor_weight_at_most": SMALL_MINOR,
            "mixes": len(small),
            "major_half_depth": major,
            "minor_half_depth": minor,
            "major_half_depth_fraction": None if major is None else major / last,
            "minor_half_depth_fraction": None if minor is None else minor / last,
            "minor_lag": _median([r[3] - r[2] for r in small]),
            "minor_later_share": float(np.mean([r[3] > r[2] for r in small])) if small else None,
            "minor_earlier_share": float(np.mean([r[3] < r[2] for r in small])) if small else None,
        },
        "per_lambda": per_lambda,
    }


__all__ = ["fit_probe", "SMALL_MINOR", "layer_logits", "softmax", "half_depth", "readout_summary"]
