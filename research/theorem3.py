"""Is ``d_iso(f, F_TS) <= 2 L``? A search for counterexamples to the upper
half of Theorem 3 of seed paper 001 (``L`` is the hardest-triplet value).

For many small labelled configurations (N = 3..10, n = 1..3, 2-4 classes,
random and adversarial families) it computes

* ``L`` (:func:`tripletcore.hardest_triplet`);
* certified lower bounds on ``d_iso(f, F_TS)``: ``L/2``, the semimetric LP of
  :mod:`tripletcore.theory.lp` (always in ``[L/2, L]``, so it can never refute
  the claim), and, on the line (n = 1), the exact value over all class
  orderings, which could;
* an upper bound ``d_iso(X, Y)`` from explicit Triplet-Separated ``Y``
  (verified by the exact checker): the lead solver
  :func:`tripletcore.theory.nearest_triplet_separated` when it imports (else
  the collapsed configurations), polished by SLSQP on the exact minimax
  problem, and the line optimum for n = 1.

Then hill climbing over ``X`` (and occasionally a label) from the worst
cases maximises ``LP / L`` (how far the relaxation gets above ``L/2``), the
certified ``lower / L`` on the line (a value > 2 refutes the claim) and
``upper / L`` (values near 2 would point to where a counterexample might
live). Outputs in ``--out``: ``summary.json``, ``worst_*.npz`` and
``ratios.png``; ``research/theorem3.md`` discusses the results.

Run ``python -m research.theorem3 [--quick] [--seed S] [--out DIR]`` from the
repository root.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

import tripletcore as tc
from tripletcore.theory.lp import iso_distance_line, iso_lower_bound_lp

from .common import log_to_stderr

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Solver = Callable[[F64, I64, int, int], tuple[F64, str]]

# ``lower > (1 + _CLAIM_SLACK) 2 L`` counts as a counterexample: L itself is
# a float64 value, so a ratio of 2 up to rounding is no evidence.
_CLAIM_SLACK = 1e-9


@dataclass(frozen=True)
class SearchConfig:
    """Sizes of the search; :meth:`quick` is the CI preset (< 20 s)."""

    configs: int = 240
    max_points: int = 10
    solver_steps: int = 300
    line_lps: int = 200  # LP budget of the line branch and bound
    climb_line_lps: int = 80
    polish_iter: int = 100
    lower_starts: int = 6
    lower_steps: int = 40
    upper_starts: int = 4
    upper_steps: int = 20
    lp_starts: int = 4
    lp_steps: int = 60
    final_seeds: int = 2
    worst_kept: int = 5

    @classmethod
    def quick(cls) -> SearchConfig:
        return cls(
            configs=16,
            max_points=7,
            solver_steps=80,
            line_lps=60,
            climb_line_lps=30,
            polish_iter=60,
            lower_starts=2,
            lower_steps=6,
            upper_starts=1,
            upper_steps=3,
            lp_starts=1,
            lp_steps=5,
            final_seeds=1,
            worst_kept=3,
        )


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
        r = nearest_triplet_separated(x, lab, "iso", steps=steps, seed=seed)
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


def has_triplet(lab: I64) -> bool:
    _, counts = np.unique(lab, return_counts=True)
    return counts.size >= 2 and int(counts.max()) >= 2


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


# ---------------------------------------------------------------- configurations


def _labels(rng: np.random.Generator, m: int, k: int) -> I64:
    while True:
        lab = rng.integers(0, k, m).astype(np.int64)
        if has_triplet(lab):
            return lab


def _embed(line: F64, n: int, rng: np.random.Generator) -> F64:
    """Points given by 1-D coordinates, placed on a random line in R^n."""
    u = rng.standard_normal(n)
    return np.outer(line, u / np.linalg.norm(u))


def family_names() -> tuple[str, ...]:
    return (
        "gaussian",
        "line",
        "near_dups",
        "surrounded",
        "alternating",
        "clusters",
        "blocks",
        "hub",
        "chain",
    )


def make_config(kind: str, rng: np.random.Generator, max_points: int) -> tuple[F64, I64]:
    """One labelled configuration of the family ``kind`` (N <= max_points)."""
    m = int(rng.integers(3, max_points + 1))
    n = int(rng.integers(1, 4))
    k = int(rng.integers(2, 5))
    if kind == "gaussian":
        return rng.standard_normal((m, n)), _labels(rng, m, k)
    if kind == "line":
        return _embed(rng.uniform(0.0, 1.0, m), n, rng), _labels(rng, m, k)
    if kind == "near_dups":
        base = rng.standard_normal((max(2, m // 2), n))
        x = base[rng.integers(0, base.shape[0], m)] + 1e-3 * rng.standard_normal((m, n))
        return x, _labels(rng, m, k)
    if kind == "surrounded":
        # class 0 in a small ball; the others around it, slightly too close
        inner = max(2, m // 3)
        r = 1.0
        x = np.empty((m, n))
        x[:inner] = rng.uniform(-r, r, (inner, n)) / math.sqrt(n)
        dirs = rng.standard_normal((m - inner, n))
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
        x[inner:] = dirs * rng.uniform(0.7 * r, 1.6 * r, (m - inner, 1))
        lab = np.concatenate([np.zeros(inner), 1 + rng.integers(0, k - 1, m - inner)])
        return x, lab.astype(np.int64)
    if kind == "alternating":
        # a chain with classes 0,1,..,k-1,0,1,.. (zig-zag off the line for n > 1)
        x = np.zeros((m, n))
        x[:, 0] = np.arange(m) + 0.2 * rng.standard_normal(m)
        if n > 1:
            x[:, 1] = 0.5 * (np.arange(m) % 2) * rng.uniform(0.0, 1.0)
        return x, (np.arange(m) % k).astype(np.int64)
    if kind == "clusters":
        # k balls of radius 1 whose centres are barely 2 apart: small violations
        kk = min(k, m - 1)
        centres = rng.standard_normal((kk, n))
        centres *= 2.0 / max(1e-9, _min_gap(centres)) * rng.uniform(0.8, 1.1)
        lab = np.concatenate([np.arange(kk), rng.integers(0, kk, m - kk)]).astype(np.int64)
        offs = rng.standard_normal((m, n))
        offs /= np.maximum(np.linalg.norm(offs, axis=1, keepdims=True), 1e-12)
        return centres[lab] + offs * rng.uniform(0.5, 1.0, (m, 1)), lab
    if kind == "blocks":
        # classes as intervals of length 1 with gaps 1 - eps: every violation is eps
        # but they chain along the whole line
        kk = min(k, m // 2)
        sizes = np.full(kk, m // kk)
        sizes[: m % kk] += 1
        eps = rng.uniform(0.01, 0.3)
        coords: list[float] = []
        labs: list[int] = []
        start = 0.0
        for c in range(len(sizes)):
            for t in np.linspace(0.0, 1.0, int(sizes[c])):
                coords.append(start + float(t))
                labs.append(c % 2 if rng.uniform() < 0.5 else c)
            start += 2.0 - eps
        lab = np.asarray(labs, dtype=np.int64)
        if not has_triplet(lab):
            lab = np.arange(m, dtype=np.int64) // 2 % max(2, kk)
        return _embed(np.asarray(coords), n, rng), lab
    if kind == "hub":
        # one point of class 1 coinciding with a point of class 0 in the middle
        # of class 0: every anchor sees a negative at distance ~0 (cf. docs)
        x = rng.standard_normal((m, n))
        lab = np.zeros(m, dtype=np.int64)
        lab[-1] = 1
        x[-1] = x[0] + 1e-6 * rng.standard_normal(n)
        if k > 2 and m > 4:
            lab[1:3] = 2
        return x, lab
    if kind == "chain":
        # pairs of one class 2 apart with a point of another class in between,
        # the pairs 1 apart: the pattern of the worst line cases (docs)
        pairs = max(1, min(3, m // 3))
        coords, labs = [], []
        for k in range(pairs):
            coords += [3.0 * k, 3.0 * k + 1.0, 3.0 * k + 2.0]
            labs += [k, pairs + k if rng.uniform() < 0.7 else int(rng.integers(0, pairs)), k]
        line = np.asarray(coords) + rng.uniform(0.0, 0.15) * rng.standard_normal(len(coords))
        lab = np.asarray(labs, dtype=np.int64)
        if not has_triplet(lab):
            lab[1] = pairs
        return _embed(line, n, rng), lab
    raise ValueError(f"unknown family {kind!r}")


def _min_gap(c: F64) -> float:
    if c.shape[0] < 2:
        return 1.0
    d = np.sqrt(((c[:, None] - c[None]) ** 2).sum(axis=2))
    return float(d[np.triu_indices(c.shape[0], 1)].min())


def hand_cases() -> list[tuple[str, F64, I64]]:
    """Configurations worked out by hand in ``research/theorem3.md``."""
    return [
        ("hand:line3", np.array([[0.0], [2.0], [1.0]]), np.array([0, 0, 1])),
        ("hand:line4", np.array([[0.0], [1.0], [1.0], [2.0]]), np.array([0, 0, 1, 0])),
        (
            "hand:line4_in_plane",
            np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 0.0], [2.0, 0.0]]),
            np.array([0, 0, 1, 0]),
        ),
        # a pair 2 apart around a singleton, twice: 1.5 L on the line
        ("hand:chain2", np.arange(6.0)[:, None], np.array([0, 2, 0, 1, 3, 1])),
        (
            "hand:chain2_in_plane",
            np.column_stack([np.arange(6.0), np.zeros(6)]),
            np.array([0, 2, 0, 1, 3, 1]),
        ),
    ]


def initial_configs(cfg: SearchConfig, rng: np.random.Generator) -> Iterator[tuple[str, F64, I64]]:
    yield from hand_cases()
    kinds = family_names()
    for i in range(cfg.configs):
        kind = kinds[i % len(kinds)]
        x, lab = make_config(kind, rng, cfg.max_points)
        if has_triplet(lab):
            yield kind, np.ascontiguousarray(x, dtype=np.float64), lab


# ---------------------------------------------------------------- local search


def perturb(x: F64, lab: I64, rng: np.random.Generator) -> tuple[F64, I64]:
    """A random move: jitter everything, move one point, or relabel one point."""
    scale = float(np.sqrt(((x - x.mean(axis=0)) ** 2).sum(axis=1).mean())) or 1.0
    y, new = x.copy(), lab.copy()
    u = rng.uniform()
    if u < 0.5:
        y += float(rng.choice([0.2, 0.05, 0.01])) * scale * rng.standard_normal(x.shape)
    elif u < 0.9:
        i = int(rng.integers(0, x.shape[0]))
        y[i] += float(rng.choice([0.5, 0.1, 0.02])) * scale * rng.standard_normal(x.shape[1])
    else:
        i = int(rng.integers(0, x.shape[0]))
        new[i] = int(rng.integers(0, int(lab.max()) + 2))
        if not has_triplet(new):
            new = lab.copy()
    return y, new


def climb(
    start: Evaluation,
    objective: str,
    steps: int,
    cfg: SearchConfig,
    rng: np.random.Generator,
) -> Evaluation:
    """Hill climbing on ``objective`` ("lp", "lower" or "upper", over ``L``);
    accepts ties so that plateaus are crossed. The upper bound is evaluated
    at full strength: a weaker solver makes every move look like progress."""
    cur = start
    for _ in range(steps):
        y, lab = perturb(cur.X, cur.labels, rng)
        ev = evaluate(
            start.family,
            y,
            lab,
            cfg,
            upper=objective == "upper",
            line_lps=0 if objective == "lp" else cfg.climb_line_lps,
        )
        if ev is not None and ev.ratio(objective) >= cur.ratio(objective):
            cur = ev
    return cur


# ---------------------------------------------------------------- reporting


@dataclass
class Report:
    seed: int
    quick: bool
    solver: str
    evaluated: list[Evaluation] = field(default_factory=list)
    climbed_lp: list[Evaluation] = field(default_factory=list)
    climbed_lower: list[Evaluation] = field(default_factory=list)
    climbed_upper: list[Evaluation] = field(default_factory=list)
    seconds: float = 0.0

    def everything(self) -> list[Evaluation]:
        return self.evaluated + self.climbed_lp + self.climbed_lower + self.climbed_upper


def command(seed: int, quick: bool, out: Path) -> str:
    q = " --quick" if quick else ""
    return f"python -m research.theorem3{q} --seed {seed} --out {out}"


def check_counterexample(ev: Evaluation, rng: np.random.Generator) -> dict[str, Any]:
    """Independent checks of a certified ``lower > 2 L``: the configuration is
    not TS, the L/2 bound agrees in sign, the line value over every
    permutation, and stability under tiny perturbations."""
    x, lab = ev.X, ev.labels
    out: dict[str, Any] = {
        "is_ts": bool(tc.is_triplet_separated(x, lab)),
        "half_L": ev.hardest / 2.0,
    }
    if x.shape[1] == 1 and x.shape[0] <= 7:
        out["line_all_permutations"] = iso_distance_line(
            x, lab, all_orderings=True, max_lps=3000
        ).lower
    scale = float(np.abs(x).max()) or 1.0
    ratios = []
    for _ in range(3):
        y = x + 1e-9 * scale * rng.standard_normal(x.shape)
        e = evaluate("check", y, lab, SearchConfig(), upper=False, line_lps=20000)
        if e is not None:
            ratios.append(e.ratio("lower"))
    out["perturbed_lower_over_L"] = ratios
    return out


def write_outputs(
    report: Report, out: Path, cfg: SearchConfig, rng: np.random.Generator
) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    allev = report.everything()
    worst: list[dict[str, Any]] = []
    for what in ("lower", "lp", "line", "upper"):
        ranked = sorted(
            (e for e in allev if not math.isnan(e.ratio(what))),
            key=lambda e: -e.ratio(what),
        )
        for rank, ev in enumerate(_distinct(ranked)[: cfg.worst_kept], 1):
            name = f"worst_{what}_{rank}.npz"
            np.savez(
                out / name,
                X=ev.X,
                labels=ev.labels,
                Y=ev.Y if ev.Y is not None else np.zeros((0, ev.X.shape[1])),
                L=ev.hardest,
                lp_lower=ev.lp,
                line_lower=ev.line_lower,
                upper=ev.upper,
            )
            worst.append({"by": what, "rank": rank, "file": name, **ev.summary()})

    def top(what: str) -> float | None:
        vals = [e.ratio(what) for e in allev if not math.isnan(e.ratio(what))]
        return max(vals) if vals else None

    families: dict[str, dict[str, Any]] = {}
    for ev in report.evaluated:
        f = families.setdefault(ev.family, {"count": 0, "lp_over_L": 0.0, "upper_over_L": 0.0})
        f["count"] += 1
        f["lp_over_L"] = max(f["lp_over_L"], ev.ratio("lp"))
        f["upper_over_L"] = max(f["upper_over_L"], ev.ratio("upper"))

    dims: dict[str, dict[str, Any]] = {}
    for n in sorted({int(e.X.shape[1]) for e in allev}):
        group = [e for e in allev if e.X.shape[1] == n]
        dims[str(n)] = {
            "count": len(group),
            **{f"{w}_over_L": _max(group, w) for w in ("lp", "lower", "upper")},
            # the certified interval [lower, upper] closed to 1e-5 (relative)
            "solved": sum(e.upper <= e.lower * (1.0 + 1e-5) for e in group),
        }

    counter = [e for e in allev if e.lower > 2.0 * e.hardest * (1.0 + _CLAIM_SLACK)]
    summary: dict[str, Any] = {
        "command": command(report.seed, report.quick, out),
        "seed": report.seed,
        "quick": report.quick,
        "upper_solver": report.solver,
        "configurations": len(allev),
        "initial_configurations": len(report.evaluated),
        "max_ratio": {
            "lp_over_L": top("lp"),
            "line_over_L": top("line"),
            "lower_over_L": top("lower"),
            "upper_over_L": top("upper"),
        },
        "counterexamples": [
            {**e.summary(), "checks": check_counterexample(e, rng)} for e in counter
        ],
        "by_dimension": dims,
        "families": families,
        "worst": worst,
        "all": [
            {
                "family": e.family,
                "N": int(e.X.shape[0]),
                "n": int(e.X.shape[1]),
                "L": e.hardest,
                "lp_over_L": e.ratio("lp"),
                "lower_over_L": e.ratio("lower"),
                "upper_over_L": e.ratio("upper"),
            }
            for e in allev
        ],
        "seconds": report.seconds,
    }
    _plot(report, out / "ratios.png")
    (out / "summary.json").write_text(json.dumps(summary, indent=1, allow_nan=False))
    return summary


def _distinct(evs: Sequence[Evaluation]) -> list[Evaluation]:
    """Drop repeats (a climb that never moved returns its start)."""
    out: list[Evaluation] = []
    for ev in evs:
        if not any(
            o.X.shape == ev.X.shape
            and np.array_equal(o.labels, ev.labels)
            and np.allclose(o.X, ev.X, rtol=0.0, atol=1e-12)
            for o in out
        ):
            out.append(ev)
    return out


def _plot(report: Report, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    allev = report.everything()
    fig, ax = plt.subplots(figsize=(7.5, 4.0))
    # bins centred on 0.5, 1, 1.5, 2 (values sit exactly there)
    bins = (np.arange(0.0, 2.3, 0.05) - 0.025).tolist()
    for what, label in (
        ("lp", "certified semimetric LP / L"),
        ("line", "certified line bound / L (n = 1)"),
        ("upper", "verified TS configuration / L"),
    ):
        vals = [e.ratio(what) for e in allev if not math.isnan(e.ratio(what))]
        if vals:
            ax.hist(np.clip(vals, 0.0, 2.2), bins=bins, alpha=0.55, label=f"{label} ({len(vals)})")
    for v, style in ((0.5, ":"), (1.0, "--"), (2.0, "-")):
        ax.axvline(v, color="k", linestyle=style, linewidth=0.8)
    ax.set_xlabel("ratio to the hardest-triplet value L  (claim: d_iso(f, F_TS) <= 2 L)")
    ax.set_ylabel("configurations")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ---------------------------------------------------------------- driver


def run(
    out: Path,
    cfg: SearchConfig,
    seed: int = 0,
    quick: bool = False,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The whole search; writes the outputs and returns the JSON summary."""
    say = log or log_to_stderr
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    solver = "tripletcore.theory.nearest_triplet_separated" if lead_solver() else "stand-in"
    report = Report(seed, quick, solver)
    say(f"theorem3: upper bounds from {solver} (+ SLSQP polish), seed {seed}")
    configs = list(initial_configs(cfg, rng))
    for i, (kind, x, lab) in enumerate(configs, 1):
        ev = evaluate(kind, x, lab, cfg, seeds=(seed,))
        if ev is not None:
            report.evaluated.append(ev)
        if i % 10 == 0 or i == len(configs):
            say(
                f"  [{i:4d}/{len(configs)}] max LP/L {_max(report.evaluated, 'lp'):.3f}  "
                f"max lower/L {_max(report.evaluated, 'lower'):.3f}  "
                f"max upper/L {_max(report.evaluated, 'upper'):.3f}  "
                f"({time.perf_counter() - t0:.1f}s)"
            )

    for objective, starts, steps, sink in (
        ("lp", cfg.lp_starts, cfg.lp_steps, report.climbed_lp),
        ("lower", cfg.lower_starts, cfg.lower_steps, report.climbed_lower),
        ("upper", cfg.upper_starts, cfg.upper_steps, report.climbed_upper),
    ):
        for j, start in enumerate(climb_starts(report.evaluated, objective, starts), 1):
            ev = climb(start, objective, steps, cfg, rng)
            # re-evaluate the end point at full strength (and more seeds for the upper bound)
            full = evaluate(
                ev.family + f"+climb_{objective}",
                ev.X,
                ev.labels,
                cfg,
                seeds=tuple(range(seed, seed + cfg.final_seeds)),
            )
            if full is not None:
                sink.append(full)
                say(
                    f"  climb {objective} [{j}/{starts}] {start.family}: "
                    f"{start.ratio(objective):.3f} -> {full.ratio(objective):.3f}  "
                    f"({time.perf_counter() - t0:.1f}s)"
                )

    report.seconds = time.perf_counter() - t0
    summary = write_outputs(report, out, cfg, rng)
    m = summary["max_ratio"]
    say(
        f"theorem3: {summary['configurations']} configurations; max LP/L {m['lp_over_L']:.4f}, "
        f"max certified lower/L {m['lower_over_L']:.4f}, max upper/L {m['upper_over_L']:.4f}; "
        f"{len(summary['counterexamples'])} certified counterexample(s); "
        f"{report.seconds:.1f}s; outputs in {out}"
    )
    return summary


def climb_starts(evs: Sequence[Evaluation], objective: str, count: int) -> list[Evaluation]:
    """The best ``count`` configurations for ``objective``, taking the
    dimensions in turn (so that a plateau of equal ratios in one dimension
    does not use up every start) and one per family within each. The lower
    bound climbs on the line only: elsewhere it is the LP, at most L."""
    per_dim: dict[int, list[Evaluation]] = {}
    pool = [e for e in evs if objective != "lower" or not math.isnan(e.line_lower)]
    for ev in sorted(pool, key=lambda e: -e.ratio(objective)):
        group = per_dim.setdefault(int(ev.X.shape[1]), [])
        if all(g.family != ev.family for g in group):
            group.append(ev)
    queues = [per_dim[k] for k in sorted(per_dim)]
    out: list[Evaluation] = []
    while len(out) < count and any(queues):
        for q in queues:
            if q and len(out) < count:
                out.append(q.pop(0))
    return out


def _max(evs: Sequence[Evaluation], what: str) -> float:
    vals = [e.ratio(what) for e in evs if not math.isnan(e.ratio(what))]
    return max(vals) if vals else math.nan


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="small search (< 20 s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("theorem3-search"))
    args = parser.parse_args(argv)
    cfg = SearchConfig.quick() if args.quick else SearchConfig()
    run(args.out, cfg, seed=args.seed, quick=args.quick)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
