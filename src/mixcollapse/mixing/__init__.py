"""Mixing methods: the paper's mixup and the methods researchers compare it with, each one object.

A :class:`~mixcollapse.mixing.base.Mixing` owns everything its method decides: how lambda is drawn,
how a pair becomes a mixed input (or hidden state), what the target is (label smoothing included), how
the mixed batches of batch-norm recalibration are drawn, and how an analysis pair of two images and a
lambda becomes one image. Training, recalibration, pair extraction, held-out pairs and trajectories
take the object and never read ``alpha`` or a method name themselves.

base      Mixing: mixup (eq. 1; Zhang et al. 2017), no mixing (alpha = 0 or method none), label smoothing
manifold  manifold mixup (Verma et al. 2019): hidden states mixed at a layer drawn per batch
cutmix    CutMix (Yun et al. 2019): a box of the partner pasted in, lambda its exact area

Adding a method is one module with a subclass of Mixing, its name in ``config.MIXING_METHODS`` and
its class in :data:`METHODS` (tests/test_mixing.py checks that the two agree).
"""

from __future__ import annotations

from mixcollapse.config import MixingConfig
from mixcollapse.mixing.base import Mixing
from mixcollapse.mixing.cutmix import CutMix
from mixcollapse.mixing.manifold import HiddenPairs, ManifoldMixup

METHODS: dict[str, type[Mixing]] = {"none": Mixing, "mixup": Mixing, "manifold": ManifoldMixup, "cutmix": CutMix}


def build_mixing(cfg: MixingConfig | None = None) -> Mixing:
    """The mixing object of ``cfg`` (default: mixup with alpha = 1)."""
    cfg = cfg if cfg is not None else MixingConfig()
    return METHODS[cfg.method](cfg)


__all__ = ["METHODS", "CutMix", "HiddenPairs", "ManifoldMixup", "Mixing", "build_mixing"]
