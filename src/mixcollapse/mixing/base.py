"""Mixup (eq. 1 of the paper) as the base of every mixing method, and label smoothing on any of them."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor, nn

from mixcollapse.config import MixingConfig
from mixcollapse.mixup import MixedBatch, mix_batch, mix_images


class Mixing:
    """Mixup: every batch blended with a permutation of itself, lam ~ Beta(alpha, alpha) per batch (or per
    sample); alpha = 0 or ``method: none`` is no mixing at all (one-hot targets, the paper's baseline).

    Subclasses change how a batch is mixed (:meth:`forward`, :meth:`mix_inputs`) and how an analysis pair
    becomes an image (:meth:`pair_lambdas`, :meth:`pair_images`). Label smoothing (``label_smoothing``:
    epsilon) applies to the targets of every method (:meth:`targets`).
    """

    def __init__(self, cfg: MixingConfig | None = None) -> None:
        self.cfg = cfg if cfg is not None else MixingConfig()

    @property
    def alpha(self) -> float:
        """The Beta parameter of the training lambdas; 0 when nothing is mixed."""
        return 0.0 if self.cfg.method == "none" else self.cfg.alpha

    @property
    def mixes(self) -> bool:
        return self.alpha > 0

    # ---- training ---------------------------------------------------------------------------------

    def mix_inputs(self, x: Tensor, y: Tensor, num_classes: int, rng: np.random.Generator) -> MixedBatch:
        """The batch mixed in input space (what the network sees), with its soft targets before smoothing."""
        return mix_batch(x, y, num_classes, self.alpha, rng, per_sample=self.cfg.per_sample)

    def forward(
        self, model: nn.Module, x: Tensor, y: Tensor, num_classes: int, rng: np.random.Generator
    ) -> tuple[Tensor, MixedBatch]:
        """The logits of one mixed training batch and the batch (its lambdas, partners and targets)."""
        batch = self.mix_inputs(x, y, num_classes, rng)
        return model(batch.x), batch

    def targets(self, batch: MixedBatch) -> Tensor:
        """The training targets: the mixed soft targets, smoothed towards uniform by ``label_smoothing``."""
        eps = self.cfg.label_smoothing
        if eps == 0:
            return batch.target
        return (1 - eps) * batch.target + eps / batch.target.shape[1]

    def batches(self, dataset, num_classes: int, batch_size: int, seed: int = 0) -> Iterator[Tensor]:
        """Endless mixed training batches (inputs only), drawn like training batches: shuffled, then mixed in
        input space (batch-norm recalibration and train-mode statistics in the analysis)."""
        gen = torch.Generator().manual_seed(seed)
        rng = np.random.default_rng(seed)
        loader = torch.utils.data.DataLoader(
            dataset, batch_size=batch_size, shuffle=True, drop_last=True, generator=gen
        )
        if len(loader) == 0:
            raise ValueError(f"the training set ({len(dataset)} images) is smaller than one batch of {batch_size}")
        while True:
            for x, y in loader:
                yield self.mix_inputs(x, y, num_classes, rng).x

    # ---- analysis ---------------------------------------------------------------------------------

    @property
    def pair_alpha(self) -> float:
        """The Beta parameter of the analysis pairs' lambdas: the training one, or Beta(1, 1) for a run that did
        not mix (so its pairs cover [0, 1], as the paper's Figure 8 shows)."""
        return self.alpha if self.alpha > 0 else 1.0

    def pair_lambdas(self, lam: np.ndarray, image_shape: tuple[int, ...]) -> np.ndarray:
        """The lambdas analysis pairs carry for drawn ``lam``: the weight of image a in the mixed image."""
        return lam

    def pair_images(self, x_a: Tensor, x_b: Tensor, lam: Tensor, index: np.ndarray) -> Tensor:
        """Analysis images (B, C, H, W) of pairs (``index``: each pair's position, for methods that place
        something per pair): mixup's blend lam x_a + (1 - lam) x_b for every method that mixes in input space
        or not at all; the paper plots input-mixed pairs."""
        return mix_images(x_a, x_b, lam)

    def pair_features(self, net: nn.Module, x: Tensor, lam: Tensor) -> Tensor:
        """The last-layer features of a batch of :meth:`pair_images` (mixed in input space: ``net.features``)."""
        return net.features(x)

    def describe(self) -> str:
        """The method in words, for logs and figures."""
        return "no mixing" if not self.mixes else f"mixup α={self.alpha:g}"
