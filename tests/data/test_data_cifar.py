"""CIFAR10/100 read through build_datasets from small files in the real on-disk format."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
import torchvision

from mixcollapse.catalog import get_spec
from mixcollapse.config import DataConfig
from mixcollapse.data.datasets import build_datasets, train_labels
from mixcollapse.data.fake import CIFAR10_NAMES, CIFAR100_NAMES, write_fake_cifar10, write_fake_cifar100
from mixcollapse.data.locate import DataError

CIFAR10_MEAN, CIFAR10_STD = get_spec("cifar10").mean, get_spec("cifar10").std


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("cifar")
    write_fake_cifar10(path, n_train=60, n_test=20)
    write_fake_cifar100(path, n_train=200, n_test=50)
    return str(path)


def cfg(root: str, **kw) -> DataConfig:
    return DataConfig(name=kw.pop("name", "cifar10"), root=root, download=False, **kw)


def test_files_have_the_real_pickle_layout(root):
    with open(f"{root}/cifar-10-batches-py/data_batch_1", "rb") as f:
        batch = pickle.load(f, encoding="bytes")  # the recipe on the CIFAR web page
    assert set(batch) == {b"data", b"labels", b"batch_label", b"filenames"}
    assert batch[b"data"].dtype == np.uint8 and batch[b"data"].shape == (12, 3072)
    assert isinstance(batch[b"labels"], list) and batch[b"batch_label"] == b"training batch 1 of 5"
    with open(f"{root}/cifar-10-batches-py/batches.meta", "rb") as f:
        assert pickle.load(f, encoding="latin1")["label_names"] == CIFAR10_NAMES  # torchvision's view
    with open(f"{root}/cifar-100-python/train", "rb") as f:
        train = pickle.load(f, encoding="bytes")
    assert {b"fine_labels", b"coarse_labels", b"data"} <= set(train)


def test_unmodified_torchvision_checks_md5_so_data_py_checks_presence(root):
    with pytest.raises(RuntimeError, match="not found or corrupted"):
        torchvision.datasets.CIFAR10(root, train=True, download=False)
    build_datasets(cfg(root))  # same files, read through data.py


def test_cifar10_shapes_labels_names(root):
    b = build_datasets(cfg(root))
    assert (len(b.train), len(b.test), b.num_classes, b.in_channels, b.image_size) == (60, 20, 10, 3, 32)
    assert b.class_names == CIFAR10_NAMES and b.name == "cifar10" and b.synthetic
    x, y = b.train[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and isinstance(y, int)
    assert set(train_labels(b)) == set(range(10))
    assert all(0 <= b.test[i][1] < 10 for i in range(len(b.test)))


def test_normalization_uses_the_cifar10_constants(root):
    b = build_datasets(cfg(root), train_augment=False)
    with open(f"{root}/cifar-10-batches-py/data_batch_1", "rb") as f:
        raw = pickle.load(f, encoding="latin1")["data"][0].reshape(3, 32, 32) / 255.0
    x, _ = b.train[0]
    mean, std = torch.tensor(CIFAR10_MEAN)[:, None, None], torch.tensor(CIFAR10_STD)[:, None, None]
    torch.testing.assert_close(x * std + mean, torch.as_tensor(raw, dtype=torch.float32), atol=1e-5, rtol=0)
    assert b.mean == CIFAR10_MEAN and b.std == CIFAR10_STD


def test_augmentation_on_and_off(root):
    plain = build_datasets(cfg(root), train_augment=False)
    again = build_datasets(cfg(root, augment=True), train_augment=False)
    for i in range(5):
        assert torch.equal(plain.train[i][0], again.train[i][0])
    torch.manual_seed(0)
    augmented = build_datasets(cfg(root))  # cfg.augment defaults to the paper's crop + flip
    changed = sum(not torch.equal(augmented.train[i][0], plain.train[i][0]) for i in range(20))
    assert changed >= 10
    assert all(torch.equal(augmented.test[i][0], plain.test[i][0]) for i in range(5))  # test set never augmented
    off = build_datasets(cfg(root, augment=False))
    assert all(torch.equal(off.train[i][0], plain.train[i][0]) for i in range(5))
    none = build_datasets(cfg(root, crop_padding=0, flip=False))
    assert all(torch.equal(none.train[i][0], plain.train[i][0]) for i in range(5))


def test_class_subset_relabels_in_given_order(root):
    b = build_datasets(cfg(root, classes=[3, 1, 7]), train_augment=False)
    assert b.num_classes == 3 and b.class_names == ["cat", "automobile", "horse"]
    original = np.asarray(b.train.base.targets)[b.train.indices]
    np.testing.assert_array_equal(np.array([3, 1, 7])[train_labels(b)], original)
    assert len(b.train) == 18 and set(train_labels(b)) == {0, 1, 2}
    assert sorted(b.test[i][1] for i in range(len(b.test))) == [0, 0, 1, 1, 2, 2]


def test_limits_keep_the_first_samples_after_subsetting(root):
    full = build_datasets(cfg(root, classes=[3, 1, 7]), train_augment=False)
    b = build_datasets(cfg(root, classes=[3, 1, 7], train_limit=7, test_limit=2), train_augment=False)
    assert (len(b.train), len(b.test)) == (7, 2)
    np.testing.assert_array_equal(train_labels(b), train_labels(full)[:7])
    assert torch.equal(b.train[6][0], full.train[6][0])


def test_train_labels_match_iteration(root):
    b = build_datasets(cfg(root, classes=[9, 0, 4, 2]), train_augment=False)
    np.testing.assert_array_equal(train_labels(b), [b.train[i][1] for i in range(len(b.train))])


def test_cifar100(root):
    b = build_datasets(cfg(root, name="cifar100"), train_augment=False)
    assert (len(b.train), len(b.test), b.num_classes, b.in_channels) == (200, 50, 100, 3)
    assert b.class_names == CIFAR100_NAMES and b.train[0][0].shape == (3, 32, 32)
    np.testing.assert_array_equal(np.bincount(train_labels(b)), np.full(100, 2))
    sub = build_datasets(cfg(root, name="cifar100", classes=[99, 0]), train_augment=False)
    assert sub.class_names == ["worm", "apple"] and len(sub.train) == 4


def test_corrupt_file_is_a_one_line_data_error(tmp_path):
    write_fake_cifar10(tmp_path, n_train=10, n_test=5)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(DataError) as info:
        build_datasets(cfg(str(tmp_path)))
    assert "\n" not in str(info.value) and "data_batch_1..5" in str(info.value)


def test_bad_class_index_is_a_data_error(root):
    with pytest.raises(DataError, match="0..9"):
        build_datasets(cfg(root, classes=[0, 10]))


class _Hostile:
    """What an attacker pickles: unpickling calls os.system('touch <marker>')."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def test_a_hostile_batch_file_runs_nothing(tmp_path):
    """A pickle named data_batch_1 whose __reduce__ runs a command: refused with one line, the command never runs."""
    write_fake_cifar10(tmp_path, n_train=20, n_test=10)
    marker = tmp_path / "pwned"
    for name in ("data_batch_1", "batches.meta"):
        with open(tmp_path / "cifar-10-batches-py" / name, "wb") as f:
            pickle.dump({"data": _Hostile(str(marker)), "labels": [0], "label_names": ["x"]}, f)
        with pytest.raises(DataError) as info:
            build_datasets(cfg(str(tmp_path)))
        assert "refusing to load posix.system" in str(info.value) and "\n" not in str(info.value)
        assert not marker.exists()
        write_fake_cifar10(tmp_path, n_train=20, n_test=10)  # the real-format files back
    pickle.loads(pickle.dumps(_Hostile(str(marker))))  # the same bytes through plain pickle do run it
    assert marker.exists()


def test_the_safe_loader_reads_what_torchvisions_own_loader_reads(root):
    """torchvision's CIFAR code (md5 checks off) as the reference for every array, label and class name."""

    class Plain10(torchvision.datasets.CIFAR10):
        train_list = [[n, None] for n, _ in torchvision.datasets.CIFAR10.train_list]
        test_list = [[n, None] for n, _ in torchvision.datasets.CIFAR10.test_list]
        meta = {**torchvision.datasets.CIFAR10.meta, "md5": None}

    from mixcollapse.data.cifar import CIFAR10Files

    for train in (True, False):
        ours, ref = CIFAR10Files(root, train=train), Plain10(root, train=train)
        np.testing.assert_array_equal(ours.data, ref.data)
        assert ours.targets == ref.targets and ours.classes == ref.classes and ours.class_to_idx == ref.class_to_idx
