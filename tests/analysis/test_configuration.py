"""Mixup configuration measures: known answers on exact constructions, and streaming == dense."""

import math

import numpy as np
import pytest
import torch
from scipy.optimize import minimize_scalar

from mixcollapse.analysis.configuration import (
    ConfigurationAccumulator,
    lambda_bin_index,
    ufm_distance,
    ufm_distance_stats,
)
from mixcollapse.etf import simplex_etf
from mixcollapse.mixup import mixup_targets
from reference import configuration_metrics_dense

F64 = torch.float64


def _pairs(N, C, seed, same_fraction=0.3):
    gen = torch.Generator().manual_seed(seed)
    lam = torch.rand(N, generator=gen, dtype=F64)
    a = torch.randint(0, C, (N,), generator=gen)
    shift = torch.randint(1, C, (N,), generator=gen)
    same = torch.rand(N, generator=gen) < same_fraction
    b = torch.where(same, a, (a + shift) % C)
    return lam, a, b, same, gen


def _stream(W, b, H, logits, lam, a, cb, same, sizes, H_opt=None, **kw):
    acc = ConfigurationAccumulator(W, b, **kw)
    start = 0
    for n in sizes:
        s = slice(start, start + n)
        acc.accumulate(
            H[s],
            None if logits is None else logits[s],
            lam[s],
            a[s],
            cb[s],
            same[s],
            H_opt=None if H_opt is None else H_opt[s],
        )
        start += n
    assert start == H.shape[0]
    return acc.compute()


def test_logits_of_the_target_give_zero_prob_error():
    # (a) logits = log(mixup target + tiny): softmax p_a = lam up to ~C * tiny.
    C, N = 6, 400
    lam, a, b, same, _ = _pairs(N, C, seed=0, same_fraction=0.0)
    target = mixup_targets(lam, a, b, C)
    logits = torch.log(target + 1e-12)
    H = torch.randn(N, 5, dtype=F64)
    out = configuration_metrics_dense(H, logits, lam, a, b, same, torch.randn(C, 5, dtype=F64), n_lambda_bins=10)
    assert out["diff_count"] == N and out["same_count"] == 0
    assert out["pair_prob_mae"] < 1e-10
    assert out["pair_mass"] == pytest.approx(1.0, abs=1e-10)
    assert out["other_logit_spread"] < 1e-12  # all other logits equal log(tiny)
    np.testing.assert_allclose(out["pair_prob_by_lambda"], out["lambda_mean_by_lambda"], atol=1e-10)
    assert math.isnan(out["same_cos_mean"])


def test_known_other_logit_spread_and_pair_prob():
    # Others z = [1, 3]: std 1; gap = max(5, 0) - mean(1, 3) = 3; spread = 1/3.
    logits = torch.tensor([[5.0, 0.0, 1.0, 3.0]], dtype=F64)
    one = torch.ones(1, dtype=F64)
    out = configuration_metrics_dense(
        torch.zeros(1, 2, dtype=F64), logits, 0.25 * one, torch.tensor([0]), torch.tensor([1]),
        torch.tensor([False]), torch.randn(4, 2, dtype=F64),
    )  # fmt: skip
    p = torch.softmax(logits[0], 0)
    assert out["other_logit_spread"] == pytest.approx(1 / 3)
    assert out["pair_prob_mae"] == pytest.approx(abs(float(p[0]) - 0.25))
    assert out["pair_mass"] == pytest.approx(float(p[0] + p[1]))


def test_same_class_features_on_the_classifier():
    # (b) h = kappa w_a for every lambda: cosine 1, no spread across lambda.
    C, d, N = 5, 7, 300
    W = simplex_etf(C, d, multiplier=2.0, seed=0)
    lam, a, b, same, _ = _pairs(N, C, seed=1, same_fraction=1.0)
    H = 3.0 * W[a]
    out = _stream(W, None, H, None, lam, a, b, same, [100, 1, 199], n_lambda_bins=10)
    assert out["same_count"] == N
    assert out["same_cos_mean"] == pytest.approx(1.0, abs=1e-12)
    assert out["same_cos_std"] < 1e-6  # sqrt of a difference of squares
    assert out["same_cos_lambda_spread"] < 1e-12
    assert out["same_norm_lambda_cv"] < 1e-12
    assert out["same_norm_mean"] == pytest.approx(6.0)
    np.testing.assert_allclose(out["same_class_means"], 3.0 * W, atol=1e-12)
    # Norms growing with lambda do show up.
    out = _stream(W, None, H * (1 + lam).unsqueeze(1), None, lam, a, b, same, [N], n_lambda_bins=10)
    assert out["same_norm_lambda_cv"] > 0.1


def test_ufm_distance_closed_form():
    # (c) exact rescaling gives 0; noise gives the brute-force 1-D minimum.
    gen = torch.Generator().manual_seed(0)
    H = torch.randn(50, 8, generator=gen, dtype=F64)
    assert ufm_distance(H, 2.5 * H) < 1e-15
    assert ufm_distance_stats(H, 2.5 * H)["scale"] == pytest.approx(0.4)
    noisy = H + 0.3 * torch.randn(50, 8, generator=gen, dtype=F64)
    dist = ufm_distance(H, noisy)
    brute = minimize_scalar(lambda s: float((H - s * noisy).norm() / H.norm()), bounds=(-5, 5), method="bounded")
    assert dist > 0.1
    assert dist == pytest.approx(brute.fun, rel=1e-8)
    stats = ufm_distance_stats(H, noisy)
    assert stats["scale"] == pytest.approx(brute.x, rel=1e-5)
    per = ((H - stats["scale"] * noisy).norm(dim=1) / H.norm(dim=1)).mean()
    assert stats["mean_sample_distance"] == pytest.approx(float(per))
    # The streaming version agrees (its closed form loses ~1e-8 absolute to cancellation).
    lam, a, b, same, _ = _pairs(50, 4, seed=2)
    out = _stream(torch.randn(4, 8, dtype=F64), None, H, None, lam, a, b, same, [20, 30], H_opt=noisy)
    assert out["ufm_distance"] == pytest.approx(dist, abs=1e-8)
    assert out["ufm_scale"] == pytest.approx(stats["scale"], rel=1e-12)


def test_channel_position_of_interpolated_centres_is_lambda():
    # (d) h = lam c_a + (1 - lam) c_b sits at t = lam, on the channel.
    C, d, N = 4, 6, 500
    gen = torch.Generator().manual_seed(3)
    centres = torch.randn(C, d, generator=gen, dtype=F64)
    lam, a, b, same, _ = _pairs(N, C, seed=4, same_fraction=0.0)
    H = lam.unsqueeze(1) * centres[a] + (1 - lam).unsqueeze(1) * centres[b]
    W = torch.randn(C, d, generator=gen, dtype=F64)
    out = _stream(W, None, H, None, lam, a, b, same, [250, 250], centres=centres, n_lambda_bins=10)
    assert out["channel_count"] == N
    assert out["channel_position_mae"] < 1e-12
    assert out["off_channel_distance"] < 1e-12
    np.testing.assert_allclose(out["channel_position_by_lambda"], out["lambda_mean_by_lambda"], atol=1e-12)
    # Uniform lam: the histogram of t is flat on [0, 1], empty outside, and a density.
    edges, dens = out["position_hist_edges"], out["position_hist_density"]
    assert out["position_underflow"] == out["position_overflow"] == 0
    assert out["position_hist_counts"].sum() == N
    assert np.sum(dens * np.diff(edges)) == pytest.approx(1.0)
    inside = (edges[:-1] >= 0) & (edges[1:] <= 1)
    assert dens[~inside].sum() == 0 and np.all(dens[inside] > 0.5)
    # Moving off the segment is measured, perpendicular offsets do not change t.
    seg = centres[a] - centres[b]
    perp = torch.randn(N, d, generator=gen, dtype=F64)
    perp -= ((perp * seg).sum(1) / (seg * seg).sum(1)).unsqueeze(1) * seg
    perp *= (0.5 * seg.norm(dim=1) / perp.norm(dim=1)).unsqueeze(1)
    out = _stream(W, None, H + perp, None, lam, a, b, same, [N], centres=centres)
    assert out["channel_position_mae"] < 1e-12
    assert out["off_channel_distance"] == pytest.approx(0.5)


@pytest.mark.parametrize("with_logits", [True, False])
def test_streaming_equals_dense(with_logits):
    # (e) uneven batches, every measure, float64.
    C, d, N = 7, 16, 600
    lam, a, cb, same, gen = _pairs(N, C, seed=5)
    lam[:5] = torch.tensor([0.0, 1.0, 0.5, 0.05, 0.95], dtype=F64)
    W = torch.randn(C, d, generator=gen, dtype=F64)
    bias = torch.randn(C, generator=gen, dtype=F64)
    centres = 2 * torch.randn(C, d, generator=gen, dtype=F64)
    H = (lam.unsqueeze(1) * centres[a] + (1 - lam).unsqueeze(1) * centres[cb]) + torch.randn(
        N, d, generator=gen, dtype=F64
    )
    logits = (H @ W.T + 0.5 * torch.randn(N, C, generator=gen, dtype=F64)) if with_logits else None
    H_opt = H + 0.2 * torch.randn(N, d, generator=gen, dtype=F64)
    kw = dict(centres=centres, n_lambda_bins=8, position_range=(0.1, 0.9), n_position_bins=12)
    streamed = _stream(W, bias, H, logits, lam, a, cb, same, [1, 150, 37, 300, 112], H_opt=H_opt, **kw)
    dense = configuration_metrics_dense(H, logits, lam, a, cb, same, W, bias, H_opt=H_opt, **kw)
    assert streamed.keys() == dense.keys()
    for key, value in dense.items():
        if isinstance(value, float):
            assert streamed[key] == pytest.approx(value, rel=1e-10, abs=1e-12), key
        elif isinstance(value, int):
            assert streamed[key] == value, key
        else:
            np.testing.assert_allclose(
                np.asarray(streamed[key]), np.asarray(value), rtol=1e-10, atol=1e-12, err_msg=key
            )
    assert streamed["same_count"] + streamed["diff_count"] == N
    assert 0 < streamed["pair_prob_mae"] < 1 and 0 < streamed["other_logit_spread"]
    assert streamed["position_underflow"] > 0 and streamed["position_overflow"] > 0
    assert streamed["ufm_distance"] == pytest.approx(ufm_distance(H, H_opt), abs=1e-8)


def test_float32_inputs_and_empty_groups():
    C, d, N = 3, 4, 40
    lam, a, b, same, gen = _pairs(N, C, seed=6, same_fraction=0.0)
    W = torch.randn(C, d, generator=gen)
    out = _stream(W, None, torch.randn(N, d, generator=gen), None, lam.float(), a, b, same, [N])
    assert out["same_count"] == 0 and math.isnan(out["same_norm_lambda_cv"])
    assert out["other_logit_spread"] == 0.0  # C = 3: one other class, trivially equal
    assert torch.isnan(out["same_class_means"]).all()
    assert "channel_count" not in out and "ufm_distance" not in out


def test_lambda_bins():
    lam = torch.tensor([0.0, 0.099, 0.1, 0.5, 0.999, 1.0], dtype=F64)
    assert lambda_bin_index(lam, 10).tolist() == [0, 0, 1, 5, 9, 9]


def test_logit_position_is_lambda_for_logits_on_the_mixed_target():
    """An MSE network that fits lam e_a + (1 - lam) e_b has logit position (z_a - z_b + 1) / 2 = lam exactly."""
    C, d, N = 5, 7, 400
    lam, a, b, same, gen = _pairs(N, C, seed=11, same_fraction=0.0)
    logits = mixup_targets(lam, a, b, C)
    H = torch.randn(N, d, generator=gen, dtype=F64)
    W = torch.randn(C, d, generator=gen, dtype=F64)
    assert _stream(W, None, H, logits, lam, a, b, same, [N])["logit_position_mae"] < 1e-12
    # The mean of the targets of lam and 1 - lam is (e_a + e_b) / 2 whatever lam is: s = 1/2.
    shifted = (logits + mixup_targets(1 - lam, a, b, C)) / 2
    out = _stream(W, None, H, shifted, lam, a, b, same, [N])
    assert out["logit_position_mae"] == pytest.approx((0.5 - lam).abs().mean().item(), abs=1e-12)


def test_channel_middle_density_ratio_tells_crowding_from_even_spacing():
    C, d, N = 3, 4, 20000
    gen = torch.Generator().manual_seed(5)
    centres = torch.randn(C, d, generator=gen, dtype=F64)
    lam, a, b, same, _ = _pairs(N, C, seed=6, same_fraction=0.0)
    W = torch.randn(C, d, generator=gen, dtype=F64)

    def ratio(t: torch.Tensor) -> float:
        H = t.unsqueeze(1) * centres[a] + (1 - t).unsqueeze(1) * centres[b]
        return _stream(W, None, H, None, lam, a, b, same, [N], centres=centres)["channel_middle_density_ratio"]

    assert ratio(lam) == pytest.approx(1.0, abs=0.08)  # t = lam uniform: as dense in the middle as at the ends
    # A logit gap log(lam / (1 - lam)) mapped linearly onto the segment, gap +-6 at the ends (Figure 1's picture):
    crowded = (torch.log(lam / (1 - lam)).clamp(-6, 6) / 6 + 1) / 2
    t = crowded.numpy()
    by_hand = np.sum((t >= 0.4) & (t <= 0.6)) / (np.sum(t <= 0.2) + np.sum(t >= 0.8)) * 2
    assert ratio(crowded) == pytest.approx(by_hand, rel=1e-12)
    assert ratio(crowded) > 3
