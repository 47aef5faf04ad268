"""Datasets of the paper (FashionMNIST, CIFAR10, CIFAR100; Section 2.1) and the embedded digits default.

Every dataset in a :class:`DataBundle` is a :class:`LabeledView`: samples ``(x, y)`` with ``x`` a
normalized float tensor (C, H, W) and ``y`` an int, plus a ``labels`` array readable without
decoding a single image (the analysis draws mixup pairs by class from it).

Augmentation (training set only, ``cfg.augment``): CIFAR10/100 get the standard mixup-paper
recipe, RandomCrop(32, padding=cfg.crop_padding) + RandomHorizontalFlip (when cfg.flip).
FashionMNIST and digits are never augmented: the paper does not say it augmented FashionMNIST,
neural-collapse studies usually train it without augmentation, and a random crop of an 8x8 digit
removes much of the digit. ``cfg.augment`` therefore switches only the CIFAR recipe.

Normalization uses per-channel training-set mean/std: the standard CIFAR10, CIFAR100 and
FashionMNIST values below; for digits they are computed on the digits training split.

Where the files are found (:func:`locate_files`), first match wins: ``cfg.root`` (``--data-root``),
then the folder named by the environment variable ``MIXCOLLAPSE_DATA``, then the system folders
where a package manager installs the dataset (FashionMNIST: ``/usr/share/datasets/fashion-mnist``,
from Debian's ``apt-get install dataset-fashion-mnist``). In each folder torchvision's layout
(``ROOT/FashionMNIST/raw/*``, ``ROOT/cifar-10-batches-py/*``) is accepted, and for FashionMNIST also
the four files side by side (``ROOT/*-ubyte.gz``, the layout of the original distribution and of the
Debian package). FashionMNIST is read where it lies: the .gz files are decompressed in memory and
the images are held as one uint8 tensor (47 MB), so nothing is ever written next to the data (the
system folder is read-only) and no per-image PIL conversion is paid. When the files are found
nowhere, torchvision's download into ``cfg.root`` is tried (``cfg.download``) after a quick
reachability probe; any failure becomes a :class:`DataError` whose one-line message names every
folder searched, the expected files and how to install them.
"""

from __future__ import annotations

import gzip
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
from torchvision import datasets as tvd
from torchvision import transforms as T
from torchvision.datasets.utils import check_integrity

from mixcollapse.config import DATASETS, NUM_CLASSES, DataConfig

# Per-channel mean/std of each training set (pixels scaled to [0, 1]).
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
FASHIONMNIST_MEAN, FASHIONMNIST_STD = (0.2860,), (0.3530,)

DATA_ENV = "MIXCOLLAPSE_DATA"  # a folder searched after data.root
FAKE_MARKER = "FAKE_DATA.txt"  # written by mixcollapse.data.fake into every root of synthetic files
DOWNLOAD_HINT = ", or run with data.download=true on a machine with network access"
PROBE_TIMEOUT_S = 3.0  # reachability probe before a download (DNS can hang when offline)
DOWNLOAD_TIMEOUT_S = 30.0  # per socket operation while torchvision downloads


class DataError(ValueError):
    """Data is missing or unreadable; the one-line message names the files and how to provide them."""


# The globals a CIFAR batch file may name: numpy's array reconstruction (numpy 1 and 2 spellings). Dicts,
# lists, strings, bytes and numbers need none. Anything else (os.system via __reduce__, ...) is refused.
_CIFAR_PICKLE_GLOBALS = frozenset(
    (module, name)
    for module in ("numpy.core.multiarray", "numpy._core.multiarray")
    for name in ("_reconstruct", "scalar")
) | {("numpy", "ndarray"), ("numpy", "dtype")}


class _CIFARUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _CIFAR_PICKLE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"refusing to load {module}.{name}: a CIFAR file holds only arrays, lists, strings and numbers"
        )


def load_cifar_pickle(path: str | Path) -> dict:
    """A CIFAR batch or meta file, unpickled with only numpy's array globals allowed (no code runs from it)."""
    with open(path, "rb") as f:
        entry = _CIFARUnpickler(f, encoding="latin1").load()
    if not isinstance(entry, dict):
        raise pickle.UnpicklingError(f"{path} holds a {type(entry).__name__}, not a CIFAR dict")
    return entry


class _SafeCIFAR:
    """torchvision's CIFAR loading with two changes.

    Presence, not md5: torchvision compares every batch file's md5 with the official archive's, so files in the real
    format written by anything else (mixcollapse.data.fake, a re-pickled copy) are rejected; the download still
    verifies the archive (tgz_md5 is kept). No code from data files: torchvision unpickles the files as they
    are, so a hostile ``data_batch_1`` would run its ``__reduce__``; here :func:`load_cifar_pickle` admits only
    numpy's array globals.
    """

    def __init__(self, root, train: bool = True, transform=None, target_transform=None, download: bool = False):
        tvd.VisionDataset.__init__(self, root, transform=transform, target_transform=target_transform)
        self.train = train
        if download:
            self.download()
        if not self._check_integrity():
            raise RuntimeError("Dataset not found or corrupted. You can use download=True to download it")
        data, targets = [], []
        for file_name, _ in self.train_list if train else self.test_list:
            entry = load_cifar_pickle(os.path.join(self.root, self.base_folder, file_name))
            data.append(entry["data"])
            targets.extend(entry["labels"] if "labels" in entry else entry["fine_labels"])
        self.data = np.vstack(data).reshape(-1, 3, 32, 32).transpose((0, 2, 3, 1))  # HWC
        self.targets = targets
        meta = load_cifar_pickle(os.path.join(self.root, self.base_folder, self.meta["filename"]))
        self.classes = meta[self.meta["key"]]
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}


class CIFAR10Files(_SafeCIFAR, tvd.CIFAR10):
    """torchvision's CIFAR10 reading any files in the real layout (presence, not md5), running no code from them."""

    train_list = [[name, None] for name, _ in tvd.CIFAR10.train_list]
    test_list = [[name, None] for name, _ in tvd.CIFAR10.test_list]
    meta = {**tvd.CIFAR10.meta, "md5": None}


class CIFAR100Files(_SafeCIFAR, tvd.CIFAR100):
    """torchvision's CIFAR100 reading any files in the real layout (presence, not md5), running no code from them."""

    train_list = [[name, None] for name, _ in tvd.CIFAR100.train_list]
    test_list = [[name, None] for name, _ in tvd.CIFAR100.test_list]
    meta = {**tvd.CIFAR100.meta, "md5": None}


@dataclass(frozen=True)
class DiskSpec:
    """Where a torchvision dataset's files live, how to get them, and its image statistics."""

    title: str
    loader: type
    files: tuple[str, ...]  # relative to root; all must exist (FashionMNIST: or their .gz)
    expected: str  # the files as named in messages, relative to root
    how: str  # how to provide them; {root} is filled in
    url: str  # probed before a download
    archive: str | None  # the official archive torchvision downloads into root (CIFAR)
    mean: tuple[float, ...]
    std: tuple[float, ...]
    image_size: int
    in_channels: int
    augmentable: bool  # whether cfg.augment (crop + flip) applies
    flat: bool = False  # the files may also lie side by side in the root (basenames only)
    system_dirs: tuple[str, ...] = ()  # where a package manager installs the dataset (`how` names the command)


_CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
_CIFAR100_URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
_FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_FASHION_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

SPECS: dict[str, DiskSpec] = {
    "cifar10": DiskSpec(
        title="CIFAR10",
        loader=CIFAR10Files,
        files=tuple(
            f"cifar-10-batches-py/{n}"
            for n in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]
        ),
        expected="cifar-10-batches-py/data_batch_1..5, test_batch, batches.meta",
        how=f"download {_CIFAR10_URL} and extract it into {{root}} (tar xzf cifar-10-python.tar.gz -C {{root}})",
        url=_CIFAR10_URL,
        archive="cifar-10-python.tar.gz",
        mean=CIFAR10_MEAN,
        std=CIFAR10_STD,
        image_size=32,
        in_channels=3,
        augmentable=True,
    ),
    "cifar100": DiskSpec(
        title="CIFAR100",
        loader=CIFAR100Files,
        files=("cifar-100-python/train", "cifar-100-python/test", "cifar-100-python/meta"),
        expected="cifar-100-python/train, test, meta",
        how=f"download {_CIFAR100_URL} and extract it into {{root}} (tar xzf cifar-100-python.tar.gz -C {{root}})",
        url=_CIFAR100_URL,
        archive="cifar-100-python.tar.gz",
        mean=CIFAR100_MEAN,
        std=CIFAR100_STD,
        image_size=32,
        in_channels=3,
        augmentable=True,
    ),
    "fashionmnist": DiskSpec(
        title="FashionMNIST",
        loader=tvd.FashionMNIST,
        files=tuple(f"FashionMNIST/raw/{n}" for n in _FASHION_FILES),
        expected="FashionMNIST/raw/" + ", ".join(f"{n}(.gz)" for n in _FASHION_FILES),
        how=f"install them with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or put the four .gz files "
        f"from {_FASHION_URL} (or github.com/zalandoresearch/fashion-mnist, data/fashion) into one folder and pass "
        f"--data-root or set {DATA_ENV}",
        url=_FASHION_URL,
        archive=None,
        mean=FASHIONMNIST_MEAN,
        std=FASHIONMNIST_STD,
        image_size=28,
        in_channels=1,
        augmentable=False,
        flat=True,
        system_dirs=("/usr/share/datasets/fashion-mnist",),
    ),
}


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


class ImageTensors(Dataset):
    """In-memory images (N, C, H, W) and int labels (the embedded digits)."""

    def __init__(self, images: torch.Tensor, labels: np.ndarray) -> None:
        self.images = images
        self.targets = np.asarray(labels, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], int(self.targets[index])


class IDXImages(Dataset):
    """Grey images held as one uint8 tensor (N, H, W), normalized per sample on access.

    ``x = (uint8 / 255 - mean) / std`` with the same float32 operations as torchvision's
    ToTensor + Normalize, so a sample is bitwise the one torchvision's FashionMNIST would give.
    """

    def __init__(self, images: torch.Tensor, labels: np.ndarray, classes: list[str],
                 mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        self.images = images
        self.targets = np.asarray(labels, dtype=np.int64)
        self.classes = list(classes)
        self._mean = torch.as_tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self._std = torch.as_tensor(std, dtype=torch.float32).view(-1, 1, 1)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        x = self.images[index].unsqueeze(0).to(torch.float32).div(255)
        return x.sub_(self._mean).div_(self._std), int(self.targets[index])


def read_idx(path: str | Path) -> np.ndarray:
    """An IDX file (the MNIST format: big-endian header, then the array), plain or .gz, read in memory.

    Hand-written because torchvision's reader takes only an uncompressed path, and decompressing
    next to a read-only system copy is not possible; ``tests`` compare it with torchvision's reader.
    """
    path = str(path)
    with (gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")) as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path} is not an IDX file of unsigned bytes (bad magic number)")
    ndim = data[3]
    dims = [int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4)]
    array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if array.size != int(np.prod(dims)):
        raise ValueError(f"{path} holds {array.size} values where its header says {dims} (truncated?)")
    return array.reshape(dims)


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
    classes = _check_classes(cfg)
    augment = cfg.augment if train_augment is None else train_augment
    if cfg.name == "digits":
        train, test, names, mean, std = _digits(cfg.split_seed)
        size, channels, synthetic, source = 8, 1, False, ""
    else:
        spec = SPECS[cfg.name]
        root = _ensure_files(spec, cfg)
        mean, std, size, channels = spec.mean, spec.std, spec.image_size, spec.in_channels
        train = _load(spec, root, True, _transform(spec, cfg, augment and spec.augmentable))
        test = _load(spec, root, False, _transform(spec, cfg, False))
        names = list(train.classes)
        synthetic = os.path.isfile(os.path.join(root, FAKE_MARKER))
        source = str(root)
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
    )


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
    num_workers: int = 0,
    seed: int = 0,
    distributed: bool = False,
    drop_last: bool = True,
    pin_memory: bool = False,
) -> tuple[DataLoader, DataLoader]:
    """Seeded shuffling train loader and ordered test loader; under DDP call ``train_loader.sampler.set_epoch``.

    Distributed: the train set is split by a DistributedSampler (padded, shuffled with ``seed``);
    the test set by disjoint unpadded shards ``rank::world``, so summed counts are exact.
    ``drop_last`` is ignored when a rank holds fewer than ``batch_size`` training samples (tiny runs).
    """
    extra = {"num_workers": num_workers, "pin_memory": pin_memory, "persistent_workers": num_workers > 0}
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
    return cfg.name == "digits" or locate_files(cfg) is not None


def ensure_files(cfg: DataConfig) -> Path | None:
    """The folder holding ``cfg``'s files, downloading into cfg.root when ``cfg.download``; else DataError."""
    if cfg.name == "digits":
        return None
    return _ensure_files(SPECS[cfg.name], cfg)


# ---- internals -------------------------------------------------------------------------------


def _check_classes(cfg: DataConfig) -> list[int] | None:
    if cfg.classes is None:
        return None
    total = NUM_CLASSES[cfg.name]
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


def _transform(spec: DiskSpec, cfg: DataConfig, augment: bool) -> Callable:
    steps: list[Callable] = []
    if augment:
        if cfg.crop_padding > 0:
            steps.append(T.RandomCrop(spec.image_size, padding=cfg.crop_padding))
        if cfg.flip:
            steps.append(T.RandomHorizontalFlip())
    return T.Compose([*steps, T.ToTensor(), T.Normalize(spec.mean, spec.std)])


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
    if cfg.name == "digits":
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
    # A complete official archive in root is extracted by torchvision without the network.
    archive_here = spec.archive is not None and check_integrity(os.path.join(root, spec.archive), spec.loader.tgz_md5)
    if not archive_here and not _reachable(spec.url):
        raise DataError(_missing(spec, cfg, f"no network: cannot reach {urlparse(spec.url).hostname}"))
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)  # fail instead of hanging on a stalled connection
    try:
        spec.loader(root, train=True, download=True)
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
        return spec.loader(str(root), train=train, transform=transform, download=False)
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
    if labels.size and labels.max() >= len(spec.loader.classes):
        raise ValueError(f"label {int(labels.max())} out of range 0..{len(spec.loader.classes) - 1}")
    return IDXImages(torch.from_numpy(images.copy()), labels, spec.loader.classes, spec.mean, spec.std)


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
    "train_labels",
    "files_present",
    "ensure_files",
    "digits_split",
    "FAKE_MARKER",
]
