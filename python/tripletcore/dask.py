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

import functools
import mmap
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import dask.array as da
import numpy as np
import numpy.typing as npt
from dask.delayed import delayed

from ._convert import FloatArray, IntArray, as_int64
from ._errors import InputError
from ._options import METRICS, as_choice
from .distance import pair_distances
from .evaluation import KnnResult
from .evaluation import knn as _knn
from .geometry import Attained, ClassHausdorffResult
from .geometry import isometric_error as _isometric_error
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

F64 = npt.NDArray[np.float64]
#: Target size of a row block for inputs that are not dask arrays: a pair
#: task holds two blocks plus about as much kernel scratch.
DEFAULT_BLOCK_BYTES = 8 << 20
#: Fan-in of the reduction trees (summaries are small; fewer, wider merges
#: mean fewer tasks for the scheduler).
SPLIT_EVERY = 8

# --------------------------------------------------------------------------
# block sources
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class _FileRows:
    """Rows ``[start, stop)`` of an array stored in a file (a NumPy memmap).

    Only the path and layout travel with the task, which reads its rows by
    itself: no mapping stays open, so a worker's memory holds the block only.
    """

    path: str
    dtype: str
    shape: tuple[int, ...]
    strides: tuple[int, ...]
    offset: int  # byte position of element 0 in the file
    start: int
    stop: int

    def read(self) -> npt.NDArray[Any]:
        dtype = np.dtype(self.dtype)
        shape = (self.stop - self.start, *self.shape[1:])
        inner = int(np.prod(self.shape[1:], dtype=np.int64))
        first = self.offset + self.start * self.strides[0]
        if self.strides == _c_strides(self.shape, dtype.itemsize):
            with open(self.path, "rb") as fh:
                fh.seek(first)
                data = np.fromfile(fh, dtype=dtype, count=shape[0] * inner)
            return data.reshape(shape)
        raw = np.memmap(self.path, dtype=np.uint8, mode="r")
        try:
            view = np.ndarray(shape, dtype, buffer=raw, offset=first, strides=self.strides)
            return np.array(view)
        finally:
            del raw


@dataclass(frozen=True)
class _StoreRows:
    """Rows ``[start, stop)`` of an array that pickles as a reference to its
    storage (a zarr array), read by the task itself."""

    array: Any
    start: int
    stop: int

    def read(self) -> npt.NDArray[Any]:
        return np.asarray(self.array[self.start : self.stop])


def _c_strides(shape: tuple[int, ...], itemsize: int) -> tuple[int, ...]:
    out, step = [], itemsize
    for n in reversed(shape):
        out.append(step)
        step *= n
    return tuple(reversed(out))


def _load(ref: Any) -> npt.NDArray[Any]:
    """A block: a reader's rows, or the array a dask chunk computed to.

    Arrays that distributed deserialised may sit at unaligned offsets of a
    received frame, which the compiled kernels reject: those are copied."""
    arr = ref.read() if isinstance(ref, _FileRows | _StoreRows) else np.asarray(ref)
    return np.require(arr, requirements=["C", "A"])


def _memmap_layout(arr: np.memmap[Any, Any]) -> tuple[str, int] | None:
    """(path, byte offset of element 0) of a memmap readable from its file,
    or None (no file, copy-on-write, or negative strides)."""
    mm = getattr(arr, "_mmap", None)
    path = getattr(arr, "filename", None)
    if mm is None or path is None or arr.mode == "c" or min(arr.strides, default=0) < 0:
        return None
    # numpy maps from the allocation boundary below the memmap's offset.
    base = np.frombuffer(mm, dtype=np.uint8).__array_interface__["data"][0]
    here = arr.__array_interface__["data"][0]
    mapped_from = arr.offset - arr.offset % mmap.ALLOCATIONGRANULARITY
    return str(path), mapped_from + (here - base)


class _Source:
    """An input array split into row blocks by reference, never loaded here."""

    def __init__(self, value: Any, name: str, ndim: int) -> None:
        self.name = name
        self.kind: str
        arr: Any
        if isinstance(value, da.Array):
            self.kind, arr = "dask", value
        elif isinstance(value, np.memmap) and _memmap_layout(value) is not None:
            self.kind, arr = "file", value
        elif type(value).__module__.split(".")[0] == "zarr":
            self.kind, arr = "store", value
        else:
            if value is None:
                raise TypeError(f"{name} must be a {ndim}-D array, got None")
            self.kind, arr = "memory", np.asarray(value)
        if any(np.isnan(s) for s in arr.shape):
            raise InputError(
                f"{name} has unknown chunk sizes; call compute_chunk_sizes() first", name, "shape"
            )
        self.value: Any = arr
        self.shape: tuple[int, ...] = tuple(int(s) for s in arr.shape)
        self.dtype = np.dtype(arr.dtype)
        if ndim == 2:
            if self.dtype == object or self.dtype.kind not in "biuf":
                raise TypeError(f"{name} must be a numeric array, got dtype {self.dtype}")
            if len(self.shape) != 2:
                raise InputError(
                    f"{name} must be 2-D (rows x features), got {len(self.shape)}-D "
                    f"shape {self.shape}",
                    name,
                    "shape",
                )
            if 0 in self.shape:
                raise InputError(
                    f"{name} is empty (shape {self.shape}); it needs at least one row and one "
                    "column",
                    name,
                    "empty",
                )
        else:
            if self.dtype.kind not in "iu":
                raise TypeError(f"{name} must have an integer dtype, got {self.dtype}")
            if len(self.shape) != 1:
                raise InputError(f"{name} must be 1-D, got shape {self.shape}", name, "shape")

    @property
    def rows(self) -> int:
        return self.shape[0]

    def compute_dtype(self) -> np.dtype[Any]:
        """The dtype the kernels see (as ``as_embeddings``)."""
        return self.dtype if self.dtype in (np.float32, np.float64) else np.dtype(np.float64)

    def bounds(self, block_rows: int | None) -> tuple[int, ...]:
        """Row boundaries: the dask chunks, else blocks of ``block_rows`` rows
        (by default about DEFAULT_BLOCK_BYTES each)."""
        n = self.rows
        if block_rows is None and self.kind == "dask":
            sizes = [int(c) for c in self.value.chunks[0] if c > 0]
            return tuple(int(b) for b in np.cumsum([0, *sizes]))
        if block_rows is None:
            width = int(np.prod(self.shape[1:], dtype=np.int64)) * self.compute_dtype().itemsize
            block_rows = max(1, DEFAULT_BLOCK_BYTES // max(width, 1))
        step = int(block_rows)
        return (*range(0, n, step), n)

    def blocks(self, bounds: tuple[int, ...], token: str) -> list[Any]:
        """One reference per block: a dask chunk (a ``Delayed``) or a reader."""
        spans = list(zip(bounds[:-1], bounds[1:], strict=True))
        if self.kind == "dask":
            arr = self.value
            sizes = tuple(b - a for a, b in spans)
            chunks = (sizes,) if arr.ndim == 1 else (sizes, (arr.shape[1],))
            if arr.chunks != chunks:
                arr = arr.rechunk(chunks)
            return list(arr.to_delayed().ravel())
        if self.kind == "file":
            path, offset = _memmap_layout(self.value) or ("", 0)
            meta = (path, self.dtype.str, self.shape, tuple(self.value.strides), offset)
            return [_FileRows(*meta, a, b) for a, b in spans]
        if self.kind == "store":
            return [_StoreRows(self.value, a, b) for a, b in spans]
        return [
            delayed(np.ascontiguousarray(self.value[a:b]), name=f"{self.name}-{token}-{k}")
            for k, (a, b) in enumerate(spans)
        ]


def _as_block_rows(block_rows: int | None) -> int | None:
    if block_rows is None:
        return None
    if isinstance(block_rows, bool) or not isinstance(block_rows, int | np.integer):
        raise TypeError(f"block_rows must be an int, got {type(block_rows).__name__}")
    if block_rows < 1:
        raise InputError(f"block_rows must be >= 1, got {block_rows}", "block_rows", "range")
    return int(block_rows)


def _common_dtype(*sources: _Source) -> np.dtype[Any]:
    """float32 when every embedding is float32, else float64 (as ``as_pair``)."""
    dtypes = {s.compute_dtype() for s in sources}
    return dtypes.pop() if len(dtypes) == 1 else np.dtype(np.float64)


def _same_dim(x: _Source, y: _Source) -> None:
    if x.shape[1] != y.shape[1]:
        raise InputError(
            f"{y.name} has {y.shape[1]} features but {x.name} has {x.shape[1]}", y.name, "shape"
        )


def _same_rows(x: _Source, y: _Source) -> None:
    if x.rows != y.rows:
        raise InputError(
            f"{y.name} has {y.rows} rows but {x.name} has {x.rows}: "
            "both must embed the same points",
            y.name,
            "shape",
        )


def _labels_for(labels: Any, name: str, x: _Source) -> _Source:
    lab = _Source(labels, name, ndim=1)
    if lab.rows != x.rows:
        raise InputError(
            f"{name} has {lab.rows} entries but {x.name} has {x.rows} rows", name, "shape"
        )
    return lab


# --------------------------------------------------------------------------
# graph building
# --------------------------------------------------------------------------


class _Graph:
    """Names the tasks of one call (``tripletcore-<fn>-<stage>``, so the
    dashboard groups them) and builds the tree reductions."""

    def __init__(self, fn: str) -> None:
        self.fn = fn
        self.token = uuid.uuid4().hex
        self.wrapped: dict[Callable[..., Any], Any] = {}

    def task(self, func: Callable[..., Any], *args: Any, stage: str, at: tuple[int, ...]) -> Any:
        key = (f"tripletcore-{self.fn}-{stage}-{self.token}", *at)
        if func not in self.wrapped:  # wrapping tokenizes the function: once
            self.wrapped[func] = delayed(func, pure=True)
        return self.wrapped[func](*args, dask_key_name=key)

    def tree(
        self,
        parts: Sequence[Any],
        merge: Callable[..., Any],
        *extra: Any,
        at: tuple[int, ...],
        side: int | None = None,
    ) -> Any:
        """``merge(p, q, *extra)`` folded over ``parts`` in a tree of fan-in
        SPLIT_EVERY. ``side`` first picks one output of two-output tasks."""
        level = list(parts)
        depth = 0
        while len(level) > 1 or side is not None:
            groups = [level[k : k + SPLIT_EVERY] for k in range(0, len(level), SPLIT_EVERY)]
            level = [
                group[0]
                if len(group) == 1 and side is None
                else self.task(
                    _combine, merge, extra, side, *group, stage="merge", at=(*at, depth, n)
                )
                for n, group in enumerate(groups)
            ]
            side = None
            depth += 1
        return level[0]


def _combine(
    merge: Callable[..., Any], extra: tuple[Any, ...], side: int | None, *parts: Any
) -> Any:
    items = [p if side is None else p[side] for p in parts]
    return functools.reduce(lambda p, q: merge(p, q, *extra), items)


def _finish(graph_result: Any, compute: bool) -> Any:
    return graph_result.compute() if compute else graph_result


# --------------------------------------------------------------------------
# exact keys and merges (run in the workers)
# --------------------------------------------------------------------------

# A candidate set: global indices, then the exact value and a tie-break key
# (the float64 squared distance for "euclidean", whose square root can tie
# where the sums the kernels rank by do not; the value itself otherwise).
Cands = tuple[IntArray, F64, F64]


def _keys(
    x: npt.NDArray[Any], y: npt.NDArray[Any], rows: IntArray, cols: IntArray, metric: str
) -> tuple[F64, F64]:
    """Exact (value, tie-break key) of the pairs ``(x[rows], y[cols])``."""
    if rows.size == 0:
        return np.zeros(0), np.zeros(0)
    if metric != "euclidean":
        value = pair_distances(x, y, rows, cols, metric)
        return value, value
    d2 = pair_distances(x, y, rows, cols, "sqeuclidean")
    # sqrt of a normal float64 sum is the kernels' own value (a power-of-two
    # rescale commutes with it); outside that range ask for the value itself.
    value = np.sqrt(d2)
    odd = (d2 != 0) & ~((d2 >= np.finfo(np.float64).tiny) & np.isfinite(d2))
    if odd.any():
        value[odd] = pair_distances(x, y, rows[odd], cols[odd], "euclidean")
    return value, d2


# A choice of one reference row per query row: local indices (``-1``: none),
# the key of "none", the offset to global indices, and whether it picks rows
# of ``x`` for the rows of ``y`` (distances are symmetric bit for bit).
Choice = tuple[IntArray, float, int, bool]


def _best_of(x: Any, y: Any, metric: str, *choices: Choice) -> list[Cands]:
    """Exact keys of the chosen rows, all choices in one kernel call."""
    found = [c[0] >= 0 for c in choices]
    queries = [np.flatnonzero(f).astype(np.int64) for f in found]
    picks = [c[0][f] for c, f in zip(choices, found, strict=True)]
    flips = [c[3] for c in choices]
    rows = np.concatenate([p if t else q for p, q, t in zip(picks, queries, flips, strict=True)])
    cols = np.concatenate([q if t else p for p, q, t in zip(picks, queries, flips, strict=True)])
    value, tie = _keys(x, y, rows, cols, metric)
    out, at = [], 0
    for (local, missing, offset, _), f, q in zip(choices, found, queries, strict=True):
        v, t = np.full(local.shape, missing), np.full(local.shape, missing)
        v[f], t[f] = value[at : at + q.size], tie[at : at + q.size]
        at += q.size
        out.append((np.where(f, local + offset, -1).astype(np.int64), v, t))
    return out


def _pick(p: Cands, q: Cands, largest: bool) -> Cands:
    """Row by row the better of two candidates: the larger (or smaller)
    value, then tie-break key, then the lower index."""
    (ip, vp, tp), (iq, vq, tq) = p, q
    if largest:
        take = (vq > vp) | ((vq == vp) & ((tq > tp) | ((tq == tp) & (iq < ip))))
    else:
        take = (vq < vp) | ((vq == vp) & ((tq < tp) | ((tq == tp) & (iq < ip))))
    return np.where(take, iq, ip), np.where(take, vq, vp), np.where(take, tq, tp)


def _max_attained(p: tuple[float, int, int], q: tuple[float, int, int]) -> tuple[float, int, int]:
    """The larger value; ties to the lowest (i, j)."""
    if q[0] > p[0] or (q[0] == p[0] and (q[1], q[2]) < (p[1], p[2])):
        return q
    return p


# --------------------------------------------------------------------------
# knn
# --------------------------------------------------------------------------


def _knn_pair(xref: Any, yref: Any, k: int, metric: str, exclude_self: bool, offset: int) -> Cands:
    x = _load(xref)
    diagonal = yref is None
    y = x if diagonal else _load(yref)
    kk = min(k, y.shape[0] - int(diagonal and exclude_self))
    if kk < 1:  # a one-row block against itself, the row excluded
        empty = np.zeros((x.shape[0], 0))
        return np.zeros((x.shape[0], 0), dtype=np.int64), empty, empty
    idx = _knn(x, kk, None if diagonal else y, metric, exclude_self).indices
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
        np.ascontiguousarray(np.vstack([p[0] for p in parts])),
        np.ascontiguousarray(np.vstack([p[1] for p in parts]).astype(dtype)),
    )


def knn(
    X: Any,
    k: int,
    Y: Any = None,
    metric: str = "euclidean",
    exclude_self: bool = True,
    *,
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


def _hard_pair(xref: Any, lref: Any, yref: Any, rref: Any, metric: str, offset: int) -> HardCands:
    x, lab = _load(xref), _load(lref)
    if yref is None:  # the anchors' own block: an anchor is not its own positive
        y = x
        r = _batch_hard(x, lab, metric)
    else:
        y = _load(yref)
        r = _batch_hard(x, lab, metric, Y=y, ref_labels=_load(rref))
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
    metric: str = "euclidean",
    Y: Any = None,
    ref_labels: Any = None,
    *,
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
    directed: bool = False,
    *,
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


def _class_final(ab: ClassBest, ba: ClassBest) -> ClassHausdorffResult:
    # Both directions list the same classes (the embeddings share labels);
    # a tie between them goes to X1 -> X2, as in memory.
    take = ba[1] > ab[1]
    value = np.where(take, ba[1], ab[1])
    i, j = np.where(take, ba[3], ab[2]), np.where(take, ba[2], ab[3])
    k = int(np.argmax(value))
    return ClassHausdorffResult(
        float(value[k]), int(ab[0][k]), int(i[k]), int(j[k]), ab[0], value.astype(np.float64)
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
    return _finish(g.task(_class_final, *sides, stage="final", at=()), compute)


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
