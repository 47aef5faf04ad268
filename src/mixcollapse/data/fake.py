"""Small synthetic files in each dataset's real on-disk format, for tests and tiny runs without the real data.

The files are read by the same torchvision loaders as the real ones, so a tiny run exercises the
real code path. Each image carries a little class signal (a class colour and a class-oriented
grating with a random phase, plus noise) so a small network can learn something; everything is
deterministic from ``seed``. Every root written here holds a ``FAKE_DATA.txt`` marker, which
``build_datasets`` reports as ``DataBundle.synthetic``, and fake files never go into the real
data root: :func:`ensure_data` writes them to a separate root and says why.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import os
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mixcollapse.catalog import resolve
from mixcollapse.config import DataConfig
from mixcollapse.data.locate import FAKE_MARKER, DataError, dataset_spec, ensure_files, files_present

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
CIFAR100_NAMES = (
    "apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly camel can "
    "castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup dinosaur dolphin "
    "elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion lizard lobster "
    "man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree pear pickup_truck "
    "pine_tree plain plate poppy porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk "
    "skyscraper snail snake spider squirrel streetcar sunflower sweet_pepper table tank telephone television tiger "
    "tractor train trout tulip turtle wardrobe whale willow_tree wolf woman worm"
).split()
CIFAR100_COARSE_NAMES = (
    "aquatic_mammals fish flowers food_containers fruit_and_vegetables household_electrical_devices "
    "household_furniture insects large_carnivores large_man-made_outdoor_things large_natural_outdoor_scenes "
    "large_omnivores_and_herbivores medium_mammals non-insect_invertebrates people reptiles small_mammals trees "
    "vehicles_1 vehicles_2"
).split()
# The real superclass of each fine class (index = fine label).
CIFAR100_COARSE_OF_FINE = [
    4, 1, 14, 8, 0, 6, 7, 7, 18, 3, 3, 14, 9, 18, 7, 11, 3, 9, 7, 11, 6, 11, 5, 10, 7, 6, 13, 15, 3, 15,
    0, 11, 1, 10, 12, 14, 16, 9, 11, 5, 5, 19, 8, 8, 15, 13, 14, 17, 18, 10, 16, 4, 17, 4, 2, 0, 17, 4, 18, 17,
    10, 3, 2, 12, 12, 16, 12, 1, 9, 19, 2, 10, 0, 1, 16, 12, 9, 13, 15, 13, 16, 19, 2, 4, 6, 19, 5, 5, 8, 19,
    18, 1, 2, 15, 6, 0, 17, 8, 14, 13,
]  # fmt: skip


def synthetic_images(
    labels: np.ndarray, num_classes: int, size: int, channels: int, seed: int, salt: int = 0
) -> np.ndarray:
    """uint8 images (N, C, H, W): class colour + class-oriented grating (random phase) + noise; ``salt``: split."""
    protos = np.random.default_rng([seed, 0])  # class prototypes: shared by train and test
    colour = protos.uniform(0.25, 0.75, size=(num_classes, channels))
    angle = np.pi * np.arange(num_classes) / num_classes
    freq = 1.0 + np.arange(num_classes) % 3
    rng = np.random.default_rng([seed, 1, salt])  # this split's phases and noise
    yy, xx = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    a, f = angle[labels][:, None, None], freq[labels][:, None, None]
    phase = rng.uniform(0, 2 * np.pi, size=(len(labels), 1, 1))
    grating = 0.2 * np.sin(2 * np.pi * f * (xx * np.cos(a) + yy * np.sin(a)) / size + phase)  # (N, H, W)
    x = colour[labels][:, :, None, None] + grating[:, None] + rng.normal(0, 0.08, (len(labels), channels, size, size))
    return np.clip(np.rint(x * 255), 0, 255).astype(np.uint8)


def balanced_labels(n: int, num_classes: int, seed: int, salt: int) -> np.ndarray:
    """n labels cycling through the classes, shuffled; deterministic from ``seed`` and ``salt``."""
    return np.random.default_rng([seed, 2, salt]).permutation(np.arange(n) % num_classes).astype(np.int64)


def write_fake_cifar10(root: str | Path, n_train: int = 1000, n_test: int = 200, seed: int = 0) -> Path:
    """``<root>/cifar-10-batches-py/`` (data_batch_1..5, test_batch, batches.meta) as the real pickles."""
    folder = _start(root, "cifar-10-batches-py", seed)
    train_y, test_y = balanced_labels(n_train, 10, seed, 0), balanced_labels(n_test, 10, seed, 1)
    train_x, test_x = synthetic_images(train_y, 10, 32, 3, seed, 0), synthetic_images(test_y, 10, 32, 3, seed, 1)
    parts = np.array_split(np.arange(n_train), 5)
    for i, idx in enumerate(parts, start=1):
        batch = _cifar_batch(f"training batch {i} of 5", train_x[idx], {b"labels": train_y[idx]}, int(idx[:1].sum()))
        _pickle_py2(batch, folder / f"data_batch_{i}")
    _pickle_py2(_cifar_batch("testing batch 1 of 1", test_x, {b"labels": test_y}, 0), folder / "test_batch")
    meta = {b"num_cases_per_batch": max(len(p) for p in parts), b"label_names": [n.encode() for n in CIFAR10_NAMES]}
    _pickle_py2({**meta, b"num_vis": 3072}, folder / "batches.meta")
    return folder


def write_fake_cifar100(root: str | Path, n_train: int = 2000, n_test: int = 500, seed: int = 0) -> Path:
    """``<root>/cifar-100-python/`` (train, test, meta) as the real pickles, with real names and superclasses."""
    folder = _start(root, "cifar-100-python", seed)
    coarse = np.asarray(CIFAR100_COARSE_OF_FINE)
    for name, n, salt in (("train", n_train, 0), ("test", n_test, 1)):
        y = balanced_labels(n, 100, seed, salt)
        label = "training batch 1 of 1" if name == "train" else "testing batch 1 of 1"
        extra = {b"fine_labels": y, b"coarse_labels": coarse[y]}
        _pickle_py2(_cifar_batch(label, synthetic_images(y, 100, 32, 3, seed, salt), extra, 0), folder / name)
    names = {b"fine_label_names": CIFAR100_NAMES, b"coarse_label_names": CIFAR100_COARSE_NAMES}
    _pickle_py2({k: [n.encode() for n in v] for k, v in names.items()}, folder / "meta")
    return folder


def write_fake_fashionmnist(
    root: str | Path, n_train: int = 1000, n_test: int = 200, seed: int = 0, compress: bool = False
) -> Path:
    """``<root>/FashionMNIST/raw/`` with the four IDX files (``compress``: as the distributed .gz files)."""
    folder = _start(root, "FashionMNIST/raw", seed)
    for prefix, n, salt in (("train", n_train, 0), ("t10k", n_test, 1)):
        y = balanced_labels(n, 10, seed, salt)
        x = synthetic_images(y, 10, 28, 1, seed, salt)[:, 0]  # (N, 28, 28)
        _write_idx(folder / f"{prefix}-images-idx3-ubyte", 2051, x, compress)
        _write_idx(folder / f"{prefix}-labels-idx1-ubyte", 2049, y.astype(np.uint8), compress)
    return folder


@dataclass(frozen=True)
class DataSource:
    """Where a run reads its data: ``kind`` is "embedded" (digits), "real", or "fake" (synthetic files)."""

    kind: str
    root: str
    note: str = ""  # for "fake": why the real data was not used

    def describe(self, name: str) -> str:
        """One line saying what data a run uses, for logs and reports."""
        if self.kind == "embedded":
            return f"{name}: scikit-learn's embedded digits"
        if self.kind == "real":
            return f"{name}: real files in {self.root}"
        return f"{name}: SYNTHETIC files in the real format in {self.root}, not the real dataset ({self.note})"


def ensure_data(cfg: DataConfig, *, allow_fake: bool, fake_root: str | Path | None = None) -> DataSource:
    """Real data if present or downloadable; else (``allow_fake``) synthetic files in a separate root.

    Fake files go to ``fake_root`` (default: a sibling of ``cfg.root`` named ``<root>-fake``),
    never into ``cfg.root``, are marked with FAKE_DATA.txt, and are reused when already there.
    Without ``allow_fake`` a missing dataset raises DataError naming the expected files.
    """
    spec = dataset_spec(cfg)
    if spec.files is None:
        return DataSource("embedded", cfg.root)
    try:
        found = str(ensure_files(cfg))
        marked = os.path.isfile(os.path.join(found, FAKE_MARKER))
        return DataSource("fake" if marked else "real", found, "data.root holds synthetic files" if marked else "")
    except DataError as err:
        if not allow_fake or spec.fake is None:
            raise
        reason = str(err).partition(": expected")[0]  # e.g. "CIFAR10 data not found (no network: ...)"
    root = Path(fake_root) if fake_root is not None else _default_fake_root(cfg.root)
    if root.resolve() == Path(cfg.root).resolve():
        raise DataError(f"fake_root {root} is data.root; synthetic files must go to a separate directory")
    fake_cfg = dataclasses.replace(cfg, root=str(root), download=False)
    if not (files_present(fake_cfg) and (root / FAKE_MARKER).is_file()):
        if root.is_dir() and any(root.iterdir()) and not (root / FAKE_MARKER).is_file():
            raise DataError(f"refusing to write synthetic files into {root}: it holds other files and no {FAKE_MARKER}")
        resolve(spec.fake)(root)
    return DataSource("fake", str(root), reason)


# ---- internals -------------------------------------------------------------------------------


def _default_fake_root(root: str) -> Path:
    path = Path(root).absolute()
    return path.with_name(path.name + "-fake")


def _start(root: str | Path, sub: str, seed: int) -> Path:
    """Create ``root/sub`` and the FAKE_DATA.txt marker in ``root``."""
    root = Path(root)
    folder = root / sub
    folder.mkdir(parents=True, exist_ok=True)
    (root / FAKE_MARKER).write_text(
        "Synthetic images in the real on-disk formats, written by mixcollapse.data.fake "
        f"(seed {seed}) for tests and tiny runs.\nThey are NOT the real datasets: results on them say nothing "
        "about FashionMNIST, CIFAR10 or CIFAR100.\n"
    )
    return folder


def _cifar_batch(label: str, images: np.ndarray, labels: dict[bytes, np.ndarray], first: int) -> dict:
    """One CIFAR batch dict: b'data' uint8 (N, 3072) channel-major rows, labels as int lists."""
    n = len(images)
    batch = {b"batch_label": label.encode(), b"data": images.reshape(n, 3 * 32 * 32)}
    batch.update({k: [int(v) for v in vals] for k, vals in labels.items()})
    batch[b"filenames"] = [f"fake_{first + i:05d}.png".encode() for i in range(n)]
    return batch


class _Py2Pickler(pickle._Pickler):
    """Protocol-2 pickler writing ``bytes`` as Python 2 ``str``, as in the real CIFAR files.

    Loaded with ``encoding="latin1"`` (torchvision) keys become ``'data'``; with ``encoding="bytes"``
    (the CIFAR web page's recipe) ``b'data'``: the same two views the real files give.
    """

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj: bytes) -> None:
        n = len(obj)
        self.write(
            pickle.SHORT_BINSTRING + bytes([n]) + obj if n < 256 else pickle.BINSTRING + struct.pack("<i", n) + obj
        )
        self.memoize(obj)

    dispatch[bytes] = save_py2_str

    def save_global(self, obj, name=None) -> None:
        # numpy >= 2 names its reconstructor numpy._core...; the real files (and numpy 1.x) use numpy.core...
        if getattr(obj, "__name__", None) == "_reconstruct" and getattr(obj, "__module__", "").startswith("numpy"):
            self.write(pickle.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n")
            self.memoize(obj)
            return
        super().save_global(obj, name)


def _pickle_py2(obj: dict, path: Path) -> None:
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    path.write_bytes(buf.getvalue())


def _write_idx(path: Path, magic: int, array: np.ndarray, compress: bool) -> None:
    """IDX file: big-endian int32 magic (2051 images, 2049 labels) and sizes, then uint8 data."""
    data = struct.pack(f">{1 + array.ndim}i", magic, *array.shape) + np.ascontiguousarray(array, np.uint8).tobytes()
    if compress:
        with gzip.open(str(path) + ".gz", "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)
