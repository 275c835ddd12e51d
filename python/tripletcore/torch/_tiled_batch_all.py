"""The batch-all loss of the tiled path (custom autograd: pair weights recomputed chunk-wise).

Keys, error bounds and the exact recomputation come from ``_tiled._Space``;
see ``_tiled``'s docstring for the precision ladder.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ._tiled import _INF, _masks, _positives, _Space, chunk_rows


class _Chunk:
    """Distances and pair data of one chunk of anchors for batch-all."""

    def __init__(self, space: _Space, labels: Tensor, s: int, e: int) -> None:
        self.space = space
        self.s, self.e = s, e
        keys = space.keys(slice(s, e), space.start)
        self.pos, self.neg = _masks(labels, labels, s, e, 0)
        self.p_idx, self.p_valid = _positives(self.pos)
        self.dist = space.distances(keys)
        self.tol = space.tol(slice(s, e), space.start)
        if space.metric == "euclidean":
            # near-coincident pairs: the expansion has no relative accuracy there
            small = (keys <= 1024.0 * self.tol[:, None]) & (self.pos | self.neg)
            r, c = torch.nonzero(small, as_tuple=True)
            if r.numel():
                self.dist[r, c] = space.pair_keys(r + s, c).sqrt().to(self.dist.dtype)

    def _errors(self) -> Tensor:
        """Per entry, a bound on the error of ``dist`` (conservative for the
        entries recomputed from differences)."""
        d, tol = self.dist, self.tol[:, None]
        if self.space.metric == "euclidean":
            # |sqrt(k) - sqrt(k_exact)| for |k - k_exact| <= tol, k = d^2
            k = d * d
            err = torch.where(k >= tol, tol / (d + (k - tol).sqrt()), tol.sqrt())
        else:
            err = tol
        # with the rounding of these operations, the square root and d itself
        return err * (1.0 + 2.0**-10) + 2.0 * torch.finfo(d.dtype).eps * d

    def hinge(self, margin: float) -> tuple[Tensor, Tensor, Tensor]:
        """Per-anchor loss sum (float64), active-triplet count, pair weights.

        Triplets whose hinge argument is within the distances' error bound of
        the kink are decided on exact distances (both ends, in float64), so
        exact ties fall as in the Rust kernel and others on their exact side.
        """
        d, neg, p_idx, p_valid = self.dist, self.neg, self.p_idx, self.p_valid
        if math.isinf(margin) or p_idx.shape[1] == 0:
            return _hinge(d, neg, p_idx, p_valid, margin)
        r, c = _near_kink_entries(d, self._errors(), self.pos, neg, p_idx, p_valid, margin)
        if not r.numel():
            return _hinge(d, neg, p_idx, p_valid, margin)
        exact = self.space.distances(self.space.pair_keys(r + self.s, c))
        unsure, at = torch.unique(r, return_inverse=True)
        sub = d[unsure].double()
        sub[at, c] = exact
        d[r, c] = exact.to(d.dtype)
        sure = torch.ones(d.shape[0], dtype=torch.bool, device=d.device)
        sure[unsure] = False
        sure = torch.nonzero(sure).flatten()
        loss = torch.empty(d.shape[0], dtype=torch.float64, device=d.device)
        nonzero = torch.empty(d.shape[0], dtype=torch.int64, device=d.device)
        weights = torch.empty_like(d)
        for rows, dist in ((sure, d[sure]), (unsure, sub)):
            part = _hinge(dist, neg[rows], p_idx[rows], p_valid[rows], margin)
            loss[rows], nonzero[rows], weights[rows] = part[0], part[1], part[2].to(d.dtype)
        return loss, nonzero, weights

    def soft(self) -> tuple[Tensor, Tensor, Tensor]:
        """As :meth:`hinge` for ``softplus(d_ap - d_an)``, in sub-blocks of rows."""
        d, neg, p_idx, p_valid = self.dist, self.neg, self.p_idx, self.p_valid
        rows = d.shape[0]
        loss = torch.zeros(rows, dtype=torch.float64, device=d.device)
        nonzero = torch.zeros(rows, dtype=torch.int64, device=d.device)
        weights = torch.zeros_like(d)
        width = p_idx.shape[1]
        if width == 0:
            return loss, nonzero, weights
        d_ap = d.gather(1, p_idx)
        step = chunk_rows(rows, width * d.shape[1], 3 * d.element_size() + 2, None)
        for s in range(0, rows, step):
            e = min(rows, s + step)
            v = d_ap[s:e, :, None] - d[s:e, None, :]
            valid = p_valid[s:e, :, None] & neg[s:e, None, :]
            terms = torch.logaddexp(v, torch.zeros_like(v)).masked_fill_(~valid, 0.0)
            loss[s:e] = terms.sum(dim=(1, 2), dtype=torch.float64)
            nonzero[s:e] = (terms > 0).sum(dim=(1, 2))
            sig = torch.sigmoid(v).masked_fill_(~valid, 0.0)
            weights[s:e].scatter_add_(1, p_idx[s:e], sig.sum(dim=2))
            weights[s:e] -= sig.sum(dim=1)
        return loss, nonzero, weights


def _hinge(
    d: Tensor, neg: Tensor, p_idx: Tensor, p_valid: Tensor, margin: float
) -> tuple[Tensor, Tensor, Tensor]:
    """Batch-all hinge per anchor row by sorting: loss sums (float64), active
    counts and pair weights. ``p_idx``/``p_valid``: the rows' positives."""
    neg_sorted = torch.sort(torch.where(neg, d, _INF), dim=1).values
    top = d.gather(1, p_idx) + margin  # [d_ap - d_an + m]_+ > 0 iff d_an < d_ap + m
    # per positive: the number of negatives inside its window
    c = torch.searchsorted(neg_sorted, torch.where(p_valid, top, -_INF), right=False)
    top_sorted = torch.sort(torch.where(p_valid, top, _INF), dim=1).values
    # per negative: the number of positives whose window contains it
    inside = torch.searchsorted(top_sorted, d, right=True)
    cnt = torch.where(neg, p_valid.sum(dim=1)[:, None] - inside, 0)
    cf, ef = c.to(d.dtype), cnt.to(d.dtype)
    loss = (cf * torch.where(p_valid, top, 0.0)).sum(dim=1, dtype=torch.float64)
    loss -= (ef * d).sum(dim=1, dtype=torch.float64)
    # padding entries add 0 (to column 0)
    weights = ef.neg_().scatter_add_(1, p_idx, cf)
    return loss, c.sum(dim=1), weights


def _near_kink_entries(
    d: Tensor, err: Tensor, pos: Tensor, neg: Tensor, p_idx: Tensor, p_valid: Tensor, margin: float
) -> tuple[Tensor, Tensor]:
    """Entries ``(row, column)`` to redo on exact distances: every negative
    whose distance interval ``d +- err`` meets the interval of some positive's
    ``d + margin``, and all positives of the rows that have one."""
    top = d.gather(1, p_idx) + margin
    # with the rounding of the sum
    err_top = err.gather(1, p_idx) + torch.finfo(d.dtype).eps * top.abs()
    lo = torch.sort(torch.where(p_valid, top - err_top, _INF), dim=1).values
    hi = torch.sort(torch.where(p_valid, top + err_top, _INF), dim=1).values
    # positives with lo <= d_n + err, less those with hi < d_n - err
    meets = torch.searchsorted(lo, torch.where(neg, d + err, -_INF), right=True)
    meets -= torch.searchsorted(hi, torch.where(neg, d - err, _INF), right=False)
    unsure = neg & (meets > 0)
    unsure |= pos & unsure.any(dim=1, keepdim=True)
    r, c = torch.nonzero(unsure, as_tuple=True)
    return r, c


def _triplet_count(labels: Tensor) -> int:
    """The number of batch-all triplets: sum over anchors of (#positives x #negatives)."""
    _, inverse, sizes = torch.unique(labels, return_inverse=True, return_counts=True)
    own = sizes[inverse]
    return int(((own - 1) * (labels.shape[0] - own)).sum())


class BatchAllLoss(torch.autograd.Function):
    """Batch-all triplet loss; backward recomputes the pair weights per chunk.

    Pair weights: for a hinge, ``W[a,p]`` = #negatives active with (a, p)
    and ``W[a,n]`` = -#positives active with (a, n), by sorting each row
    (O(N^2 log N) time, no triplet list); for the soft loss, sums of sigmoids
    over sub-blocks of (anchor, positive, all) entries.
    """

    @staticmethod
    def forward(ctx: Any, *args: Any) -> Tensor:
        x, labels, margin, metric, soft, reduction, chunk_size = args
        space = _Space(x, None, metric)
        n = x.shape[0]
        step = _batch_all_step(n, x, chunk_size)
        per_anchor = torch.zeros(n, dtype=torch.float64, device=x.device)
        nonzero = torch.zeros((), dtype=torch.int64, device=x.device)
        for s in range(0, n, step):
            chunk = _Chunk(space, labels, s, min(n, s + step))
            loss_rows, nz, _ = chunk.soft() if soft else chunk.hinge(margin)
            per_anchor[s : chunk.e] = loss_rows
            nonzero += nz.sum()
        scale = _scale(reduction, _triplet_count(labels), int(nonzero))
        ctx.save_for_backward(x, labels)
        ctx.config = (margin, metric, soft, reduction, chunk_size, scale)
        if reduction == "none":
            return per_anchor.to(x.dtype)
        return (per_anchor.sum() * scale).to(x.dtype)

    @staticmethod
    def backward(ctx: Any, *grads: Any) -> Any:
        (g,) = grads
        x, labels = ctx.saved_tensors
        margin, metric, soft, reduction, chunk_size, scale = ctx.config
        if torch.is_grad_enabled():
            # create_graph=True: a gradient autograd can differentiate again
            from ._double_backward import batch_all_surrogate, gradient_graph

            with torch.enable_grad():
                surrogate = batch_all_surrogate(
                    x, labels, g, margin, metric, soft, reduction, chunk_size
                )
                return gradient_graph(x, surrogate), None, None, None, None, None, None
        space = _Space(x, None, metric)
        n = x.shape[0]
        grad = torch.zeros_like(x)
        step = _batch_all_step(n, x, chunk_size)
        for s in range(0, n, step):
            chunk = _Chunk(space, labels, s, min(n, s + step))
            weights = chunk.soft()[2] if soft else chunk.hinge(margin)[2]
            if reduction == "none":
                weights *= g[s : chunk.e, None].to(weights.dtype)
            else:
                weights *= (g * scale).to(weights.dtype)
            _add_pair_grad(grad, space, chunk, weights)
        return grad, None, None, None, None, None, None


def _batch_all_step(n: int, x: Tensor, chunk_size: int | None) -> int:
    # keys, distances, error bounds, sorted copies and int64 search results per entry
    return chunk_rows(n, n, 6 * x.element_size() + 20, chunk_size)


def _scale(reduction: str, count: int, nonzero: int) -> float:
    if reduction == "mean":
        return 1.0 / count if count else 0.0
    if reduction == "mean_nonzero":
        return 1.0 / nonzero if nonzero else 0.0
    return 1.0


def _add_pair_grad(grad: Tensor, space: _Space, chunk: _Chunk, w: Tensor) -> None:
    """``grad += d/dx sum_{i in chunk, j} w[i, j] d(x_i, x_j)`` (both ends)."""
    s, e = chunk.s, chunk.e
    z = space.zx
    zq = z[s:e]
    if space.metric == "cosine":
        # d = 1 - u_i.u_j: d/dx_i = -(u_j - cos_ij u_i) / |x_i|
        wc = w * (1.0 - chunk.dist)
        norms = space.nx
        grad[s:e] -= (w @ z - wc.sum(dim=1)[:, None] * zq) / norms[s:e, None]
        grad -= (w.T @ zq - wc.sum(dim=0)[:, None] * z) / norms[:, None]
        return
    if space.metric == "sqeuclidean":
        v = 2.0 * w
    else:
        d = chunk.dist
        v = torch.where(d > 0, w / torch.where(d > 0, d, 1.0), 0.0)
        # w (x_i - x_j) / d needs d to a relative accuracy the expansion's
        # absolute error bound (tol) gives only for keys well above tol: closer
        # pairs take d and the direction from their coordinate differences
        rel = 2.0**-37 if space.start == 1 else 2.0**-11
        near = (d * d <= chunk.tol[:, None] / (2.0 * rel)) & (w != 0)
        r, c = torch.nonzero(near, as_tuple=True)
        wn = w[r, c].double()
        for part, diff in space.pair_diffs(r + s, c):
            dn = torch.linalg.vector_norm(diff, dim=1)
            coef = torch.where(dn > 0, wn[part] / torch.where(dn > 0, dn, 1.0), 0.0)
            g = (coef[:, None] * diff).to(grad.dtype)
            grad.index_add_(0, r[part] + s, g)
            grad.index_add_(0, c[part], -g)
        v[r, c] = 0.0
    grad[s:e] += v.sum(dim=1)[:, None] * zq - v @ z
    grad += v.sum(dim=0)[:, None] * z - v.T @ zq
