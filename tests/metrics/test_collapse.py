"""Neural collapse NC1-NC4: streaming accumulators against the dense reference, and known answers."""

import math

import pytest
import torch

from mixcollapse.etf import simplex_etf
from mixcollapse.metrics.collapse import CovarianceAccumulator, MeanAccumulator, nc_metrics
from reference import nc_metrics_dense

F64 = torch.float64


def _stream(H, y, logits, W, sizes):
    """Run the two passes over uneven batches and return nc_metrics."""
    C = W.shape[0]
    means_acc = MeanAccumulator(C)
    splits = list(zip(H.split(sizes), y.split(sizes), logits.split(sizes), strict=True))
    for h, t, _ in splits:
        means_acc.accumulate(h, t)
    M, counts, mu_G = means_acc.compute()
    cov = CovarianceAccumulator(M, counts)
    for h, t, z in splits:
        cov.accumulate(h, t, z)
    out = cov.compute()
    assert out["num_samples"] == H.shape[0]
    assert torch.allclose(mu_G, H.to(F64).mean(0), atol=1e-12)
    return nc_metrics(M, counts, out["sigma_w"], W, nc4_agreement=out["nc4_agreement"]), out


def _random_problem(C, d, N, seed, missing=()):
    gen = torch.Generator().manual_seed(seed)
    centres = 2.0 * torch.randn(C, d, generator=gen, dtype=F64)
    y = torch.randint(0, C, (N,), generator=gen)
    for c in missing:
        y[y == c] = (c + 1) % C
    H = centres[y] + torch.randn(N, d, generator=gen, dtype=F64) * torch.rand(d, generator=gen, dtype=F64)
    W = centres + 0.5 * torch.randn(C, d, generator=gen, dtype=F64)
    logits = H @ W.T
    logits = logits + logits.std() * torch.randn(N, C, generator=gen, dtype=F64)  # noisy, so NC4 < 1
    return H, y, logits, W


def _uneven_sizes(N, seed):
    gen = torch.Generator().manual_seed(seed)
    sizes = []
    while sum(sizes) < N:
        sizes.append(min(int(torch.randint(1, 40, (1,), generator=gen)), N - sum(sizes)))
    return sizes


@pytest.mark.parametrize(
    ("C", "d", "N", "missing"), [(5, 8, 300, ()), (10, 32, 517, ()), (6, 3, 211, ()), (7, 12, 250, (2,))]
)
def test_streaming_equals_dense(C, d, N, missing):
    H, y, logits, W = _random_problem(C, d, N, seed=C * d, missing=missing)
    streamed, _ = _stream(H, y, logits, W, _uneven_sizes(N, seed=N))
    dense = nc_metrics_dense(H, y, logits, W)
    assert streamed["num_classes"] == dense["num_classes"] == C - len(missing)
    assert streamed["num_samples"] == dense["num_samples"] == N
    for key, value in dense.items():
        assert streamed[key] == pytest.approx(value, rel=1e-10, abs=1e-12), key
    assert 0 < streamed["nc4_agreement"] < 1
    assert streamed["nc1"] > 0


def test_float32_features_stream_like_float64():
    H, y, logits, W = _random_problem(5, 8, 300, seed=1)
    streamed32, _ = _stream(H.float(), y, logits.float(), W.float(), [100, 7, 193])
    dense64 = nc_metrics_dense(H.float().double(), y, logits.float().double(), W.float().double())
    for key in ("nc1", "nc2_norm_cv", "nc2_cos_std", "nc3"):
        assert streamed32[key] == pytest.approx(dense64[key], rel=1e-10), key


def test_perfect_collapse_scores_zero():
    C, d, m = 6, 10, 3.0
    W = simplex_etf(C, d, multiplier=1.0, seed=0)
    M = m * W  # centred means on a simplex ETF, self-dual with W
    y = torch.arange(C).repeat(4)
    H = M[y]
    streamed, out = _stream(H, y, H @ W.T, W, [5, 19])
    assert streamed["nc1"] == pytest.approx(0.0, abs=1e-20)
    for key in ("nc2_norm_cv", "nc2_cos_std", "nc2_max_angle", "nc2_etf_distance", "nc3"):
        assert streamed[key] < 1e-12, key
    assert streamed["nc2_cos_mean"] == pytest.approx(-1 / (C - 1))
    assert streamed["nc4_agreement"] == 1.0
    assert streamed["w_etf_distance"] < 1e-12
    # Sigma_B of an ETF with rows of norm m is m^2/(C-1) times the projector onto its span.
    sb = out["sigma_b"]
    assert torch.allclose(sb @ sb, m**2 / (C - 1) * sb, atol=1e-12)


def test_known_nc1():
    # Triangle of means with radius r in d = 2, within-class covariance sigma^2 I exactly:
    # Sigma_B = r^2/2 I, so NC1 = tr(sigma^2 I (2/r^2) I) / 3 = 4 sigma^2 / (3 r^2).
    r, sigma = 2.0, 0.3
    angles = torch.tensor([0.0, 2 * math.pi / 3, 4 * math.pi / 3], dtype=F64)
    M = r * torch.stack([angles.cos(), angles.sin()], 1)
    offsets = sigma * math.sqrt(2) * torch.tensor([[1.0, 0], [-1, 0], [0, 1], [0, -1]], dtype=F64)
    H = (M.unsqueeze(1) + offsets).reshape(-1, 2)
    y = torch.arange(3).repeat_interleave(4)
    streamed, out = _stream(H, y, torch.zeros(12, 3, dtype=F64), M, [3, 9])
    assert torch.allclose(out["sigma_w"], sigma**2 * torch.eye(2, dtype=F64), atol=1e-15)
    assert streamed["nc1"] == pytest.approx(4 * sigma**2 / (3 * r**2), rel=1e-12)
    assert nc_metrics_dense(H, y, torch.zeros(12, 3), M)["nc1"] == pytest.approx(4 * sigma**2 / (3 * r**2))


def test_no_logits_means_no_nc4():
    H, y, _, W = _random_problem(4, 6, 50, seed=2)
    acc = MeanAccumulator(4)
    acc.accumulate(H, y)
    M, counts, _ = acc.compute()
    cov = CovarianceAccumulator(M, counts)
    cov.accumulate(H, y)
    out = cov.compute()
    assert math.isnan(out["nc4_agreement"])
    assert math.isnan(nc_metrics(M, counts, out["sigma_w"], W)["nc4_agreement"])
    with pytest.raises(RuntimeError):
        MeanAccumulator(3).compute()
