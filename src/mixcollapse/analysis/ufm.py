"""The distance of a network's features to the unconstrained features model's optimum (section 3, eq. 2).

For each mixup pair the UFM's optimal feature is solved for the network's own classifier W and
the pair's soft target y = lam e_a + (1 - lam) e_b (``mixcollapse.theory.optimal_features``), and
``ConfigurationAccumulator`` compares it with the measured feature after the best scalar
rescaling. ``PairMeasures`` is the extraction callback that feeds the pairs to both as they stream.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from mixcollapse.analysis.configuration import ConfigurationAccumulator
from mixcollapse.mixup import mixup_targets

UFM_TOL = 1e-8  # relative error of the UFM optima the features are compared with
DEFAULT_UFM_WEIGHT_DECAY = 1e-4  # Appendix B.1's weight decay (WRN); used when no training config says otherwise


def ufm_solver() -> tuple[Callable, str]:
    """The theory package's batched general UFM solver, and how it is described in analysis.json.

    Solved to a relative error of UFM_TOL: the features it is compared with are float32 (7
    digits) and the distance is reported to a few digits, so tighter solves only cost time.
    """
    from mixcollapse.theory import optimal_features  # scipy comes with the theory: imported when a solve is due

    return functools.partial(optimal_features, tol=UFM_TOL), f"mixcollapse.theory.optimal_features (tol={UFM_TOL:g})"


class PairMeasures:
    """The extraction callback: batches of pairs into the configuration sums, with their UFM optimum.

    ``extract_pair_features(..., callbacks=[measure])`` then ``measure.flush()``. Batches are
    buffered up to ``buffer_rows`` pairs (bounded memory: O(buffer_rows (d + C)); by default at most
    4096 pairs and 32 MB per float64 array of features) and then measured
    together, because the UFM solver's cost per pair falls with the number of pairs it solves at
    once. For the buffered pairs, ``solver(W, Y, weight_decay)`` (the theory's ``optimal_features``)
    gives the UFM-optimal features for the mixup targets Y = lam e_a + (1 - lam) e_b and the
    classifier W (C, d), bias left out, solved once per distinct target (same-class pairs share
    theirs); ``solver=None`` skips the UFM distance. ``center`` (d,), optional, is subtracted from
    the features first (the pipeline passes the global mean of the unmixed training features);
    the logits are used as given.

    ``span_rows`` (k, d), optional: the classifier rows of the analysed classes, whose span is the
    plane of Appendix B.2's figure. Then ``same_cos_in_span`` = Avg over same-class pairs of
    cos(P h, w_a), P the projector onto that span (the cosine the figure shows), and
    ``offspan_energy`` = sum ||h - P h||^2 / sum ||h||^2 over all pairs (the share of the features
    that the figure does not show).
    """

    def __init__(
        self,
        acc: ConfigurationAccumulator,
        W: Tensor,
        solver: Callable | None,
        weight_decay: float,
        center: Tensor | None = None,
        buffer_rows: int | None = None,
        span_rows: Tensor | None = None,
    ):
        # default: at most 4096 rows and 32 MB per float64 (rows, d) array
        if buffer_rows is None:
            buffer_rows = min(4096, max(512, (1 << 22) // W.shape[1]))
        self.acc, self.solver, self.weight_decay, self.buffer_rows = acc, solver, weight_decay, int(buffer_rows)
        self.W = W.detach().to(torch.float64)  # (C, d): the UFM's classifier, without the bias
        self.W_given = W.detach()  # in its own precision: the solver takes its rank at that precision
        eps = torch.finfo(W.dtype if W.dtype.is_floating_point else torch.float64).eps
        self.center = None if center is None else center.detach()
        self._buffer: list[tuple] = []
        self._rows = 0
        # Orthonormal basis (d, r) of the classifier's row space: the UFM optimum lies in it.
        _, S, Vh = torch.linalg.svd(self.W, full_matrices=False)
        self._span = Vh[S > S.max() * max(self.W.shape) * eps].T
        self._sums = torch.zeros(2, dtype=torch.float64, device=self.W.device)  # ||H||^2, ||H in span||^2
        self._rows_basis = None  # orthonormal (d, k) basis of span(span_rows)
        if span_rows is not None:
            self._rows_basis = torch.linalg.qr(span_rows.detach().to(self.W.device, torch.float64).T).Q
        self._plane = torch.zeros(4, dtype=torch.float64, device=self.W.device)  # sum cos, same count, off, total

    def __call__(self, batch: dict) -> None:
        pairs, H = batch["pairs"], batch["features"]
        device = H.device
        as_tensor = lambda a: torch.as_tensor(np.asarray(a), device=device)  # noqa: E731
        self._buffer.append(
            (
                H.detach(),
                batch["logits"].detach(),
                as_tensor(pairs.lam),
                as_tensor(pairs.class_a),
                as_tensor(pairs.class_b),
            )
        )
        self._rows += len(H)
        if self._rows >= self.buffer_rows:
            self.flush()

    def flush(self) -> None:
        """Measure the buffered pairs (call once after the last batch)."""
        if not self._buffer:
            return
        H, logits, lam, a, b = (torch.cat(parts) for parts in zip(*self._buffer, strict=True))
        self._buffer, self._rows = [], 0
        if self.center is not None:
            H = H.to(torch.float64) - self.center.to(H.device, torch.float64)
        H64 = H.to(torch.float64)
        self._sums += torch.stack([(H64 * H64).sum(), ((H64 @ self._span.to(H.device)) ** 2).sum()]).to(self._sums)
        if self._rows_basis is not None:
            self._plane += self._plane_sums(H64, a, a == b).to(self._plane)
        H_opt = None
        if self.solver is not None:
            Y = mixup_targets(lam, a, b, self.W.shape[0])
            unique, inverse = torch.unique(Y, dim=0, return_inverse=True)
            H_opt = self.solver(self.W_given.to(H.device), unique, self.weight_decay)[inverse].to(torch.float64)
        self.acc.accumulate(H, logits, lam, a, b, a == b, H_opt=H_opt)

    def _plane_sums(self, H: Tensor, a: Tensor, same: Tensor) -> Tensor:
        """[sum of cos(P h, w_a) over same-class rows, their count, sum ||h - P h||^2, sum ||h||^2]."""
        Q = self._rows_basis.to(H.device)
        h_sq = (H * H).sum(1)
        in_sq = ((H @ Q) ** 2).sum(1)
        w_a = self.W.to(H.device)[a]
        # <P h, w_a> = <h, w_a> because w_a lies in the span.
        cos = (H * w_a).sum(1) / (in_sq.sqrt() * w_a.norm(dim=1)).clamp_min(torch.finfo(torch.float64).tiny)
        return torch.stack(
            [torch.where(same, cos, 0.0).sum(), same.sum().to(H.dtype), (h_sq - in_sq).clamp_min(0).sum(), h_sq.sum()]
        )

    def compute(self) -> dict[str, float]:
        """classifier_span_energy = ||H P||^2 / ||H||^2 (P: projector onto W's row space, where the UFM
        optimum lies) and ufm_distance_in_span = min_s ||H P - s H*|| / ||H P||, the UFM distance of the
        part of the features that reaches the logits (NaN without the solver)."""
        self.flush()
        h_sq, span_sq = self._sums.tolist()
        dot, opt_sq = self.acc.ufm[0].item(), self.acc.ufm[1].item()
        in_span = math.sqrt(max(span_sq - dot**2 / opt_sq, 0.0) / span_sq) if opt_sq > 0 and span_sq > 0 else math.nan
        out = {"classifier_span_energy": span_sq / h_sq if h_sq > 0 else math.nan, "ufm_distance_in_span": in_span}
        if self._rows_basis is not None:
            cos_sum, n_same, off, total = self._plane.tolist()
            out["same_cos_in_span"] = cos_sum / n_same if n_same > 0 else math.nan
            out["offspan_energy"] = off / total if total > 0 else math.nan
        return out
