"""Figure 6: optimal (Theorem 3.1) and amplified (Appendix A.2) features, projected as in B.2."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mixcollapse.etf import simplex_etf
from mixcollapse.theory.checks import check_class_subset, check_dim, check_ufm
from mixcollapse.theory.closed_form import amplified_coefficients, theorem_coefficients
from mixcollapse.theory.loss import monte_carlo_loss, pair_grid, sample_lambdas


def random_classes(num_classes: int, seed: int, k: int = 3) -> list[int]:
    """``k`` distinct classes drawn with ``seed`` (sorted), as the paper's "three random classes"."""
    if num_classes < k:
        raise ValueError(f"Figure 6 needs {k} classes to project onto, got num_classes={num_classes}; use at least {k}")
    return sorted(int(c) for c in np.random.default_rng(seed).choice(num_classes, size=k, replace=False))


def figure6_data(
    num_classes: int = 10,
    dim: int = 100,
    multiplier: float = 3.0,
    weight_decay: float = 1e-6,
    alpha: float = 1.0,
    samples: int = 5000,
    classes: Sequence[int] | None = None,
    seed: int = 0,
) -> dict:
    """Projected features of both Figure 6 panels and their Monte Carlo losses (paper defaults).

    Returns ``classes``, ``lam`` and ``same`` (per point), ``optimal_xy`` and ``amplified_xy``
    (n, 2), ``classifier_xy`` (3, 2), and ``optimal_loss`` / ``amplified_loss`` (dicts of
    ``loss.monte_carlo_loss``).
    """
    from mixcollapse.metrics.projection import project_classifier, projection_matrix

    C, m, lam_h = check_ufm(num_classes, multiplier, weight_decay)
    d = check_dim(dim, C)
    cls = random_classes(C, seed) if classes is None else check_class_subset(classes, C)
    if len(cls) != 3:
        raise ValueError(f"Figure 6 projects onto exactly 3 classes, got {len(cls)}; pass three class indices")
    lam = sample_lambdas(alpha, samples, seed)
    W = simplex_etf(C, d, m, seed=seed)
    i, ip, lams = pair_grid(cls, lam, ordered=False)  # each pair once, as the data figures draw them
    A = theorem_coefficients(C, m, lam_h, i, ip, lams)
    A_amp = amplified_coefficients(A, i, ip, lams)
    rows = W[cls]
    # features h = A W are projected as X = (h - mean h) P^T = (A - mean A) (W P^T), never formed in R^d
    WP = W.numpy() @ projection_matrix(rows).T  # (C, 2)
    common = dict(
        num_classes=C, dim=d, multiplier=m, weight_decay=lam_h, alpha=alpha, classes=cls, samples=samples, seed=seed
    )
    return {
        "classes": cls,
        "lam": lams,
        "same": i == ip,
        "optimal_xy": (A - A.mean(0)) @ WP,
        "amplified_xy": (A_amp - A_amp.mean(0)) @ WP,
        "classifier_xy": project_classifier(rows),
        "optimal_loss": monte_carlo_loss(**common),
        "amplified_loss": monte_carlo_loss(**common, amplified=True),
    }


def draw_figure6(data: dict, out_dir: str | Path, stem: str = "figure6") -> list[Path]:
    """Both panels side by side, each titled with its loss; PNG (PDF too when asked: plots.formats), atomically."""
    from mixcollapse.plots.figures import configuration_figure

    panels = [
        dict(
            xy=data["optimal_xy"],
            lam=data["lam"],
            same=data["same"],
            classifier_xy=data["classifier_xy"],
            title=f"Optimal (Theorem 3.1): Loss = {data['optimal_loss']['loss']:.5f}",
            class_names=data["classes"],
            same_size=45.0,  # every same-class feature sits at one spot per class: draw the spots large
        ),
        dict(
            xy=data["amplified_xy"],
            lam=data["lam"],
            same=data["same"],
            classifier_xy=data["classifier_xy"],
            title=f"Amplified (Appendix A.2): Loss = {data['amplified_loss']['loss']:.5f}",
            class_names=data["classes"],
            same_size=45.0,
        ),
    ]
    return configuration_figure(panels, Path(out_dir) / stem)
