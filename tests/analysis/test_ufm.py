"""The UFM distance and the plane's measures, streamed through PairMeasures, against exact answers."""

import numpy as np
import pytest
import torch

from mixcollapse.analysis.configuration import ConfigurationAccumulator
from mixcollapse.analysis.ufm import PairMeasures
from mixcollapse.etf import simplex_etf
from mixcollapse.mixup import PairSet, mixup_targets


def test_configuration_metrics_on_the_exact_ufm_optimum():
    """Features = the UFM optimum for an ETF classifier: distance 0, Theorem 3.1's same-class and K_lambda,
    and p_a = lam up to the weight decay's offset, p_a - lam = -lambda_H (C-1)/(C m^2) z_a exactly."""
    from mixcollapse.theory import optimal_features

    C_, d, m, decay = 4, 6, 2.0, 1e-3
    W = simplex_etf(C_, d, multiplier=m, seed=0)
    lam = np.tile(np.linspace(0.0, 1.0, 21), 6)
    ab = np.repeat(np.array([[0, 0], [1, 1], [2, 2], [0, 1], [1, 2], [0, 2]]), 21, axis=0)
    pairs = PairSet(np.arange(len(lam)), np.arange(len(lam)), lam, ab[:, 0], ab[:, 1])
    Y = mixup_targets(torch.as_tensor(lam), torch.as_tensor(ab[:, 0]), torch.as_tensor(ab[:, 1]), C_)
    H = optimal_features(W, Y, decay)
    logits = H @ W.T
    acc = ConfigurationAccumulator(W)
    measure = PairMeasures(acc, W, optimal_features, decay, buffer_rows=40)
    for lo in range(0, len(lam), 25):  # streamed in batches, as during extraction
        sl = slice(lo, lo + 25)
        measure({"features": H[sl], "logits": logits[sl], "pairs": pairs.subset(sl)})
    span = measure.compute()
    out = acc.compute()
    assert acc.ufm[3] == len(lam)  # every pair measured once
    assert out["ufm_distance"] < 1e-6 and out["ufm_scale"] == pytest.approx(1.0, abs=1e-6)
    assert span["ufm_distance_in_span"] < 1e-6 and span["classifier_span_energy"] == pytest.approx(1.0, abs=1e-12)
    assert out["same_cos_mean"] == pytest.approx(1.0, abs=1e-9)
    assert out["same_cos_lambda_spread"] < 1e-9 and out["same_norm_lambda_cv"] < 1e-6
    assert out["other_logit_spread"] < 1e-6  # all other logits equal (K_lambda)
    diff = ab[:, 0] != ab[:, 1]
    z_a = logits[torch.arange(len(lam)), torch.as_tensor(ab[:, 0])].numpy()
    offset = decay * (C_ - 1) / (C_ * m**2) * np.abs(z_a[diff])
    assert out["pair_prob_mae"] == pytest.approx(offset.mean(), rel=1e-5)
    assert out["pair_prob_mae"] < 0.01  # p_a follows lam


def test_cosine_in_the_classifier_plane_and_the_energy_outside_it():
    """h = w_a + v with v outside span{w_0, w_1, w_2}: the figure's plane shows h at w_a (cosine 1 in the span)
    while the full-space cosine is ||w_a|| / ||h||, and the energy outside is ||v||^2 / ||h||^2; by hand."""
    gen = torch.Generator().manual_seed(0)
    C_, d = 5, 8
    W = torch.randn(C_, d, generator=gen, dtype=torch.float64)
    rows = W[[0, 1, 2]]
    Q = torch.linalg.qr(rows.T).Q  # (d, 3) basis of the plane's span
    v = torch.randn(6, d, generator=gen, dtype=torch.float64)
    v -= (v @ Q) @ Q.T  # outside the span (but not outside W's span: rows 3, 4 remain)
    a = torch.tensor([0, 1, 2, 0, 1, 2])
    b = torch.tensor([0, 1, 2, 1, 2, 0])  # three same-class pairs, three different-class pairs
    H = W[a] + v
    H[3:] = 0.5 * (W[a[3:]] + W[b[3:]]) + v[3:]
    lam = np.full(6, 0.5)
    pairs = PairSet(np.arange(6), np.arange(6), lam, a.numpy(), b.numpy())
    measure = PairMeasures(ConfigurationAccumulator(W), W, None, 1e-4, span_rows=rows)
    measure({"features": H, "logits": H @ W.T, "pairs": pairs})
    out = measure.compute()
    assert out["same_cos_in_span"] == pytest.approx(1.0, abs=1e-12)
    in_plane = H - v
    assert out["offspan_energy"] == pytest.approx(((v**2).sum() / (H**2).sum()).item(), rel=1e-12)
    full_cos = ((H[:3] * W[a[:3]]).sum(1) / (H[:3].norm(dim=1) * W[a[:3]].norm(dim=1))).mean().item()
    assert full_cos < 0.99 and (in_plane[:3] - W[a[:3]]).abs().max() < 1e-12
    # Tilting a same-class feature inside the plane lowers the in-span cosine to the plane's own cosine.
    tilt = H.clone()
    tilt[0] = W[0] + 0.3 * W[1] + v[0]
    measure = PairMeasures(ConfigurationAccumulator(W), W, None, 1e-4, span_rows=rows)
    measure({"features": tilt, "logits": tilt @ W.T, "pairs": pairs})
    p = W[0] + 0.3 * W[1]
    expected = (2 + (p @ W[0] / (p.norm() * W[0].norm())).item()) / 3
    assert measure.compute()["same_cos_in_span"] == pytest.approx(expected, rel=1e-12)
