"""Thickness (Definition 3): exact in 1-D and 2-D, a certified interval in
higher dimensions; checked against brute force and its invariances."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tripletcore as tc

SETTINGS = settings(max_examples=60, deadline=None)


def width_along(a, e):
    p = np.asarray(a, np.float64) @ np.asarray(e, np.float64)
    return float(p.max() - p.min())


def brute_width_2d(a):
    """The minimum width of a polygon is attained normal to one of its
    edges, so the minimum over all pair directions is exact."""
    a = np.asarray(a, np.float64)
    best = np.inf
    for i, j in itertools.combinations(range(len(a)), 2):
        e = a[j] - a[i]
        if e.any():
            best = min(best, width_along(a, np.array([-e[1], e[0]]) / np.hypot(*e)))
    return 0.0 if not np.isfinite(best) else best


def rotation(rng, d):
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))


@st.composite
def planar_sets(draw):
    n = draw(st.integers(1, 40))
    seed = draw(st.integers(0, 2**32 - 1))
    kind = draw(st.sampled_from(["random", "grid", "collinear", "duplicates", "far", "circle"]))
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, 2))
    if kind == "grid":
        a = rng.integers(0, 4, (n, 2)).astype(float)
    elif kind == "collinear":
        a = np.outer(rng.standard_normal(n), [3.0, -1.0]) + [1.0, 2.0]
    elif kind == "duplicates":
        a[::2] = a[0]
    elif kind == "far":
        a = a + 1e6
    elif kind == "circle":
        t = rng.uniform(0, 2 * np.pi, n)
        a = np.c_[np.cos(t), np.sin(t)]
    return a


@SETTINGS
@given(planar_sets())
def test_2d_is_exact(a):
    got = tc.thickness(a)
    want = brute_width_2d(a)
    scale = max(1.0, float(np.abs(a).max()))
    assert got.exact and got.lower == got.upper
    assert got.upper == pytest.approx(want, rel=1e-9, abs=1e-12 * scale)
    assert np.linalg.norm(got.direction) == pytest.approx(1.0)
    assert width_along(a, got.direction) == pytest.approx(got.upper, rel=1e-9, abs=1e-9 * scale)
    assert got.upper <= tc.diameter(a).distance * (1 + 1e-12)
    f32 = tc.thickness(a.astype(np.float32))
    assert f32.upper == pytest.approx(brute_width_2d(a.astype(np.float32)), rel=1e-6, abs=1e-6)


@SETTINGS
@given(planar_sets(), st.integers(0, 2**32 - 1), st.floats(0.01, 100.0))
def test_2d_invariant_under_rigid_motions_and_scaling(a, seed, s):
    rng = np.random.default_rng(seed)
    moved = a @ rotation(rng, 2).T + rng.standard_normal(2)
    base = tc.thickness(a).upper
    tol = 1e-8 * max(1.0, float(np.abs(a).max()))
    assert tc.thickness(moved).upper == pytest.approx(base, rel=1e-8, abs=tol)
    assert tc.thickness(s * a).upper == pytest.approx(s * base, rel=1e-8, abs=s * tol)


def test_known_shapes():
    rng = np.random.default_rng(0)
    rect = np.array([[0, 0], [4, 0], [4, 1], [0, 1]], float) @ rotation(rng, 2).T
    assert tc.thickness(rect).upper == pytest.approx(1.0)
    tri = np.array([[0, 0], [1, 0], [0.5, np.sqrt(3) / 2]])
    assert tc.thickness(tri).upper == pytest.approx(np.sqrt(3) / 2)
    t = np.linspace(0, 2 * np.pi, 2001)[:-1]
    assert tc.thickness(np.c_[np.cos(t), np.sin(t)]).upper == pytest.approx(2.0, rel=1e-5)
    line = np.c_[np.arange(10.0), 2 * np.arange(10.0)]
    got = tc.thickness(line)
    assert got.upper == 0.0 and got.exact
    assert width_along(line, got.direction) == pytest.approx(0.0, abs=1e-12)
    assert tc.thickness(np.array([[1.0, 2.0]])).upper == 0.0
    one_d = tc.thickness(np.array([[3.0], [-1.0], [2.0]]))
    assert one_d == (4.0, 4.0, one_d.direction, True)
    huge = tc.thickness(rect * 1e300)
    assert huge.upper == pytest.approx(1e300)
    tiny = tc.thickness(rect * 1e-300)
    assert tiny.upper == pytest.approx(1e-300)


@pytest.mark.parametrize("n,d", [(3, 3), (10, 5), (60, 3), (200, 4), (120, 16)])
def test_higher_dimensions_give_a_valid_interval(n, d):
    rng = np.random.default_rng(n * d)
    a = rng.standard_normal((n, d)) * np.linspace(0.2, 2.0, d)
    got = tc.thickness(a)
    assert 0.0 <= got.lower <= got.upper
    assert got.upper <= tc.diameter(a).distance * (1 + 1e-12)
    assert np.linalg.norm(got.direction) == pytest.approx(1.0)
    assert width_along(a, got.direction) == pytest.approx(got.upper, rel=1e-9, abs=1e-12)
    if n <= d:  # the affine hull is lower-dimensional
        assert got.exact and got.upper == pytest.approx(0.0, abs=1e-9)
    # Any direction gives an upper bound, so random ones never beat `lower`.
    for e in rng.standard_normal((200, d)):
        assert width_along(a, e / np.linalg.norm(e)) >= got.lower * (1 - 1e-9)


def test_bad_input():
    with pytest.raises(ValueError, match="NaN"):
        tc.thickness(np.array([[0.0, np.nan]]))
    with pytest.raises(ValueError, match="empty"):
        tc.thickness(np.zeros((0, 2)))
    with pytest.raises(ValueError):
        tc.thickness(np.zeros(3))
    with pytest.raises(ValueError, match="rtol"):
        tc.thickness(np.zeros((3, 3)), rtol=-1.0)
    with pytest.raises(ValueError, match="max_cells"):
        tc.thickness(np.zeros((3, 3)), max_cells=0)
