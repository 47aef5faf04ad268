"""The built-in datasets as tensors on the training device, each batch built with a few tensor operations.

The whole training set is one uint8 tensor (N, C, H, W) on the device (CIFAR10: 150 MB, FashionMNIST:
47 MB; the embedded digits: already-normalized float32). A batch is: index by a permutation, random
crop with zero padding and horizontal flip for the whole batch in one gather, then ``x / 255``, minus
the mean, over the std, with the same float32 operations as torchvision's ToTensor + Normalize, so an
unaugmented image is bitwise the per-sample path's. Written by hand because torchvision's batched (v2)
transforms draw one crop and one flip per call, shared by the whole batch; the paper's recipe draws
them per image.

Random draws come from one generator held by the loader, no worker processes, so a run is a function
of its seed and a resumed run is bitwise the uninterrupted one by construction:
- one process: ``generator`` (checkpointed like a DataLoader's). Each epoch draws exactly what
  ``DataLoader(shuffle=True, generator=g)`` draws (its base seed, then ``randperm``), so the order of
  samples is the per-sample path's; crop offsets and flips are drawn after it, from the same generator.
- DDP: like DistributedSampler, a generator seeded with ``seed + epoch`` gives the permutation (padded
  to a multiple of the world size), rank r takes positions r, r + world, ...; the augmentations are
  drawn for the whole padded permutation, so they do not depend on the number of processes.

Batches come out float32 (channels_last when asked): mixup mixes inputs before the model's autocast,
and a bf16 mixture of two 8-bit images would lose the low bits of lambda; autocast casts at the first
layer. Offsets are uniform on 0..2p in each axis and flips have probability 1/2, as torchvision's
RandomCrop(padding=p) and RandomHorizontalFlip draw them (a test compares the two).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from mixcollapse.data.formats import IDXImages, ImageTensors


@dataclass(frozen=True)
class TensorImages:
    """Images (N, C, H, W), uint8 pixels or normalized float32, their int64 labels, and the normalization."""

    images: torch.Tensor
    labels: torch.Tensor
    mean: tuple[float, ...] | None  # None: the images are float and normalized already
    std: tuple[float, ...] | None

    def to(self, device: torch.device | str) -> TensorImages:
        return TensorImages(self.images.to(device), self.labels.to(device), self.mean, self.std)


def tensor_images(dataset, mean: tuple[float, ...], std: tuple[float, ...]) -> TensorImages | None:
    """A built-in dataset (a ``LabeledView`` of CIFAR, FashionMNIST or the digits) as tensors; None for others.

    ``mean``/``std``: the per-channel normalization of the uint8 images (the bundle's). Users' own
    datasets give None and keep the per-sample DataLoader path.
    """
    base, indices, labels = (getattr(dataset, name, None) for name in ("base", "indices", "labels"))
    if base is None or indices is None or labels is None:
        return None
    targets = torch.as_tensor(labels, dtype=torch.int64)
    if isinstance(base, ImageTensors):
        return TensorImages(base.images[torch.as_tensor(indices)].float().contiguous(), targets, None, None)
    if isinstance(base, IDXImages):
        pixels = base.images[torch.as_tensor(indices)].unsqueeze(1).contiguous()
    elif isinstance(getattr(base, "data", None), np.ndarray) and _is_cifar(base):
        pixels = torch.from_numpy(base.data[indices]).permute(0, 3, 1, 2).contiguous()  # HWC -> CHW
    else:
        return None
    return TensorImages(pixels, targets, tuple(mean), tuple(std))


def crop_flip(pixels: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor, padding: int) -> torch.Tensor:
    """Per-image random crop of the zero-padded images and horizontal flip, as one gather.

    ``pixels`` (B, C, H, W), ``offsets`` (B, 2) rows/columns in 0..2*padding of the padded image, ``flips``
    (B,) bool. Returns (B, C, H, W), contiguous: torchvision's RandomCrop(H, padding) with top/left =
    offsets, then RandomHorizontalFlip where ``flips``. A gather over flattened pixels (about 4x faster on
    a CPU than advanced indexing with four index tensors).
    """
    b, c, h, w = pixels.shape
    padded = F.pad(pixels, (padding,) * 4) if padding > 0 else pixels
    rows = offsets[:, :1] + torch.arange(h, device=pixels.device)  # (B, H)
    cols = torch.arange(w, device=pixels.device).expand(b, w)
    cols = torch.where(flips[:, None], w - 1 - cols, cols) + offsets[:, 1:]  # (B, W)
    flat = (rows[:, :, None] * (w + 2 * padding) + cols[:, None, :]).view(b, 1, h * w).expand(b, c, h * w)
    return padded.reshape(b, c, -1).gather(2, flat).view(b, c, h, w)


class TensorBatches:
    """Batches ``(x, y)`` of a :class:`TensorImages` on its device: shuffled and augmented, or in order.

    ``augment = (padding, flip)``; ``shard = (rank, world)`` under DDP (training: the DistributedSampler
    split; evaluation: positions rank, rank + world, ... unpadded), None in one process. See the module
    docstring for the draws.
    """

    def __init__(
        self,
        source: TensorImages,
        batch_size: int,
        *,
        shuffle: bool,
        seed: int = 0,
        drop_last: bool = False,
        augment: tuple[int, bool] = (0, False),
        shard: tuple[int, int] | None = None,
        channels_last: bool = False,
    ) -> None:
        self.source, self.batch_size, self.shuffle = source, batch_size, shuffle
        self.seed, self.drop_last, self.channels_last = seed, drop_last, channels_last
        self.padding, self.flip = augment
        self.distributed = shard is not None
        self.rank, self.world = shard if shard is not None else (0, 1)
        self.epoch = 0
        # One process: a persistent generator, checkpointed by the training loop; DDP: one per epoch.
        self.generator = torch.Generator().manual_seed(seed) if shuffle and not self.distributed else None
        n = len(source.labels)
        self.per_rank = -(-n // self.world) if shuffle else len(range(self.rank, n, self.world))
        if self.per_rank < batch_size:
            self.drop_last = False  # a tiny set keeps its only batch
        if source.mean is not None:
            self._mean = torch.tensor(source.mean, dtype=torch.float32, device=source.images.device).view(-1, 1, 1)
            self._std = torch.tensor(source.std, dtype=torch.float32, device=source.images.device).view(-1, 1, 1)

    def set_epoch(self, epoch: int) -> None:
        """The 0-based epoch that seeds the permutation under DDP (DistributedSampler's ``set_epoch``)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.per_rank // self.batch_size if self.drop_last else -(-self.per_rank // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order, offsets, flips = self._draw()
        device = self.source.images.device
        order = order.to(device)
        offsets, flips = offsets.to(device), flips.to(device)
        for k in range(len(self)):
            take = slice(k * self.batch_size, (k + 1) * self.batch_size)
            idx = order[take]
            x = self.source.images[idx]
            if self.padding > 0 or self.flip:
                x = crop_flip(x, offsets[take], flips[take], self.padding)
            yield self._finish(x), self.source.labels[idx]

    def _draw(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """This rank's positions of the epoch, and each position's crop offsets and flip."""
        n = len(self.source.labels)
        if not self.shuffle:
            order = torch.arange(self.rank, n, self.world)
            return order, torch.zeros(len(order), 2, dtype=torch.int64), torch.zeros(len(order), dtype=torch.bool)
        if not self.distributed:  # what DataLoader(shuffle=True) draws: its workers' base seed, the order, and the
            g = self.generator  # RandomSampler's trailing empty slice of a second permutation
            torch.empty((), dtype=torch.int64).random_(generator=g)
            order = torch.randperm(n, generator=g)
            torch.randperm(n, generator=g)
        else:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(n, generator=g)
            total = self.per_rank * self.world
            order = torch.cat([order] * -(-total // n))[:total]  # DistributedSampler's padding
        m = len(order)
        offsets = (
            torch.randint(0, 2 * self.padding + 1, (m, 2), generator=g)
            if self.padding > 0
            else torch.zeros(m, 2, dtype=torch.int64)
        )
        flips = torch.rand(m, generator=g) < 0.5 if self.flip else torch.zeros(m, dtype=torch.bool)
        if self.distributed:
            share = slice(self.rank, None, self.world)
            order, offsets, flips = order[share], offsets[share], flips[share]
        return order, offsets, flips

    def _finish(self, x: torch.Tensor) -> torch.Tensor:
        """Float32 normalized images, channels_last when asked."""
        if self.source.mean is not None:
            x = x.to(torch.float32).div_(255).sub_(self._mean).div_(self._std)
        memory = torch.channels_last if self.channels_last else torch.contiguous_format
        return x.contiguous(memory_format=memory)


def set_epoch(loader, epoch: int) -> None:
    """Tell a train loader the 0-based epoch (a TensorBatches, or a DataLoader with a DistributedSampler)."""
    if hasattr(loader, "set_epoch"):
        loader.set_epoch(epoch)
    elif hasattr(getattr(loader, "sampler", None), "set_epoch"):
        loader.sampler.set_epoch(epoch)


def _is_cifar(base) -> bool:
    """Whether ``base`` is one of the CIFAR readers (uint8 ``data`` (N, H, W, C)); imported only then."""
    from mixcollapse.data.cifar import CIFAR10Files, CIFAR100Files

    return isinstance(base, (CIFAR10Files, CIFAR100Files))
