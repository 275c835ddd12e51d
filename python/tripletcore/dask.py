"""The O(N^2) analyses on a Dask cluster: exact, block by block.

Inputs are split into row blocks. One task runs the in-memory Rust kernel on
a pair of blocks and returns a small summary: per row a candidate (exact
float64 key, global index), or one ``(value, i, j)``. Summaries are merged in
trees with the in-memory tie rules (ties: lowest index), using
:func:`tripletcore.distance.pair_distances` for the keys, so every answer
equals the in-memory function's bit for bit, indices included.

Block sources:

* a ``dask.array.Array``: its row chunks (columns are merged into one chunk);
  they are task results, held by the workers while pair tasks need them;
* a NumPy memmap (``np.load(path, mmap_mode="r")``) or a zarr array: only a
  path (or the store reference) travels; each pair task reads its own two
  blocks, so workers never hold more than a few blocks, whatever N is;
* anything else array-like: read into memory and sent block by block.

Nothing builds an N x N matrix or brings the data set onto one worker. The
results are the in-memory NamedTuples (``compute=False`` gives a
``dask.delayed`` object that computes to them).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._convert import FloatArray, IntArray
from ._extras import missing

try:
    import dask.array as _da  # noqa: F401
except ImportError as _exc:
    raise ImportError(missing("tripletcore.dask", "Dask", "dask"), name="dask") from _exc

from ._dask_blocks import (
    DEFAULT_BLOCK_BYTES,
    _as_block_rows,
    _common_dtype,
    _labels_for,
    _load,
    _same_dim,
    _Source,
)
from ._dask_geometry import class_hausdorff, hausdorff, isometric_error
from ._dask_graph import F64, SPLIT_EVERY, Cands, _best_of, _finish, _Graph, _keys, _pick
from ._errors import InputError
from ._options import METRICS, Metric, as_choice
from .evaluation import KnnResult
from .evaluation import knn as _knn
from .mining import BatchHardResult
from .mining import batch_hard as _batch_hard

__all__ = [
    "DEFAULT_BLOCK_BYTES",
    "SPLIT_EVERY",
    "batch_hard",
    "class_hausdorff",
    "hausdorff",
    "isometric_error",
    "knn",
]


# --------------------------------------------------------------------------
# knn
# --------------------------------------------------------------------------


def _knn_pair(
    xref: Any, yref: Any, k: int, metric: Metric, exclude_self: bool, offset: int
) -> Cands:
    x = _load(xref)
    diagonal = yref is None
    y = x if diagonal else _load(yref)
    kk = min(k, y.shape[0] - int(diagonal and exclude_self))
    if kk < 1:  # a one-row block against itself, the row excluded
        empty = np.zeros((x.shape[0], 0))
        return np.zeros((x.shape[0], 0), dtype=np.int64), empty, empty
    idx = _knn(x, kk, None if diagonal else y, metric=metric, exclude_self=exclude_self).indices
    rows = np.repeat(np.arange(x.shape[0], dtype=np.int64), kk)
    value, tie = _keys(x, y, rows, idx.ravel(), metric)
    return idx + offset, value.reshape(idx.shape), tie.reshape(idx.shape)


def _knn_merge(p: Cands, q: Cands, k: int) -> Cands:
    idx, value, tie = (np.hstack([a, b]) for a, b in zip(p, q, strict=True))
    order = np.lexsort((idx, tie, value), axis=-1)[:, :k]
    return (
        np.take_along_axis(idx, order, axis=1),
        np.take_along_axis(value, order, axis=1),
        np.take_along_axis(tie, order, axis=1),
    )


def _knn_final(dtype: str, *parts: Cands) -> KnnResult:
    return KnnResult(
        distances=np.ascontiguousarray(np.vstack([p[1] for p in parts]).astype(dtype)),
        indices=np.ascontiguousarray(np.vstack([p[0] for p in parts])),
    )


def knn(
    X: Any,
    k: int,
    Y: Any = None,
    *,
    metric: Metric = "euclidean",
    exclude_self: bool = True,
    block_rows: int | None = None,
    compute: bool = True,
) -> Any:
    """:func:`tripletcore.knn` over row blocks: every query block against
    every reference block (``k`` candidates each), merged per row by exact
    distance, ties to the lowest index. Returns a :class:`KnnResult`."""
    metric = as_choice(metric, "metric", METRICS)
    if isinstance(k, bool) or not isinstance(k, int | np.integer):
        raise TypeError(f"k must be an int, got {type(k).__name__}")
    k = int(k)
    rows = _as_block_rows(block_rows)
    x = _Source(X, "X", 2)
    y = x if Y is None else _Source(Y, "Y", 2)
    _same_dim(x, y)
    available = y.rows - int(Y is None and exclude_self)
    if k < 1 or k > available:
        raise InputError(
            f"k must be between 1 and {available} (the neighbours available), got {k}", "k", "range"
        )
    dtype = _common_dtype(x, y)
    g = _Graph("knn")
    xb = x.bounds(rows)
    xblocks = x.blocks(xb, g.token)
    yb = xb if Y is None else y.bounds(rows)
    yblocks = xblocks if Y is None else y.blocks(yb, g.token)
    out = []
    for a, xa in enumerate(xblocks):
        pairs = [
            g.task(
                _knn_pair,
                xa,
                None if (Y is None and a == b) else yblock,
                k,
                metric,
                bool(exclude_self),
                yb[b],
                stage="pair",
                at=(a, b),
            )
            for b, yblock in enumerate(yblocks)
        ]
        out.append(g.tree(pairs, _knn_merge, k, at=(a,)))
    return _finish(g.task(_knn_final, dtype.str, *out, stage="final", at=()), compute)


# --------------------------------------------------------------------------
# batch_hard
# --------------------------------------------------------------------------

# Per anchor: positive candidates, then negative candidates.
HardCands = tuple[IntArray, F64, F64, IntArray, F64, F64]


def _hard_pair(
    xref: Any, lref: Any, yref: Any, rref: Any, metric: Metric, offset: int
) -> HardCands:
    x, lab = _load(xref), _load(lref)
    if yref is None:  # the anchors' own block: an anchor is not its own positive
        y = x
        r = _batch_hard(x, lab, metric=metric)
    else:
        y = _load(yref)
        r = _batch_hard(x, lab, y, _load(rref), metric=metric)
    pos, neg = _best_of(
        x, y, metric, (r.pos_idx, -np.inf, offset, False), (r.neg_idx, np.inf, offset, False)
    )
    return (*pos, *neg)


def _hard_merge(p: HardCands, q: HardCands) -> HardCands:
    return (*_pick(p[:3], q[:3], largest=True), *_pick(p[3:], q[3:], largest=False))


def _hard_final(dtype: str, *parts: HardCands) -> BatchHardResult:
    cols = [np.concatenate([p[c] for p in parts]) for c in range(6)]

    def dist(idx: IntArray, value: F64) -> FloatArray:
        return np.where(idx >= 0, value, np.nan).astype(dtype)

    return BatchHardResult(cols[0], dist(cols[0], cols[1]), cols[3], dist(cols[3], cols[4]))


def batch_hard(
    X: Any,
    labels: Any,
    Y: Any = None,
    ref_labels: Any = None,
    *,
    metric: Metric = "euclidean",
    block_rows: int | None = None,
    compute: bool = True,
) -> Any:
    """:func:`tripletcore.batch_hard` over row blocks: per anchor block and
    reference block the in-memory kernel, then per anchor the farthest
    positive and nearest negative across blocks (exact distances, lowest
    index on ties). Returns a :class:`BatchHardResult`."""
    metric = as_choice(metric, "metric", METRICS)
    if (Y is None) != (ref_labels is None):
        raise InputError("Y and ref_labels must be given together", "ref_labels", "conflict")
    rows = _as_block_rows(block_rows)
    x = _Source(X, "X", 2)
    lab = _labels_for(labels, "labels", x)
    y = x if Y is None else _Source(Y, "Y", 2)
    _same_dim(x, y)
    rlab = lab if Y is None else _labels_for(ref_labels, "ref_labels", y)
    dtype = _common_dtype(x, y)
    g = _Graph("batch_hard")
    xb = x.bounds(rows)
    xblocks, lblocks = x.blocks(xb, g.token), lab.blocks(xb, g.token)
    if Y is None:
        yb, yblocks, rblocks = xb, xblocks, lblocks
    else:
        yb = y.bounds(rows)
        yblocks, rblocks = y.blocks(yb, g.token), rlab.blocks(yb, g.token)
    out = []
    for a, (xa, la) in enumerate(zip(xblocks, lblocks, strict=True)):
        pairs = []
        for b, (yblock, rblock) in enumerate(zip(yblocks, rblocks, strict=True)):
            own = Y is None and a == b
            pairs.append(
                g.task(
                    _hard_pair,
                    xa,
                    la,
                    None if own else yblock,
                    None if own else rblock,
                    metric,
                    yb[b],
                    stage="pair",
                    at=(a, b),
                )
            )
        out.append(g.tree(pairs, _hard_merge, at=(a,)))
    return _finish(g.task(_hard_final, dtype.str, *out, stage="final", at=()), compute)
