"""The readers and downloads the catalog names (``mixcollapse.catalog``): each turns a dataset's files into
:class:`Images`, the train and test sets with what a model needs to know about them.

A reader is ``read(spec, cfg, root, augment)``: ``root`` the folder :mod:`mixcollapse.data.locate` found
(None for the embedded digits), ``augment`` whether the training set gets ``data.augment``'s crop and flip.
Files that exist but are not in the real format raise the library's own errors; ``build_datasets`` turns
them into one DataError line naming the files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from mixcollapse.catalog import DatasetSpec
from mixcollapse.config import DataConfig
from mixcollapse.data.formats import IDXImages, ImageTensors, read_idx
from mixcollapse.data.locate import file_paths
from mixcollapse.data.transforms import image_transform


@dataclass(frozen=True)
class Images:
    """A dataset's train and test sets (each with ``targets``) and what a model and a figure need about them."""

    train: Dataset
    test: Dataset
    names: list[str]  # class names, by label
    mean: tuple[float, ...]  # per channel: undoes the normalisation when showing images
    std: tuple[float, ...]
    image_size: int
    in_channels: int


def read_digits(spec: DatasetSpec, cfg: DataConfig, root: Path | None, augment: bool) -> Images:
    """scikit-learn's 1797 real 8x8 digits: seeded stratified 80/20 split, normalized by training statistics."""
    train_idx, test_idx, raw = digits_split(cfg.split_seed)
    images = torch.as_tensor(raw.images, dtype=torch.float32).unsqueeze(1) / 16.0  # (N, 1, 8, 8) in [0, 1]
    mean, std = images[train_idx].mean().item(), images[train_idx].std().item()
    images = (images - mean) / std
    labels = raw.target.astype(np.int64)
    return Images(
        ImageTensors(images[train_idx], labels[train_idx]),
        ImageTensors(images[test_idx], labels[test_idx]),
        [str(n) for n in raw.target_names],
        (mean,),
        (std,),
        spec.image_size,
        spec.in_channels,
    )


def digits_split(seed: int) -> tuple[np.ndarray, np.ndarray, object]:
    """Sorted train and test indices of a stratified 80/20 split of the digits, and the sklearn bunch."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    raw = load_digits()
    idx = np.arange(len(raw.target))
    train_idx, test_idx = train_test_split(idx, test_size=0.2, stratify=raw.target, random_state=seed)
    return np.sort(train_idx), np.sort(test_idx), raw


def read_fashionmnist(spec: DatasetSpec, cfg: DataConfig, root: Path, augment: bool) -> Images:
    """FashionMNIST's four IDX files under ``root`` (either layout, plain or .gz), read in place; never augmented."""
    from torchvision.datasets import FashionMNIST

    paths = file_paths(spec, root)
    if paths is None:
        raise OSError(f"the files disappeared from {root}")
    sets = []
    for first in (0, 2):  # train, then test
        images, labels = read_idx(paths[first]), read_idx(paths[first + 1])
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise ValueError(f"images {images.shape} and labels {labels.shape} do not match")
        if labels.size and labels.max() >= spec.num_classes:
            raise ValueError(f"label {int(labels.max())} out of range 0..{spec.num_classes - 1}")
        sets.append(IDXImages(torch.from_numpy(images.copy()), labels, FashionMNIST.classes, spec.mean, spec.std))
    return Images(*sets, list(FashionMNIST.classes), spec.mean, spec.std, spec.image_size, spec.in_channels)


def read_cifar10(spec: DatasetSpec, cfg: DataConfig, root: Path, augment: bool) -> Images:
    from mixcollapse.data.cifar import CIFAR10Files

    return _torchvision_pair(CIFAR10Files, spec, cfg, root, augment)


def read_cifar100(spec: DatasetSpec, cfg: DataConfig, root: Path, augment: bool) -> Images:
    from mixcollapse.data.cifar import CIFAR100Files

    return _torchvision_pair(CIFAR100Files, spec, cfg, root, augment)


def download_fashionmnist(root: str) -> None:
    from torchvision.datasets import FashionMNIST

    FashionMNIST(root, train=True, download=True)


def download_cifar10(root: str) -> None:
    from mixcollapse.data.cifar import CIFAR10Files

    CIFAR10Files(root, train=True, download=True)


def download_cifar100(root: str) -> None:
    from mixcollapse.data.cifar import CIFAR100Files

    CIFAR100Files(root, train=True, download=True)


def _torchvision_pair(cls: type, spec: DatasetSpec, cfg: DataConfig, root: Path, augment: bool) -> Images:
    """A torchvision-style dataset class read twice (train, test) with the per-sample transforms."""
    size, mean, std = spec.image_size, spec.mean, spec.std
    train = cls(str(root), train=True, transform=image_transform(cfg, size, mean, std, augment), download=False)
    test = cls(str(root), train=False, transform=image_transform(cfg, size, mean, std, False), download=False)
    return Images(train, test, list(train.classes), mean, std, size, spec.in_channels)
