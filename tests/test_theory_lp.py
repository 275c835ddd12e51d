"""The certified LP lower bound on d_iso(f, F_TS) (tripletcore.theory.lp); the
Theorem 3 counterexample search that uses it is tested in research/tests."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tripletcore as tc

pytest.importorskip("scipy")

from tripletcore.theory.lp import (  # noqa: E402
    iso_distance_line,
    iso_lower_bound_lp,
    lagrangian_bound,
    semimetric_lp,
    solve_certified,
)

TINY = 1e-9


def _config(seed: int, m: int, n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    while True:
        lab = rng.integers(0, k, m).astype(np.int64)
        _, counts = np.unique(lab, return_counts=True)
        if counts.size >= 2 and counts.max() >= 2:
            break
    kind = seed % 3
    if kind == 0:
        x = rng.standard_normal((m, n))
    elif kind == 1:  # collinear, many exact ties
        x = np.outer(rng.integers(0, 4, m), np.ones(n)).astype(np.float64)
    else:  # near-duplicates across classes
        base = rng.standard_normal((2, n))
        x = base[rng.integers(0, 2, m)] + 1e-3 * rng.standard_normal((m, n))
    return x, lab


configs = st.builds(
    _config,
    seed=st.integers(0, 2**32 - 1),
    m=st.integers(3, 8),
    n=st.integers(1, 3),
    k=st.integers(2, 3),
)


def _distances(x: np.ndarray) -> np.ndarray:
    return np.sqrt(((x[:, None] - x[None]) ** 2).sum(axis=2))


def _class_collapse(x: np.ndarray, lab: np.ndarray) -> np.ndarray:
    y = x.copy()
    for c in np.unique(lab):
        y[lab == c] = x[lab == c].mean(axis=0)
    return y


def _pulled_apart(x: np.ndarray, lab: np.ndarray) -> np.ndarray:
    """Classes translated away from the mean along their centroids (or random
    directions) until the configuration is TS."""
    rng = np.random.default_rng(0)
    centre = x.mean(axis=0)
    y = x.copy()
    dirs = {}
    for c in np.unique(lab):
        v = x[lab == c].mean(axis=0) - centre + 1e-3 * rng.standard_normal(x.shape[1])
        dirs[int(c)] = v / np.linalg.norm(v)
    scale = float(_distances(x).max()) or 1.0
    for r in scale * 2.0 ** np.arange(0, 40):
        for c, v in dirs.items():
            y[lab == c] = x[lab == c] + r * v
        if tc.is_triplet_separated(y, lab):
            return y
    return _class_collapse(x, lab)


@settings(max_examples=30)
@given(configs)
def test_lp_between_half_l_and_l(case: tuple[np.ndarray, np.ndarray]) -> None:
    x, lab = case
    big_l = tc.hardest_triplet(x, lab).value
    lp = iso_lower_bound_lp(x, lab)
    scale = TINY * max(1.0, float(_distances(x).max()))
    assert lp >= big_l / 2 - scale
    # D' = d + L [different labels] is a TS semimetric at distortion L
    assert lp <= max(big_l, 0.0) + scale


@settings(max_examples=25)
@given(configs)
def test_without_triangles_the_lp_is_half_l(case: tuple[np.ndarray, np.ndarray]) -> None:
    x, lab = case
    big_l = max(0.0, tc.hardest_triplet(x, lab).value)
    lp = iso_lower_bound_lp(x, lab, triangle=False)
    assert lp == pytest.approx(big_l / 2, abs=TINY * max(1.0, float(_distances(x).max())))


@settings(max_examples=25)
@given(configs)
def test_lp_is_below_explicit_ts_configurations(case: tuple[np.ndarray, np.ndarray]) -> None:
    x, lab = case
    lp = iso_lower_bound_lp(x, lab)
    ys = [
        np.zeros_like(x),  # collapse
        _class_collapse(x, lab),
        _pulled_apart(x, lab),
    ]
    for y in ys:
        assert tc.is_triplet_separated(y, lab)
        assert lp <= tc.isometric_error(x, y).distance + 1e-12


@settings(max_examples=25)
@given(st.integers(0, 2**32 - 1), st.integers(3, 9), st.integers(1, 3))
def test_zero_on_triplet_separated_input(seed: int, m: int, n: int) -> None:
    rng = np.random.default_rng(seed)
    lab = np.arange(m, dtype=np.int64) % 2
    # tight classes far apart
    x = 0.1 * rng.standard_normal((m, n)) + 10.0 * lab[:, None]
    assert tc.is_triplet_separated(x, lab)
    assert iso_lower_bound_lp(x, lab) <= TINY


@settings(max_examples=20)
@given(configs, st.booleans())
def test_certificate_below_and_close_to_primal(
    case: tuple[np.ndarray, np.ndarray], triangle: bool
) -> None:
    x, lab = case
    res = solve_certified(semimetric_lp(_distances(x), lab, triangle=triangle))
    assert res.certified <= res.primal
    assert res.primal - res.certified <= 1e-6 * max(1.0, abs(res.primal))


def test_any_nonnegative_multipliers_give_a_lower_bound() -> None:
    x, lab = _config(7, 6, 2, 2)
    lp = semimetric_lp(_distances(x), lab)
    primal = solve_certified(lp).primal
    rng = np.random.default_rng(1)
    assert lagrangian_bound(lp, np.zeros(lp.b.size)) == 0  # min over the box of t
    for _ in range(5):
        y = rng.exponential(0.1, lp.b.size)
        assert float(lagrangian_bound(lp, y)) <= primal + 1e-12


def test_hand_three_points_on_a_line() -> None:
    # a=0, p=2 (class 0), n=1 (class 1): L = 1. The LP: D_ap <= min(D_an, D_pn),
    # |D_ap - 2|, |D_an - 1|, |D_pn - 1| <= t forces 2 - t <= 1 + t, t >= 1/2,
    # attained by the equilateral D = 3/2 (a semimetric): LP = 1/2.
    x = np.array([[0.0], [2.0], [1.0]])
    lab = np.array([0, 0, 1])
    assert tc.hardest_triplet(x, lab).value == 1.0
    assert iso_lower_bound_lp(x, lab) == pytest.approx(0.5, abs=1e-12)
    assert iso_lower_bound_lp(x, lab) <= 0.5
    # On the line the equilateral triangle does not exist: d_iso(f, F_TS) = 1 = L.
    line = iso_distance_line(x, lab)
    assert line.lower == pytest.approx(1.0, abs=1e-12)
    assert line.lower <= 1.0 <= line.upper <= 1.0 + 1e-8
    assert tc.is_triplet_separated(line.Y, lab)
    # in the plane the equilateral triangle of side 3/2 is TS at distance 1/2
    y = 1.5 * np.array([[0.0, 0.0], [1.0, 0.0], [0.5, np.sqrt(3) / 2]])
    assert tc.is_triplet_separated(y, lab)
    assert tc.isometric_error(x, y).distance == pytest.approx(0.5)


def test_hand_four_points_triangle_inequality_matters() -> None:
    # 0 (A), 1 (A), 1 (B), 2 (A): L = 1 (anchor at 1: positive at 1, negative at 0).
    # TS: D_01, D_13 <= D_12 <= d_12 + t = t, and D_03 <= D_01 + D_13 <= 2t, while
    # D_03 >= 2 - t: t >= 2/3; attained (D_01 = D_13 = D_12 = 2/3, D_03 = D_02 = D_23
    # = 4/3). Without the triangle rows only L/2 = 1/2.
    x = np.array([[0.0], [1.0], [1.0], [2.0]])
    lab = np.array([0, 0, 1, 0])
    assert tc.hardest_triplet(x, lab).value == 1.0
    assert iso_lower_bound_lp(x, lab) == pytest.approx(2 / 3, abs=1e-12)
    assert iso_lower_bound_lp(x, lab, triangle=False) == pytest.approx(0.5, abs=1e-12)
    assert iso_distance_line(x, lab).lower == pytest.approx(1.0, abs=1e-12)


@settings(max_examples=8)
@given(st.integers(0, 2**32 - 1), st.integers(3, 5))
def test_line_blocks_agree_with_all_orderings(seed: int, m: int) -> None:
    x, lab = _config(seed, m, 1, 3)
    blocks = iso_distance_line(x, lab)
    every = iso_distance_line(x, lab, all_orderings=True)
    assert blocks.lower == pytest.approx(every.lower, abs=1e-7)
    big_l = max(0.0, tc.hardest_triplet(x, lab).value)
    lp = iso_lower_bound_lp(x, lab)
    assert lp <= blocks.upper + 1e-12
    assert blocks.lower <= blocks.upper + 1e-12
    assert tc.is_triplet_separated(blocks.Y, lab)
    assert blocks.upper == pytest.approx(tc.isometric_error(x, blocks.Y).distance)
    assert blocks.lower >= big_l / 2 - 1e-9


def test_line_beats_l_and_the_lp_cannot() -> None:
    # a pair 2 apart around a singleton, twice (classes A s A B t B at 0..5): L = 1,
    # the semimetric LP is at most L, but on the line d_iso(f, F_TS) = 3/2 L
    x = np.arange(6.0)[:, None]
    lab = np.array([0, 2, 0, 1, 3, 1])
    assert tc.hardest_triplet(x, lab).value == 1.0
    assert iso_lower_bound_lp(x, lab) <= 1.0
    line = iso_distance_line(x, lab)
    assert line.exact
    assert line.lower == pytest.approx(1.5, abs=1e-9)
    assert line.lower <= line.upper <= 1.5 + 1e-8
    # a stopped search still gives a valid (weaker) bound
    early = iso_distance_line(x, lab, max_lps=5)
    assert not early.exact
    assert early.lower <= line.lower + 1e-12
    assert tc.is_triplet_separated(early.Y, lab)


def test_bad_input() -> None:
    x, lab = _config(3, 17, 2, 2)
    with pytest.raises(ValueError, match="max_points"):
        iso_lower_bound_lp(x, lab)
    with pytest.raises(ValueError, match="no triplet"):
        iso_lower_bound_lp(x[:5], np.zeros(5, dtype=np.int64))
    with pytest.raises(ValueError, match="no triplet"):
        iso_lower_bound_lp(x[:5], np.arange(5, dtype=np.int64))
    bad = x[:5].copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        iso_lower_bound_lp(bad, lab[:5])
    with pytest.raises(ValueError, match="one column"):
        iso_distance_line(x[:5], np.array([0, 0, 1, 1, 0]))


def test_missing_scipy_gives_an_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    from tripletcore.theory import lp

    monkeypatch.setattr(lp, "_SCIPY", None)
    monkeypatch.setitem(sys.modules, "scipy.optimize", None)
    x, lab = _config(3, 4, 2, 2)
    with pytest.raises(ImportError, match="pip install"):
        iso_lower_bound_lp(x, lab)
