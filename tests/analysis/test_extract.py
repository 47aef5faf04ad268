"""Mixup-pair feature extraction: batch-norm modes, the on-disk format, nothing half-written."""

import json

import numpy as np
import pytest
import torch
from torch import nn

import mixcollapse.analysis.extract as extract
from mixcollapse.analysis.extract import (
    BatchNormPlan,
    Loading,
    NpyAppender,
    StoredPairs,
    extract_pair_features,
    iter_npy_rows,
    load_pair_features,
    recalibrate_batchnorm,
    write_pairs,
    write_projection,
)
from mixcollapse.metrics.projection import project_features
from mixcollapse.mixing import Mixing
from mixcollapse.mixup import MixedPairImages, make_pairs, pair_chunks

EVAL = BatchNormPlan("eval")
QUIET = Loading(progress=False)


class TinyBN(nn.Module):
    """A model that honours the toolkit's contract: features(x) and a final linear classifier."""

    def __init__(self, num_classes=4):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.BatchNorm1d(8), nn.ReLU())
        self.classifier = nn.Linear(8, num_classes)

    def features(self, x):
        return self.body(x)

    def forward(self, x):
        return self.classifier(self.features(x))


@pytest.fixture
def toy():
    gen = torch.Generator().manual_seed(0)
    y = torch.arange(64) % 4
    x = torch.randn(64, 1, 4, 4, generator=gen) + y.view(-1, 1, 1, 1).float()
    dataset = torch.utils.data.TensorDataset(x, y)
    pairs = make_pairs(y.numpy(), [0, 1, 2], pairs_per_class_pair=10, seed=0)
    return TinyBN(), dataset, pairs


def test_recalibration_is_the_plain_mean_of_batch_statistics(toy):
    model, dataset, _ = toy
    batches = [torch.randn(16, 1, 4, 4) + k for k in range(3)]
    net = recalibrate_batchnorm(model, iter(batches), 3, "cpu")
    bn = net.body[2]
    pre = [net.body[1](net.body[0](b)) for b in batches]
    expected_mean = torch.stack([p.mean(0) for p in pre]).mean(0)
    expected_var = torch.stack([p.var(0, unbiased=True) for p in pre]).mean(0)
    torch.testing.assert_close(bn.running_mean, expected_mean)
    torch.testing.assert_close(bn.running_var, expected_var)
    assert not net.training
    # the caller's model is untouched
    assert torch.equal(model.body[2].running_mean, torch.zeros(8))


def test_recalibrated_features_do_not_depend_on_batch_size(tmp_path, toy):
    model, dataset, pairs = toy

    def bn():
        return BatchNormPlan("recalibrate", Mixing().batches(dataset, 4, 16, seed=1), recalibrate_batches=4)

    a = extract_pair_features(model, dataset, pairs, tmp_path / "a", bn=bn(), loading=Loading(7, progress=False))
    b = extract_pair_features(model, dataset, pairs, tmp_path / "b", bn=bn(), loading=Loading(64, progress=False))
    np.testing.assert_allclose(a.features, b.features, rtol=1e-5, atol=1e-6)
    assert a.meta["bn_mode"] == "recalibrate"


def test_train_mode_composes_batches_like_training_batches(tmp_path, toy):
    model, dataset, pairs = toy
    model.train()
    before = model.body[2].running_mean.clone()
    out = extract_pair_features(
        model,
        dataset,
        pairs,
        tmp_path / "t",
        bn=BatchNormPlan("train", Mixing().batches(dataset, 4, 32, seed=0)),
        loading=Loading(32, progress=False),
    )
    assert out.meta["bn_mode"] == "train" and out.meta["pair_fraction"] == 0.25
    assert torch.equal(model.body[2].running_mean, before)  # running statistics untouched
    assert model.training  # the caller's mode is restored
    # A batch made only of the analysis pairs has other (skewed) statistics: other features.
    skewed = model.train().features(torch.stack([dataset[int(i)][0] for i in pairs.index_a[:8]]))
    assert not np.allclose(out.features[:8], skewed.detach().numpy(), atol=1e-3)


def test_eval_mode_and_round_trip(tmp_path, toy):
    model, dataset, pairs = toy
    out = extract_pair_features(
        model, dataset, pairs, tmp_path / "e", bn=EVAL, loading=Loading(16, progress=False), meta={"classes": [0, 1, 2]}
    )
    again = load_pair_features(tmp_path / "e")
    model.eval()
    image = lambda k: dataset[int(k)][0]  # noqa: E731
    x = torch.stack(
        [
            lam * image(a) + (1 - lam) * image(b)
            for a, b, lam in zip(pairs.index_a, pairs.index_b, pairs.lam, strict=True)
        ]
    ).float()
    with torch.no_grad():
        np.testing.assert_allclose(again.features, model.features(x).numpy(), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(again.logits, model(x).numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(again.pairs.lam, pairs.lam)
    np.testing.assert_array_equal(again.same, pairs.class_a == pairs.class_b)
    assert again.meta["classes"] == [0, 1, 2] and again.meta["num_pairs"] == len(pairs) == 60
    assert json.loads((tmp_path / "e" / "meta.json").read_text())["bn_mode"] == "eval"
    assert out.classifier_weight.shape == (4, 8)


def test_a_failure_leaves_nothing_half_written(tmp_path, toy):
    model, dataset, pairs = toy

    def explode(batch):
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        extract_pair_features(model, dataset, pairs, tmp_path / "x", bn=EVAL, callbacks=[explode], loading=QUIET)
    assert list(tmp_path.iterdir()) == []


def test_existing_output_is_never_overwritten_silently(tmp_path, toy):
    model, dataset, pairs = toy
    extract_pair_features(model, dataset, pairs, tmp_path / "o", bn=EVAL, loading=QUIET)
    with pytest.raises(FileExistsError, match="already exists"):
        extract_pair_features(model, dataset, pairs, tmp_path / "o", bn=EVAL, loading=QUIET)


def test_batchnorm_modes_need_training_batches(tmp_path, toy):
    model, dataset, pairs = toy
    with pytest.raises(ValueError, match="needs mixed training batches"):
        extract_pair_features(model, dataset, pairs, tmp_path / "r", bn=BatchNormPlan("recalibrate"), loading=QUIET)


def test_npy_appender_and_chunked_reader_round_trip(tmp_path):
    data = np.random.default_rng(0).normal(size=(1000, 7)).astype(np.float32)
    with NpyAppender(tmp_path / "x.npy", data.shape, np.float32) as out:
        for lo in range(0, 1000, 300):
            out.append(data[lo : lo + 300])
    assert np.array_equal(np.load(tmp_path / "x.npy"), data)  # a plain .npy file
    blocks = list(iter_npy_rows(tmp_path / "x.npy", chunk_bytes=7 * 4 * 128))
    assert [len(b) for b in blocks] == [128] * 7 + [104]
    assert np.array_equal(np.concatenate(blocks), data)


def test_npy_appender_leaves_no_partial_file(tmp_path):
    with pytest.raises(RuntimeError, match="rows written"):
        with NpyAppender(tmp_path / "x.npy", (10, 2), np.float64) as out:
            out.append(np.zeros((4, 2)))  # too few rows
    with pytest.raises(KeyError):
        with NpyAppender(tmp_path / "y.npy", (10, 2), np.float64) as out:
            raise KeyError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_stored_pairs_are_read_by_range_and_extract_like_pairs_in_memory(tmp_path, toy):
    model, dataset, pairs = toy
    y = dataset.tensors[1].numpy()
    stored = write_pairs(tmp_path / "pairs", pair_chunks(y, [0, 1, 2], 10, seed=0), len(pairs))
    assert isinstance(stored, StoredPairs) and len(stored) == len(pairs) == 60
    for sl in (slice(0, 60), slice(7, 23), slice(59, 60), slice(30, 30)):
        part, ref = stored.subset(sl), pairs.subset(sl)
        for name in ("index_a", "index_b", "lam", "class_a", "class_b"):
            assert np.array_equal(getattr(part, name), getattr(ref, name))
    # a batch is fetched with one range read, and matches item-by-item fetching
    images = MixedPairImages(dataset, stored)
    batch = images.__getitems__([5, 6, 7, 9])
    assert [i for _, i in batch] == [5, 6, 7, 9]
    assert torch.equal(batch[3][0], MixedPairImages(dataset, pairs)[9][0])
    kw = dict(bn=EVAL, loading=Loading(16, progress=False))
    seen = []
    a = extract_pair_features(model, dataset, pairs, tmp_path / "a", **kw)
    b = extract_pair_features(model, dataset, stored, tmp_path / "b", callbacks=[seen.append], **kw)
    assert np.array_equal(np.asarray(a.features), np.asarray(b.features))
    assert np.array_equal(np.asarray(a.pairs.lam), np.asarray(b.pairs.lam))
    assert np.array_equal(np.concatenate([s["pairs"].class_b for s in seen]), pairs.class_b)
    assert (tmp_path / "pairs" / "lam.npy").exists()  # copied, not moved: the caller owns its files


def test_write_pairs_leaves_no_partial_file(tmp_path, toy):
    _, dataset, pairs = toy
    with pytest.raises(RuntimeError, match="rows written"):
        write_pairs(tmp_path / "pairs", [pairs.subset(slice(0, 10))], 60)  # fewer pairs than announced
    assert [p.name for p in (tmp_path / "pairs").iterdir() if p.name.startswith(".")] == []


def test_the_saved_projection_is_project_features_of_the_saved_features(tmp_path, monkeypatch):
    """write_projection streams in chunks; it must equal Appendix B.2's projection of all features at once,
    centred by their mean (features with a large common offset, read back in several chunks)."""
    rng = np.random.default_rng(0)
    H = (rng.normal(size=(5000, 7)) + 30.0).astype(np.float32)  # a ReLU network's common component
    np.save(tmp_path / "features.npy", H)
    rows = rng.normal(size=(3, 7))
    monkeypatch.setattr(extract, "PROJECTION_CHUNK_BYTES", 7 * 8 * 1000)  # five chunks
    xy = write_projection(tmp_path / "features.npy", rows, tmp_path / "projection.npy")
    np.testing.assert_allclose(xy, project_features(H.astype(np.float64), rows), atol=1e-9)
    np.testing.assert_allclose(np.asarray(xy).mean(axis=0), 0.0, atol=1e-9)
