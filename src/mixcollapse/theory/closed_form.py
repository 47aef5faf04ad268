"""Theorem 3.1 in closed form: optimal mixup features when the classifier is a simplex ETF.

Under an ETF W with multiplier m (rows of norm |m|, cosines -1/(C-1)) the optimal logits z = W h
lie in the sum-zero subspace, ||h||^2 = (C-1)/(C m^2) ||z||^2, and stationarity reads
p - y + mu z = 0 with p = softmax(z) and mu = lambda_H (C-1)/(C m^2) (Appendix A.1). For a pair
(i, i') with target lambda y_i + (1-lambda) y_i' the C-2 other logits all equal K_lambda < 0.
Writing t = -K_lambda, the log-normaliser is L = log sum_k e^{z_k} = -t - log(mu t), and each of
z_i, z_i' is then the unique solution of z - log(lambda - mu z) = L, i.e. log p_i = log mu +
log omega(lambda/mu - L - log mu) with omega the Wright omega function (omega e^omega = e^x).
What is left is the sum-zero condition G(t) = z_i + z_i' - (C-2) t = 0, strictly decreasing in t,
with the guaranteed bracket [W(C/(4mu))/C ^ 1/(4mu(C-1)), W(1/mu)] (W = Lambert W; proof in
``_pair_bracket``). Everything is done in log space, so no exponential overflows for any C, m,
lambda_H or lambda.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
from scipy.special import wrightomega

from mixcollapse.theory.checks import check_lambdas, check_ufm
from mixcollapse.theory.roots import solve_increasing


class PairLogits(NamedTuple):
    """Optimal logits of a mixup pair: K_lambda (other classes), <w_i, h> and <w_i', h>."""

    K: np.ndarray
    inner_i: np.ndarray
    inner_ip: np.ndarray


def decay_ratio(num_classes: int, multiplier: float, weight_decay: float) -> float:
    """mu = lambda_H (C-1)/(C m^2): the feature decay seen in logit space (Appendix A.1)."""
    return weight_decay * (num_classes - 1) / (num_classes * multiplier**2)


def _lambert_w_of_exp(log_x: np.ndarray | float) -> np.ndarray:
    """W(e^log_x) without forming e^log_x (Wright omega)."""
    return np.real(wrightomega(np.asarray(log_x, dtype=np.float64)))


def _log_omega(x: np.ndarray) -> np.ndarray:
    """log omega(x), accurate for all x (omega + log omega = x exactly)."""
    om = np.real(wrightomega(x))
    with np.errstate(divide="ignore"):
        return np.where(om > 1.0, np.log(np.maximum(om, 1.0)), x - om)


def same_class_equation(K: np.ndarray | float, num_classes: int, multiplier: float, weight_decay: float) -> np.ndarray:
    """Theorem 3.1's f(K) = e^{-CK} - C m^2/((1-C) lambda_H K) + C - 1 (its root is K)."""
    C, m, lam_h = num_classes, multiplier, weight_decay
    K = np.asarray(K, dtype=np.float64)
    with np.errstate(over="ignore"):
        return np.exp(-C * K) - C * m**2 / ((1 - C) * lam_h * K) + C - 1


def same_class_K(num_classes: int, multiplier: float, weight_decay: float) -> float:
    """K < 0 of Theorem 3.1 (same class): the unique root of e^{-CK} - Cm^2/((1-C) lambda_H K) + C - 1.

    With t = -K and mu = lambda_H (C-1)/(C m^2) the equation is g(t) = log(e^{Ct} + C - 1) +
    log(mu t) = 0, g strictly increasing; it is solved in u = log t on the bracket
    t_lo = min(W(C/(2mu))/C, 1/(2(C-1)mu)) (where g <= 0) and t_hi = min(W(C/mu)/C, 1/(C mu))
    (where g >= 0).
    """
    C, m, lam_h = check_ufm(num_classes, multiplier, weight_decay)
    mu = decay_ratio(C, m, lam_h)
    log_mu = math.log(mu)
    t_hi = min(_lambert_w_of_exp(math.log(C) - log_mu) / C, 1.0 / (C * mu))
    t_lo = min(_lambert_w_of_exp(math.log(C / 2) - log_mu) / C, 1.0 / (2 * (C - 1) * mu))

    def g(u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ct = C * np.exp(u)
        val = np.logaddexp(ct, math.log(C - 1)) + log_mu + u
        sig = 1.0 / (1.0 + (C - 1) * np.exp(-ct))  # e^{Ct}/(e^{Ct} + C - 1)
        return val, 1.0 + ct * sig

    u = solve_increasing(g, np.log(t_lo), np.log(t_hi))
    return -float(np.exp(u))


def _pair_bracket(C: int, mu: float) -> tuple[float, float]:
    """Bracket [t_lo, t_hi] for t = -K_lambda, valid for every lambda in [0, 1] (C >= 3).

    Upper: at t = W(1/mu), L = 0; z_i = L + log p_i <= max(L, 0) since p_i = lambda - mu z_i <= 1
    when z_i >= 0; so G(t) <= -(C-2) t < 0. Lower: z_i, z_i' >= -t (the logit of a class is
    increasing in its target weight and equals K at weight 0), and for the class of weight >= 1/2,
    z >= (C-1) t whenever (C-1)t - log(1/2 - mu(C-1)t) <= L; with t <= 1/(4 mu (C-1)) that holds
    once C t + log(mu t) <= -log 4, i.e. C t <= W(C/(4mu)). Then G(t) >= 0.
    """
    log_mu = math.log(mu)
    t_hi = float(_lambert_w_of_exp(-log_mu))
    t_lo = min(float(_lambert_w_of_exp(math.log(C / 4) - log_mu)) / C, 1.0 / (4 * mu * (C - 1)))
    return t_lo, t_hi


def _target_logit(weight: np.ndarray, L: np.ndarray, mu: float) -> tuple[np.ndarray, np.ndarray]:
    """(z, d z/d L) for the logit z solving z - log(weight - mu z) = L (target weight >= 0)."""
    with np.errstate(divide="ignore"):
        x = weight / mu - L - math.log(mu)
    om = np.real(wrightomega(x))  # p = mu * omega
    log_p = math.log(mu) + _log_omega(x)
    z_log = L + log_p
    z_lin = (weight - mu * om) / mu  # exact rearrangement (p = weight - mu z)
    # pick the form with the smaller rounding error: eps*max(weight/mu, omega) vs eps*(|L| + |log p|)
    use_lin = np.maximum(weight / mu, om) < np.abs(L) + np.abs(log_p)
    z = np.where(use_lin, z_lin, z_log)
    return z, om / (1.0 + om)


def different_class_logits(
    lam: np.ndarray | float, num_classes: int, multiplier: float, weight_decay: float
) -> PairLogits:
    """K_lambda, <w_i, h> and <w_i', h> of Theorem 3.1 (different class) for each lambda in [0, 1].

    lambda = 1 gives the same-class solution (K_1 = K, <w_i, h> = (1-C)K, <w_i', h> = K) and
    lambda = 0 its mirror. For C = 2 there are no other classes: K_lambda is NaN and only
    <w_i, h> = -<w_i', h> is defined (the features do not depend on K_lambda then).
    """
    C, m, lam_h = check_ufm(num_classes, multiplier, weight_decay)
    lam = check_lambdas(lam)
    mu = decay_ratio(C, m, lam_h)
    shape = lam.shape
    lam = lam.reshape(-1)
    if C == 2:
        return _two_class_logits(lam, m, lam_h, mu, shape)
    t_lo, t_hi = _pair_bracket(C, mu)

    def minus_G(u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        t = np.exp(u)
        L = -t - np.log(mu * t)
        a, ra = _target_logit(lam, L, mu)
        b, rb = _target_logit(1.0 - lam, L, mu)
        G = a + b - (C - 2) * t
        dG_du = -(t + 1.0) * (ra + rb) - (C - 2) * t
        return -G, -dG_du

    u = solve_increasing(minus_G, np.full_like(lam, math.log(t_lo)), np.full_like(lam, math.log(t_hi)))
    t = np.exp(u)
    L = -t - np.log(mu * t)
    a, _ = _target_logit(lam, L, mu)
    b, _ = _target_logit(1.0 - lam, L, mu)
    return PairLogits((-t).reshape(shape), a.reshape(shape), b.reshape(shape))


def _two_class_logits(lam: np.ndarray, m: float, lam_h: float, mu: float, shape: tuple) -> PairLogits:
    """C = 2: z = (a, -a) with sigmoid(2a) + mu a = lambda; a(1 - lambda) = -a(lambda).

    Solved for lambda' = max(lambda, 1 - lambda) >= 1/2, where a >= 0, in log space:
    log(mu a + 1 - lambda') + softplus(2a) = 0 (the same equation, since 1 - sigmoid(2a) =
    1 / (1 + e^{2a})), increasing in a on [0, t_1], t_1 = a at lambda = 1 = -K (same class). Written
    as sigmoid(2a) - lambda it would cancel catastrophically near lambda = 1 when m^2/lambda_H is large.
    """
    t1 = -same_class_K(2, m, lam_h)
    rest = np.minimum(lam, 1.0 - lam)  # 1 - lambda', exact

    def g(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        r = mu * a + rest
        with np.errstate(divide="ignore"):
            val = np.log(r) + np.logaddexp(0.0, 2.0 * a)
            return val, mu / r + (1.0 + np.tanh(a))  # 2 sigmoid(2a) = 1 + tanh(a)

    a = solve_increasing(g, np.zeros_like(lam), np.full_like(lam, t1 * (1 + 1e-12)))
    a = np.where(lam >= 0.5, a, -a)
    return PairLogits(np.full(shape, np.nan), a.reshape(shape), (-a).reshape(shape))


def inner_product_from_K(
    K: np.ndarray | float, num_classes: int, multiplier: float, weight_decay: float, larger: bool
) -> np.ndarray:
    """<w_i, h> from K_lambda by the quadratic of Appendix A.1 (eq. 10), root chosen by ``larger``.

    e^{<w_i,h>} = e^K [ (2 - C + Q) +- sqrt((C - 2 - Q)^2 - 4 e^{-CK}) ] / 2, Q = C m^2/((1-C) K lambda_H).
    The two roots are e^{<w_i,h>} and e^{<w_i',h>}: '+' (larger=True) is class i when lambda >= 1/2,
    '-' when lambda <= 1/2. Note: Theorem 3.1 as printed in the main text reads
    e^K (2 - C + Q +- (1/2) sqrt(...)), i.e. it lacks the factor 1/2 on (2 - C + Q); Appendix A.1's
    eq. 10 has it, and only that form satisfies the stationarity conditions (checked in the tests).
    """
    C, m, lam_h = check_ufm(num_classes, multiplier, weight_decay)
    K = np.asarray(K, dtype=np.float64)
    t = -K
    mu = decay_ratio(C, m, lam_h)
    Q = 1.0 / (mu * t)  # = C m^2 / ((1-C) K lambda_H)
    B = Q - C + 2
    # sqrt(B^2 - 4 e^{Ct}) = B sqrt(1 - 4 e^{Ct - 2 log B}); B > 0 at the optimum
    disc = 1.0 - 4.0 * np.exp(C * t - 2.0 * np.log(B))
    root = np.sqrt(np.maximum(disc, 0.0))
    big = K + np.log(B) + np.log1p(root) - math.log(2.0)
    small = -(C - 2) * K - big  # product of the two roots is e^{-(C-2)K}
    return big if larger else small


def multiplier_of(W: torch.Tensor) -> float:
    """The ETF multiplier |m| of W (rows of norm |m|), from its Frobenius norm."""
    return float(W.detach().double().norm() / math.sqrt(W.shape[0]))


def optimal_pair_logits(
    i: np.ndarray, i_prime: np.ndarray, lam: np.ndarray, num_classes: int, multiplier: float, weight_decay: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(K, <w_i,h>, <w_i',h>) per sample; same-class samples (i == i') get (K, (1-C)K, (1-C)K)."""
    i, i_prime = np.asarray(i), np.asarray(i_prime)
    lam = check_lambdas(lam)
    same = i == i_prime
    # one root per distinct lambda: every different-class pair shares it under an ETF
    uniq, inverse = np.unique(np.where(same, 1.0, lam), return_inverse=True)
    sol = different_class_logits(uniq, num_classes, multiplier, weight_decay)
    inverse = inverse.reshape(lam.shape)
    K_same = same_class_K(num_classes, multiplier, weight_decay)
    K = np.where(same, K_same, sol.K[inverse])
    a = np.where(same, (1 - num_classes) * K_same, sol.inner_i[inverse])
    b = np.where(same, (1 - num_classes) * K_same, sol.inner_ip[inverse])
    return K, a, b


def theorem_coefficients(
    num_classes: int, multiplier: float, weight_decay: float, i: np.ndarray, i_prime: np.ndarray, lam: np.ndarray
) -> np.ndarray:
    """A (n, C) with h = A W: Theorem 3.1's features as combinations of the classifier rows.

    Same class: h = (1-C) K / m^2 w_i. Different class:
    h = (1-C)/(C m^2) ((K_lambda - <w_i,h>) w_i + ((C-1) K_lambda + <w_i,h>) w_i').
    For C = 2 the K_lambda terms cancel (w_i' = -w_i) and are dropped.
    """
    C, m = num_classes, multiplier
    i = np.asarray(i, dtype=np.int64).reshape(-1)
    i_prime = np.asarray(i_prime, dtype=np.int64).reshape(-1)
    lam = np.asarray(lam, dtype=np.float64).reshape(-1)
    K, a, _ = optimal_pair_logits(i, i_prime, lam, C, m, weight_decay)
    same = i == i_prime
    K_eff = np.where(np.isnan(K), 0.0, K)
    A = np.zeros((i.size, C))
    rows = np.arange(i.size)
    A[rows, i] = np.where(same, (1 - C) * K_eff / m**2, (1 - C) / (C * m**2) * (K_eff - a))
    A[rows, i_prime] += np.where(same, 0.0, (1 - C) / (C * m**2) * ((C - 1) * K_eff + a))
    return A


def theorem_features(
    W: torch.Tensor, i: np.ndarray, i_prime: np.ndarray, lam: np.ndarray, weight_decay: float
) -> torch.Tensor:
    """Optimal features (n, d) of Theorem 3.1 for samples (i, i', lambda) under the ETF classifier W.

    W must be a simplex ETF (eq. 3); m is read from its row norms. See ``theorem_coefficients``.
    """
    A = theorem_coefficients(W.shape[0], multiplier_of(W), weight_decay, i, i_prime, lam)
    return torch.as_tensor(A, dtype=W.dtype, device=W.device) @ W.detach()


def amplified_coefficients(A: np.ndarray, i: np.ndarray, i_prime: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """Appendix A.2 in coefficient space: A - epsilon(lambda) (1 - e_i - e_i') for different-class rows."""
    i = np.asarray(i, dtype=np.int64).reshape(-1)
    i_prime = np.asarray(i_prime, dtype=np.int64).reshape(-1)
    eps = np.where(i == i_prime, 0.0, amplification(np.asarray(lam).reshape(-1)))
    others = np.ones_like(A)
    rows = np.arange(i.size)
    others[rows, i] = 0.0
    others[rows, i_prime] = 0.0
    return A - eps[:, None] * others


def amplification(lam: np.ndarray | float) -> np.ndarray:
    """epsilon(lambda) = 4/5 exp(-20 (lambda - 1/2)^4) - 2/5 (Appendix A.2)."""
    lam = np.asarray(lam, dtype=np.float64)
    return 0.8 * np.exp(-20.0 * (lam - 0.5) ** 4) - 0.4


def amplified_features(
    W: torch.Tensor, H: torch.Tensor, i: np.ndarray, i_prime: np.ndarray, lam: np.ndarray
) -> torch.Tensor:
    """h~ = h - epsilon(lambda) sum_{j != i, i'} w_j for different-class samples; same class unchanged (A.2)."""
    i = np.asarray(i, dtype=np.int64).reshape(-1)
    i_prime = np.asarray(i_prime, dtype=np.int64).reshape(-1)
    eps = np.where(i == i_prime, 0.0, amplification(np.asarray(lam).reshape(-1)))
    Wd = W.detach().to(H.dtype)
    it, ipt = torch.as_tensor(i, device=Wd.device), torch.as_tensor(i_prime, device=Wd.device)
    others = Wd.sum(0, keepdim=True) - Wd[it] - Wd[ipt]  # sum over j != i, i' (any W, not only an ETF)
    return H - torch.as_tensor(eps, dtype=H.dtype, device=H.device)[:, None] * others
