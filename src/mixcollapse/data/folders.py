"""Your own images from the command line: ``data.name=imagefolder data.root=DIR``.

``DIR/train/<class>/*`` and ``DIR/test/<class>/*`` in torchvision's ImageFolder layout (any image
format PIL reads; images are converted to RGB). Class names are the folder names, in sorted order
(``data.classes`` indexes them); test/ must hold the same class folders as train/. Every image is
resized to ``data.image_size`` x ``data.image_size`` (default: the first training image's size, which
must then be square). Normalisation: ``data.mean`` and ``data.std`` when given, else the per-channel
mean and standard deviation of the training pixels at that size, over at most
``STATISTICS_IMAGES`` training images drawn with ``data.split_seed``. Augmentation as for CIFAR
(``data.augment``: random crop with ``data.crop_padding`` and horizontal flip). Batches come from
torchvision's per-sample transforms in a DataLoader (``data.num_workers`` workers).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mixcollapse.catalog import FOLDER_LAYOUT as LAYOUT
from mixcollapse.catalog import DatasetSpec
from mixcollapse.config import DataConfig
from mixcollapse.data.locate import DataError
from mixcollapse.data.readers import Images
from mixcollapse.data.transforms import image_transform

STATISTICS_IMAGES = 2000


def read_image_folders(spec: DatasetSpec, cfg: DataConfig, root: Path, augment: bool) -> Images:
    """train/ and test/ of ``root`` as ImageFolder datasets (resized, normalised, augmented when asked)."""
    from torchvision import datasets as tvd
    from torchvision import transforms as T

    root = Path(root)
    for part in ("train", "test"):
        if not (root / part).is_dir():
            raise DataError(f"data.name=imagefolder reads {LAYOUT}; {root / part} is not a folder (set data.root)")
    probe = _image_folder(tvd, root / "train", None)
    size = cfg.image_size or _first_size(probe)
    resize = [T.Resize((size, size))]
    if cfg.mean is not None and cfg.std is not None:
        mean, std = tuple(float(v) for v in cfg.mean), tuple(float(v) for v in cfg.std)
    else:
        mean, std = folder_statistics(
            _image_folder(tvd, root / "train", T.Compose([*resize, T.ToTensor()])), STATISTICS_IMAGES, cfg.split_seed
        )
    train = _image_folder(tvd, root / "train", image_transform(cfg, size, mean, std, augment, first=tuple(resize)))
    test = _image_folder(tvd, root / "test", image_transform(cfg, size, mean, std, False, first=tuple(resize)))
    if test.classes != train.classes:
        raise DataError(
            f"{root / 'test'} has the class folders {test.classes}, {root / 'train'} has {train.classes}: "
            "give both the same class folders"
        )
    return Images(train, test, list(train.classes), mean, std, size, spec.in_channels)


def folder_statistics(dataset, limit: int, seed: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) standard deviation of the pixels of at most ``limit`` images of
    ``dataset`` (tensors in [0, 1]), drawn with ``seed``; accumulated in float64."""
    n = len(dataset)
    chosen = np.sort(np.random.default_rng(seed).choice(n, min(n, limit), replace=False))
    total = square = None
    count = 0
    for i in chosen:
        x = dataset[int(i)][0].to(torch.float64).flatten(1)  # (C, H*W)
        total = x.sum(1) if total is None else total + x.sum(1)
        square = (x * x).sum(1) if square is None else square + (x * x).sum(1)
        count += x.shape[1]
    mean = total / count
    std = (square / count - mean * mean).clamp_min(0).sqrt()
    if (std == 0).any():
        raise DataError(
            "a channel of the training images is constant (standard deviation 0); give data.mean and data.std"
        )
    return tuple(mean.tolist()), tuple(std.tolist())


def _image_folder(tvd, folder: Path, transform):
    try:
        return tvd.ImageFolder(str(folder), transform=transform)
    except (FileNotFoundError, OSError) as err:  # no class folders, or class folders without images
        raise DataError(f"{folder}: {str(err).splitlines()[0]}; data.name=imagefolder reads {LAYOUT}") from None


def _first_size(dataset) -> int:
    path = dataset.samples[0][0]
    width, height = dataset.loader(path).size
    if width != height:
        raise DataError(
            f"{path} is {width}x{height}, not square: set data.image_size (every image is resized to a "
            "square of that side)"
        )
    return int(width)
