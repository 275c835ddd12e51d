# mypy: ignore-errors
# (Triton ships no type information, and kernel parameters are typed by @triton.jit)
"""Triton kernels of the triton backend (imported only when Triton is).

``hard_screen_kernel`` is the batch-hard screen: one program per block of
query rows streams the reference rows in tiles, forms the tile's keys from
the expansion (``tl.dot`` in IEEE FP32, or FP64 for float64 input) and keeps,
per row, the running extreme key, its first index and the runner-up key, for
the farthest positive and the nearest negative. Nothing of size N x N is
written. A row is flagged when the runner-up lies within twice the key error
bound of the extreme: only then can rounding change the choice, and the
caller settles that row on exact float64 distances.

TF32 is not used: its unit roundoff (2**-11) makes the bound at d = 128 about
a quarter of the squared norms, which would flag nearly every row.
"""

from __future__ import annotations

import triton
import triton.language as tl

# Tile sizes (tl.dot needs every dimension >= 16).
BLOCK_M = 32
BLOCK_N = 32
BLOCK_D = 16


@triton.jit
def _tile_max(v, cols, big):
    """Per row of ``v``: the largest value, its first column, and the runner-up
    (the largest value at any other column)."""
    best = tl.max(v, axis=1)
    first = tl.min(tl.where(v == best[:, None], cols[None, :], big), axis=1)
    second = tl.max(tl.where(cols[None, :] == first[:, None], -float("inf"), v), axis=1)
    return best, first, second


@triton.jit
def _merge(best, idx, second, t_best, t_idx, t_second):
    """Fold one tile's (best, first index, runner-up) into the running ones;
    the earlier tile keeps a tie (lowest index)."""
    second = tl.maximum(tl.maximum(second, t_second), tl.minimum(best, t_best))
    idx = tl.where(t_best > best, t_idx, idx)
    best = tl.maximum(best, t_best)
    return best, idx, second


@triton.jit
def hard_screen_kernel(
    zx_ptr,
    zr_ptr,
    nx_ptr,
    nr_ptr,
    tol_ptr,
    lab_ptr,
    rlab_ptr,
    pos_ptr,
    neg_ptr,
    amb_ptr,
    n_rows,
    n_cols,
    dim,
    stride_x,
    stride_r,
    self_offset,
    HAS_SELF: tl.constexpr,
    COSINE: tl.constexpr,
    BM: tl.constexpr,
    BN: tl.constexpr,
    BD: tl.constexpr,
):
    pid = tl.program_id(0)
    rows = pid * BM + tl.arange(0, BM)
    row_ok = rows < n_rows
    rows64 = rows.to(tl.int64)
    lab = tl.load(lab_ptr + rows, mask=row_ok, other=0)
    nx = tl.load(nx_ptr + rows, mask=row_ok, other=0.0)
    dk = tl.arange(0, BD)
    inf = float("inf")
    big = n_cols + BN
    p_best = tl.full([BM], -inf, nx.dtype)
    p_idx = tl.zeros([BM], tl.int32)
    p_second = p_best
    n_best = p_best
    n_idx = p_idx
    n_second = p_best
    for c0 in range(0, n_cols, BN):
        cols = c0 + tl.arange(0, BN)
        col_ok = cols < n_cols
        cols64 = cols.to(tl.int64)
        acc = tl.zeros([BM, BN], nx.dtype)
        for k0 in range(0, dim, BD):
            kk = k0 + dk
            k_ok = kk < dim
            a = tl.load(
                zx_ptr + rows64[:, None] * stride_x + kk[None, :],
                mask=row_ok[:, None] & k_ok[None, :],
                other=0.0,
            )
            b = tl.load(
                zr_ptr + cols64[None, :] * stride_r + kk[:, None],
                mask=col_ok[None, :] & k_ok[:, None],
                other=0.0,
            )
            acc = tl.dot(a, b, acc, input_precision="ieee")
        if COSINE:
            keys = 1.0 - acc
        else:
            nr = tl.load(nr_ptr + cols, mask=col_ok, other=0.0)
            keys = tl.maximum(nx[:, None] + nr[None, :] - 2.0 * acc, 0.0)
        rlab = tl.load(rlab_ptr + cols, mask=col_ok, other=0)
        same = lab[:, None] == rlab[None, :]
        ok = row_ok[:, None] & col_ok[None, :]
        pos = ok & same
        if HAS_SELF:
            pos = pos & (cols[None, :] != rows[:, None] + self_offset)
        neg = ok & (lab[:, None] != rlab[None, :])
        t_best, t_idx, t_second = _tile_max(tl.where(pos, keys, -inf), cols, big)
        p_best, p_idx, p_second = _merge(p_best, p_idx, p_second, t_best, t_idx, t_second)
        # the nearest negative is the largest negated key
        t_best, t_idx, t_second = _tile_max(tl.where(neg, -keys, -inf), cols, big)
        n_best, n_idx, n_second = _merge(n_best, n_idx, n_second, t_best, t_idx, t_second)
    w = 2.0 * tl.load(tol_ptr + rows, mask=row_ok, other=0.0)
    p_has = p_best > -inf
    n_has = n_best > -inf
    amb = (p_has & (p_second >= p_best - w)) | (n_has & (n_second >= n_best - w))
    tl.store(pos_ptr + rows, tl.where(p_has, p_idx, -1).to(tl.int64), mask=row_ok)
    tl.store(neg_ptr + rows, tl.where(n_has, n_idx, -1).to(tl.int64), mask=row_ok)
    tl.store(amb_ptr + rows, amb.to(tl.int8), mask=row_ok)


# Metric codes of the loss kernels.
EUCLIDEAN = 0
SQEUCLIDEAN = 1
COSINE_UNIT = 2  # rows already divided by their norms


@triton.jit
def _pair_sq(z_ptr, a, b, ok, dim, stride, BT: tl.constexpr, BD: tl.constexpr):
    """Per lane, the squared distance of rows ``a`` and ``b`` from coordinate differences."""
    dk = tl.arange(0, BD)
    acc = tl.zeros([BT, BD], z_ptr.dtype.element_ty)
    for k0 in range(0, dim, BD):
        kk = k0 + dk
        m = ok[:, None] & (kk < dim)[None, :]
        u = tl.load(z_ptr + a[:, None] * stride + kk[None, :], mask=m, other=0.0)
        v = tl.load(z_ptr + b[:, None] * stride + kk[None, :], mask=m, other=0.0)
        diff = u - v
        acc += diff * diff
    return tl.sum(acc, axis=1)


@triton.jit
def _distance(sq, METRIC: tl.constexpr):
    if METRIC == 0:
        return tl.sqrt(sq)
    elif METRIC == 1:
        return sq
    else:
        return 0.5 * sq


@triton.jit
def hard_loss_fwd_kernel(
    z_ptr,
    pos_ptr,
    neg_ptr,
    loss_ptr,
    slope_ptr,
    dap_ptr,
    dan_ptr,
    n_rows,
    dim,
    stride,
    margin_ptr,
    METRIC: tl.constexpr,
    SOFT: tl.constexpr,
    BT: tl.constexpr,
    BD: tl.constexpr,
):
    """Per anchor with a positive and a negative: the hinge (or soft-margin) loss
    of (anchor, positive, negative) and its slope in ``d_ap - d_an``; 0 elsewhere."""
    a = tl.program_id(0) * BT + tl.arange(0, BT)
    row_ok = a < n_rows
    p = tl.load(pos_ptr + a, mask=row_ok, other=-1)
    q = tl.load(neg_ptr + a, mask=row_ok, other=-1)
    ok = row_ok & (p >= 0) & (q >= 0)
    a64 = a.to(tl.int64)
    d_ap = _distance(_pair_sq(z_ptr, a64, p, ok, dim, stride, BT, BD), METRIC)
    d_an = _distance(_pair_sq(z_ptr, a64, q, ok, dim, stride, BT, BD), METRIC)
    v = d_ap - d_an
    if SOFT:
        # log(1 + exp(v)) without overflow; its slope is the logistic function
        loss = tl.maximum(v, 0.0) + tl.log(1.0 + tl.exp(-tl.abs(v)))
        slope = 1.0 / (1.0 + tl.exp(-v))
    else:
        h = v + tl.load(margin_ptr)  # a tensor of z's dtype: a float argument would be fp32
        loss = tl.maximum(h, 0.0)
        slope = tl.where(h > 0.0, 1.0, 0.0)
    zero = tl.zeros_like(loss)
    tl.store(loss_ptr + a, tl.where(ok, loss, zero), mask=row_ok)
    tl.store(slope_ptr + a, tl.where(ok, slope, zero), mask=row_ok)
    tl.store(dap_ptr + a, d_ap, mask=row_ok)
    tl.store(dan_ptr + a, d_an, mask=row_ok)


@triton.jit
def _pair_scale(d, METRIC: tl.constexpr):
    """The factor f with d(distance)/d(anchor) = f * (anchor - other)."""
    if METRIC == 0:
        return tl.where(d > 0.0, 1.0 / tl.where(d > 0.0, d, 1.0), 0.0)
    elif METRIC == 1:
        return tl.full(d.shape, 2.0, d.dtype)
    else:
        return tl.full(d.shape, 1.0, d.dtype)


@triton.jit
def hard_loss_bwd_kernel(
    z_ptr,
    pos_ptr,
    neg_ptr,
    slope_ptr,
    dap_ptr,
    dan_ptr,
    gout_ptr,
    gz_ptr,
    n_rows,
    dim,
    stride,
    METRIC: tl.constexpr,
    BT: tl.constexpr,
    BD: tl.constexpr,
):
    """Scatter each anchor's triplet gradient onto its anchor, positive and negative rows."""
    a = tl.program_id(0) * BT + tl.arange(0, BT)
    row_ok = a < n_rows
    p = tl.load(pos_ptr + a, mask=row_ok, other=-1)
    q = tl.load(neg_ptr + a, mask=row_ok, other=-1)
    ok = row_ok & (p >= 0) & (q >= 0)
    w = tl.load(slope_ptr + a, mask=ok, other=0.0) * tl.load(gout_ptr + a, mask=ok, other=0.0)
    ok = ok & (w != 0.0)
    fp = w * _pair_scale(tl.load(dap_ptr + a, mask=ok, other=0.0), METRIC)
    fn = w * _pair_scale(tl.load(dan_ptr + a, mask=ok, other=0.0), METRIC)
    a64 = a.to(tl.int64)
    dk = tl.arange(0, BD)
    for k0 in range(0, dim, BD):
        kk = k0 + dk
        m = ok[:, None] & (kk < dim)[None, :]
        za = tl.load(z_ptr + a64[:, None] * stride + kk[None, :], mask=m, other=0.0)
        zp = tl.load(z_ptr + p[:, None] * stride + kk[None, :], mask=m, other=0.0)
        zq = tl.load(z_ptr + q[:, None] * stride + kk[None, :], mask=m, other=0.0)
        gp = fp[:, None] * (za - zp)  # d(loss)/d(anchor) through d_ap
        gn = fn[:, None] * (za - zq)  # and through d_an (with the minus sign below)
        tl.atomic_add(gz_ptr + a64[:, None] * stride + kk[None, :], gp - gn, mask=m)
        tl.atomic_add(gz_ptr + p[:, None] * stride + kk[None, :], -gp, mask=m)
        tl.atomic_add(gz_ptr + q[:, None] * stride + kk[None, :], gn, mask=m)


# Partial sums of an exact squared distance, as in the Rust kernels (exact.rs).
LANES = 16
SETTLE_BLOCK_N = 64


@triton.jit
def _lane_tree(acc, BN: tl.constexpr, HALF: tl.constexpr):
    """``acc[:, :HALF] + acc[:, HALF:2*HALF]`` (lane l with lane l + HALF)."""
    pairs = tl.permute(tl.reshape(acc, (BN, 2, HALF)), (0, 2, 1))
    lo, hi = tl.split(pairs)
    return lo + hi


@triton.jit
def _exact_sq(row, r_ptr, idx64, ok, dim, stride, SHAPE0: tl.constexpr, LN: tl.constexpr):
    """Float64 squared distances of ``row`` to rows ``idx64`` (a vector of
    ``SHAPE0``), summed in the Rust kernels' order (run without FMA)."""
    lanes = tl.arange(0, LN)
    acc = tl.zeros([SHAPE0, LN], tl.float64)
    for k0 in range(0, dim, LN):
        kk = k0 + lanes
        k_ok = kk < dim
        u = tl.load(row + kk, mask=k_ok, other=0.0).to(tl.float64)
        v = tl.load(
            r_ptr + idx64[:, None] * stride + kk[None, :],
            mask=ok[:, None] & k_ok[None, :],
            other=0.0,
        ).to(tl.float64)
        d = u[None, :] - v
        acc += d * d
    acc = _lane_tree(acc, SHAPE0, LN // 2)
    acc = _lane_tree(acc, SHAPE0, LN // 4)
    acc = _lane_tree(acc, SHAPE0, LN // 8)
    return tl.reshape(_lane_tree(acc, SHAPE0, LN // 16), (SHAPE0,))


@triton.jit
def hard_settle_kernel(
    x_ptr,
    r_ptr,
    lab_ptr,
    rlab_ptr,
    flag_ptr,
    pos_ptr,
    neg_ptr,
    n_cols,
    dim,
    stride_x,
    stride_r,
    self_offset,
    HAS_SELF: tl.constexpr,
    BN: tl.constexpr,
    LN: tl.constexpr,
):
    """The exact choice of one flagged query row (the others do no work).

    Keys are float64 squared distances from coordinate differences summed as
    the Rust kernels do: term k into partial sum k % 16, the chunks in order,
    then the partial sums pairwise. Launched without FMA contraction, so each
    partial sum rounds the product and the add separately, as there. The
    extremes are taken on these keys, ties to the lowest index.
    """
    i = tl.program_id(0)
    flagged = tl.load(flag_ptr + i) != 0
    n_iter = tl.where(flagged, n_cols, 0)
    lab = tl.load(lab_ptr + i)
    inf = float("inf")
    big = tl.full([BN], n_cols + BN, tl.int64)
    p_best = tl.max(tl.full([BN], -inf, tl.float64), axis=0)
    n_best = tl.min(tl.full([BN], inf, tl.float64), axis=0)
    p_idx = tl.min(tl.full([BN], -1, tl.int64), axis=0)
    n_idx = p_idx
    row = x_ptr + i.to(tl.int64) * stride_x
    for c0 in range(0, n_iter, BN):
        cols = (c0 + tl.arange(0, BN)).to(tl.int64)
        col_ok = cols < n_cols
        sq = _exact_sq(row, r_ptr, cols, col_ok, dim, stride_r, BN, LN)
        rlab = tl.load(rlab_ptr + cols, mask=col_ok, other=0)
        pos = col_ok & (rlab == lab)
        if HAS_SELF:
            pos = pos & (cols != i + self_offset)
        neg = col_ok & (rlab != lab)
        pk = tl.where(pos, sq, -inf)
        t_best = tl.max(pk, axis=0)
        t_idx = tl.min(tl.where(pos & (pk == t_best), cols, big), axis=0)
        p_idx = tl.where(t_best > p_best, t_idx, p_idx)
        p_best = tl.maximum(p_best, t_best)
        nk = tl.where(neg, sq, inf)
        t_best = tl.min(nk, axis=0)
        t_idx = tl.min(tl.where(neg & (nk == t_best), cols, big), axis=0)
        n_idx = tl.where(t_best < n_best, t_idx, n_idx)
        n_best = tl.minimum(n_best, t_best)
    tl.store(pos_ptr + i, p_idx, mask=flagged)
    tl.store(neg_ptr + i, n_idx, mask=flagged)
