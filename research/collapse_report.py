"""The collapse grid's configuration and results (:mod:`research.collapse`):
read back from JSON, power-law fits, the Markdown table and the plots."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .collapse_cells import CellResult, GeoResult, Measures

# ---------------------------------------------------------------- the experiment


@dataclass
class GridConfig:
    batches: tuple[int, ...] = (8, 32, 128, 512, 2048)
    dims: tuple[int, ...] = (2, 8, 32, 128)
    seeds: int = 2
    steps: int = 600
    hidden: tuple[int, ...] = (128,)
    lr: float = 1e-3
    margin: float = 0.2
    geo_points: tuple[int, ...] = (5, 10, 20, 40, 80)
    geo_dims: tuple[int, ...] = (2, 4, 8, 16)
    geo_trials: int = 4
    dataset: str = "auto"

    @classmethod
    def quick(cls) -> GridConfig:
        return cls(
            batches=(8, 64),
            dims=(2, 16),
            seeds=1,
            steps=40,
            geo_points=(6, 12),
            geo_dims=(2,),
            geo_trials=1,
        )


@dataclass
class CollapseReport:
    config: GridConfig
    dataset: str
    train_size: int
    test_size: int
    cells: list[CellResult]
    geometric: list[GeoResult]
    seconds: float
    files: list[str]

    def mean_over_seeds(self, batch: int, dim: int, key: str, final: bool = True) -> float:
        vals = [
            getattr(c.final if final else c.init, key)
            for c in self.cells
            if c.batch == batch and c.dim == dim
        ]
        return float(np.mean(vals))


MEASURES: dict[str, str] = {
    "spread": "mean pairwise distance / random-sphere value",
    "erank_frac": "effective rank / n",
    "at_margin": "fraction of anchors with loss = margin",
    "recall1": "Recall@1",
}


def report_from_json(path: Path) -> CollapseReport:
    """Read back the ``collapse.json`` that :func:`run` wrote."""
    raw = json.loads(path.read_text())
    fields: dict[str, Any] = {
        k: tuple(v) if isinstance(v, list) else v for k, v in raw["config"].items()
    }
    cfg = GridConfig(**fields)
    cells = [
        CellResult(
            c["batch"],
            c["dim"],
            c["seed"],
            Measures(**c["init"]),
            Measures(**c["final"]),
            c["train_loss"],
            c["seconds"],
            [(int(a), float(b), float(r)) for a, b, r in c["curve"]],
        )
        for c in raw["cells"]
    ]
    geo = [GeoResult(**g) for g in raw["geometric"]]
    return CollapseReport(
        cfg,
        raw["dataset"],
        raw["train_size"],
        raw["test_size"],
        cells,
        geo,
        raw["seconds"],
        raw["files"],
    )


def power_law_fit(report: CollapseReport, key: str = "spread") -> tuple[float, float, float]:
    """Least-squares ``log m = a + b log N + c log n`` over the training grid
    (seed means of the held-out measure ``m``); returns ``(b, c, R^2)``. If only
    the ratio N/n mattered, ``b = -c``."""
    cfg = report.config
    return fit_power_law(
        [(b, d, report.mean_over_seeds(b, d, key)) for b in cfg.batches for d in cfg.dims]
    )


def fit_power_law(points: Sequence[tuple[float, float, float]]) -> tuple[float, float, float]:
    """``(b, c, R^2)`` of the least-squares fit ``log v = a + b log N + c log n``
    to ``(N, n, v)`` triples (non-positive ``v`` skipped; NaNs if fewer than 4)."""
    rows = [[1.0, math.log(b), math.log(d)] for b, d, v in points if v > 0]
    target = [math.log(v) for _, _, v in points if v > 0]
    if len(target) < 4:
        return float("nan"), float("nan"), float("nan")
    A, t = np.array(rows), np.array(target)
    coef = np.linalg.lstsq(A, t, rcond=None)[0]
    resid = t - A @ coef
    r2 = 1.0 - float(resid @ resid) / float(((t - t.mean()) ** 2).sum() or 1.0)
    return float(coef[1]), float(coef[2]), r2


def markdown_table(report: CollapseReport) -> str:
    cfg = report.config
    lines = [
        f"Data: {report.dataset} ({report.train_size} train / {report.test_size} held-out); "
        f"{cfg.steps} Adam steps (lr {cfg.lr}) per cell, batch-hard margin {cfg.margin}, "
        f"MLP hidden {list(cfg.hidden)}; mean over {cfg.seeds} seed(s); "
        "measures on the held-out set (init value in brackets).",
        "",
        "| N | n | N/n | Recall@1 | spread | erank/n | at margin | held-out loss | train loss |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for b in cfg.batches:
        for d in cfg.dims:
            cs = [c for c in report.cells if c.batch == b and c.dim == d]

            def f(key: str, cs: list[CellResult] = cs) -> str:
                fin = np.mean([getattr(c.final, key) for c in cs])
                ini = np.mean([getattr(c.init, key) for c in cs])
                return f"{fin:.3f} ({ini:.3f})"

            tl = np.mean([c.train_loss for c in cs])
            lines.append(
                f"| {b} | {d} | {b / d:g} | {f('recall1')} | {f('spread')} | {f('erank_frac')} "
                f"| {f('at_margin')} | {f('loss')} | {tl:.3f} |"
            )
    b_exp, c_exp, r2 = power_law_fit(report)
    if math.isfinite(b_exp):
        lines += [
            "",
            f"Power-law fit over the grid: spread ~ N^{b_exp:.3f} n^{c_exp:.3f} (R^2 = {r2:.3f}); "
            "a function of N/n alone would give equal and opposite exponents.",
        ]
    if report.geometric:
        lines += [
            "",
            "Geometric version: random N x n Gaussian configurations, two random classes, "
            "f* = nearest Triplet-Separated configuration for d_haus "
            f"({report.geometric[0].method}); mean pairwise distance of f* / that of f "
            "(mean +- std over trials); d_haus(f, F_TS) / diam(f).",
            "",
            "| N | n | spread ratio | d_haus / diam | all f* TS |",
            "|---:|---:|---:|---:|:---:|",
        ]
        gb, gc, gr2 = fit_power_law(
            [(g.points, g.dim, float(np.mean(g.ratios))) for g in report.geometric]
        )
        if math.isfinite(gb):
            lines[-4] += f" Fit: spread ratio ~ N^{gb:.3f} n^{gc:.3f} (R^2 = {gr2:.3f})."
        for g in report.geometric:
            lines.append(
                f"| {g.points} | {g.dim} | {np.mean(g.ratios):.3f} +- {np.std(g.ratios):.3f} "
                f"| {np.mean(g.values):.3f} | {'yes' if g.separated else 'NO'} |"
            )
    return "\n".join(lines) + "\n"


def write_outputs(report: CollapseReport, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm, Normalize

    cfg = report.config
    files: list[str] = []
    for key, title in MEASURES.items():
        grid = np.array(
            [[report.mean_over_seeds(b, d, key) for d in cfg.dims] for b in cfg.batches]
        )
        fig, ax = plt.subplots(figsize=(4.6, 3.9))
        # the spread spans decades: a log colour scale keeps the small values apart
        norm = LogNorm(vmin=3e-3, vmax=1.0) if key == "spread" else Normalize(0.0, 1.0)
        im = ax.imshow(grid, cmap="viridis", norm=norm, origin="lower", aspect="auto")
        for i in range(len(cfg.batches)):
            for j in range(len(cfg.dims)):
                v = float(grid[i, j])
                ax.text(
                    j,
                    i,
                    f"{v:.3f}" if key == "spread" else f"{v:.2f}",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if norm(max(v, 3e-3)) < 0.6 else "black",
                )
        ax.set_xticks(range(len(cfg.dims)), [str(d) for d in cfg.dims])
        ax.set_yticks(range(len(cfg.batches)), [str(b) for b in cfg.batches])
        ax.set_xlabel("embedding dimension n")
        ax.set_ylabel("batch size N")
        ax.set_title(f"{title}\n(batch-hard, {report.dataset}, held-out)", fontsize=9)
        fig.colorbar(im, ax=ax)
        fig.tight_layout()
        path = out / f"collapse_{key}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        files.append(str(path))
    if report.geometric:
        pts, dims = cfg.geo_points, cfg.geo_dims
        grid = np.array(
            [
                [
                    np.mean(
                        next(g.ratios for g in report.geometric if g.points == p and g.dim == d)
                    )
                    for d in dims
                ]
                for p in pts
            ]
        )
        fig, ax = plt.subplots(figsize=(4.6, 3.9))
        im = ax.imshow(grid, cmap="magma", vmin=0.0, vmax=1.0, origin="lower", aspect="auto")
        for i in range(len(pts)):
            for j in range(len(dims)):
                ax.text(
                    j,
                    i,
                    f"{grid[i, j]:.2f}",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if grid[i, j] < 0.6 else "black",
                )
        ax.set_xticks(range(len(dims)), [str(d) for d in dims])
        ax.set_yticks(range(len(pts)), [str(p) for p in pts])
        ax.set_xlabel("dimension n")
        ax.set_ylabel("points N")
        ax.set_title("spread of f*_haus / spread of f\n(random configurations)", fontsize=9)
        fig.colorbar(im, ax=ax)
        fig.tight_layout()
        path = out / "collapse_geometric.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        files.append(str(path))
    files.append(str(plot_curves(report, out)))
    files.append(str(plot_ratio(report, out)))
    md = out / "collapse.md"
    md.write_text(markdown_table(report))
    files.append(str(md))
    return files


def plot_curves(report: CollapseReport, out: Path) -> Path:
    """Held-out spread during training: one panel per n, one line per N (seed mean)."""
    import matplotlib.pyplot as plt

    cfg = report.config
    fig, axes = plt.subplots(
        1, len(cfg.dims), figsize=(2.6 * len(cfg.dims) + 0.6, 3.0), sharey=True, squeeze=False
    )
    cmap = plt.get_cmap("plasma")
    for j, d in enumerate(cfg.dims):
        ax = axes[0, j]
        for i, b in enumerate(cfg.batches):
            cs = [c for c in report.cells if c.batch == b and c.dim == d]
            steps = [pt[0] for pt in cs[0].curve]
            spread = np.mean([[pt[1] for pt in c.curve] for c in cs], axis=0)
            ax.plot(
                steps,
                spread,
                color=cmap(i / max(1, len(cfg.batches) - 1) * 0.85),
                label=f"N={b}",
                marker=".",
            )
        ax.set_title(f"n = {d}", fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("held-out spread\n(mean distance / random)")
    axes[0, -1].legend(fontsize=7)
    fig.tight_layout()
    path = out / "collapse_curves.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_ratio(report: CollapseReport, out: Path) -> Path:
    """Held-out spread and the at-margin fraction against N/n, one line per n."""
    import matplotlib.pyplot as plt

    cfg = report.config
    fig, axes = plt.subplots(1, 2, figsize=(8.4, 3.4))
    cmap = plt.get_cmap("viridis")
    for j, d in enumerate(cfg.dims):
        ratio = [b / d for b in cfg.batches]
        color = cmap(j / max(1, len(cfg.dims) - 1) * 0.9)
        for ax, key in zip(axes, ("spread", "at_margin"), strict=True):
            vals = [report.mean_over_seeds(b, d, key) for b in cfg.batches]
            ax.plot(ratio, vals, marker="o", color=color, label=f"n = {d}")
    axes[0].set_yscale("log")
    axes[0].set_ylabel("held-out spread (log)")
    axes[1].set_ylabel("fraction of anchors at the margin")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("N / n")
        ax.grid(alpha=0.3, which="both")
    axes[1].legend(fontsize=8)
    b_exp, c_exp, r2 = power_law_fit(report)
    fig.suptitle(
        f"batch-hard collapse vs N/n; fit spread ~ N^{b_exp:.2f} n^{c_exp:.2f} (R^2 {r2:.2f})",
        fontsize=9,
    )
    fig.tight_layout()
    path = out / "collapse_vs_ratio.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
