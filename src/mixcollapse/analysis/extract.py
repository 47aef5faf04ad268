"""Last-layer features of mixup pairs (Section 2.2), streamed to disk with their metadata.

Works with any ``nn.Module`` that has ``features(x) -> (B, d)`` and a final linear
``classifier``; the model is never modified (batch-norm work happens on a copy).

Batch norm (``bn_mode``). A network in train mode normalises with the statistics of the batch
it is given, so a batch made only of one class pair's mixtures has skewed statistics and its
features mean little. Three choices, recorded in the output's ``meta.json``:

- ``recalibrate`` (default): reset the running statistics of a copy and re-estimate them as a
  plain average over mixup training batches (the training alpha and augmentation), then extract
  in eval mode. Every feature depends on its own input only, so results do not depend on batch
  size or on which pairs share a batch.
- ``train``: what the paper did. Extraction batches are composed like training batches: each
  holds ``pair_fraction`` of analysis pairs and is filled up with random mixup training samples,
  whose outputs are discarded. Statistics are the batch's own, as in training.
- ``eval``: the stored running statistics (the paper's choice for WRN on CIFAR100).

On-disk format (a directory; a reader needs only numpy):
``features.npy`` (N, d) float32, ``logits.npy`` (N, C) float32, ``index_a.npy``, ``index_b.npy``,
``class_a.npy``, ``class_b.npy`` (N,) int64, ``lam.npy`` (N,) float64, ``classifier_weight.npy``
(C, d), ``classifier_bias.npy`` (C,) when the classifier has one, and ``meta.json``. Features and
logits are appended to their files batch by batch with plain writes (not through a memory map,
whose dirty pages would count in the process's resident memory), so memory does not grow with
N. The directory is written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mixcollapse.files import atomic_folder, atomic_write_json
from mixcollapse.metrics.projection import projection_matrix
from mixcollapse.mixing import Mixing
from mixcollapse.mixup import PAIR_DTYPES, PAIR_FIELDS, MixedPairImages, PairSet
from mixcollapse.progress import progress_bar

FORMAT_VERSION = 1
PROJECTION_CHUNK_BYTES = 4 << 20  # float64 bytes per chunk when re-reading features for the projection (4 MiB)
BatchCallback = Callable[[dict], None]

NO_BATCHNORM = "none (the model has no batch norm)"  # what analyses record as the batch-norm mode of such a model


def has_batchnorm(model: nn.Module) -> bool:
    """True when the model holds any batch-norm layer."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, batches: Iterable[torch.Tensor], num_batches: int, device) -> nn.Module:
    """A copy of ``model`` whose batch-norm running statistics are the plain mean over ``batches``."""
    model = copy.deepcopy(model)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # cumulative moving average: every batch weighs the same
    model.train()
    for _, x in zip(range(num_batches), batches, strict=False):  # batches may be endless
        model(x.to(device))
    return model.eval()


@dataclass
class PairFeatures:
    """Extracted mixup-pair features, memory-mapped from disk."""

    path: Path
    features: np.ndarray  # (N, d)
    logits: np.ndarray  # (N, C)
    pairs: PairSet
    classifier_weight: np.ndarray  # (C, d)
    classifier_bias: np.ndarray | None
    meta: dict

    @property
    def same(self) -> np.ndarray:
        return self.pairs.same

    @property
    def lam(self) -> np.ndarray:
        return self.pairs.lam


class NpyAppender:
    """Write an .npy file of known shape block by block, in order, with plain writes.

    The file is written under a temporary name and renamed by ``close()`` once every row is
    there; used as a context manager, an error removes the partial file instead.
    """

    def __init__(self, path: Path, shape: tuple[int, ...], dtype) -> None:
        self.path, self.dtype, self.rows, self.expected = Path(path), np.dtype(dtype), 0, shape[0]
        self.tmp = self.path.with_name(f".{self.path.name}.partial")
        self.file = open(self.tmp, "wb")  # noqa: SIM115 (closed in close())
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": shape}
        np.lib.format.write_array_header_1_0(self.file, header)

    def append(self, block: np.ndarray) -> None:
        self.file.write(np.ascontiguousarray(block, dtype=self.dtype).tobytes())
        self.rows += len(block)

    def close(self) -> None:
        self.file.close()
        if self.rows != self.expected:
            self.tmp.unlink(missing_ok=True)
            raise RuntimeError(f"{self.path}: {self.rows} rows written, {self.expected} expected")
        os.replace(self.tmp, self.path)

    def discard(self) -> None:
        """Stop and remove the partial file (after an error)."""
        self.file.close()
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> NpyAppender:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.discard()


def iter_npy_rows(path: str | Path, chunk_bytes: int = 4 << 20) -> Iterator[np.ndarray]:
    """Blocks of consecutive rows of an .npy file, read with plain reads (no memory map stays resident)."""
    offset, shape, dtype = _npy_layout(Path(path))
    with open(path, "rb") as f:
        f.seek(offset)
        row = int(np.prod(shape[1:], dtype=np.int64))
        step = max(1, chunk_bytes // max(1, row * dtype.itemsize))
        for lo in range(0, shape[0], step):
            n = min(step, shape[0] - lo)
            yield np.fromfile(f, dtype=dtype, count=n * row).reshape((n, *shape[1:]))


def _npy_layout(path: Path) -> tuple[int, tuple[int, ...], np.dtype]:
    """Byte offset of the data, shape and dtype of a C-ordered .npy file."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(f)
        if fortran:
            raise ValueError(f"{path}: Fortran-ordered arrays are not supported")
        return f.tell(), shape, dtype


class StoredPairs:
    """Mixup pairs in the extraction format's five .npy files, read by row range with plain reads.

    Nothing is held in memory (nor mapped), so a pair list of any length costs nothing until a
    range of it is read; ``subset`` and ``len`` work as on a PairSet.
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self._layout = {name: _npy_layout(self.path(name)) for name in PAIR_FIELDS}
        lengths = {shape[0] for _, shape, _ in self._layout.values()}
        if len(lengths) != 1:
            raise ValueError(f"{self.directory}: the pair files have different lengths {sorted(lengths)}")
        self._len = lengths.pop()
        self._last: tuple[int, int, PairSet] | None = None  # the range read last (a batch, then its callbacks)

    def path(self, name: str) -> Path:
        return self.directory / f"{name}.npy"

    def __len__(self) -> int:
        return self._len

    def subset(self, sl: slice) -> PairSet:
        """The pairs of a range of rows (a slice with step 1), read into memory."""
        lo, hi, step = sl.indices(self._len)
        if step != 1:
            raise ValueError("StoredPairs reads ranges of consecutive rows only")
        n = max(0, hi - lo)
        if self._last is not None and self._last[:2] == (lo, hi):
            return self._last[2]
        rows = PairSet(
            *(
                np.fromfile(self.path(name), dtype=dtype, count=n, offset=offset + lo * dtype.itemsize)
                for name in PAIR_FIELDS
                for offset, _, dtype in [self._layout[name]]
            )
        )
        self._last = (lo, hi, rows)
        return rows


def write_pairs(directory: str | Path, chunks: Iterable[PairSet], num_pairs: int) -> StoredPairs:
    """Stream PairSet chunks (``mixup.pair_chunks``) into the five pair files of ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    files = [
        NpyAppender(directory / f"{name}.npy", (num_pairs,), dt)
        for name, dt in zip(PAIR_FIELDS, PAIR_DTYPES, strict=True)
    ]
    try:
        for chunk in chunks:
            for f, name in zip(files, PAIR_FIELDS, strict=True):
                f.append(getattr(chunk, name))
        for f in files:
            f.close()
    except BaseException:
        for f in files:
            f.discard()
        raise
    return StoredPairs(directory)


@dataclass(frozen=True)
class BatchNormPlan:
    """How batch norm runs while the pairs are measured (docs/analysis.md, batch norm).

    ``mode``: ``recalibrate`` (running statistics re-estimated on ``recalibrate_batches`` of ``batches``, then
    eval mode), ``train`` (batch statistics of batches whose ``1 - pair_fraction`` rest is filled from
    ``batches``, as in training) or ``eval`` (the stored running statistics). ``batches`` yields mixed training
    batches (a mixing method's ``batches``); recalibrate and train need them when the model has batch norm.
    """

    mode: str = "recalibrate"
    batches: Iterable[torch.Tensor] | None = None
    recalibrate_batches: int = 50
    pair_fraction: float = 0.25


@dataclass(frozen=True)
class Loading:
    """How images reach the network: batch size, device, loader workers, and whether a progress bar shows."""

    batch_size: int = 256
    device: str | torch.device = "cpu"
    num_workers: int = 0
    progress: bool = True


def extract_pair_features(
    model: nn.Module,
    dataset,
    pairs: PairSet | StoredPairs,
    out_dir: str | Path,
    *,
    bn: BatchNormPlan = BatchNormPlan(),
    loading: Loading = Loading(),
    mixing: Mixing | None = None,
    callbacks: Iterable[BatchCallback] = (),
    meta: dict | None = None,
    overwrite: bool = False,
) -> PairFeatures:
    """Features and logits of every mixup pair, streamed into ``out_dir`` (see the module doc).

    ``dataset`` yields un-augmented training images by index; ``bn`` says how batch norm runs; ``mixing`` turns
    a pair into an image (default: mixup's blend).
    Each callback receives a dict with the batch's ``features``, ``logits`` (tensors on the
    device) and ``pairs`` (a PairSet slice) as it is produced, so streaming measurements
    need no second pass. ``pairs`` may be in memory (PairSet) or on disk (StoredPairs, read a
    batch at a time and copied into ``out_dir``), so memory does not grow with their number.
    """
    bn_mode, pair_fraction, train_batches, batch_size = bn.mode, bn.pair_fraction, bn.batches, loading.batch_size
    out_dir, device, batchnorm = Path(out_dir), torch.device(loading.device), has_batchnorm(model)
    mixing = mixing if mixing is not None else Mixing()
    _check_extraction(bn, batchnorm, out_dir, overwrite)
    batch_iter = iter(train_batches) if train_batches is not None else None
    train_mode = batchnorm and bn_mode == "train"
    was_training = model.training
    model = model.to(device)
    net = bn_network(model, bn_mode, batch_iter, bn.recalibrate_batches, device)
    classifier = net.classifier
    weight = classifier.weight.detach().cpu().float().numpy()
    bias = classifier.bias.detach().cpu().float().numpy() if classifier.bias is not None else None
    info = {
        "format_version": FORMAT_VERSION,
        "num_pairs": len(pairs),
        "feature_dim": weight.shape[1],
        "num_classes": weight.shape[0],
        **_bn_meta(bn, batchnorm),
        **(meta or {}),
    }
    try:
        with atomic_folder(out_dir) as partial:
            per_batch = max(1, int(batch_size * pair_fraction)) if train_mode else batch_size
            images = MixedPairImages(dataset, pairs, mixing.pair_images)
            loader = torch.utils.data.DataLoader(
                images, batch_size=per_batch, shuffle=False, num_workers=loading.num_workers
            )
            filler = (lambda n: next(batch_iter)[:n].to(device)) if train_mode else None
            _stream_features(
                net, loader, pairs, partial, batch_size, filler, list(callbacks), device, loading.progress, mixing
            )
            _save_pairs_and_classifier(partial, pairs, weight, bias, info)
    finally:
        model.train(was_training)
    return load_pair_features(out_dir)


def _check_extraction(bn: BatchNormPlan, batchnorm: bool, out_dir: Path, overwrite: bool) -> None:
    """ValueError for a batch-norm plan that cannot run, FileExistsError for an output that would be replaced."""
    if bn.mode not in ("recalibrate", "train", "eval"):
        raise ValueError(f"bn_mode='{bn.mode}' is not one of: recalibrate, train, eval")
    if out_dir.exists() and not overwrite:
        raise FileExistsError(f"{out_dir} already exists; choose another output or remove it first")
    if not 0 < bn.pair_fraction <= 1:
        raise ValueError(f"pair_fraction={bn.pair_fraction} must lie in (0, 1]")
    if batchnorm and bn.mode in ("recalibrate", "train") and bn.batches is None:
        raise ValueError(f"bn_mode='{bn.mode}' needs mixed training batches (BatchNormPlan.batches)")


def _bn_meta(bn: BatchNormPlan, batchnorm: bool) -> dict:
    """What meta.json says about batch norm: the mode, and the settings that mode used."""
    return {
        "bn_mode": bn.mode if batchnorm else NO_BATCHNORM,
        "pair_fraction": bn.pair_fraction if batchnorm and bn.mode == "train" else None,
        "recalibrate_batches": bn.recalibrate_batches if batchnorm and bn.mode == "recalibrate" else None,
    }


def _save_pairs_and_classifier(out_dir: Path, pairs, weight: np.ndarray, bias: np.ndarray | None, info: dict) -> None:
    """The pairs (a copy of each field), the classifier's weight and bias, and meta.json beside the features."""
    for name in PAIR_FIELDS:
        if isinstance(pairs, StoredPairs):
            shutil.copyfile(pairs.path(name), out_dir / f"{name}.npy")
        else:
            np.save(out_dir / f"{name}.npy", getattr(pairs, name))
    np.save(out_dir / "classifier_weight.npy", weight)
    if bias is not None:
        np.save(out_dir / "classifier_bias.npy", bias)
    atomic_write_json(out_dir / "meta.json", info, sort_keys=True)


def bn_network(
    model: nn.Module, bn_mode: str, batches: Iterator[torch.Tensor] | None, recalibrate_batches: int, device
) -> nn.Module:
    """The model as it should run for ``bn_mode``: a recalibrated copy (recalibrate), a copy using batch
    statistics with its running statistics untouched (train), or ``model`` in eval mode (eval, or no batch norm)."""
    if not has_batchnorm(model) or bn_mode == "eval":
        return model.eval()
    if batches is None:
        raise ValueError(f"bn_mode='{bn_mode}' needs mixed training batches")
    if bn_mode == "recalibrate":
        return recalibrate_batchnorm(model, batches, recalibrate_batches, device)
    if bn_mode == "train":
        net = copy.deepcopy(model).train()
        for m in net.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.momentum = 0.0  # batch statistics, running statistics untouched
        return net
    raise ValueError(f"bn_mode='{bn_mode}' is not one of: recalibrate, train, eval")


@torch.no_grad()
def _stream_features(
    net: nn.Module,
    loader,
    pairs,
    out_dir: Path,
    batch_size: int,
    filler: Callable[[int], torch.Tensor] | None,
    callbacks: list,
    device: torch.device,
    progress: bool,
    mixing: Mixing,
) -> None:
    """features.npy and logits.npy of every pair, in order, each batch also handed to the callbacks.

    ``filler(n)``: n mixed training images that complete a train-mode batch to ``batch_size`` (their
    outputs are dropped), so batch statistics are those of a batch composed like a training batch.
    """
    C, d = net.classifier.weight.shape
    feats = NpyAppender(out_dir / "features.npy", (len(pairs), d), np.float32)
    logits = NpyAppender(out_dir / "logits.npy", (len(pairs), C), np.float32)
    for x, idx in progress_bar(loader, "features", progress):
        x = x.to(device)
        lo, hi = int(idx[0]), int(idx[-1]) + 1  # in order: the loader does not shuffle
        if filler:
            h = net.features(torch.cat([x, filler(batch_size - len(x))]))[: len(x)]
        else:
            h = mixing.pair_features(net, x, torch.as_tensor(np.asarray(pairs.subset(slice(lo, hi)).lam)).float())
        z = net.classifier(h)
        feats.append(h.float().cpu().numpy())
        logits.append(z.float().cpu().numpy())
        for cb in callbacks:
            cb({"features": h, "logits": z, "pairs": pairs.subset(slice(lo, hi))})
    feats.close()
    logits.close()


def load_pair_features(path: str | Path) -> PairFeatures:
    """Reload an extraction directory; the big arrays stay memory-mapped."""
    path = Path(path)
    meta_path = path / "meta.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{path} is not a mixcollapse feature directory (no meta.json)")
    meta = json.loads(meta_path.read_text())
    if meta.get("format_version") != FORMAT_VERSION:
        version = meta.get("format_version")
        raise ValueError(f"{path}: feature format version {version} (this toolkit reads {FORMAT_VERSION})")
    load = lambda name: np.load(path / f"{name}.npy", mmap_mode="r")  # noqa: E731
    pairs = PairSet(*(np.asarray(load(n)) for n in PAIR_FIELDS))
    bias_path = path / "classifier_bias.npy"
    return PairFeatures(
        path=path,
        features=load("features"),
        logits=load("logits"),
        pairs=pairs,
        classifier_weight=np.load(path / "classifier_weight.npy"),
        classifier_bias=np.load(bias_path) if bias_path.exists() else None,
        meta=meta,
    )


def write_projection(features_file: Path, rows: np.ndarray, out_file: Path) -> np.ndarray:
    """Appendix B.2's projection of all features, centred by their mean, into ``out_file`` (N, 2).

    Two passes of plain chunked reads (the mean first, then the centred points, appended to
    ``out_file``), so memory does not grow with N; returns ``out_file`` memory-mapped.
    """
    P = projection_matrix(rows).T  # (d, 2)
    total, count = np.zeros(2), 0
    for block in iter_npy_rows(features_file, PROJECTION_CHUNK_BYTES):
        total += (block.astype(np.float64) @ P).sum(axis=0)
        count += len(block)
    mean = total / max(count, 1)  # centring the features centres their projections
    out = NpyAppender(out_file, (count, 2), np.float64)
    with out:
        for block in iter_npy_rows(features_file, PROJECTION_CHUNK_BYTES):
            out.append(block.astype(np.float64) @ P - mean)
    return np.load(out_file, mmap_mode="r")
