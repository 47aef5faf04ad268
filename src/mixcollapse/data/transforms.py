"""torchvision's per-sample path: the augmentation of ``data.augment`` and the normalisation, for datasets read
image by image (CIFAR through a DataLoader, your own image folders)."""

from __future__ import annotations

from collections.abc import Callable

from mixcollapse.config import DataConfig


def image_transform(
    cfg: DataConfig,
    size: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    augment: bool,
    first: tuple[Callable, ...] = (),
) -> Callable:
    """``first`` (e.g. a resize), the crop and flip of ``cfg`` when ``augment``, then ToTensor and
    Normalize(mean, std)."""
    from torchvision import transforms as T

    steps: list[Callable] = list(first)
    if augment:
        if cfg.crop_padding > 0:
            steps.append(T.RandomCrop(size, padding=cfg.crop_padding))
        if cfg.flip:
            steps.append(T.RandomHorizontalFlip())
    return T.Compose([*steps, T.ToTensor(), T.Normalize(mean, std)])
