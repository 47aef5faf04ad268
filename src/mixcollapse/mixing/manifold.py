"""Manifold mixup (Verma et al. 2019): the blend of mixup applied to hidden states at a layer drawn per batch.

The models say where mixing may happen (``mixing_points()``: index 0 is the input, k the output of
their k-th stage or block); the chosen point's output is blended through a forward hook, so the model
has one forward path. Targets are mixed with the same lambda. The analysis reads input-mixed pairs,
as the paper plots them, and recalibrates batch norm with input-mixed batches.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mixcollapse.mixing.base import Mixing
from mixcollapse.mixup import MixedBatch, sample_lambda


def mixing_points(model: nn.Module) -> list[nn.Module | None]:
    """Where ``model`` (or the model a DDP wrapper holds) may be mixed: None for the input, then modules whose
    outputs are hidden states."""
    inner = getattr(model, "module", model)
    points = getattr(inner, "mixing_points", None)
    if points is None:
        raise ValueError(f"{type(inner).__name__} has no mixing_points(): manifold mixup needs to know its layers")
    return points()


class ManifoldMixup(Mixing):
    """Hidden states h and targets blended with lam ~ Beta(alpha, alpha) at a layer drawn from ``layers``."""

    def forward(
        self, model: nn.Module, x: Tensor, y: Tensor, num_classes: int, rng: np.random.Generator
    ) -> tuple[Tensor, MixedBatch]:
        if not self.mixes:
            return super().forward(model, x, y, num_classes, rng)
        points = mixing_points(model)
        B = x.shape[0]
        lam_np = sample_lambda(self.alpha, B if self.cfg.per_sample else 1, rng)
        lam = torch.as_tensor(np.broadcast_to(lam_np, (B,)).copy(), dtype=torch.float32, device=x.device)
        index_b = torch.as_tensor(rng.permutation(B), device=x.device)
        layer = int(self.cfg.layers[rng.integers(len(self.cfg.layers))])
        if layer >= len(points):
            raise ValueError(
                f"mixing.layers has {layer}, but {type(getattr(model, 'module', model)).__name__} has "
                f"mixing points 0..{len(points) - 1} (0: the input)"
            )

        def blend(h: Tensor) -> Tensor:
            w = lam.view(B, *([1] * (h.dim() - 1))).to(h.dtype)
            return w * h + (1 - w) * h[index_b]

        onehot = F.one_hot(y, num_classes).float()
        target = lam[:, None] * onehot + (1 - lam[:, None]) * onehot[index_b]
        batch = MixedBatch(x, target, torch.arange(B, device=x.device), index_b, lam, y, y[index_b])
        if layer == 0:
            batch.x = blend(x)
            return model(batch.x), batch
        handle = points[layer].register_forward_hook(lambda module, inputs, out: blend(out))
        try:
            return model(x), batch
        finally:
            handle.remove()

    def describe(self) -> str:
        return "no mixing" if not self.mixes else f"manifold mixup α={self.alpha:g} at layers {self.cfg.layers}"


class HiddenPairs(Mixing):
    """Analysis pairs mixed at a hidden layer (``analysis.mix_layer``): both images go through the network to
    mixing point ``layer``, where their states are blended with the pair's lambda, and on to the last layer."""

    def __init__(self, layer: int, base: Mixing) -> None:
        super().__init__(base.cfg)
        self.layer = layer

    def pair_images(self, x_a: Tensor, x_b: Tensor, lam: Tensor, index: np.ndarray) -> Tensor:
        return torch.stack([x_a, x_b], dim=1)  # (B, 2, ...): the two images, mixed inside the network

    def pair_features(self, net: nn.Module, x: Tensor, lam: Tensor) -> Tensor:
        points = mixing_points(net)
        if self.layer >= len(points):
            raise ValueError(f"analysis.mix_layer={self.layer}, but the model has mixing points 0..{len(points) - 1}")
        B = x.shape[0]
        weight = lam.to(x.device)

        def blend(module, inputs, out: Tensor) -> Tensor:
            w = weight.view(B, *([1] * (out.dim() - 1))).to(out.dtype)
            return w * out[:B] + (1 - w) * out[B:]

        both = torch.cat([x[:, 0], x[:, 1]])  # (2B, ...): the a images, then the b images
        if self.layer == 0:
            return net.features(blend(None, None, both))
        handle = points[self.layer].register_forward_hook(blend)
        try:
            return net.features(both)
        finally:
            handle.remove()

    def describe(self) -> str:
        return f"pairs mixed at layer {self.layer}"
