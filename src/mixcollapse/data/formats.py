"""In-memory image formats: the IDX files of (Fashion)MNIST, read in memory plain or gzipped, and tensors.

Hand-written where torchvision's reader falls short (see ``read_idx``); nothing here imports torchvision,
so the embedded digits need none of it.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset


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

    def __init__(
        self,
        images: torch.Tensor,
        labels: np.ndarray,
        classes: list[str],
        mean: tuple[float, ...],
        std: tuple[float, ...],
    ) -> None:
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
    with gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path} is not an IDX file of unsigned bytes (bad magic number)")
    ndim = data[3]
    dims = [int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4)]
    array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if array.size != int(np.prod(dims)):
        raise ValueError(f"{path} holds {array.size} values where its header says {dims} (truncated?)")
    return array.reshape(dims)
