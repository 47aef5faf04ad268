"""What each dataset of the paper is on disk (Section 2.1): its files, where they are installed, its statistics.

Light on purpose (no torch, no torchvision): the command line and the sweep read names and markers
from here without paying for the readers' imports.
"""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass(frozen=True)
class DiskSpec:
    """Where a torchvision dataset's files live, how to get them, and its image statistics."""

    title: str
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
