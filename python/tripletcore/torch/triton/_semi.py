"""Semi-hard mining on the Triton screen, settled exactly (``_semi_kernels``).

Two host synchronisations, both for sizes: the largest class (the width of
the positive table) and the number of mined triplets (the output length).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .._tiled import _positives, _semi_choose, _Space, chunk_rows
from . import _semi_kernels as k
from ._mining import _cdiv, _tolerance

_METRIC = {"euclidean": 0, "sqeuclidean": 1, "cosine": 2}
_FALLBACK = {"hardest": k.HARDEST, "easiest": k.EASIEST, "drop": k.DROP}


def positive_table(labels: Tensor) -> Tensor:
    """Per row, the other rows of its class in ascending order, padded with -1: (N, P)."""
    n = labels.shape[0]
    order = torch.argsort(labels, stable=True)
    ranked = labels[order]
    start = torch.searchsorted(ranked, labels, right=False)
    count = torch.searchsorted(ranked, labels, right=True) - start - 1
    width = int(count.max()) if n else 0
    where = torch.empty_like(order)
    where[order] = torch.arange(n, device=labels.device)
    slot = torch.arange(width, device=labels.device)[None, :]
    # skip the row itself: slots at or past its own rank move one along
    src = start[:, None] + slot + (slot >= (where - start)[:, None]).to(start.dtype)
    members = order[src.clamp(max=max(n - 1, 0))]
    return torch.where(slot < count[:, None], members, -1)


def mine_semi_hard(
    x: Tensor, labels: Tensor, margin: float, metric: str, fallback: str
) -> tuple[Tensor, Tensor, Tensor]:
    """``(anchor, positive, negative)`` of the Rust ``semi_hard``, in its order."""
    space = _Space(x, None, metric)
    pidx = positive_table(labels)
    n, width = pidx.shape
    empty = torch.zeros(0, dtype=torch.int64, device=x.device)
    if width == 0:
        return empty, empty, empty
    labels = labels.contiguous()
    out = torch.empty_like(pidx)
    flag = torch.empty(n, dtype=torch.int8, device=x.device)
    consts = {"METRIC": _METRIC[metric]}
    choice = (_FALLBACK[fallback], int(math.isinf(margin)))
    z, nz = space.zx.contiguous(), space.nx.contiguous()
    m = torch.full((1,), 0.0 if math.isinf(margin) else margin, dtype=z.dtype, device=z.device)
    bm, bn, bd, pc = k.SCREEN_BLOCKS["fp64" if z.dtype == torch.float64 else "fp32"]
    k.semi_screen_kernel[(_cdiv(n, bm),)](
        z, nz, _tolerance(space).to(z.dtype).contiguous(), labels, pidx, out, flag, m,
        n, z.shape[1], z.stride(0), width, *choice,
        **consts, REL=2.0**-20 if z.dtype == torch.float32 else 2.0**-49,
        BM=bm, BN=bn, BD=bd, PC=pc,
    )  # fmt: skip
    if metric == "cosine":
        _settle_cosine(space, labels, margin, fallback, out, flag)
    else:
        xe = x.contiguous()
        k.semi_settle_kernel[(n,)](
            xe, labels, pidx, out, flag, m.double(), n, xe.shape[1], xe.stride(0), width,
            *choice, **consts, BN=k.SETTLE_BLOCK_N, PC=k.SETTLE_SLOTS, LN=k.LANES,
            enable_fp_fusion=False,
        )  # fmt: skip
    rows, slots = torch.nonzero(out >= 0, as_tuple=True)  # by anchor, then positive
    return rows, pidx[rows, slots], out[rows, slots]


def _settle_cosine(
    space: _Space, labels: Tensor, margin: float, fallback: str, out: Tensor, flag: Tensor
) -> None:
    """The flagged anchors' choices on the tiled path's exact cosine keys
    (ties ordered by exact rational arithmetic, as the Rust kernels order
    them; see ``_mining._settle_cosine``). A host synchronisation."""
    rows = torch.nonzero(flag).flatten()
    step = chunk_rows(max(1, rows.numel()), space.cols, 3 * 8 + 12, None)
    for s in range(0, rows.numel(), step):
        part = rows[s : s + step]
        same = labels[part][:, None] == labels[None, :]
        pos = same.clone()
        pos[torch.arange(part.numel(), device=part.device), part] = False
        p_idx, p_valid = _positives(pos)
        keys = space.keys(part, space.last)
        got, _ = _semi_choose(keys, ~same, p_idx, p_valid, margin, "cosine", fallback, None)
        out[part] = -1
        out[part, : got.shape[1]] = got
