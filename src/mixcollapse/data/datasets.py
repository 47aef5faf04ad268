"""Datasets of the paper (FashionMNIST, CIFAR10, CIFAR100; Section 2.1) and the embedded digits default.

Every dataset in a :class:`DataBundle` is a :class:`LabeledView`: samples ``(x, y)`` with ``x`` a
normalized float tensor (C, H, W) and ``y`` an int, plus a ``labels`` array readable without
decoding a single image (the analysis draws mixup pairs by class from it). Augmentation (training
set only, ``cfg.augment``): CIFAR gets RandomCrop(32, padding) + RandomHorizontalFlip, the mixup
papers' recipe; FashionMNIST and digits are never augmented (README, "Decisions where the paper is
silent"). Normalization uses per-channel training-set mean and std (``specs``).

Where the files are found (:func:`locate_files`, first match wins): ``cfg.root``, then
``$MIXCOLLAPSE_DATA``, then the system folders of ``specs.SPECS`` (Debian's FashionMNIST), each in
torchvision's layout or, for FashionMNIST, the four .gz files side by side; read in place, nothing
written next to them. Missing everywhere: torchvision's download when ``cfg.download``, after a
quick reachability probe; any failure is a ``DataError`` naming every folder searched and how to
install the files.
"""

from __future__ import annotations

import os
import pickle
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from mixcollapse.config import DATASETS, DataConfig
from mixcollapse.data.batches import TensorBatches, set_epoch, tensor_images
from mixcollapse.data.formats import IDXImages, ImageTensors, read_idx
from mixcollapse.data.specs import (
    DATA_ENV,
    DOWNLOAD_HINT,
    DOWNLOAD_TIMEOUT_S,
    FAKE_MARKER,
    PROBE_TIMEOUT_S,
    SPECS,
    DataError,
    DiskSpec,
)


def _loader(spec: DiskSpec) -> type:
    """The torchvision reader of a dataset with files; imported here, so the embedded digits need no torchvision
    (importing it costs about a second)."""
    from torchvision import datasets as tvd

    from mixcollapse.data.cifar import CIFAR10Files, CIFAR100Files

    return {"CIFAR10": CIFAR10Files, "CIFAR100": CIFAR100Files, "FashionMNIST": tvd.FashionMNIST}[spec.title]



@dataclass(frozen=True)
class DataBundle:
    """Train and test datasets with what a model and a figure need to know about them."""

    train: Dataset
    test: Dataset
    num_classes: int
    in_channels: int
    image_size: int
    class_names: list[str]
    name: str
    mean: tuple[float, ...]  # per channel, to undo the normalization when showing images
    std: tuple[float, ...]
    synthetic: bool = False  # files written by mixcollapse.data.fake, not the real dataset
    source: str = ""  # the folder the files were read from ("" for the embedded digits)
    crop_padding: int = 0  # the training set's augmentation in effect: random crop with this zero padding
    flip: bool = False  # and random horizontal flips


class LabeledView(Dataset):
    """Sample ``base[indices[i]]`` relabelled ``labels[i]``: class subsets and limits, labels without decoding."""

    def __init__(self, base: Dataset, indices: np.ndarray, labels: np.ndarray) -> None:
        self.base = base
        self.indices = np.asarray(indices, dtype=np.int64)
        self.labels = np.asarray(labels, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        x, _ = self.base[int(self.indices[index])]
        return x, int(self.labels[index])


def build_datasets(cfg: DataConfig, *, train_augment: bool | None = None) -> DataBundle:
    """Train/test datasets for ``cfg`` (subset, relabelled, limited); ``train_augment`` overrides cfg.augment.

    Augmentation is the CIFAR recipe only (see the module docstring): FashionMNIST and digits
    ignore it. The analysis passes ``train_augment=False`` to read training images as they are.
    """
    if cfg.name not in DATASETS:
        raise DataError(f"unknown dataset '{cfg.name}' (known: {', '.join(DATASETS)})")
    augment = cfg.augment if train_augment is None else train_augment
    augmented = False
    if cfg.name == "digits":
        train, test, names, mean, std = _digits(cfg.split_seed)
        size, channels, synthetic, source = 8, 1, False, ""
    elif cfg.name == "imagefolder":
        from mixcollapse.data.folders import read_image_folders

        augmented = augment
        folders = read_image_folders(cfg, augment)
        train, test, names, mean, std = folders.train, folders.test, folders.names, folders.mean, folders.std
        size, channels, synthetic, source = folders.image_size, 3, False, folders.source
    else:
        spec = SPECS[cfg.name]
        augmented = augment and spec.augmentable
        root = _ensure_files(spec, cfg)
        mean, std, size, channels = spec.mean, spec.std, spec.image_size, spec.in_channels
        train = _load(spec, root, True, image_transform(cfg, size, mean, std, augmented))
        test = _load(spec, root, False, image_transform(cfg, size, mean, std, False))
        names = list(train.classes)
        synthetic = os.path.isfile(os.path.join(root, FAKE_MARKER))
        source = str(root)
    classes = _check_classes(cfg, len(names))
    keep = list(range(len(names))) if classes is None else classes
    return DataBundle(
        train=_view(train, classes, cfg.train_limit),
        test=_view(test, classes, cfg.test_limit),
        num_classes=len(keep),
        in_channels=channels,
        image_size=size,
        class_names=[str(names[c]) for c in keep],
        name=cfg.name,
        mean=tuple(mean),
        std=tuple(std),
        synthetic=synthetic,
        source=source,
        crop_padding=cfg.crop_padding if augmented else 0,
        flip=cfg.flip if augmented else False,
    )


def dataset_labels(dataset) -> np.ndarray:
    """Int labels of a dataset in index order: its ``labels``/``targets`` or a TensorDataset's last tensor,
    else read sample by sample."""
    for name in ("labels", "targets"):
        labels = getattr(dataset, name, None)
        if labels is not None and len(labels) == len(dataset):
            return np.asarray(labels, dtype=np.int64)
    if isinstance(dataset, torch.utils.data.TensorDataset):
        return dataset.tensors[-1].cpu().numpy().astype(np.int64)
    return np.array([int(dataset[i][1]) for i in range(len(dataset))], dtype=np.int64)


def train_labels(bundle: DataBundle) -> np.ndarray:
    """Int labels of the training set in index order, without decoding images (for drawing pairs by class)."""
    labels = getattr(bundle.train, "labels", None)
    if labels is not None:
        return np.array(labels, dtype=np.int64)
    return np.array([int(bundle.train[i][1]) for i in range(len(bundle.train))], dtype=np.int64)  # user datasets


def build_loaders(
    bundle: DataBundle,
    batch_size: int,
    *,
    pipeline: str = "tensor",
    device: torch.device | str = "cpu",
    channels_last: bool = False,
    num_workers: int = 0,
    seed: int = 0,
    distributed: bool = False,
    drop_last: bool = True,
    pin_memory: bool = False,
) -> tuple[DataLoader | TensorBatches, DataLoader | TensorBatches]:
    """Seeded shuffling train loader and ordered test loader; each epoch, call ``batches.set_epoch`` (DDP).

    ``pipeline="tensor"``: the built-in datasets held as tensors on ``device``, batches built with tensor
    operations (mixcollapse.data.batches; ``num_workers`` and ``pin_memory`` unused); users' own
    datasets fall back to the per-sample path. ``pipeline="loader"``: torchvision's per-sample
    transforms in a DataLoader. Distributed: the train set is split as by a DistributedSampler (padded,
    shuffled with ``seed``); the test set by disjoint unpadded shards ``rank::world``, so summed counts
    are exact. ``drop_last`` is ignored when a rank holds fewer than ``batch_size`` training samples.
    """
    if pipeline == "tensor":
        train_images = tensor_images(bundle.train, bundle.mean, bundle.std)
        test_images = tensor_images(bundle.test, bundle.mean, bundle.std)
        if train_images is not None and test_images is not None:
            shard = (torch.distributed.get_rank(), torch.distributed.get_world_size()) if distributed else None
            common = {"shard": shard, "channels_last": channels_last}
            train = TensorBatches(train_images.to(device), batch_size, shuffle=True, seed=seed, drop_last=drop_last,
                                  augment=(bundle.crop_padding, bundle.flip), **common)
            return train, TensorBatches(test_images.to(device), batch_size, shuffle=False, **common)
    elif pipeline != "loader":
        raise ValueError(f"unknown data pipeline '{pipeline}' (known: tensor, loader)")
    # Workers start anew each epoch (not persistent), seeded from the loader's generator, which the checkpoint
    # holds: the augmentations of an epoch depend only on (seed, epoch), so a resumed run sees the same ones.
    extra = {"num_workers": num_workers, "pin_memory": pin_memory, "persistent_workers": False}
    if distributed:
        train_sampler: Sampler = DistributedSampler(bundle.train, shuffle=True, seed=seed)
        test_sampler: Sampler | None = ShardSampler(len(bundle.test))
        per_rank = len(train_sampler)
        train_kwargs = {"sampler": train_sampler}
    else:
        test_sampler = None
        per_rank = len(bundle.train)
        train_kwargs = {"shuffle": True, "generator": torch.Generator().manual_seed(seed)}
    train_loader = DataLoader(
        bundle.train, batch_size=batch_size, drop_last=drop_last and per_rank >= batch_size, **train_kwargs, **extra
    )
    test_loader = DataLoader(bundle.test, batch_size=batch_size, shuffle=False, sampler=test_sampler, **extra)
    return train_loader, test_loader


class ShardSampler(Sampler[int]):
    """Indices ``rank, rank + world, ...`` of ``n`` items: disjoint, unpadded shards for evaluation."""

    def __init__(self, n: int, rank: int | None = None, world: int | None = None) -> None:
        dist = torch.distributed
        self.rank = dist.get_rank() if rank is None else rank
        self.world = dist.get_world_size() if world is None else world
        self.n = n

    def __iter__(self):
        return iter(range(self.rank, self.n, self.world))

    def __len__(self) -> int:
        return len(range(self.rank, self.n, self.world))


def files_present(cfg: DataConfig) -> bool:
    """Whether ``cfg``'s dataset can be read without a download (digits: always); see :func:`locate_files`."""
    if cfg.name == "imagefolder":
        return all((Path(cfg.root) / part).is_dir() for part in ("train", "test"))
    return cfg.name == "digits" or locate_files(cfg) is not None


def ensure_files(cfg: DataConfig) -> Path | None:
    """The folder holding ``cfg``'s files, downloading into cfg.root when ``cfg.download``; else DataError."""
    if cfg.name == "digits":
        return None
    if cfg.name == "imagefolder":
        if not files_present(cfg):
            raise DataError(f"data.name=imagefolder needs {cfg.root}/train and {cfg.root}/test (set data.root)")
        return Path(cfg.root)
    return _ensure_files(SPECS[cfg.name], cfg)


# ---- internals -------------------------------------------------------------------------------


def _check_classes(cfg: DataConfig, total: int) -> list[int] | None:
    if cfg.classes is None:
        return None
    classes = [int(c) for c in cfg.classes]
    if len(set(classes)) != len(classes) or any(not 0 <= c < total for c in classes):
        raise DataError(f"data.classes={cfg.classes} must be distinct indices in 0..{total - 1} for {cfg.name}")
    return classes


def _view(base: Dataset, classes: list[int] | None, limit: int | None) -> LabeledView:
    """Keep ``classes`` (relabelled 0..k-1 in the given order) and then the first ``limit`` samples."""
    labels = np.asarray(base.targets, dtype=np.int64)  # torchvision CIFAR: list; FashionMNIST: tensor
    if classes is None:
        indices = np.arange(len(labels))
    else:
        lut = np.full(max(int(labels.max(initial=0)), *classes) + 1, -1, dtype=np.int64)
        lut[classes] = np.arange(len(classes))
        indices = np.flatnonzero(lut[labels] >= 0)
        labels = lut[labels]
    indices = indices[:limit]
    return LabeledView(base, indices, labels[indices])


def image_transform(cfg: DataConfig, size: int, mean: tuple[float, ...], std: tuple[float, ...], augment: bool,
                    first: tuple[Callable, ...] = ()) -> Callable:
    """torchvision's per-sample path: ``first`` (e.g. a resize), the crop and flip of ``cfg`` when ``augment``, then
    ToTensor and Normalize(mean, std)."""
    from torchvision import transforms as T

    steps: list[Callable] = list(first)
    if augment:
        if cfg.crop_padding > 0:
            steps.append(T.RandomCrop(size, padding=cfg.crop_padding))
        if cfg.flip:
            steps.append(T.RandomHorizontalFlip())
    return T.Compose([*steps, T.ToTensor(), T.Normalize(mean, std)])


def _digits(split_seed: int) -> tuple[ImageTensors, ImageTensors, list[str], tuple[float], tuple[float]]:
    """scikit-learn's 1797 real 8x8 digits: seeded stratified 80/20 split, normalized by training statistics."""
    train_idx, test_idx, raw = digits_split(split_seed)
    images = torch.as_tensor(raw.images, dtype=torch.float32).unsqueeze(1) / 16.0  # (N, 1, 8, 8) in [0, 1]
    mean, std = images[train_idx].mean().item(), images[train_idx].std().item()
    images = (images - mean) / std
    labels = raw.target.astype(np.int64)
    names = [str(n) for n in raw.target_names]
    return (
        ImageTensors(images[train_idx], labels[train_idx]),
        ImageTensors(images[test_idx], labels[test_idx]),
        names,
        (mean,),
        (std,),
    )


def digits_split(seed: int) -> tuple[np.ndarray, np.ndarray, object]:
    """Sorted train and test indices of a stratified 80/20 split of the digits, and the sklearn bunch."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    raw = load_digits()
    idx = np.arange(len(raw.target))
    train_idx, test_idx = train_test_split(idx, test_size=0.2, stratify=raw.target, random_state=seed)
    return np.sort(train_idx), np.sort(test_idx), raw


def search_roots(spec: DiskSpec, root: str) -> list[Path]:
    """The folders searched for ``spec``'s files, in order: ``root``, $MIXCOLLAPSE_DATA, the system folders."""
    roots = [Path(root)]
    if os.environ.get(DATA_ENV):
        roots.append(Path(os.environ[DATA_ENV]))
    roots += [Path(d) for d in spec.system_dirs]
    return list(dict.fromkeys(roots))


def _find(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / (name + ".gz")):
        if candidate.is_file():
            return candidate
    return None


def _layout(spec: DiskSpec, root: Path) -> list[Path] | None:
    """The paths of ``spec``'s files under ``root`` (torchvision's layout, or side by side), else None."""
    layouts = [[root / f for f in spec.files]]
    if spec.flat:
        layouts.append([root / os.path.basename(f) for f in spec.files])
    for paths in layouts:
        found = [_find(p.parent, p.name) if spec.flat else (p if p.is_file() else None) for p in paths]
        if all(found):
            return found
    return None


def locate_files(cfg: DataConfig) -> Path | None:
    """The first folder of :func:`search_roots` that holds ``cfg``'s dataset (None when none does; digits: None)."""
    if cfg.name not in SPECS:
        return None
    spec = SPECS[cfg.name]
    return next((r for r in search_roots(spec, cfg.root) if _layout(spec, r) is not None), None)


def _ensure_files(spec: DiskSpec, cfg: DataConfig) -> Path:
    """The folder holding ``spec``'s files; else download them into cfg.root (``cfg.download``) or raise DataError."""
    found = locate_files(cfg)
    if found is not None:
        return found
    root = cfg.root
    if not cfg.download:
        raise DataError(_missing(spec, cfg, "data.download is false"))
    archive = None if spec.archive is None else os.path.join(root, spec.archive)
    archive_here = False
    if archive is not None:  # a complete official archive is extracted by torchvision without the network
        from torchvision.datasets.utils import check_integrity

        archive_here = check_integrity(archive, _loader(spec).tgz_md5)
    if not archive_here and not _reachable(spec.url):
        raise DataError(_missing(spec, cfg, f"no network: cannot reach {urlparse(spec.url).hostname}"))
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)  # fail instead of hanging on a stalled connection
    try:
        _loader(spec)(root, train=True, download=True)
    except Exception as err:  # URLError, socket errors, HTTP errors, md5 RuntimeError, bad archives
        raise DataError(_missing(spec, cfg, f"download failed: {_one_line(err)}")) from None
    finally:
        socket.setdefaulttimeout(previous)
    if _layout(spec, Path(root)) is None:
        raise DataError(_missing(spec, cfg, "download finished but files are still missing"))
    return Path(root)


# What torchvision raises on files that exist but are not in the real format (bad pickle, bad IDX magic).
_READ_ERRORS = (
    OSError,
    RuntimeError,
    EOFError,
    pickle.UnpicklingError,
    KeyError,
    ValueError,
    AssertionError,
    TypeError,
)


def _load(spec: DiskSpec, root: Path, train: bool, transform: Callable) -> Dataset:
    try:
        if spec.flat:
            return _read_fashionmnist(spec, root, train)
        return _loader(spec)(str(root), train=train, transform=transform, download=False)
    except _READ_ERRORS as err:
        where = os.path.join(root, os.path.dirname(spec.files[0]))
        raise DataError(
            f"{spec.title} files under {where} could not be read ({type(err).__name__}: {_one_line(err)}); "
            f"expected the real format: {spec.expected}; {spec.how.format(root=root)}"
        ) from None


def _read_fashionmnist(spec: DiskSpec, root: Path, train: bool) -> IDXImages:
    """FashionMNIST's four IDX files under ``root`` (either layout, plain or .gz), read in place."""
    paths = _layout(spec, root)
    if paths is None:
        raise OSError(f"the files disappeared from {root}")
    first = 0 if train else 2
    images, labels = read_idx(paths[first]), read_idx(paths[first + 1])
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(f"images {images.shape} and labels {labels.shape} do not match")
    if labels.size and labels.max() >= len(_loader(spec).classes):
        raise ValueError(f"label {int(labels.max())} out of range 0..{len(_loader(spec).classes) - 1}")
    return IDXImages(torch.from_numpy(images.copy()), labels, _loader(spec).classes, spec.mean, spec.std)


def _missing(spec: DiskSpec, cfg: DataConfig, reason: str) -> str:
    searched = []
    for r in search_roots(spec, cfg.root):
        searched.append(f"{r.as_posix()}/{os.path.dirname(spec.files[0])}")
        if spec.flat:
            searched.append(r.as_posix())
    tail = "" if cfg.download else DOWNLOAD_HINT
    return (
        f"{spec.title} data not found ({reason}): searched {', '.join(searched)} for {spec.expected}; "
        f"{spec.how.format(root=cfg.root)}{tail}"
    )


def _one_line(err: BaseException, limit: int = 200) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _reachable(url: str, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Whether a TCP connection to ``url``'s host opens within ``timeout`` (DNS included, via a thread)."""
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    ok: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((parsed.hostname, port), timeout=timeout):
                ok.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 1.0)
    return bool(ok)


__all__ = [
    "DataBundle",
    "DataError",
    "LabeledView",
    "ImageTensors",
    "IDXImages",
    "read_idx",
    "locate_files",
    "search_roots",
    "DATA_ENV",
    "ShardSampler",
    "build_datasets",
    "build_loaders",
    "set_epoch",
    "TensorBatches",
    "train_labels",
    "files_present",
    "ensure_files",
    "digits_split",
    "FAKE_MARKER",
]
