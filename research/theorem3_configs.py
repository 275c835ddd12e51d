"""The configurations :mod:`research.theorem3` searches: the search sizes,
the random and adversarial families, the hand-picked cases."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Solver = Callable[[F64, I64, int, int], tuple[F64, str]]


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


def has_triplet(lab: I64) -> bool:
    _, counts = np.unique(lab, return_counts=True)
    return counts.size >= 2 and int(counts.max()) >= 2


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
