"""The exact order of cosine distances for the tiled backend (as ``cosine_exact.rs``).

Float64 cosine keys from coordinate differences are within
:func:`key_error` of the true distances, but mathematically equal ones can
differ by an ulp. :func:`repair_rows` ranks the keys of a row that lie
within rounding of each other by an exact rational comparison (every
float is an integer times a power of two: with ``S = a.b`` and
``Q = |b|^2`` in integers the cosine ranks as ``sign(S) S^2 / Q``) and
moves them by a few ulps at most so that their float order is the exact
order and exactly equal distances share one key. Only rows flagged as
near-tied at float64 reach it, so its Python loops run on few rows.
"""

from __future__ import annotations

import math
from fractions import Fraction

import torch
from torch import Tensor


def key_error(d: int) -> float:
    """A bound on ``|key - true key|`` of the float64 cosine key over ``d`` coordinates."""
    # half of the Rust bound on |a/|a| - b/|b||^2 (the key is half of it)
    return (8.0 * d + 64.0) * 2.0**-53 + 1e-300


def _integer_row(row: list[float]) -> list[int]:
    """The row times a power of two, as integers (the factor cancels in every comparison)."""
    ratios = [v.as_integer_ratio() for v in row]
    den = max(d for _, d in ratios)
    return [n * (den // d) for n, d in ratios]


def _similarity_key(a: list[int], b: list[int]) -> Fraction:
    """``sign(a.b) (a.b)^2 / |b|^2``: increasing in cos(a, b) for a fixed ``a``."""
    s = sum(u * v for u, v in zip(a, b, strict=True))
    q = sum(v * v for v in b)
    return Fraction(s * abs(s), q)


def repair_rows(keys: Tensor, x: Tensor, ref: Tensor, tol: float) -> Tensor:
    """Exactly ordered keys of query rows ``x`` (float64) against ``ref`` (float64).

    ``keys`` (rows x len(ref)) are the float64 cosine keys; returns them with
    near-tied entries reordered and adjusted (ties then go to the lowest
    index, as everywhere).
    """
    out = keys.clone()
    vals, order = torch.sort(keys, dim=1, stable=True)
    near = (vals[:, 1:] - vals[:, :-1]) <= 2.0 * tol
    rows = torch.nonzero(near.any(dim=1)).flatten().tolist()
    if not rows:
        return out
    x_cpu, ref_cpu = x.double().cpu(), ref.double().cpu()
    for r in rows:
        v = vals[r].cpu().tolist()
        o = order[r].cpu().tolist()
        flags = near[r].cpu().tolist()
        a = _integer_row(x_cpu[r].tolist())
        out[r] = torch.tensor(_repair_row(v, o, flags, a, ref_cpu), dtype=out.dtype)
    return out


def _repair_row(
    vals: list[float], order: list[int], near: list[bool], a: list[int], ref: Tensor
) -> list[float]:
    """New keys by column, from the sorted keys ``vals`` and their columns ``order``."""
    m = len(vals)
    new = list(vals)
    exact: dict[int, Fraction] = {}
    t = 0
    while t < m:
        end = t
        while end < m - 1 and near[end]:
            end += 1
        if end > t:  # a run of near-equal keys: rank it exactly, ties by column
            for c in order[t : end + 1]:
                exact[c] = -_similarity_key(a, _integer_row(ref[c].tolist()))
            order[t : end + 1] = sorted(order[t : end + 1], key=lambda c: (exact[c], c))
            run_vals = sorted(vals[t : end + 1])
            for k in range(t, end + 1):
                new[k] = run_vals[k - t]
        t = end + 1
    for k in range(1, m):
        prev, cur = order[k - 1], order[k]
        if prev in exact and cur in exact and exact[prev] == exact[cur]:
            new[k] = new[k - 1]
        elif new[k] <= new[k - 1]:
            new[k] = math.nextafter(new[k - 1], math.inf)
    out = [0.0] * m
    for c, v in zip(order, new, strict=True):
        out[c] = v
    return out
