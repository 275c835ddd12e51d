"""Certified linear-programming lower bounds on ``d_iso(f, F_TS)``.

Notation: ``d_ij = ||x_i - x_j||`` for the rows of ``X`` (N x n), ``L`` the
hardest-triplet value, ``F_TS`` the Triplet-Separated (TS) configurations
in the same dimension ``n``.

The semimetric relaxation
-------------------------
The distance matrix ``D'`` of any TS configuration ``g`` is a semimetric
(``D' >= 0``, ``D'_ij <= D'_ik + D'_kj``) that satisfies the TS inequalities
``D'_ap <= D'_an`` (same-class ``p != a``, other-class ``n``). Hence::

    LP(f) = min t   s.t.  |D'_ij - d_ij| <= t            (i < j)
                          D'_ij <= D'_ik + D'_kj         (every triangle)
                          D'_ap <= D'_an                 (every triplet)
                          D' >= 0

is at most ``d_iso(f, F_TS)``: Euclidean realisability (in any dimension)
is dropped. One variable per unordered pair plus ``t``; 3 C(N,3) triangle
rows and up to N^3/4 triplet rows, hence the ``max_points`` guard.

Two facts bracket it, whatever the data (both are tests):

* without the triangle rows the LP equals ``L/2`` exactly (lower each
  same-class pair by ``t``, raise each other-class pair by ``t``);
* with them it is still at most ``L``: ``D' = d + L [label_i != label_j]``
  is a TS semimetric (a triangle with an other-class side has a second
  other-class side, so the raise is paid for) at ``d_iso`` exactly ``L``.

So ``L/2 <= LP <= L``: this relaxation can sharpen the rigorous half of
Theorem 3 of the seed paper, but it can never refute its upper half
``d_iso(f, F_TS) <= 2L``. Geometry beyond the semimetric (the dimension
``n``) is what such a refutation would need; :func:`iso_distance_line` does
that exactly for ``n = 1`` and small N.

The certificate
---------------
The solver's optimum is not trusted. Every variable gets a box that
contains some optimum: ``0 <= t <= diam`` (the collapsed configuration is
TS at ``d_iso = diam``) and ``0 <= D'_ij <= d_ij + diam``. For any
multipliers ``y >= 0`` of ``A x <= b`` weak duality gives::

    LP >= -b.y + sum_j min(r_j lo_j, r_j hi_j),      r = c + A^T y,

whatever ``y`` is. We take the solver's duals clipped at 0 and evaluate
the right-hand side in exact integer arithmetic (every float is an integer
multiple of a power of two), then round down. The LP itself is built from
float64 distances ``fl(d_ij)``; since the LP value is 1-Lipschitz in ``d``
for the max norm, the bound is finally lowered by ``(n + 4) eps max d``, a
generous bound on the rounding of ``sqrt(sum (x_ik - x_jk)^2)``.
"""

from __future__ import annotations

import heapq
import importlib
import itertools
import math
from fractions import Fraction
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
from numpy import float64, int64
from numpy.typing import NDArray

from .._errors import InputError
from .._extras import missing

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

_EPS = float(np.finfo(np.float64).eps)
# Duals below this are dropped (any y >= 0 is valid): keeps the exact sums short.
_DUAL_FLOOR = 1e-300


class LinearProgram(NamedTuple):
    """``min c.x  s.t.  A x <= b,  lo <= x <= hi`` with integer entries in
    ``A`` (a scipy sparse matrix) and finite boxes."""

    c: F64
    A: Any
    b: F64
    lo: F64
    hi: F64


class CertifiedValue(NamedTuple):
    """A rigorous lower bound of an LP and the solver's primal value
    (``certified <= primal``), plus the primal point."""

    certified: float
    primal: float
    x: F64


class LineResult(NamedTuple):
    """``d_iso(f, F_TS)`` on the line (n = 1): a certified ``lower`` bound,
    the ``upper`` bound ``d_iso(X, Y)`` of the explicit, checked TS
    configuration ``Y``, the number of LPs solved, and whether the search
    finished (then ``lower`` and ``upper`` agree to the solver's accuracy)."""

    lower: float
    upper: float
    Y: F64
    lps: int
    exact: bool


_SCIPY: Any = None  # cached module; the per-LP import lookups were measurable


def _scipy() -> Any:
    """scipy with ``optimize`` and ``sparse`` loaded (importlib: mypy needs no
    scipy stubs), or ImportError with an install hint."""
    global _SCIPY
    if _SCIPY is None:
        try:
            importlib.import_module("scipy.optimize")
            importlib.import_module("scipy.sparse")
            _SCIPY = importlib.import_module("scipy")
        except ImportError as exc:
            raise ImportError(
                missing("tripletcore.theory.lp", "SciPy", "theory"), name="scipy"
            ) from exc
    return _SCIPY


def _check(X: Any, labels: Any, max_points: int) -> tuple[F64, I64]:
    x = np.asarray(X, dtype=np.float64)
    lab = np.asarray(labels)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise InputError(f"X must be a non-empty 2-D array, got shape {x.shape}", "X", "shape")
    if lab.dtype.kind not in "iu" or lab.shape != (x.shape[0],):
        raise InputError(
            f"labels must be 1-D integers with {x.shape[0]} entries", "labels", "shape"
        )
    if not np.all(np.isfinite(x)):
        raise InputError("X contains NaN or infinity", "X", "nonfinite")
    if x.shape[0] > max_points:
        raise InputError(
            f"N = {x.shape[0]} > max_points = {max_points}: the LP has O(N^3) "
            "constraints (triangles and triplets); raise max_points deliberately",
            "X",
            "range",
        )
    lab = lab.astype(np.int64)
    _, counts = np.unique(lab, return_counts=True)
    if counts.size < 2 or counts.max() < 2:
        raise InputError(
            "no triplet exists (it needs a class with two points and another class)",
            "labels",
            "range",
        )
    return np.ascontiguousarray(x), lab


def _distances(x: F64) -> F64:
    diff = x[:, None, :] - x[None, :, :]
    return np.asarray(np.sqrt((diff * diff).sum(axis=2)), dtype=np.float64)


def _rounding_slack(x: F64, d: F64) -> float:
    """Upper bound on ``|fl(d_ij) - d_ij|`` (the LP's 1-Lipschitz shift)."""
    return float((x.shape[1] + 4) * _EPS * float(d.max()))


def _triplets(lab: I64) -> list[tuple[int, int, int]]:
    n = lab.shape[0]
    return [
        (a, p, q)
        for a in range(n)
        for p in range(n)
        if p != a and lab[p] == lab[a]
        for q in range(n)
        if lab[q] != lab[a]
    ]


def semimetric_lp(d: F64, lab: I64, *, triangle: bool = True) -> LinearProgram:
    """The LP of the module docstring for the distance matrix ``d``;
    variables are the pairs ``i < j`` in ``itertools.combinations`` order,
    then ``t``."""
    sp = _scipy().sparse
    n = d.shape[0]
    index = np.full((n, n), -1, dtype=np.int64)
    pairs = list(itertools.combinations(range(n), 2))
    for k, (i, j) in enumerate(pairs):
        index[i, j] = index[j, i] = k
    m = len(pairs)
    t = m
    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []
    b: list[float] = []

    def add(entries: list[tuple[int, float]], rhs: float) -> None:
        r = len(b)
        for col, v in entries:
            rows.append(r)
            cols.append(col)
            vals.append(v)
        b.append(rhs)

    dv = np.array([d[i, j] for i, j in pairs], dtype=np.float64)
    for k in range(m):
        add([(k, 1.0), (t, -1.0)], float(dv[k]))
        add([(k, -1.0), (t, -1.0)], -float(dv[k]))
    if triangle:
        for i, j, k in itertools.combinations(range(n), 3):
            ij, ik, jk = index[i, j], index[i, k], index[j, k]
            add([(ij, 1.0), (ik, -1.0), (jk, -1.0)], 0.0)
            add([(ik, 1.0), (ij, -1.0), (jk, -1.0)], 0.0)
            add([(jk, 1.0), (ij, -1.0), (ik, -1.0)], 0.0)
    for a, p, q in _triplets(lab):
        add([(int(index[a, p]), 1.0), (int(index[a, q]), -1.0)], 0.0)

    diam = float(dv.max()) if m else 0.0
    A = sp.csr_matrix((vals, (rows, cols)), shape=(len(b), m + 1))
    c = np.zeros(m + 1)
    c[t] = 1.0
    lo = np.zeros(m + 1)
    # rounded up: the box must contain an optimum exactly
    hi = np.append(np.nextafter(dv + diam, np.inf), diam)
    return LinearProgram(c, A, np.asarray(b, dtype=np.float64), lo, hi)


def _ratio(v: float) -> tuple[int, int]:
    num, den = float(v).as_integer_ratio()
    return num, den


def lagrangian_bound(lp: LinearProgram, y: F64) -> Fraction:
    """Exact ``-b.y + sum_j min(r_j lo_j, r_j hi_j)`` with ``r = c + A^T y``
    for ``y >= 0`` (weak duality: a lower bound of the LP, for any such y)."""
    y = np.where(np.asarray(y, dtype=np.float64) > _DUAL_FLOOR, y, 0.0)
    live = np.flatnonzero(y)
    sub = lp.A[live].tocoo()
    if sub.nnz and not np.all(sub.data == np.round(sub.data)):
        raise ValueError("the exact certificate needs integer constraint coefficients")
    # Every float is num / 2^k: bring all to the common denominator 2^s.
    floats = [*y[live], *lp.b[live], *lp.c, *lp.lo, *lp.hi]
    s = max(_ratio(v)[1] for v in floats).bit_length() - 1

    def scaled(v: float) -> int:
        num, den = _ratio(v)
        return num << (s - (den.bit_length() - 1))

    ys = [scaled(v) for v in y[live]]
    r = [scaled(v) for v in lp.c]
    for row, col, v in zip(sub.row, sub.col, sub.data, strict=True):
        r[int(col)] += int(v) * ys[int(row)]
    total = -sum(scaled(float(bv)) * yv for bv, yv in zip(lp.b[live], ys, strict=True))
    for j, rj in enumerate(r):
        total += min(rj * scaled(float(lp.lo[j])), rj * scaled(float(lp.hi[j])))
    return Fraction(total, 1 << (2 * s))


def _round_down(v: Fraction) -> float:
    f = float(v)
    if Fraction(f) > v:
        f = math.nextafter(f, -math.inf)
    return f


def solve_certified(lp: LinearProgram) -> CertifiedValue:
    """Solve with HiGHS and certify: ``certified`` is a rigorous lower bound
    of the LP (exact Lagrangian of the clipped duals, rounded down), never
    above ``primal``."""
    opt = _scipy().optimize
    res = opt.linprog(
        lp.c,
        A_ub=lp.A,
        b_ub=lp.b,
        bounds=np.column_stack([lp.lo, lp.hi]),
        method="highs",
    )
    if res.status != 0:
        raise RuntimeError(f"HiGHS failed on a feasible bounded LP: {res.message}")
    y = np.maximum(-np.asarray(res.ineqlin.marginals, dtype=np.float64), 0.0)
    cert = _round_down(lagrangian_bound(lp, y))
    primal = float(res.fun)
    return CertifiedValue(min(cert, primal), primal, np.asarray(res.x, dtype=np.float64))


def iso_lower_bound_lp(
    X: NDArray[float64],
    labels: NDArray[int64],
    *,
    triangle: bool = True,
    max_points: int = 16,
) -> float:
    """A certified lower bound on ``d_iso(f, F_TS)``: the semimetric LP of the
    module docstring, certified by weak duality and lowered by the float
    rounding of the distances. Between ``L/2`` and ``L`` (up to rounding).

    ``triangle=False`` drops the triangle inequalities (the value is then
    ``L/2``). Raises ``ValueError`` for N > ``max_points`` (O(N^3)
    constraints), non-finite input, or when no triplet exists;
    ``ImportError`` without scipy.
    """
    _scipy()
    x, lab = _check(X, labels, max_points)
    d = _distances(x)
    value = solve_certified(semimetric_lp(d, lab, triangle=triangle)).certified
    return max(0.0, value - _rounding_slack(x, d))


# --- the line (n = 1): branch and bound over class orderings -----------------------


def _line_lp(d: F64, lab: I64, rank: I64) -> LinearProgram:
    """``min t`` over positions ``y`` on the line (variables ``y_0..y_{N-1}, t``)
    given a partial order: ``rank[i] < rank[j]`` means ``y_i <= y_j``; equal
    ranks are unordered. Kept: order rows, ``|(y_j - y_i) - d_ij| <= t`` and
    the TS rows wherever the signs are known, and for unordered pairs the
    convex half ``|y_i - y_j| <= d_ij + t``. With all ranks distinct this is
    the exact problem for that ordering; otherwise a relaxation of every
    ordering that refines ``rank``. The lowest-ranked point sits at 0."""
    sp = _scipy().sparse
    n = d.shape[0]
    t = n
    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []
    b: list[float] = []

    def add(form: dict[int, float], rhs: float) -> None:
        r = len(b)
        for col, v in form.items():
            if v != 0.0:
                rows.append(r)
                cols.append(col)
                vals.append(v)
        b.append(rhs)

    def gap(i: int, j: int) -> dict[int, float]:
        # |y_i - y_j| as a linear form (ranks differ)
        lo_, hi_ = (i, j) if rank[i] < rank[j] else (j, i)
        return {hi_: 1.0, lo_: -1.0}

    levels = sorted(set(rank.tolist()))
    for below, above in itertools.pairwise(levels):
        for i in np.flatnonzero(rank == below).tolist():
            for j in np.flatnonzero(rank == above).tolist():
                add({i: 1.0, j: -1.0}, 0.0)
    for i, j in itertools.combinations(range(n), 2):
        if rank[i] != rank[j]:
            g = gap(i, j)
            add({**g, t: -1.0}, float(d[i, j]))
            add({**{k: -v for k, v in g.items()}, t: -1.0}, -float(d[i, j]))
        else:
            add({i: 1.0, j: -1.0, t: -1.0}, float(d[i, j]))
            add({i: -1.0, j: 1.0, t: -1.0}, float(d[i, j]))
    for a, p, q in _triplets(lab):
        if rank[a] == rank[p] or rank[a] == rank[q]:
            continue
        form: dict[int, float] = {}
        for k, v in gap(a, p).items():
            form[k] = form.get(k, 0.0) + v
        for k, v in gap(a, q).items():
            form[k] = form.get(k, 0.0) - v
        add(form, 0.0)
    diam = float(d.max())
    A = sp.csr_matrix((vals, (rows, cols)), shape=(len(b), n + 1))
    c = np.zeros(n + 1)
    c[t] = 1.0
    lo = np.zeros(n + 1)
    # an optimum spans at most diam + t <= 2 diam
    hi = np.full(n + 1, 2.0 * diam)
    hi[t] = diam
    first = np.flatnonzero(rank == rank.min())
    if first.size == 1:
        hi[first[0]] = 0.0
    return LinearProgram(c, A, np.asarray(b, dtype=np.float64), lo, hi)


def _rank_of(n: int, prefix: tuple[int, ...], open_rest: list[int]) -> I64:
    """Ranks for a prefix of a block ordering: the prefix in order, then the
    unplaced members of the open class (its block continues), then the rest."""
    rank = np.full(n, len(prefix) + 1, dtype=np.int64)
    rank[open_rest] = len(prefix)
    rank[list(prefix)] = np.arange(len(prefix))
    return rank


def _children(prefix: tuple[int, ...], lab: I64, classes: dict[int, list[int]]) -> list[int]:
    """The points that may come next in an ordering with contiguous classes.
    Mirror images give the same distances: keep the orderings in which the
    block of point 0 comes before the block of the last class."""
    placed = set(prefix)
    if prefix:
        rest = [i for i in classes[int(lab[prefix[-1]])] if i not in placed]
        if rest:
            return rest
    late = max(classes)
    return [
        i
        for i in range(lab.size)
        if i not in placed and (lab[i] != late or 0 in placed or lab[0] == late)
    ]


def _heuristic_order(x: F64, lab: I64) -> tuple[int, ...]:
    """Classes by mean position, each block sorted: a first incumbent."""
    classes = sorted(np.unique(lab), key=lambda c: float(x[lab == c, 0].mean()))
    return tuple(
        int(i) for c in classes for i in sorted(np.flatnonzero(lab == c), key=lambda i: x[i, 0])
    )


def iso_distance_line(
    X: NDArray[float64],
    labels: NDArray[int64],
    *,
    max_lps: int = 20000,
    all_orderings: bool = False,
) -> LineResult:
    """``d_iso(f, F_TS)`` for points on a line (``X`` is N x 1): a certified
    lower bound, and the explicit TS configuration of the best ordering.

    On the line a TS configuration has every class contiguous: if ``n`` lies
    strictly between same-class ``a`` and ``p`` then ``d(a,p) > d(a,n)``, and
    a class sharing a position with another class is wholly at that position
    (an anchor there has a negative at distance 0), so the points can be
    reordered with contiguous classes. For a fixed ordering every distance is
    linear in the positions: one LP. A best-first branch and bound over the
    block orderings (placing points left to right; a prefix's LP, see
    :func:`_line_lp`, bounds all its completions) finds the best ordering;
    each LP is certified as in :func:`solve_certified`. ``lower`` is the
    smallest certified bound over the leaves and the nodes left unexpanded,
    so it stays rigorous when ``max_lps`` stops the search early
    (``exact=False``). ``all_orderings`` enumerates every permutation
    instead, as a check of the contiguity argument (small N only).
    """
    _scipy()
    x, lab = _check(X, labels, max_points=16)
    if x.shape[1] != 1:
        raise InputError(f"iso_distance_line needs one column, got {x.shape[1]}", "X", "shape")
    n = x.shape[0]
    d = _distances(x)
    classes = {int(c): np.flatnonzero(lab == c).tolist() for c in np.unique(lab)}
    best: tuple[float, F64] | None = None
    leaves: list[float] = []
    solved = 0

    def leaf(order: tuple[int, ...]) -> None:
        nonlocal best, solved
        res = solve_certified(_line_lp(d, lab, _rank_of(n, order, [])))
        solved += 1
        leaves.append(res.certified)
        if best is None or res.primal < best[0]:
            best = (res.primal, res.x[:n])

    frontier: list[tuple[float, int, tuple[int, ...]]] = []
    if all_orderings:
        if math.factorial(n) // 2 > max_lps:
            raise InputError(
                f"{math.factorial(n) // 2} orderings > max_lps = {max_lps}", "max_lps", "range"
            )
        for order in itertools.permutations(range(n)):
            if order <= order[::-1]:
                leaf(order)
    else:
        leaf(_heuristic_order(x, lab))
        heapq.heappush(frontier, (0.0, 0, ()))
        tick = 1
        while frontier and solved < max_lps:
            bound, _, prefix = heapq.heappop(frontier)
            assert best is not None
            if bound >= best[0]:
                # every other node is at least as high: the search is over
                heapq.heappush(frontier, (bound, 0, prefix))
                break
            for i in _children(prefix, lab, classes):
                child = (*prefix, i)
                if len(child) == n:
                    leaf(child)
                    continue
                cls = classes[int(lab[i])]
                rest = [j for j in cls if j not in child]
                res = solve_certified(_line_lp(d, lab, _rank_of(n, child, rest)))
                solved += 1
                heapq.heappush(frontier, (res.certified, tick, child))
                tick += 1
    assert best is not None
    lower = min([*leaves, *(f[0] for f in frontier)])
    exact = not frontier or frontier[0][0] >= best[0]
    from ..geometry import is_triplet_separated, isometric_error

    # HiGHS is feasible to ~1e-7 only: shrink until the exact checker agrees
    yy = np.zeros_like(x)  # the collapsed configuration, always TS
    for shrink in (1e-10, 1e-8, 1e-6, 1e-4):
        cand = _shrink_blocks(best[1], lab, shrink)[:, None]
        if is_triplet_separated(cand, lab):
            yy = cand
            break
    upper = isometric_error(x, yy).distance
    return LineResult(max(0.0, lower - _rounding_slack(x, d)), upper, yy, solved, bool(exact))


def _shrink_blocks(y: F64, lab: I64, shrink: float) -> F64:
    """Each class shrunk towards its midpoint by a relative ``shrink``: on the
    line this shortens every block and widens every gap, so an LP optimum
    that is TS up to the solver's tolerance becomes exactly TS."""
    out = np.array(y, dtype=np.float64)
    for c in np.unique(lab):
        rows = lab == c
        mid = 0.5 * (out[rows].min() + out[rows].max())
        out[rows] = mid + (1.0 - shrink) * (out[rows] - mid)
    return out


__all__ = [
    "CertifiedValue",
    "LineResult",
    "LinearProgram",
    "iso_distance_line",
    "iso_lower_bound_lp",
    "lagrangian_bound",
    "semimetric_lp",
    "solve_certified",
]
