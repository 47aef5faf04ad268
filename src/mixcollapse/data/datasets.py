"""Datasets as the toolkit uses them: a :class:`DataBundle` of train and test views, and their loaders.

:func:`build_datasets` reads any dataset of the catalog (``mixcollapse.catalog``): it finds the files
(:mod:`mixcollapse.data.locate`), calls the spec's reader, and keeps the classes and the number of
images the config asks for. Every dataset in a bundle is a :class:`LabeledView`: samples ``(x, y)``
with ``x`` a normalized float tensor (C, H, W) and ``y`` an int, plus a ``labels`` array readable
without decoding a single image (the analysis draws mixup pairs by class from it). Augmentation
(training set only, ``data.augment``, for specs that allow it): random crop with padding and
horizontal flip, the mixup papers' CIFAR recipe; FashionMNIST and digits are never augmented
(README, "Decisions where the paper is silent").
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from mixcollapse.catalog import resolve
from mixcollapse.config import DataConfig
from mixcollapse.data.batches import TensorBatches, tensor_images
from mixcollapse.data.locate import FAKE_MARKER, DataError, dataset_spec, ensure_files, one_line

# What readers raise on files that exist but are not in the real format (bad pickle, bad IDX magic).
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

    Augmentation applies only to datasets whose spec allows it (see the module docstring). The
    analysis passes ``train_augment=False`` to read training images as they are.
    """
    spec = dataset_spec(cfg)
    augmented = (cfg.augment if train_augment is None else train_augment) and spec.augmentable
    root = ensure_files(cfg)
    try:
        images = resolve(spec.read)(spec, cfg, root, augmented)
    except DataError:
        raise
    except _READ_ERRORS as err:
        where = root / os.path.dirname(spec.files.paths[0]) if root is not None and spec.files else root
        expected = (
            f"; expected the real format: {spec.files.expected}; {spec.files.how.format(root=root)}"
            if spec.files
            else ""
        )
        raise DataError(
            f"{spec.title} files under {where} could not be read ({type(err).__name__}: {one_line(err)}){expected}"
        ) from None
    classes = _check_classes(cfg, len(images.names))
    keep = list(range(len(images.names))) if classes is None else classes
    return DataBundle(
        train=_view(images.train, classes, cfg.train_limit),
        test=_view(images.test, classes, cfg.test_limit),
        num_classes=len(keep),
        in_channels=images.in_channels,
        image_size=images.image_size,
        class_names=[str(images.names[c]) for c in keep],
        name=cfg.name,
        mean=tuple(images.mean),
        std=tuple(images.std),
        synthetic=root is not None and os.path.isfile(os.path.join(root, FAKE_MARKER)),
        source="" if root is None else str(root),
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
            train = TensorBatches(
                train_images.to(device),
                batch_size,
                shuffle=True,
                seed=seed,
                drop_last=drop_last,
                augment=(bundle.crop_padding, bundle.flip),
                **common,
            )
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
