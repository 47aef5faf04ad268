"""Optimal features for any classifier: argmin_h CE(W h, y) + lambda_H/2 ||h||^2, batched.

The per-sample problem of eq. 2 with W held fixed. It is strictly convex and h* lies in the row
space of W, so it is solved in logit coordinates z = W h restricted to range(W) (dimension
r = rank W <= C), where ||h||^2 = z^T G^+ z with G = W W^T: f(z) = logsumexp(z) - y^T z +
lambda_H/2 z^T G^+ z. Newton's method with an Armijo line search, each Newton system solved by
conjugate gradients preconditioned with the exact Hessian of logsumexp plus the diagonal of
lambda_H G^+ (its inverse is diagonal plus rank one). Everything is float64 batched tensor
algebra, so it runs on CPU or CUDA; samples are processed in chunks and each leaves the loop
when it has converged. The reduction through the SVD of W is exact when W is rank-deficient
(an ETF has rank C-1, and C > d is allowed).
"""

from __future__ import annotations

import torch
from torch import Tensor


def _check_inputs(W: Tensor, targets: Tensor, weight_decay: float) -> None:
    if W.ndim != 2 or targets.ndim != 2 or targets.shape[1] != W.shape[0]:
        raise ValueError(
            f"W must be (C, d) and targets (N, C) with the same C, got {tuple(W.shape)} and {tuple(targets.shape)}"
        )
    if not (weight_decay > 0):
        raise ValueError(f"the feature weight decay lambda_H must be > 0, got {weight_decay}")
    if targets.numel() and (targets.min() < 0 or (targets.sum(1) - 1).abs().max() > 1e-6):
        raise ValueError("every target row must be a probability vector (non-negative, summing to 1)")


class _Geometry:
    """Everything about W that all samples share: G^+ = (W W^T)^+, the null space of W^T, the map z -> h."""

    def __init__(self, W: Tensor, dtype: torch.dtype):
        W = W.detach().to(dtype)
        U, S, Vh = torch.linalg.svd(W, full_matrices=False)
        keep = S > S.max() * max(W.shape) * torch.finfo(dtype).eps
        r = int(keep.sum())
        U, S, Vh = U[:, :r], S[:r], Vh[:r]
        self.C, self.rank = W.shape[0], r
        self.Gp = (U / S**2) @ U.T  # (C, C) pseudo-inverse of W W^T
        self.Gp_diag = torch.diagonal(self.Gp).clone()
        # projection onto range(W) = removal of the left null space N, cheap when N is small
        # (an ETF's is spanned by the ones vector alone)
        self.N = torch.linalg.qr(U, mode="complete")[0][:, r:] if r < self.C else None  # (C, C - r)
        self.to_features = (U / S) @ Vh  # (C, d): h = W^T G^+ z = z @ to_features

    def project(self, v: Tensor) -> Tensor:
        return v if self.N is None else v - (v @ self.N) @ self.N.T


def _objective(z: Tensor, Gz: Tensor, Y: Tensor, lam: float) -> tuple[Tensor, Tensor]:
    """Per-sample objective and the size of its rounding error (its terms are summed with cancellation)."""
    lse, yz, reg = torch.logsumexp(z, 1), (Y * z).sum(1), 0.5 * lam * (z * Gz).sum(1)
    noise = 64 * torch.finfo(z.dtype).eps * (lse.abs() + yz.abs() + reg.abs() + 1.0)
    return lse - yz + reg, noise


def _residual(p: Tensor, Y: Tensor) -> Tensor:
    """p - y, with the entry of the most likely class taken as minus the sum of the others.

    When p_k is close to 1, p_k - y_k computed directly loses everything below eps, yet the
    curvature in that direction is only p_k (1 - p_k); the rearranged form keeps full accuracy.
    """
    r = p - Y
    k = p.argmax(1, keepdim=True)
    rest = r.sum(1, keepdim=True) - r.gather(1, k)
    return r.scatter(1, k, -rest)


def _precond(r: Tensor, Einv: Tensor, Ep: Tensor, c: Tensor, geo: _Geometry) -> Tensor:
    """(E - p p^T)^{-1} r with E = diag(p + lam diag G^+), by Sherman-Morrison, within range(W)."""
    s = Einv * r
    return geo.project(s.addcmul_(Ep, c * (Ep * r).sum(1, keepdim=True)))


def _hess(v: Tensor, p: Tensor, lam: float, geo: _Geometry) -> tuple[Tensor, Tensor]:
    """(Hessian v, G^+ v): Hessian = (diag(p) - p p^T) + lam G^+ within range(W)."""
    Gv = v @ geo.Gp
    pv = p * v
    Hv = geo.project(pv.addcmul_(p, pv.sum(1, keepdim=True), value=-1.0))
    return Hv.add_(Gv, alpha=lam), Gv


def _newton_chunk(geo: _Geometry, Y: Tensor, lam: float, tol: float, max_iter: int, max_cg: int) -> Tensor:
    """Optimal logits z (n, C) for one chunk of targets Y (n, C)."""
    n, C = Y.shape
    # start from logits whose softmax is the target smoothed by the scale of the decay in logit
    # space (exact in shape for an ETF, where the optimal p_j of the other classes are all equal),
    # or from zero, whichever is lower
    delta = lam * float(geo.Gp_diag.mean())
    z = geo.project(torch.log(Y + delta))
    Gz = z @ geo.Gp
    f, _ = _objective(z, Gz, Y, lam)
    f0, _ = _objective(torch.zeros_like(Y), torch.zeros_like(Y), Y, lam)
    worse = (f0 < f)[:, None]
    z, Gz, f = z.masked_fill(worse, 0.0), Gz.masked_fill(worse, 0.0), torch.minimum(f, f0)
    active = torch.arange(n, device=Y.device)
    lam_gd = lam * geo.Gp_diag
    for _ in range(max_iter):
        if active.numel() == 0:
            break
        za, Gza, Ya, fa = z[active], Gz[active], Y[active], f[active]
        p = torch.softmax(za, 1)
        g = geo.project(_residual(p, Ya) + lam * Gza)  # gradient within range(W)
        # preconditioner: the exact Hessian of logsumexp, diag(p) - p p^T, plus the diagonal of
        # lam G^+; its inverse is diagonal plus rank one (Sherman-Morrison)
        Einv = 1.0 / (p + lam_gd)
        Ep = p * Einv
        c = 1.0 / (1.0 - (p * Ep).sum(1, keepdim=True))

        x = torch.zeros_like(g)
        Gx = torch.zeros_like(g)
        r = -g
        s = _precond(r, Einv, Ep, c, geo)
        d = s
        rs = (r * s).sum(1, keepdim=True)
        # residuals are measured in the preconditioned norm, which weighs each logit by its own
        # curvature (logits of classes with tiny probability matter as much as the large ones)
        # forcing term eta = 1e-3 (inexact Newton, linear rate 1e-3: cheaper here than superlinear choices)
        stop = 1e-6 * rs
        cg_on = rs > 0
        for _ in range(min(max_cg, 2 * geo.rank + 2)):  # CG is exact after rank steps in exact arithmetic
            Hd, Gd = _hess(d, p, lam, geo)
            dHd = (d * Hd).sum(1, keepdim=True)
            alpha = torch.where(cg_on & (dHd > 0), rs / dHd.clamp_min(1e-300), 0.0)
            x.addcmul_(alpha, d)
            Gx.addcmul_(alpha, Gd)
            r.addcmul_(alpha, Hd, value=-1.0)
            s = _precond(r, Einv, Ep, c, geo)
            rs_new = (r * s).sum(1, keepdim=True)
            cg_on = cg_on & (rs_new > stop)
            if not bool(cg_on.any()):
                break
            beta = torch.where(cg_on, rs_new / rs.clamp_min(1e-300), 0.0)
            d = s.addcmul_(beta, d)
            rs = rs_new
        # backtracking (Armijo) line search, per sample
        slope = (g * x).sum(1)
        step = torch.ones_like(fa)
        for _ in range(60):
            zt, Gzt = za + step[:, None] * x, Gza + step[:, None] * Gx
            ft, noise = _objective(zt, Gzt, Ya, lam)
            # below the rounding level of f the Armijo test is blind: accept unless f clearly rose
            ok = (ft <= fa + 1e-4 * step * slope) | ((-slope <= noise) & (ft - fa <= noise))
            if bool(ok.all()):
                break
            step = torch.where(ok, step, 0.5 * step)
        z[active], Gz[active], f[active] = zt, Gzt, ft
        # converged: the Newton step, measured in feature space, is below tol relative to ||h||
        dh = step * (x * Gx).sum(1).clamp_min(0).sqrt()
        h = (zt * Gzt).sum(1).clamp_min(0).sqrt()
        active = active[dh > tol * torch.clamp(h, min=1.0)]
    return z


def optimal_features(
    W: Tensor,
    targets: Tensor,
    weight_decay: float,
    *,
    tol: float = 1e-12,
    max_iter: int = 100,
    max_cg: int = 200,
    chunk_size: int = 1024,
    return_logits: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """h* (N, d) = argmin_h CE(W h, y) + weight_decay/2 ||h||^2 for each target row y (eq. 2, W fixed).

    W (C, d) is any classifier; targets (N, C) are soft labels (rows on the simplex). Works in W's
    dtype (float64 recommended) on W's device. ``tol`` bounds the last Newton step relative to
    max(||h||, 1). With ``return_logits`` also returns z* = W h* (N, C).
    """
    _check_inputs(W, targets, weight_decay)
    dtype = W.dtype if W.dtype in (torch.float32, torch.float64) else torch.float64
    geo = _Geometry(W, dtype)
    Y = targets.detach().to(device=W.device, dtype=dtype)
    zs = [
        _newton_chunk(geo, Y[k : k + chunk_size], float(weight_decay), tol, max_iter, max_cg)
        for k in range(0, Y.shape[0], chunk_size)
    ]
    z = torch.cat(zs) if zs else Y.new_zeros(0, geo.C)
    z = geo.project(z)
    H = z @ geo.to_features
    return (H, z) if return_logits else H


def feature_objective(W: Tensor, H: Tensor, targets: Tensor, weight_decay: float) -> Tensor:
    """Per-sample CE(W h, y) + weight_decay/2 ||h||^2 (N,), the summand of eq. 2."""
    z = H @ W.T
    return torch.logsumexp(z, 1) - (targets * z).sum(1) + 0.5 * weight_decay * (H * H).sum(1)


def feature_gradient(W: Tensor, H: Tensor, targets: Tensor, weight_decay: float) -> Tensor:
    """Gradient (N, d) of ``feature_objective`` in h: W^T (softmax(W h) - y) + weight_decay h."""
    return (torch.softmax(H @ W.T, 1) - targets) @ W + weight_decay * H
