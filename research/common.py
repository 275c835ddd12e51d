"""Helpers the experiments share: the digits data and its stratified splits,
and progress logging."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


def load_digits() -> tuple[F64, I64]:
    """scikit-learn's 1,797 handwritten digits: the 8 x 8 images flattened to
    64 pixels scaled to [0, 1] (pixel / 16, exact in float32 too), and the
    labels 0-9. ImportError without scikit-learn (which ships no types,
    hence importlib)."""
    d = importlib.import_module("sklearn.datasets").load_digits()
    return np.asarray(d.data, np.float64) / 16.0, np.asarray(d.target, np.int64)


def stratified_parts(
    labels: I64, cuts: Sequence[float], rng: np.random.Generator
) -> list[npt.NDArray[np.intp]]:
    """Rows split into ``len(cuts) + 1`` parts, class by class: each class's
    rows (classes ascending) are permuted once by ``rng``, and the part ``k``
    takes the permuted rows from ``round(cuts[k - 1] * n)`` up to
    ``round(cuts[k] * n)``. Each part's rows come back in ascending order."""
    part = np.empty(len(labels), np.intp)
    for c in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == c))
        ends = [round(f * len(rows)) for f in cuts] + [len(rows)]
        start = 0
        for k, end in enumerate(ends):
            part[rows[start:end]] = k
            start = end
    return [np.flatnonzero(part == k) for k in range(len(cuts) + 1)]


def log_to_stderr(message: str) -> None:
    """Progress lines go to stderr, so that stdout holds only the results."""
    print(message, file=sys.stderr, flush=True)
