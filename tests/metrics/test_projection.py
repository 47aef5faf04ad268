"""The projection of Appendix B.2 on known geometry."""

import numpy as np
import pytest
import torch

from mixcollapse.etf import simplex_etf
from mixcollapse.metrics.projection import project_classifier, project_features, projection_matrix, triangle_vertices


def test_triangle_is_regular_and_centred():
    A = triangle_vertices()
    assert np.allclose(A.sum(axis=1), 0)
    sides = [np.linalg.norm(A[:, i] - A[:, j]) for i, j in [(0, 1), (1, 2), (0, 2)]]
    assert np.allclose(sides, sides[0])


@pytest.mark.parametrize("num_classes,dim", [(3, 2), (3, 5), (10, 100), (100, 120)])
def test_etf_classifier_rows_land_on_a_regular_triangle(num_classes, dim):
    W = simplex_etf(num_classes, dim, multiplier=3.0, seed=1)
    rows = W[[0, 4 % num_classes, 2]] if num_classes > 4 else W[[0, 1, 2]]
    xy = project_classifier(rows)
    A = triangle_vertices().T
    scale = np.linalg.norm(xy[0]) / np.linalg.norm(A[0])
    assert scale > 0
    np.testing.assert_allclose(xy, scale * A, atol=1e-10)
    # Unnormalised rows map the same way, scaled by the common multiplier.
    raw = project_features(rows, rows, center=False)
    np.testing.assert_allclose(raw, 3.0 * xy, atol=1e-9)


def test_features_along_a_row_project_onto_its_vertex_direction():
    W = simplex_etf(10, 30, seed=0)[:3]
    H = torch.stack([2.0 * W[1], 5.0 * W[1]])
    xy = project_features(H, W, center=False)
    direction = project_classifier(W)[1]
    for point in xy:
        cos = point @ direction / (np.linalg.norm(point) * np.linalg.norm(direction))
        assert cos == pytest.approx(1.0)


def test_centering_options_and_orthogonal_directions_vanish():
    rng = np.random.default_rng(0)
    W = rng.normal(size=(3, 8))
    H = rng.normal(size=(50, 8))
    P = projection_matrix(W)
    np.testing.assert_allclose(project_features(H, W, center=False), H @ P.T)
    np.testing.assert_allclose(project_features(H, W), (H - H.mean(0)) @ P.T)
    mu = rng.normal(size=8)
    np.testing.assert_allclose(project_features(H, W, center=mu), (H - mu) @ P.T)
    # Anything orthogonal to the three rows is invisible in the plot.
    null = np.linalg.svd(W)[2][3:]
    np.testing.assert_allclose(project_features(null, W, center=False), 0, atol=1e-12)


def test_projection_rejects_wrong_inputs():
    with pytest.raises(ValueError, match="exactly 3 classes"):
        projection_matrix(np.ones((4, 5)))
    with pytest.raises(ValueError, match="zero"):
        projection_matrix(np.array([[1.0, 0], [0, 1], [0, 0]]))


def test_rows_of_unequal_norm_are_normalised_before_the_svd():
    """By hand: rows s_k u_k with u_k = A's columns (a unit triangle in R^2). Normalised, W* = A^T, whose
    polar factor is A^T / sqrt(3/2) (A A^T = 3/2 I), so P = A Q = sqrt(3/2) I whatever the scales s_k;
    the rows' own scales (1, 2, 5) would tilt the polar factor."""
    A = triangle_vertices()
    rows = np.diag([1.0, 2.0, 5.0]) @ A.T  # (3, 2)
    np.testing.assert_allclose(A @ A.T, 1.5 * np.eye(2), atol=1e-15)
    np.testing.assert_allclose(projection_matrix(rows), np.sqrt(1.5) * np.eye(2), atol=1e-12)
    np.testing.assert_allclose(project_classifier(rows), np.sqrt(1.5) * A.T, atol=1e-12)
    # The same in R^5: rows R^T-embedded by orthonormal R (2, 5) give P = sqrt(3/2) R.
    R = np.linalg.qr(np.random.default_rng(3).normal(size=(5, 2)))[0].T
    np.testing.assert_allclose(projection_matrix(rows @ R), np.sqrt(1.5) * R, atol=1e-12)
