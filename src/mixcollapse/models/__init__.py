"""The model zoo: every model has ``features(x) -> (B, d)``, a final linear ``classifier``,
``intermediates(x)`` (per-stage representations, the last equal to the features) and ``feature_dim``.

The analysis code uses nothing else, so any ``nn.Module`` honouring this contract can be studied.
"""

from __future__ import annotations

from torch import nn

from mixcollapse.config import ModelConfig
from mixcollapse.etf import fix_classifier_to_etf
from mixcollapse.models.small import SmallNet
from mixcollapse.models.vit import ViT
from mixcollapse.models.wrn import WideResNet

__all__ = ["SmallNet", "ViT", "WideResNet", "build_model"]

MIN_IMAGE_SIZE = 8  # the convolutional nets downsample by 2 (small) or 4 (WRN) before pooling


def _check_sizes(cfg: ModelConfig, num_classes: int, in_channels: int, image_size: int) -> None:
    """Raise ValueError with one sentence for sizes the chosen architecture cannot take."""
    if num_classes < 2:
        raise ValueError(f"num_classes={num_classes} must be >= 2")
    if in_channels < 1:
        raise ValueError(f"in_channels={in_channels} must be >= 1")
    if cfg.name in ("small", "wrn") and image_size < MIN_IMAGE_SIZE:
        raise ValueError(f"model '{cfg.name}' needs image_size >= {MIN_IMAGE_SIZE}, got {image_size}")
    if cfg.name == "wrn" and ((cfg.depth - 4) % 6 != 0 or cfg.depth < 10 or cfg.width < 1):
        raise ValueError(f"WRN-{cfg.depth}-{cfg.width}: depth must be 6n + 4 >= 10 (e.g. 16, 28, 40) and width >= 1")
    if cfg.name == "small" and cfg.hidden < 1:
        raise ValueError(f"model.hidden={cfg.hidden} must be >= 1")
    if cfg.name == "vit":
        if cfg.patch_size < 1 or image_size % cfg.patch_size != 0:
            raise ValueError(f"image_size={image_size} is not divisible by model.patch_size={cfg.patch_size}")
        if cfg.num_heads < 1 or cfg.embed_dim % cfg.num_heads != 0:
            raise ValueError(f"model.embed_dim={cfg.embed_dim} is not divisible by model.num_heads={cfg.num_heads}")
        if cfg.vit_depth < 1:
            raise ValueError(f"model.vit_depth={cfg.vit_depth} must be >= 1")


def build_model(cfg: ModelConfig, num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    """Build the model named by ``cfg.name``; with ``cfg.fixed_etf`` its classifier is a frozen simplex ETF."""
    if cfg.name not in ("small", "wrn", "vit"):
        raise ValueError(f"unknown model '{cfg.name}' (known: small, wrn, vit)")
    _check_sizes(cfg, num_classes, in_channels, image_size)
    if cfg.name == "small":
        model: nn.Module = SmallNet(num_classes, in_channels, cfg.hidden, cfg.bias)
    elif cfg.name == "wrn":
        model = WideResNet(cfg.depth, cfg.width, num_classes, in_channels, cfg.bias)
    else:
        model = ViT(
            num_classes, image_size, cfg.patch_size, in_channels, cfg.embed_dim, cfg.vit_depth, cfg.num_heads, cfg.bias
        )
    if cfg.fixed_etf:
        if model.feature_dim < num_classes - 1:
            raise ValueError(
                f"a fixed ETF classifier of {num_classes} classes needs feature_dim >= {num_classes - 1}, "
                f"but model '{cfg.name}' has feature_dim={model.feature_dim}"
            )
        # Zero bias, requires_grad False: optimizers and weight decay skip the classifier (eq. 3).
        fix_classifier_to_etf(model.classifier, cfg.etf_multiplier, cfg.etf_seed)
    return model
