"""The batch-all triplet loss on Triton kernels (``_batch_all_kernels``).

Forward: the positive table (one host synchronisation, for its width), the
slot keys, the screened loss per anchor, and the exact loss of the flagged
anchors: four launches plus the reduction. Backward: the screened and the
exact gradients (two launches) into N x d buffers. Reductions divide by
counts formed on the device.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .._tiled import _Space
from . import _batch_all_kernels as k
from ._mining import _cdiv, _tolerance
from ._semi import positive_table

_METRIC = {"euclidean": 0, "sqeuclidean": 1, "cosine": 2}


class _Parts:
    """What both passes need: the expansion rows, the table, the flags."""

    def __init__(self, x: Tensor, labels: Tensor, metric: str) -> None:
        self.space = _Space(x, None, metric)
        self.metric = _METRIC[metric]
        self.labels = labels.contiguous()
        self.pidx = positive_table(labels)
        self.z = self.space.zx.contiguous()
        self.nz = self.space.nx.contiguous()
        if metric == "cosine":
            self.exact = self.space._exact_parts()[0].contiguous()  # float64 unit rows
        else:
            self.exact = x.contiguous()
        fp = "fp64" if x.dtype == torch.float64 else "fp32"
        self.blocks = k.BLOCKS[fp]
        self.scatter = k.SCATTER[fp]
        self.eps = float(torch.finfo(x.dtype).eps)
        n, width = self.pidx.shape
        bm, _, bd, pc = self.blocks
        self.tk = torch.zeros(n, width, dtype=x.dtype, device=x.device)
        if width:
            k.ba_slot_keys_kernel[(_cdiv(n, bm),)](
                self.z, self.nz, self.pidx, self.tk, n, self.z.shape[1], self.z.stride(0),
                width, METRIC=self.metric, BM=bm, BD=bd, PC=pc,
            )  # fmt: skip

    def margin(self, margin: float, dtype: torch.dtype) -> Tensor:
        return torch.full((1,), margin, dtype=dtype, device=self.z.device)


def _forward(parts: _Parts, margin: float, soft: bool) -> tuple[Tensor, Tensor, Tensor]:
    """Per-anchor loss sums (float64), active-term counts (int64) and flags (int8)."""
    n, width = parts.pidx.shape
    z = parts.z
    loss = torch.zeros(n, dtype=torch.float64, device=z.device)
    cnt = torch.zeros(n, dtype=torch.int64, device=z.device)
    flag = torch.zeros(n, dtype=torch.int8, device=z.device)
    if width == 0:
        return loss, cnt, flag
    bm, bn, bd, pc = parts.blocks
    k.ba_fwd_kernel[(_cdiv(n, bm),)](
        z, parts.nz, _tolerance(parts.space).to(z.dtype).contiguous(), parts.labels, parts.pidx,
        parts.tk, loss, cnt, flag, parts.margin(margin, z.dtype), n, z.shape[1], z.stride(0),
        width, METRIC=parts.metric, SOFT=soft, EPS=parts.eps, BM=bm, BN=bn, BD=bd, PC=pc,
    )  # fmt: skip
    xe = parts.exact
    k.ba_exact_fwd_kernel[(n,)](
        xe, parts.labels, parts.pidx, flag, loss, cnt, parts.margin(margin, torch.float64),
        n, xe.shape[1], xe.stride(0), width, METRIC=parts.metric, SOFT=soft,
        BN=k.EXACT_BLOCK_N, PC=k.EXACT_SLOTS, LN=k.LANES, enable_fp_fusion=False,
    )  # fmt: skip
    return loss, cnt, flag


def _backward(parts: _Parts, flag: Tensor, gs: Tensor, margin: float, soft: bool) -> Tensor:
    """The gradient with respect to the expansion rows ``parts.z`` (unit rows for cosine)."""
    n, width = parts.pidx.shape
    z = parts.z
    gz = torch.zeros_like(z)
    if width == 0:
        return gz
    bm, bn, bd, pc = parts.blocks
    wap = torch.zeros(n, width, dtype=z.dtype, device=z.device)
    k.ba_bwd_kernel[(_cdiv(n, bm),)](
        z, parts.nz, parts.labels, parts.pidx, parts.tk, flag, gs.to(z.dtype).contiguous(), wap,
        gz, parts.margin(margin, z.dtype), n, z.shape[1], z.stride(0), width,
        METRIC=parts.metric, SOFT=soft, BM=bm, BN=bn, BD=bd, PC=pc, SD=parts.scatter,
    )  # fmt: skip
    xe = parts.exact
    g64 = torch.zeros(xe.shape, dtype=torch.float64, device=z.device)
    k.ba_exact_bwd_kernel[(n,)](
        xe, parts.labels, parts.pidx, flag, gs.double().contiguous(), g64,
        parts.margin(margin, torch.float64), n, xe.shape[1], xe.stride(0), width,
        METRIC=parts.metric, SOFT=soft, BN=k.EXACT_BLOCK_N, PC=k.EXACT_SLOTS, LN=k.LANES,
        enable_fp_fusion=False,
    )  # fmt: skip
    return gz + g64.to(gz.dtype)


def _divisor(parts: _Parts, cnt: Tensor, reduction: str) -> Tensor:
    """The reduction's divisor on the device (at least 1): the number of
    (anchor, positive, negative) triplets, or of active ones."""
    if reduction == "mean":
        npos = (parts.pidx >= 0).sum(dim=1)
        total = (npos * (parts.pidx.shape[0] - 1 - npos)).sum()
    elif reduction == "mean_nonzero":
        total = cnt.sum()
    else:
        total = torch.ones((), dtype=torch.int64, device=cnt.device)
    return total.clamp(min=1).to(torch.float64)


class BatchAllTriton(torch.autograd.Function):
    """The batch-all loss of ``x`` (reduced, or per-anchor sums for ``"none"``)."""

    @staticmethod
    def forward(ctx: Any, *args: Any) -> Tensor:
        x, labels, margin, metric, soft, reduction = args
        parts = _Parts(x, labels, metric)
        loss, cnt, flag = _forward(parts, margin, soft)
        divisor = _divisor(parts, cnt, reduction)
        ctx.parts, ctx.flag, ctx.divisor = parts, flag, divisor
        ctx.save_for_backward(x, labels)
        ctx.config = (margin, metric, soft, reduction)
        if reduction == "none":
            return loss.to(x.dtype)
        return (loss.sum() / divisor).to(x.dtype)

    @staticmethod
    def backward(ctx: Any, *grads: Any) -> Any:
        (g,) = grads
        margin, metric, soft, reduction = ctx.config
        if torch.is_grad_enabled():
            # create_graph=True: a gradient autograd can differentiate again
            # (the loss in torch ops, its active terms settled as here)
            from .._double_backward import batch_all_surrogate, gradient_graph

            x, labels = ctx.saved_tensors
            with torch.enable_grad():
                surrogate = batch_all_surrogate(x, labels, g, margin, metric, soft, reduction, None)
                return gradient_graph(x, surrogate), None, None, None, None, None
        parts: _Parts = ctx.parts
        n = parts.pidx.shape[0]
        if reduction == "none":
            gs = g.to(torch.float64)
        else:
            gs = (g.to(torch.float64) / ctx.divisor).expand(n)
        gz = _backward(parts, ctx.flag, gs, margin, soft)
        if metric == "cosine":
            # through z = x / |x|: remove the radial part, divide by the norm
            u, norms = parts.z, parts.nz
            gz = (gz - (gz * u).sum(dim=1, keepdim=True) * u) / norms[:, None]
        return gz, None, None, None, None, None


def batch_all_loss(
    x: Tensor, labels: Tensor, margin: float, metric: str, soft: bool, reduction: str
) -> Tensor:
    """The batch-all triplet loss of ``x`` (differentiable), as the tiled path's."""
    out: Tensor = BatchAllTriton.apply(x, labels, margin, metric, soft, reduction)
    return out
