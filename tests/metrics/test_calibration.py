"""ECE/MCE as Appendix C defines them: the streaming accumulator against a numpy Appendix C and hand
computations, and against torchmetrics where the two conventions agree."""

import math

import numpy as np
import pytest
import torch
from torchmetrics.functional.classification import multiclass_calibration_error

from mixcollapse.metrics.calibration import CalibrationAccumulator, ConfidenceByLambdaAccumulator
from reference import confidence_by_lambda, expected_calibration_error, max_calibration_error, reliability_diagram_data

F64 = torch.float64


def appendix_c_reference(probs: np.ndarray, targets: np.ndarray, n_bins: int) -> tuple[float, float]:
    """Textbook ECE and MCE (Appendix C): M equal-width bins on the top-1 probability, bin m = [m/M, (m+1)/M)."""
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == targets
    bins = np.minimum(np.floor(conf * n_bins).astype(int), n_bins - 1)
    ece, mce = 0.0, 0.0
    for m in range(n_bins):
        in_bin = bins == m
        if in_bin.any():
            gap = abs(correct[in_bin].mean() - conf[in_bin].mean())
            ece += in_bin.sum() / len(conf) * gap
            mce = max(mce, gap)
    return ece, mce


def _random_logits(N, C, seed, scale=3.0):
    gen = torch.Generator().manual_seed(seed)
    logits = scale * torch.randn(N, C, generator=gen, dtype=F64)
    targets = torch.randint(0, C, (N,), generator=gen)
    # Let the top class be right more often than chance, as for a real classifier.
    hit = torch.rand(N, generator=gen) < 0.6
    targets = torch.where(hit, logits.argmax(1), targets)
    return logits, targets


def _stream(scores, targets, sizes, n_bins, from_logits=True):
    acc = CalibrationAccumulator(n_bins, from_logits=from_logits)
    for s, t in zip(scores.split(sizes), targets.split(sizes), strict=True):
        acc.accumulate(s, t)
    return acc.compute()


@pytest.mark.parametrize(("N", "C", "n_bins", "seed"), [(3000, 10, 15, 0), (1000, 3, 10, 1), (2000, 100, 15, 2)])
def test_ece_three_ways(N, C, n_bins, seed):
    logits, targets = _random_logits(N, C, seed)
    probs = torch.softmax(logits, 1)
    conf = probs.max(1).values.numpy()
    # Continuous random probabilities: no confidence near a bin edge, so float32 rounding and the
    # edge convention cannot matter and all three must agree.
    assert np.min(np.abs(conf - np.round(conf * n_bins) / n_bins)) > 2e-7  # float32 spacing near 1: 6e-8
    ref_ece, ref_mce = appendix_c_reference(probs.numpy(), targets.numpy(), n_bins)
    tm_ece = float(multiclass_calibration_error(probs, targets, C, n_bins=n_bins, norm="l1"))
    ours = _stream(logits, targets, [N // 3, 7, N - N // 3 - 7], n_bins)
    assert ref_ece > 0.01
    assert tm_ece == pytest.approx(ref_ece, abs=1e-6)  # torchmetrics works in float32
    assert ours["ece"] == pytest.approx(ref_ece, rel=1e-12, abs=1e-15)
    assert ours["mce"] == pytest.approx(ref_mce, rel=1e-12, abs=1e-15)
    assert expected_calibration_error(logits, targets, n_bins) == pytest.approx(tm_ece, rel=1e-12)
    assert expected_calibration_error(probs, targets, n_bins, from_logits=False) == pytest.approx(tm_ece, rel=1e-12)
    assert max_calibration_error(logits, targets, n_bins) == pytest.approx(ref_mce, abs=1e-6)
    assert ours["num_samples"] == N


def test_a_confidence_of_one_counts_in_the_last_bin_as_appendix_c_says():
    """By hand, M = 15, last bin [14/15, 1]: confidences 0.95, 0.95, 1.0, 1.0 with the last one wrong share it:
    acc 3/4, conf 0.975, ECE = MCE = 0.225. torchmetrics gives 1.0 a bin of its own (0.025 + 0.25 = 0.275)."""
    probs = torch.tensor([[0.95, 0.05, 0.0], [0.95, 0.05, 0.0], [1.0, 0.0, 0.0], [1.0, 0.0, 0.0]], dtype=F64)
    targets = torch.tensor([0, 0, 0, 1])
    ours = _stream(probs, targets, [3, 1], 15, from_logits=False)
    assert ours["ece"] == pytest.approx(0.225, abs=1e-15) and ours["mce"] == pytest.approx(0.225, abs=1e-15)
    assert ours["counts"][-1] == 4 and ours["counts"][:-1].sum() == 0
    assert ours["ece"] == pytest.approx(appendix_c_reference(probs.numpy(), targets.numpy(), 15)[0], abs=1e-15)
    tm = float(multiclass_calibration_error(probs, targets, 3, n_bins=15, norm="l1"))
    assert tm == pytest.approx(0.275, abs=1e-6)  # the convention this toolkit does not follow
    # Saturated logits: float64 softmax rounds the top probability to exactly 1.0; the same bin.
    logits = torch.tensor([[40.0, 0.0, 0.0]] * 4, dtype=F64)
    assert (torch.softmax(logits, 1).max(1).values == 1.0).all()
    assert _stream(logits, targets, [4], 15)["ece"] == pytest.approx(0.25, abs=1e-15)  # acc 3/4, conf 1


def test_confidences_are_binned_in_float64():
    """0.6 + 1e-12 lies in [0.6, 0.7) in float64; rounded to float32 (0.6000000238...) it would too, but
    0.7 - 1e-12 would round up to 0.7 (the next bin) in float32. float64 keeps it below the edge."""
    probs = torch.tensor([[0.7 - 1e-12, 0.3 + 1e-12], [0.6 + 1e-12, 0.4 - 1e-12]], dtype=F64)
    d = _stream(probs, torch.tensor([0, 1]), [2], 10, from_logits=False)
    assert d["counts"][6] == 2 and d["counts"].sum() == 2


def test_reliability_diagram_known_answers():
    # Every confidence 0.75 and 3 in 4 correct: perfectly calibrated, one filled bin.
    probs = torch.tensor([[0.75, 0.25]] * 8, dtype=F64)
    targets = torch.tensor([0, 0, 0, 1] * 2)
    d = reliability_diagram_data(probs, targets, n_bins=4)
    assert d["ece"] == 0.0 and d["mce"] == 0.0
    assert float(multiclass_calibration_error(probs, targets, 2, n_bins=4)) == 0.0
    np.testing.assert_array_equal(d["counts"], [0, 0, 0, 8])  # 0.75 is a left edge: bin [0.75, 1)
    np.testing.assert_allclose(d["bin_edges"], [0, 0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(d["bin_centers"], [0.125, 0.375, 0.625, 0.875])
    assert d["accuracy"][3] == 0.75 and d["confidence"][3] == 0.75
    assert np.isnan(d["accuracy"][:3]).all() and np.isnan(d["confidence"][:3]).all()


def test_reliability_diagram_reproduces_ece():
    logits, targets = _random_logits(2000, 10, seed=5)
    d = reliability_diagram_data(torch.softmax(logits, 1), targets, n_bins=15)
    assert d["counts"].sum() == 2000
    filled = d["counts"] > 0
    from_bins = np.sum(d["counts"][filled] / 2000 * np.abs(d["accuracy"][filled] - d["confidence"][filled]))
    assert from_bins == pytest.approx(d["ece"], rel=1e-12)
    assert d["ece"] == pytest.approx(expected_calibration_error(logits, targets), abs=1e-6)


def test_confidence_by_lambda_known_answers():
    lam = torch.tensor([0.05, 0.05, 0.5, 0.5, 0.95, 1.0, 0.3], dtype=F64)
    a = torch.tensor([0, 0, 0, 0, 0, 1, 2])
    b = torch.tensor([1, 1, 1, 1, 1, 2, 2])  # the last one a same-class pair
    pred = torch.tensor([1, 0, 1, 2, 0, 2, 2])
    conf = torch.tensor([0.9, 0.6, 0.5, 0.4, 0.8, 0.7, 0.99], dtype=F64)
    probs = torch.full((7, 3), 0.0, dtype=F64)
    probs[torch.arange(7), pred] = conf
    probs[torch.arange(7), (pred + 1) % 3] = 1 - conf  # top class stays pred (conf >= 0.5 except one)
    probs[3] = torch.tensor([0.3, 0.3, 0.4], dtype=F64)
    out = confidence_by_lambda(lam, probs, a, b, n_bins=10)
    np.testing.assert_array_equal(out["counts"], [2, 0, 0, 1, 0, 2, 0, 0, 0, 2])
    # bin 0: lam < 0.5, dominant class b = 1: the first is right, the second wrong.
    assert out["error_rate"][0] == 0.5 and out["confidence"][0] == pytest.approx(0.75)
    # bin 5: lam == 0.5, either class right: pred 1 right, pred 2 wrong.
    assert out["error_rate"][5] == 0.5
    # bin 9: lam 0.95 (class 0 right) and lam 1 (class 1 expected, predicted 2: wrong).
    assert out["error_rate"][9] == 0.5
    assert out["error_rate"][3] == 0.0  # same-class pair predicted as its class
    assert out["target_confidence"][0] == pytest.approx(0.95)
    assert np.isnan(out["confidence"][1])
    assert out["error_rate_overall"] == pytest.approx(3 / 7)


def test_confidence_by_lambda_streams():
    gen = torch.Generator().manual_seed(3)
    N, C = 500, 10
    lam = torch.rand(N, generator=gen, dtype=F64)
    probs = torch.softmax(3 * torch.randn(N, C, generator=gen, dtype=F64), 1)
    a, b = torch.randint(0, C, (N,), generator=gen), torch.randint(0, C, (N,), generator=gen)
    whole = confidence_by_lambda(lam, probs, a, b, n_bins=10)
    acc = ConfidenceByLambdaAccumulator(10)
    for s in (slice(0, 100), slice(100, 103), slice(103, N)):
        acc.accumulate(lam[s], probs[s], a[s], b[s])
    part = acc.compute()
    for key in ("counts", "confidence", "error_rate", "target_confidence"):
        np.testing.assert_allclose(part[key], whole[key], rtol=1e-12)
    assert whole["counts"].sum() == N
    assert math.isclose(part["mean_confidence"], float(probs.max(1).values.mean()), rel_tol=1e-12)
