"""Differentiable gradients of the custom-autograd losses (double backward).

The Rust loss and the batch-all loss compute their gradient outside autograd
(in the kernel, or from pair weights). When the caller asks for a gradient it
can differentiate again (``torch.autograd.grad(..., create_graph=True)``, as a
gradient penalty does), their backward comes here instead: the loss is
written again in torch ops on the triplets of the forward pass (held fixed,
as the first gradient holds them) and autograd differentiates that
expression. The gradient is the same, to rounding, and connected to the
graph, so second derivatives are exact almost everywhere.

Memory: the graph keeps O(T d) for the T triplets of batch-hard and
semi-hard, O(P d) for the P pairs of non-zero weight of the batch-all hinge,
and O(N^2 d) for the soft batch-all loss.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._tiled import _Space
from ._tiled_batch_all import _batch_all_step, _Chunk, _scale, _triplet_count
from ._triplets import pair_distance, unit_rows

# Entries (rows x columns x features) of one block of the soft loss's differences.
_SOFT_BLOCK = 1 << 22


def gradient_graph(x: Tensor, surrogate: Tensor) -> Tensor:
    """``d surrogate / d x`` with its own graph (``create_graph=True``)."""
    (grad,) = torch.autograd.grad(surrogate, x, create_graph=True, allow_unused=True)
    return torch.zeros_like(x) if grad is None else grad


def batch_all_surrogate(
    x: Tensor,
    labels: Tensor,
    g: Tensor,
    margin: float,
    metric: str,
    soft: bool,
    reduction: str,
    chunk_size: int | None,
) -> Tensor:
    """A scalar, in torch ops on ``x``, whose gradient is the batch-all loss's
    gradient weighted by ``g`` (the incoming gradient).

    The hinge's pair weights (which triplets are active, settled on exact
    distances as in the forward pass) are held fixed: ``sum w_ij d(x_i, x_j)``
    has the loss's first and second derivatives. The soft loss is written out.
    """
    xd = x.detach()
    space = _Space(xd, None, metric)
    n = x.shape[0]
    step = _batch_all_step(n, xd, chunk_size)
    chunks = []
    nonzero = 0
    with torch.no_grad():
        for s in range(0, n, step):
            chunk = _Chunk(space, labels, s, min(n, s + step))
            _, nz, weights = chunk.soft() if soft else chunk.hinge(margin)
            nonzero += int(nz.sum())
            chunks.append((chunk, weights))
    scale = _scale(reduction, _triplet_count(labels), nonzero)
    z = unit_rows(x) if metric == "cosine" else x
    total = x.new_zeros(())
    for chunk, weights in chunks:
        rows = chunk.e - chunk.s
        coef = g[chunk.s : chunk.e] if reduction == "none" else (g * scale).expand(rows)
        if soft:
            total = total + (coef * _soft_rows(z, chunk, metric)).sum()
        else:
            r, c = torch.nonzero(weights, as_tuple=True)
            d = pair_distance(z[r + chunk.s], z[c], metric)
            total = total + (coef[r] * weights[r, c].to(d.dtype) * d).sum()
    return total


def _soft_rows(z: Tensor, chunk: _Chunk, metric: str) -> Tensor:
    """Per anchor of the chunk, ``sum softplus(d_ap - d_an)`` over its triplets."""
    n, dim = z.shape
    out = []
    step = max(1, _SOFT_BLOCK // (n * dim))
    for s in range(chunk.s, chunk.e, step):
        e = min(chunk.e, s + step)
        diff = (z[s:e, None, :] - z[None, :, :]).reshape(-1, dim)
        d = pair_distance(diff, torch.zeros_like(diff), metric).reshape(e - s, n)
        p_idx = chunk.p_idx[s - chunk.s : e - chunk.s]
        valid = chunk.p_valid[s - chunk.s : e - chunk.s, :, None]
        valid = valid & chunk.neg[s - chunk.s : e - chunk.s, None, :]
        v = d.gather(1, p_idx)[:, :, None] - d[:, None, :]
        terms = torch.logaddexp(v, torch.zeros_like(v))
        out.append(torch.where(valid, terms, 0.0).sum(dim=(1, 2)))
    return torch.cat(out)
