"""Task graphs for :mod:`tripletcore.dask`: named tasks, tree reductions,
and the exact keys and merges the worker tasks use (ties: lowest index)."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from dask.delayed import delayed

from ._convert import IntArray
from .distance import pair_distances

F64 = npt.NDArray[np.float64]
#: Fan-in of the reduction trees (summaries are small; fewer, wider merges
#: mean fewer tasks for the scheduler).
SPLIT_EVERY = 8

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
