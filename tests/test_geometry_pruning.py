"""The block-pruned Hausdorff scan (issue 18): the same value and the same
pair as the unpruned scan and a float64 brute force, on random, clustered,
duplicated and adversarial data; a bound made 1% too tight must be caught.

The private ``pruning`` argument of the bindings selects the scan: "off"
(the unpruned tiled scan), "on" (pruned, with small blocks so that small
inputs have many), "auto" (the public default) and "too_tight" (pruned with
every block gap 1% too large: a wrong bound)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import cdist

from tripletcore import _core

SETTINGS = settings(max_examples=40, deadline=None)


def directed(a, b, pruning):
    return _core.hausdorff(np.ascontiguousarray(a), np.ascontiguousarray(b), True, pruning)


def oracle_directed(a, b):
    """Largest nearest distance; ties to the lowest row, nearest to the lowest column."""
    D = cdist(np.asarray(a, np.float64), np.asarray(b, np.float64))
    nn = D.argmin(1)
    mins = D[np.arange(len(a)), nn]
    i = int(np.argmax(mins))
    return mins[i], i, int(nn[i])


def dataset(kind, rng, dtype):
    n, m, d = 700, 900, 12
    if kind == "random":
        a, b = rng.standard_normal((n, d)), rng.standard_normal((m, d))
    elif kind == "clustered":
        centres = 20 * rng.standard_normal((30, d))
        a = centres[rng.integers(0, 30, n)] + 0.1 * rng.standard_normal((n, d))
        b = centres[rng.integers(0, 30, m)] + 0.1 * rng.standard_normal((m, d))
    elif kind == "duplicated":
        base = rng.standard_normal((60, d))
        a, b = base[rng.integers(0, 60, n)], base[rng.integers(0, 60, m)]
        b[::7] += 0.25
    elif kind == "grid_ties":
        a = rng.integers(0, 3, (n, d)).astype(float)
        b = rng.integers(0, 3, (m, d)).astype(float) + 0.5
    elif kind == "far":
        a = 1e8 + rng.standard_normal((n, d))
        b = 1e8 + rng.standard_normal((m, d))
    elif kind == "single_cluster":
        a = 3.0 + 1e-3 * rng.standard_normal((n, d))
        b = 3.0 + 1e-3 * rng.standard_normal((m, d))
    elif kind == "one_per_cluster":
        a = 1e4 * rng.standard_normal((n, d))
        b = a[rng.permutation(n)][: min(n, m)] + rng.standard_normal((min(n, m), d))
    elif kind == "shuffled_noisy_copy":
        a = rng.standard_normal((n, d))
        b = (a + 1e-2 * rng.standard_normal((n, d)))[rng.permutation(n)]
    elif kind == "permutation":
        a = rng.standard_normal((n, d))
        b = a[rng.permutation(n)]
    elif kind in ("tiny", "huge"):
        s = 1e150 if dtype == np.float64 else 1e30
        s = s if kind == "huge" else 1.0 / s
        a, b = s * rng.standard_normal((n, d)), s * rng.standard_normal((m, d))
    else:
        raise ValueError(kind)
    return a.astype(dtype), b.astype(dtype)


KINDS = [
    "random",
    "clustered",
    "duplicated",
    "grid_ties",
    "far",
    "single_cluster",
    "one_per_cluster",
    "shuffled_noisy_copy",
    "permutation",
    "tiny",
    "huge",
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kind", KINDS)
def test_pruned_matches_brute_force(kind, dtype):
    rng = np.random.default_rng(KINDS.index(kind))
    a, b = dataset(kind, rng, dtype)
    for x, y in ((a, b), (b, a)):
        want = oracle_directed(x, y)
        off = directed(x, y, "off")
        for pruning in ("on", "auto"):
            got = directed(x, y, pruning)
            assert got == off, (pruning, got, off)
        assert off[0] == pytest.approx(want[0], rel=1e-12, abs=0.0)
        assert off[1:] == want[1:]


@st.composite
def point_sets(draw):
    d = draw(st.integers(9, 20))
    n = draw(st.integers(1, 260))
    m = draw(st.integers(1, 260))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    style = draw(st.sampled_from(["normal", "integers", "copy", "clusters"]))
    if style == "normal":
        a, b = rng.standard_normal((n, d)), rng.standard_normal((m, d))
    elif style == "integers":  # many exact ties
        a = rng.integers(-2, 3, (n, d)).astype(float)
        b = rng.integers(-2, 3, (m, d)).astype(float)
    elif style == "copy":
        a = rng.standard_normal((n, d))
        noise = draw(st.sampled_from([0.0, 1e-6, 1e-2, 0.3]))
        b = a[rng.integers(0, n, m)] + noise * rng.standard_normal((m, d))
    else:
        centres = 10 * rng.standard_normal((draw(st.integers(1, 12)), d))
        a = centres[rng.integers(0, len(centres), n)] + 0.05 * rng.standard_normal((n, d))
        b = centres[rng.integers(0, len(centres), m)] + 0.05 * rng.standard_normal((m, d))
    offset = draw(st.sampled_from([0.0, 0.0, 1e3, -1e8]))
    scale = draw(st.sampled_from([1.0, 1.0, 1e-100, 1e100]))
    dtype = draw(st.sampled_from([np.float64, np.float32]))
    if dtype == np.float32:
        scale = 1.0
    return ((a + offset) * scale).astype(dtype), ((b + offset) * scale).astype(dtype)


@SETTINGS
@given(point_sets())
def test_pruned_equals_unpruned(ab):
    a, b = ab
    for x, y in ((a, b), (b, a)):
        assert directed(x, y, "on") == directed(x, y, "off")
    assert _core.hausdorff(a, b, False, "on") == _core.hausdorff(a, b, False, "off")


@SETTINGS
@given(point_sets(), st.integers(1, 5), st.integers(0, 2**32 - 1))
def test_class_hausdorff_and_covering_radius_pruned_equal_unpruned(ab, k, seed):
    a, b = ab
    n = min(len(a), len(b))
    x1, x2 = a[:n], b[:n]
    labels = np.random.default_rng(seed).integers(0, k, n).astype(np.int64)
    off = _core.class_hausdorff(x1, x2, labels, "off")
    on = _core.class_hausdorff(x1, x2, labels, "on")
    for u, v in zip(off, on, strict=True):
        np.testing.assert_array_equal(u, v)
    plab = np.random.default_rng(seed + 1).integers(0, k, len(b)).astype(np.int64)
    if set(labels.tolist()) <= set(plab.tolist()):
        off = _core.covering_radius(x1, labels, b, plab, "off")
        on = _core.covering_radius(x1, labels, b, plab, "on")
        for u, v in zip(off, on, strict=True):
            np.testing.assert_array_equal(u, v)


def mutation_case():
    """One row p at the origin; y holds, in one block, a point r at distance
    1.005 and 31 far points, and in the other 32 copies of q at distance 1.
    p lands in r's block; only a block gap within 1% of the truth can skip
    q's block, and then the nearest row comes out wrong."""
    d = 16
    p = np.zeros((1, d))
    r = np.zeros(d)
    r[1] = 1.005
    far = np.zeros((31, d))
    far[:, 0] = -10.0
    far[:, 2] = np.linspace(0.0, 0.3, 31)
    q = np.zeros(d)
    q[0] = 1.0
    y = np.vstack([far[:15], r, far[15:], np.tile(q, (32, 1))])
    return p, y


def test_a_bound_one_percent_too_tight_is_caught():
    p, y = mutation_case()
    want = oracle_directed(p, y)
    assert want == (1.0, 0, 32)
    for pruning in ("off", "on"):
        got = directed(p, y, pruning)
        assert got[0] == pytest.approx(want[0], rel=1e-12) and got[1:] == want[1:]
    # The wrong bound skips q's block: the oracle comparison fails.
    wrong = directed(p, y, "too_tight")
    assert wrong[2] == 15 and wrong[0] == pytest.approx(1.005)
    assert wrong[0] != pytest.approx(want[0], rel=1e-12)


def test_bad_pruning_argument():
    a = np.zeros((3, 10))
    with pytest.raises(ValueError, match="pruning"):
        _core.hausdorff(a, a, True, "sometimes")


def test_pruned_same_for_any_thread_count():
    script = (
        "import json, numpy as np\n"
        "from tripletcore import _core\n"
        "r = np.random.default_rng(5)\n"
        "a = r.standard_normal((3000, 24))\n"
        "b = (a + 1e-2 * r.standard_normal(a.shape))[r.permutation(3000)]\n"
        "c = r.standard_normal((2500, 24))\n"
        "out = [_core.hausdorff(x, y, True, 'auto') for x, y in ((a, b), (b, a), (a, c), (c, a))]\n"
        "out += [_core.hausdorff(a.astype(np.float32), b.astype(np.float32), False, 'on')]\n"
        "print(json.dumps(out))\n"
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
