"""The batch-hard triplet loss on Triton kernels: one forward launch over the
anchors (distances from coordinate differences, hinge or soft margin, the
slope), one backward launch scattering the per-triplet gradients (atomic
adds into an N x d buffer; nothing of size B x N). The reduction is plain
torch on the per-anchor losses, with divisors counted on the device (no
host synchronisation)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .._triplets import hinge_or_soft, pair_distance, unit_rows
from . import _kernels as k

_CODES = {"euclidean": k.EUCLIDEAN, "sqeuclidean": k.SQEUCLIDEAN, "cosine": k.COSINE_UNIT}
BLOCK_T = 16  # anchors per program
BLOCK_D = 32


def _grid(n: int) -> tuple[int]:
    return (-(-n // BLOCK_T),)


class HardTripletLoss(torch.autograd.Function):
    """Per-anchor losses ``(N,)`` of the triplets ``(i, pos[i], neg[i])`` of rows ``z``
    (0 where ``pos`` or ``neg`` is -1)."""

    @staticmethod
    def forward(ctx: Any, *args: Any) -> Tensor:
        z, pos, neg, margin, metric, soft = args
        z, pos, neg = z.contiguous(), pos.contiguous(), neg.contiguous()
        n, d = z.shape
        loss = torch.empty(n, dtype=z.dtype, device=z.device)
        slope, d_ap, d_an = torch.empty_like(loss), torch.empty_like(loss), torch.empty_like(loss)
        k.hard_loss_fwd_kernel[_grid(n)](
            z, pos, neg, loss, slope, d_ap, d_an, n, d, z.stride(0),
            torch.full((1,), float(margin), dtype=z.dtype, device=z.device),
            METRIC=_CODES[metric], SOFT=bool(soft), BT=BLOCK_T, BD=BLOCK_D,
        )  # fmt: skip
        ctx.save_for_backward(z, pos, neg, slope, d_ap, d_an)
        ctx.metric, ctx.margin, ctx.soft = metric, margin, soft
        return loss

    @staticmethod
    def backward(ctx: Any, *grads: Any) -> Any:
        (g,) = grads
        z, pos, neg, slope, d_ap, d_an = ctx.saved_tensors
        if torch.is_grad_enabled():
            # create_graph=True: the same gradient from torch ops on the
            # mined triplets, which autograd can differentiate again
            from .._double_backward import gradient_graph

            with torch.enable_grad():
                surrogate = _per_anchor_surrogate(z, pos, neg, g, ctx.margin, ctx.metric, ctx.soft)
                return gradient_graph(z, surrogate), None, None, None, None, None
        n, d = z.shape
        gz = torch.zeros_like(z)
        k.hard_loss_bwd_kernel[_grid(n)](
            z, pos, neg, slope, d_ap, d_an, g.contiguous(), gz, n, d, z.stride(0),
            METRIC=_CODES[ctx.metric], BT=BLOCK_T, BD=BLOCK_D,
        )  # fmt: skip
        return gz, None, None, None, None, None


def _per_anchor_surrogate(
    z: Tensor, pos: Tensor, neg: Tensor, g: Tensor, margin: float, metric: str, soft: bool
) -> Tensor:
    """``sum_a g[a] loss_a`` in torch ops on ``z`` (rows as the kernels see them)."""
    a = torch.nonzero((pos >= 0) & (neg >= 0)).flatten()
    za = z.index_select(0, a)
    d_ap = pair_distance(za, z.index_select(0, pos[a]), metric)
    d_an = pair_distance(za, z.index_select(0, neg[a]), metric)
    return (g.index_select(0, a) * hinge_or_soft(d_ap, d_an, margin, soft)).sum()


def hard_loss(
    x: Tensor, pos: Tensor, neg: Tensor, margin: float, metric: str, soft: bool, reduction: str
) -> Tensor:
    """The reduced batch-hard loss of ``x`` (differentiable) for mined ``pos``/``neg``.

    Same semantics as ``_triplets.triplet_loss`` on ``hard_triplets(pos, neg)``:
    the mean over the anchors that have both, the non-zero mean over the
    non-zero losses, per-anchor sums for ``"none"``.
    """
    z = unit_rows(x) if metric == "cosine" else x
    losses: Tensor = HardTripletLoss.apply(z, pos, neg, margin, metric, soft)
    if reduction == "none":
        return losses
    total = losses.sum()
    if reduction == "sum":
        return total
    if reduction == "mean":
        count = ((pos >= 0) & (neg >= 0)).sum()
    else:
        count = (losses.detach() > 0).sum()
    return total / count.clamp(min=1).to(total.dtype)
