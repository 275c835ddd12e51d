"""Greedy k-center and the covering radius (seed paper 003) against NumPy
brute forces: exact indices on grids full of ties, the 2-approximation
guarantee, seeds, thread-count invariance and bad input."""

import itertools
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tripletcore as tc

SETTINGS = settings(max_examples=60, deadline=None)


def sqdist(A, B):
    A, B = np.asarray(A, np.float64), np.asarray(B, np.float64)
    return ((A[:, None, :] - B[None, :, :]) ** 2).sum(-1)


def greedy_oracle(X, k, seeds=None, first=0):
    """Textbook farthest-point selection in float64; ties: lowest index."""
    X = np.asarray(X, np.float64)
    n = len(X)
    near = np.full(n, np.inf) if seeds is None else sqdist(X, seeds).min(1)
    chosen = np.zeros(n, bool)
    out = []
    for t in range(k):
        if t == 0 and seeds is None:
            c = first
        else:
            c = int(np.argmax(np.where(chosen, -np.inf, near)))  # first maximum
        chosen[c] = True
        out.append(c)
        near = np.minimum(near, sqdist(X, X[c : c + 1])[:, 0])
    r2 = np.where(chosen, 0.0, near)
    return np.array(out), float(np.sqrt(r2.max())), int(np.argmax(r2))


@st.composite
def grid_points(draw, max_rows=40, max_dim=5):
    """Coordinates on a coarse dyadic grid: float64 sums are exact in any
    order, so ties are exact ties for the library and the oracle alike."""
    n = draw(st.integers(1, max_rows))
    d = draw(st.integers(1, max_dim))
    seed = draw(st.integers(0, 2**32 - 1))
    span = draw(st.sampled_from([1, 2, 5]))
    rng = np.random.default_rng(seed)
    return rng.integers(-span, span + 1, size=(n, d)) / 4.0, rng


@SETTINGS
@given(grid_points(), st.data())
def test_matches_numpy_greedy_exactly(points, data):
    X, rng = points
    n, d = X.shape
    k = data.draw(st.integers(1, n))
    first = data.draw(st.integers(0, n - 1))
    use_seeds = data.draw(st.booleans())
    seeds = rng.integers(-3, 4, size=(data.draw(st.integers(1, 5)), d)) / 4.0 if use_seeds else None
    r = tc.kcenter(X, k, seeds, first=first)
    idx, radius, far = greedy_oracle(X, k, seeds, first)
    assert r.indices.dtype == np.int64
    np.testing.assert_array_equal(r.indices, idx)
    assert r.radius == radius
    assert r.farthest == far
    assert len(set(r.indices.tolist())) == k  # a row is never chosen twice


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_random_data_matches_oracle(dtype):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((3000, 16)).astype(dtype)  # several row chunks
    r = tc.kcenter(X, 25)
    idx, radius, far = greedy_oracle(X, 25)
    np.testing.assert_array_equal(r.indices, idx)
    assert r.radius == pytest.approx(radius, rel=1e-12)
    assert r.farthest == far


def test_many_seeds_take_the_knn_path_and_agree():
    rng = np.random.default_rng(2)
    X = rng.integers(-4, 5, size=(2000, 3)) / 2.0
    seeds = rng.integers(-4, 5, size=(100, 3)) / 2.0  # > 32 seeds: tiled k-NN
    r = tc.kcenter(X, 12, seeds)
    idx, radius, far = greedy_oracle(X, 12, seeds)
    np.testing.assert_array_equal(r.indices, idx)
    assert (r.radius, r.farthest) == (radius, far)


def optimal_radius(X, k):
    """Best covering radius over all k-subsets of the rows (brute force)."""
    D = np.sqrt(sqdist(X, X))
    return min(D[:, list(c)].min(1).max() for c in itertools.combinations(range(len(X)), k))


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 9), st.integers(1, 3), st.integers(1, 3), st.integers(0, 2**32 - 1))
def test_within_twice_the_optimal_radius(n, k, d, seed):
    X = np.random.default_rng(seed).standard_normal((n, d))
    k = min(k, n)
    r = tc.kcenter(X, k, first=seed % n)
    opt = optimal_radius(X, k)
    assert r.radius <= 2 * opt + 1e-12
    # The radius is what the chosen rows really reach.
    reach = np.sqrt(sqdist(X, X[r.indices]).min(1))
    assert r.radius == pytest.approx(reach.max(), abs=1e-12)


def test_seeds_count_as_chosen():
    X = np.array([[0.0], [1.0], [2.0], [10.0], [11.0]])
    # Seeds cover 0..2 and 11 exactly: the first pick is the row farthest
    # from them (10.0, at distance 1), then rows at distance 0 in index order.
    r = tc.kcenter(X, 3, seeds=np.array([[0.0], [1.0], [2.0], [11.0]]))
    np.testing.assert_array_equal(r.indices, [3, 0, 1])
    assert r.radius == 0.0
    # A seed far from everything changes nothing but is never returned.
    r2 = tc.kcenter(X, 2, seeds=np.array([[100.0]]))
    np.testing.assert_array_equal(r2.indices, [0, 4])
    assert r2.radius == 2.0 and r2.farthest == 2


def test_all_rows_chosen_gives_radius_zero():
    X = np.random.default_rng(0).standard_normal((7, 2))
    r = tc.kcenter(X, 7)
    assert sorted(r.indices.tolist()) == list(range(7))
    assert (r.radius, r.farthest) == (0.0, 0)


def test_huge_and_tiny_coordinates_are_rescaled():
    X = np.random.default_rng(4).standard_normal((300, 4))
    base = tc.kcenter(X, 9)
    for s in (2.0**600, 2.0**-600):
        r = tc.kcenter(X * s, 9)
        np.testing.assert_array_equal(r.indices, base.indices)
        assert r.radius == base.radius * s


def test_same_result_for_any_thread_count():
    script = (
        "import json, numpy as np, tripletcore as tc\n"
        "r = np.random.default_rng(5)\n"
        "X = r.integers(-3, 4, size=(20000, 3)) / 2.0\n"  # exact ties across chunks
        "S = r.integers(-3, 4, size=(40, 3)) / 2.0\n"
        "a, b = tc.kcenter(X, 40), tc.kcenter(X, 40, S)\n"
        "print(json.dumps([a.indices.tolist(), a.radius, b.indices.tolist(), b.radius]))\n"
    )
    outs = []
    for threads in ("1", "2", "3"):
        env = dict(os.environ, RAYON_NUM_THREADS=threads)
        out = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
        )
        assert out.returncode == 0, out.stderr
        outs.append(json.loads(out.stdout))
    assert outs[0] == outs[1] == outs[2]


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"k": 0}, ValueError, "k must be between 1 and 5"),
        ({"k": 6}, ValueError, "k must be between 1 and 5"),
        ({"k": 2.0}, TypeError, "k must be an int"),
        ({"k": True}, TypeError, "k must be an int"),
        ({"k": 2, "first": 5}, ValueError, "first must be a row"),
        ({"k": 2, "first": -1}, ValueError, "first must be a row"),
        ({"k": 2, "seeds": np.zeros((2, 3))}, ValueError, "seeds has 3 features"),
        ({"k": 2, "seeds": np.zeros(2)}, ValueError, "seeds must be 2-D"),
        ({"k": 2, "seeds": np.array([[np.nan, 0.0]])}, ValueError, "seeds contains NaN"),
        ({"k": 2, "seeds": np.zeros((0, 2))}, ValueError, "seeds is empty"),
        ({"k": 2, "seeds": [["a", "b"]]}, TypeError, "seeds must be a numeric array"),
    ],
)
def test_kcenter_bad_input(kwargs, exc, match):
    X = np.arange(10.0).reshape(5, 2)
    with pytest.raises(exc, match=match):
        tc.kcenter(X, **kwargs)


def test_kcenter_rejects_bad_X():
    with pytest.raises(ValueError, match="X contains NaN"):
        tc.kcenter(np.array([[0.0], [np.inf]]), 1)
    with pytest.raises(ValueError, match="X must be 2-D"):
        tc.kcenter(np.zeros(4), 1)
    with pytest.raises(TypeError, match="X must be a 2-D array"):
        tc.kcenter(None, 1)


# ---------------------------------------------------------------- covering radius


def covering_oracle(X, y, P, py):
    D = np.sqrt(sqdist(X, P))
    out = {}
    for c in np.unique(y):
        rows, cols = np.flatnonzero(y == c), np.flatnonzero(py == c)
        sub = D[np.ix_(rows, cols)]
        nn = sub.argmin(1)  # lowest proxy on ties
        near = sub[np.arange(len(rows)), nn]
        i = int(np.argmax(near))  # lowest sample on ties
        out[int(c)] = (near[i], int(rows[i]), int(cols[nn[i]]))
    return out


@SETTINGS
@given(grid_points(max_rows=60, max_dim=10), st.integers(1, 4), st.data())
def test_covering_radius_matches_brute_force(points, classes, data):
    X, rng = points
    n, d = X.shape
    y = rng.integers(0, classes, n)
    per = data.draw(st.integers(1, 4))
    P = rng.integers(-5, 6, size=(classes * per, d)) / 4.0
    py = np.repeat(np.arange(classes), per)
    r = tc.covering_radius(X, y, P, py)
    want = covering_oracle(X, y, P, py)
    assert r.classes.tolist() == sorted(want)
    for c, v, i, j in zip(
        r.classes, r.per_class, r.per_class_sample, r.per_class_proxy, strict=True
    ):
        assert (v, i, j) == want[int(c)]
    best = max(want, key=lambda c: (want[c][0], -c))
    assert (r.radius, r.label, r.sample, r.proxy) == (want[best][0], best, *want[best][1:])


def test_covering_radius_of_kcenter_proxies_is_its_radius():
    rng = np.random.default_rng(6)
    X = rng.standard_normal((500, 5)).astype(np.float32)
    y = rng.integers(0, 3, 500)
    P, py = [], []
    for c in range(3):
        rows = np.flatnonzero(y == c)
        kc = tc.kcenter(X[rows], 4)
        P.append(X[rows[kc.indices]])
        py += [c] * 4
        r = tc.covering_radius(X[rows], np.zeros(len(rows), int), P[-1], np.zeros(4, int))
        assert r.radius == pytest.approx(kc.radius, rel=1e-6)
    r = tc.covering_radius(X, y, np.concatenate(P), np.array(py))
    assert r.per_class.shape == (3,)


def test_covering_radius_labels_and_extra_proxies():
    X = np.array([[0.0], [3.0], [10.0]])
    y = np.array([7, 7, 2], dtype=np.uint8)
    P = np.array([[1.0], [9.0], [50.0]])
    py = np.array([7, 2, 5], dtype=np.int64)  # class 5 has no sample: ignored
    r = tc.covering_radius(X, y, P, py)
    assert r.classes.tolist() == [2, 7]
    np.testing.assert_array_equal(r.per_class, [1.0, 2.0])
    assert (r.radius, r.label, r.sample, r.proxy) == (2.0, 7, 1, 0)


@pytest.mark.parametrize(
    ("args", "exc", "match"),
    [
        ((np.zeros((3, 2)), [0, 0, 1], np.zeros((1, 2)), [0]), ValueError, "class 1"),
        ((np.zeros((3, 2)), [0, 0], np.zeros((1, 2)), [0]), ValueError, "labels has 2"),
        ((np.zeros((3, 2)), [0, 0, 0], np.zeros((1, 2)), [0, 1]), ValueError, "proxy_labels"),
        ((np.zeros((3, 2)), [0, 0, 0], np.zeros((1, 3)), [0]), ValueError, "proxies has 3"),
        ((np.zeros((3, 2)), [0.0, 0, 0], np.zeros((1, 2)), [0]), TypeError, "integer dtype"),
        ((np.zeros((3, 2)), [0, 0, 0], np.full((1, 2), np.nan), [0]), ValueError, "NaN"),
        ((np.zeros((3, 2)), [0, 0, 0], None, [0]), TypeError, "proxies"),
    ],
)
def test_covering_radius_bad_input(args, exc, match):
    with pytest.raises(exc, match=match):
        tc.covering_radius(*args)
