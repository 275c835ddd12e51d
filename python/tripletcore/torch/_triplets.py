"""The loss of given (anchor, positive, negative) index triplets, in plain torch ops.

Distances are computed from coordinate differences of the gathered rows
(O(T d) work and memory for T triplets), so autograd differentiates them
exactly and the values carry no ``|a|^2 + |b|^2 - 2ab`` cancellation.
"""

from __future__ import annotations

import torch
from torch import Tensor


def unit_rows(x: Tensor) -> Tensor:
    """Rows divided by their norm (differentiable; callers reject zero rows)."""
    norms: Tensor = torch.linalg.vector_norm(x, dim=1, keepdim=True)
    return x / norms


def pair_distance(u: Tensor, v: Tensor, metric: str) -> Tensor:
    """Row-wise distances; for ``"cosine"`` ``u`` and ``v`` must be unit rows.

    The euclidean distance has gradient 0 where it is 0 (as the Rust kernels):
    the double ``where`` keeps sqrt's infinite slope out of the graph.
    """
    diff = u - v
    sq = (diff * diff).sum(dim=1)
    if metric == "sqeuclidean":
        return sq
    if metric == "cosine":
        # 1 - u.v = |u - v|^2 / 2 for unit rows, accurate near 0
        return 0.5 * sq
    nonzero = sq > 0
    return torch.where(nonzero, torch.sqrt(torch.where(nonzero, sq, torch.ones_like(sq))), 0.0)


def hinge_or_soft(
    d_ap: Tensor, d_an: Tensor, margin: float, soft: bool, smooth: bool = False
) -> Tensor:
    """Per-triplet loss: ``[d_ap - d_an + margin]_+``, ``log(1 + exp(d_ap - d_an))``
    (``soft``) or PML's ``smooth_loss`` ``log(1 + exp(d_ap - d_an + margin))``."""
    if smooth:
        v = d_ap - d_an + margin
        return torch.logaddexp(v, torch.zeros_like(v))
    if soft:
        v = d_ap - d_an
        return torch.logaddexp(v, torch.zeros_like(v))
    return torch.relu(d_ap - d_an + margin)


def reduce_losses(losses: Tensor, anchors: Tensor, rows: int, reduction: str) -> Tensor:
    """Reduce per-triplet losses; ``"none"`` sums them per anchor (length ``rows``).

    The divisors (triplet count, non-zero count) are held fixed, as in the
    NumPy API; an empty set gives 0 (still connected to the graph).
    """
    if reduction == "none":
        out = torch.zeros(rows, dtype=losses.dtype, device=losses.device)
        return out.index_add(0, anchors, losses)
    total = losses.sum()
    if reduction == "sum":
        return total
    if reduction == "mean":
        return total / max(losses.shape[0], 1)
    nonzero = int((losses > 0).sum())
    return total / max(nonzero, 1)


def triplet_loss(
    x: Tensor,
    ref: Tensor | None,
    anchor: Tensor,
    positive: Tensor,
    negative: Tensor,
    margin: float,
    metric: str,
    soft: bool,
    reduction: str,
    smooth: bool = False,
) -> Tensor:
    """Loss of the triplets ``(x[anchor], ref[positive], ref[negative])``.

    ``ref=None`` means ``ref = x``. Differentiable in ``x`` (and ``ref``).
    ``smooth``: PML's ``smooth_loss`` (see :func:`hinge_or_soft`).
    """
    if metric == "cosine":
        x = unit_rows(x)
        ref = None if ref is None else unit_rows(ref)
    r = x if ref is None else ref
    xa = x.index_select(0, anchor)
    d_ap = pair_distance(xa, r.index_select(0, positive), metric)
    d_an = pair_distance(xa, r.index_select(0, negative), metric)
    losses = hinge_or_soft(d_ap, d_an, margin, soft, smooth)
    return reduce_losses(losses, anchor, x.shape[0], reduction)


def hard_triplets(pos_idx: Tensor, neg_idx: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Batch-hard pairs as triplets, dropping anchors without positive or negative."""
    anchor = torch.nonzero((pos_idx >= 0) & (neg_idx >= 0)).flatten()
    return anchor, pos_idx[anchor], neg_idx[anchor]
