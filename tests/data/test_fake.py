"""Fake files: deterministic, learnable, marked, and never written into the real data root."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from mixcollapse.config import DataConfig
from mixcollapse.data.datasets import build_datasets, train_labels
from mixcollapse.data.fake import DataSource, ensure_data, write_fake_cifar10, write_fake_fashionmnist
from mixcollapse.data.locate import FAKE_MARKER, DataError


def test_deterministic_from_seed(tmp_path):
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        write_fake_cifar10(tmp_path / name, n_train=20, n_test=10, seed=seed)
    read = lambda name: (tmp_path / name / "cifar-10-batches-py" / "data_batch_2").read_bytes()
    assert read("a") == read("b") and read("a") != read("c")


def test_images_carry_class_signal(tmp_path):
    write_fake_fashionmnist(tmp_path, n_train=200, n_test=100)
    b = build_datasets(DataConfig(name="fashionmnist", root=str(tmp_path), download=False))
    X = torch.stack([b.train[i][0].flatten() for i in range(len(b.train))])
    means = torch.stack([X[torch.as_tensor(train_labels(b)) == c].mean(0) for c in range(10)])
    Xt = torch.stack([b.test[i][0].flatten() for i in range(len(b.test))])
    yt = torch.tensor([b.test[i][1] for i in range(len(b.test))])
    accuracy = (torch.cdist(Xt, means).argmin(1) == yt).float().mean().item()
    assert accuracy > 0.5  # nearest class mean; chance is 0.1


def test_ensure_data_embedded_and_real(tmp_path):
    assert ensure_data(DataConfig(), allow_fake=False).kind == "embedded"
    write_fake_cifar10(tmp_path / "data", n_train=10, n_test=5)
    (tmp_path / "data" / FAKE_MARKER).unlink()  # stands in for a real copy
    src = ensure_data(DataConfig(name="cifar10", root=str(tmp_path / "data"), download=False), allow_fake=True)
    assert src == DataSource("real", str(tmp_path / "data"))


def test_missing_without_fake_raises(tmp_path):
    with pytest.raises(DataError, match="cifar-10-batches-py"):
        ensure_data(DataConfig(name="cifar10", root=str(tmp_path / "data"), download=False), allow_fake=False)


def test_fake_goes_to_a_separate_marked_root(tmp_path):
    cfg = DataConfig(name="cifar10", root=str(tmp_path / "data"), download=False)
    src = ensure_data(cfg, allow_fake=True)
    assert src.kind == "fake" and src.root == str(tmp_path / "data-fake")
    assert "data.download is false" in src.note and "SYNTHETIC" in src.describe("cifar10")
    assert not (tmp_path / "data").exists()  # the real root is untouched
    assert (tmp_path / "data-fake" / FAKE_MARKER).is_file()
    b = build_datasets(dataclasses.replace(cfg, root=src.root, download=False))
    assert b.synthetic and b.num_classes == 10 and len(b.train) == 1000
    stamp = (tmp_path / "data-fake" / "cifar-10-batches-py" / "test_batch").stat().st_mtime_ns
    again = ensure_data(cfg, allow_fake=True)
    assert again == src  # reused, not rewritten
    assert (tmp_path / "data-fake" / "cifar-10-batches-py" / "test_batch").stat().st_mtime_ns == stamp
    marked = ensure_data(DataConfig(name="cifar10", root=src.root, download=False), allow_fake=False)
    assert marked.kind == "fake"  # pointing data.root at fake files still says so


def test_fake_root_never_overwrites_other_files(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    cfg = DataConfig(name="fashionmnist", root=str(tmp_path / "data"), download=False)
    with pytest.raises(DataError, match="refusing"):
        ensure_data(cfg, allow_fake=True, fake_root=tmp_path / "mine")
    with pytest.raises(DataError, match="separate"):
        ensure_data(cfg, allow_fake=True, fake_root=tmp_path / "data")
    src = ensure_data(cfg, allow_fake=True, fake_root=tmp_path / "out" / "fake-data")
    assert len(build_datasets(dataclasses.replace(cfg, root=src.root, download=False)).test) == 200
