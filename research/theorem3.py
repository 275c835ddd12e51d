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
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

import tripletcore as tc
from tripletcore.theory.lp import iso_distance_line

from .common import log_to_stderr
from .theorem3_bounds import (
    Evaluation,
    Solver,
    best_upper,
    evaluate,
    lead_solver,
    polish,
    stand_in,
    triplet_array,
)
from .theorem3_configs import (
    SearchConfig,
    family_names,
    hand_cases,
    has_triplet,
    initial_configs,
    make_config,
)

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


# ``lower > (1 + _CLAIM_SLACK) 2 L`` counts as a counterexample: L itself is
# a float64 value, so a ratio of 2 up to rounding is no evidence.
_CLAIM_SLACK = 1e-9


__all__ = [
    "Evaluation",
    "Report",
    "SearchConfig",
    "Solver",
    "best_upper",
    "check_counterexample",
    "climb",
    "climb_starts",
    "command",
    "evaluate",
    "family_names",
    "hand_cases",
    "has_triplet",
    "initial_configs",
    "lead_solver",
    "main",
    "make_config",
    "perturb",
    "polish",
    "run",
    "stand_in",
    "triplet_array",
    "write_outputs",
]


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
