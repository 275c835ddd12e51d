"""The geometry analyses of :mod:`tripletcore.dask`: ``hausdorff``,
``class_hausdorff`` and ``isometric_error`` over row blocks."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from ._convert import IntArray, as_int64
from ._dask_blocks import _as_block_rows, _labels_for, _load, _same_dim, _same_rows, _Source
from ._dask_graph import F64, Cands, _best_of, _finish, _Graph, _max_attained, _pick
from .evaluation import knn as _knn
from .geometry import Attained, ClassHausdorffResult
from .geometry import isometric_error as _isometric_error

# --------------------------------------------------------------------------
# Hausdorff
# --------------------------------------------------------------------------


def _nearest(q: npt.NDArray[Any], rref: Any, r0: int) -> Cands:
    """Each row's nearest row of the reference block (exact, lowest index
    on ties); empty for no rows."""
    if q.shape[0] == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0)
    q, r = _load(q), _load(rref)  # q may be a received (unaligned) task result
    return _best_of(q, r, "euclidean", (_knn(q, 1, r).indices[:, 0], np.inf, r0, False))[0]


def _haus_home(qref: Any, rref: Any, r0: int) -> tuple[Cands, npt.NDArray[Any]]:
    """A block against its home block of the other set: an upper bound on
    every row's nearest distance, and the row with the largest bound (the
    likeliest to attain the maximum), as a probe."""
    q = _load(qref)
    home = _nearest(q, rref, r0)
    return home, q[int(np.argmax(home[1]))][None, :]


def _probe_rows(*homes: tuple[Cands, npt.NDArray[Any]]) -> npt.NDArray[Any]:
    return np.concatenate([h[1] for h in homes])


def _bound(probes: Cands) -> float:
    """The largest exact nearest distance of the probes: the answer is at least this."""
    return float(np.max(probes[1]))


def _survivors(home: tuple[Cands, npt.NDArray[Any]], bound: float) -> IntArray:
    # A row whose upper bound is strictly below a lower bound on the answer
    # can neither attain it nor tie with it.
    return np.flatnonzero(home[0][1] >= bound)


def _haus_rest(
    qref: Any, rref: Any, home: tuple[Cands, npt.NDArray[Any]], bound: float, r0: int
) -> Cands:
    """The surviving rows of a block against another block of the other set."""
    return _nearest(_load(qref)[_survivors(home, bound)], rref, r0)


def _haus_block(
    home: tuple[Cands, npt.NDArray[Any]], rest: Cands | None, bound: float, q0: int
) -> tuple[float, int, int]:
    """The block's row farthest from the other set (ties: lowest row), or
    -inf when no row survived."""
    keep = _survivors(home, bound)
    if keep.size == 0:
        return -np.inf, -1, -1
    best: Cands = (home[0][0][keep], home[0][1][keep], home[0][2][keep])
    if rest is not None:
        best = _pick(best, rest, largest=False)
    r = int(np.argmax(best[1]))
    return float(best[1][r]), q0 + int(keep[r]), int(best[0][r])


def _directed(
    g: _Graph,
    side: int,
    qblocks: list[Any],
    qb: tuple[int, ...],
    rblocks: list[Any],
    rb: tuple[int, ...],
) -> Any:
    """The graph of ``max_q min_r d(q, r)`` with its rows.

    Each query block first meets its home block (the reference block at the
    same relative position: the same rows for two embeddings of the same
    points), which bounds every row's nearest distance from above. Exact
    nearest distances of one probe row per block, against every reference
    block, bound the answer from below; only rows whose upper bound reaches
    it meet the other blocks. For overlapping sets that is a few rows per
    block, so the cost is about one block pair per block; for far-apart sets
    most rows survive and it is the full scan.
    """
    homes = [
        int(np.searchsorted(rb, qb[i] * rb[-1] // qb[-1], side="right")) - 1
        for i in range(len(qblocks))
    ]
    home = [
        g.task(_haus_home, q, rblocks[h], rb[h], stage="home", at=(side, i))
        for i, (q, h) in enumerate(zip(qblocks, homes, strict=True))
    ]
    probes = g.task(_probe_rows, *home, stage="probes", at=(side,))
    exact = [
        g.task(_nearest, probes, r, rb[j], stage="probe", at=(side, j))
        for j, r in enumerate(rblocks)
    ]
    bound = g.task(_bound, g.tree(exact, _row_merge, at=(side, -1)), stage="bound", at=(side,))
    per_block = []
    for i, q in enumerate(qblocks):
        rest = [
            g.task(_haus_rest, q, r, home[i], bound, rb[j], stage="pair", at=(side, i, j))
            for j, r in enumerate(rblocks)
            if j != homes[i]
        ]
        merged = g.tree(rest, _row_merge, at=(side, i)) if rest else None
        per_block.append(
            g.task(_haus_block, home[i], merged, bound, qb[i], stage="rowmax", at=(side, i))
        )
    return g.tree(per_block, _max_attained, at=(side,))


def _row_merge(p: Cands, q: Cands) -> Cands:
    return _pick(p, q, largest=False)


def _haus_final(ab: tuple[float, int, int], ba: tuple[float, int, int] | None) -> Attained:
    if ba is None or ab[0] >= ba[0]:
        return Attained(*ab)
    return Attained(ba[0], ba[2], ba[1])


def hausdorff(
    A: Any,
    B: Any,
    *,
    directed: bool = False,
    block_rows: int | None = None,
    compute: bool = True,
) -> Any:
    """:func:`tripletcore.hausdorff` over row blocks: for each direction,
    every row's nearest row of the other set and the largest such distance
    (ties: lowest row, then the nearest row's lowest index; between the
    directions, A -> B). Rows proved unable to attain the maximum skip the
    blocks beyond their home block, so two embeddings of the same points
    cost about one block pair per block. Returns an :class:`Attained`
    (``i`` in A, ``j`` in B)."""
    rows = _as_block_rows(block_rows)
    if B is None:
        raise TypeError("B must be a 2-D array, got None")
    a_src, b_src = _Source(A, "A", 2), _Source(B, "B", 2)
    _same_dim(a_src, b_src)
    g = _Graph("hausdorff")
    ab, bb = a_src.bounds(rows), b_src.bounds(rows)
    ablocks, bblocks = a_src.blocks(ab, g.token), b_src.blocks(bb, g.token)
    h_ab = _directed(g, 0, ablocks, ab, bblocks, bb)
    h_ba = None if directed else _directed(g, 1, bblocks, bb, ablocks, ab)
    return _finish(g.task(_haus_final, h_ab, h_ba, stage="final", at=()), compute)


# --------------------------------------------------------------------------
# class Hausdorff
# --------------------------------------------------------------------------

# Per class (ascending): label, value, the attaining row and its nearest partner.
ClassBest = tuple[IntArray, F64, IntArray, IntArray]


def _class_nearest(
    x: npt.NDArray[Any], lx: IntArray, y: npt.NDArray[Any], ly: IntArray
) -> IntArray:
    """Each row's nearest same-label row of ``y`` as a local index (``-1``:
    the block has none), by one kernel call per shared label."""
    local = np.full(x.shape[0], -1, dtype=np.int64)
    ox, oy = np.argsort(lx, kind="stable"), np.argsort(ly, kind="stable")
    sx, sy = lx[ox], ly[oy]
    shared = np.intersect1d(sx, sy)
    lo_x, hi_x = np.searchsorted(sx, shared), np.searchsorted(sx, shared, side="right")
    lo_y, hi_y = np.searchsorted(sy, shared), np.searchsorted(sy, shared, side="right")
    for c in range(shared.size):
        # Stable sorts keep each class's rows ascending: local ties = global ties.
        qx, qy = ox[lo_x[c] : hi_x[c]], oy[lo_y[c] : hi_y[c]]
        local[qx] = qy[_knn(x[qx], 1, y[qy]).indices[:, 0]]
    return local


def _class_pair(
    x1ref: Any, l1ref: Any, x2ref: Any, l2ref: Any, a0: int, b0: int
) -> tuple[Cands, Cands]:
    x1, l1 = _load(x1ref), as_int64(_load(l1ref))
    x2, l2 = _load(x2ref), as_int64(_load(l2ref))
    ab, ba = _best_of(
        x1,
        x2,
        "euclidean",
        (_class_nearest(x1, l1, x2, l2), np.inf, b0, False),
        (_class_nearest(x2, l2, x1, l1), np.inf, a0, True),
    )
    return ab, ba


def _class_max(c: Cands, lref: Any, start: int) -> ClassBest:
    """Per class in the block, the row farthest from its class in the other
    embedding (ties: lowest row) and that row's nearest partner."""
    lab = as_int64(_load(lref))
    rows = np.arange(start, start + lab.size, dtype=np.int64)
    order = np.lexsort((rows, -c[1], lab))
    first = order[np.r_[True, lab[order][1:] != lab[order][:-1]]]
    return lab[first], c[1][first], rows[first], c[0][first]


def _class_merge(p: ClassBest, q: ClassBest) -> ClassBest:
    lab, value, row, partner = (np.concatenate([a, b]) for a, b in zip(p, q, strict=True))
    order = np.lexsort((row, -value, lab))
    first = order[np.r_[True, lab[order][1:] != lab[order][:-1]]]
    return lab[first], value[first], row[first], partner[first]


def _class_final(ab: ClassBest, ba: ClassBest, unsigned: bool) -> ClassHausdorffResult:
    # Both directions list the same classes (the embeddings share labels);
    # a tie between them goes to X1 -> X2, as in memory.
    take = ba[1] > ab[1]
    value = np.where(take, ba[1], ab[1])
    i, j = np.where(take, ba[3], ab[2]), np.where(take, ba[2], ab[3])
    k = int(np.argmax(value))
    # uint64 labels >= 2**63 were coded as wrapped int64: cast them back
    classes = ab[0].astype(np.uint64) if unsigned else ab[0]
    return ClassHausdorffResult(
        float(value[k]), int(classes[k]), int(i[k]), int(j[k]), classes, value.astype(np.float64)
    )


def class_hausdorff(
    X1: Any, X2: Any, labels: Any, *, block_rows: int | None = None, compute: bool = True
) -> Any:
    """:func:`tripletcore.class_hausdorff` over row blocks: per pair of blocks
    and per class present in both, each row's nearest same-class row of the
    other embedding; per-row minima, per-class maxima, then the largest.
    Returns a :class:`ClassHausdorffResult`."""
    rows = _as_block_rows(block_rows)
    if X2 is None:
        raise TypeError("X2 must be a 2-D array, got None")
    x1, x2 = _Source(X1, "X1", 2), _Source(X2, "X2", 2)
    _same_rows(x1, x2)
    _same_dim(x1, x2)
    lab = _labels_for(labels, "labels", x1)
    g = _Graph("class_hausdorff")
    bounds = x1.bounds(rows)
    b1, b2, bl = (s.blocks(bounds, g.token) for s in (x1, x2, lab))
    n = len(b1)
    pairs = [
        [
            g.task(
                _class_pair,
                b1[a],
                bl[a],
                b2[b],
                bl[b],
                bounds[a],
                bounds[b],
                stage="pair",
                at=(a, b),
            )
            for b in range(n)
        ]
        for a in range(n)
    ]
    sides = []
    for side in (0, 1):
        best = []
        for a in range(n):
            # side 0: X1 block a against every X2 block; side 1: X2 block a.
            parts = [pairs[a][b] if side == 0 else pairs[b][a] for b in range(n)]
            merged = g.tree(parts, _row_merge, at=(side, a), side=side)
            best.append(
                g.task(_class_max, merged, bl[a], bounds[a], stage="classmax", at=(side, a))
            )
        sides.append(g.tree(best, _class_merge, at=(side,)))
    unsigned = lab.dtype == np.uint64
    return _finish(g.task(_class_final, *sides, unsigned, stage="final", at=()), compute)


# --------------------------------------------------------------------------
# isometric error
# --------------------------------------------------------------------------


def _iso_pair(a1: Any, a2: Any, b1: Any, b2: Any, a0: int, b0: int) -> tuple[float, int, int]:
    """The block pair's largest distortion over pairs i < j (rows of blocks
    a then b; with b None, within block a)."""
    x1, x2 = _load(a1), _load(a2)
    na = x1.shape[0]
    if b1 is not None:
        x1, x2 = np.concatenate([x1, _load(b1)]), np.concatenate([x2, _load(b2)])
    value, i, j = _isometric_error(x1, x2)

    def glob(r: int) -> int:
        return a0 + r if r < na else b0 + r - na

    return value, glob(i), glob(j)


def isometric_error(
    X1: Any, X2: Any, *, block_rows: int | None = None, compute: bool = True
) -> Any:
    """:func:`tripletcore.isometric_error` over row blocks: each pair of
    blocks a < b is scanned as one stacked embedding (pairs within a, within
    b and across), a single block by itself; the largest distortion wins,
    ties to the lowest (i, j). Returns an :class:`Attained`."""
    rows = _as_block_rows(block_rows)
    if X2 is None:
        raise TypeError("X2 must be a 2-D array, got None")
    x1, x2 = _Source(X1, "X1", 2), _Source(X2, "X2", 2)
    _same_rows(x1, x2)
    g = _Graph("isometric_error")
    bounds = x1.bounds(rows)
    b1, b2 = x1.blocks(bounds, g.token), x2.blocks(bounds, g.token)
    n = len(b1)
    if n == 1:
        parts = [g.task(_iso_pair, b1[0], b2[0], None, None, 0, 0, stage="pair", at=(0, 0))]
    else:
        # Every pair of rows lies in some stacked pair of distinct blocks, so
        # the single-block scans (and their (0, 0) for one row) are not needed.
        parts = [
            g.task(
                _iso_pair, b1[a], b2[a], b1[b], b2[b], bounds[a], bounds[b], stage="pair", at=(a, b)
            )
            for a in range(n)
            for b in range(a + 1, n)
        ]
    best = g.tree(parts, _max_attained, at=())
    return _finish(g.task(Attained._make, best, stage="final", at=()), compute)
