"""The collapse N x n grid of seed paper 001 (:mod:`research.collapse`) on the
glyph benchmark: batch-hard training of the NumPy MLP on 60 glyph classes
(16 x 16), collapse measured on 60 unseen classes (research/glyphs.md).

Run ``python -m research.glyph_collapse [--quick] [--seeds S] [--steps T]
[--out DIR]`` (default out research/results/glyphs/collapse); it writes the
table, plots and ``collapse.json`` of :func:`research.collapse.run`. The
geometric half of that experiment does not depend on the data and is left
at its smallest here (see research/paper.md for it).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from .collapse import run
from .collapse_report import GridConfig, markdown_table

OUT = Path(__file__).parent / "results" / "glyphs" / "collapse"


def grid(quick: bool) -> GridConfig:
    if quick:
        return GridConfig(
            batches=(8, 64),
            dims=(2, 16),
            seeds=1,
            steps=20,
            geo_points=(6,),
            geo_dims=(2,),
            geo_trials=1,
            dataset="glyphs",
        )
    return GridConfig(
        batches=(8, 32, 128, 512, 1024),
        dims=(2, 8, 32, 128),
        seeds=2,
        steps=300,
        geo_points=(6,),
        geo_dims=(2,),
        geo_trials=1,
        dataset="glyphs",
    )


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="2 x 2 grid, 20 steps")
    ap.add_argument("--seeds", type=int)
    ap.add_argument("--steps", type=int)
    ap.add_argument("--seed", type=int, default=0, help="base seed (also the class split)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    cfg = grid(args.quick)
    if args.seeds is not None:
        cfg.seeds = args.seeds
    if args.steps is not None:
        cfg.steps = args.steps
    report = run(args.out, cfg, seed=args.seed)
    print(markdown_table(report))
    print(f"glyph collapse grid: {report.seconds:.0f} s; wrote {', '.join(report.files)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
