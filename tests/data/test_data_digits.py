"""The embedded default: scikit-learn's real 8x8 digits with a seeded stratified split."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_digits

from mixcollapse.config import DataConfig
from mixcollapse.data.datasets import build_datasets, train_labels
from mixcollapse.data.readers import digits_split


def test_split_is_deterministic_disjoint_complete_and_stratified():
    train, test, raw = digits_split(0)
    again, _, _ = digits_split(0)
    other, _, _ = digits_split(1)
    np.testing.assert_array_equal(train, again)
    assert not np.array_equal(train, other)
    assert len(np.intersect1d(train, test)) == 0
    np.testing.assert_array_equal(np.union1d(train, test), np.arange(1797))
    assert (len(train), len(test)) == (1437, 360)
    per_class, in_test = np.bincount(raw.target), np.bincount(raw.target[test], minlength=10)
    assert np.all(np.abs(in_test - 0.2 * per_class) <= 1)


def test_bundle_shapes_and_normalization():
    b = build_datasets(DataConfig())  # the default dataset is digits
    assert (b.name, len(b.train), len(b.test), b.num_classes, b.in_channels, b.image_size) == (
        "digits",
        1437,
        360,
        10,
        1,
        8,
    )
    assert b.class_names == [str(i) for i in range(10)] and not b.synthetic
    xs = torch.stack([b.train[i][0] for i in range(len(b.train))])
    assert xs.shape == (1437, 1, 8, 8) and xs.dtype == torch.float32
    assert abs(xs.mean().item()) < 1e-4 and abs(xs.std().item() - 1) < 1e-4
    train_idx, _, _ = digits_split(0)
    raw = torch.as_tensor(load_digits().images[train_idx[0]], dtype=torch.float32) / 16
    torch.testing.assert_close(b.train[0][0][0] * b.std[0] + b.mean[0], raw, atol=1e-5, rtol=0)


def test_not_augmented_and_labels_match():
    a = build_datasets(DataConfig(augment=True))
    b = build_datasets(DataConfig(), train_augment=False)
    assert all(torch.equal(a.train[i][0], b.train[i][0]) for i in range(20))
    np.testing.assert_array_equal(train_labels(a), [a.train[i][1] for i in range(len(a.train))])
    np.testing.assert_array_equal(train_labels(a), load_digits().target[digits_split(0)[0]])


def test_subset_and_limits():
    b = build_datasets(DataConfig(classes=[7, 2, 5], train_limit=30, test_limit=9, split_seed=3))
    assert b.class_names == ["7", "2", "5"] and (len(b.train), len(b.test)) == (30, 9)
    assert set(train_labels(b)) == {0, 1, 2}
    full = build_datasets(DataConfig(split_seed=3))
    for i in range(30):
        original = full.train[int(b.train.indices[i])]
        assert [7, 2, 5][b.train[i][1]] == original[1] and torch.equal(b.train[i][0], original[0])
