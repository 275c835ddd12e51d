"""Figures 2-6 of the seed paper (hard negative mining as minimising a
Hausdorff-like distance), redrawn with the library's exact geometry and the
solver :func:`tripletcore.theory.nearest_triplet_separated`, followed by the
collapse experiment of :mod:`research.collapse`.

Run ``python -m research.paper [--out DIR] [--quick] [--seed S]`` from the
repository root.
The paper does not give its toy coordinates; :data:`TOY_POINTS` are ours.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import numpy.typing as npt

import tripletcore as tc

from . import collapse
from .collapse import NearestTS, nearest_ts

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

# Fig. 2: three red points and two blue ones; blue point 3 sits inside the red
# triangle, so red anchor 1 is closer to it than to red point 0 (not Triplet-Separated).
TOY_POINTS: F64 = np.array([[0.0, 0.0], [2.0, 0.3], [0.9, 1.8], [1.1, 0.7], [2.9, 1.6]])
TOY_LABELS: I64 = np.array([0, 0, 0, 1, 1], dtype=np.int64)
COLORS = ("tab:red", "tab:blue")
# relative tolerance for "tied" discrepancies (Fig. 4) and coincident points (Fig. 6)
TIE_TOL = 1e-3
CLASS_NAMES = ("red", "blue")


@dataclass
class PaperReport:
    toy: F64
    toy_labels: I64
    toy_separated: bool
    hardest: tc.HardestTriplet
    haus: NearestTS  # f*_haus: objective "sup", value = d_inf(f, f*) = d_haus(f, f*)
    iso: NearestTS  # f*_iso: value = d_iso(f, f*)
    haus_class_hausdorff: float  # class_hausdorff(f, f*_haus), equals haus.value at an optimum
    iso_worst_pair: tuple[int, int]
    random_points: F64
    random_labels: I64
    collapse_fit: NearestTS
    spread_ratio: float  # mean pairwise distance of f* / that of f (Fig. 6)
    distinct: int  # distinct positions among f*'s 20 points (Fig. 6)
    area_ratio: float  # covariance-ellipse area of f* / that of f (Fig. 6)
    files: list[str]

    @property
    def lower_iso(self) -> float:
        return max(0.0, self.hardest.value) / 2

    @property
    def lower_haus(self) -> float:
        return max(0.0, self.hardest.value) / 4


# ---------------------------------------------------------------- drawing helpers


def ts_boundary_field(points: F64, xs: F64, ys: F64) -> F64:
    """``min_a (||x - a|| - R_a)`` on the grid ``xs x ys``, ``R_a`` the largest
    distance from ``a`` to another point of its class: a point of another class
    at ``x`` violates Triplet-Separation exactly where the field is negative."""
    gx, gy = np.meshgrid(xs, ys)
    field = np.full(gx.shape, np.inf)
    D = np.linalg.norm(points[:, None] - points[None], axis=2)
    for a, r in zip(points, D.max(axis=1), strict=True):
        field = np.minimum(field, np.hypot(gx - a[0], gy - a[1]) - r)
    return field


def distinct_points(P: F64, tol: float) -> int:
    """How many points remain when points closer than ``tol`` are merged
    (single linkage: connected components of the ``< tol`` graph)."""
    D = np.linalg.norm(P[:, None] - P[None], axis=2)
    seen = np.zeros(len(P), bool)
    count = 0
    for s in range(len(P)):
        if seen[s]:
            continue
        count += 1
        stack = [s]
        seen[s] = True
        while stack:
            i = stack.pop()
            for j in np.flatnonzero((D[i] < tol) & ~seen):
                seen[j] = True
                stack.append(int(j))
    return count


def _draw_boundaries(
    ax: Axes, Y: F64, labels: I64, lim: tuple[float, float, float, float], **kw: Any
) -> None:
    xs = np.linspace(lim[0], lim[1], 400)
    ys = np.linspace(lim[2], lim[3], 400)
    for c in np.unique(labels):
        pts = Y[labels == c]
        if len(pts) < 2:
            continue
        ax.contour(
            xs,
            ys,
            ts_boundary_field(pts, xs, ys),
            levels=[0.0],
            colors=[COLORS[int(c) % 2]],
            linestyles="dashed",
            **kw,
        )


def _limits(*arrays: F64, pad: float = 0.35) -> tuple[float, float, float, float]:
    allp = np.concatenate(arrays)
    lo, hi = allp.min(axis=0), allp.max(axis=0)
    span = float(max(hi - lo))
    return (
        float(lo[0]) - pad * span,
        float(hi[0]) + pad * span,
        float(lo[1]) - pad * span,
        float(hi[1]) + pad * span,
    )


def _points(
    ax: Axes,
    X: F64,
    labels: I64,
    marker: str = "o",
    size: float = 60,
    numbers: bool = True,
    **kw: Any,
) -> None:
    for c in np.unique(labels):
        m = labels == c
        ax.scatter(
            X[m, 0],
            X[m, 1],
            s=size,
            marker=marker,
            c=COLORS[int(c) % 2],
            zorder=3,
            edgecolors="k",
            linewidths=0.5,
            **kw,
        )
    if numbers:
        for i, p in enumerate(X):
            ax.annotate(str(i), p, xytext=(5, 5), textcoords="offset points", fontsize=9)


def _arrows(ax: Axes, X: F64, Y: F64, highlight: int = 3) -> None:
    lengths = np.linalg.norm(Y - X, axis=1)
    top = set(np.argsort(-lengths, kind="stable")[:highlight].tolist())
    for i, (a, b) in enumerate(zip(X, Y, strict=True)):
        if lengths[i] == 0:
            continue
        ax.annotate(
            "",
            xy=tuple(b),
            xytext=tuple(a),
            zorder=2,
            arrowprops={
                "arrowstyle": "->",
                "lw": 2.0 if i in top else 1.0,
                "color": "black" if i in top else "0.6",
            },
        )


def _ellipse(ax: Axes, P: F64, color: str, label: str, **kw: Any) -> float:
    """The 2-sigma covariance ellipse of ``P``; returns its area."""
    from matplotlib.patches import Ellipse

    cov = np.cov(P.T)
    vals, vecs = np.linalg.eigh(cov)
    vals = np.maximum(vals, 0.0)
    angle = float(np.degrees(np.arctan2(vecs[1, 1], vecs[0, 1])))
    w, h = 4 * np.sqrt(vals[1]), 4 * np.sqrt(vals[0])
    ax.add_patch(
        Ellipse(
            tuple(P.mean(axis=0)),
            float(w),
            float(h),
            angle=angle,
            fill=False,
            edgecolor=color,
            lw=2,
            label=label,
            **kw,
        )
    )
    return float(np.pi * w * h / 4)


def _legend_classes(ax: Axes, star: bool = False) -> None:
    from matplotlib.lines import Line2D

    handles = [
        Line2D([], [], marker="o", ls="", color=COLORS[c], label=f"f: class {CLASS_NAMES[c]}")
        for c in (0, 1)
    ]
    if star:
        handles += [
            Line2D(
                [],
                [],
                marker="*",
                ls="",
                ms=12,
                color=COLORS[c],
                label=f"f*: class {CLASS_NAMES[c]}",
            )
            for c in (0, 1)
        ]
    ax.legend(handles=handles, fontsize=8, loc="upper left")


# ---------------------------------------------------------------- the figures


def figures(out: Path, seed: int = 0) -> PaperReport:
    """Compute everything and write fig2-fig6 to ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    X, y = TOY_POINTS, TOY_LABELS
    files: list[str] = []

    def save(fig: Any, name: str) -> None:
        fig.tight_layout()
        path = out / name
        fig.savefig(path, dpi=100)
        plt.close(fig)
        files.append(str(path))

    hard = tc.hardest_triplet(X, y)
    haus = nearest_ts(X, y, "sup", seed=seed)
    iso = nearest_ts(X, y, "iso", seed=seed)
    iso_err = tc.isometric_error(X, iso.Y)

    save(_fig2_setup(X, y), "fig2_setup.png")
    fig, ch = _fig3_haus(X, y, hard, haus)
    save(fig, "fig3_haus.png")
    save(_fig4_iso(X, y, hard, iso, iso_err), "fig4_iso.png")
    save(_fig5_hardest(X, y, hard, haus, iso), "fig5_hardest.png")
    c = _fig6_collapse(seed)
    save(c.fig, "fig6_collapse.png")

    return PaperReport(
        toy=X,
        toy_labels=y,
        toy_separated=tc.is_triplet_separated(X, y),
        hardest=hard,
        haus=haus,
        iso=iso,
        haus_class_hausdorff=ch,
        iso_worst_pair=(iso_err.i, iso_err.j),
        random_points=c.points,
        random_labels=c.labels,
        collapse_fit=c.fit,
        spread_ratio=c.spread,
        distinct=c.distinct,
        area_ratio=c.area_ratio,
        files=files,
    )


def _fig2_setup(X: F64, y: I64) -> Figure:
    """Fig. 2: the set-up."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    lim = _limits(X)
    _points(ax, X, y)
    _draw_boundaries(ax, X, y, lim, linewidths=1.0, alpha=0.6)
    _legend_classes(ax)
    ax.set(xlim=lim[:2], ylim=lim[2:], aspect="equal")
    ax.set_title(
        f"Fig. 2: toy set, N = 5 in 2-D (Triplet-Separated: "
        f"{tc.is_triplet_separated(X, y)})\n"
        "dashed: Triplet-Separated boundary of each class",
        fontsize=9,
    )
    return fig


def _fig3_haus(X: F64, y: I64, hard: tc.HardestTriplet, haus: NearestTS) -> tuple[Figure, float]:
    """Fig. 3: f*_haus; also its class Hausdorff distance to f."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    lim = _limits(X, haus.Y)
    _draw_boundaries(ax, haus.Y, y, lim, linewidths=1.2)
    _arrows(ax, X, haus.Y)
    _points(ax, X, y, alpha=0.45)
    _points(ax, haus.Y, y, marker="*", size=220, numbers=False)
    _legend_classes(ax, star=True)
    ax.set(xlim=lim[:2], ylim=lim[2:], aspect="equal")
    ch = tc.class_hausdorff(X, haus.Y, y).distance
    ax.set_title(
        f"Fig. 3: f*_haus (dashed: its Triplet-Separated boundaries)\n"
        f"d_haus(f, F_TS) <= d_inf(f, f*) = {haus.value:.3f}   "
        f"[L/4 = {max(0.0, hard.value) / 4:.3f}]",
        fontsize=9,
    )
    return fig, ch


def _fig4_iso(
    X: F64, y: I64, hard: tc.HardestTriplet, iso: NearestTS, iso_err: tc.Attained
) -> Figure:
    """Fig. 4: pairwise distances under f and f*_iso."""
    import matplotlib.pyplot as plt

    pairs = list(combinations(range(len(X)), 2))
    dx = np.array([np.linalg.norm(X[i] - X[j]) for i, j in pairs])
    dy = np.array([np.linalg.norm(iso.Y[i] - iso.Y[j]) for i, j in pairs])
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    pos = np.arange(len(pairs))
    for k, (i, j) in enumerate(pairs):
        color = COLORS[int(y[i])] if y[i] == y[j] else "tab:purple"
        ax.plot([k, k], [dx[k], dy[k]], color="0.75", lw=1, zorder=1)
        ax.scatter(
            [k], [dx[k]], s=50, facecolors="none", edgecolors=color, linewidths=1.5, zorder=2
        )
        ax.scatter([k], [dy[k]], s=130, marker="*", color=color, zorder=2)
    worst = pairs.index((min(iso_err.i, iso_err.j), max(iso_err.i, iso_err.j)))
    # a minimax optimum equalises several discrepancies; show the near-ties too
    ties = [
        k
        for k in range(len(pairs))
        if k != worst and abs(dx[k] - dy[k]) >= iso_err.distance - TIE_TOL * iso.value
    ]
    for k in ties:
        ax.plot([k, k], [dx[k], dy[k]], color="black", lw=1.2, zorder=3)
    ax.plot([worst, worst], [dx[worst], dy[worst]], color="black", lw=4, zorder=3)
    a, p, n = hard.anchor, hard.positive, hard.negative
    for pair, tag in (((a, p), "a-p"), ((a, n), "a-n")):
        k = pairs.index((min(pair), max(pair)))
        ax.annotate(
            tag,
            (k, min(dx[k], dy[k])),
            xytext=(0, -18),
            textcoords="offset points",
            ha="center",
            fontsize=8,
        )
    ax.set_xticks(pos, [f"{i}-{j}" for i, j in pairs])
    ax.set_xlabel("pair (i-j); red/blue: same class, purple: different classes")
    ax.set_ylabel("distance")
    from matplotlib.lines import Line2D

    ax.legend(
        handles=[
            Line2D([], [], marker="o", ls="", mfc="none", mec="k", label="under f"),
            Line2D([], [], marker="*", ls="", ms=11, color="k", label="under f*_iso"),
            Line2D([], [], color="k", lw=4, label=f"d_iso(f, f*) = {iso_err.distance:.3f}"),
            Line2D([], [], color="k", lw=1.2, label=f"pairs within {TIE_TOL:.0e} of it"),
        ],
        fontsize=8,
        loc="upper left",
    )
    ax.set_title(
        f"Fig. 4: pairwise distances, f vs f*_iso; worst pair {iso_err.i}-{iso_err.j}  "
        f"[L/2 = {max(0.0, hard.value) / 2:.3f}]",
        fontsize=9,
    )
    ax.margins(y=0.15)
    return fig


def _fig5_hardest(
    X: F64, y: I64, hard: tc.HardestTriplet, haus: NearestTS, iso: NearestTS
) -> Figure:
    """Fig. 5: the hardest triplet."""
    import matplotlib.pyplot as plt

    a, p, n = hard.anchor, hard.positive, hard.negative
    fig, ax = plt.subplots(figsize=(5.2, 4.8))
    lim = _limits(X)
    _draw_boundaries(ax, X, y, lim, linewidths=0.8, alpha=0.35)
    _points(ax, X, y)
    ax.plot(
        *zip(X[a], X[p], strict=True),
        color=COLORS[int(y[a])],
        lw=2.5,
        label=f"d(a,p) = {np.linalg.norm(X[a] - X[p]):.3f}",
    )
    ax.plot(
        *zip(X[a], X[n], strict=True),
        color="black",
        lw=2.5,
        ls="--",
        label=f"d(a,n) = {np.linalg.norm(X[a] - X[n]):.3f}",
    )
    for idx, tag, off in (
        (a, "anchor", (8, -18)),
        (p, "positive", (8, -18)),
        (n, "negative", (-12, 12)),
    ):
        ax.scatter(
            [X[idx, 0]],
            [X[idx, 1]],
            s=420,
            facecolors="none",
            edgecolors="black",
            linewidths=1.5,
            zorder=4,
        )
        ax.annotate(
            tag,
            X[idx],
            xytext=off,
            textcoords="offset points",
            fontsize=9,
            fontweight="bold",
            ha="left" if off[0] > 0 else "right",
        )
    L = max(0.0, hard.value)
    ax.text(
        0.02,
        0.02,
        f"L = d(a,p) - d(a,n) = {L:.3f}\n"
        f"L/2 = {L / 2:.3f} <= d_iso(f, F_TS) <= {iso.value:.3f}\n"
        f"L/4 = {L / 4:.3f} <= d_haus(f, F_TS) <= {haus.value:.3f}",
        transform=ax.transAxes,
        fontsize=8.5,
        va="bottom",
        bbox={"boxstyle": "round", "fc": "white", "ec": "0.7"},
    )
    ax.legend(fontsize=8, loc="upper left")
    ax.set(xlim=lim[:2], ylim=lim[2:], aspect="equal")
    ax.set_title(
        "Fig. 5: the hardest triplet (batch-hard over the whole set)\n"
        "upper bounds: the solver's f*_iso and f*_haus",
        fontsize=9,
    )
    return fig


class _CollapseFigure(NamedTuple):
    fig: Figure
    points: F64
    labels: I64
    fit: NearestTS
    spread: float
    distinct: int
    area_ratio: float


def _fig6_collapse(seed: int) -> _CollapseFigure:
    """Fig. 6: collapse of f*_haus for N = 20 random points."""
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(seed)
    R = rng.standard_normal((20, 2))
    ry = rng.permutation(np.arange(20) % 2).astype(np.int64)
    fit = nearest_ts(R, ry, "sup", seed=seed)
    spread = collapse.mean_pairwise_distance(fit.Y) / collapse.mean_pairwise_distance(R)
    fig, ax = plt.subplots(figsize=(5.4, 5.0))
    lim = _limits(R, fit.Y, pad=0.15)
    _arrows(ax, R, fit.Y)
    _points(ax, R, ry, alpha=0.45, numbers=False)
    _points(ax, fit.Y, ry, marker="*", size=180, numbers=False)
    area_f = _ellipse(ax, R, "0.5", "f: 2-sigma covariance ellipse", ls="--")
    area_s = _ellipse(ax, fit.Y, "tab:green", "f*: 2-sigma covariance ellipse")
    ax.legend(fontsize=8, loc="upper left")
    ax.set(xlim=lim[:2], ylim=lim[2:], aspect="equal")
    distinct = distinct_points(fit.Y, TIE_TOL * tc.diameter(R).distance)
    ax.set_title(
        f"Fig. 6: f*_haus of N = 20 random points (n = 2), d_inf = {fit.value:.3f}\n"
        f"spread ratio (mean pairwise distance f*/f) = {spread:.3f}, "
        f"ellipse area ratio {area_s / area_f:.3f},\n"
        f"{distinct} distinct star positions",
        fontsize=9,
    )
    return _CollapseFigure(fig, R, ry, fit, spread, distinct, area_s / area_f)


def write_json(r: PaperReport, path: Path) -> None:
    """The numbers and configurations behind the figures, for checks and re-plots."""

    def fit(s: NearestTS) -> dict[str, Any]:
        return {"Y": s.Y.tolist(), "value": s.value, "objective": s.objective, "method": s.method}

    path.write_text(
        json.dumps(
            {
                "toy": r.toy.tolist(),
                "toy_labels": r.toy_labels.tolist(),
                "toy_separated": r.toy_separated,
                "hardest": r.hardest._asdict(),
                "haus": fit(r.haus),
                "iso": fit(r.iso),
                "haus_class_hausdorff": r.haus_class_hausdorff,
                "iso_worst_pair": list(r.iso_worst_pair),
                "random_points": r.random_points.tolist(),
                "random_labels": r.random_labels.tolist(),
                "collapse_fit": fit(r.collapse_fit),
                "spread_ratio": r.spread_ratio,
                "distinct": r.distinct,
                "area_ratio": r.area_ratio,
                "files": r.files,
            },
            indent=1,
        )
    )


def summary(r: PaperReport) -> str:
    h = r.hardest
    L = max(0.0, h.value)
    a, p, n = h.anchor, h.positive, h.negative
    coincide = set(r.iso_worst_pair) <= {a, p, n}
    return "\n".join(
        [
            f"toy set (N=5, n=2) Triplet-Separated: {r.toy_separated}",
            f"hardest triplet (a, p, n) = ({a}, {p}, {n}), L = {L:.4f}",
            f"d_iso(f, F_TS):  {L / 2:.4f} (L/2) <= . <= {r.iso.value:.4f} "
            f"(f*_iso, {r.iso.method})",
            f"d_haus(f, F_TS): {L / 4:.4f} (L/4) <= . <= {r.haus.value:.4f} "
            f"(f*_haus, {r.haus.method}); "
            f"class_hausdorff(f, f*_haus) = {r.haus_class_hausdorff:.4f}",
            f"ratio d_haus/d_iso of the two solutions = {r.haus.value / r.iso.value:.3f} "
            "(the paper's toy: c = 0.53)",
            f"worst d_iso pair under f*_iso = {r.iso_worst_pair}; both inside the hardest triplet: "
            f"{coincide}",
            f"Fig. 6 (N=20 random, n=2): d_inf(f, f*) = {r.collapse_fit.value:.4f}, spread ratio "
            f"{r.spread_ratio:.3f}, ellipse area ratio {r.area_ratio:.3f}, "
            f"{r.distinct} distinct points",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    collapse.add_arguments(parser)
    parser.add_argument(
        "--no-collapse", action="store_true", help="only the figures, not the collapse experiment"
    )
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    report = figures(args.out, seed=args.seed)
    write_json(report, args.out / "paper.json")
    print(summary(report))
    print(f"figures: {time.perf_counter() - t0:.1f}s; wrote {', '.join(report.files)}")
    sys.stdout.flush()
    if not args.no_collapse:
        cfg = collapse.GridConfig.quick() if args.quick else collapse.GridConfig()
        crep = collapse.run(args.out, cfg, seed=args.seed)
        print(collapse.markdown_table(crep))
        print(f"collapse: {crep.seconds:.1f}s; wrote {', '.join(crep.files)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
