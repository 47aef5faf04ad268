"""The mixup UFM loss of eq. 2 at the optimal features: per lambda, expected over Beta(alpha, alpha).

All losses here are the data term of eq. 2, CE(W h, y) + lambda_H/2 ||h||^2 averaged over class
pairs and lambda; the classifier term lambda_W/2 ||W||_F^2 is reported separately
(``classifier_decay_term``). Under an ETF every different-class pair has the same loss at each
lambda (the class permutations are isometries of the ETF), so over a subset of k classes
(k^2 ordered pairs, k of them same-class) the average is (1/k) l_same + ((k-1)/k) l_diff(lambda).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from scipy.special import digamma, entr, roots_jacobi

from mixcollapse.etf import simplex_etf
from mixcollapse.theory.checks import check_class_subset, check_dim, check_positive, check_ufm
from mixcollapse.theory.closed_form import (
    amplified_coefficients,
    decay_ratio,
    different_class_logits,
    same_class_K,
    theorem_coefficients,
)


def same_class_loss(num_classes: int, multiplier: float, weight_decay: float) -> float:
    """Optimal same-class loss (independent of lambda): logits ((1-C)K, K, ..., K) of Theorem 3.1."""
    C, m, lam_h = check_ufm(num_classes, multiplier, weight_decay)
    K = same_class_K(C, m, lam_h)
    zi = (1 - C) * K
    lse = np.logaddexp(zi, K + math.log(C - 1))
    return float(lse - zi + 0.5 * decay_ratio(C, m, lam_h) * (zi**2 + (C - 1) * K**2))


def different_class_loss(
    lam: np.ndarray | float, num_classes: int, multiplier: float, weight_decay: float
) -> np.ndarray:
    """Optimal different-class loss at each lambda, from the logits (K_lambda, <w_i,h>, <w_i',h>)."""
    C, m, lam_h = check_ufm(num_classes, multiplier, weight_decay)
    lam = np.asarray(lam, dtype=np.float64)
    sol = different_class_logits(lam, C, m, lam_h)
    a, b = sol.inner_i, sol.inner_ip
    lse = np.logaddexp(a, b)
    sq = a**2 + b**2
    if C > 2:
        lse = np.logaddexp(lse, sol.K + math.log(C - 2))
        sq = sq + (C - 2) * sol.K**2
    # ||h||^2 = (C-1)/(C m^2) ||z||^2 under an ETF
    return lse - lam * a - (1 - lam) * b + 0.5 * decay_ratio(C, m, lam_h) * sq


def beta_quadrature(alpha: float, nodes: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Jacobi nodes in (0, 1) and weights (summing to 1) for lambda ~ Beta(alpha, alpha).

    Exact for polynomials of degree < 2*nodes against the Beta density, endpoint singularities
    (alpha < 1) included: the weight (1-x)^(alpha-1) (1+x)^(alpha-1) is built into the rule.
    """
    alpha = check_positive("alpha", alpha)
    x, w = roots_jacobi(nodes, alpha - 1.0, alpha - 1.0)
    return 0.5 * (1.0 + x), w / w.sum()


def _subset_size(num_classes: int, classes: Sequence[int] | None) -> int:
    return num_classes if classes is None else len(check_class_subset(classes, num_classes))


def expected_loss(
    num_classes: int,
    multiplier: float,
    weight_decay: float,
    alpha: float = 1.0,
    classes: Sequence[int] | None = None,
    nodes: int = 64,
) -> dict[str, float]:
    """E_{lambda ~ Beta(alpha, alpha)} of eq. 2's data term at the optimal features, by quadrature.

    Averages over all ordered class pairs of ``classes`` (all C classes when None), same-class
    pairs included. The target entropy H(lambda), whose lambda log lambda ends are not smooth,
    is integrated exactly (E H = digamma(2 alpha + 1) - digamma(alpha + 1)) and Gauss-Jacobi
    quadrature handles the smooth rest. Returns the total ``loss``, its ``same_class`` and
    ``different_class`` parts and ``quadrature_error`` (the change from ``nodes`` to 2*``nodes``).
    """
    C, m, lam_h = check_ufm(num_classes, multiplier, weight_decay)
    k = _subset_size(C, classes)
    l_same = same_class_loss(C, m, lam_h)
    mean_entropy = float(digamma(2 * alpha + 1) - digamma(alpha + 1))
    diff = []
    for n in (nodes, 2 * nodes):
        lam, w = beta_quadrature(alpha, n)
        excess = different_class_loss(lam, C, m, lam_h) - entr(lam) - entr(1 - lam)
        diff.append(mean_entropy + float(np.dot(w, excess)))
    total = l_same / k + (k - 1) / k * diff[1]
    return {
        "loss": total,
        "same_class": l_same,
        "different_class": diff[1],
        "quadrature_error": abs(diff[1] - diff[0]) * (k - 1) / k,
    }


def sample_lambdas(alpha: float, samples: int, seed: int) -> np.ndarray:
    """``samples`` seeded draws of lambda ~ Beta(alpha, alpha)."""
    alpha = check_positive("alpha", alpha)
    if int(samples) != samples or samples < 2:
        raise ValueError(f"the number of lambda samples must be an integer >= 2, got {samples}")
    return np.random.default_rng(seed).beta(alpha, alpha, size=int(samples))


def pair_grid(
    classes: Sequence[int], lam: np.ndarray, ordered: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(i, i', lambda) for every pair of ``classes`` and every lambda, pair-major.

    ``ordered=True``: every ordered pair, (a, b) and (b, a) (k^2 * n points; the expectation over pairs of eq. 2).
    ``ordered=False``: each unordered pair once, i <= i' in the order of ``classes``, lambda the weight of i
    (k(k+1)/2 * n points), as the data figures draw their pairs: the mix (b, a, 1 - lambda) is the point
    (a, b, lambda), so the ordered grid only lays a second copy over it with the opposite colour.
    """
    cls = np.asarray(classes, dtype=np.int64)
    a, b = np.triu_indices(cls.size) if not ordered else np.indices((cls.size, cls.size)).reshape(2, -1)
    i = np.repeat(cls[a], lam.size)
    ip = np.repeat(cls[b], lam.size)
    return i, ip, np.tile(lam, a.size)


def monte_carlo_loss(
    num_classes: int,
    dim: int,
    multiplier: float,
    weight_decay: float,
    alpha: float = 1.0,
    classes: Sequence[int] | None = None,
    samples: int = 5000,
    seed: int = 0,
    amplified: bool = False,
) -> dict[str, float]:
    """Monte Carlo estimate of ``expected_loss`` from explicit features (Figure 6's computation).

    Draws ``samples`` lambdas ~ Beta(alpha, alpha) (seeded), builds the Theorem 3.1 features of
    every ordered pair of ``classes`` under a seeded ETF in R^dim (amplified as in Appendix A.2
    when ``amplified``) and evaluates CE + lambda_H/2 ||h||^2 directly. Returns the mean ``loss``
    with its ``stderr`` (over lambda), and the means over ``same_class`` and ``different_class``
    pairs alone.
    """
    C, m, lam_h = check_ufm(num_classes, multiplier, weight_decay)
    d = check_dim(dim, C)
    cls = list(range(C)) if classes is None else check_class_subset(classes, C)
    lam = sample_lambdas(alpha, samples, seed)
    W = simplex_etf(C, d, m, seed=seed)
    i, ip, lams = pair_grid(cls, lam)
    A = theorem_coefficients(C, m, lam_h, i, ip, lams)
    if amplified:
        A = amplified_coefficients(A, i, ip, lams)
    # h = A W, so the logits are z = A G and ||h||^2 = rowsum(A * A G), with G = W W^T (C x C)
    G = (W @ W.T).numpy()
    Z = A @ G  # (k^2 * samples, C)
    rows = np.arange(i.size)
    top = Z.max(1)
    lse = top + np.log(np.exp(Z - top[:, None]).sum(1))
    yz = lams * Z[rows, i] + (1.0 - lams) * Z[rows, ip]
    per = lse - yz + 0.5 * lam_h * np.einsum("nc,nc->n", A, Z)
    per = per.reshape(len(cls) ** 2, lam.size)  # (pairs, samples)
    same = (i == ip).reshape(len(cls) ** 2, lam.size)[:, 0]
    per_lambda = per.mean(0)
    return {
        "loss": float(per_lambda.mean()),
        "stderr": float(per_lambda.std(ddof=1) / math.sqrt(lam.size)),
        "same_class": float(per[same].mean()),
        "different_class": float(per[~same].mean()) if (~same).any() else float("nan"),
    }


def classifier_decay_term(W: torch.Tensor, weight_decay_w: float) -> float:
    """lambda_W/2 ||W||_F^2, the classifier term of eq. 2 (not part of the reported data loss)."""
    return 0.5 * float(weight_decay_w) * float(W.detach().double().pow(2).sum())
