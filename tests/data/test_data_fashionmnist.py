"""FashionMNIST read through build_datasets from small IDX files in the real on-disk format."""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from conftest import with_system_dirs
from mixcollapse.catalog import get_spec
from mixcollapse.config import DataConfig
from mixcollapse.data.datasets import build_datasets, train_labels
from mixcollapse.data.fake import write_fake_fashionmnist
from mixcollapse.data.formats import read_idx

RAW = "FashionMNIST/raw"

FASHIONMNIST_MEAN, FASHIONMNIST_STD = get_spec("fashionmnist").mean, get_spec("fashionmnist").std


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


def test_distributed_gz_files_are_read_in_place(tmp_path):
    write_fake_fashionmnist(tmp_path, n_train=20, n_test=10, compress=True)
    before = sorted(p.name for p in (tmp_path / RAW).iterdir())
    b = build_datasets(DataConfig(name="fashionmnist", root=str(tmp_path), download=False))
    assert len(b.train) == 20 and len(b.test) == 10
    assert sorted(p.name for p in (tmp_path / RAW).iterdir()) == before  # nothing decompressed next to them
    with gzip.open(tmp_path / RAW / "train-labels-idx1-ubyte.gz") as f:
        assert f.read()[8:] == bytes(train_labels(b).astype(np.uint8))


def test_read_idx_equals_torchvisions_reader(tmp_path):
    from torchvision.datasets.mnist import read_image_file, read_label_file

    plain = write_fake_fashionmnist(tmp_path / "plain", n_train=30, n_test=10)
    packed = write_fake_fashionmnist(tmp_path / "packed", n_train=30, n_test=10, compress=True)
    for name, reference in (("train-images-idx3-ubyte", read_image_file), ("t10k-labels-idx1-ubyte", read_label_file)):
        expected = reference(str(plain / name)).numpy()
        np.testing.assert_array_equal(read_idx(plain / name), expected)
        np.testing.assert_array_equal(read_idx(packed / f"{name}.gz"), expected)


def test_samples_are_bitwise_torchvisions(root):
    """The in-memory images give exactly what torchvision's FashionMNIST + ToTensor + Normalize gives."""
    from torchvision import transforms as T

    tv = torchvision.datasets.FashionMNIST(
        root,
        train=True,
        download=False,
        transform=T.Compose([T.ToTensor(), T.Normalize(FASHIONMNIST_MEAN, FASHIONMNIST_STD)]),
    )
    b = build_datasets(DataConfig(name="fashionmnist", root=root, download=False))
    for i in range(len(tv)):
        assert torch.equal(b.train[i][0], tv[i][0]) and b.train[i][1] == tv[i][1]


def test_flat_layout_of_the_distribution(tmp_path):
    """The four .gz files side by side in one folder (the original download, Debian's package)."""
    folder = write_fake_fashionmnist(tmp_path / "tv", n_train=20, n_test=10, compress=True)
    flat = tmp_path / "flat"
    flat.mkdir()
    for f in folder.iterdir():
        (flat / f.name).write_bytes(f.read_bytes())
    b = build_datasets(DataConfig(name="fashionmnist", root=str(flat), download=False))
    assert (len(b.train), len(b.test), b.source) == (20, 10, str(flat))


def test_search_order_root_then_environment_then_system(tmp_path, monkeypatch):
    from mixcollapse.data import locate as data

    env, system, root = (
        write_fake_fashionmnist(tmp_path / n, n_train=n_train, n_test=10).parents[1]
        for n, n_train in (("env", 30), ("system", 40), ("root", 50))
    )
    spec = with_system_dirs(monkeypatch, "fashionmnist", (str(system),))
    cfg = DataConfig(name="fashionmnist", root=str(tmp_path / "nothing-here"), download=False)
    assert len(build_datasets(cfg).train) == 40  # only the system folder has it
    monkeypatch.setenv(data.DATA_ENV, str(env))
    assert len(build_datasets(cfg).train) == 30  # the environment comes before the system folder
    cfg.root = str(root)
    assert len(build_datasets(cfg).train) == 50  # an explicit root comes first
    assert data.search_roots(spec, cfg.root)[:2] == [root, env]


def test_missing_everywhere_names_each_folder_and_the_install_command(tmp_path, monkeypatch):
    from mixcollapse.data import locate as data

    system = tmp_path / "usr-share"
    with_system_dirs(monkeypatch, "fashionmnist", (str(system),))
    monkeypatch.setenv(data.DATA_ENV, str(tmp_path / "env"))
    with pytest.raises(data.DataError) as info:
        build_datasets(DataConfig(name="fashionmnist", root=str(tmp_path / "root"), download=False))
    message = str(info.value)
    assert "\n" not in message and "apt-get install dataset-fashion-mnist" in message
    for folder in ("root", "env", "usr-share"):
        assert f"{tmp_path / folder}/FashionMNIST/raw, {tmp_path / folder}" in message  # both layouts
    assert "data.download=true" in message  # advised only because download is off here


def test_real_fashionmnist_through_the_loader(real_fashionmnist, monkeypatch):
    """The real files of Debian's package, read where they are (a read-only system folder): nothing written."""
    from mixcollapse.data import locate as data

    before = sorted(os.listdir(real_fashionmnist))
    b = build_datasets(DataConfig(name="fashionmnist", root=real_fashionmnist, download=False))
    assert (len(b.train), len(b.test), b.num_classes, b.synthetic) == (60000, 10000, 10, False)
    assert np.bincount(train_labels(b)).tolist() == [6000] * 10  # the real set is balanced
    assert train_labels(b)[:5].tolist() == [9, 0, 0, 3, 0]  # its first labels: ankle boot, T-shirt, ...
    assert b.class_names[9] == "Ankle boot" and b.source == real_fashionmnist
    x = torch.stack([b.train[i][0] for i in range(1000)])
    raw_mean = (x * FASHIONMNIST_STD[0] + FASHIONMNIST_MEAN[0]).mean().item()
    assert abs(raw_mean - FASHIONMNIST_MEAN[0]) < 0.01  # the published mean pixel, 0.2860
    assert sorted(os.listdir(real_fashionmnist)) == before
    # Found from anywhere, through the system folder, when data.root holds nothing.
    with_system_dirs(monkeypatch, "fashionmnist", (real_fashionmnist,))
    assert data.locate_files(DataConfig(name="fashionmnist", root="/nonexistent")) == Path(real_fashionmnist)
