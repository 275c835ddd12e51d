"""Distances to the set ``F_TS`` of Triplet-Separated configurations (seed
paper 001, equations 12 and 14), with explicit, verified certificates.

``d_iso(f, F_TS)`` and ``d_haus(f, F_TS)`` are infima over every
Triplet-Separated map; nobody can compute them exactly in general. What we
can do rigorously:

* lower bounds from the hardest triplet ``L``: ``d_iso >= L/2`` and
  ``d_haus >= L/4`` (field notes, section 1), and for small sets a stronger
  certified linear-programming bound (:mod:`tripletcore.theory.lp`);
* upper bounds from any explicit Triplet-Separated configuration ``Y``:
  ``d_iso(f, F_TS) <= d_iso(X, Y)`` and ``d_haus(f, F_TS) <= d_haus(X, Y)``.

:func:`nearest_triplet_separated` searches for a good ``Y`` (a penalised,
smoothed minimax solved by Adam) and returns it only after the exact checker
has confirmed that it is Triplet-Separated; the collapsed configurations
(always Triplet-Separated) are candidates too, so the answer is never worse
than collapse.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from .._convert import as_choice, as_embeddings, as_labels
from .._errors import InputError
from ..geometry import (
    class_hausdorff,
    hardest_triplet,
    is_triplet_separated,
    isometric_error,
    sup_displacement,
)
from ..loss import triplet_margin_loss

OBJECTIVES = ("iso", "sup")
F64 = npt.NDArray[np.float64]
#: ``progress(steps)`` is told each time ``steps`` more optimiser steps are done.
Progress = Callable[[int], None]
I64 = npt.NDArray[np.int64]

# Rows per block of the smoothed d_iso: bounds the solver's memory to
# O(_BLOCK * N) however large N is.
_BLOCK = 256
# Margin the penalty asks for, relative to the data's scale, so that the
# optimiser lands strictly inside F_TS and the exact check (tol = 0) passes.
_MARGIN = 1e-4


class TSConfiguration(NamedTuple):
    """A verified Triplet-Separated configuration close to ``X``.

    ``Y`` has the shape of ``X``; ``value`` is ``d_iso(X, Y)`` for
    ``objective="iso"`` and ``d_inf(X, Y) = max_i ||X_i - Y_i||`` for
    ``"sup"``; ``method`` names the candidate that won: ``"input"`` (``X``
    is already Triplet-Separated), ``"collapse"``, ``"class_collapse"`` or
    ``"optimised"``."""

    Y: F64
    value: float
    objective: str
    method: str


class TSBounds(NamedTuple):
    """Certified intervals for ``d_iso(f, F_TS)`` and ``d_haus(f, F_TS)``.

    ``hardest`` is ``L = max(0, sup d(a,p) - d(a,n))``. The upper bounds are
    attained by the certificates: ``d_iso(X, iso_certificate) == iso_upper``
    and ``class_hausdorff(X, haus_certificate).distance == haus_upper``, both
    verified Triplet-Separated. ``lp`` says whether the linear-programming
    lower bound was used."""

    hardest: float
    iso_lower: float
    iso_upper: float
    haus_lower: float
    haus_upper: float
    iso_certificate: F64
    haus_certificate: F64
    lp: bool


def nearest_triplet_separated(
    X: Any,
    labels: Any,
    *,
    objective: str = "iso",
    steps: int = 1500,
    seed: int = 0,
    progress: Progress | None = None,
) -> TSConfiguration:
    """A Triplet-Separated configuration ``Y`` near ``X``, in ``d_iso``
    (``objective="iso"``, eq. 13) or in ``d_inf`` (``"sup"``; over ``F_TS``
    the infimum of ``d_inf`` equals that of ``d_haus``, eq. 12).

    ``Y`` is verified Triplet-Separated (tolerance 0) by the exact checker,
    and ``value`` is never larger than that of the collapsed configurations
    (all points equal; each class to one point). The search is a local
    method: ``value`` is an upper bound on the distance to ``F_TS``, not the
    distance itself. Each of the ``steps`` iterations costs O(N^2 n) time
    and O(N) memory blocks; meant for N up to a few thousand. ``progress``,
    if given, is called with the number of optimiser steps done since its
    last call (``2 * steps`` in all: two starting points).
    """
    objective = as_choice(objective, "objective", OBJECTIVES)
    steps = _as_steps(steps)
    x = np.ascontiguousarray(as_embeddings(X, "X"), dtype=np.float64)
    lab = np.asarray(as_labels(labels, "labels", x.shape[0], "X"), dtype=np.int64)
    if hardest_triplet(x, lab).value <= 0.0:  # raises when no triplet exists
        return TSConfiguration(x.copy(), 0.0, objective, "input")
    return _search(x, lab, objective, steps, np.random.default_rng(seed), progress)


def ts_distance_bounds(
    X: Any,
    labels: Any,
    *,
    steps: int = 1500,
    seed: int = 0,
    lp: str = "auto",
    progress: Progress | None = None,
) -> TSBounds:
    """Certified intervals for ``d_iso(f, F_TS)`` and ``d_haus(f, F_TS)``.

    Lower bounds: ``L/2`` and ``L/4`` from the hardest triplet, raised by the
    certified LP relaxation when ``lp="on"`` or, with ``lp="auto"``, when
    N <= 12 and scipy is installed (``d_haus >= d_iso / 2`` carries it over).
    Upper bounds: the best explicit Triplet-Separated configurations found by
    :func:`nearest_triplet_separated` for both objectives (and the snapped
    configuration of the proof), returned as certificates. ``progress`` as
    for :func:`nearest_triplet_separated` (``4 * steps`` in all).
    """
    lp = as_choice(lp, "lp", ("auto", "on", "off"))
    x = np.ascontiguousarray(as_embeddings(X, "X"), dtype=np.float64)
    lab = np.asarray(as_labels(labels, "labels", x.shape[0], "X"), dtype=np.int64)
    big_l = max(0.0, hardest_triplet(x, lab).value)
    iso = nearest_triplet_separated(
        x, lab, objective="iso", steps=steps, seed=seed, progress=progress
    )
    sup = nearest_triplet_separated(
        x, lab, objective="sup", steps=steps, seed=seed, progress=progress
    )
    candidates = [iso.Y, sup.Y, _snap(x, lab, iso.Y), _snap(x, lab, sup.Y)]
    iso_values = [isometric_error(x, y).distance for y in candidates]
    haus_values = [class_hausdorff(x, y, lab).distance for y in candidates]
    k_iso = int(np.argmin(iso_values))
    k_haus = int(np.argmin(haus_values))

    iso_lower = big_l / 2.0
    used_lp = False
    if lp == "on" or (lp == "auto" and x.shape[0] <= 12 and _have_scipy()):
        from .lp import iso_lower_bound_lp

        iso_lower = max(iso_lower, iso_lower_bound_lp(x, lab))
        used_lp = True
    haus_lower = max(big_l / 4.0, iso_lower / 2.0)
    return TSBounds(
        big_l,
        iso_lower,
        iso_values[k_iso],
        haus_lower,
        haus_values[k_haus],
        candidates[k_iso],
        candidates[k_haus],
        used_lp,
    )


def _as_steps(steps: int) -> int:
    if isinstance(steps, bool) or not isinstance(steps, int | np.integer):
        raise TypeError(f"steps must be an int, got {type(steps).__name__}")
    if steps < 0:
        raise InputError(f"steps must be >= 0, got {steps}", "steps", "range")
    return int(steps)


def _have_scipy() -> bool:
    # find_spec, not import: mypy then needs no scipy stubs
    import importlib.util

    return importlib.util.find_spec("scipy") is not None


def _value(x: F64, y: F64, objective: str) -> float:
    if objective == "iso":
        return isometric_error(x, y).distance
    return sup_displacement(x, y).distance


def _enclosing_centre(x: F64, iterations: int = 400) -> F64:
    """Approximate centre of the smallest enclosing ball (Badoiu-Clarkson);
    any centre gives a valid ``d_inf`` for the collapse, a better one a
    smaller value."""
    c: F64 = x.mean(axis=0)
    for k in range(1, iterations + 1):
        far = x[int(np.argmax(((x - c) ** 2).sum(axis=1)))]
        c = c + (far - c) / (k + 1)
    return c


def _class_collapse(x: F64, lab: I64) -> F64:
    y = np.empty_like(x)
    for c in np.unique(lab):
        rows = lab == c
        y[rows] = _enclosing_centre(x[rows])
    return y


def _snap(x: F64, lab: I64, y: F64) -> F64:
    """Each ``x_i`` moved to the nearest same-class point of ``Y``: again
    Triplet-Separated (its points are points of ``Y``, classes kept), and
    ``d_inf(X, snap) <= d_inf(X, Y)``; the construction in the proof that
    ``d_haus`` and ``d_inf`` have the same infimum over ``F_TS``."""
    out = np.empty_like(x)
    for c in np.unique(lab):
        rows = np.flatnonzero(lab == c)
        yc = y[rows]
        for start in range(0, rows.size, _BLOCK):
            block = rows[start : start + _BLOCK]
            d2 = ((x[block, None, :] - yc[None, :, :]) ** 2).sum(axis=2)
            out[block] = yc[np.argmin(d2, axis=1)]
    return out


def _search(
    x: F64,
    lab: I64,
    objective: str,
    steps: int,
    rng: np.random.Generator,
    progress: Progress | None = None,
) -> TSConfiguration:
    candidates: list[tuple[F64, str]] = [
        (np.broadcast_to(c, x.shape).copy(), "collapse")
        for c in (_enclosing_centre(x), x.mean(axis=0))
    ]
    candidates.append((_class_collapse(x, lab), "class_collapse"))
    if steps > 0:
        for start in (x, _shrink_classes(x, lab, 0.5)):
            candidates.extend(
                (y, "optimised") for y in _optimise(x, lab, objective, start, steps, rng, progress)
            )

    best: tuple[float, F64, str] | None = None
    for y, method in candidates:
        if objective == "sup" and method == "optimised":
            y = _snap(x, lab, y)
        if not is_triplet_separated(y, lab):
            continue
        v = _value(x, y, objective)
        if best is None or v < best[0]:
            best = (v, y, method)
    assert best is not None  # the collapsed configurations always qualify
    return TSConfiguration(best[1], best[0], objective, best[2])


def _shrink_classes(x: F64, lab: I64, factor: float) -> F64:
    y = x.copy()
    for c in np.unique(lab):
        rows = lab == c
        mean = x[rows].mean(axis=0)
        y[rows] = mean + factor * (x[rows] - mean)
    return y


def _optimise(
    x: F64,
    lab: I64,
    objective: str,
    start: F64,
    steps: int,
    rng: np.random.Generator,
    progress: Progress | None = None,
) -> list[F64]:
    """Adam on  smooth_max(objective terms) + mu * sum_a [d_ap - d_an + m]_+
    (batch-hard hinge with a small margin ``m``), in units where the data has
    unit spread. Returns the feasible iterates seen at checkpoints (the
    caller verifies and ranks them exactly)."""
    centre = x.mean(axis=0)
    scale = float(np.sqrt(((x - centre) ** 2).sum(axis=1).mean()))
    if scale == 0.0 or not np.isfinite(scale):
        if progress is not None:
            progress(steps)
        return []
    xs = (x - centre) / scale
    z = (start - centre) / scale
    z = z + 1e-9 * rng.standard_normal(z.shape)  # break exact ties between rows
    dx = _pair_distances(xs) if objective == "iso" and xs.shape[0] <= 2048 else None

    m1 = np.zeros_like(z)
    m2 = np.zeros_like(z)
    mu = 1.0
    check = max(1, steps // 60)
    kept: list[F64] = []
    tau0, tau1 = 5e-2, 1e-3
    for t in range(steps):
        frac = t / max(1, steps - 1)
        tau = tau0 * (tau1 / tau0) ** frac
        lr = 1e-4 + 0.5 * 2e-2 * (1.0 + np.cos(np.pi * frac))
        if objective == "iso":
            g = _grad_smooth_iso(xs, z, tau, dx)
        else:
            g = _grad_smooth_sup(xs, z, tau)
        penalty, g_pen = triplet_margin_loss(
            z, lab, margin=_MARGIN, mining="batch_hard", reduction="sum"
        )
        g = g + mu * np.asarray(g_pen, dtype=np.float64)
        m1 = 0.9 * m1 + 0.1 * g
        m2 = 0.999 * m2 + 0.001 * g * g
        k = t + 1
        z = z - lr * (m1 / (1 - 0.9**k)) / (np.sqrt(m2 / (1 - 0.999**k)) + 1e-12)
        if progress is not None and (t + 1) % check == 0:
            progress(check)
        if t % check == 0 or t == steps - 1:
            if float(penalty) == 0.0:
                kept.append(centre + scale * z)
            else:
                mu = min(mu * 1.5, 1e4)
    if progress is not None and steps % check:
        progress(steps % check)
    kept.append(centre + scale * z)
    return kept


def _pair_distances(z: F64) -> F64:
    sq = (z * z).sum(axis=1)
    d2 = sq[:, None] + sq[None, :] - 2.0 * (z @ z.T)
    return np.asarray(np.sqrt(np.maximum(d2, 0.0)), dtype=np.float64)


def _grad_smooth_sup(x: F64, z: F64, tau: float) -> F64:
    diff = z - x
    r = np.sqrt((diff * diff).sum(axis=1))
    w = np.exp((r - r.max()) / tau)
    w /= w.sum()
    coef = np.divide(w, r, out=np.zeros_like(r), where=r > 0)
    return np.asarray(coef[:, None] * diff, dtype=np.float64)


def _grad_smooth_iso(x: F64, z: F64, tau: float, dx_full: F64 | None) -> F64:
    """Gradient of ``tau * log sum_{i != j} exp(|dz_ij - dx_ij| / tau)``,
    row block by row block (never an N x N array unless ``dx_full`` is the
    cached one for small N)."""
    n = z.shape[0]
    shift = isometric_error(x, z).distance
    sq_z = (z * z).sum(axis=1)
    sq_x = (x * x).sum(axis=1)
    grad = np.zeros_like(z)
    total = 0.0
    for s in range(0, n, _BLOCK):
        e = min(n, s + _BLOCK)
        dz = np.sqrt(np.maximum(sq_z[s:e, None] + sq_z[None, :] - 2.0 * (z[s:e] @ z.T), 0.0))
        if dx_full is not None:
            dx = dx_full[s:e]
        else:
            dx = np.sqrt(np.maximum(sq_x[s:e, None] + sq_x[None, :] - 2.0 * (x[s:e] @ x.T), 0.0))
        err = dz - dx
        w = np.exp((np.abs(err) - shift) / tau)
        w[np.arange(e - s), np.arange(s, e)] = 0.0
        total += float(w.sum())
        c = np.divide(w * np.sign(err), dz, out=np.zeros_like(dz), where=dz > 0)
        grad[s:e] = z[s:e] * c.sum(axis=1)[:, None] - c @ z
    if total == 0.0:
        return grad
    return np.asarray(2.0 * grad / total, dtype=np.float64)


__all__ = [
    "OBJECTIVES",
    "TSBounds",
    "TSConfiguration",
    "nearest_triplet_separated",
    "ts_distance_bounds",
]
