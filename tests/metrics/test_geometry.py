"""Classifier geometry (Figure 5) and the distance to the nearest simplex ETF."""

import math

import pytest
import torch

from mixcollapse.etf import random_partial_orthogonal, simplex_etf
from mixcollapse.metrics.geometry import classifier_geometry, etf_distance, nearest_simplex_etf


@pytest.mark.parametrize(("C", "d", "m"), [(2, 5, 1.0), (3, 2, 0.3), (10, 9, 2.0), (10, 64, -1.5), (7, 7, 5.0)])
def test_exact_etf_scores_zero(C, d, m):
    W = simplex_etf(C, d, multiplier=m, seed=C + d)
    g = classifier_geometry(W)
    assert g["num_classes"] == C
    assert g["etf_cos"] == pytest.approx(-1 / (C - 1))
    assert g["norm_mean"] == pytest.approx(abs(m))
    assert g["norm_cv"] < 1e-12
    assert g["cos_mean"] == pytest.approx(-1 / (C - 1), abs=1e-12)
    assert g["cos_std"] < 1e-12
    assert g["cos_max_dev"] < 1e-12
    assert g["etf_distance"] < 1e-12


def test_etf_distance_invariant_to_rotation_scale_and_row_permutation():
    C, d = 6, 12
    W = simplex_etf(C, d, seed=1) + 0.2 * torch.randn(
        C, d, generator=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    Q = random_partial_orthogonal(d, d, seed=3)
    base = etf_distance(W)
    assert 0 < base < 1
    assert etf_distance(W @ Q) == pytest.approx(base, rel=1e-10)
    assert etf_distance(-3.7 * W) == pytest.approx(base, rel=1e-10)
    assert etf_distance(W[torch.randperm(C, generator=torch.Generator().manual_seed(1))]) == pytest.approx(
        base, rel=1e-10
    )
    assert etf_distance(W.float()) == pytest.approx(base, rel=1e-5)


def test_nearest_etf_is_an_etf_and_beats_other_etfs():
    C, d = 5, 8
    gen = torch.Generator().manual_seed(0)
    W0 = simplex_etf(C, d, multiplier=2.0, seed=4)
    noise = 0.3 * torch.randn(C, d, generator=gen, dtype=torch.float64)
    W = W0 + noise
    E = nearest_simplex_etf(W)
    ge = classifier_geometry(E)
    assert ge["etf_distance"] < 1e-12 and ge["norm_cv"] < 1e-12
    best = float((W - E).norm())
    assert etf_distance(W) == pytest.approx(best / float(W.norm()), rel=1e-12)
    # The ETF we started from, best-scaled, and random ETFs are all no closer.
    for seed in range(50):
        cand = W0 if seed == 0 else simplex_etf(C, d, seed=100 + seed)
        s = float((W * cand).sum() / (cand * cand).sum())
        assert best <= float((W - s * cand).norm()) + 1e-12
    # Small rotations of the optimum move away from W (local optimality).
    for _ in range(20):
        A = torch.randn(d, d, generator=gen, dtype=torch.float64)
        R = torch.linalg.matrix_exp(1e-3 * (A - A.T))
        assert best <= float((W - E @ R).norm()) + 1e-12


def test_known_norm_cv_and_cosines():
    # Orthogonal rows of norms 1, 2, 3: CV = std/mean = sqrt(2/3)/2, all cosines 0.
    W = torch.diag(torch.tensor([1.0, 2.0, 3.0]))
    g = classifier_geometry(W)
    assert g["norm_cv"] == pytest.approx(math.sqrt(2 / 3) / 2)
    assert g["cos_mean"] == pytest.approx(0.0, abs=1e-15)
    assert g["cos_std"] == pytest.approx(0.0, abs=1e-15)
    assert g["cos_max_dev"] == pytest.approx(0.5)
    # Cosines 1 (rows 0, 1), 0, 0: mean 1/3, population std sqrt(2)/3.
    W = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]])
    g = classifier_geometry(W)
    assert g["cos_mean"] == pytest.approx(1 / 3)
    assert g["cos_std"] == pytest.approx(math.sqrt(2) / 3)


def test_no_etf_fits_in_too_few_dimensions():
    W = torch.randn(10, 4, dtype=torch.float64)
    assert math.isnan(classifier_geometry(W)["etf_distance"])
    with pytest.raises(ValueError):
        nearest_simplex_etf(W)
    with pytest.raises(ValueError):
        classifier_geometry(torch.randn(1, 4))
