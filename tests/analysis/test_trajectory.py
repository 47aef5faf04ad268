"""Layer-wise trajectories (Figure 3): projections, probes, origin, and both architectures."""

from __future__ import annotations

import json

import numpy as np
import torch

from mixcollapse.analysis.readout import fit_probe
from mixcollapse.analysis.trajectory import layer_trajectories, logit_plane, project_layers, save_trajectories
from mixcollapse.config import ModelConfig
from mixcollapse.metrics.projection import projection_matrix
from mixcollapse.models import build_model


def test_logit_plane_maps_logits_to_the_appendix_b2_projection():
    rng = np.random.default_rng(0)
    W3, h = rng.normal(size=(3, 12)), rng.normal(size=(5, 12))
    np.testing.assert_allclose((h @ W3.T) @ logit_plane(W3).T, h @ projection_matrix(W3).T, atol=1e-10)


def test_probe_recovers_a_linear_map():
    rng = np.random.default_rng(1)
    F, M = rng.normal(size=(400, 6)), rng.normal(size=(6, 3))
    P, r2 = fit_probe(F, F @ M + 2.0, ridge=1e-9)
    np.testing.assert_allclose(P, M, atol=1e-5)
    assert r2 > 0.999
    P0, r20 = fit_probe(np.ones((10, 4)), rng.normal(size=(10, 3)))  # a constant layer predicts nothing
    assert not P0.any() and r20 == 0.0


def test_classifier_projection_starts_at_the_origin_and_ends_with_b2():
    rng = np.random.default_rng(2)
    d, rows = 8, rng.normal(size=(3, 8))
    const = rng.normal(size=d)
    ref = [np.tile(const, (50, 1)), rng.normal(size=(50, d)), rng.normal(size=(50, d))]
    mix = [np.tile(const, (4, 1)), rng.normal(size=(4, d)), rng.normal(size=(4, d))]
    xy, r2 = project_layers(mix, ref, rows, "classifier")
    assert xy.shape == (4, 3, 2) and r2 is None
    np.testing.assert_allclose(xy[:, 0], 0, atol=1e-12)
    np.testing.assert_allclose(xy[:, -1], (mix[-1] - ref[-1].mean(0)) @ projection_matrix(rows).T, atol=1e-10)


def test_probe_projection_handles_layers_of_different_widths():
    rng = np.random.default_rng(3)
    rows = rng.normal(size=(3, 6))
    ref = [rng.normal(size=(80, 2)), rng.normal(size=(80, 4)), rng.normal(size=(80, 6))]
    mix = [rng.normal(size=(5, 2)), rng.normal(size=(5, 4)), rng.normal(size=(5, 6))]
    xy, r2 = project_layers(mix, ref, rows, "probe")
    assert xy.shape == (5, 4, 2) and len(r2) == 3 and r2[-1] == 1.0
    np.testing.assert_allclose(xy[:, 0], 0)  # the prepended origin
    np.testing.assert_allclose(xy[:, -1], (mix[-1] - ref[-1].mean(0)) @ projection_matrix(rows).T, atol=1e-10)


class Images(torch.utils.data.Dataset):
    def __init__(self, n=60, channels=3, size=16, classes=4):
        gen = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, channels, size, size, generator=gen)
        self.labels = np.arange(n) % classes

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], int(self.labels[i])


def batches(ds, batch=16):
    while True:
        for i in range(0, len(ds) - batch + 1, batch):
            yield ds.x[i : i + batch]


def test_layer_trajectories_of_a_vit_and_a_wrn(tmp_path):
    ds = Images()
    lams = (0.0, 0.5, 1.0)
    vit = build_model(ModelConfig(name="vit", patch_size=4, embed_dim=16, vit_depth=2, num_heads=2), 4, 3, 16)
    res = layer_trajectories(
        vit, ds, ds.labels, [0, 1, 2], lams=lams, reference_batches=batches(ds), reference_size=32, bn_mode="train"
    )
    assert res["projection"] == "classifier" and res["xy"].shape == (6, 3, 2)
    np.testing.assert_allclose(res["xy"][:, 0], 0, atol=1e-6)  # the CLS embedding does not depend on the input
    assert res["same"].sum() == 3 and res["layer_names"][0] == "embedding"
    wrn = build_model(ModelConfig(name="wrn", depth=10, width=1), 4, 3, 16)
    for mode in ("train", "recalibrate", "eval"):
        res = layer_trajectories(
            wrn,
            ds,
            ds.labels,
            [1, 2, 3],
            lams=lams,
            reference_batches=batches(ds),
            reference_size=48,
            bn_mode=mode,
            recalibrate_batches=2,
        )
        assert res["projection"] == "probe" and res["xy"].shape == (6, 4, 2)  # origin + 3 stages
        assert np.isfinite(res["xy"]).all()
        np.testing.assert_allclose(res["xy"][:, 0], 0)
    saved = save_trajectories(res, tmp_path / "t")
    with np.load(saved / "trajectories.npz") as arrays:
        np.testing.assert_array_equal(arrays["xy"], res["xy"])
    assert json.loads((saved / "trajectories.json").read_text())["layer_names"] == res["layer_names"]
