"""Full distance matrices."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from . import _core
from ._convert import FloatArray, as_pair, as_two
from ._options import METRICS, Metric, as_choice


def cdist(X: Any, Y: Any = None, *, metric: Metric = "euclidean") -> FloatArray:
    """Distances between the rows of ``X`` and of ``Y`` (``Y = X`` when None).

    ``metric`` is ``"euclidean"``, ``"sqeuclidean"`` or ``"cosine"`` (1 - cosine
    similarity). Entries are computed from coordinate differences, so the
    diagonal of ``cdist(X)`` and duplicate rows give exactly 0. Returns an
    ``(N, M)`` array, float32 when all inputs are float32, else float64.
    This is the one function that builds the N x M matrix; the mining and
    loss functions never do.
    """
    metric = as_choice(metric, "metric", METRICS)
    x, y = as_pair(X, Y)
    return _core.cdist(x, y, metric)


def pair_distances(
    X: Any, Y: Any, rows: Any, cols: Any, metric: str = "euclidean"
) -> npt.NDArray[np.float64]:
    """Exact float64 distances between ``X[rows[k]]`` and ``Y[cols[k]]``.

    Computed by the same formula the kernels rank candidates with, so code
    that merges kernel results (block by block, or across workers) breaks
    ties on exactly the values the in-memory functions use.
    """
    metric = as_choice(metric, "metric", METRICS)
    x, y = as_two(X, Y, ("X", "Y"), same_rows=False)
    r = np.ascontiguousarray(rows, dtype=np.int64).ravel()
    c = np.ascontiguousarray(cols, dtype=np.int64).ravel()
    return _core.pair_distances(x, y, r, c, metric)
