"""CIFAR10/100's pickled batch files, read safely: only numpy's array globals are unpickled.

Hand-written because torchvision unpickles the files as they are (a hostile ``data_batch_1`` would run its
``__reduce__``) and rejects any file whose md5 differs from the official archive's (so files in the real
format written by anything else, e.g. ``data.fake``, could not be read).
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
from torchvision import datasets as tvd

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
