# mypy: ignore-errors
# (Triton ships no type information, and kernel parameters are typed by @triton.jit)
"""Triton kernels of the batch-all triplet loss (imported only when Triton is).

The loss of an anchor is the sum over its positives p and negatives n of
``[d_ap - d_an + margin]_+`` (or ``softplus(d_ap - d_an)``). Nothing of size
N x N or T (triplets) is stored: one program per block of anchors streams
the reference rows in ``tl.dot`` tiles and, per tile, forms the
[anchors, positive slots, negatives] block of hinge terms in registers.

Distances come from the expansion with a per-entry error bound (as the tiled
path's ``_Chunk``). An anchor is flagged, and handled by the float64 kernels
on coordinate differences instead, when a term may lie on the other side of
the hinge's kink, or (euclidean) when a pair is so close that the expansion
has no relative accuracy (the distance and the gradient direction need it).

Backward: per tile, the pair weights (minus the number of active positives
per negative; the number of active negatives per positive, accumulated in a
per-anchor table) times the distance derivative, applied to coordinate
differences and scattered onto both rows with atomic adds; nothing of size
N x N.
"""

from __future__ import annotations

import triton
import triton.language as tl

from ._kernels import _exact_sq
from ._semi_kernels import _key, _slot_keys

# BM anchors, BN reference rows, BD features, PC positive slots per group
BLOCKS = {"fp32": (16, 16, 16, 4), "fp64": (16, 16, 16, 2)}
# features per step of the backward's [BM, BN, SD] difference block
SCATTER = {"fp32": 8, "fp64": 4}
EXACT_BLOCK_N = 32
EXACT_SLOTS = 8
LANES = 16
# float64 exp(v) underflows to 0 below this: softplus(v) is then 0 in the Rust kernel
SOFTPLUS_ZERO = tl.constexpr(-745.1332191019412)
# keys within NEAR x their error bound are "near-coincident" (euclidean)
NEAR = tl.constexpr(1024.0)


@triton.jit
def _dist(key, METRIC: tl.constexpr):
    if METRIC == 0:
        return tl.sqrt(key)
    else:
        return key


@triton.jit
def _dist_err(key, d, tol, EPS: tl.constexpr, METRIC: tl.constexpr):
    """A bound on the error of distance ``d`` from a key with error ``tol``."""
    if METRIC == 0:
        far = key >= tol
        den = tl.where(far, d + tl.sqrt(tl.maximum(key - tol, 0.0)), 1.0)
        err = tl.where(far, tol / den, tl.sqrt(tol))
    else:
        err = tol
    return err * (1.0 + 2.0**-10) + 2.0 * EPS * d


@triton.jit
def _pair_factor(d, METRIC: tl.constexpr):
    """f with d(distance)/d(row a) = f * (z_a - z_j) (cosine: on unit rows, 0.5 |z_a - z_j|^2)."""
    if METRIC == 0:
        return tl.where(d > 0.0, 1.0 / tl.where(d > 0.0, d, 1.0), 0.0)
    elif METRIC == 1:
        return tl.full(d.shape, 2.0, d.dtype)
    else:
        return tl.full(d.shape, 1.0, d.dtype)


@triton.jit
def _softplus(v):
    return tl.maximum(v, 0.0) + tl.log(1.0 + tl.exp(-tl.abs(v)))


@triton.jit
def _tile_keys(z_ptr, nz_ptr, rows64, nx, cols, col_ok, dim, stride, METRIC: tl.constexpr,
               BM: tl.constexpr, BN: tl.constexpr, BD: tl.constexpr):  # fmt: skip
    dk = tl.arange(0, BD)
    cols64 = cols.to(tl.int64)
    acc = tl.zeros([BM, BN], nx.dtype)
    for k0 in range(0, dim, BD):
        kk = k0 + dk
        k_ok = kk < dim
        a = tl.load(z_ptr + rows64[:, None] * stride + kk[None, :], mask=k_ok[None, :], other=0.0)
        b = tl.load(
            z_ptr + cols64[None, :] * stride + kk[:, None],
            mask=col_ok[None, :] & k_ok[:, None],
            other=0.0,
        )
        acc = tl.dot(a, b, acc, input_precision="ieee")
    if METRIC == 2:
        return 1.0 - acc
    nr = tl.load(nz_ptr + cols, mask=col_ok, other=0.0)
    return tl.maximum(nx[:, None] + nr[None, :] - 2.0 * acc, 0.0)


@triton.jit
def ba_slot_keys_kernel(z_ptr, nz_ptr, pidx_ptr, tk_ptr, n, dim, stride, pmax,
                        METRIC: tl.constexpr, BM: tl.constexpr, BD: tl.constexpr,
                        PC: tl.constexpr):  # fmt: skip
    """The expansion keys of every anchor's positive slots, (N, P)."""
    rows = tl.program_id(0) * BM + tl.arange(0, BM)
    row_ok = rows < n
    rows64 = tl.where(row_ok, rows, 0).to(tl.int64)
    nx = tl.load(nz_ptr + rows64)
    for p0 in range(0, pmax, PC):
        slots = p0 + tl.arange(0, PC)
        s_ok = row_ok[:, None] & (slots < pmax)[None, :]
        pidx = tl.load(pidx_ptr + rows64[:, None] * pmax + slots[None, :], mask=s_ok, other=-1)
        t = _slot_keys(z_ptr, nz_ptr, rows64, nx, pidx, pidx >= 0, dim, stride, METRIC == 2, BD)
        tl.store(tk_ptr + rows64[:, None] * pmax + slots[None, :], t, mask=s_ok)


@triton.jit
def ba_fwd_kernel(z_ptr, nz_ptr, tol_ptr, lab_ptr, pidx_ptr, tk_ptr, loss_ptr, cnt_ptr, flag_ptr,
                  margin_ptr, n, dim, stride, pmax, METRIC: tl.constexpr, SOFT: tl.constexpr,
                  EPS: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BD: tl.constexpr,
                  PC: tl.constexpr):  # fmt: skip
    """Per anchor: the loss sum (float64), the active-term count, and the flag."""
    rows = tl.program_id(0) * BM + tl.arange(0, BM)
    row_ok = rows < n
    rows64 = tl.where(row_ok, rows, 0).to(tl.int64)
    lab = tl.load(lab_ptr + rows64)
    nx = tl.load(nz_ptr + rows64)
    tol = tl.load(tol_ptr + rows64)
    m = tl.load(margin_ptr)
    loss = tl.zeros([BM], tl.float64)
    cnt = tl.zeros([BM], tl.int64)
    flag = tl.zeros([BM], tl.int1)
    for c0 in range(0, n, BN):
        cols = c0 + tl.arange(0, BN)
        col_ok = cols < n
        keys = _tile_keys(z_ptr, nz_ptr, rows64, nx, cols, col_ok, dim, stride, METRIC, BM, BN, BD)
        rlab = tl.load(lab_ptr + cols, mask=col_ok, other=0)
        neg = row_ok[:, None] & col_ok[None, :] & (lab[:, None] != rlab[None, :])
        dan = _dist(keys, METRIC)
        e_an = _dist_err(keys, dan, tol[:, None], EPS, METRIC)
        if METRIC == 0:
            near = neg & (keys <= NEAR * tol[:, None])
            flag |= tl.max(near.to(tl.int32), axis=1) > 0
        for p0 in range(0, pmax, PC):
            slots = p0 + tl.arange(0, PC)
            s_ok = row_ok[:, None] & (slots < pmax)[None, :]
            pidx = tl.load(pidx_ptr + rows64[:, None] * pmax + slots[None, :], mask=s_ok, other=-1)
            tk = tl.load(tk_ptr + rows64[:, None] * pmax + slots[None, :], mask=s_ok, other=0.0)
            dap = _dist(tk, METRIC)
            valid = (pidx >= 0)[:, :, None] & neg[:, None, :]
            v = dap[:, :, None] - dan[:, None, :]
            if SOFT:
                terms = tl.where(valid, _softplus(v), 0.0)
                # counted as the Rust kernel's float64 softplus is non-zero
                active = valid & (v > SOFTPLUS_ZERO)
            else:
                h = v + m
                active = valid & (h > 0.0)
                terms = tl.where(active, h, 0.0)
                e_ap = _dist_err(tk, dap, tol[:, None], EPS, METRIC)
                bound = e_ap[:, :, None] + e_an[:, None, :]
                slack = EPS * 4.0 * (dap[:, :, None] + dan[:, None, :] + m)
                unsure = valid & (tl.abs(h) <= bound + slack)
                flag |= tl.max(tl.max(unsure.to(tl.int32), axis=2), axis=1) > 0
            loss += tl.sum(tl.sum(terms, axis=2), axis=1).to(tl.float64)
            cnt += tl.sum(tl.sum(active.to(tl.int64), axis=2), axis=1)
    if METRIC == 0:
        for p0 in range(0, pmax, PC):
            slots = p0 + tl.arange(0, PC)
            s_ok = row_ok[:, None] & (slots < pmax)[None, :]
            pidx = tl.load(pidx_ptr + rows64[:, None] * pmax + slots[None, :], mask=s_ok, other=-1)
            tk = tl.load(tk_ptr + rows64[:, None] * pmax + slots[None, :], mask=s_ok, other=0.0)
            near = (pidx >= 0) & (tk <= NEAR * tol[:, None])
            flag |= tl.max(near.to(tl.int32), axis=1) > 0
    tl.store(loss_ptr + rows64, loss, mask=row_ok)
    tl.store(cnt_ptr + rows64, cnt, mask=row_ok)
    tl.store(flag_ptr + rows64, flag.to(tl.int8), mask=row_ok)


@triton.jit
def _exact_dist(row, x_ptr, idx64, ok, dim, stride, SHAPE0: tl.constexpr, LN: tl.constexpr,
                METRIC: tl.constexpr):  # fmt: skip
    """Float64 distances of ``row`` to rows ``idx64`` as the Rust kernels form them."""
    key = _key(_exact_sq(row, x_ptr, idx64, ok, dim, stride, SHAPE0, LN), METRIC)
    return _dist(key, METRIC)


@triton.jit
def ba_exact_fwd_kernel(x_ptr, lab_ptr, pidx_ptr, flag_ptr, loss_ptr, cnt_ptr, margin_ptr,
                        n, dim, stride, pmax, METRIC: tl.constexpr, SOFT: tl.constexpr,
                        BN: tl.constexpr, PC: tl.constexpr, LN: tl.constexpr):  # fmt: skip
    """The loss sum and count of one flagged anchor on exact float64 distances."""
    i = tl.program_id(0)
    flagged = tl.load(flag_ptr + i) != 0
    n_iter = tl.where(flagged, n, 0)
    lab = tl.load(lab_ptr + i)
    m = tl.load(margin_ptr)
    row = x_ptr + i.to(tl.int64) * stride
    loss = tl.sum(tl.zeros([BN], tl.float64), axis=0)
    cnt = tl.sum(tl.zeros([BN], tl.int64), axis=0)
    for c0 in range(0, n_iter, BN):
        cols = (c0 + tl.arange(0, BN)).to(tl.int64)
        col_ok = cols < n
        dan = _exact_dist(row, x_ptr, cols, col_ok, dim, stride, BN, LN, METRIC)
        rlab = tl.load(lab_ptr + cols, mask=col_ok, other=0)
        neg = col_ok & (rlab != lab)
        for p0 in range(0, pmax, PC):
            slots = p0 + tl.arange(0, PC)
            pidx = tl.load(pidx_ptr + i.to(tl.int64) * pmax + slots, mask=slots < pmax, other=-1)
            p_ok = pidx >= 0
            dap = _exact_dist(row, x_ptr, tl.where(p_ok, pidx, 0), p_ok, dim, stride, PC, LN,
                              METRIC)  # fmt: skip
            valid = p_ok[:, None] & neg[None, :]
            v = dap[:, None] - dan[None, :]
            if SOFT:
                terms = tl.where(valid, _softplus(v), 0.0)
                active = valid & (v > SOFTPLUS_ZERO)
            else:
                h = v + m
                active = valid & (h > 0.0)
                terms = tl.where(active, h, 0.0)
            loss += tl.sum(tl.sum(terms, axis=1), axis=0)
            cnt += tl.sum(tl.sum(active.to(tl.int64), axis=1), axis=0)
    tl.store(loss_ptr + i, loss, mask=flagged)
    tl.store(cnt_ptr + i, cnt, mask=flagged)


@triton.jit
def _scatter_pairs(gz_ptr, z_ptr, rows64, cols64, r_ok, c_ok, v, dim, stride,
                   SD: tl.constexpr):  # fmt: skip
    """``g[a] += sum_j v[a, j] (z_a - z_j)`` and ``g[j] -= sum_a v[a, j] (z_a - z_j)``,
    on coordinate differences (the expanded form ``(sum_j v) z_a - v @ z`` cancels),
    ``SD`` features at a time (the [BM, BN, SD] block must fit the registers)."""
    dk = tl.arange(0, SD)
    for k0 in range(0, dim, SD):
        kk = k0 + dk
        k_ok = kk < dim
        ma = r_ok[:, None] & k_ok[None, :]
        mc = c_ok[:, None] & k_ok[None, :]
        za = tl.load(z_ptr + rows64[:, None] * stride + kk[None, :], mask=ma, other=0.0)
        zc = tl.load(z_ptr + cols64[:, None] * stride + kk[None, :], mask=mc, other=0.0)
        g = v[:, :, None] * (za[:, None, :] - zc[None, :, :])
        tl.atomic_add(gz_ptr + rows64[:, None] * stride + kk[None, :], tl.sum(g, axis=1), mask=ma)
        tl.atomic_add(gz_ptr + cols64[:, None] * stride + kk[None, :], -tl.sum(g, axis=0), mask=mc)


@triton.jit
def ba_bwd_kernel(z_ptr, nz_ptr, lab_ptr, pidx_ptr, tk_ptr, flag_ptr, gs_ptr, wap_ptr, gz_ptr,
                  margin_ptr, n, dim, stride, pmax, METRIC: tl.constexpr, SOFT: tl.constexpr,
                  BM: tl.constexpr, BN: tl.constexpr, BD: tl.constexpr, PC: tl.constexpr,
                  SD: tl.constexpr):  # fmt: skip
    """The gradient of the unflagged anchors' terms (negatives per tile, then
    positives from the accumulated weights ``wap``, zero on entry)."""
    rows = tl.program_id(0) * BM + tl.arange(0, BM)
    in_range = rows < n
    rows64 = tl.where(in_range, rows, 0).to(tl.int64)
    row_ok = in_range & (tl.load(flag_ptr + rows64) == 0)
    lab = tl.load(lab_ptr + rows64)
    nx = tl.load(nz_ptr + rows64)
    gs = tl.where(row_ok, tl.load(gs_ptr + rows64), 0.0)
    m = tl.load(margin_ptr)
    for c0 in range(0, n, BN):
        cols = c0 + tl.arange(0, BN)
        col_ok = cols < n
        keys = _tile_keys(z_ptr, nz_ptr, rows64, nx, cols, col_ok, dim, stride, METRIC, BM, BN, BD)
        rlab = tl.load(lab_ptr + cols, mask=col_ok, other=0)
        neg = row_ok[:, None] & col_ok[None, :] & (lab[:, None] != rlab[None, :])
        dan = _dist(keys, METRIC)
        w_an = tl.zeros([BM, BN], keys.dtype)
        for p0 in range(0, pmax, PC):
            slots = p0 + tl.arange(0, PC)
            s_ok = row_ok[:, None] & (slots < pmax)[None, :]
            at = rows64[:, None] * pmax + slots[None, :]
            pidx = tl.load(pidx_ptr + at, mask=s_ok, other=-1)
            dap = _dist(tl.load(tk_ptr + at, mask=s_ok, other=0.0), METRIC)
            valid = (pidx >= 0)[:, :, None] & neg[:, None, :]
            v = dap[:, :, None] - dan[:, None, :]
            if SOFT:
                wt = tl.where(valid, tl.sigmoid(v), 0.0)
            else:
                wt = tl.where(valid & (v + m > 0.0), 1.0, 0.0)
            w_an -= tl.sum(wt, axis=1)
            w = tl.load(wap_ptr + at, mask=s_ok, other=0.0)
            tl.store(wap_ptr + at, w + tl.sum(wt, axis=2), mask=s_ok)
        vv = w_an * _pair_factor(dan, METRIC) * gs[:, None]
        _scatter_pairs(gz_ptr, z_ptr, rows64, cols.to(tl.int64), row_ok, col_ok, vv, dim, stride,
                       SD)  # fmt: skip
    dk = tl.arange(0, BD)
    for p0 in range(0, pmax, PC):
        slots = p0 + tl.arange(0, PC)
        s_ok = row_ok[:, None] & (slots < pmax)[None, :]
        at = rows64[:, None] * pmax + slots[None, :]
        pidx = tl.load(pidx_ptr + at, mask=s_ok, other=-1)
        ok = pidx >= 0
        p64 = tl.where(ok, pidx, 0).to(tl.int64)
        dap = _dist(tl.load(tk_ptr + at, mask=s_ok, other=0.0), METRIC)
        vp = tl.load(wap_ptr + at, mask=s_ok, other=0.0) * _pair_factor(dap, METRIC) * gs[:, None]
        for k0 in range(0, dim, BD):
            kk = k0 + dk
            k_ok = kk < dim
            m3 = ok[:, :, None] & k_ok[None, None, :]
            ma = row_ok[:, None] & k_ok[None, :]
            za = tl.load(z_ptr + rows64[:, None] * stride + kk[None, :], mask=ma, other=0.0)
            zp = tl.load(z_ptr + p64[:, :, None] * stride + kk[None, None, :], mask=m3, other=0.0)
            g = tl.where(m3, vp[:, :, None] * (za[:, None, :] - zp), 0.0)
            tl.atomic_add(
                gz_ptr + rows64[:, None] * stride + kk[None, :], tl.sum(g, axis=1), mask=ma
            )
            tl.atomic_add(gz_ptr + p64[:, :, None] * stride + kk[None, None, :], -g, mask=m3)


@triton.jit
def ba_exact_bwd_kernel(x_ptr, lab_ptr, pidx_ptr, flag_ptr, gs_ptr, gz_ptr, margin_ptr,
                        n, dim, stride, pmax, METRIC: tl.constexpr, SOFT: tl.constexpr,
                        BN: tl.constexpr, PC: tl.constexpr, LN: tl.constexpr):  # fmt: skip
    """The gradient of one flagged anchor's terms on exact float64 distances
    and coordinate differences (added to the float64 buffer ``gz``)."""
    i = tl.program_id(0)
    flagged = tl.load(flag_ptr + i) != 0
    n_iter = tl.where(flagged, n, 0)
    lab = tl.load(lab_ptr + i)
    m = tl.load(margin_ptr)
    gs = tl.load(gs_ptr + i).to(tl.float64)
    i64 = i.to(tl.int64)
    row = x_ptr + i64 * stride
    lanes = tl.arange(0, LN)
    for c0 in range(0, n_iter, BN):
        cols = (c0 + tl.arange(0, BN)).to(tl.int64)
        col_ok = cols < n
        dan = _exact_dist(row, x_ptr, cols, col_ok, dim, stride, BN, LN, METRIC)
        rlab = tl.load(lab_ptr + cols, mask=col_ok, other=0)
        neg = col_ok & (rlab != lab)
        w_an = tl.zeros([BN], tl.float64)
        for p0 in range(0, pmax, PC):
            slots = p0 + tl.arange(0, PC)
            pidx = tl.load(pidx_ptr + i64 * pmax + slots, mask=slots < pmax, other=-1)
            p_ok = pidx >= 0
            p64 = tl.where(p_ok, pidx, 0).to(tl.int64)
            dap = _exact_dist(row, x_ptr, p64, p_ok, dim, stride, PC, LN, METRIC)
            valid = p_ok[:, None] & neg[None, :]
            v = dap[:, None] - dan[None, :]
            if SOFT:
                wt = tl.where(valid, tl.sigmoid(v), 0.0)
            else:
                wt = tl.where(valid & (v + m > 0.0), 1.0, 0.0)
            w_an -= tl.sum(wt, axis=0)
            vp = tl.sum(wt, axis=1) * _pair_factor(dap, METRIC) * gs
            for k0 in range(0, dim, LN):
                kk = k0 + lanes
                mk = p_ok[:, None] & (kk < dim)[None, :]
                za = tl.load(row + kk, mask=kk < dim, other=0.0).to(tl.float64)
                zp = tl.load(x_ptr + p64[:, None] * stride + kk[None, :], mask=mk,
                             other=0.0).to(tl.float64)  # fmt: skip
                g = vp[:, None] * (za[None, :] - zp)
                tl.atomic_add(gz_ptr + i64 * stride + kk, tl.sum(g, axis=0), mask=kk < dim)
                tl.atomic_add(gz_ptr + p64[:, None] * stride + kk[None, :], -g, mask=mk)
        vn = w_an * _pair_factor(dan, METRIC) * gs
        for k0 in range(0, dim, LN):
            kk = k0 + lanes
            mk = neg[:, None] & (kk < dim)[None, :]
            za = tl.load(row + kk, mask=kk < dim, other=0.0).to(tl.float64)
            zn = tl.load(x_ptr + cols[:, None] * stride + kk[None, :], mask=mk,
                         other=0.0).to(tl.float64)  # fmt: skip
            g = vn[:, None] * (za[None, :] - zn)
            tl.atomic_add(gz_ptr + i64 * stride + kk, tl.sum(g, axis=0), mask=kk < dim)
            tl.atomic_add(gz_ptr + cols[:, None] * stride + kk[None, :], -g, mask=mk)
