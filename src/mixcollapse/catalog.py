"""The datasets the toolkit knows, one :class:`DatasetSpec` each: every other table is derived from here.

A spec holds what a dataset is (title, classes, image size, channels, per-channel training statistics,
full train/test sizes, whether the crop-and-flip augmentation applies), where its files live and how a
user gets them (:class:`Files`), the function that reads it and the one that writes small synthetic
files in its real format for tests. ``config`` checks ``data.name`` against this catalog, ``data``
finds, reads and fakes the files through it, the experiments take titles and sizes from it.

Adding a dataset is one :func:`register` call (a spec here, or in your own script before training)
plus its presets; the paper's experiments name their datasets themselves (``experiments.paper``), so
a new dataset changes no figure of the paper.

Readers and writers are named as ``"module:function"`` (or given as functions): the catalog imports
no torch or torchvision, so the command line reads it in milliseconds, and it sits below every layer
that uses it. A reader is ``read(spec, cfg, root, augment) -> data.readers.Images``; ``root`` is the
folder that holds the files (None for an embedded dataset). A writer is ``write(root) -> Path``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

DATA_ENV = "MIXCOLLAPSE_DATA"  # a folder searched after data.root


@dataclass(frozen=True)
class Files:
    """Where a dataset's files live, relative to a root folder, and how to get them."""

    paths: tuple[str, ...]  # every one must exist (files; folders for your own images; flat: also as .gz)
    expected: str  # the files as named in messages, relative to the root
    how: str  # how to provide them; {root} is filled in
    url: str | None = None  # probed before a download; None: cannot be downloaded
    archive: str | None = None  # an official archive that the download leaves in the root (CIFAR)
    archive_md5: str | None = None
    flat: bool = False  # the files may also lie side by side in the root (basenames, plain or .gz)
    system_dirs: tuple[str, ...] = ()  # where a package manager installs the dataset (``how`` names the command)
    searched: bool = True  # also look in $MIXCOLLAPSE_DATA and system_dirs (False: data.root only)


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset: what it is, where it lives, how it is read and faked."""

    name: str  # data.name
    title: str  # as printed in figures and messages
    read: str | Callable  # "module:function" or a function: (spec, cfg, root, augment) -> Images
    num_classes: int | None = None  # None: known once the files are read (your own images)
    image_size: int | None = None
    in_channels: int | None = None
    mean: tuple[float, ...] | None = None  # per channel, pixels in [0, 1]; None: computed when read
    std: tuple[float, ...] | None = None
    sizes: tuple[int, int] | None = None  # the full training and test sets (the GPU-cost model)
    augmentable: bool = False  # whether data.augment (random crop + horizontal flip) applies
    files: Files | None = None  # None: embedded in a library, nothing to find
    fake: str | Callable | None = None  # writes synthetic files in the real format: (root) -> folder
    download: str | Callable | None = None  # (root) -> None, fetching the files into root


CATALOG: dict[str, DatasetSpec] = {}


def register(spec: DatasetSpec, *, replace: bool = False) -> DatasetSpec:
    """Add ``spec`` to the catalog (``data.name=<spec.name>`` then reads it); ValueError if the name is taken."""
    if spec.name in CATALOG and not replace:
        raise ValueError(f"dataset '{spec.name}' is already registered (pass replace=True to change it)")
    if not spec.name or "-" in spec.name:
        raise ValueError(f"dataset name '{spec.name}' must be non-empty without '-' (run names split on it)")
    CATALOG[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    """Remove a dataset (tests that register their own)."""
    CATALOG.pop(name, None)


def dataset_names() -> tuple[str, ...]:
    return tuple(CATALOG)


def get_spec(name: str) -> DatasetSpec:
    """The spec of ``name``; ValueError naming the known datasets otherwise."""
    try:
        return CATALOG[name]
    except KeyError:
        raise ValueError(f"unknown dataset '{name}' (known: {', '.join(CATALOG)})") from None


def title(name: str) -> str:
    """A dataset's title (``fashionmnist`` -> ``FashionMNIST``); the name itself when it is not registered."""
    return CATALOG[name].title if name in CATALOG else name


def resolve(ref: str | Callable) -> Callable:
    """The function a spec names (``"package.module:function"``), imported now; a function as it is."""
    if callable(ref):
        return ref
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


# ---- the built-in datasets ---------------------------------------------------------------------

_CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
_CIFAR100_URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
_FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_FASHION_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
FOLDER_LAYOUT = "DIR/train/<class>/<image> and DIR/test/<class>/<image> (torchvision's ImageFolder layout)"


def _extract_how(url: str, archive: str) -> str:
    return f"download {url} and extract it into {{root}} (tar xzf {archive} -C {{root}})"


register(
    DatasetSpec(
        name="digits",
        title="digits",
        read="mixcollapse.data.readers:read_digits",
        num_classes=10,
        image_size=8,
        in_channels=1,
        sizes=(1437, 360),
    )
)  # scikit-learn's 1797 real 8x8 digits, a seeded stratified 80/20 split; statistics from its training part
register(
    DatasetSpec(
        name="fashionmnist",
        title="FashionMNIST",
        read="mixcollapse.data.readers:read_fashionmnist",
        num_classes=10,
        image_size=28,
        in_channels=1,
        mean=(0.2860,),
        std=(0.3530,),
        sizes=(60000, 10000),
        files=Files(
            paths=tuple(f"FashionMNIST/raw/{n}" for n in _FASHION_FILES),
            expected="FashionMNIST/raw/" + ", ".join(f"{n}(.gz)" for n in _FASHION_FILES),
            how=f"install them with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or put the four .gz files "
            f"from {_FASHION_URL} (or github.com/zalandoresearch/fashion-mnist, data/fashion) into one folder and pass "
            f"--data-root or set {DATA_ENV}",
            url=_FASHION_URL,
            flat=True,
            system_dirs=("/usr/share/datasets/fashion-mnist",),
        ),
        fake="mixcollapse.data.fake:write_fake_fashionmnist",
        download="mixcollapse.data.readers:download_fashionmnist",
    )
)
register(
    DatasetSpec(
        name="cifar10",
        title="CIFAR10",
        read="mixcollapse.data.readers:read_cifar10",
        num_classes=10,
        image_size=32,
        in_channels=3,
        mean=(0.4914, 0.4822, 0.4465),
        std=(0.2470, 0.2435, 0.2616),
        sizes=(50000, 10000),
        augmentable=True,
        files=Files(
            paths=tuple(
                f"cifar-10-batches-py/{n}"
                for n in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]
            ),
            expected="cifar-10-batches-py/data_batch_1..5, test_batch, batches.meta",
            how=_extract_how(_CIFAR10_URL, "cifar-10-python.tar.gz"),
            url=_CIFAR10_URL,
            archive="cifar-10-python.tar.gz",
            archive_md5="c58f30108f718f92721af3b95e74349a",
        ),
        fake="mixcollapse.data.fake:write_fake_cifar10",
        download="mixcollapse.data.readers:download_cifar10",
    )
)
register(
    DatasetSpec(
        name="cifar100",
        title="CIFAR100",
        read="mixcollapse.data.readers:read_cifar100",
        num_classes=100,
        image_size=32,
        in_channels=3,
        mean=(0.5071, 0.4865, 0.4409),
        std=(0.2673, 0.2564, 0.2762),
        sizes=(50000, 10000),
        augmentable=True,
        files=Files(
            paths=("cifar-100-python/train", "cifar-100-python/test", "cifar-100-python/meta"),
            expected="cifar-100-python/train, test, meta",
            how=_extract_how(_CIFAR100_URL, "cifar-100-python.tar.gz"),
            url=_CIFAR100_URL,
            archive="cifar-100-python.tar.gz",
            archive_md5="eb9058c3a382ffc7106e4002c42a8d85",
        ),
        fake="mixcollapse.data.fake:write_fake_cifar100",
        download="mixcollapse.data.readers:download_cifar100",
    )
)
register(
    DatasetSpec(
        name="imagefolder",
        title="your images",
        read="mixcollapse.data.folders:read_image_folders",
        in_channels=3,
        augmentable=True,
        files=Files(paths=("train", "test"), expected=FOLDER_LAYOUT, how="set data.root to DIR", searched=False),
    )
)  # classes, size and statistics are read from data.root (mixcollapse.data.folders)
