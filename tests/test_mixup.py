"""Mixup (eq. 1): batch mixing bookkeeping, the alpha = 0 baseline, explicit analysis pairs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import mixcollapse.mixup as mixup
from mixcollapse.mixup import choose_classes, make_pairs, mix_batch, mix_images, pair_chunks, sample_lambda

C = 5


def _batch(B: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(B, 1, 4, 4, generator=gen), torch.randint(0, C, (B,), generator=gen)


@pytest.mark.parametrize("per_sample", [False, True])
def test_mixed_inputs_and_targets_follow_lambda(per_sample):
    x, y = _batch()
    m = mix_batch(x, y, C, alpha=1.0, rng=np.random.default_rng(0), per_sample=per_sample)
    lam = m.lam.view(-1, 1, 1, 1)
    assert torch.allclose(m.x, lam * x[m.index_a] + (1 - lam) * x[m.index_b], atol=1e-6)
    onehot = F.one_hot(y, C).float()
    expected = m.lam[:, None] * onehot[m.index_a] + (1 - m.lam[:, None]) * onehot[m.index_b]
    assert torch.allclose(m.target, expected, atol=1e-6)
    assert torch.allclose(m.target.sum(dim=1), torch.ones(len(y)), atol=1e-6)
    assert torch.equal(m.label_a, y[m.index_a]) and torch.equal(m.label_b, y[m.index_b])
    assert torch.equal(m.same_class, y[m.index_a] == y[m.index_b])
    assert sorted(m.index_b.tolist()) == list(range(len(y)))  # a permutation of the batch
    assert ((m.lam >= 0) & (m.lam <= 1)).all()
    distinct = len(set(m.lam.tolist()))
    assert distinct == (len(y) if per_sample else 1)


def test_same_and_different_class_tags_both_occur():
    x, y = _batch(B=64)
    m = mix_batch(x, y, C, alpha=1.0, rng=np.random.default_rng(1))
    assert m.same_class.any() and (~m.same_class).any()


def test_alpha_zero_is_the_baseline_and_changes_nothing():
    x, y = _batch()
    m = mix_batch(x, y, C, alpha=0.0, rng=np.random.default_rng(0))
    assert torch.equal(m.x, x)
    assert torch.equal(m.target, F.one_hot(y, C).float())
    assert torch.equal(m.lam, torch.ones(len(y)))
    assert m.same_class.all()


def test_lambda_one_leaves_the_first_image():
    x_a, x_b = torch.randn(3, 2), torch.randn(3, 2)
    assert torch.equal(mix_images(x_a, x_b, torch.ones(3)), x_a)
    assert torch.equal(mix_images(x_a, x_b, torch.zeros(3)), x_b)


def test_seeded_mixing_is_reproducible():
    x, y = _batch()
    a = mix_batch(x, y, C, 1.0, np.random.default_rng(7), per_sample=True)
    b = mix_batch(x, y, C, 1.0, np.random.default_rng(7), per_sample=True)
    c = mix_batch(x, y, C, 1.0, np.random.default_rng(8), per_sample=True)
    assert torch.equal(a.x, b.x) and torch.equal(a.index_b, b.index_b) and torch.equal(a.lam, b.lam)
    assert not torch.equal(a.lam, c.lam)


def test_sample_lambda():
    assert np.array_equal(sample_lambda(0.0, 4, np.random.default_rng(0)), np.ones(4))
    lam = sample_lambda(1.0, 10_000, np.random.default_rng(0))
    assert 0.48 < lam.mean() < 0.52 and lam.min() >= 0 and lam.max() <= 1  # Beta(1, 1) = U(0, 1)
    with pytest.raises(ValueError):
        sample_lambda(-1.0, 1, np.random.default_rng(0))


def test_make_pairs_tags_counts_and_distinct_same_class_partners():
    labels = np.repeat(np.arange(4), 7)  # 4 classes, 7 images each
    classes, n = [0, 2, 3], 50
    pairs = make_pairs(labels, classes, n, alpha=1.0, seed=3)
    assert len(pairs) == n * 6  # unordered pairs with repetition of 3 classes: 3 same + 3 different
    assert np.array_equal(labels[pairs.index_a], pairs.class_a)
    assert np.array_equal(labels[pairs.index_b], pairs.class_b)
    combos = {}
    for a, b in zip(pairs.class_a, pairs.class_b, strict=True):
        combos[(a, b)] = combos.get((a, b), 0) + 1
    assert combos == {(0, 0): n, (0, 2): n, (0, 3): n, (2, 2): n, (2, 3): n, (3, 3): n}
    same = pairs.same
    assert same.sum() == 3 * n
    assert (pairs.index_a[same] != pairs.index_b[same]).all()
    assert ((pairs.lam >= 0) & (pairs.lam <= 1)).all()
    again = make_pairs(labels, classes, n, alpha=1.0, seed=3)
    assert np.array_equal(again.index_b, pairs.index_b) and np.array_equal(again.lam, pairs.lam)
    sub = pairs.subset(slice(0, 10))
    assert len(sub) == 10 and np.array_equal(sub.index_a, pairs.index_a[:10])


@pytest.mark.parametrize("lam_mode", ["beta", "grid"])
def test_pairs_drawn_in_chunks_are_the_pairs_drawn_at_once(monkeypatch, lam_mode):
    labels = np.repeat(np.arange(4), 7)
    whole = make_pairs(labels, [0, 2, 3], 50, lam_mode, grid_size=7, seed=3)  # one chunk per class pair
    # a class pair of 50 pairs in one chunk is drawn as before chunks existed: ia, partners, lambdas
    rng = np.random.default_rng(3)
    members = np.flatnonzero(labels == 0)
    ia = rng.choice(members, size=50)
    assert np.array_equal(whole.index_a[:50], ia)
    # streamed in chunks of 16 (rows of a class pair split over several chunks)
    monkeypatch.setattr(mixup, "PAIR_CHUNK", 16)
    chunks = list(pair_chunks(labels, [0, 2, 3], 50, lam_mode, grid_size=7, seed=3))
    assert max(len(c) for c in chunks) == 16 and sum(len(c) for c in chunks) == 300
    joined = make_pairs(labels, [0, 2, 3], 50, lam_mode, grid_size=7, seed=3)
    for name in ("index_a", "index_b", "lam", "class_a", "class_b"):
        assert np.array_equal(np.concatenate([getattr(c, name) for c in chunks]), getattr(joined, name))
    assert np.array_equal(joined.class_a, whole.class_a) and np.array_equal(joined.class_b, whole.class_b)
    assert (joined.index_a[joined.same] != joined.index_b[joined.same]).all()
    if lam_mode == "grid":  # the grid continues across chunk boundaries
        assert np.array_equal(joined.lam, whole.lam)


def test_make_pairs_grid_and_errors():
    labels = np.repeat(np.arange(3), 4)
    pairs = make_pairs(labels, [0, 1, 2], 11, lam_mode="grid", grid_size=11)
    assert np.allclose(pairs.lam[:11], np.linspace(0, 1, 11))
    with pytest.raises(ValueError, match="no training images"):
        make_pairs(labels, [0, 5], 3)
    with pytest.raises(ValueError, match="lambda mode"):
        make_pairs(labels, [0, 1], 3, lam_mode="nope")


def test_choose_classes():
    picked = choose_classes(10, seed=0)
    assert len(set(picked)) == 3 and picked == sorted(picked) and picked == choose_classes(10, seed=0)
    with pytest.raises(ValueError):
        choose_classes(2, seed=0)
