"""Does batch-hard training collapse when the batch size N is much larger
than the embedding dimension n? (seed paper 001, "Novel Insights on Network
Collapse").

Two experiments on a grid of N x n:

* **training**: a small NumPy MLP with L2-normalised outputs (as FaceNet) is
  trained on scikit-learn's digits (or a synthetic fallback) with the
  batch-hard triplet loss of :func:`tripletcore.triplet_margin_loss`, the same
  number of gradient steps in every cell; collapse is measured on held-out
  data.
* **geometric**: for random labelled configurations of N points in n
  dimensions, how much the nearest Triplet-Separated configuration (the
  paper's ``f*_haus``) shrinks.

Run ``python -m research.collapse [--out DIR] [--quick] [--seed S]`` from the
repository root.
"""

from __future__ import annotations

import argparse
import importlib
import json
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict
from pathlib import Path
from typing import Any, cast

import numpy as np

from .collapse_cells import (
    MLP,
    Adam,
    CellResult,
    Dataset,
    GeoResult,
    Measures,
    NearestTS,
    TrainConfig,
    effective_rank,
    geometric_cell,
    load_dataset,
    mean_pairwise_distance,
    measure,
    nearest_ts,
    random_sphere_distance,
    recall_at_1,
    sample_batch,
    train_cell,
)
from .collapse_report import (
    MEASURES,
    CollapseReport,
    GridConfig,
    fit_power_law,
    markdown_table,
    plot_curves,
    plot_ratio,
    power_law_fit,
    report_from_json,
    write_outputs,
)
from .common import log_to_stderr

__all__ = [
    "Adam",
    "CellResult",
    "CollapseReport",
    "Dataset",
    "GeoResult",
    "GridConfig",
    "MEASURES",
    "MLP",
    "Measures",
    "NearestTS",
    "TrainConfig",
    "add_arguments",
    "effective_rank",
    "fit_power_law",
    "geometric_cell",
    "load_dataset",
    "main",
    "markdown_table",
    "mean_pairwise_distance",
    "measure",
    "nearest_ts",
    "one_blas_thread",
    "plot_curves",
    "plot_ratio",
    "power_law_fit",
    "random_sphere_distance",
    "recall_at_1",
    "report_from_json",
    "run",
    "sample_batch",
    "train_cell",
    "write_outputs",
]


def one_blas_thread() -> AbstractContextManager[Any]:
    """Limit BLAS to one thread when threadpoolctl is installed: the model's
    matrices are small, and extra BLAS threads only spin (a 20x CPU overhead
    measured on a busy 2-core machine). The library's own threads still run."""
    try:
        tpc = importlib.import_module("threadpoolctl")
    except ImportError:
        return nullcontext()
    return cast(AbstractContextManager[Any], tpc.threadpool_limits(limits=1, user_api="blas"))


def run(
    out: Path,
    cfg: GridConfig,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> CollapseReport:
    """Run both experiments, write plots, ``collapse.md`` and ``collapse.json`` to ``out``."""
    with one_blas_thread():
        return _run(out, cfg, seed, log or log_to_stderr)


def _run(out: Path, cfg: GridConfig, seed: int, say: Callable[[str], None]) -> CollapseReport:
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    data = load_dataset(cfg.dataset, seed=seed)
    say(
        f"collapse: data {data.name}, {len(data.y_train)} train / {len(data.y_test)} held-out, "
        f"{len(cfg.batches)}x{len(cfg.dims)} grid x {cfg.seeds} seed(s), {cfg.steps} steps each"
    )
    # biggest batches first would give a misleading ETA; run them in grid order
    jobs = [(s, b, d) for s in range(cfg.seeds) for b in cfg.batches for d in cfg.dims]
    cells: list[CellResult] = []
    for k, (s, b, d) in enumerate(jobs, 1):
        tc_cfg = TrainConfig(b, d, cfg.steps, cfg.hidden, cfg.lr, cfg.margin, seed + s)
        r = train_cell(data, tc_cfg)
        cells.append(r)
        say(
            f"  [{k:3d}/{len(jobs)}] N={b:5d} n={d:4d} seed={seed + s}: "
            f"R@1 {r.final.recall1:.3f} spread {r.final.spread:.3f} "
            f"erank/n {r.final.erank_frac:.3f} at-margin {r.final.at_margin:.2f} "
            f"({r.seconds:.1f}s, total {time.perf_counter() - t0:.0f}s)"
        )
    geo: list[GeoResult] = []
    for k, (p, d) in enumerate([(p, d) for p in cfg.geo_points for d in cfg.geo_dims], 1):
        g = geometric_cell(p, d, cfg.geo_trials, seed)
        geo.append(g)
        say(
            f"  geometric [{k}/{len(cfg.geo_points) * len(cfg.geo_dims)}] N={p} n={d}: "
            f"spread ratio {np.mean(g.ratios):.3f}"
        )
    report = CollapseReport(
        cfg, data.name, len(data.y_train), len(data.y_test), cells, geo, 0.0, []
    )
    report.files = write_outputs(report, out)
    report.seconds = time.perf_counter() - t0
    (out / "collapse.json").write_text(json.dumps(asdict(report), indent=1))
    return report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("paper-figures"), help="output folder")
    parser.add_argument("--quick", action="store_true", help="tiny grid, few steps (seconds)")
    parser.add_argument("--seed", type=int, default=0, help="base random seed")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    add_arguments(parser)
    parser.add_argument("--steps", type=int, help="gradient steps per cell (override)")
    parser.add_argument("--seeds", type=int, help="seeds per cell (override)")
    parser.add_argument(
        "--replot", action="store_true", help="redraw plots and table from OUT/collapse.json"
    )
    args = parser.parse_args(argv)
    if args.replot:
        report = report_from_json(args.out / "collapse.json")
        report.files = write_outputs(report, args.out)
        (args.out / "collapse.json").write_text(json.dumps(asdict(report), indent=1))
        print(markdown_table(report))
        return 0
    cfg = GridConfig.quick() if args.quick else GridConfig()
    if args.steps is not None:
        cfg.steps = args.steps
    if args.seeds is not None:
        cfg.seeds = args.seeds
    report = run(args.out, cfg, seed=args.seed)
    print(markdown_table(report))
    print(f"collapse: {report.seconds:.1f}s; wrote {', '.join(report.files)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
