"""Every number of ``mixcollapse theory`` at one set of UFM settings (Figure 6's by default), as one dict.

The closed form (Theorem 3.1), its expected loss by quadrature and by Monte Carlo against the
amplified features (Figure 6's numbers), the joint problem over W and H (how close W comes to a
simplex ETF) and Figure 6 itself.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from mixcollapse.files import check_output_folder
from mixcollapse.theory.checks import check_class_subset, check_classes, check_dim, check_positive, check_ufm
from mixcollapse.theory.closed_form import same_class_K
from mixcollapse.theory.figure6 import draw_figure6, figure6_data
from mixcollapse.theory.loss import expected_loss

_log = logging.getLogger(__name__)

PAPER_FIGURE6_LOSS = {"optimal": 0.33457, "amplified": 0.33465}  # the losses printed in Figure 6


def _check(C: int, dim: int, weight_decay_w: float, alpha: float, classes, figure_dir) -> int:
    """ValueError for settings the theory command cannot use, before any work; the feature dimension."""
    if C < 3:
        check_classes(C)
        raise ValueError(f"the theory command projects onto 3 classes, got --num-classes {C}; use at least 3")
    d = check_dim(dim, C)
    check_positive("the classifier weight decay lambda_W (--weight-decay-w)", weight_decay_w)
    check_positive("alpha", alpha)
    if classes is not None:
        check_class_subset(classes, C)
    if figure_dir is not None:
        check_output_folder(figure_dir, "--out (figure_dir)")  # before any work
    return d


def ufm_summary(
    num_classes: int = 10,
    dim: int = 100,
    multiplier: float = 3.0,
    weight_decay_h: float = 1e-6,
    weight_decay_w: float = 5e-4,
    alpha: float = 1.0,
    samples: int = 5000,
    classes: Sequence[int] | None = None,
    seed: int = 0,
    joint_nodes: int = 16,
    joint: bool = True,
    figure_dir: str | Path | None = "theory_out",
) -> dict:
    """Every number of the theory command as one JSON-ready dict (raises ValueError on bad settings).
    ``joint=False`` skips the joint problem (``etf_check`` is None); ``figure_dir=None`` draws no figure."""
    C, m, lam_h = check_ufm(num_classes, multiplier, weight_decay_h)
    d = _check(C, dim, weight_decay_w, alpha, classes, figure_dir)
    _log.info("[theory] closed form and Monte Carlo loss over %d lambdas (C=%d, d=%d)", samples, C, d)
    data = figure6_data(C, d, m, lam_h, alpha, samples, classes, seed)
    settings = dict(
        num_classes=C,
        dim=d,
        multiplier=m,
        weight_decay_h=lam_h,
        weight_decay_w=weight_decay_w,
        alpha=alpha,
        samples=samples,
        classes=data["classes"],
        seed=seed,
        joint_nodes=joint_nodes,
    )
    quad = expected_loss(C, m, lam_h, alpha, data["classes"])
    result = {
        "settings": settings,
        "same_class_K": same_class_K(C, m, lam_h),
        "expected_loss": quad["loss"],
        "expected_loss_parts": quad,
        "mc_loss": data["optimal_loss"]["loss"],
        "mc_stderr": data["optimal_loss"]["stderr"],
        "amplified_mc_loss": data["amplified_loss"]["loss"],
        "mc_parts": {"optimal": data["optimal_loss"], "amplified": data["amplified_loss"]},
        # lambda_W/2 ||W||_F^2 of the ETF classifier (rows of norm m); not part of the losses above
        "classifier_term": 0.5 * weight_decay_w * C * m**2,
        "paper_figure6_loss": PAPER_FIGURE6_LOSS,
        "etf_check": None,
        "figures": [],
    }
    if joint:
        from mixcollapse.theory.joint import solve_joint

        _log.info("[theory] joint problem over W and H (%d lambda nodes; --no-joint skips it)", joint_nodes)
        solved = solve_joint(C, d, lam_h, weight_decay_w, alpha, joint_nodes, seed)
        solved.pop("W")
        geometry = solved.pop("geometry")
        result["etf_check"] = {**geometry, **solved}
    if figure_dir is not None:
        result["figures"] = [str(path) for path in draw_figure6(data, figure_dir)]
    return result
