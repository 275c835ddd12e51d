"""Batch-hard mining on the Triton screen, settled exactly.

The screen (``_kernels.hard_screen_kernel``) sees the same centred (cosine:
unit) rows, norms and error bound as the tiled path's first level
(``_tiled._Space``); the rows it flags are settled on float64 keys from
coordinate differences in the Rust kernels' summation order, by
``_kernels.hard_settle_kernel`` (which does no work for unflagged rows), so
the choices are those of the exact distances with ties to the lowest index,
as the Rust kernels make them.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._tiled import _hard_choose, _Space, chunk_rows
from . import _kernels as k


def _screen(
    space: _Space, labels: Tensor, rlab: Tensor, self_offset: int | None
) -> tuple[Tensor, Tensor, Tensor]:
    """Screened positive and negative (int64) and the flag (int8) of rows to settle."""
    zx, nx, zr, nr = space.zx, space.nx, space.zr, space.nr
    n, m = space.rows, space.cols
    tol = _tolerance(space)
    zx, zr = zx.contiguous(), zr.contiguous()
    pos = torch.empty(n, dtype=torch.int64, device=zx.device)
    neg = torch.empty_like(pos)
    flag = torch.empty(n, dtype=torch.int8, device=zx.device)
    k.hard_screen_kernel[(_cdiv(n, k.BLOCK_M),)](
        zx, zr, nx.contiguous(), nr.contiguous(), tol.to(nx.dtype).contiguous(),
        labels.contiguous(), rlab.contiguous(), pos, neg, flag,
        n, m, zx.shape[1], zx.stride(0), zr.stride(0),
        0 if self_offset is None else self_offset,
        HAS_SELF=self_offset is not None, COSINE=space.metric == "cosine",
        BM=k.BLOCK_M, BN=k.BLOCK_N, BD=k.BLOCK_D,
    )  # fmt: skip
    return pos, neg, flag


def _tolerance(space: _Space) -> Tensor:
    """``space.tol`` of every row at the first level, kept on the device
    (``_Space.tol`` reads the largest reference norm back to the host)."""
    c = space._c * space._units[space.start]
    if space.metric == "cosine":
        return torch.full_like(space.nx, 2.0 * c)
    return c * (space.nx + space.nr.max())


def _settle(
    space: _Space,
    labels: Tensor,
    rlab: Tensor,
    self_offset: int | None,
    pos: Tensor,
    neg: Tensor,
    flag: Tensor,
) -> None:
    """Overwrite the flagged rows' choices with the exact ones (in place, no host sync)."""
    if space.metric == "cosine":
        x, _, ref, _ = space._exact_parts()  # float64 unit rows, as the Rust kernels form them
    else:
        x, ref = space.x, space.ref  # widened to float64 in the kernel (exactly)
    x, ref = x.contiguous(), ref.contiguous()
    k.hard_settle_kernel[(space.rows,)](
        x, ref, labels.contiguous(), rlab.contiguous(), flag, pos, neg,
        space.cols, x.shape[1], x.stride(0), ref.stride(0),
        0 if self_offset is None else self_offset,
        HAS_SELF=self_offset is not None, BN=k.SETTLE_BLOCK_N, LN=k.LANES,
        enable_fp_fusion=False,
    )  # fmt: skip


def _cdiv(a: int, b: int) -> int:
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
    Two kernel launches (screen, settle) after the row preparation; no host
    synchronisation.
    """
    space = _Space(x, ref, metric)
    rlab = labels if ref_labels is None else ref_labels
    pos, neg, flag = _screen(space, labels, rlab, self_offset)
    if metric == "cosine":
        _settle_cosine(space, labels, rlab, self_offset, pos, neg, flag)
    else:
        _settle(space, labels, rlab, self_offset, pos, neg, flag)
    return pos, neg


def _settle_cosine(
    space: _Space,
    labels: Tensor,
    rlab: Tensor,
    self_offset: int | None,
    pos: Tensor,
    neg: Tensor,
    flag: Tensor,
) -> None:
    """The flagged rows' choices on the tiled path's exact cosine keys.

    Mathematically equal cosine distances can differ by an ulp in float64,
    so ties are ordered by exact rational arithmetic (``_cosine_exact``), as
    the Rust kernels order them. Reading the flagged rows is a host
    synchronisation (cosine only)."""
    rows = torch.nonzero(flag).flatten()
    step = chunk_rows(max(1, rows.numel()), space.cols, 8 + 1, None)
    for s in range(0, rows.numel(), step):
        part = rows[s : s + step]
        same = labels[part][:, None] == rlab[None, :]
        self_cols = None if self_offset is None else part + self_offset
        choice, _ = _hard_choose(same, self_cols, space.keys(part, space.last), None, None)
        pos[part], neg[part] = choice[:, 0], choice[:, 1]
