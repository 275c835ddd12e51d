"""The geometry of hard-negative mining (seed paper 001): Hausdorff distances,
diameter, displacement, the hardest triplet and Triplet-Separation.

All distances are Euclidean and exact: the extreme pairs are found by the
tiled kernels and compared in float64 (ties: lowest indices).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from . import _core
from ._convert import as_embeddings, as_int, as_labels, as_real, as_two
from ._errors import InputError


class Attained(NamedTuple):
    """A distance and the pair of rows attaining it (``i`` in the first set,
    ``j`` in the second)."""

    distance: float
    i: int
    j: int


class Displacement(NamedTuple):
    """``max_i ||X1_i - X2_i||`` and the row attaining it."""

    distance: float
    row: int


class ClassHausdorffResult(NamedTuple):
    """``d_haus`` of equation (11): the largest per-class Hausdorff distance,
    the class and rows attaining it, and the value of every class."""

    distance: float
    label: int
    i: int
    j: int
    classes: npt.NDArray[np.int64] | npt.NDArray[np.uint64]
    per_class: npt.NDArray[np.float64]


class HardestTriplet(NamedTuple):
    """``sup d(a,p) - d(a,n)`` of equation (38) and the triplet attaining it."""

    value: float
    anchor: int
    positive: int
    negative: int


class Thickness(NamedTuple):
    """Definition 3, ``theta(A) = inf_{|e|=1} (max e.x - min e.x)``: a
    certified interval ``lower <= theta <= upper``, the unit ``direction``
    whose width is ``upper``, and whether the interval is exact (2-D,
    1-D, fewer points than dimensions, or a closed gap)."""

    lower: float
    upper: float
    direction: npt.NDArray[np.float64]
    exact: bool


def hausdorff(A: Any, B: Any, *, directed: bool = False) -> Attained:
    """Hausdorff distance between the row sets ``A`` and ``B``.

    ``directed=True`` gives ``max_i min_j ||A_i - B_j||`` only. Rows are
    retired as soon as they are proved nearer to the other set than the
    best lower bound so far; the nearest-neighbour search itself is tiled
    (or a k-d tree up to 8 dimensions), so heavily overlapping sets, such as
    two embeddings of the same points, stay fast where early-break scans
    degrade to O(N M).
    """
    a, b = as_two(A, B, ("A", "B"), same_rows=False)
    return Attained(*_core.hausdorff(a, b, bool(directed)))


def class_hausdorff(X1: Any, X2: Any, labels: Any) -> ClassHausdorffResult:
    """``d_haus(f1, f2) = max_c d_H(X1[c], X2[c])`` for two embeddings of the
    same labelled points (rows correspond), with the per-class values."""
    x1, x2 = as_two(X1, X2, ("X1", "X2"), same_rows=True)
    lab = as_labels(labels, "labels", x1.shape[0], "X1")
    classes, values, rows1, rows2 = _core.class_hausdorff(x1, x2, lab)
    if np.asarray(labels).dtype == np.uint64:
        # the int64 codes of uint64 labels >= 2**63 wrap: cast them back
        classes = classes.astype(np.uint64)
    k = int(np.argmax(values))
    return ClassHausdorffResult(
        float(values[k]), int(classes[k]), int(rows1[k]), int(rows2[k]), classes, values
    )


def isometric_error(X1: Any, X2: Any) -> Attained:
    """``d_iso(f1, f2) = max_{i<j} | ||X1_i - X1_j|| - ||X2_i - X2_j|| |``
    (equation 13) for two embeddings of the same points, which may have
    different dimensions; ``(i, j)`` attains it (``(0, 0)`` for one point).
    Never builds an N x N matrix: O(N) extra memory."""
    x1, x2 = as_two(X1, X2, ("X1", "X2"), same_rows=True, same_dim=False)
    return Attained(*_core.isometric_error(x1, x2))


def sup_displacement(X1: Any, X2: Any) -> Displacement:
    """``d_inf(f1, f2) = max_i ||X1_i - X2_i||`` and its row."""
    x1, x2 = as_two(X1, X2, ("X1", "X2"), same_rows=True)
    return Displacement(*_core.sup_displacement(x1, x2))


def diameter(A: Any) -> Attained:
    """The largest distance between two rows of ``A`` (0 for one row)."""
    return Attained(*_core.diameter(as_embeddings(A, "A")))


def hardest_triplet(X: Any, labels: Any) -> HardestTriplet:
    """``sup_{a,p,n} d(a,p) - d(a,n)`` over same-class ``p != a`` and
    other-class ``n`` (equation 38). Raises ``ValueError`` when no triplet
    exists (a single class, or only singleton classes)."""
    x = as_embeddings(X, "X")
    lab = as_labels(labels, "labels", x.shape[0], "X")
    return HardestTriplet(*_core.hardest_triplet(x, lab))


def is_triplet_separated(X: Any, labels: Any, *, tol: float = 0.0) -> bool:
    """Definition 1: ``d(a,p) <= d(a,n) + tol`` for every triplet, i.e. the
    hardest-triplet value is at most ``tol``."""
    tol = as_real(tol, "tol")
    if not np.isfinite(tol) or tol < 0:
        raise InputError(f"tol must be a finite number >= 0, got {tol}", "tol", "range")
    return hardest_triplet(X, labels).value <= tol


def thickness(A: Any, *, rtol: float = 1e-6, max_cells: int = 200_000) -> Thickness:
    """Thickness (minimum width) of the rows of ``A`` (Definition 3).

    Exact in 1-D and 2-D (convex hull and rotating calipers, in Rust). In
    n >= 3 dimensions a certified interval: ``upper`` is the width along
    ``direction`` (found by local search), ``lower`` comes from a simplex
    inside the hull and, in low dimension, a branch and bound over
    directions stopped at ``rtol`` or ``max_cells`` cells. Fewer rows than
    dimensions give exactly 0. ``theta(A) <= diameter(A)`` always.
    """
    a = as_embeddings(A, "A")
    rtol = as_real(rtol, "rtol")
    if not np.isfinite(rtol) or rtol < 0:
        raise InputError(f"rtol must be a finite number >= 0, got {rtol}", "rtol", "range")
    max_cells = as_int(max_cells, "max_cells")
    if max_cells < 1:
        raise InputError(
            f"max_cells must be a positive int, got {max_cells!r}", "max_cells", "range"
        )
    if not np.isfinite(a).all():
        raise InputError("A contains NaN or infinite values", "A", "nonfinite")
    if a.shape[1] == 1:
        col = a[:, 0].astype(np.float64)
        width = float(col.max() - col.min())
        return Thickness(width, width, np.ones(1), True)
    if a.shape[1] == 2:
        width, (dx, dy), _, _, _ = _core.min_width_2d(a)
        return Thickness(width, width, np.array([dx, dy]), True)
    from .theory._thickness import thickness_interval

    lower, upper, direction, exact = thickness_interval(
        np.ascontiguousarray(a, dtype=np.float64), rtol=rtol, max_cells=max_cells
    )
    return Thickness(float(lower), float(upper), direction, bool(exact))
