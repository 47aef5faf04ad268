"""The model zoo: every model has ``features(x) -> (B, d)``, a final linear ``classifier``,
``intermediates(x)`` (per-stage representations, the last equal to the features) and ``feature_dim``.

The analysis code uses nothing else, so any ``nn.Module`` honouring this contract can be studied.
"""

from __future__ import annotations

from torch import nn

from mixcollapse.config import ModelConfig, check_model
from mixcollapse.etf import fix_classifier_to_etf
from mixcollapse.models.small import SmallNet
from mixcollapse.models.vit import ViT
from mixcollapse.models.wrn import WideResNet

__all__ = ["SmallNet", "ViT", "WideResNet", "build_model"]


def build_model(cfg: ModelConfig, num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    """Build the model named by ``cfg.name``; with ``cfg.fixed_etf`` its classifier is a frozen simplex ETF."""
    check_model(cfg, num_classes, in_channels, image_size)
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
