"""The tensor pipeline: batches equal to the per-sample path, augmentations drawn from torchvision's distribution."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats
from torch.utils.data import DistributedSampler
from torchvision.transforms import functional as TF

from mixcollapse.config import DataConfig
from mixcollapse.data.batches import TensorBatches, crop_flip, tensor_images
from mixcollapse.data.datasets import build_datasets, build_loaders
from mixcollapse.data.fake import write_fake_cifar10, write_fake_fashionmnist


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("data")
    write_fake_cifar10(path, n_train=60, n_test=20)
    write_fake_fashionmnist(path, n_train=70, n_test=30, compress=True)
    return str(path)


def epochs(loader, n: int = 3) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(torch.cat([x for x, _ in loader]), torch.cat([y for _, y in loader])) for _ in range(n)]


@pytest.mark.parametrize("name", ["digits", "fashionmnist"])
def test_unaugmented_batches_are_bitwise_the_dataloader_path(root, name):
    """Same generator draws as DataLoader(shuffle=True): the same samples, in the same order, bitwise."""
    bundle = build_datasets(DataConfig(name=name, root=root, download=False, train_limit=50))
    loader, loader_test = build_loaders(bundle, 16, pipeline="loader", seed=3)
    tensor, tensor_test = build_loaders(bundle, 16, pipeline="tensor", seed=3)
    assert isinstance(tensor, TensorBatches) and len(tensor) == len(loader) == 3
    for (xa, ya), (xb, yb) in zip(epochs(loader), epochs(tensor), strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert torch.equal(loader.generator.get_state(), tensor.generator.get_state())  # resumes alike
    for (xa, ya), (xb, yb) in zip(epochs(loader_test, 1), epochs(tensor_test, 1), strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_crop_and_flip_equal_torchvisions_functional_ops_on_each_image(root):
    """For given offsets and flips, the batched gather is torchvision's pad + crop + hflip + ToTensor + Normalize."""
    bundle = build_datasets(DataConfig(name="cifar10", root=root, download=False, augment=False))
    source = tensor_images(bundle.train, bundle.mean, bundle.std)
    g = torch.Generator().manual_seed(0)
    offsets, flips = torch.randint(0, 9, (60, 2), generator=g), torch.rand(60, generator=g) < 0.5
    batches = TensorBatches(source, 60, shuffle=False)
    got = batches._finish(crop_flip(source.images, offsets, flips, 4))
    assert got.is_contiguous()
    base = bundle.train.base
    for k in range(60):
        img = TF.crop(TF.pad(TF.to_pil_image(base.data[k]), 4, fill=0), int(offsets[k, 0]), int(offsets[k, 1]), 32, 32)
        want = TF.normalize(TF.to_tensor(TF.hflip(img) if flips[k] else img), bundle.mean, bundle.std)
        assert torch.equal(got[k], want), k


def _recover(images: torch.Tensor, pixels: torch.Tensor, source, padding: int = 4) -> np.ndarray:
    """The (row offset, column offset, flip) that produced each augmented image of ``pixels``' one image."""
    grid = torch.cartesian_prod(torch.arange(2 * padding + 1), torch.arange(2 * padding + 1))
    finish = TensorBatches(source, 1, shuffle=False)._finish
    candidates = torch.cat(
        [
            finish(
                crop_flip(pixels.expand(len(grid), -1, -1, -1), grid, torch.full((len(grid),), flip), padding)
            ).flatten(1)
            for flip in (False, True)
        ]
    )  # (2 * 81, D): every crop, unflipped then flipped
    labels = torch.cat([torch.cat([grid, torch.full((len(grid), 1), flip)], 1) for flip in (0, 1)])
    probe = torch.randn(candidates.shape[1], 8, dtype=torch.float64)  # equal images give equal keys
    keys = torch.cdist(
        images.flatten(1).double() @ probe, candidates.double() @ probe, compute_mode="donot_use_mm_for_euclid_dist"
    )
    equal = keys < 1e-6  # (N, 162)
    assert (equal.sum(1) == 1).all()  # each image is exactly one of the candidates
    match = equal.int().argmax(1)
    assert torch.equal(images.flatten(1), candidates[match])
    return labels[match].numpy()


def test_crop_offsets_and_flip_rate_follow_torchvisions_distribution(root):
    """Offsets uniform on 0..8 in each axis and flips at rate 1/2, as RandomCrop(32, 4) + RandomHorizontalFlip draw."""
    cfg = DataConfig(name="cifar10", root=root, download=False, train_limit=1)
    bundle = build_datasets(cfg)  # the per-sample path: torchvision's transforms, one image drawn many times
    source = tensor_images(bundle.train, bundle.mean, bundle.std)
    torch.manual_seed(0)
    per_sample = _recover(torch.stack([bundle.train[0][0] for _ in range(1500)]), source.images[:1], source)
    batches = TensorBatches(source, 1, shuffle=True, seed=1, augment=(4, True))
    tensor = _recover(torch.cat([x for _ in range(1500) for x, _ in batches]), source.images[:1], source)
    for draws in (per_sample, tensor):
        rows, cols, flips = draws.T
        for axis in (rows, cols):
            assert stats.chisquare(np.bincount(axis, minlength=9)).pvalue > 1e-3  # uniform on 0..8
        assert set(rows) == set(cols) == set(range(9))
        assert stats.binomtest(int(flips.sum()), len(flips), 0.5).pvalue > 1e-3
    table = [np.bincount(d[:, 0] * 9 + d[:, 1], minlength=81) for d in (per_sample, tensor)]
    assert stats.chi2_contingency(table).pvalue > 1e-3  # the two paths draw from one distribution


def test_distributed_shares_follow_the_distributed_sampler():
    """Under DDP rank r takes DistributedSampler's indices (seed + epoch, padded); test shards are rank::world."""
    bundle = build_datasets(DataConfig(train_limit=50, test_limit=9))
    source = tensor_images(bundle.train, bundle.mean, bundle.std)
    lookup = {tuple(source.images[i].flatten().tolist()): i for i in range(50)}
    for rank in (0, 1, 2):
        batches = TensorBatches(source, 4, shuffle=True, seed=7, shard=(rank, 3))
        sampler = DistributedSampler(range(50), num_replicas=3, rank=rank, shuffle=True, seed=7)
        for epoch in (0, 1):
            batches.set_epoch(epoch)
            sampler.set_epoch(epoch)
            seen = [lookup[tuple(x.flatten().tolist())] for xb, _ in batches for x in xb]
            assert seen == list(sampler) and len(batches) == 5  # 17 each, one padded: the last batch holds 1
        test = TensorBatches(tensor_images(bundle.test, bundle.mean, bundle.std), 2, shuffle=False, shard=(rank, 3))
        assert torch.cat([y for _, y in test]).tolist() == bundle.test.labels[rank::3].tolist()


def test_channels_last_batches_and_users_datasets_fall_back_to_the_dataloader():
    bundle = build_datasets(DataConfig(train_limit=40))
    train, _ = build_loaders(bundle, 8, channels_last=True)
    x, _ = next(iter(train))
    assert x.dtype == torch.float32 and x.is_contiguous(memory_format=torch.channels_last)
    own = torch.utils.data.TensorDataset(torch.zeros(10, 1, 8, 8), torch.zeros(10, dtype=torch.long))
    users = type(bundle)(**{**bundle.__dict__, "train": own, "test": own})
    train, test = build_loaders(users, 4)
    assert isinstance(train, torch.utils.data.DataLoader) and isinstance(test, torch.utils.data.DataLoader)
    with pytest.raises(ValueError, match="unknown data pipeline"):
        build_loaders(bundle, 8, pipeline="fast")
