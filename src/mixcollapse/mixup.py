"""Mixup (Zhang et al. 2017; eq. 1 of the paper): mixing training batches and analysis pairs.

Training mixes a batch with a random permutation of itself. Analysis draws explicit pairs
(index a, index b, lambda) of dataset images so that every feature can be tagged as a
same-class or a different-class mixup point (Section 2.2). Randomness comes from a
``numpy.random.Generator`` whose state is saved in checkpoints, so a resumed run draws the
same lambdas and partners as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import combinations_with_replacement

import numpy as np
import torch
import torch.nn.functional as F


def sample_lambda(alpha: float, size: int, rng: np.random.Generator) -> np.ndarray:
    """lambda ~ Beta(alpha, alpha), ``size`` draws; alpha = 0 means no mixup (lambda = 1)."""
    if alpha < 0:
        raise ValueError(f"mixup alpha must be >= 0, got {alpha}")
    if alpha == 0:
        return np.ones(size)
    return rng.beta(alpha, alpha, size=size)


@dataclass
class MixedBatch:
    """A mixed training batch: x = lam * x[index_a] + (1 - lam) * x[index_b], likewise targets."""

    x: torch.Tensor  # (B, ...) mixed inputs
    target: torch.Tensor  # (B, C) soft targets, rows sum to 1
    index_a: torch.Tensor  # (B,) batch positions of the first image (0..B-1)
    index_b: torch.Tensor  # (B,) batch positions of the partner (a permutation)
    lam: torch.Tensor  # (B,) weight of the first image
    label_a: torch.Tensor  # (B,) class of the first image
    label_b: torch.Tensor  # (B,) class of the partner

    @property
    def same_class(self) -> torch.Tensor:
        """(B,) True where both images share a class (a same-class mixup point)."""
        return self.label_a == self.label_b


def mix_batch(
    x: torch.Tensor, y: torch.Tensor, num_classes: int, alpha: float, rng: np.random.Generator, per_sample: bool = False
) -> MixedBatch:
    """Mix a batch with a random permutation of itself; one lambda per batch or per sample."""
    B = x.shape[0]
    lam_np = sample_lambda(alpha, B if per_sample else 1, rng)
    lam = torch.as_tensor(np.broadcast_to(lam_np, (B,)).copy(), dtype=torch.float32, device=x.device)
    index_a = torch.arange(B, device=x.device)
    index_b = index_a if alpha == 0 else torch.as_tensor(rng.permutation(B), device=x.device)
    onehot = F.one_hot(y, num_classes).float()
    lam_x = lam.view(B, *([1] * (x.dim() - 1))).to(x.dtype)
    mixed_x = lam_x * x + (1 - lam_x) * x[index_b]
    target = lam[:, None] * onehot + (1 - lam[:, None]) * onehot[index_b]
    return MixedBatch(mixed_x, target, index_a, index_b, lam, y, y[index_b])


@dataclass
class PairSet:
    """Explicit mixup pairs of dataset images for analysis; every array has one entry per pair."""

    index_a: np.ndarray  # (N,) dataset index of the first image
    index_b: np.ndarray  # (N,) dataset index of the second image
    lam: np.ndarray  # (N,) weight of the first image: x = lam x_a + (1 - lam) x_b
    class_a: np.ndarray  # (N,)
    class_b: np.ndarray  # (N,)

    @property
    def same(self) -> np.ndarray:
        """(N,) True for same-class pairs."""
        return self.class_a == self.class_b

    def __len__(self) -> int:
        return len(self.lam)

    def subset(self, sl: slice | np.ndarray) -> PairSet:
        """The pairs selected by a slice or index array."""
        return PairSet(self.index_a[sl], self.index_b[sl], self.lam[sl], self.class_a[sl], self.class_b[sl])


PAIR_FIELDS = ("index_a", "index_b", "lam", "class_a", "class_b")  # PairSet's arrays, in order
PAIR_DTYPES = (np.int64, np.int64, np.float64, np.int64, np.int64)


PAIR_CHUNK = 65536  # pairs drawn per step: bounds the memory of a stream of pairs (and fixes its draws)


def pair_chunks(
    labels: np.ndarray,
    classes: Sequence[int],
    pairs_per_class_pair: int,
    lam_mode: str = "beta",
    alpha: float = 1.0,
    grid_size: int = 11,
    seed: int = 0,
) -> Iterator[PairSet]:
    """The pairs of ``make_pairs``, in order, as consecutive PairSets of at most PAIR_CHUNK pairs.

    Memory does not grow with the number of pairs, so any number can be streamed to disk
    (``analysis.extract.write_pairs``).
    """
    if lam_mode not in ("beta", "grid"):
        raise ValueError(f"unknown lambda mode '{lam_mode}' (known: beta, grid)")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    by_class = {}
    for c in classes:
        members = np.flatnonzero(labels == c)
        if len(members) == 0:
            raise ValueError(f"class {c} has no training images to draw mixup pairs from")
        by_class[c] = members
    grid = np.linspace(0.0, 1.0, grid_size)
    for a, b in combinations_with_replacement(classes, 2):
        for lo in range(0, pairs_per_class_pair, PAIR_CHUNK):
            n = min(PAIR_CHUNK, pairs_per_class_pair - lo)
            ia = rng.choice(by_class[a], size=n)
            if a == b and len(by_class[a]) > 1:
                # Shift by a non-zero offset within the class so that no image is mixed with itself.
                pos = np.searchsorted(by_class[a], ia)
                offset = rng.integers(1, len(by_class[a]), size=n)
                ib = by_class[a][(pos + offset) % len(by_class[a])]
            else:
                ib = rng.choice(by_class[b], size=n)
            if lam_mode == "beta":
                lam = sample_lambda(alpha if alpha > 0 else 1.0, n, rng)
            else:
                lam = grid[(lo + np.arange(n)) % grid_size]
            yield PairSet(ia, ib, lam, np.full(n, a, dtype=np.int64), np.full(n, b, dtype=np.int64))


def pair_count(num_classes: int, pairs_per_class_pair: int) -> int:
    """Number of pairs ``make_pairs`` draws: one block per unordered class pair, same-class included."""
    return pairs_per_class_pair * num_classes * (num_classes + 1) // 2


def make_pairs(
    labels: np.ndarray,
    classes: Sequence[int],
    pairs_per_class_pair: int,
    lam_mode: str = "beta",
    alpha: float = 1.0,
    grid_size: int = 11,
    seed: int = 0,
) -> PairSet:
    """Draw mixup pairs for every unordered class pair {a, b} of ``classes``, same-class included.

    lambda comes from the training distribution Beta(alpha, alpha) (``beta``; a baseline trained
    with alpha = 0 has no mixup distribution, so Beta(1, 1) is used, as the paper's Figure 8 shows
    the whole range) or from an even grid on [0, 1] (``grid``). Since lambda covers [0, 1], the
    pair {a, b} also covers the order (b, a). Partners of a same-class pair are distinct images
    whenever the class has more than one. In memory; ``pair_chunks`` streams the same pairs.
    """
    total = pair_count(len(classes), pairs_per_class_pair)
    # filled chunk by chunk in place: no second copy of N pairs while concatenating
    out = PairSet(*(np.empty(total, dtype=t) for t in PAIR_DTYPES))
    pos = 0
    for chunk in pair_chunks(labels, classes, pairs_per_class_pair, lam_mode, alpha, grid_size, seed):
        for name in PAIR_FIELDS:
            getattr(out, name)[pos : pos + len(chunk)] = getattr(chunk, name)
        pos += len(chunk)
    return out


def mixup_targets(lam, a, b, num_classes: int) -> torch.Tensor:
    """Soft targets Y (N, C) = lam e_a + (1 - lam) e_b (one-hot when a == b), float64, on lam's device."""
    lam = torch.as_tensor(lam, dtype=torch.float64)
    rows = torch.arange(len(lam), device=lam.device)
    Y = torch.zeros(len(lam), num_classes, dtype=torch.float64, device=lam.device)
    Y.index_put_((rows, torch.as_tensor(a, device=lam.device).long()), lam, accumulate=True)
    Y.index_put_((rows, torch.as_tensor(b, device=lam.device).long()), 1 - lam, accumulate=True)
    return Y


def mix_images(x_a: torch.Tensor, x_b: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """lam * x_a + (1 - lam) * x_b with one lambda per image."""
    lam = lam.to(x_a.dtype).view(-1, *([1] * (x_a.dim() - 1)))
    return lam * x_a + (1 - lam) * x_b


class MixedPairImages(torch.utils.data.Dataset):
    """Mixed images of a PairSet read through ``dataset``, with their position: ``mix(x_a, x_b, lam, index)``
    (a mixing method's ``pair_images``; default: mixup's blend lam x_a + (1 - lam) x_b)."""

    def __init__(self, dataset, pairs: PairSet, mix: Callable | None = None) -> None:
        self.dataset, self.pairs = dataset, pairs
        self.mix = mix if mix is not None else (lambda x_a, x_b, lam, index: mix_images(x_a, x_b, lam))

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int):
        return self.__getitems__([i])[0]

    def __getitems__(self, indices: list[int]) -> list:
        """A batch at once (the DataLoader's batched fetch): one read of the pairs' row range, so
        pairs stored on disk (``analysis.extract.StoredPairs``) cost a few reads per batch."""
        lo = min(indices)
        rows = self.pairs.subset(slice(lo, max(indices) + 1))
        at = np.asarray(indices) - lo
        x_a = torch.stack([self.dataset[int(rows.index_a[k])][0] for k in at])
        x_b = torch.stack([self.dataset[int(rows.index_b[k])][0] for k in at])
        lam = torch.as_tensor(rows.lam[at], dtype=torch.float32)
        mixed = self.mix(x_a, x_b, lam, np.asarray(indices))
        return [(mixed[k], i) for k, i in enumerate(indices)]


def choose_classes(num_classes: int, seed: int, k: int = 3) -> list[int]:
    """k distinct classes drawn with ``seed`` (the paper's "three randomly selected classes")."""
    if num_classes < k:
        raise ValueError(f"need at least {k} classes, the model has {num_classes}")
    rng = np.random.default_rng(seed)
    return sorted(int(c) for c in rng.choice(num_classes, size=k, replace=False))
