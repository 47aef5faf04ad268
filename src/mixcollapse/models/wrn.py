"""WideResNet-depth-width for small images (Zagoruyko & Komodakis, 2016; the paper: WRN-40-10).

Written by hand: no well-kept library ships the CIFAR WideResNet (timm and torchvision only have
the ImageNet variants with a 7x7 stem and max-pool). The layout, quirks included, follows the
widely used reference implementation (xternalz/WideResNet-pytorch): pre-activation blocks, a 1x1
shortcut convolution where the shape changes, Kaiming (fan-out) initialisation, no dropout.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class BasicBlock(nn.Module):
    """Pre-activation residual block: BN-ReLU-conv3x3, BN-ReLU-conv3x3, plus the shortcut."""

    def __init__(self, in_planes: int, out_planes: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, stride=1, padding=1, bias=False)
        self.equal_in_out = in_planes == out_planes and stride == 1
        self.shortcut = None if self.equal_in_out else nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = F.relu(self.bn1(x))
        out = self.conv2(F.relu(self.bn2(self.conv1(a))))
        # As in the reference: a projection shortcut sees the activated input, an identity one the raw input.
        return out + (x if self.shortcut is None else self.shortcut(a))


def _group(in_planes: int, out_planes: int, num_blocks: int, stride: int) -> nn.Sequential:
    """One stage: the first block changes width and resolution, the rest keep them."""
    first = BasicBlock(in_planes, out_planes, stride)
    return nn.Sequential(first, *(BasicBlock(out_planes, out_planes, 1) for _ in range(num_blocks - 1)))


class WideResNet(nn.Module):
    """WRN-depth-width; features are the globally average-pooled final activations (dim 64 * width).

    Adaptive average pooling makes any input size >= 8 work (32x32 CIFAR, 28x28 FashionMNIST
    as the paper used it), not only the 8x8 final map of a 32x32 input.
    """

    def __init__(self, depth: int, width: int, num_classes: int, in_channels: int = 3, bias: bool = True) -> None:
        super().__init__()
        if (depth - 4) % 6 != 0 or depth < 10:
            raise ValueError(f"a WideResNet needs depth = 6n + 4 with n >= 1 (e.g. 16, 28, 40), got depth={depth}")
        n = (depth - 4) // 6
        widths = [16, 16 * width, 32 * width, 64 * width]
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, stride=1, padding=1, bias=False)
        self.stages = nn.ModuleList([_group(widths[i], widths[i + 1], n, stride) for i, stride in enumerate((1, 2, 2))])
        self.bn = nn.BatchNorm2d(widths[3])
        self.feature_dim = widths[3]
        self.classifier = nn.Linear(self.feature_dim, num_classes, bias=bias)
        self._init_weights()

    def _init_weights(self) -> None:
        """Kaiming normal (fan-out) convolutions, unit BN, zero linear bias: the reference's init."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)

    def intermediates(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Pooled activations after each stage, (B, 16k), (B, 32k), (B, 64k); the last is features(x)."""
        x = self.conv1(x)
        out = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i == len(self.stages) - 1:
                x = F.relu(self.bn(x))
            out.append(F.adaptive_avg_pool2d(x, 1).flatten(1))
        return out

    def mixing_points(self) -> list[nn.Module | None]:
        """Where manifold mixup may blend hidden states: the input (None), then the output of each stage."""
        return [None, *self.stages]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Last-layer activations h (B, 64k): the input of the classifier."""
        x = self.conv1(x)
        for stage in self.stages:
            x = stage(x)
        x = F.relu(self.bn(x))
        return F.adaptive_avg_pool2d(x, 1).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, C)."""
        return self.classifier(self.features(x))
