"""The theory module: verified Triplet-Separated configurations near X and
certified intervals for the distances to F_TS (seed paper 001, eqs. 12-14)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tripletcore as tc
from tripletcore.theory import nearest_triplet_separated, ts_distance_bounds

SETTINGS = settings(max_examples=15, deadline=None)
STEPS = 100  # enough to test the contract; quality is checked separately


@st.composite
def labelled_sets(draw, max_rows=14):
    n = draw(st.integers(3, max_rows))
    d = draw(st.integers(1, 3))
    k = draw(st.integers(2, 3))
    seed = draw(st.integers(0, 2**32 - 1))
    kind = draw(st.sampled_from(["random", "grid", "duplicates", "far", "singletons"]))
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    y = np.arange(n) % k
    rng.shuffle(y)
    if kind == "grid":
        x = rng.integers(0, 3, (n, d)).astype(float)
    elif kind == "duplicates":
        x[1::2] = x[0]
    elif kind == "far":
        x = x + 1e5
    elif kind == "singletons":
        y[:2] = [k, k + 1]  # two classes of one point each
    if len(np.unique(y)) < 2 or np.bincount(y).max() < 2:
        y[:2] = 0
        y[2] = 1
    return x, y


def enclosing_radius_bound(x):
    return float(np.sqrt(((x - x.mean(axis=0)) ** 2).sum(axis=1)).max())


@SETTINGS
@given(labelled_sets(), st.sampled_from(["iso", "sup"]))
def test_solution_is_verified_and_within_the_rigorous_bounds(data, objective):
    x, y = data
    r = nearest_triplet_separated(x, y, objective=objective, steps=STEPS)
    assert r.Y.shape == x.shape and r.objective == objective
    assert tc.is_triplet_separated(r.Y, y)
    big_l = max(0.0, tc.hardest_triplet(x, y).value)
    tol = 1e-9 * max(1.0, float(np.abs(x).max()))
    if objective == "iso":
        assert r.value == tc.isometric_error(x, r.Y).distance
        # Rigorous: d_iso(f, g) >= L/2 for every Triplet-Separated g.
        assert r.value >= big_l / 2 - tol
        assert r.value <= tc.diameter(x).distance + tol  # never worse than collapse
    else:
        assert r.value == tc.sup_displacement(x, r.Y).distance
        assert r.value >= big_l / 4 - tol
        assert r.value <= enclosing_radius_bound(x) + tol
        # d_haus <= d_inf for the same pair of maps.
        assert tc.class_hausdorff(x, r.Y, y).distance <= r.value + tol
    if big_l == 0.0:
        assert r.method == "input" and r.value == 0.0


@SETTINGS
@given(labelled_sets(max_rows=10))
def test_bounds_are_ordered_and_certified(data):
    x, y = data
    b = ts_distance_bounds(x, y, steps=STEPS)
    tol = 1e-9 * max(1.0, float(np.abs(x).max()))
    assert b.hardest == max(0.0, tc.hardest_triplet(x, y).value)
    assert b.hardest / 2 <= b.iso_lower + tol and b.iso_lower <= b.iso_upper + tol
    assert b.hardest / 4 <= b.haus_lower + tol and b.haus_lower <= b.haus_upper + tol
    assert b.haus_lower >= b.iso_lower / 2 - tol
    assert tc.is_triplet_separated(b.iso_certificate, y)
    assert tc.is_triplet_separated(b.haus_certificate, y)
    assert b.iso_upper == tc.isometric_error(x, b.iso_certificate).distance
    assert b.haus_upper == tc.class_hausdorff(x, b.haus_certificate, y).distance


def test_solver_quality_on_small_cases():
    """Where the optimum is known. Three points, classes (0, 0, 1), with
    d(a,p) = 2 and d(a,n) = d(p,n) = 1, so L = 1. In the plane the
    equilateral triangle of side 1.5 is Triplet-Separated at d_iso = 1/2 = L/2,
    the rigorous lower bound. On the line the negative cannot lie between a
    and p, and putting it outside at distances (s, 2s) gives
    max(|s - 2|, |2s - 1|, |s - 1|) >= 1 = L."""
    y = np.array([0, 0, 1])
    plane = np.array([[0.0, 0.0], [2.0, 0.0], [1.0, 0.0]])
    assert tc.hardest_triplet(plane, y).value == 1.0
    value = nearest_triplet_separated(plane, y, objective="iso").value
    assert value == pytest.approx(0.5, rel=1e-2)
    line = plane[:, :1]
    assert nearest_triplet_separated(line, y, objective="iso").value == pytest.approx(1.0, rel=1e-2)
    sep = np.array([[0.0, 0.0], [0.1, 0.0], [5.0, 0.0], [5.1, 0.0]])
    r = nearest_triplet_separated(sep, np.array([0, 0, 1, 1]))
    assert (r.value, r.method) == (0.0, "input")
    np.testing.assert_array_equal(r.Y, sep)


def test_optimised_beats_collapse_on_random_data():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((20, 2))
    y = rng.integers(0, 2, 20)
    iso = nearest_triplet_separated(x, y, objective="iso")
    assert iso.method == "optimised"
    assert iso.value < 0.8 * tc.diameter(x).distance


def test_bad_input():
    x = np.random.default_rng(0).standard_normal((6, 2))
    with pytest.raises(ValueError, match="triplet"):
        nearest_triplet_separated(x, np.zeros(6, int))
    with pytest.raises(ValueError):
        nearest_triplet_separated(x, np.zeros(5, int))
    with pytest.raises(ValueError, match="objective"):
        nearest_triplet_separated(x, np.arange(6) % 2, objective="mean")
    with pytest.raises(ValueError, match="steps"):
        nearest_triplet_separated(x, np.arange(6) % 2, steps=-1)
    with pytest.raises(TypeError):
        nearest_triplet_separated(x, np.arange(6) % 2, steps=1.5)
    with pytest.raises(TypeError):
        nearest_triplet_separated(x, np.arange(6.0) % 2)
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        ts_distance_bounds(bad, np.arange(6) % 2)
    with pytest.raises(ValueError, match="lp"):
        ts_distance_bounds(x, np.arange(6) % 2, lp="maybe")
