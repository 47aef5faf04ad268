"""FashionMNIST read through build_datasets from small IDX files in the real on-disk format."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import torch
import torchvision

from mixcollapse.config import DataConfig
from mixcollapse.data import FASHIONMNIST_MEAN, FASHIONMNIST_STD, build_datasets, train_labels
from mixcollapse.fakedata import write_fake_fashionmnist

RAW = "FashionMNIST/raw"


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("fashion")
    write_fake_fashionmnist(path, n_train=40, n_test=20)
    return str(path)


def test_idx_headers_are_big_endian(root):
    with open(f"{root}/{RAW}/train-images-idx3-ubyte", "rb") as f:
        assert struct.unpack(">4i", f.read(16)) == (2051, 40, 28, 28)
    with open(f"{root}/{RAW}/t10k-labels-idx1-ubyte", "rb") as f:
        assert struct.unpack(">2i", f.read(8)) == (2049, 20)


def test_unmodified_torchvision_reads_them(root):
    ds = torchvision.datasets.FashionMNIST(root, train=True, download=False)
    assert len(ds) == 40 and ds.data.shape == (40, 28, 28)


def test_shapes_names_normalization(root):
    b = build_datasets(DataConfig(name="fashionmnist", root=root, download=False))
    assert (len(b.train), len(b.test), b.num_classes, b.in_channels, b.image_size) == (40, 20, 10, 1, 28)
    assert b.class_names[0] == "T-shirt/top" and b.class_names[9] == "Ankle boot" and b.synthetic
    x, y = b.train[0]
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32 and 0 <= y < 10
    with open(f"{root}/{RAW}/train-images-idx3-ubyte", "rb") as f:
        raw = np.frombuffer(f.read()[16 : 16 + 784], dtype=np.uint8).reshape(1, 28, 28) / 255.0
    torch.testing.assert_close(
        x * FASHIONMNIST_STD[0] + FASHIONMNIST_MEAN[0], torch.as_tensor(raw, dtype=torch.float32), atol=1e-5, rtol=0
    )


def test_never_augmented_even_when_cfg_augment(root):
    torch.manual_seed(0)
    a = build_datasets(DataConfig(name="fashionmnist", root=root, download=False, augment=True))
    b = build_datasets(DataConfig(name="fashionmnist", root=root, download=False), train_augment=False)
    assert all(torch.equal(a.train[i][0], b.train[i][0]) for i in range(10))


def test_subset_limit_and_train_labels(root):
    c = DataConfig(name="fashionmnist", root=root, download=False, classes=[9, 5, 0], train_limit=5)
    b = build_datasets(c)
    assert b.class_names == ["Ankle boot", "Sandal", "T-shirt/top"] and len(b.train) == 5
    np.testing.assert_array_equal(train_labels(b), [b.train[i][1] for i in range(5)])
    original = np.asarray(b.train.base.targets)[b.train.indices]
    np.testing.assert_array_equal(np.array([9, 5, 0])[train_labels(b)], original)


def test_distributed_gz_files_are_decompressed(tmp_path):
    write_fake_fashionmnist(tmp_path, n_train=20, n_test=10, compress=True)
    assert not (tmp_path / RAW / "train-images-idx3-ubyte").exists()
    b = build_datasets(DataConfig(name="fashionmnist", root=str(tmp_path), download=False))
    assert len(b.train) == 20 and len(b.test) == 10
    with gzip.open(tmp_path / RAW / "train-labels-idx1-ubyte.gz") as f:
        assert f.read() == (tmp_path / RAW / "train-labels-idx1-ubyte").read_bytes()
