"""Eq. 2 without assuming an ETF: optimise the classifier W together with all mixup features.

Discretisation: lambda ~ Beta(alpha, alpha) is replaced by the n-node Gauss-Jacobi rule of
``loss.beta_quadrature`` (nodes lambda_k, weights w_k summing to 1), and every ordered pair
(i, i') and node k gets its own feature h_{i i' k}:
    F(W, H) = sum_k w_k 1/C^2 sum_{i,i'} [CE(W h_{i i' k}, y) + lambda_H/2 ||h||^2] + lambda_W/2 ||W||_F^2.
For fixed W the features separate into strictly convex problems, solved exactly by
``solver.optimal_features``; so L-BFGS (float64, strong Wolfe) runs on W alone, with the
gradient of min_H F given by the envelope theorem (the features are at their optimum). The
result says how close the optimal W comes to a simplex ETF, the assumption of Theorem 3.1.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from mixcollapse.metrics.geometry import classifier_geometry
from mixcollapse.mixup import mixup_targets
from mixcollapse.theory.checks import check_classes, check_dim, check_positive
from mixcollapse.theory.loss import beta_quadrature
from mixcollapse.theory.solver import optimal_features


def joint_targets(num_classes: int, alpha: float, nodes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets (C*C*n, C) of every (i, i', node) and their weights w_k / C^2 (summing to 1)."""
    C = num_classes
    lam, w = beta_quadrature(alpha, nodes)
    i, ip, k = np.meshgrid(np.arange(C), np.arange(C), np.arange(nodes), indexing="ij")
    i, ip, k = i.reshape(-1), ip.reshape(-1), k.reshape(-1)
    return mixup_targets(lam[k], i, ip, C), torch.as_tensor(w[k] / C**2)


def solve_joint(
    num_classes: int,
    dim: int,
    weight_decay_h: float,
    weight_decay_w: float,
    alpha: float = 1.0,
    nodes: int = 16,
    seed: int = 0,
    max_iter: int = 500,
    tol: float = 1e-10,
) -> dict:
    """Minimise eq. 2 over W (C, d) and all features; return W, the objective and W's ETF metrics.

    Keys: ``W``; ``objective`` (F, all terms); ``data_loss`` (F without lambda_W/2 ||W||^2); ``classifier_term``;
    ``grad_norm`` (of F in W at the end); ``iterations``; ``geometry`` (metrics.geometry.classifier_geometry).
    """
    C = check_classes(num_classes)
    d = check_dim(dim, C)
    lam_h = check_positive("the feature weight decay lambda_H", weight_decay_h)
    lam_w = check_positive("the classifier weight decay lambda_W", weight_decay_w)
    if int(nodes) != nodes or nodes < 1:
        raise ValueError(f"the number of quadrature nodes must be an integer >= 1, got {nodes}")
    Y, weights = joint_targets(C, alpha, int(nodes))
    gen = torch.Generator().manual_seed(seed)
    W = (torch.randn(C, d, generator=gen, dtype=torch.float64) / d**0.5).requires_grad_(True)
    opt = torch.optim.LBFGS(
        [W],
        lr=1.0,
        max_iter=max_iter,
        history_size=50,
        tolerance_grad=tol,
        tolerance_change=1e-15,
        line_search_fn="strong_wolfe",
    )
    state = {}

    def closure() -> torch.Tensor:
        opt.zero_grad()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "optimal_features: .* did not converge", RuntimeWarning)
            H = optimal_features(W.detach(), Y, lam_h)  # (C*C*n, d), optimal for this W
        z = H @ W.T
        data = (weights * (torch.logsumexp(z, 1) - (Y * z).sum(1) + 0.5 * lam_h * (H * H).sum(1))).sum()
        F = data + 0.5 * lam_w * (W * W).sum()
        F.backward()
        state["data"] = float(data.detach())
        return F

    opt.step(closure)
    F = closure().detach()
    return {
        "W": W.detach(),
        "objective": float(F),
        "data_loss": state["data"],
        "classifier_term": 0.5 * lam_w * float((W.detach() ** 2).sum()),
        "grad_norm": float(W.grad.norm()),
        "iterations": int(opt.state[opt._params[0]]["n_iter"]),
        "geometry": classifier_geometry(W.detach()),
    }
