"""The two-step projection of Appendix B.2: onto three classifier rows, then onto a 2-D simplex.

W* (3, d) holds the three chosen classifier rows, normalised; SVD W* = U S V^T; Q = U V^T maps
features into R^3 with the three class directions as symmetric as an orthogonal map allows;
A (2, 3) holds the vertices of a regular triangle as columns (summing to zero), and the plotted
points are X = A Q H for centred features H. For any simplex-ETF classifier the three rows land
exactly on A's vertices up to one common scale.
"""

from __future__ import annotations

import numpy as np
import torch

ArrayLike = np.ndarray | torch.Tensor


def triangle_vertices() -> np.ndarray:
    """A (2, 3): unit-circumradius regular triangle, first vertex up, columns summing to zero."""
    angles = np.pi / 2 + 2 * np.pi * np.arange(3) / 3
    return np.stack([np.cos(angles), np.sin(angles)])


def _np(x: ArrayLike) -> np.ndarray:
    return x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float64)


def projection_matrix(classifier_rows: ArrayLike) -> np.ndarray:
    """P = A Q (2, d) for the three classifier rows (3, d) of the chosen classes."""
    W = _np(classifier_rows)
    if W.ndim != 2 or W.shape[0] != 3:
        raise ValueError(f"the projection needs the classifier rows of exactly 3 classes, got shape {W.shape}")
    norms = np.linalg.norm(W, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise ValueError("a classifier row of the chosen classes is zero; the projection is undefined")
    U, _, Vt = np.linalg.svd(W / norms, full_matrices=False)
    return triangle_vertices() @ (U @ Vt)


def project_features(features: ArrayLike, classifier_rows: ArrayLike, center: bool | ArrayLike = True) -> np.ndarray:
    """X (n, 2): features (n, d) centred, then projected with Appendix B.2's A Q.

    ``center=True`` subtracts the mean of the given features (the paper's "centred last-layer
    activations for said classes"); pass a vector (d,) to centre by another mean, e.g. the global
    mean of unmixed training features, or False for none.
    """
    H = _np(features)
    if center is True:
        H = H - H.mean(axis=0, keepdims=True)
    elif center is not False:
        H = H - _np(center)[None, :]
    return H @ projection_matrix(classifier_rows).T


def project_classifier(classifier_rows: ArrayLike) -> np.ndarray:
    """(3, 2): the three normalised classifier rows after the same map (drawn in black)."""
    W = _np(classifier_rows)
    W = W / np.linalg.norm(W, axis=1, keepdims=True)
    return W @ projection_matrix(W).T
