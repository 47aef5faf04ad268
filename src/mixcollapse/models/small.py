"""A small CNN for the embedded 8x8 digits (and tiny-scale runs of the paper's datasets).

Reaches the terminal phase of training on the digits in about a minute on two CPU cores.
It has batch norm on purpose, so that the demo exercises the analysis' train/eval-mode
batch-norm handling exactly as the paper's WideResNet does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

POOLED = 4  # spatial size before the flatten; the 8x8 digits arrive at 4x4 after the max-pool


def _conv_bn(in_channels: int, out_channels: int) -> nn.Sequential:
    """conv3x3 (no bias: the BN shift replaces it), BN, ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class SmallNet(nn.Module):
    """conv32-conv64-maxpool-conv64-pool4x4-linear(hidden)-BN-ReLU; features are the last (B, hidden)."""

    def __init__(self, num_classes: int, in_channels: int = 1, hidden: int = 64, bias: bool = True) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            [_conv_bn(in_channels, 32), nn.Sequential(_conv_bn(32, 64), nn.MaxPool2d(2)), _conv_bn(64, 64)]
        )
        self.head = nn.Sequential(
            nn.Linear(64 * POOLED * POOLED, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True)
        )
        self.feature_dim = hidden
        self.classifier = nn.Linear(hidden, num_classes, bias=bias)

    def _flatten(self, x: torch.Tensor) -> torch.Tensor:
        # Adaptive pooling lets 28x28 and 32x32 inputs through the same head as the 8x8 digits.
        return F.adaptive_avg_pool2d(x, POOLED).flatten(1)  # (B, 64 * 16)

    def intermediates(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Globally pooled output of each conv block, (B, 32), (B, 64), (B, 64), then features(x)."""
        out = []
        for block in self.blocks:
            x = block(x)
            out.append(x.mean(dim=(2, 3)))
        out.append(self.head(self._flatten(x)))
        return out

    def mixing_points(self) -> list[nn.Module | None]:
        """Where manifold mixup may blend hidden states: the input (None), then the output of each conv block."""
        return [None, *self.blocks]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Last-layer activations h (B, hidden): the input of the classifier."""
        for block in self.blocks:
            x = block(x)
        return self.head(self._flatten(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, C)."""
        return self.classifier(self.features(x))
