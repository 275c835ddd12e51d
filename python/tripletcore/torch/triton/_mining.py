"""Batch-hard mining on the Triton screen, settled exactly.

The screen (``_kernels.hard_screen_kernel``) sees the same centred (cosine:
unit) rows, norms and error bound as the tiled path's first level
(``_tiled._Space``); the rows it flags are settled on float64 keys from
coordinate differences (``_Space.keys(rows, 2)``, the Rust kernels'
summation order), so the choices are those of the exact distances with ties
to the lowest index, as the Rust kernels make them.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._tiled import _EXACT, _hard_choose, _Space
from . import _kernels as k


def _screen(space: _Space, labels: Tensor, rlab: Tensor, self_offset: int | None) -> Tensor:
    """``(N, 3)`` int64: screened positive, negative, and the flag of rows to settle."""
    zx, nx, zr, nr = space.zx, space.nx, space.zr, space.nr
    n, m = space.rows, space.cols
    level = space.start
    tol = space.tol(slice(0, n), level)
    zx, zr = zx.contiguous(), zr.contiguous()
    pos = torch.empty(n, dtype=torch.int64, device=zx.device)
    neg = torch.empty_like(pos)
    amb = torch.empty(n, dtype=torch.int8, device=zx.device)
    grid = (triton_cdiv(n, k.BLOCK_M),)
    k.hard_screen_kernel[grid](
        zx,
        zr,
        nx.contiguous(),
        nr.contiguous(),
        tol.to(nx.dtype).contiguous(),
        labels.contiguous(),
        rlab.contiguous(),
        pos,
        neg,
        amb,
        n,
        m,
        zx.shape[1],
        zx.stride(0),
        zr.stride(0),
        0 if self_offset is None else self_offset,
        HAS_SELF=self_offset is not None,
        COSINE=space.metric == "cosine",
        BM=k.BLOCK_M,
        BN=k.BLOCK_N,
        BD=k.BLOCK_D,
    )
    return torch.stack([pos, neg, amb.to(torch.int64)], dim=1)


def triton_cdiv(a: int, b: int) -> int:
    return -(-a // b)


def mine_batch_hard(
    x: Tensor,
    labels: Tensor,
    metric: str,
    ref: Tensor | None = None,
    ref_labels: Tensor | None = None,
    self_offset: int | None = 0,
) -> tuple[Tensor, Tensor]:
    """``(pos_idx, neg_idx)`` of the Rust ``batch_hard`` (see ``_tiled.mine_batch_hard``).

    ``self_offset``: query row i is reference row ``self_offset + i`` and is
    not its own positive (``None``: every same-label reference row is eligible).
    """
    space = _Space(x, ref, metric)
    rlab = labels if ref_labels is None else ref_labels
    out = _screen(space, labels, rlab, self_offset)
    rows = torch.nonzero(out[:, 2]).flatten()
    if rows.numel():
        same = labels[rows, None] == rlab[None, :]
        self_cols = None if self_offset is None else rows + self_offset
        keys = space.keys(rows, _EXACT)
        settled, _ = _hard_choose(same, self_cols, keys, None, None)
        out[rows, :2] = settled
    return out[:, 0].contiguous(), out[:, 1].contiguous()
