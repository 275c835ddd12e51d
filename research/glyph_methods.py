"""The seed methods on the glyph benchmark, classes unseen at test time
(research/glyphs.md; data: docs/glyphs.md).

Protocol: :func:`research.glyph_data.glyph_split` per seed (the class split
changes with the seed): ``--classes`` glyph classes, half unseen for the
test, a fifth of the rest for validation. Every method trains the same MLP
(1024 -> 256 -> 64 on the 32 x 32 pixels) with the trainer of
:mod:`research.seed_methods` (Adam, P x M batches, the best validation
MAP@R epoch is tested). On the test embedding of that model it also
measures how far the unseen classes are from Triplet-Separated: the hardest
triplet ``L`` over the whole test set (``d_iso(f, F_TS) >= L/2``), and on a
subsample of ``BOUND_CLASSES`` x ``BOUND_SAMPLES`` points the certified
interval of :func:`tripletcore.theory.ts_distance_bounds` (``L/2`` below,
the solver's verified Triplet-Separated configuration above).

Run ``python -m research.glyph_methods [--quick] [--seeds N] [--epochs E]
[--classes C] [--methods a,b] [--out DIR]``; it writes ``glyph_methods.json``
and ``glyph_methods.md`` to ``--out`` (default research/results/glyphs).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

import tripletcore as tc
from tripletcore.theory import ts_distance_bounds

from . import seed_methods as sm
from .common import log_to_stderr
from .glyph_data import GlyphParts, glyph_split

OUT = Path(__file__).parent / "results" / "glyphs"
BOUND_CLASSES = 8
BOUND_SAMPLES = 6
BOUND_STEPS = 400
ALL_METHODS = (
    "batch_hard",
    "semi_hard",
    "batch_all",
    "rb_all",
    "rb_rep",
    "rb_hcm_all",
    "rb_hcm_rep",
    "multi_proxy",
    "multi_proxy_rounds",
    "sc",
)


@dataclass(frozen=True)
class GlyphConfig:
    classes: int = 200
    trainer: sm.Config = sm.Config(
        epochs=12,
        methods=ALL_METHODS,
        classes_per_batch=16,
        samples_per_class=4,
        hidden=256,
        embedding_dim=64,
    )

    @classmethod
    def quick(cls) -> GlyphConfig:
        return cls(40, replace(cls().trainer, epochs=2, seeds=(0,)))


def to_split(parts: GlyphParts) -> sm.Split:
    out = sm.Split()
    for name in parts.x:
        out.x[name] = torch.from_numpy(parts.x[name])
        out.y[name] = torch.from_numpy(parts.y[name])
    return out


def separation(
    emb: np.ndarray[Any, Any], labels: np.ndarray[Any, Any], seed: int
) -> dict[str, Any]:
    """How far the test embedding is from Triplet-Separated: ``L`` on all
    of it, and the certified interval on a class-balanced subsample."""
    big_l = max(0.0, tc.hardest_triplet(emb, labels).value)
    rng = np.random.default_rng([seed, 2])
    chosen = rng.choice(np.unique(labels), BOUND_CLASSES, replace=False)
    rows = np.concatenate(
        [rng.choice(np.flatnonzero(labels == c), BOUND_SAMPLES, replace=False) for c in chosen]
    )
    sub, sub_lab = emb[rows], labels[rows]
    b = ts_distance_bounds(sub, sub_lab, steps=BOUND_STEPS, seed=seed, lp="off")
    return {
        "test_hardest": big_l,
        "test_iso_lower": big_l / 2,
        "sub_points": len(rows),
        "sub_hardest": b.hardest,
        "sub_iso_lower": b.iso_lower,
        "sub_iso_upper": b.iso_upper,
        "sub_diameter": tc.diameter(sub).distance,
    }


def test_separation(
    model: torch.nn.Module, x: torch.Tensor, labels: np.ndarray[Any, Any], seed: int
) -> dict[str, Any]:
    emb = torch.nn.functional.normalize(sm.embed(model, x), dim=1).double().numpy()
    return separation(emb, labels, seed)


def run(cfg: GlyphConfig, log: Callable[[str], None] = log_to_stderr) -> list[dict[str, Any]]:
    results = []
    t = cfg.trainer
    for seed in t.seeds:
        parts = glyph_split(seed, cfg.classes)
        data = to_split(parts)
        log(
            f"seed {seed}: classes train {parts.classes['train']} / val {parts.classes['val']}"
            f" / test {parts.classes['test']} (unseen); {len(parts.y['train'])} train images"
        )
        extra = partial(test_separation, x=data.x["test"], labels=parts.y["test"], seed=seed)
        for method in t.methods:
            r = sm.train(method, data, t, seed, extra=extra)
            log(
                f"seed {seed} {method:>19}: R@1 {r['recall_at_1']:.4f}  MAP@R {r['map_at_r']:.4f}"
                f"  L/2 {r['test_iso_lower']:.3f}  sub [{r['sub_iso_lower']:.3f},"
                f" {r['sub_iso_upper']:.3f}]  (best epoch {r['best_epoch']}, "
                f"{r['train_seconds']:.1f} s)"
            )
            results.append(r)
    return results


def _ms(values: Sequence[float], scale: float = 1.0) -> str:
    a = np.asarray(values, np.float64) * scale
    std = float(a.std(ddof=1)) if len(a) > 1 else 0.0
    return f"{a.mean():.3f} ± {std:.3f}"


def bounds_table(results: Sequence[dict[str, Any]], methods: Sequence[str]) -> str:
    lines = [
        "| method | L/2 on all test points | subsample: L/2 (lower) | subsample: solver "
        "(upper) | subsample diameter |",
        "|---|---:|---:|---:|---:|",
    ]
    for m in methods:
        rows = [r for r in results if r["method"] == m]
        if rows:
            lines.append(
                f"| {m} | {_ms([r['test_iso_lower'] for r in rows])} | "
                f"{_ms([r['sub_iso_lower'] for r in rows])} | "
                f"{_ms([r['sub_iso_upper'] for r in rows])} | "
                f"{_ms([r['sub_diameter'] for r in rows])} |"
            )
    return "\n".join(lines)


def markdown(cfg: GlyphConfig, results: Sequence[dict[str, Any]], seconds: float, cmd: str) -> str:
    t = cfg.trainer
    return f"""# Seed methods on the glyph benchmark (unseen classes)

Regenerate: `{cmd}` ({seconds / 60:.0f} min on the shared 2-core machine).
Data and protocol: docs/glyphs.md and research/glyphs.md. {cfg.classes} classes, half
unseen at test, {len(t.seeds)} seeds (each its own class split), {t.epochs} epochs,
P x M = {t.classes_per_batch} x {t.samples_per_class}, MLP 1024-{t.hidden}-{t.embedding_dim}.
Mean ± std over the seeds; Δ: paired per-seed difference to batch_hard (in how many
seeds the method was ahead).

{sm.table(results, [m for m in t.methods if m in sm.METHODS], "batch_hard")}

## Distance of the unseen-class embedding to the Triplet-Separated set

`d_iso(f, F_TS) >= L/2` with `L` the hardest triplet of the unit-normalised test
embedding; on a subsample of {BOUND_CLASSES} classes x {BOUND_SAMPLES} points the solver of
`tripletcore.theory.ts_distance_bounds` ({BOUND_STEPS} steps) gives a verified
Triplet-Separated configuration, an upper bound (the diameter is the value of total
collapse, for scale).

{bounds_table(results, t.methods)}
"""


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="40 classes, 2 epochs, one seed")
    ap.add_argument("--seeds", type=int)
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--classes", type=int)
    ap.add_argument("--patience", type=int, help="evaluations without gain before a new round")
    ap.add_argument("--methods", help="comma-separated subset of: " + ", ".join(ALL_METHODS))
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    cfg = GlyphConfig.quick() if args.quick else GlyphConfig()
    t = cfg.trainer
    if args.seeds is not None:
        t = replace(t, seeds=tuple(range(args.seeds)))
    if args.epochs is not None:
        t = replace(t, epochs=args.epochs)
    if args.patience is not None:
        t = replace(t, patience=args.patience)
    if args.methods:
        methods = tuple(s.strip() for s in args.methods.split(",") if s.strip())
        unknown = [m for m in methods if m not in ALL_METHODS]
        if unknown:
            ap.error(f"unknown methods {unknown}; choose from {', '.join(ALL_METHODS)}")
        t = replace(t, methods=methods)
    cfg = replace(cfg, trainer=t, classes=args.classes or cfg.classes)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    results = run(cfg)
    seconds = time.perf_counter() - t0
    cmd = "python -m research.glyph_methods " + " ".join(argv if argv is not None else sys.argv[1:])
    text = markdown(cfg, results, seconds, cmd.strip())
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "glyph_methods.md").write_text(text)
    with open(args.out / "glyph_methods.json", "w") as f:
        json.dump({"config": asdict(cfg), "seconds": seconds, "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
