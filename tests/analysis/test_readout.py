"""The final classifier read at every layer (Figure 3's claim as a number): logits, half depths, summary."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mixcollapse.analysis.readout import half_depth, layer_logits, readout_summary, softmax
from mixcollapse.analysis.trajectory import layer_trajectories, pick_different_pairs
from mixcollapse.config import ModelConfig
from mixcollapse.mixup import mix_images
from mixcollapse.models import build_model


def test_half_depth_by_hand():
    # final 0.5: half is 0.25, first reached at layer 2 (the first entry, 0.3, does not count)
    assert half_depth(np.array([0.3, 0.12, 0.3, 0.5])) == 2
    assert half_depth(np.array([0.1, 0.35, 0.2, 0.5])) == 1  # the first layer that gets there counts
    assert half_depth(np.array([0.9, 0.01, 0.02, 0.06])) == 3  # only the last layer
    assert half_depth(np.array([0.1, 0.05, 0.1])) == 1  # exactly half


def test_classifier_readout_is_the_classifier_on_every_layer():
    rng = np.random.default_rng(0)
    W, b = rng.normal(size=(5, 4)), rng.normal(size=5)
    layers = [rng.normal(size=(3, 4)) for _ in range(3)]
    z = layer_logits(layers, layers, W, b, "classifier")
    assert z.shape == (3, 3, 5)
    np.testing.assert_allclose(z[:, 1], layers[1] @ W.T + b)


def test_probe_readout_starts_at_the_reference_mean_and_ends_at_the_classifier():
    rng = np.random.default_rng(1)
    W, b = rng.normal(size=(4, 6)), rng.normal(size=4)
    final_ref = rng.normal(size=(200, 6))
    M = rng.normal(size=(3, 6))  # the last layer is a linear map of an earlier 3-wide one
    early_ref = np.linalg.lstsq(M.T, final_ref.T, rcond=None)[0].T
    final_ref = early_ref @ M
    early_mix = rng.normal(size=(5, 3))
    z = layer_logits([early_mix, early_mix @ M], [early_ref, final_ref], W, b, "probe")
    assert z.shape == (5, 3, 4)
    np.testing.assert_allclose(z[:, 0], np.tile((final_ref @ W.T).mean(0) + b, (5, 1)))
    np.testing.assert_allclose(z[:, 2], early_mix @ M @ W.T + b)
    np.testing.assert_allclose(z[:, 1], z[:, 2], rtol=0.03, atol=0.05)  # a linear layer: the probe recovers the map


def test_summary_finds_the_minor_class_later():
    # three blocks after the embedding: the major class reaches half its final at block 1, the minor at block 3
    lam = np.array([0.1, 0.2, 0.9, 0.5, 0.0, 0.3])
    early, late = [0.1, 0.7, 0.8, 0.8], [0.1, 0.01, 0.02, 0.3]
    probs = np.zeros((6, 4, 2))
    probs[0] = probs[1] = np.stack([late, early], axis=1)  # lam < 0.5: the second image's class is the major one
    probs[2] = np.stack([early, late], axis=1)  # lam 0.9: the first image's class is the major one
    probs[3] = probs[4] = 0.1
    probs[5] = np.stack([early, early], axis=1)  # both at block 1
    out = readout_summary(probs, lam, ["embedding", "block 1", "block 2", "block 3"])
    small = out["small_lambda"]
    assert small["mixes"] == 4  # lam 0.5 and 0 have no minor class
    assert small["major_half_depth"] == 1 and small["minor_half_depth"] == 3  # medians of (1,1,1,1), (3,3,3,1)
    assert small["minor_lag"] == 2 and small["minor_later_share"] == 0.75 and small["minor_earlier_share"] == 0
    assert small["minor_half_depth_fraction"] == 1.0 and small["major_half_depth_fraction"] == 1 / 3
    assert out["per_lambda"]["0.1"]["p_second"] == early
    assert out["per_lambda"]["0.9"]["major_half_depth"] == 1 and out["per_lambda"]["0.9"]["minor_half_depth"] == 3


def test_softmax_rows_sum_to_one():
    p = softmax(np.array([[1000.0, 1000.0], [0.0, np.log(3.0)]]))
    np.testing.assert_allclose(p, [[0.5, 0.5], [0.25, 0.75]])


class Images(torch.utils.data.Dataset):
    def __init__(self, n=60, classes=4):
        self.x = torch.randn(n, 3, 16, 16, generator=torch.Generator().manual_seed(0))
        self.labels = np.arange(n) % classes

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], int(self.labels[i])


def _batches(ds):
    while True:
        for i in range(0, len(ds) - 15, 16):
            yield ds.x[i : i + 16]


@pytest.mark.parametrize("arch", ["vit", "wrn"])
def test_the_last_layer_reads_what_the_network_outputs(arch):
    ds = Images()
    cfg = (
        ModelConfig(name="vit", patch_size=4, embed_dim=16, vit_depth=2, num_heads=2)
        if arch == "vit"
        else ModelConfig(name="wrn", depth=10, width=1)
    )
    model = build_model(cfg, 4, 3, 16).eval()
    lams = (0.1, 0.5, 0.9)
    res = layer_trajectories(
        model,
        ds,
        ds.labels,
        [0, 1, 2],
        lams=lams,
        reference_batches=_batches(ds),
        reference_size=32,
        bn_mode="eval",
        readout_pairs=3,
    )
    pairs = pick_different_pairs(ds.labels, [0, 1, 2], 3)
    assert res["readout_pairs"] == [list(p) for p in pairs] and tuple(pairs[0]) == (
        int(res["pair"][-1][0]),
        int(res["pair"][-1][1]),
    )
    assert all(ds.labels[a] == 0 and ds.labels[b] == 1 for a, b in pairs)
    lam = torch.tensor(lams)
    x = torch.cat([mix_images(ds[a][0].expand(3, 3, 16, 16), ds[b][0].expand(3, 3, 16, 16), lam) for a, b in pairs])
    with torch.no_grad():
        expected = torch.softmax(model(x).double(), 1)[:, :2].numpy()
    assert res["readout_probs"].shape == (9, len(res["layer_names"]), 2)
    np.testing.assert_allclose(res["readout_probs"][:, -1], expected, atol=1e-5)
    np.testing.assert_allclose(res["readout_lam"], np.tile(lams, 3))
    assert set(res["readout"]["per_lambda"]) == {"0.1", "0.5", "0.9"}
