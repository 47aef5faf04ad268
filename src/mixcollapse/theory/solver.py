"""Optimal features for any classifier: argmin_h CE(W h, y) + lambda_H/2 ||h||^2, batched.

The per-sample problem of eq. 2 with W held fixed. It is strictly convex and h* lies in the row
space of W, so it is solved in logit coordinates z = W h restricted to range(W) (dimension
r = rank W <= C), where ||h||^2 = z^T G^+ z with G = W W^T: f(z) = logsumexp(z) - y^T z +
lambda_H/2 z^T G^+ z. Inexact Newton with an Armijo line search; each Newton system is solved by
conjugate gradients preconditioned with the exact Hessian of logsumexp plus the diagonal of
lambda_H G^+ (its inverse is diagonal plus rank one), to a forcing term that is loose far from
the optimum and 1e-4 near it. Newton starts from the best point of a four-dimensional subspace
that holds the optimum's shape (exact in shape for an ETF), found by a few 4 x 4 Newton steps.
Samples are processed in chunks of batched tensor algebra (CPU or CUDA) and each leaves the loop
when its estimated error is below ``tol``. On CPU with several torch threads, chunks are solved in
parallel, one per thread, each single-threaded: a chunk's operations on (2048, C) arrays are too
small to split well (two threads inside each operation gave 1.05x for an ETF, two chunks at once
1.7x).

Precision: the first iterations, which only need a few digits, run entirely in float32 (2-3x
cheaper per operation) up to a relative error of about 1e-5; the last ones keep the iterate,
gradient, objective and line search in float64 and solve only the Newton system in float32 (an
inexact Newton direction needs 4 digits, not 16), so the result is as accurate as an all-float64
solve. float32 is skipped when W W^T is too ill-conditioned for it, and rows whose Hessian
float32 cannot resolve (tiny lambda_H, where the curvature along the mixed classes cancels below
float32's rounding) are handed to float64. The reduction through the SVD of W is exact when W
is rank-deficient (an ETF has rank C-1, and C > d is allowed).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import torch
from torch import Tensor

FLOAT32_TOL = 1e-5  # relative error at which the float32 iterations hand over to float64
FLOAT32_MAX_COND = 1e4  # float32 only for W W^T better conditioned than this (eps32 * cond << 1)
ETA_MIN = 1e-4  # smallest CG forcing term: the linear rate of the last Newton iterations
START_STEPS = 3  # Newton steps in the four-dimensional subspace of the start
RATIO_SAFETY = 4.0  # a contraction ratio measured without history may be this much too small


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

    def __init__(self, W: Tensor, dtype: torch.dtype, rank_eps: float | None = None):
        W = W.detach().to(dtype)
        U, S, Vh = torch.linalg.svd(W, full_matrices=False)
        # singular values below the rounding level of W's own dtype are zero: a float32 ETF has
        # rank C - 1 even though its last singular value in float64 is 1e-8, not 0
        keep = S > S.max() * max(W.shape) * (rank_eps or torch.finfo(dtype).eps)
        r = int(keep.sum())
        U, S, Vh = U[:, :r], S[:r], Vh[:r]
        self.C, self.rank = W.shape[0], r
        self.cond = float((S[0] / S[-1]) ** 2) if r else 1.0  # condition number of W W^T within range(W)
        self.Gp = (U / S**2) @ U.T  # (C, C) pseudo-inverse of W W^T
        self.G = (U * S**2) @ U.T  # (C, C) W W^T
        self.norm = float(S[0]) if r else 0.0  # ||W||_2
        self.Gp_diag = torch.diagonal(self.Gp).clone()
        # all singular values equal (an ETF, any multiple of a partial orthogonal matrix): G^+ is a
        # multiple of the projection onto range(W), applied without a matrix product
        eps = rank_eps or torch.finfo(dtype).eps
        self.iso = float(1 / S[0] ** 2) if r and float(S[-1] / S[0]) > 1 - 10 * max(W.shape) * eps else None
        # projection onto range(W) = removal of the left null space N, cheap when N is small
        # (an ETF's is spanned by the ones vector alone)
        self.N = torch.linalg.qr(U, mode="complete")[0][:, r:] if r < self.C else None  # (C, C - r)
        self.centre_only = (
            self.N is not None
            and self.N.shape[1] == 1
            and bool(torch.allclose(self.N.abs(), torch.full_like(self.N, self.C**-0.5), rtol=0, atol=1e-12))
        )
        self.to_features = (U / S) @ Vh  # (C, d): h = W^T G^+ z = z @ to_features

    def to(self, dtype: torch.dtype) -> _Geometry:
        """The same geometry in another dtype (for the float32 first iterations)."""
        other = object.__new__(_Geometry)
        other.__dict__.update({k: v.to(dtype) if isinstance(v, Tensor) else v for k, v in self.__dict__.items()})
        return other

    def gp(self, v: Tensor) -> Tensor:
        """G^+ v for a batch of rows v (n, C)."""
        return self.iso * self.project(v) if self.iso is not None else v @ self.Gp

    def gmul(self, v: Tensor) -> Tensor:
        """G v for a batch of rows v (n, C)."""
        return self.project(v) / self.iso if self.iso is not None else v @ self.G

    def project(self, v: Tensor) -> Tensor:
        if self.N is None:
            return v
        if self.centre_only:  # null space = the ones vector: subtract the mean
            return v - v.mean(1, keepdim=True)
        return v - (v @ self.N) @ self.N.T


def _objective(z: Tensor, Gz: Tensor, Y: Tensor, lam: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Per-sample objective, the size of its rounding error (its terms are summed with
    cancellation), softmax(z), which shares its exponentials with the log-sum-exp, and
    z^T G^+ z = ||h||^2."""
    m = z.amax(1, keepdim=True)
    e = torch.exp(z - m)
    total = e.sum(1, keepdim=True)
    lse = m[:, 0] + total[:, 0].log()
    yz, hh = (Y * z).sum(1), (z * Gz).sum(1)
    reg = 0.5 * lam * hh
    noise = 64 * torch.finfo(z.dtype).eps * (lse.abs() + yz.abs() + reg.abs() + 1.0)
    return lse - yz + reg, noise, e.div_(total), hh


def _residual(p: Tensor, Y: Tensor) -> Tensor:
    """p - y with its rounding error (the sum, exactly 0 in exact arithmetic) taken out in proportion to p.

    When p_k is close to 1, p_k - y_k computed directly carries an error of eps, yet the
    curvature in that direction is only p_k (1 - p_k); removing the sum from the entries in
    proportion to p puts the correction where that error sits, on the most likely class.
    """
    r = p - Y
    return r.addcmul_(p, r.sum(1, keepdim=True), value=-1.0)


def _rowdot(a: Tensor, b: Tensor, scratch: Tensor) -> Tensor:
    """Row-wise dot products (n, 1), through a scratch array: CG's many (n, C) temporaries would
    otherwise each be allocated and freed, which costs as much as the product itself."""
    return torch.mul(a, b, out=scratch).sum(1, keepdim=True)


def _precond(r: Tensor, Einv: Tensor, Ep: Tensor, c: Tensor, geo: _Geometry, scratch: Tensor) -> Tensor:
    """(E - p p^T)^{-1} r with E = diag(p + lam diag G^+), by Sherman-Morrison, within range(W)."""
    s = Einv * r
    return geo.project(s.addcmul_(Ep, c * _rowdot(Ep, r, scratch)))


def _hess(v: Tensor, p: Tensor, lam: float, geo: _Geometry) -> Tensor:
    """Hessian v, Hessian = (diag(p) - p p^T) + lam G^+ within range(W)."""
    pv = p * v
    Hv = geo.project(pv.addcmul_(p, pv.sum(1, keepdim=True), value=-1.0))
    if geo.iso is not None:
        return Hv.add_(geo.project(v), alpha=lam * geo.iso)
    return Hv.addmm_(v, geo.Gp, alpha=lam)


def _start(geo: _Geometry, Y: Tensor, lam: float, steps: int | None = None) -> Tensor:
    """Starting logits: the best point in a four-dimensional subspace that holds the optimum's shape.

    At the optimum z = -G (p - y) / lam, and p - y is, to first order, a combination of y, the
    ones vector (the small probabilities of the other classes) and the smoothed target
    log(y + delta). So the start is the minimiser of f over the span of G y, G 1, G log(y + delta)
    and log(y + delta) itself (shifted to the best constant, which the cross entropy ignores),
    found by a few Newton steps in those four coefficients. Exact in shape for an ETF; for a
    random W it starts Newton about 10x closer than the smoothed target alone, which saves about
    two full iterations. delta is the scale of the decay in logit space.
    """
    delta = lam * float(geo.Gp_diag.mean())
    L = geo.project(torch.log(Y + delta))
    GpL = geo.gp(L)
    one = geo.project(torch.ones_like(Y[:1]))
    Gp1 = geo.gp(one)
    q11 = float((one * Gp1).sum())
    # CE is unchanged by adding a constant to all logits: the shift that minimises the decay
    shift = (GpL * one).sum(1, keepdim=True) / q11 if q11 > 0 else torch.zeros_like(Y[:, :1])
    n, C = Y.shape
    # basis (4, n, C) and G^+ of it (G^+ G u is the projection of u onto range(W)), laid out so
    # that every product below runs over contiguous rows
    B, GpB = Y.new_empty(4, n, C), Y.new_empty(4, n, C)
    torch.sub(L, shift * one, out=B[0])
    B[1] = geo.gmul(one)
    B[2], B[3] = geo.gmul(Y), geo.gmul(L)
    torch.sub(GpL, shift * Gp1, out=GpB[0])
    GpB[1], GpB[2], GpB[3] = one, geo.project(Y), L
    BGB = torch.einsum("inc,jnc->nij", B, GpB)
    Pb = torch.mul(B, Y, out=torch.empty_like(B))  # one scratch array for the (4, n, C) products
    By = Pb.sum(2).T
    a = torch.zeros(n, 4, dtype=Y.dtype, device=Y.device)
    a[:, 0] = 1.0
    eye = torch.eye(4, dtype=Y.dtype, device=Y.device)
    for _ in range(START_STEPS if steps is None else steps):
        p = torch.softmax(torch.einsum("ni,inc->nc", a, B), 1)
        torch.mul(B, p, out=Pb)
        Bp = Pb.sum(2).T
        H = torch.einsum("inc,jnc->nij", Pb, B) - Bp[:, :, None] * Bp[:, None] + lam * BGB
        g = Bp - By + lam * (BGB @ a[:, :, None])[..., 0]
        # damped a little: directions repeat for an ETF (G 1 = 0, G L parallel to L)
        d = torch.diagonal(H, dim1=1, dim2=2)
        H = H + (1e-4 * d + torch.finfo(Y.dtype).tiny / torch.finfo(Y.dtype).eps)[:, :, None] * eye
        step, info = torch.linalg.solve_ex(H, -g)
        a = torch.where((info == 0)[:, None] & torch.isfinite(step).all(1, keepdim=True), a + step, a)
    return torch.einsum("ni,inc->nc", a, B)


def _best_start(geo: _Geometry, Y: Tensor, lam: float, z: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Of z and 0, per sample the one with the lower objective (a start must never be worse than 0),
    with its G^+ z, objective and rounding level."""
    Gz = geo.gp(z)
    f, noise, _, _ = _objective(z, Gz, Y, lam)
    f0 = math.log(Y.shape[1])  # the objective at z = 0, for every y
    zero = ~(f <= f0)  # also where z is not finite
    if not bool(zero.any()):
        return z, Gz, f, noise
    noise0 = 64 * torch.finfo(z.dtype).eps * (f0 + 1.0)
    fill = zero[:, None]
    return z.masked_fill(fill, 0.0), Gz.masked_fill(fill, 0.0), f.masked_fill(zero, f0), noise.masked_fill(zero, noise0)


def _cg(p: Tensor, g: Tensor, lam: float, geo: _Geometry, eta_min: Tensor, max_cg: int) -> Tensor:
    """Inexact Newton direction x = -H^{-1} g by preconditioned CG, in the dtype of p and geo.

    CG stops when the residual, in the preconditioned norm (which
    weighs each logit by its own curvature, so classes with tiny probability count), has shrunk
    by the forcing term eta = clamp(Newton decrement, eta_min, 0.1): loose far from the optimum,
    where accurate directions are wasted, and eta_min (n, 1), a linear rate, near it. g is scaled to
    unit size first, so that float32 neither underflows nor overflows close to the optimum.
    """
    size = g.abs().amax(1, keepdim=True).clamp_min(torch.finfo(g.dtype).tiny)
    r = -(g / size)
    # preconditioner: the exact Hessian of logsumexp, diag(p) - p p^T, plus the diagonal of
    # lam G^+; its inverse is diagonal plus rank one (Sherman-Morrison)
    Einv = (p + lam * geo.Gp_diag).reciprocal_()
    Ep = p * Einv
    # 1 / (1 - p^T E^{-1} p). In exact arithmetic (sum p = 1) the difference is
    # lam sum_k Ep_k (G^+)_kk; when that is below the rounding level, rounding decides it: floored
    # there, and in float32 such rows are left to float64 (returned as NaN), whose Hessian is exact
    # enough
    exact = lam * (Ep * geo.Gp_diag).sum(1, keepdim=True)
    c = 1.0 / torch.maximum(1.0 - (p * Ep).sum(1, keepdim=True), exact)
    unsure = exact[:, 0] < 64 * torch.finfo(p.dtype).eps if p.dtype == torch.float32 else None
    x = torch.zeros_like(r)
    scratch = torch.empty_like(r)
    s = _precond(r, Einv, Ep, c, geo, scratch)
    d = s
    rs = _rowdot(r, s, scratch)
    eta2 = torch.maximum(rs * size**2, eta_min.to(rs.dtype) ** 2).clamp_max_(1e-2)
    stop = eta2 * rs
    cg_on = rs > 0
    for _ in range(min(max_cg, 2 * geo.rank + 2)):  # CG is exact after rank steps in exact arithmetic
        Hd = _hess(d, p, lam, geo)
        dHd = _rowdot(d, Hd, scratch)
        alpha = torch.where(cg_on & (dHd > 0), rs / dHd.clamp_min(torch.finfo(d.dtype).tiny), 0.0)
        x.addcmul_(alpha, d)
        r.addcmul_(alpha, Hd, value=-1.0)
        s = _precond(r, Einv, Ep, c, geo, scratch)
        rs_new = _rowdot(r, s, scratch)
        cg_on = cg_on & (rs_new > stop)
        if not bool(cg_on.any()):
            break
        beta = torch.where(cg_on, rs_new / rs.clamp_min(torch.finfo(d.dtype).tiny), 0.0)
        d = s.addcmul_(beta, d)
        rs = rs_new
    x.mul_(size)
    if unsure is not None and bool(unsure.any()):
        x[unsure] = float("nan")
    return x


def _newton_chunk(
    geo: _Geometry,
    cg_geo: _Geometry,
    Y: Tensor,
    start: tuple[Tensor, Tensor, Tensor, Tensor],
    lam: float,
    tol: float,
    max_iter: int,
    max_cg: int,
    eta_min: float,
    err0: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Newton-CG for targets Y (n, C) from ``start`` = (z, G^+ z, objective, its rounding level),
    in geo's dtype with CG in cg_geo's. Returns z, G^+ z, softmax(z) and each sample's estimated
    relative error.

    ``err0`` (n,), the estimated relative error of a start that float32 iterations produced, makes
    the CG forcing floor of each sample adaptive: 0.1 tol / (its estimated error), between eta_min
    and 0.1. A step that starts close to tol need only shrink its error tenfold, not by eta_min; at
    tol = 1e-6 the last step takes about half the CG iterations. Only there: for W W^T with
    condition number 1e6 (where float32 is not used) the looser linear rate makes the error
    estimate up to 7x optimistic.

    The one function in the package over 60 lines, on purpose: the Newton loop shares a dozen
    per-sample tensors (the active set, step history, error estimates) that it shrinks in place as
    samples converge; split into helpers they would travel as long argument lists, and the loop is
    the solver's hot path, checked against the closed form and scipy (tests/theory).
    """
    n, C = Y.shape
    z, Gz, f, fnoise = (t.clone() for t in start)
    P = torch.softmax(z, 1)
    scale = (z * Gz).sum(1).clamp_min(0).sqrt().clamp_min(1.0)  # max(||h||, 1)
    active = torch.arange(n, device=Y.device)
    last = torch.zeros(n, dtype=z.dtype, device=z.device)  # each sample's last full step, 0 if none
    last_q = torch.full((2, n), math.nan, dtype=z.dtype, device=z.device)  # the two contractions before, NaN if none
    adaptive = err0 is not None
    # each sample's estimated relative error
    estimate = err0.to(z).clone() if adaptive else torch.full((n,), math.inf, dtype=z.dtype, device=z.device)
    for _ in range(max_iter):
        if active.numel() == 0:
            break
        whole = active.numel() == n  # no gathering while every sample is still iterating
        state = (z, Gz, Y, f, fnoise, P, scale)
        za, Gza, Ya, fa, na, p, sa = state if whole else (t[active] for t in state)
        g = geo.project(_residual(p, Ya).add_(Gza, alpha=lam))  # gradient within range(W)
        # A bound that needs no step: f is lam-strongly convex in h, so
        # ||h - h*|| <= ||grad_h f|| / lam = ||W^T g|| / lam <= ||W|| ||g|| / lam. Loose (about
        # 1/lam too high), so it ends only samples that are converged well beyond tol already,
        # which saves the confirming step at loose tolerances.
        done = geo.norm * torch.linalg.vector_norm(g, dim=1) <= lam * tol * sa
        if bool(done.any()):
            keep = ~done
            active, za, Gza, Ya, fa, na, p, g = (t[keep] for t in (active, za, Gza, Ya, fa, na, p, g))
            whole = False
            if active.numel() == 0:
                break
        low = cg_geo.Gp.dtype
        if adaptive:
            eta = (0.1 * tol / estimate[active]).clamp_(eta_min, 0.1)[:, None]
        else:
            eta = torch.full((active.numel(), 1), eta_min, dtype=g.dtype, device=g.device)
        x = _cg(p.to(low), g.to(low), lam, cg_geo, eta, max_cg)
        x = x.to(g.dtype)
        # rows with inf or NaN (or so large that their sum overflows, as good as failed)
        bad = (~torch.isfinite(x.sum(1))).nonzero()[:, 0]
        if len(bad):
            # float32 could not resolve these rows: float64 CG for them, or, in the float32
            # iterations, no step (float64 takes over); a diagonally scaled gradient step (always
            # a descent direction) if even float64 fails
            if low != g.dtype:
                x[bad] = _cg(p[bad], g[bad], lam, geo, eta[bad], max_cg)
            else:
                x[bad] = 0.0
            x = torch.where(torch.isfinite(x), x, -g / (p + lam * geo.Gp_diag))
        # G^+ x in the working precision: G^+ x may be far smaller than |G^+| |x| (cancellation),
        # and the objective along the step needs it to the last digit
        Gx = geo.gp(x)
        # backtracking (Armijo) line search, per sample
        slope = (g * x).sum(1)
        step = torch.ones_like(fa)
        for _ in range(60):
            zt, Gzt = torch.addcmul(za, step[:, None], x), torch.addcmul(Gza, step[:, None], Gx)
            ft, nt, pt, hh = _objective(zt, Gzt, Ya, lam)
            # below the rounding level of f (at the current point) the Armijo test is blind:
            # accept unless f clearly rose
            ok = (ft <= fa + 1e-4 * step * slope) | ((-slope <= na) & (ft - fa <= na))
            if bool(ok.all()):
                break
            step = torch.where(ok, step, 0.5 * step)
        if whole:
            z, Gz, f, fnoise, P = zt, Gzt, ft, nt, pt
        else:
            z[active], Gz[active], f[active], fnoise[active], P[active] = zt, Gzt, ft, nt, pt
        # Error estimate, in feature space relative to max(||h||, 1): with the observed contraction
        # q = (this step) / (last step) < 1/2, the steps still to come sum to about q / (1 - q)
        # times this one; otherwise (first or damped steps, slow progress) the step itself. q is
        # the largest of the last three ratios: once the quadratic phase meets the linear rate
        # that the CG forcing allows, the ratios fluctuate (by 4x for W W^T with condition number
        # 1e6), and one of them can be luckily small. While fewer than three are on record (the
        # first steps of a phase, which usually are all there is), the latest ratio counts 4x
        # (RATIO_SAFETY) instead of waiting for a third full step.
        dh = step * (x * Gx).sum(1).clamp_min(0).sqrt()
        q = dh / last[active]  # inf after a first or damped step: then not used
        hist = last_q[:, active]
        q_est = torch.maximum(q, hist.nan_to_num(0.0).amax(0))
        q_est = torch.where(hist.isnan().any(0), torch.maximum(q_est, RATIO_SAFETY * q), q_est)
        err = torch.where((q_est < 0.5) & (step == 1), dh * q_est / (1 - q_est), dh)
        st = hh.clamp_min(0).sqrt().clamp_min(1.0)
        full = step == 1
        last_q[:, active] = torch.stack([hist[1], q.where(full & torch.isfinite(q), math.nan)])
        last[active], scale[active], estimate[active] = dh.where(full, 0.0), st, err / st
        active = active[err > tol * st]
    return z, Gz, P, estimate


def optimal_features(
    W: Tensor,
    targets: Tensor,
    weight_decay: float,
    *,
    tol: float = 1e-12,
    max_iter: int = 100,
    max_cg: int = 200,
    chunk_size: int | None = None,
    float32_start: bool = True,
    return_logits: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """h* (N, d) = argmin_h CE(W h, y) + weight_decay/2 ||h||^2 for each target row y (eq. 2, W fixed).

    W (C, d) is any classifier; targets (N, C) are soft labels (rows on the simplex). Solves in
    float64 on W's device and returns W's floating dtype; singular values of W below the rounding
    level of its dtype count as zero (pass W in the precision it was trained in). ``tol`` bounds
    the estimated error of h relative to max(||h||, 1). With ``float32_start`` the first Newton iterations, which only
    need a few digits, run in float32 (2-3x cheaper on CPU and GPU) up to a relative error of
    about 1e-5; float64 iterations then take every sample to ``tol``, so the result does not
    depend on it. With ``return_logits`` also returns z* = W h* (N, C). On CPU the chunks are solved
    by torch.get_num_threads() worker threads, each single-threaded (torch's process-wide thread
    count is 1 while they run, and restored after).
    """
    _check_inputs(W, targets, weight_decay)
    out_dtype = W.dtype if W.dtype.is_floating_point else torch.float64
    geo = _Geometry(W, torch.float64, rank_eps=torch.finfo(out_dtype).eps)
    # float32 iterations need G^+ to keep a few digits in float32 (an ETF has cond 1)
    geo32 = geo.to(torch.float32) if float32_start and geo.cond <= FLOAT32_MAX_COND else None
    Y = targets.detach().to(device=W.device, dtype=torch.float64)
    lam = float(weight_decay)
    if chunk_size is None:  # CPU: a chunk's arrays stay near the caches (but are not so small that
        chunk_size = max(2048, (1 << 17) // geo.C) if W.device.type == "cpu" else 65536  # overhead dominates)
    z_all = Y.new_empty(Y.shape[0], geo.C)  # the logits, filled chunk by chunk

    def solve(k: int) -> Tensor:
        Yk = Y[k : k + chunk_size]
        if geo32 is not None:
            Y32 = Yk.float()
            start = _best_start(geo32, Y32, lam, _start(geo32, Y32, lam))
            z, _, _, err0 = _newton_chunk(geo32, geo32, Y32, start, lam, max(tol, FLOAT32_TOL), max_iter, max_cg, 1e-2)
            z = geo.project(z.double())
            # the float32 estimate is blind below float32's own rounding of the iterate
            err0 = err0.double().clamp_min(8 * torch.finfo(torch.float32).eps)
        else:
            z, err0 = _start(geo, Yk, lam), None
        # in float64 the start is again checked against 0 (float32 may have failed where W W^T is
        # badly conditioned), and the iterations estimate their contraction afresh
        start = _best_start(geo, Yk, lam, z)
        z, Gz, P, _ = _newton_chunk(geo, geo32 or geo, Yk, start, lam, tol, max_iter, max_cg, ETA_MIN, err0)
        z_all[k : k + chunk_size] = geo.project(z)
        return _unconverged(geo, z, Gz, P, Yk, lam, tol)

    starts = range(0, Y.shape[0], chunk_size)
    workers = min(torch.get_num_threads(), len(starts)) if W.device.type == "cpu" else 1
    unconverged = _in_threads(solve, starts, workers) if workers > 1 else [solve(k) for k in starts]
    H = z_all @ geo.to_features
    _warn_unconverged(unconverged, len(Y), geo.cond)
    return (H.to(out_dtype), z_all.to(out_dtype)) if return_logits else H.to(out_dtype)


def _warn_unconverged(unconverged: list[Tensor], total: int, cond: float) -> None:
    """One RuntimeWarning when some problems did not reach the tolerance (stacklevel: optimal_features' caller)."""
    bad = sum(int(b.numel()) for b in unconverged)
    if bad:
        warnings.warn(
            f"optimal_features: {bad} of {total} problems did not converge (relative gradient up to "
            f"{float(torch.cat(unconverged).max()):.1e}); W W^T has condition number {cond:.1e}, "
            "the solver is accurate up to about 1e8",
            RuntimeWarning,
            stacklevel=3,
        )


def _in_threads(fn: Callable[[int], Tensor], items: range, workers: int) -> list[Tensor]:
    """fn over items in ``workers`` threads, each running torch single-threaded, results in order.

    torch's thread count is process-wide: while the pool runs it is 1, and the caller's count is
    restored after. On an error or Ctrl-C the chunks not yet started are dropped, not run.
    """
    before = torch.get_num_threads()
    pool = ThreadPoolExecutor(workers, initializer=torch.set_num_threads, initargs=(1,))
    try:
        return list(pool.map(fn, items))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        torch.set_num_threads(before)


def _unconverged(geo: _Geometry, z: Tensor, Gz: Tensor, p: Tensor, Y: Tensor, lam: float, tol: float) -> Tensor:
    """Relative gradients in h of the problems whose gradient is not small against its two terms.

    The error estimate that stops the iterations assumes Newton converges; with W W^T
    ill-conditioned beyond about 1e8 CG in logit coordinates does not, and this says so. In logit
    coordinates: grad_h = W^T g with g = p - y + lam G^+ z, so ||grad_h||^2 = g^T G g, and the two
    terms are W^T (p - y) and lam h. A bound checks every problem without a matrix product
    (||W^T g|| <= ||W|| ||g||, and the terms' sizes add to at least lam ||h||); only those it does
    not clear are computed exactly. A loose ``tol`` allows a gradient of up to
    ||Hessian|| tol max(||h||, 1), with ||Hessian|| <= ||W||^2 / 2 + lam.
    """
    resid = geo.project(p - Y)  # the part of p - y that W^T does not annihilate
    g = resid + lam * Gz
    h_norm = (z * Gz).sum(1).clamp_min(0).sqrt()
    # rounding in p - y alone leaves a gradient of about eps sqrt(C) ||W||
    floor = 1e3 * torch.finfo(z.dtype).eps * geo.C**0.5 * geo.norm
    allowed = 10 * (geo.norm**2 / 2 + lam) * tol * h_norm.clamp_min(1.0) + floor
    unsure = (geo.norm * g.norm(dim=1) > 1e-8 * lam * h_norm + allowed).nonzero()[:, 0]
    if not len(unsure):
        return z.new_zeros(0)
    g, resid = g[unsure], resid[unsure]
    both = torch.cat([g, resid]) @ geo.G
    grad = (both[: len(g)] * g).sum(1).clamp_min(0).sqrt()
    size = (both[len(g) :] * resid).sum(1).clamp_min(0).sqrt() + lam * h_norm[unsure]
    rel = grad / size
    return rel[grad > 1e-8 * size + allowed[unsure]]


def feature_objective(W: Tensor, H: Tensor, targets: Tensor, weight_decay: float) -> Tensor:
    """Per-sample CE(W h, y) + weight_decay/2 ||h||^2 (N,), the summand of eq. 2."""
    z = H @ W.T
    return torch.logsumexp(z, 1) - (targets * z).sum(1) + 0.5 * weight_decay * (H * H).sum(1)


def feature_gradient(W: Tensor, H: Tensor, targets: Tensor, weight_decay: float) -> Tensor:
    """Gradient (N, d) of ``feature_objective`` in h: W^T (softmax(W h) - y) + weight_decay h."""
    return (torch.softmax(H @ W.T, 1) - targets) @ W + weight_decay * H
