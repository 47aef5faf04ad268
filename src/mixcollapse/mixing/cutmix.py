"""CutMix (Yun et al. 2019): a box of the partner image pasted into the image; lambda is an area, not a blend.

Training follows Yun et al. and timm's ``Mixup(cutmix_alpha=...)`` (the tests compare the two): lam ~
Beta(alpha, alpha) per batch, a box of sides ``int(side * sqrt(1 - lam))`` centred at a uniform pixel
and clipped to the image, and lam corrected to the exact share of the image's pixels that the box
leaves (timm's ``correct_lam``). Analysis pairs use the same rule with one difference, so that every pair's
lambda is its exact area and the box follows from it: the box is a square of side
``int(sqrt((1 - lam) H W))`` placed wholly inside the image, at a position drawn from the pair's index.
The figures colour the pairs by this area lambda.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from mixcollapse.mixing.base import Mixing
from mixcollapse.mixup import MixedBatch, mix_batch, sample_lambda

PLACEMENT_SALT = 0x6375746D  # the analysis boxes' positions: a stream of their own, keyed by the pair's index


def cutmix_box(lam: float, height: int, width: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """The box (top, bottom, left, right) of area (1 - lam) H W before clipping, centred at a uniform pixel."""
    cut = math.sqrt(1.0 - lam)
    cut_h, cut_w = int(height * cut), int(width * cut)
    cy, cx = int(rng.integers(height)), int(rng.integers(width))
    # (cut + 1) // 2 after the centre, as timm does: Yun et al.'s cut // 2 loses a row or column of odd sides
    top, bottom = np.clip([cy - cut_h // 2, cy + (cut_h + 1) // 2], 0, height)
    left, right = np.clip([cx - cut_w // 2, cx + (cut_w + 1) // 2], 0, width)
    return int(top), int(bottom), int(left), int(right)


class CutMix(Mixing):
    """A box of the permuted batch pasted into the batch; targets mixed by the box's exact area."""

    def mix_inputs(self, x: Tensor, y: Tensor, num_classes: int, rng: np.random.Generator) -> MixedBatch:
        if not self.mixes:
            return mix_batch(x, y, num_classes, 0.0, rng)
        B, height, width = x.shape[0], x.shape[-2], x.shape[-1]
        requested = float(sample_lambda(self.alpha, 1, rng)[0])
        index_b = torch.as_tensor(rng.permutation(B), device=x.device)
        top, bottom, left, right = cutmix_box(requested, height, width, rng)
        mixed = x.clone()
        mixed[..., top:bottom, left:right] = x[index_b][..., top:bottom, left:right]
        area = 1.0 - (bottom - top) * (right - left) / (height * width)
        lam = torch.full((B,), area, dtype=torch.float32, device=x.device)
        onehot = F.one_hot(y, num_classes).float()
        target = lam[:, None] * onehot + (1 - lam[:, None]) * onehot[index_b]
        return MixedBatch(mixed, target, torch.arange(B, device=x.device), index_b, lam, y, y[index_b])

    def pair_lambdas(self, lam: np.ndarray, image_shape: tuple[int, ...]) -> np.ndarray:
        """The exact area of image a left by a square box of side int(sqrt((1 - lam) H W)) (at most the image)."""
        height, width = image_shape[-2], image_shape[-1]
        side = np.minimum(np.floor(np.sqrt((1.0 - np.asarray(lam)) * height * width) + 1e-9), min(height, width))
        return 1.0 - side * side / (height * width)

    def pair_images(self, x_a: Tensor, x_b: Tensor, lam: Tensor, index: np.ndarray) -> Tensor:
        height, width = x_a.shape[-2], x_a.shape[-1]
        out = x_a.clone()
        for k, (weight, i) in enumerate(zip(lam.tolist(), np.asarray(index).tolist(), strict=True)):
            side = min(round(math.sqrt(max(0.0, 1.0 - weight) * height * width)), height, width)
            if side == 0:
                continue
            place = np.random.default_rng([PLACEMENT_SALT, int(i)])
            top, left = int(place.integers(height - side + 1)), int(place.integers(width - side + 1))
            out[k, ..., top : top + side, left : left + side] = x_b[k, ..., top : top + side, left : left + side]
        return out

    def describe(self) -> str:
        return "no mixing" if not self.mixes else f"CutMix α={self.alpha:g}"
