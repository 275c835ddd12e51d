"""Diagnostics of a labelled embedding: retrieval quality, Triplet-Separation,
distances to the Triplet-Separated set and collapse indicators.

Used by ``tripletcore analyze`` and, during training, by ``tripletcore demo``.
Every function takes NumPy arrays and returns plain Python values (JSON-ready).
"""

from __future__ import annotations

import importlib
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import numpy.typing as npt

from ..evaluation import retrieval_metrics
from ..geometry import (
    class_hausdorff,
    diameter,
    hardest_triplet,
    isometric_error,
    sup_displacement,
    thickness,
)
from ..loss import triplet_margin_loss

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

# ts_distance_bounds costs O(steps * N^2 * d): on all points only up to this N.
BOUNDS_MAX_POINTS = 100
# thickness above this dimension is a slow local search with a loose lower bound.
THICKNESS_MAX_DIM = 8


def has_triplet(labels: I64) -> bool:
    """At least two classes, one of them with two or more points."""
    _, counts = np.unique(labels, return_counts=True)
    return len(counts) >= 2 and int(counts.max()) >= 2


def effective_rank(X: F64) -> float:
    """exp(entropy of the normalised singular values) of the centred rows
    (Roy and Vetterli, 2007): about d for an isotropic cloud, 1 for points on
    a line, 0 when every row is the same point."""
    s = np.linalg.svd(X - X.mean(axis=0), compute_uv=False)
    total = float(s.sum())
    if total <= 1e-12 * max(1.0, float(np.abs(X).max())):
        return 0.0
    p = s[s > 0] / total
    return float(np.exp(-np.sum(p * np.log(p))))


def spread(X: F64) -> float:
    """Mean distance of the rows to their centroid (0 for total collapse; close
    to 1 for unit vectors spread over the sphere)."""
    return float(np.linalg.norm(X - X.mean(axis=0), axis=1).mean())


def collapse_indicators(X: F64, labels: I64, margin: float = 0.2) -> dict[str, float]:
    """Cheap indicators (no thickness): spread, effective rank, and the
    fraction of anchors whose batch-hard loss at ``margin`` is within 10% of
    the margin, i.e. ``|d(a,p) - d(a,n)| <= 0.1 margin``: 1 for a collapsed
    embedding (FaceNet's symptom)."""
    er = effective_rank(X)
    out = {
        "spread": spread(X),
        "effective_rank": er,
        "effective_rank_frac": er / X.shape[1],
        "margin": margin,
    }
    if has_triplet(labels):
        per, _ = triplet_margin_loss(
            X, labels, margin=margin, mining="batch_hard", reduction="none"
        )
        out["at_margin"] = float(np.mean(np.abs(np.asarray(per) - margin) <= 0.1 * margin))
    return out


def separation(X: F64, labels: I64) -> dict[str, Any]:
    """Definition 1 and the hardest triplet (eq. 38), with the lower bounds it
    gives on the distances to the Triplet-Separated set: ``d_iso >= L/2`` and
    ``d_haus >= L/4`` where ``L = max(0, value)`` (field notes, section 1)."""
    h = hardest_triplet(X, labels)
    big_l = max(0.0, h.value)
    d_ap = float(np.linalg.norm(X[h.anchor] - X[h.positive]))
    d_an = float(np.linalg.norm(X[h.anchor] - X[h.negative]))
    diam = diameter(X).distance
    return {
        "triplet_separated": bool(h.value <= 0.0),
        "hardest_value": h.value,
        "anchor": h.anchor,
        "positive": h.positive,
        "negative": h.negative,
        "d_ap": d_ap,
        "d_an": d_an,
        "L": big_l,
        "L_over_diameter": big_l / diam if diam > 0 else 0.0,
        "diameter": diam,
        "iso_lower": big_l / 2.0,
        "haus_lower": big_l / 4.0,
    }


def retrieval(X: F64, labels: I64) -> dict[str, Any]:
    m = retrieval_metrics(X, labels)
    return {
        "recall_at": {str(k): v for k, v in m.recall_at.items()},
        "precision_at_1": m.precision_at_1,
        "r_precision": m.r_precision,
        "map_at_r": m.map_at_r,
        "nmi": m.nmi,
        "queries": m.queries,
    }


def ts_bounds(
    X: F64, labels: I64, *, sample: int | None, steps: int, seed: int, progress: bool = False
) -> dict[str, Any]:
    """:func:`tripletcore.theory.ts_distance_bounds` on all points (N up to
    ``BOUNDS_MAX_POINTS``) or on a random subsample of ``sample`` points.

    On a subsample the intervals are those of the subsample's configuration.
    Its ``d_iso`` lower bound is still a lower bound for the whole set
    (restricting a Triplet-Separated map to a subset keeps it separated and
    cannot raise ``d_iso``); its upper bounds say nothing about the whole set.
    ``progress=True`` shows a progress bar with an estimate of the time left
    (on a terminal, when tqdm is installed).
    """
    from ..theory import ts_distance_bounds

    n = X.shape[0]
    if sample is None and n > BOUNDS_MAX_POINTS:
        return {
            "computed": False,
            "reason": f"N = {n} > {BOUNDS_MAX_POINTS} (cost O(steps N^2 d)); "
            "use --bounds-sample M to bound a random subsample",
        }
    rows = np.arange(n)
    if sample is not None and sample < n:
        rows = _subsample(labels, sample, np.random.default_rng(seed))
    x, lab = X[rows], labels[rows]
    if not has_triplet(lab):
        return {"computed": False, "reason": "the subsample has no triplet"}
    t0 = time.perf_counter()
    with _progress_bar(4 * steps, f"bounds on {len(rows)} points", progress) as tick:
        b = ts_distance_bounds(x, lab, steps=steps, seed=seed, progress=tick)
    return {
        "computed": True,
        "points": int(len(rows)),
        "subsample": bool(len(rows) < n),
        "steps": steps,
        "seconds": time.perf_counter() - t0,
        "iso": [b.iso_lower, b.iso_upper],
        "haus": [b.haus_lower, b.haus_upper],
        "lp": b.lp,
    }


@contextmanager
def _progress_bar(total: int, what: str, show: bool) -> Iterator[Callable[[int], None] | None]:
    """A tqdm bar on stderr (only on a terminal) ticked by the callback it yields."""
    try:
        tqdm = importlib.import_module("tqdm").tqdm
    except ImportError:
        show = False
    if not show or total == 0:
        yield None
        return
    bar = tqdm(total=total, desc=what, unit="step", disable=None, leave=False)
    try:
        yield bar.update
    finally:
        bar.close()


def _subsample(labels: I64, m: int, rng: np.random.Generator) -> I64:
    """``m`` random rows, at least two of the classes that have two or more
    points first, so the subsample keeps a triplet where it can."""
    classes, counts = np.unique(labels, return_counts=True)
    m = max(m, 1)
    seeds: list[int] = []
    for c in rng.permutation(classes[counts >= 2])[:2]:
        seeds.extend(rng.choice(np.flatnonzero(labels == c), 2, replace=False).tolist())
    if len(seeds) < 4:  # one class with pairs: add a point of another class
        others = np.flatnonzero(~np.isin(np.arange(len(labels)), seeds))
        if len(others):
            seeds.append(int(rng.choice(others)))
    seeds = seeds[:m]
    rest = np.setdiff1d(np.arange(len(labels)), seeds)
    extra = rng.choice(rest, max(0, m - len(seeds)), replace=False)
    return np.sort(np.concatenate([np.asarray(seeds, np.int64), extra.astype(np.int64)]))


def thickness_report(X: F64, mode: str) -> dict[str, Any]:
    """Thickness (Definition 3) when ``mode == "on"``, or ``"auto"`` and
    d <= ``THICKNESS_MAX_DIM``; exact in 1-D and 2-D, a certified interval above."""
    d = X.shape[1]
    if mode == "off" or (mode == "auto" and d > THICKNESS_MAX_DIM):
        why = "off" if mode == "off" else f"d = {d} > {THICKNESS_MAX_DIM}: slow; --thickness on"
        return {"computed": False, "reason": why}
    t = thickness(X)
    return {"computed": True, "lower": t.lower, "upper": t.upper, "exact": t.exact}


def compare(X: F64, other: F64, labels: I64) -> dict[str, Any]:
    """``d_iso`` (any dimensions), and ``d_haus``/``d_inf`` when the dimensions
    agree, between two embeddings of the same points."""
    iso = isometric_error(X, other)
    out: dict[str, Any] = {"isometric_error": {"distance": iso.distance, "i": iso.i, "j": iso.j}}
    if X.shape[1] == other.shape[1]:
        ch = class_hausdorff(X, other, labels)
        out["class_hausdorff"] = {"distance": ch.distance, "label": ch.label, "i": ch.i, "j": ch.j}
        sd = sup_displacement(X, other)
        out["sup_displacement"] = {"distance": sd.distance, "row": sd.row}
    else:
        out["class_hausdorff"] = None
        out["sup_displacement"] = None
    return out


def analyze(
    X: F64,
    labels: I64,
    *,
    other: F64 | None = None,
    bounds: bool = True,
    bounds_sample: int | None = None,
    bounds_steps: int = 1500,
    thickness_mode: str = "auto",
    margin: float = 0.2,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, Any]:
    """Everything ``tripletcore analyze`` reports, as a JSON-ready dict
    (``progress``: a progress bar for the slow bounds)."""
    classes, counts = np.unique(labels, return_counts=True)
    out: dict[str, Any] = {
        "points": int(X.shape[0]),
        "dim": int(X.shape[1]),
        "classes": int(len(classes)),
        "class_size": [int(counts.min()), int(counts.max())],
    }
    out["retrieval"] = retrieval(X, labels)
    out["separation"] = separation(X, labels)
    if bounds:
        out["ts_bounds"] = ts_bounds(
            X, labels, sample=bounds_sample, steps=bounds_steps, seed=seed, progress=progress
        )
    else:
        out["ts_bounds"] = {"computed": False, "reason": "--no-bounds"}
    out["collapse"] = collapse_indicators(X, labels, margin)
    out["collapse"]["thickness"] = thickness_report(X, thickness_mode)
    out["compare"] = None if other is None else compare(X, other, labels)
    return out


def json_safe(v: Any) -> Any:
    """``v`` with every non-finite float (which JSON cannot hold) as ``None``,
    through nested dicts, lists and tuples."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: json_safe(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [json_safe(x) for x in v]
    return v


def _f(v: float) -> str:
    return f"{v:.4g}" if math.isfinite(v) else str(v)


def format_text(r: dict[str, Any], name: str = "embeddings") -> str:
    """The human-readable form of :func:`analyze`'s result."""
    lines = [
        f"{name}: N = {r['points']} points, d = {r['dim']}, {r['classes']} classes "
        f"(sizes {r['class_size'][0]}-{r['class_size'][1]})",
        "",
        "retrieval (each point queried against the others, exact neighbours)",
    ]
    rt = r["retrieval"]
    recalls = "  ".join(f"R@{k} {_f(v)}" for k, v in rt["recall_at"].items())
    lines.append(f"  {recalls}")
    lines.append(
        f"  MAP@R {_f(rt['map_at_r'])}  R-precision {_f(rt['r_precision'])}  "
        f"NMI {_f(rt['nmi'])}  ({rt['queries']} queries)"
    )
    s = r["separation"]
    lines += [
        "",
        "Triplet-Separation (Definition 1: d(a,p) <= d(a,n) for every triplet)",
        f"  separated: {'yes' if s['triplet_separated'] else 'no'}",
        f"  hardest triplet (a, p, n) = ({s['anchor']}, {s['positive']}, {s['negative']}): "
        f"d(a,p) - d(a,n) = {_f(s['d_ap'])} - {_f(s['d_an'])} = {_f(s['hardest_value'])}",
        f"  L = max(0, hardest) = {_f(s['L'])}  ({_f(s['L_over_diameter'])} of the diameter "
        f"{_f(s['diameter'])})",
        f"  distance to the Triplet-Separated set: d_iso >= L/2 = {_f(s['iso_lower'])}, "
        f"d_haus >= L/4 = {_f(s['haus_lower'])}",
    ]
    b = r["ts_bounds"]
    if b["computed"]:
        where = (
            f"a random subsample of {b['points']} points (its intervals; the d_iso lower "
            "bound also holds for the whole set, the upper bounds do not)"
            if b["subsample"]
            else f"all {b['points']} points"
        )
        lines += [
            f"  certified bounds (ts_distance_bounds on {where}, {b['steps']} steps, "
            f"{b['seconds']:.1f} s{', LP' if b['lp'] else ''}):",
            f"    {_f(b['iso'][0])} <= d_iso(f, F_TS) <= {_f(b['iso'][1])}",
            f"    {_f(b['haus'][0])} <= d_haus(f, F_TS) <= {_f(b['haus'][1])}",
        ]
    else:
        lines.append(f"  certified bounds: skipped ({b['reason']})")
    c = r["collapse"]
    lines += [
        "",
        "collapse indicators",
        f"  spread (mean distance to the centroid): {_f(c['spread'])}",
        f"  effective rank: {_f(c['effective_rank'])} of {r['dim']} "
        f"({_f(c['effective_rank_frac'])})",
    ]
    if "at_margin" in c:
        lines.append(
            f"  fraction of anchors at the margin (|d(a,p) - d(a,n)| <= "
            f"{_f(0.1 * c['margin'])}): {c['at_margin']:.3f} ({100 * c['at_margin']:.1f}%)"
        )
    t = c["thickness"]
    if t["computed"]:
        exact = "exact" if t["exact"] else "certified interval"
        lines.append(f"  thickness: [{_f(t['lower'])}, {_f(t['upper'])}] ({exact})")
    else:
        lines.append(f"  thickness: skipped ({t['reason']})")
    cmp = r["compare"]
    if cmp is not None:
        iso = cmp["isometric_error"]
        lines += [
            "",
            "against the other embedding of the same points",
            f"  d_iso = {_f(iso['distance'])} at the pair ({iso['i']}, {iso['j']})",
        ]
        if cmp["class_hausdorff"] is None:
            lines.append("  d_haus, d_inf: not defined (the dimensions differ)")
        else:
            ch, sd = cmp["class_hausdorff"], cmp["sup_displacement"]
            lines.append(
                f"  d_haus = {_f(ch['distance'])} (class {ch['label']}, rows {ch['i']}, {ch['j']})"
            )
            lines.append(f"  d_inf = {_f(sd['distance'])} (row {sd['row']})")
    return "\n".join(lines)
