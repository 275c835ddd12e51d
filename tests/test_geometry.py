"""Hausdorff, diameter, displacement and the hardest triplet against a
float64 brute force, and the facts of the paper's section on the geometry
that hold for every input (field notes, section 1)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import cdist, directed_hausdorff

import tripletcore as tc

SETTINGS = settings(max_examples=60, deadline=None)


def dist_matrix(a, b):
    return cdist(np.asarray(a, np.float64), np.asarray(b, np.float64))


def first_argmax(values):
    """Index of the first maximum (row-major), as the library breaks ties."""
    return np.unravel_index(int(np.argmax(values)), values.shape)


def oracle_directed(a, b):
    D = dist_matrix(a, b)
    nn = D.argmin(1)  # lowest index among equal minima
    mins = D[np.arange(len(a)), nn]
    i = int(np.argmax(mins))
    return mins[i], i, int(nn[i])


def oracle_hausdorff(a, b):
    h1, i1, j1 = oracle_directed(a, b)
    h2, i2, j2 = oracle_directed(b, a)
    return (h1, i1, j1) if h1 >= h2 else (h2, j2, i2)


def oracle_hardest(x, y):
    D = dist_matrix(x, x)
    best = None
    for a in range(len(x)):
        same = (y == y[a]) & (np.arange(len(x)) != a)
        other = y != y[a]
        if not same.any() or not other.any():
            continue
        p = int(np.argmax(np.where(same, D[a], -np.inf)))
        n = int(np.argmin(np.where(other, D[a], np.inf)))
        v = D[a, p] - D[a, n]
        if best is None or v > best[0]:
            best = (v, a, p, n)
    return best


@st.composite
def point_sets(draw, min_rows=1, max_rows=40):
    n = draw(st.integers(min_rows, max_rows))
    m = draw(st.integers(min_rows, max_rows))
    d = draw(st.integers(1, 11))  # both paths: k-d tree (d <= 8) and tiled
    seed = draw(st.integers(0, 2**32 - 1))
    kind = draw(st.sampled_from(["random", "grid", "overlap", "far", "duplicates"]))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, d))
    b = rng.standard_normal((m, d))
    if kind == "grid":
        a, b = rng.integers(0, 3, (n, d)).astype(float), rng.integers(0, 3, (m, d)).astype(float)
    elif kind == "overlap":
        b = a[rng.integers(0, n, m)] + 1e-3 * rng.standard_normal((m, d)) * rng.integers(0, 2)
    elif kind == "far":
        a, b = a + 1e4, b + 1e4
    elif kind == "duplicates":
        a[::2] = a[0]
        b[::3] = a[0]
    return a.astype(dtype), b.astype(dtype)


@SETTINGS
@given(point_sets())
def test_hausdorff_matches_brute_force(ab):
    a, b = ab
    tol = 1e-6 if a.dtype == np.float32 else 1e-12
    for directed, oracle in ((True, oracle_directed), (False, oracle_hausdorff)):
        got = tc.hausdorff(a, b, directed=directed)
        want = oracle(a, b)
        assert got.distance == pytest.approx(want[0], rel=tol, abs=tol)
        # The pair attains the value exactly (indices may differ only on exact ties).
        assert dist_matrix(a[[got.i]], b[[got.j]])[0, 0] == pytest.approx(got.distance, rel=tol)
        assert (got.i, got.j) == want[1:], (got, want)
    assert tc.hausdorff(a, b, directed=True).distance == pytest.approx(
        directed_hausdorff(a.astype(np.float64), b.astype(np.float64))[0], rel=tol, abs=tol
    )


@SETTINGS
@given(point_sets())
def test_hausdorff_is_a_symmetric_pseudometric(ab):
    a, b = ab
    c = (a[::-1] * 0.5 + 0.25).astype(a.dtype)
    hab, hba = tc.hausdorff(a, b).distance, tc.hausdorff(b, a).distance
    assert hab == hba
    assert tc.hausdorff(a, a).distance == 0.0
    slack = 1e-5 if a.dtype == np.float32 else 1e-12
    scale = 1 + np.abs(np.concatenate([a, b, c])).max()
    assert tc.hausdorff(a, c).distance <= hab + tc.hausdorff(b, c).distance + slack * scale


@SETTINGS
@given(point_sets(), st.integers(0, 2**32 - 1))
def test_invariance_under_rigid_motions_and_scaling(ab, seed):
    a, b = (x.astype(np.float64) for x in ab)
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((a.shape[1], a.shape[1])))
    shift = rng.standard_normal(a.shape[1]) * 10
    h = tc.hausdorff(a, b).distance
    assert tc.hausdorff(a @ q + shift, b @ q + shift).distance == pytest.approx(h, abs=1e-9)
    # Powers of two scale exactly; other factors up to the rounding of a * 3.
    assert tc.hausdorff(4 * a, 4 * b).distance == 4 * h
    assert tc.hausdorff(3 * a, 3 * b).distance == pytest.approx(3 * h, rel=1e-9, abs=1e-9)
    dm = tc.diameter(a).distance
    assert tc.diameter(a @ q + shift).distance == pytest.approx(dm, abs=1e-9)
    assert tc.diameter(0.5 * a).distance == 0.5 * dm
    assert tc.diameter(2.5 * a).distance == pytest.approx(2.5 * dm, rel=1e-9)


@SETTINGS
@given(point_sets())
def test_diameter_and_displacement_match_brute_force(ab):
    a, b = ab
    tol = 1e-6 if a.dtype == np.float32 else 1e-12
    D = dist_matrix(a, a)
    if len(a) > 1:
        np.fill_diagonal(D, -np.inf)  # a pair of distinct rows
    i, j = first_argmax(D)
    got = tc.diameter(a)
    assert got.distance == pytest.approx(D[i, j], rel=tol, abs=tol)
    assert (got.i, got.j) == (i, j)
    rows = min(len(a), len(b))
    disp = np.linalg.norm(a[:rows].astype(np.float64) - b[:rows].astype(np.float64), axis=1)
    got = tc.sup_displacement(a[:rows], b[:rows])
    assert got.distance == pytest.approx(disp.max(), rel=tol, abs=tol)
    assert got.row == int(np.argmax(disp))


@st.composite
def labelled_embeddings(draw):
    n = draw(st.integers(3, 40))
    d = draw(st.integers(1, 5))
    k = draw(st.integers(2, 6))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    y[:2] = [0, 1]
    y[2] = 0  # at least one positive pair and a second class
    spread = draw(st.sampled_from([0.05, 1.0, 5.0]))
    x1 = rng.standard_normal((k, d))[y] * 3 + spread * rng.standard_normal((n, d))
    x2 = x1 + draw(st.sampled_from([0.0, 1e-3, 0.5])) * rng.standard_normal((n, d))
    return x1, x2, y


@SETTINGS
@given(labelled_embeddings())
def test_class_hausdorff_and_its_bound_by_displacement(data):
    x1, x2, y = data
    r = tc.class_hausdorff(x1, x2, y)
    want = {int(c): oracle_hausdorff(x1[y == c], x2[y == c])[0] for c in np.unique(y)}
    assert r.classes.tolist() == sorted(want)
    np.testing.assert_allclose(r.per_class, [want[c] for c in sorted(want)], rtol=1e-12)
    assert r.distance == r.per_class.max()
    assert r.distance == pytest.approx(max(want.values()), rel=1e-12)
    assert y[r.i] == r.label and y[r.j] == r.label
    # d_haus(f, g) <= d_inf(f, g) for every pair of maps.
    assert r.distance <= tc.sup_displacement(x1, x2).distance * (1 + 1e-12)


@SETTINGS
@given(labelled_embeddings())
def test_hardest_triplet_and_triplet_separation(data):
    x, _, y = data
    got = tc.hardest_triplet(x, y)
    want = oracle_hardest(x, y)
    assert got.value == pytest.approx(want[0], abs=1e-12)
    assert (got.anchor, got.positive, got.negative) == want[1:]
    # Triplet-Separated iff hardest value <= 0 iff batch-hard loss with margin 0 is 0.
    separated = tc.is_triplet_separated(x, y)
    loss, _ = tc.triplet_margin_loss(x, y, margin=0.0, mining="batch_hard", reduction="sum")
    assert separated == (got.value <= 0) == (loss == 0.0)


def test_collapsed_and_separated_configurations():
    y = np.array([0, 0, 1, 1, 2])
    collapsed = np.zeros((5, 3))
    assert tc.is_triplet_separated(collapsed, y)  # collapse is always in F_TS
    assert tc.hardest_triplet(collapsed, y).value == 0.0
    spread = np.array([[0.0], [0.1], [5.0], [5.2], [9.0]])
    assert tc.is_triplet_separated(spread, y)
    mixed = np.array([[0.0], [3.0], [1.0], [5.0], [9.0]])
    assert not tc.is_triplet_separated(mixed, y)
    assert tc.is_triplet_separated(mixed, y, tol=10.0)


def test_overlapping_sets_give_exact_zero():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((500, 32)).astype(np.float32)
    perm = a[rng.permutation(500)]
    assert tc.hausdorff(a, perm).distance == 0.0
    assert tc.class_hausdorff(a, a, np.arange(500) % 7).distance == 0.0


def test_bad_input():
    a = np.zeros((3, 2))
    with pytest.raises(ValueError, match="X2 has 2 rows but X1 has 3"):
        tc.sup_displacement(a, a[:2])
    with pytest.raises(ValueError, match="X2 has 2 rows but X1 has 3"):
        tc.class_hausdorff(a, a[:2], [0, 0, 1])
    with pytest.raises(ValueError, match="B has 3 features but A has 2"):
        tc.hausdorff(a, np.zeros((3, 3)))
    with pytest.raises(ValueError, match="A contains NaN"):
        tc.hausdorff(np.array([[np.nan, 0.0]]), a)
    with pytest.raises(ValueError, match="B is empty"):
        tc.hausdorff(a, np.zeros((0, 2)))
    with pytest.raises(ValueError, match="no triplet exists"):
        tc.hardest_triplet(a, [1, 1, 1])  # a single class
    with pytest.raises(ValueError, match="no triplet exists"):
        tc.is_triplet_separated(a, [0, 1, 2])  # singleton classes only
    with pytest.raises(ValueError, match="labels has 2 entries"):
        tc.hardest_triplet(a, [0, 1])
    with pytest.raises(TypeError, match="labels must have an integer dtype"):
        tc.class_hausdorff(a, a, [0.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="tol must be"):
        tc.is_triplet_separated(a, [0, 0, 1], tol=-1)
    assert tc.diameter(np.ones((1, 4))) == (0.0, 0, 0)


def oracle_iso(x1, x2):
    from scipy.spatial.distance import pdist

    e = np.abs(pdist(x1.astype(np.float64)) - pdist(x2.astype(np.float64)))
    k = int(np.argmax(e))  # pdist order is (0,1), (0,2), ..., (1,2), ...: lowest (i, j) first
    n = len(x1)
    i = int(np.searchsorted(np.cumsum(np.arange(n - 1, 0, -1)), k, side="right"))
    j = int(k - (i * (2 * n - i - 1)) // 2 + i + 1)
    return e[k], i, j


@st.composite
def two_embeddings(draw):
    n = draw(st.integers(2, 50))
    d1, d2 = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    seed = draw(st.integers(0, 2**32 - 1))
    kind = draw(st.sampled_from(["random", "noisy", "grid", "same", "far"]))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    rng = np.random.default_rng(seed)
    x1 = rng.standard_normal((n, d1))
    x2 = rng.standard_normal((n, d2))
    if kind == "noisy":
        x2 = np.pad(x1, ((0, 0), (0, max(0, d2 - d1))))[:, :d2] + 1e-3 * x2
    elif kind == "grid":
        x1 = rng.integers(0, 3, (n, d1)).astype(float)
        x2 = rng.integers(0, 3, (n, d2)).astype(float)
    elif kind == "same":
        x2 = x1.copy()
    elif kind == "far":
        x1, x2 = x1 + 1e4, x2 - 1e4
    return x1.astype(dtype), x2.astype(dtype)


@SETTINGS
@given(two_embeddings())
def test_isometric_error_matches_brute_force(xs):
    x1, x2 = xs
    got = tc.isometric_error(x1, x2)
    want = oracle_iso(x1, x2)
    assert got.distance == pytest.approx(want[0], rel=1e-12, abs=1e-12)
    assert (got.i, got.j) == want[1:], (got, want)
    assert tc.isometric_error(x2, x1) == got  # symmetric, same pair


@SETTINGS
@given(two_embeddings(), st.integers(0, 2**32 - 1))
def test_isometric_error_facts(xs, seed):
    x1, x2 = (x.astype(np.float64) for x in xs)
    rng = np.random.default_rng(seed)
    d_iso = tc.isometric_error(x1, x2).distance
    # Invariant under rigid motions of either embedding.
    q, _ = np.linalg.qr(rng.standard_normal((x2.shape[1], x2.shape[1])))
    assert tc.isometric_error(x1, x2 @ q + 7.0).distance == pytest.approx(d_iso, abs=1e-9)
    # Scales linearly (exactly for powers of two).
    assert tc.isometric_error(2 * x1, 2 * x2).distance == 2 * d_iso
    # Triangle inequality through a third embedding of the same points.
    x3 = rng.standard_normal((len(x1), 3))
    d13 = tc.isometric_error(x1, x3).distance
    assert d_iso <= d13 + tc.isometric_error(x3, x2).distance + 1e-9
    # d_iso <= 2 d_inf when the two live in one space.
    if x1.shape[1] == x2.shape[1]:
        assert d_iso <= 2 * tc.sup_displacement(x1, x2).distance + 1e-9


@settings(max_examples=80, deadline=None)
@given(labelled_embeddings(), st.integers(0, 2**32 - 1))
def test_lower_bound_half_the_hardest_triplet(data, seed):
    """For every Triplet-Separated g: d_iso(f, g) >= L / 2 with L the positive
    part of the hardest triplet of f (the rigorous half of Theorem 3)."""
    x, _, y = data
    L = max(0.0, tc.hardest_triplet(x, y).value)
    rng = np.random.default_rng(seed)
    classes = np.unique(y)
    candidates = [np.zeros_like(x)]  # collapse
    for spread in (0.0, 0.01, 0.3):
        centres = rng.standard_normal((len(classes), x.shape[1])) * 10
        g = centres[np.searchsorted(classes, y)] + spread * rng.standard_normal(x.shape)
        candidates.append(g)
    candidates.append(x)  # f itself, when it is separated
    tested = 0
    for g in candidates:
        if tc.is_triplet_separated(g, y):
            tested += 1
            assert tc.isometric_error(x, g).distance >= L / 2 - 1e-9
    assert tested >= 2  # the collapse and the point-per-class configuration at least


def test_isometric_error_bad_input():
    with pytest.raises(ValueError, match="X2 has 2 rows but X1 has 3"):
        tc.isometric_error(np.zeros((3, 2)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="X2 contains NaN"):
        tc.isometric_error(np.zeros((2, 2)), np.array([[0.0], [np.inf]]))
    assert tc.isometric_error(np.zeros((1, 2)), np.ones((1, 5))) == (0.0, 0, 0)
    # Massive ties (all differences equal): exact rescan, lowest pair.
    x = np.arange(200, dtype=np.float64)[:, None]
    assert tc.isometric_error(x, x + 5) == (0.0, 0, 1)


@pytest.mark.parametrize("kind", ["random3d", "clustered", "ties", "far"])
def test_hausdorff_with_early_exit_across_many_blocks(kind):
    """Many row blocks, so rows are retired by the shared lower bound: the
    answer and the pair must still be those of the brute force."""
    rng = np.random.default_rng(7)
    n, m, d = 2500, 1800, 3
    a = rng.standard_normal((n, d))
    b = rng.standard_normal((m, d))
    if kind == "clustered":
        a = np.sort(a, axis=0)  # sorted rows: blocks see similar points
        b[:900] += 4.0
    elif kind == "ties":
        a = rng.integers(0, 4, (n, d)).astype(float)
        b = rng.integers(0, 4, (m, d)).astype(float) + 0.5
    elif kind == "far":
        a, b = a + 1e6, b + 1e6
    for x, y in ((a, b), (b, a)):
        got = tc.hausdorff(x, y, directed=True)
        want = oracle_directed(x, y)
        assert got.distance == pytest.approx(want[0], rel=1e-12)
        assert (got.i, got.j) == want[1:]
    got = tc.hausdorff(a.astype(np.float32), b.astype(np.float32))
    want = oracle_hausdorff(a.astype(np.float32), b.astype(np.float32))
    assert got.distance == pytest.approx(want[0], rel=1e-6)
    assert (got.i, got.j) == want[1:]


@pytest.mark.parametrize("noise", [1e-2, 1e-4, 0.0])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tiled_hausdorff_of_noisy_copies_in_the_same_order(noise, dtype):
    """The tiled path (d > 8) visits each block's home chunk first and retires
    rows by the exact distance to a home candidate: copies in the same row
    order, with duplicated rows (ties) and a copy with extra rows, must give
    the brute force's value and pair."""
    rng = np.random.default_rng(11)
    n, d = 2300, 16
    a = rng.standard_normal((n, d)) + 50.0  # far from the origin: wide tile bounds
    a[1000:1010] = a[999]  # exact duplicates: ties for the lowest index
    b = a + noise * rng.standard_normal((n, d))
    b_longer = np.concatenate([b, rng.standard_normal((700, d)) + 50.0])
    for x, y in ((a, b), (b, a), (a, b_longer), (b_longer, a)):
        x, y = x.astype(dtype), y.astype(dtype)
        got = tc.hausdorff(x, y, directed=True)
        want = oracle_directed(x, y)
        assert got.distance == pytest.approx(want[0], rel=1e-12, abs=1e-300)
        assert (got.i, got.j) == want[1:]


def test_hausdorff_same_for_any_thread_count():
    import json
    import os
    import subprocess
    import sys

    script = (
        "import json, numpy as np, tripletcore as tc\n"
        "r = np.random.default_rng(3)\n"
        "a, b = r.standard_normal((3000, 5)), r.standard_normal((2000, 5))\n"
        "h, e = tc.hausdorff(a, b), tc.isometric_error(a[:900], b[:900])\n"
        "print(json.dumps([tuple(h), tuple(e)]))\n"
    )
    outs = []
    for threads in ("1", "2"):
        env = dict(os.environ, RAYON_NUM_THREADS=threads)
        out = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
        )
        assert out.returncode == 0, out.stderr
        outs.append(json.loads(out.stdout))
    assert outs[0] == outs[1]
