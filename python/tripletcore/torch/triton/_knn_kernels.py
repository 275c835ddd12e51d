# mypy: ignore-errors
# (Triton ships no type information, and kernel parameters are typed by @triton.jit)
"""Triton kernels of exact k-NN (imported only when Triton is).

Three launches, none of which writes anything of size N x M:

1. ``knn_threshold_kernel``: one program per block of query rows streams
   the reference rows in tiles, forms the tile's screen keys from the
   expansion (``tl.dot`` in IEEE FP32, FP64 for float64 input) and keeps,
   per row, the ``KB`` smallest keys seen (``KB`` a power of two >= k). It
   writes ``thr = v_k + 3 w``: ``v_k`` the k-th smallest screen key, ``w``
   the row's key error bound.
2. ``knn_collect_kernel`` streams the tiles again and appends, per row, the
   index of every reference row whose screen key is <= ``thr`` to the row's
   candidate list (``CAP`` slots, in ascending index order); the count may
   exceed ``CAP``, which marks the row as overflowed.
3. ``knn_settle_kernel``, one program per row: recomputes the candidates'
   squared distances in float64 from coordinate differences in the Rust
   kernels' order (exact.rs: term k into partial sum k % 16, chunks in
   order, then the partial sums pairwise; launched without FMA contraction)
   and emits the k smallest (key, index) pairs, ties to the lowest index.

Why no true neighbour is missed: every screen key ``v_j`` is within ``w`` of
the exact key ``e_j`` (the bound of ``_tiled._Space``, the one batch-hard
uses). The k columns with the k smallest screen keys have exact keys
<= ``v_k + w``, so the exact k-th key ``E_k`` is <= ``v_k + w``; a column
with ``e_j <= E_k`` (any column of the exact answer, ties included) has
``v'_j <= e_j + w <= v_k + 2 w`` in the second pass, whatever rounding that
pass does (it need not reproduce the first pass's bits). The third ``w``
covers the rounding of ``v_k + 2 w`` itself (``w`` is at least 14 units of
roundoff of the key). The settle then ranks a superset of the answer on the
keys the Rust kernel ranks, so it returns the same indices.

TF32 is not used, for the reason given in ``_kernels``.
"""

from __future__ import annotations

import triton
import triton.language as tl

from ._kernels import _lane_tree

# Screen tile sizes (tl.dot needs every dimension >= 16); the column tile
# grows to the key buffer for k > 32 (the merge takes a tile's KB smallest).
BLOCK_M = 32
BLOCK_N = 32
BLOCK_D = 16
# Largest k of the kernels (the key buffer is a power of two >= k); larger k
# go to the tiled torch path. At 128 the float64 variants spill registers.
MAX_K = 64
LANES = 16


def key_buffer(k: int) -> int:
    """The power of two >= k the threshold kernel keeps per row (at least 2)."""
    return max(2, 1 << (k - 1).bit_length())


def candidate_capacity(k: int) -> int:
    """Candidate slots per row: room for the k answers and the near-ties of the bound."""
    return max(32, 2 * key_buffer(k))


def settle_rows(k: int, cosine: bool) -> int:
    """Query rows per settle program (at most 2048 float64 partial sums, 1024
    for cosine with its norms, where k allows; more spill registers)."""
    return max(1, (1024 if cosine else 2048) // (candidate_capacity(k) * LANES))


def row_block(k: int, fp64: bool) -> int:
    """Query rows per screen program (fewer for float64 and the wide tiles of
    large k, whose sorting networks spill registers at 32)."""
    return BLOCK_M if key_buffer(k) <= 32 and not fp64 else 16


def column_block(k: int) -> int:
    return max(BLOCK_N, key_buffer(k))


@triton.jit
def _exchange(x, DESC: tl.constexpr, SIZE: tl.constexpr, J: tl.constexpr,
              R: tl.constexpr, S: tl.constexpr):  # fmt: skip
    """One compare-exchange step of a bitonic network along the rows of
    ``x`` (R x S): position i with i + J (i & J == 0), the smaller first
    where (i & SIZE == 0) != DESC. Element-wise work and reshapes only (the
    interpreter runs ``tl.sort``'s xor reductions element by element)."""
    y = tl.permute(tl.reshape(x, [R, S // (2 * J), 2, J]), (0, 1, 3, 2))
    a, b = tl.split(y)
    lo, hi = tl.minimum(a, b), tl.maximum(a, b)
    i = tl.arange(0, S // (2 * J))[:, None] * (2 * J) + tl.arange(0, J)[None, :]
    down = ((i & SIZE) != 0) != DESC
    first = tl.where(down[None, :, :], hi, lo)
    second = tl.where(down[None, :, :], lo, hi)
    y = tl.permute(tl.join(first, second), (0, 1, 3, 2))
    return tl.reshape(y, [R, S])


@triton.jit
def _sort_rows(x, DESC: tl.constexpr, R: tl.constexpr, S: tl.constexpr, LOG: tl.constexpr):
    """Each row of ``x`` (R x S, S = 2**LOG) sorted (descending if DESC)."""
    for s in tl.static_range(1, LOG + 1):
        for t in tl.static_range(s):
            x = _exchange(x, DESC, 1 << s, 1 << (s - 1 - t), R, S)
    return x


@triton.jit
def _merge_rows(x, R: tl.constexpr, S: tl.constexpr, LOG: tl.constexpr):
    """Each bitonic row of ``x`` (R x S) sorted ascending."""
    for t in tl.static_range(LOG):
        x = _exchange(x, False, 2 * S, 1 << (LOG - 1 - t), R, S)
    return x


@triton.jit
def _tile_keys(
    zx_ptr, zr_ptr, nx, nr_ptr, rows, row_ok, cols, col_ok, dim, stride_x, stride_r,
    self_offset, HAS_SELF: tl.constexpr, COSINE: tl.constexpr,
    BM: tl.constexpr, BN: tl.constexpr, BD: tl.constexpr,
):  # fmt: skip
    """Screen keys of a (rows x cols) tile, +inf where a pair is not eligible."""
    rows64 = rows.to(tl.int64)
    cols64 = cols.to(tl.int64)
    dk = tl.arange(0, BD)
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
        keys = tl.maximum(1.0 - acc, 0.0)  # the exact key is >= 0: clamping only helps
    else:
        nr = tl.load(nr_ptr + cols, mask=col_ok, other=0.0)
        keys = tl.maximum(nx[:, None] + nr[None, :] - 2.0 * acc, 0.0)
    ok = row_ok[:, None] & col_ok[None, :]
    if HAS_SELF:
        ok = ok & (cols[None, :] != rows[:, None] + self_offset)
    return tl.where(ok, keys, float("inf"))


@triton.jit
def knn_threshold_kernel(
    zx_ptr, zr_ptr, nx_ptr, nr_ptr, tol_ptr, thr_ptr,
    n_rows, n_cols, dim, stride_x, stride_r, self_offset, k,
    HAS_SELF: tl.constexpr, COSINE: tl.constexpr, KB: tl.constexpr, LOG_K: tl.constexpr,
    BM: tl.constexpr, BN: tl.constexpr, BD: tl.constexpr, LOG_N: tl.constexpr,
):  # fmt: skip
    """Per query row: ``v_k + 3 w`` (the k-th smallest screen key plus three error bounds)."""
    rows = tl.program_id(0) * BM + tl.arange(0, BM)
    row_ok = rows < n_rows
    nx = tl.load(nx_ptr + rows, mask=row_ok, other=0.0)
    inf = float("inf")
    buf = tl.full([BM, KB], inf, nx.dtype)  # the KB smallest keys, ascending
    for c0 in range(0, n_cols, BN):
        cols = c0 + tl.arange(0, BN)
        keys = _tile_keys(
            zx_ptr, zr_ptr, nx, nr_ptr, rows, row_ok, cols, cols < n_cols, dim,
            stride_x, stride_r, self_offset, HAS_SELF, COSINE, BM, BN, BD,
        )  # fmt: skip
        # merge only when some row has a key below its buffer's largest
        worst = tl.max(buf, axis=1)
        if tl.sum((tl.min(keys, axis=1) < worst).to(tl.int32)) > 0:
            # the tile's KB smallest, descending, against the buffer ascending:
            # their element-wise minimum is bitonic and holds the KB smallest of both
            down = _sort_rows(keys, True, BM, BN, LOG_N)
            tail = tl.min(tl.reshape(down, [BM, BN // KB, KB]), axis=1)
            buf = _merge_rows(tl.minimum(buf, tail), BM, KB, LOG_K)
    first_k = tl.arange(0, KB)[None, :] < k
    v_k = tl.max(tl.where(first_k, buf, -inf), axis=1)
    w = tl.load(tol_ptr + rows, mask=row_ok, other=0.0)
    tl.store(thr_ptr + rows, v_k + 3.0 * w, mask=row_ok)


@triton.jit
def knn_collect_kernel(
    zx_ptr, zr_ptr, nx_ptr, nr_ptr, thr_ptr, cand_ptr, count_ptr,
    n_rows, n_cols, dim, stride_x, stride_r, self_offset,
    HAS_SELF: tl.constexpr, COSINE: tl.constexpr, CAP: tl.constexpr,
    BM: tl.constexpr, BN: tl.constexpr, BD: tl.constexpr,
):  # fmt: skip
    """Per query row, the indices (ascending) of the screen keys <= ``thr``, and their count."""
    rows = tl.program_id(0) * BM + tl.arange(0, BM)
    row_ok = rows < n_rows
    nx = tl.load(nx_ptr + rows, mask=row_ok, other=0.0)
    thr = tl.load(thr_ptr + rows, mask=row_ok, other=0.0)
    count = tl.zeros([BM], tl.int32)
    base = cand_ptr + rows.to(tl.int64) * CAP
    for c0 in range(0, n_cols, BN):
        cols = c0 + tl.arange(0, BN)
        keys = _tile_keys(
            zx_ptr, zr_ptr, nx, nr_ptr, rows, row_ok, cols, cols < n_cols, dim,
            stride_x, stride_r, self_offset, HAS_SELF, COSINE, BM, BN, BD,
        )  # fmt: skip
        hit = (keys <= thr[:, None]).to(tl.int32)  # +inf (not eligible) never hits
        if tl.sum(hit) > 0:
            slot = count[:, None] + tl.cumsum(hit, axis=1) - hit
            tl.store(base[:, None] + slot, cols[None, :], mask=(hit != 0) & (slot < CAP))
            count += tl.sum(hit, axis=1)
    tl.store(count_ptr + rows, count, mask=row_ok)


@triton.jit
def knn_settle_kernel(
    x_ptr, r_ptr, sx_ptr, sr_ptr, cand_ptr, count_ptr, idx_ptr, key_ptr,
    n_rows, k, dim, stride_x, stride_r,
    COSINE: tl.constexpr, CAP: tl.constexpr, BR: tl.constexpr, LN: tl.constexpr,
):  # fmt: skip
    """The k nearest of each query row's candidates (a block of BR rows) on
    exact float64 squared distances, ties to the lowest index; an overflowed
    row writes nothing.

    Cosine: the rows are divided by their norms (``sx``, ``sr``, float64)
    term by term, as the Rust kernels do.
    """
    rows = tl.program_id(0) * BR + tl.arange(0, BR)
    row_ok = rows < n_rows
    rows64 = rows.to(tl.int64)
    count = tl.load(count_ptr + rows, mask=row_ok, other=0)
    live = row_ok & (count <= CAP)
    n = tl.where(live, count, 0)
    slots = tl.arange(0, CAP)
    ok = slots[None, :] < n[:, None]
    big = 2**62
    cols = tl.load(cand_ptr + rows64[:, None] * CAP + slots[None, :], mask=ok, other=0)
    cols = cols.to(tl.int64)
    lanes = tl.arange(0, LN)
    if COSINE:
        sx = tl.load(sx_ptr + rows, mask=row_ok, other=1.0)
        sr = tl.load(sr_ptr + cols, mask=ok, other=1.0)
    acc = tl.zeros([BR, CAP, LN], tl.float64)
    for k0 in range(0, dim, LN):
        kk = k0 + lanes
        k_ok = kk < dim
        u = tl.load(
            x_ptr + rows64[:, None] * stride_x + kk[None, :],
            mask=row_ok[:, None] & k_ok[None, :],
            other=0.0,
        ).to(tl.float64)
        v = tl.load(
            r_ptr + cols[:, :, None] * stride_r + kk[None, None, :],
            mask=ok[:, :, None] & k_ok[None, None, :],
            other=0.0,
        ).to(tl.float64)
        if COSINE:
            t = (u / sx[:, None])[:, None, :] - v / sr[:, :, None]
        else:
            t = u[:, None, :] - v
        acc += t * t
    flat = tl.reshape(acc, [BR * CAP, LN])
    flat = _lane_tree(flat, BR * CAP, LN // 2)
    flat = _lane_tree(flat, BR * CAP, LN // 4)
    flat = _lane_tree(flat, BR * CAP, LN // 8)
    d2 = tl.reshape(_lane_tree(flat, BR * CAP, LN // 16), [BR, CAP])
    d2 = tl.where(ok, d2, float("inf"))
    cols = tl.where(ok, cols, big)
    out = rows64 * k
    for r in range(0, k):
        best = tl.min(d2, axis=1)
        j = tl.min(tl.where(d2 == best[:, None], cols, big), axis=1)
        tl.store(idx_ptr + out + r, j, mask=live)
        tl.store(key_ptr + out + r, best, mask=live)
        d2 = tl.where(cols == j[:, None], float("inf"), d2)


def aot_variants() -> list[tuple[str, object, dict[str, str], dict[str, object]]]:
    """(name, kernel, signature, constexprs) of the k-NN launches, for ``_aot``:
    k = 1, 10 (the benchmark's) and ``MAX_K`` (the largest buffers)."""
    out = []
    for k in (1, 10, MAX_K):
        kb, cap, bn = key_buffer(k), candidate_capacity(k), column_block(k)
        for dtype in ("fp32", "fp64"):
            f = f"*{dtype}"
            for cosine in (False, True):
                metric = "cosine" if cosine else "sq"
                for has_self in (True, False):
                    tag = f"{dtype},{metric},{'self' if has_self else 'ref'},k={k}"
                    ints = {p: "i32" for p in ("n_rows", "n_cols", "dim", "stride_x", "stride_r")}
                    ints["self_offset"] = "i32"
                    shape = {
                        "HAS_SELF": has_self,
                        "COSINE": cosine,
                        "BM": row_block(k, dtype == "fp64"),
                        "BN": bn,
                    }
                    shape["BD"] = BLOCK_D
                    sig = {"zx_ptr": f, "zr_ptr": f, "nx_ptr": f, "nr_ptr": f, "tol_ptr": f}
                    sig |= {"thr_ptr": f, **ints, "k": "i32"}
                    consts = {**shape, "KB": kb, "LOG_K": kb.bit_length() - 1}
                    consts["LOG_N"] = bn.bit_length() - 1
                    out.append((f"knn_threshold[{tag}]", knn_threshold_kernel, sig, consts))
                    sig = {"zx_ptr": f, "zr_ptr": f, "nx_ptr": f, "nr_ptr": f, "thr_ptr": f}
                    sig |= {"cand_ptr": "*i32", "count_ptr": "*i32", **ints}
                    # no merge: the narrow tiles at every k
                    consts = {**shape, "BM": BLOCK_M, "BN": BLOCK_N, "CAP": cap}
                    out.append((f"knn_collect[{tag}]", knn_collect_kernel, sig, consts))
                sig = {"x_ptr": f, "r_ptr": f, "sx_ptr": "*fp64", "sr_ptr": "*fp64"}
                sig |= {"cand_ptr": "*i32", "count_ptr": "*i32", "idx_ptr": "*i64"}
                sig |= {"key_ptr": "*fp64", "n_rows": "i32", "k": "i32", "dim": "i32"}
                sig |= {"stride_x": "i32", "stride_r": "i32"}
                consts = {"COSINE": cosine, "CAP": cap, "BR": settle_rows(k, cosine), "LN": LANES}
                out.append((f"knn_settle[{dtype},{metric},k={k}]", knn_settle_kernel, sig, consts))
    for _, _, sig, consts in out:
        sig |= {c: "constexpr" for c in consts}
    return out
