"""Bounds on ``d_iso(f, F_TS)`` for one configuration (:mod:`research.theorem3`):
certified lower bounds, and upper bounds from verified Triplet-Separated
configurations (the lead solver or stand-ins, polished)."""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

import tripletcore as tc
from tripletcore.theory.lp import iso_distance_line, iso_lower_bound_lp

from .theorem3_configs import SearchConfig

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Solver = Callable[[F64, I64, int, int], tuple[F64, str]]


@dataclass
class Evaluation:
    """Bounds for one configuration. ``lower`` is certified; ``upper`` is
    ``d_iso(X, Y)`` for the verified TS ``Y``; NaN where not computed."""

    family: str
    X: F64
    labels: I64
    hardest: float
    lp: float = math.nan
    line_lower: float = math.nan
    line_exact: bool = False
    upper: float = math.nan
    upper_method: str = ""
    Y: F64 | None = None

    @property
    def lower(self) -> float:
        vals = [self.hardest / 2.0, self.lp, self.line_lower]
        return max(v for v in vals if not math.isnan(v))

    def ratio(self, what: str) -> float:
        value = {"lp": self.lp, "lower": self.lower, "line": self.line_lower, "upper": self.upper}
        return value[what] / self.hardest

    def summary(self) -> dict[str, Any]:
        def num(v: float) -> float | None:
            return None if math.isnan(v) else float(v)

        return {
            "family": self.family,
            "N": int(self.X.shape[0]),
            "n": int(self.X.shape[1]),
            "labels": [int(v) for v in self.labels],
            "L": self.hardest,
            "lp_lower": num(self.lp),
            "line_lower": num(self.line_lower),
            "line_exact": self.line_exact,
            "lower": self.lower,
            "upper": num(self.upper),
            "upper_method": self.upper_method,
            "lp_over_L": num(self.ratio("lp")),
            "lower_over_L": self.ratio("lower"),
            "upper_over_L": num(self.ratio("upper")),
        }


# ---------------------------------------------------------------- upper bounds


def lead_solver() -> Solver | None:
    """The lead solver, or None while :mod:`tripletcore.theory` is missing."""
    try:
        from tripletcore.theory import nearest_triplet_separated
    except ImportError:
        return None

    def solve(x: F64, lab: I64, steps: int, seed: int) -> tuple[F64, str]:
        r = nearest_triplet_separated(x, lab, objective="iso", steps=steps, seed=seed)
        return np.asarray(r.Y, dtype=np.float64), f"theory:{r.method}"

    return solve


def stand_in(x: F64, lab: I64) -> list[tuple[F64, str]]:
    """Configurations that are always TS: everything at one point, and every
    class at its own centroid (same-class distances 0)."""
    collapse = np.broadcast_to(x.mean(axis=0), x.shape).copy()
    classes = x.copy()
    for c in np.unique(lab):
        classes[lab == c] = x[lab == c].mean(axis=0)
    return [(collapse, "collapse"), (classes, "class_collapse")]


def triplet_array(lab: I64) -> I64:
    """All (anchor, positive, negative) index triples."""
    same = lab[:, None] == lab[None, :]
    a, p = np.nonzero(same & ~np.eye(lab.size, dtype=bool))
    rows = [
        (int(i), int(j), int(q))
        for i, j in zip(a, p, strict=True)
        for q in np.flatnonzero(~same[i])
    ]
    return np.asarray(rows, dtype=np.int64).reshape(-1, 3)


def polish(x: F64, lab: I64, y0: F64, maxiter: int, unit: float, margin: float = 1e-6) -> F64:
    """SLSQP on ``min t`` s.t. ``| ||y_i - y_j|| - d_ij | <= t`` and
    ``||y_a - y_n|| - ||y_a - y_p|| >= margin`` from ``y0``: a local method on
    the exact minimax problem. It works in units of ``unit`` (pass ``L``):
    SLSQP's tolerances are absolute, and a tiny violation next to a large
    spread otherwise stalls it. ``margin`` (in those units) leaves room for
    the exact checker; the caller verifies anyway."""
    optimize = importlib.import_module("scipy.optimize")  # importlib: no scipy stubs needed
    centre = x.mean(axis=0)
    x = (x - centre) / unit
    y0 = (y0 - centre) / unit
    m, n = x.shape
    iu, ju = np.triu_indices(m, 1)
    pairs = iu.size
    index = np.zeros((m, m), dtype=np.int64)
    index[iu, ju] = index[ju, iu] = np.arange(pairs)
    d = np.sqrt(((x[iu] - x[ju]) ** 2).sum(axis=1))
    scale = float(d.max())
    trip = triplet_array(lab)
    kp, kn = index[trip[:, 0], trip[:, 1]], index[trip[:, 0], trip[:, 2]]

    def dists(z: F64) -> tuple[F64, F64]:
        y = z[:-1].reshape(m, n)
        diff = y[iu] - y[ju]
        return np.sqrt((diff * diff).sum(axis=1)), diff

    def cons(z: F64) -> F64:
        dz, _ = dists(z)
        return np.concatenate([z[-1] - (dz - d), z[-1] + (dz - d), dz[kn] - dz[kp] - margin])

    def jac(z: F64) -> F64:
        dz, diff = dists(z)
        u = diff / np.maximum(dz, 1e-12 * scale)[:, None]
        jd = np.zeros((pairs, m, n))
        jd[np.arange(pairs), iu] = u
        jd[np.arange(pairs), ju] = -u
        flat = jd.reshape(pairs, m * n)
        one = np.ones((pairs, 1))
        return np.vstack(
            [
                np.hstack([-flat, one]),
                np.hstack([flat, one]),
                np.hstack([flat[kn] - flat[kp], np.zeros((kp.size, 1))]),
            ]
        )

    d0, _ = dists(np.append(y0.ravel(), 0.0))
    z0 = np.append(y0.ravel(), float(np.abs(d0 - d).max()))
    c = np.zeros(z0.size)
    c[-1] = 1.0
    res = optimize.minimize(
        lambda z: z[-1],
        z0,
        jac=lambda z: c,
        constraints=[{"type": "ineq", "fun": cons, "jac": jac}],
        method="SLSQP",
        options={"maxiter": maxiter, "ftol": 1e-12},
    )
    return np.asarray(centre + unit * res.x[:-1].reshape(m, n), dtype=np.float64)


def best_upper(
    x: F64,
    lab: I64,
    cfg: SearchConfig,
    seeds: Sequence[int],
    extra: Sequence[tuple[F64, str]] = (),
) -> tuple[float, F64, str]:
    """The smallest ``d_iso(X, Y)`` over the candidates that the exact
    checker confirms TS (the stand-ins always are)."""
    cands = stand_in(x, lab) + list(extra)
    solver = lead_solver()
    if solver is not None:
        cands += [solver(x, lab, cfg.solver_steps, s) for s in seeds]
    best: tuple[float, F64, str] | None = None

    def consider(y: F64, how: str) -> None:
        nonlocal best
        if tc.is_triplet_separated(y, lab):
            v = tc.isometric_error(x, y).distance
            if best is None or v < best[0]:
                best = (v, y, how)

    for y, how in cands:
        consider(y, how)
    assert best is not None
    if cfg.polish_iter > 0:
        big_l = tc.hardest_triplet(x, lab).value
        for y0, how in ((best[1], best[2] + "+slsqp"), (x, "slsqp")):
            for margin in (1e-6, 1e-3):
                y = polish(x, lab, y0, cfg.polish_iter, big_l, margin)
                if tc.is_triplet_separated(y, lab):
                    consider(y, how)
                    break
    return best


# ---------------------------------------------------------------- evaluation


def evaluate(
    family: str,
    x: F64,
    lab: I64,
    cfg: SearchConfig,
    *,
    upper: bool = True,
    line_lps: int | None = None,
    seeds: Sequence[int] = (0,),
) -> Evaluation | None:
    """All bounds for one configuration; None when it is already TS (L = 0)."""
    big_l = tc.hardest_triplet(x, lab).value
    if big_l <= 0.0:
        return None
    ev = Evaluation(family, x, lab, big_l)
    ev.lp = iso_lower_bound_lp(x, lab, max_points=16)
    extra: list[tuple[F64, str]] = []
    budget = cfg.line_lps if line_lps is None else line_lps
    if x.shape[1] == 1 and budget > 0:
        line = iso_distance_line(x, lab, max_lps=budget)
        ev.line_lower, ev.line_exact = line.lower, line.exact
        extra.append((line.Y, "line_bb"))
    if upper:
        ev.upper, ev.Y, ev.upper_method = best_upper(x, lab, cfg, seeds, extra)
    return ev
