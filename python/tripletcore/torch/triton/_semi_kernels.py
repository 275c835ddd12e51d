# mypy: ignore-errors
# (Triton ships no type information, and kernel parameters are typed by @triton.jit)
"""Triton kernels of semi-hard mining (imported only when Triton is).

Every (anchor, positive) pair gets FaceNet's semi-hard negative: the nearest
negative strictly farther than the positive, if it lies inside the window
``d(a,n) < d(a,p) + margin``, else the fallback (hardest, easiest or none).

``semi_screen_kernel``: one program per block of anchors. Its positives come
from a padded table (``pidx``, ascending indices, -1 pads); slots are taken
``PC`` at a time, and for each group the reference rows stream in tiles of
``tl.dot`` keys (IEEE FP32, or FP64 for float64 input) as in the batch-hard
screen. Per slot the kernel keeps the smallest key above the positive's key
(its first index and the runner-up), and the largest negative key not above
it; per row the hardest and easiest negative with runners-up. A row is
flagged when any comparison it depends on lies within twice the key error
bound: a candidate not surely above the positive, a lower negative that may
be above it, a runner-up that may be nearer, a window edge that may flip,
or a fallback with a near tie.

``semi_settle_kernel``: the flagged rows again, on float64 keys from
coordinate differences in the Rust kernels' summation order (no FMA), with
the Rust kernel's comparisons; ties to the lowest index.
"""

from __future__ import annotations

import triton
import triton.language as tl

from ._kernels import _exact_sq

# Screen blocks (BM anchors, BN reference rows, BD features, PC positive
# slots) per input dtype: the [BM, PC, BN] comparisons must fit the registers
# without spills (checked by the AOT compile).
SCREEN_BLOCKS = {"fp32": (16, 16, 16, 4), "fp64": (16, 16, 16, 2)}
SETTLE_BLOCK_N = 32
SETTLE_SLOTS = 8
LANES = 16

HARDEST = 0
EASIEST = 1
DROP = 2


@triton.jit
def _first_min(v, cols, big, AXIS: tl.constexpr):
    """Along ``AXIS``: the smallest value, its first column, and the runner-up
    (the smallest value at any other column)."""
    best = tl.min(v, axis=AXIS)
    first = tl.min(tl.where(v == tl.expand_dims(best, AXIS), cols, big), axis=AXIS)
    second = tl.min(tl.where(cols == tl.expand_dims(first, AXIS), float("inf"), v), axis=AXIS)
    return best, first, second


@triton.jit
def _merge_min(best, idx, second, t_best, t_idx, t_second):
    """Fold a tile's (min, first index, runner-up) into the running ones
    (the earlier tile keeps a tie)."""
    second = tl.minimum(tl.minimum(second, t_second), tl.maximum(best, t_best))
    idx = tl.where(t_best < best, t_idx, idx)
    best = tl.minimum(best, t_best)
    return best, idx, second


@triton.jit
def _gap(second, best):
    """``second - best`` of a running minimum, +inf where there is no runner-up
    (without forming inf - inf)."""
    has = second < float("inf")
    return tl.where(has, second, 1.0) - tl.where(has, best, -float("inf"))


@triton.jit
def _window_top(t, m, METRIC: tl.constexpr):
    """The key of ``d(a,p) + margin`` for the key ``t`` of ``d(a,p)``
    (euclidean keys are squares)."""
    if METRIC == 0:
        s = tl.sqrt(t) + m
        return s * s
    else:
        return t + m


@triton.jit
def _top_unsure(c, t, tol, m, rel, METRIC: tl.constexpr):
    """Whether ``key c < top(t)`` can change when both keys move by up to
    ``tol``; ``rel`` covers the rounding of the margin and of these operations
    (the margin need not be small against the keys' error bound)."""
    if METRIC == 0:
        c_lo = tl.sqrt(tl.maximum(c - tol, 0.0)) * (1.0 - rel)
        c_hi = tl.sqrt(c + tol) * (1.0 + rel)
        t_lo = (tl.sqrt(tl.maximum(t - tol, 0.0)) + m) * (1.0 - rel)
        t_hi = (tl.sqrt(t + tol) + m) * (1.0 + rel)
        return (c_lo <= t_hi) & (c_hi >= t_lo)
    else:
        return tl.abs(c - (t + m)) <= 2.0 * tol + rel * (c + t + m)


@triton.jit
def _slot_keys(
    z_ptr, nz_ptr, rows64, nx, pid, ok, dim, stride, COSINE: tl.constexpr, BD: tl.constexpr
):
    """Expansion keys ``[BM, PC]`` of the anchors and their positive slots."""
    dk = tl.arange(0, BD)
    pid64 = tl.where(ok, pid, 0).to(tl.int64)
    acc = tl.zeros(pid.shape, nx.dtype)
    for k0 in range(0, dim, BD):
        kk = k0 + dk
        k_ok = kk < dim
        a = tl.load(z_ptr + rows64[:, None] * stride + kk[None, :], mask=k_ok[None, :], other=0.0)
        b = tl.load(
            z_ptr + pid64[:, :, None] * stride + kk[None, None, :],
            mask=ok[:, :, None] & k_ok[None, None, :],
            other=0.0,
        )
        acc += tl.sum(a[:, None, :] * b, axis=2)
    if COSINE:
        return 1.0 - acc
    np_ = tl.load(nz_ptr + pid64, mask=ok, other=0.0)
    return tl.maximum(nx[:, None] + np_ - 2.0 * acc, 0.0)


@triton.jit
def semi_screen_kernel(
    z_ptr,
    nz_ptr,
    tol_ptr,
    lab_ptr,
    pidx_ptr,
    out_ptr,
    flag_ptr,
    margin_ptr,
    n,
    dim,
    stride,
    pmax,
    fallback,
    inf_margin,
    METRIC: tl.constexpr,
    REL: tl.constexpr,
    BM: tl.constexpr,
    BN: tl.constexpr,
    BD: tl.constexpr,
    PC: tl.constexpr,
):
    pid = tl.program_id(0)
    rows = pid * BM + tl.arange(0, BM)
    row_ok = rows < n
    rows64 = tl.where(row_ok, rows, 0).to(tl.int64)
    lab = tl.load(lab_ptr + rows64)
    nx = tl.load(nz_ptr + rows64)
    w = 2.0 * tl.load(tol_ptr + rows64)
    m = tl.load(margin_ptr)
    inf = float("inf")
    big = n + BN
    dk = tl.arange(0, BD)
    h_best = tl.full([BM], inf, nx.dtype)  # hardest negative: smallest key
    h_idx = tl.zeros([BM], tl.int32)
    h_second = h_best
    e_best = tl.full([BM], inf, nx.dtype)  # easiest: the smallest negated key
    e_idx = h_idx
    e_second = h_best
    amb = tl.zeros([BM], tl.int1)
    for p0 in range(0, pmax, PC):
        slots = p0 + tl.arange(0, PC)
        s_ok = row_ok[:, None] & (slots < pmax)[None, :]
        pidx = tl.load(pidx_ptr + rows64[:, None] * pmax + slots[None, :], mask=s_ok, other=-1)
        p_ok = pidx >= 0
        t = _slot_keys(z_ptr, nz_ptr, rows64, nx, pidx, p_ok, dim, stride, METRIC == 2, BD)
        c_best = tl.full([BM, PC], inf, nx.dtype)
        c_idx = tl.zeros([BM, PC], tl.int32)
        c_second = c_best
        prev = tl.full([BM, PC], -inf, nx.dtype)
        first = p0 == 0
        for c0 in range(0, n, BN):
            cols = c0 + tl.arange(0, BN)
            col_ok = cols < n
            cols64 = cols.to(tl.int64)
            acc = tl.zeros([BM, BN], nx.dtype)
            for k0 in range(0, dim, BD):
                kk = k0 + dk
                k_ok = kk < dim
                a = tl.load(
                    z_ptr + rows64[:, None] * stride + kk[None, :], mask=k_ok[None, :], other=0.0
                )
                b = tl.load(
                    z_ptr + cols64[None, :] * stride + kk[:, None],
                    mask=col_ok[None, :] & k_ok[:, None],
                    other=0.0,
                )
                acc = tl.dot(a, b, acc, input_precision="ieee")
            if METRIC == 2:
                keys = 1.0 - acc
            else:
                nr = tl.load(nz_ptr + cols, mask=col_ok, other=0.0)
                keys = tl.maximum(nx[:, None] + nr[None, :] - 2.0 * acc, 0.0)
            rlab = tl.load(lab_ptr + cols, mask=col_ok, other=0)
            neg = row_ok[:, None] & col_ok[None, :] & (lab[:, None] != rlab[None, :])
            # per row, once: the hardest and the easiest negative
            nf = neg & first
            t_b, t_i, t_s = _first_min(tl.where(nf, keys, inf), cols[None, :], big, 1)
            h_best, h_idx, h_second = _merge_min(h_best, h_idx, h_second, t_b, t_i, t_s)
            t_b, t_i, t_s = _first_min(tl.where(nf, -keys, inf), cols[None, :], big, 1)
            e_best, e_idx, e_second = _merge_min(e_best, e_idx, e_second, t_b, t_i, t_s)
            # per slot: the nearest negative above the positive, the farthest not above
            k3 = keys[:, None, :]
            n3 = neg[:, None, :]
            above = n3 & (k3 > t[:, :, None])
            cols3 = cols[None, None, :]
            t_b, t_i, t_s = _first_min(tl.where(above, k3, inf), cols3, big, 2)
            c_best, c_idx, c_second = _merge_min(c_best, c_idx, c_second, t_b, t_i, t_s)
            prev = tl.maximum(prev, tl.max(tl.where(n3 & ~above, k3, -inf), axis=2))
        has = c_best < inf
        in_win = has & ((inf_margin != 0) | (c_best < _window_top(t, m, METRIC)))
        w2 = w[:, None]
        unsure = has & (c_best <= t + w2)
        unsure |= (prev > -inf) & (prev >= t - w2)
        unsure |= has & (_gap(c_second, c_best) <= w2)
        top_unsure = _top_unsure(c_best, t, 0.5 * w2, m, REL, METRIC)
        unsure |= has & top_unsure & (inf_margin == 0)
        has_neg = (h_best < inf)[:, None]
        base = p_ok & has_neg
        amb |= tl.max((unsure & base).to(tl.int32), axis=1) > 0
        # the fallback: hardest (0), easiest (1), none (2)
        fb = tl.where(fallback == 0, h_idx, tl.where(fallback == 1, e_idx, -1))[:, None]
        valid = base & (in_win | (fallback != 2))
        h_tie = _gap(h_second, h_best) <= w
        e_tie = _gap(e_second, e_best) <= w
        fb_tie = tl.where(fallback == 0, h_tie, e_tie & (fallback == 1))
        uses_fb = tl.max((base & ~in_win).to(tl.int32), axis=1) > 0
        amb |= uses_fb & fb_tie
        choice = tl.where(in_win, c_idx, fb)
        choice = tl.where(valid, choice, -1)
        tl.store(out_ptr + rows64[:, None] * pmax + slots[None, :], choice.to(tl.int64), mask=s_ok)
    tl.store(flag_ptr + rows64, amb.to(tl.int8), mask=row_ok)


@triton.jit
def _key(sq, METRIC: tl.constexpr):
    """The Rust kernels' key: squared distance, halved for cosine (unit rows)."""
    if METRIC == 2:
        return 0.5 * sq
    else:
        return sq


@triton.jit
def _in_window(c, t, m, METRIC: tl.constexpr):
    """The Rust kernel's test ``d(a,n) < d(a,p) + margin`` on exact keys."""
    if METRIC == 0:
        return tl.sqrt(c) < tl.sqrt(t) + m
    else:
        return c < t + m


@triton.jit
def semi_settle_kernel(
    x_ptr,
    lab_ptr,
    pidx_ptr,
    out_ptr,
    flag_ptr,
    margin_ptr,
    n,
    dim,
    stride,
    pmax,
    fallback,
    inf_margin,
    METRIC: tl.constexpr,
    BN: tl.constexpr,
    PC: tl.constexpr,
    LN: tl.constexpr,
):
    """The exact choices of one flagged anchor (the others do no work). Keys
    are squared distances (halved for cosine, whose rows are unit rows)."""
    i = tl.program_id(0)
    flagged = tl.load(flag_ptr + i) != 0
    n_slots = tl.where(flagged, pmax, 0)
    lab = tl.load(lab_ptr + i)
    m = tl.load(margin_ptr).to(tl.float64)
    inf = float("inf")
    row = x_ptr + i.to(tl.int64) * stride
    big = n + BN
    h_best = tl.min(tl.full([BN], inf, tl.float64), axis=0)
    h_idx = tl.min(tl.full([BN], -1, tl.int64), axis=0)
    e_best = -h_best
    e_idx = h_idx
    for p0 in range(0, n_slots, PC):
        slots = p0 + tl.arange(0, PC)
        s_ok = slots < pmax
        pidx = tl.load(pidx_ptr + i.to(tl.int64) * pmax + slots, mask=s_ok, other=-1)
        p_ok = pidx >= 0
        t = _key(_exact_sq(row, x_ptr, tl.where(p_ok, pidx, 0), p_ok, dim, stride, PC, LN), METRIC)
        c_best = tl.full([PC], inf, tl.float64)
        c_idx = tl.full([PC], -1, tl.int64)
        first = p0 == 0
        for c0 in range(0, n, BN):
            cols = (c0 + tl.arange(0, BN)).to(tl.int64)
            col_ok = cols < n
            keys = _key(_exact_sq(row, x_ptr, cols, col_ok, dim, stride, BN, LN), METRIC)
            rlab = tl.load(lab_ptr + cols, mask=col_ok, other=0)
            neg = col_ok & (rlab != lab)
            nf = neg & first
            hk = tl.where(nf, keys, inf)
            t_b = tl.min(hk, axis=0)
            t_i = tl.min(tl.where(nf & (hk == t_b), cols, big), axis=0)
            h_idx = tl.where(t_b < h_best, t_i, h_idx)
            h_best = tl.minimum(h_best, t_b)
            ek = tl.where(nf, keys, -inf)
            t_b = tl.max(ek, axis=0)
            t_i = tl.min(tl.where(nf & (ek == t_b), cols, big), axis=0)
            e_idx = tl.where(t_b > e_best, t_i, e_idx)
            e_best = tl.maximum(e_best, t_b)
            above = neg[None, :] & (keys[None, :] > t[:, None])
            ck = tl.where(above, keys[None, :], inf)
            t_b2 = tl.min(ck, axis=1)
            t_i2 = tl.min(tl.where(above & (ck == t_b2[:, None]), cols[None, :], big), axis=1)
            c_idx = tl.where(t_b2 < c_best, t_i2, c_idx)
            c_best = tl.minimum(c_best, t_b2)
        has = c_best < inf
        in_win = has & ((inf_margin != 0) | _in_window(c_best, t, m, METRIC))
        base = p_ok & ((pidx * 0 + h_idx) >= 0)  # a vector: a scalar mask will not broadcast here
        fb = tl.where(fallback == 0, h_idx, tl.where(fallback == 1, e_idx, -1))
        valid = base & (in_win | (fallback != 2))
        choice = tl.where(valid, tl.where(in_win, c_idx, fb), -1)
        tl.store(out_ptr + i.to(tl.int64) * pmax + slots, choice, mask=s_ok)
