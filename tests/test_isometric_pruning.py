"""isometric_error with block-pair pruning (issue 18): the pruned scan gives
the brute scan's answer bit for bit (value and pair, ties to the lowest
pair), for any thread count, and the tests catch a bound 1% too tight."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import pdist

import tripletcore as tc
from tripletcore import _core

SETTINGS = settings(max_examples=60, deadline=None)


def oracle(x1, x2):
    """Brute force in float64: the largest discrepancy, lowest (i, j) first."""
    e = np.abs(pdist(x1.astype(np.float64)) - pdist(x2.astype(np.float64)))
    k = int(np.argmax(e))
    n = len(x1)
    i = int(np.searchsorted(np.cumsum(np.arange(n - 1, 0, -1)), k, side="right"))
    j = int(k - (i * (2 * n - i - 1)) // 2 + i + 1)
    return e[k], i, j


def scan(x1, x2, mode, leaf=16):
    return _core._isometric_error_mode(x1, x2, mode, leaf)


def clustered(n, d, classes, spread, seed, d2=None, noise=1e-3):
    """Gaussian classes; the second embedding a rotated (and, for d2 != d,
    projected or padded), rescaled, noisy copy."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((classes, d))
    x1 = centres[rng.integers(classes, size=n)] + spread * rng.standard_normal((n, d))
    d2 = d2 or d
    q, _ = np.linalg.qr(rng.standard_normal((max(d, d2), max(d, d2))))
    x2 = 1.1 * (x1 @ q[:d, :d2]) + noise * rng.standard_normal((n, d2))
    return x1, x2


def case(kind, seed=0):
    rng = np.random.default_rng(seed)
    n = 300
    if kind == "random":
        return rng.standard_normal((n, 5)), rng.standard_normal((n, 5))
    if kind == "clustered":
        return clustered(n, 8, 10, 1e-2, seed)
    if kind == "dims":
        return clustered(n, 6, 10, 1e-2, seed, d2=3)
    if kind == "duplicated":
        x1, x2 = clustered(60, 4, 5, 1e-2, seed)
        return np.repeat(x1, 5, axis=0), np.repeat(x2, 5, axis=0)
    if kind == "ties":
        # integer grids: many pairs share the maximum exactly
        return rng.integers(0, 3, (n, 3)).astype(float), rng.integers(0, 3, (n, 3)).astype(float)
    if kind == "far":
        x1, x2 = clustered(n, 8, 10, 1e-2, seed)
        return x1 + 1e6, x2 - 3e5
    if kind == "one_cluster":
        return clustered(n, 8, 1, 1e-2, seed)
    if kind == "one_point_per_cluster":
        return clustered(n, 8, n * 10, 0.0, seed)
    if kind == "identical":
        x = rng.standard_normal((n, 4))
        return x, x.copy()
    raise AssertionError(kind)


KINDS = [
    "random",
    "clustered",
    "dims",
    "duplicated",
    "ties",
    "far",
    "one_cluster",
    "one_point_per_cluster",
    "identical",
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("leaf", [1, 7, 16, 64])
def test_pruned_matches_oracle_and_brute_scan(kind, dtype, leaf):
    x1, x2 = (np.ascontiguousarray(x, dtype=dtype) for x in case(kind))
    ref = scan(x1, x2, "unpruned")
    got = scan(x1, x2, "pruned", leaf)
    assert got[:3] == ref[:3]
    assert got[4] > 0 and 0 < got[3] <= got[4]  # the pruned scan ran
    want = oracle(x1, x2)
    assert got[0] == pytest.approx(want[0], rel=1e-12, abs=1e-12)
    if kind not in ("far",):  # far from the origin pdist's rounding may break ties differently
        assert got[1:3] == want[1:]


def test_clustered_pairs_are_skipped():
    x1, x2 = clustered(3000, 16, 6, 1e-3, 1)
    got = scan(x1, x2, "pruned", 32)
    assert got[:3] == scan(x1, x2, "unpruned")[:3]
    assert got[3] < got[4] / 4, got  # most block pairs skipped


@st.composite
def embeddings(draw):
    n = draw(st.integers(2, 200))
    d1, d2 = draw(st.integers(1, 8)), draw(st.integers(1, 8))
    seed = draw(st.integers(0, 2**32 - 1))
    kind = draw(st.sampled_from(["random", "clustered", "grid", "duplicated", "far"]))
    rng = np.random.default_rng(seed)
    if kind == "random":
        x1, x2 = rng.standard_normal((n, d1)), rng.standard_normal((n, d2))
    elif kind == "grid":
        x1 = rng.integers(0, 2, (n, d1)).astype(float)
        x2 = rng.integers(0, 2, (n, d2)).astype(float)
    else:
        classes = draw(st.integers(1, max(1, n // 2)))
        spread = draw(st.sampled_from([0.0, 1e-4, 1e-2, 0.3]))
        x1, x2 = clustered(n, d1, classes, spread, seed, d2=d2)
        if kind == "duplicated":
            x1, x2 = x1[rng.integers(n, size=n)], x2[rng.integers(n, size=n)]
            x2 = x2 if draw(st.booleans()) else x1[:, :1].copy()
        elif kind == "far":
            x1, x2 = x1 + 1e5, x2 - 1e5
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    leaf = draw(st.sampled_from([1, 2, 5, 16, 64]))
    return np.ascontiguousarray(x1, dtype=dtype), np.ascontiguousarray(x2, dtype=dtype), leaf


@SETTINGS
@given(embeddings())
def test_pruned_equals_unpruned_exactly(xs):
    x1, x2, leaf = xs
    ref = scan(x1, x2, "unpruned")[:3]
    assert scan(x1, x2, "pruned", leaf)[:3] == ref
    assert scan(x1, x2, "auto", leaf)[:3] == ref
    assert tuple(tc.isometric_error(x1, x2)) == ref


def test_public_api_prunes_and_agrees():
    x1, x2 = clustered(17000, 16, 12, 1e-3, 3)
    x1, x2 = x1.astype(np.float32), x2.astype(np.float32)
    _core._pruning_counts()
    got = tc.isometric_error(x1, x2)
    considered, skipped = _core._pruning_counts()
    assert considered > 0 and skipped > considered // 2
    previous = _core._set_pruning(False)
    try:
        assert tc.isometric_error(x1, x2) == got
        assert _core._pruning_counts() == (0, 0)
    finally:
        _core._set_pruning(previous)


def test_unclustered_data_falls_back_to_the_brute_scan():
    rng = np.random.default_rng(5)
    x1, x2 = rng.standard_normal((17000, 16)), rng.standard_normal((17000, 16))
    auto = scan(x1, x2, "auto", 64)
    assert auto[3:] == (0, 0)  # the sample showed that pruning does not pay
    assert auto[:3] == scan(x1, x2, "unpruned")[:3]


def test_a_bound_one_percent_too_tight_is_caught():
    """The mutation: every block bound 1% too tight. Without it the pruned
    scan agrees with the brute one on every case; with it, it misses the
    maximum on some, so the comparisons above have the power to see it."""
    missed = 0
    for seed in range(8):
        x1, x2 = clustered(400, 8, 8, 1e-3, seed)
        ref = scan(x1, x2, "unpruned")[:3]
        assert scan(x1, x2, "pruned")[:3] == ref
        _core._set_bound_tightening(0.01)
        try:
            tight = scan(x1, x2, "pruned")[:3]
        finally:
            _core._set_bound_tightening(0.0)
        missed += tight != ref
        assert scan(x1, x2, "pruned")[:3] == ref  # the knob is off again
    assert missed >= 2, missed


THREADS_SCRIPT = """
import json, sys
import numpy as np
sys.path.insert(0, {tests!r})
from test_isometric_pruning import clustered, scan
out = []
for seed in range(3):
    x1, x2 = clustered(3000, 16, 20, 1e-2, seed)
    out.append(list(scan(x1, x2, "pruned", 16)[:3]))
print(json.dumps(out))
"""


def test_thread_count_invariant():
    results = []
    script = THREADS_SCRIPT.format(tests=os.path.dirname(os.path.abspath(__file__)))
    for threads in ("1", "2"):
        env = dict(os.environ, RAYON_NUM_THREADS=threads)
        out = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
        )
        results.append(json.loads(out.stdout))
    assert results[0] == results[1]
    for seed, r in enumerate(results[0]):
        x1, x2 = clustered(3000, 16, 20, 1e-2, seed)
        assert tuple(r) == scan(x1, x2, "unpruned")[:3]


def test_bad_mode_is_a_value_error():
    x = np.zeros((3, 2))
    with pytest.raises(ValueError, match="mode"):
        scan(x, x, "fast")
