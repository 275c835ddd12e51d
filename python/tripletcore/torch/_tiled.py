"""Tiled mining and batch-all loss in plain torch ops, for any device (the CUDA path).

Rows are processed in chunks, so no more than (chunk x N) entries exist at a
time (``CHUNK_BYTES`` bounds a chunk's working set). Choices are made on
*keys* (squared distances, or cosine distances) at up to three levels of
precision: the matrix-multiply expansion in the compute dtype (centred rows
for euclidean, unit rows for cosine), the same in float64, and float64
distances from coordinate differences. A rigorous bound on the expansion's
rounding error flags the rows whose choice a level cannot settle, and only
those rows go to the next level, so the result is the choice on the exact
distances with ties to the lowest index, as in the Rust kernels. Distances
that enter the loss are recomputed from coordinate differences
(batch-hard, semi-hard) or, for batch-all, taken from the expansion with
near-coincident euclidean pairs, and both ends of every triplet whose hinge
is within the error bound of its kink, recomputed from differences.

The batch-all loss is in ``_tiled_batch_all.py``, the backend object (the
loss entry point and the protocol methods) in ``_tiled_backend.py``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from functools import partial

import torch
from torch import Tensor

from .._errors import InputError
from ._cosine_exact import key_error, repair_rows

# Working-set budget of one chunk (its chunk x N matrices together).
CHUNK_BYTES = 256 * 2**20
# Pairs of one slice of exact (difference-based) recomputation.
_PAIR_SLICE = 1 << 16
_INF = math.inf
_EXACT = 2  # the level of difference-based float64 keys
# Partial sums of an exact squared distance, as in the Rust kernels (exact.rs).
_LANES = 16


def _sum_squares(diff: Tensor) -> Tensor:
    """``(diff ** 2).sum(-1)`` in the Rust kernels' order: term k into partial
    sum ``k % 16``, the chunks in order, then the partial sums pairwise.

    Above 2**53 the float64 sums round, and the two paths must round alike
    for exact ties and near-ties to fall alike (torch's own order differs).
    """
    sq = diff * diff
    pad = -sq.shape[-1] % _LANES
    if pad:
        sq = torch.nn.functional.pad(sq, (0, pad))  # adding 0.0 changes no sum
    sq = sq.reshape(*sq.shape[:-1], -1, _LANES)
    acc = sq[..., 0, :].clone()
    for c in range(1, sq.shape[-2]):
        acc += sq[..., c, :]
    half = _LANES // 2
    while half:
        acc = acc[..., :half] + acc[..., half : 2 * half]
        half //= 2
    out: Tensor = acc[..., 0]
    return out


def chunk_rows(rows: int, cols: int, bytes_per_entry: int, chunk_size: int | None) -> int:
    """Rows per chunk: ``chunk_size`` if given, else what fits ``CHUNK_BYTES``."""
    if chunk_size is not None:
        if chunk_size < 1:
            raise InputError(f"chunk_size must be >= 1, got {chunk_size}", "chunk_size", "range")
        return min(chunk_size, rows)
    return max(1, min(rows, CHUNK_BYTES // max(1, cols * bytes_per_entry)))


def _unit_roundoff(x: Tensor) -> float:
    if x.dtype == torch.float64:
        return 2.0**-53
    # TF32 / bfloat16 matmuls round the factors: bound them by bfloat16's unit
    reduced = torch.get_float32_matmul_precision() != "highest" or (
        x.device.type == "cuda" and torch.backends.cuda.matmul.allow_tf32
    )
    return 2.0**-8 if reduced else 2.0**-24


def _unit_rows(x: Tensor, name: str, arg: str) -> tuple[Tensor, Tensor]:
    """Rows over their norms, and the norms; ``name`` for the message, ``arg`` the argument."""
    norms = torch.linalg.vector_norm(x, dim=1)
    zero = torch.nonzero(norms == 0).flatten()
    if zero.numel():
        raise InputError(
            f"{name} row {int(zero[0])} has norm 0; the cosine distance is undefined for it",
            arg,
            "zero_norm",
        )
    return x / norms[:, None], norms


_Parts = tuple[Tensor, Tensor, Tensor, Tensor]


def _rows_count(rows: slice | Tensor, total: int) -> int:
    return rows.numel() if isinstance(rows, Tensor) else len(range(total)[rows])


class _Space:
    """Query rows ``x`` against reference rows ``ref`` (``None``: ``x``).

    ``keys(rows, level)`` are squared distances (euclidean, sqeuclidean) or
    cosine distances, monotone in the distance: level 0 from the expansion
    in the compute dtype, 1 the same in float64, 2 from float64 coordinate
    differences. ``tol(rows, level)`` bounds a level's error per row.
    Float64 inputs start at level 1.
    """

    def __init__(self, x: Tensor, ref: Tensor | None, metric: str) -> None:
        self.metric = metric
        self.x = x
        self.ref = x if ref is None else ref
        self.self_ref = ref is None
        self.rows, self.cols = x.shape[0], self.ref.shape[0]
        self.start = 1 if x.dtype == torch.float64 else 0
        parts = self._prepare(x, ref)
        self.zx, self.nx, self.zr, self.nr = parts
        self._parts: dict[int, _Parts] = {self.start: parts}
        self._units = {self.start: _unit_roundoff(x), 1: 2.0**-53}
        # error bound of one key, in units of roundoff (with the centring's rounding)
        self._c = 4 * x.shape[1] + 24
        self._nr_max: dict[int, float] = {}
        self._exact: _Parts | None = None
        # cosine: float64 keys can split exact ties by an ulp; a last level ranks them exactly
        self.last = _EXACT + 1 if metric == "cosine" else _EXACT

    def _prepare(self, x: Tensor, ref: Tensor | None) -> _Parts:
        if self.metric == "cosine":
            zx, nx = _unit_rows(x, "embeddings", "embeddings")
            if ref is None:
                return zx, nx, zx, nx
            zr, nr = _unit_rows(ref, "reference embeddings", "ref_emb")
            return zx, nx, zr, nr
        centre = (x if ref is None else ref).mean(dim=0)
        zx = x - centre
        nx = (zx * zx).sum(dim=1)
        if ref is None:
            return zx, nx, zx, nx
        zr = ref - centre
        return zx, nx, zr, (zr * zr).sum(dim=1)

    def _level(self, level: int) -> _Parts:
        if level not in self._parts:
            ref = None if self.self_ref else self.ref.double()
            self._parts[level] = self._prepare(self.x.double(), ref)
        return self._parts[level]

    def keys(self, rows: slice | Tensor, level: int) -> Tensor:
        """Keys of the query rows against every reference row."""
        if level == _EXACT:
            assert isinstance(rows, Tensor)
            return self._exact_rows(rows)
        if level > _EXACT:
            assert isinstance(rows, Tensor)
            tol = key_error(self.x.shape[1])
            return repair_rows(self._exact_rows(rows), self.x[rows], self.ref, tol)
        zx, nx, zr, nr = self._level(level)
        g = zx[rows] @ zr.T
        if self.metric == "cosine":
            return g.neg_().add_(1.0)
        return g.mul_(-2.0).add_(nx[rows][:, None]).add_(nr[None, :]).clamp_min_(0.0)

    def tol(self, rows: slice | Tensor, level: int) -> Tensor:
        """Per query row, a bound on the rounding error of its keys at ``level`` < 2."""
        if level == _EXACT:  # cosine only (the last level of the others has no tol)
            return torch.full(
                (_rows_count(rows, self.rows),),
                key_error(self.x.shape[1]),
                dtype=torch.float64,
                device=self.x.device,
            )
        c = self._c * self._units[level]
        _, nx, _, nr = self._level(level)
        if self.metric == "cosine":
            return torch.full_like(nx[rows], 2.0 * c)
        if level not in self._nr_max:
            self._nr_max[level] = float(nr.max())
        return c * (nx[rows] + self._nr_max[level])

    def _exact_parts(self) -> _Parts:
        """Float64 rows (divided by their norms for cosine) for differences."""
        if self._exact is None:
            x, ref = self.x.double(), self.ref.double()
            if self.metric == "cosine":
                nx = torch.linalg.vector_norm(x, dim=1)
                nr = nx if self.self_ref else torch.linalg.vector_norm(ref, dim=1)
                x, ref = x / nx[:, None], ref / nr[:, None]
            else:
                nx = nr = x.new_ones(0)
            self._exact = (x, nx, ref, nr)
        return self._exact

    def _finish(self, sq: Tensor) -> Tensor:
        return 0.5 * sq if self.metric == "cosine" else sq

    def _exact_rows(self, rows: Tensor) -> Tensor:
        x, _, ref, _ = self._exact_parts()
        out = torch.empty(rows.numel(), self.cols, dtype=torch.float64, device=x.device)
        width = -(-x.shape[1] // _LANES) * _LANES  # as padded by _sum_squares
        step = max(1, CHUNK_BYTES // (8 * self.cols * width))
        for s in range(0, rows.numel(), step):
            diff = x[rows[s : s + step], None, :] - ref[None, :, :]
            out[s : s + step] = self._finish(_sum_squares(diff))
        return out

    def pair_diffs(self, rows: Tensor, cols: Tensor) -> Iterator[tuple[slice, Tensor]]:
        """Float64 differences of the pairs (of unit rows for cosine), slice by slice."""
        x, _, ref, _ = self._exact_parts()
        for s in range(0, rows.numel(), _PAIR_SLICE):
            part = slice(s, s + _PAIR_SLICE)
            yield part, x[rows[part]] - ref[cols[part]]

    def pair_keys(self, rows: Tensor, cols: Tensor) -> Tensor:
        """Float64 keys of the pairs from their coordinate differences."""
        keys = [self._finish(_sum_squares(diff)) for _, diff in self.pair_diffs(rows, cols)]
        return torch.cat(keys) if keys else rows.new_zeros(0, dtype=torch.float64)

    def distances(self, keys: Tensor) -> Tensor:
        return keys.sqrt() if self.metric == "euclidean" else keys


# choose(keys, tol, rows) -> (choices, unsettled rows or None); rows=None: the whole chunk
_Chooser = Callable[[Tensor, Tensor | None, Tensor | None], tuple[Tensor, Tensor | None]]


def _settle(space: _Space, s: int, e: int, choose: _Chooser) -> Tensor:
    """Choices for query rows s:e, each row settled at the lowest sufficient level."""
    level = space.start
    out, amb = choose(space.keys(slice(s, e), level), space.tol(slice(s, e), level), None)
    rows = torch.nonzero(amb).flatten() if amb is not None else None
    while rows is not None and rows.numel():
        level += 1
        idx = rows + s
        tol = space.tol(idx, level) if level < space.last else None
        sub, amb = choose(space.keys(idx, level), tol, rows)
        out[rows] = sub
        rows = rows[amb] if amb is not None else None
    return out


def _masks(
    labels: Tensor, ref_labels: Tensor, s: int, e: int, self_offset: int | None
) -> tuple[Tensor, Tensor]:
    same = labels[s:e, None] == ref_labels[None, :]
    pos = same.clone()
    if self_offset is not None:
        r = torch.arange(e - s, device=labels.device)
        pos[r, r + (self_offset + s)] = False
    return pos, ~same


def _pick(mask: Tensor, rows: Tensor | None) -> Tensor:
    return mask if rows is None else mask[rows]


# --------------------------------------------------------------------------
# batch-hard mining
# --------------------------------------------------------------------------


def _extreme(masked: Tensor, largest: bool, tol: Tensor | None) -> tuple[Tensor, Tensor | None]:
    """Per row, the first index of the largest (smallest) key, -1 if all are
    masked out (-inf / +inf); and, given ``tol``, whether the runner-up is
    within rounding of it. Overwrites ``masked``."""
    fill = -_INF if largest else _INF
    # argmax/argmin return the first index of the extreme value
    idx = masked.argmax(dim=1) if largest else masked.argmin(dim=1)
    best = masked.gather(1, idx[:, None])[:, 0]
    has = torch.isfinite(best)
    idx = torch.where(has, idx, -1)
    if tol is None:
        return idx, None
    masked.scatter_(1, idx.clamp(min=0)[:, None], fill)
    second = masked.amax(dim=1) if largest else masked.amin(dim=1)
    w = 2.0 * tol
    near = second >= best - w if largest else second <= best + w
    return idx, has & near


def _hard_choose(
    same: Tensor,
    self_cols: Tensor | None,
    keys: Tensor,
    tol: Tensor | None,
    rows: Tensor | None,
) -> tuple[Tensor, Tensor | None]:
    same = _pick(same, rows)
    masked = torch.where(same, keys, -_INF)
    if self_cols is not None:
        cols = _pick(self_cols, rows)
        masked[torch.arange(cols.numel(), device=cols.device), cols] = -_INF
    pi, amb_p = _extreme(masked, True, tol)
    ni, amb_n = _extreme(torch.where(same, _INF, keys), False, tol)
    amb = None if amb_p is None or amb_n is None else amb_p | amb_n
    return torch.stack([pi, ni], dim=1), amb


def mine_batch_hard(
    x: Tensor,
    labels: Tensor,
    metric: str,
    ref: Tensor | None = None,
    ref_labels: Tensor | None = None,
    self_offset: int | None = 0,
    chunk_size: int | None = None,
) -> tuple[Tensor, Tensor]:
    """``(pos_idx, neg_idx)`` of the Rust ``batch_hard`` on the given device.

    ``self_offset``: query row i is reference row ``self_offset + i`` and is
    not its own positive (``None``: every same-label reference row is eligible).
    """
    space = _Space(x, ref, metric)
    rlab = labels if ref_labels is None else ref_labels
    n, m = space.rows, space.cols
    out = torch.empty(n, 2, dtype=torch.int64, device=x.device)
    step = chunk_rows(n, m, 2 * x.element_size() + 1, chunk_size)
    for s in range(0, n, step):
        e = min(n, s + step)
        same = labels[s:e, None] == rlab[None, :]
        self_cols = None
        if self_offset is not None:
            self_cols = torch.arange(s, e, device=x.device) + self_offset
        out[s:e] = _settle(space, s, e, partial(_hard_choose, same, self_cols))
    return out[:, 0], out[:, 1]


# --------------------------------------------------------------------------
# semi-hard mining
# --------------------------------------------------------------------------


def _positives(pos: Tensor) -> tuple[Tensor, Tensor]:
    """Each row's positive columns in ascending order, padded: ``(index, valid)``."""
    npos = pos.sum(dim=1)
    width = int(npos.max()) if npos.numel() else 0
    r, c = torch.nonzero(pos, as_tuple=True)  # row-major: columns ascend within a row
    first = torch.cumsum(npos, 0) - npos
    idx = torch.zeros(pos.shape[0], width, dtype=torch.int64, device=pos.device)
    idx[r, torch.arange(r.numel(), device=pos.device) - first[r]] = c
    valid = torch.arange(width, device=pos.device)[None, :] < npos[:, None]
    return idx, valid


def _window_top(t: Tensor, margin: float, metric: str) -> Tensor:
    """The key of ``d(a,p) + margin`` from the key ``t`` of ``d(a,p)``."""
    if math.isinf(margin):
        return torch.full_like(t, _INF)
    if metric == "euclidean":
        return (t.sqrt() + margin).square()
    return t + margin


def _top_unsure(c: Tensor, t: Tensor, tol: Tensor, margin: float, metric: str) -> Tensor:
    """Whether ``d(a,n) < d(a,p) + margin`` can flip within the keys' error ``tol``."""
    if math.isinf(margin):
        return torch.zeros_like(c, dtype=torch.bool)
    if metric != "euclidean":
        return (c - (t + margin)).abs() <= 2.0 * tol
    # intervals of the exact distances: [sqrt(max(k - tol, 0)), sqrt(k + tol)]
    c_lo, c_hi = (c - tol).clamp_min(0).sqrt(), (c + tol).sqrt()
    t_lo, t_hi = (t - tol).clamp_min(0).sqrt() + margin, (t + tol).sqrt() + margin
    return (c_lo <= t_hi) & (c_hi >= t_lo)


def _semi_choose(
    keys: Tensor,
    neg: Tensor,
    p_idx: Tensor,
    p_valid: Tensor,
    margin: float,
    metric: str,
    fallback: str,
    tol: Tensor | None,
) -> tuple[Tensor, Tensor | None]:
    """The negative of every (row, positive) pair, -1 for none; and, given
    ``tol``, the rows where rounding could change a choice."""
    m = keys.shape[1]
    nneg = neg.sum(dim=1)
    vals, order = torch.sort(keys.masked_fill(~neg, _INF), dim=1, stable=True)
    t = keys.gather(1, p_idx)
    k = torch.searchsorted(vals, t, right=True)  # first negative farther than p
    has = k < nneg[:, None]
    kc = k.clamp(max=m - 1)
    cval = vals.gather(1, kc)
    in_win = has & (cval < _window_top(t, margin, metric))
    last = (nneg - 1).clamp(min=0)[:, None]
    if fallback == "hardest":
        fb = order[:, :1]
    elif fallback == "easiest":
        top = vals.gather(1, last)
        fb = order.gather(1, torch.searchsorted(vals, top, right=False).clamp(max=m - 1))
    else:
        fb = torch.full_like(order[:, :1], -1)
    base = p_valid & (nneg > 0)[:, None]
    valid = base & in_win if fallback == "drop" else base
    choice = torch.where(in_win, order.gather(1, kc), fb.expand_as(kc))
    choice = torch.where(valid, choice, -1)
    if tol is None:
        return choice, None
    tl = tol[:, None]
    w = 2.0 * tl
    prev = vals.gather(1, (k - 1).clamp(min=0))
    nxt = vals.gather(1, (k + 1).clamp(max=m - 1))
    unsure = has & (cval <= t + w)  # the candidate may not be farther than p
    unsure |= (k > 0) & (prev >= t - w)  # the one before may be
    unsure |= has & (k + 1 < nneg[:, None]) & (nxt - cval <= w)  # order of the two
    unsure |= has & _top_unsure(cval, t, tl, margin, metric)
    amb = (unsure & base).any(dim=1)
    if fallback != "drop" and m > 1:
        uses_fb = (base & ~in_win).any(dim=1)
        if fallback == "hardest":
            gap = vals[:, 1] - vals[:, 0]
        else:
            top = vals.gather(1, last)[:, 0]
            gap = top - vals.gather(1, (last - 1).clamp(min=0))[:, 0]
        amb |= uses_fb & (nneg > 1) & (gap <= w[:, 0])
    return choice, amb


def _semi_rows(
    neg: Tensor,
    p_idx: Tensor,
    p_valid: Tensor,
    margin: float,
    metric: str,
    fallback: str,
    keys: Tensor,
    tol: Tensor | None,
    rows: Tensor | None,
) -> tuple[Tensor, Tensor | None]:
    return _semi_choose(
        keys,
        _pick(neg, rows),
        _pick(p_idx, rows),
        _pick(p_valid, rows),
        margin,
        metric,
        fallback,
        tol,
    )


def mine_semi_hard(
    x: Tensor,
    labels: Tensor,
    margin: float,
    metric: str,
    fallback: str,
    chunk_size: int | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """``(anchor, positive, negative)`` of the Rust ``semi_hard``, in its order."""
    space = _Space(x, None, metric)
    n = space.rows
    parts: list[tuple[Tensor, Tensor, Tensor]] = []
    step = chunk_rows(n, n, 3 * x.element_size() + 12, chunk_size)
    for s in range(0, n, step):
        e = min(n, s + step)
        pos, neg = _masks(labels, labels, s, e, 0)
        p_idx, p_valid = _positives(pos)
        if p_idx.shape[1] == 0:
            continue
        choose = partial(_semi_rows, neg, p_idx, p_valid, margin, metric, fallback)
        choice = _settle(space, s, e, choose)
        keep = choice >= 0
        anchors = torch.arange(s, e, device=x.device)[:, None].expand_as(choice)
        parts.append((anchors[keep], p_idx[keep], choice[keep]))
    if not parts:
        empty = torch.zeros(0, dtype=torch.int64, device=x.device)
        return empty, empty, empty
    a, p, q = (torch.cat(list(col)) for col in zip(*parts, strict=True))
    return a, p, q
