"""Full distance matrices."""

from __future__ import annotations

from typing import Any

from . import _core
from ._convert import FloatArray, as_choice, as_pair

METRICS = ("euclidean", "sqeuclidean", "cosine")


def cdist(X: Any, Y: Any = None, metric: str = "euclidean") -> FloatArray:
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
