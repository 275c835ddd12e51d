"""The symmetric k-NN self-query (each pair of row blocks computed once and
offered to both blocks' rows) against the plain scan (every row block
against every panel) and a float64 brute force: the same indices and the
same distance bits, for any thread count and SIMD path."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tripletcore import _core
from tripletcore._convert import as_embeddings

# Rows per block of the symmetric scan (rust/core/src/knn_scan.rs): sizes around
# its multiples give partial last blocks and odd block counts (a dummy block).
BLOCK = 384
METRICS = ("euclidean", "sqeuclidean", "cosine")


def knn(x, k, metric="euclidean", exclude_self=True, symmetric=True):
    xa = as_embeddings(x, "X")
    return _core.knn(xa, k, None, metric, exclude_self, symmetric)


def assert_same_bits(a, b):
    np.testing.assert_array_equal(a[0], b[0])
    assert a[1].dtype == b[1].dtype
    bits = np.uint32 if a[1].dtype == np.float32 else np.uint64
    np.testing.assert_array_equal(a[1].view(bits), b[1].view(bits))


def oracle(x, k, metric="euclidean", exclude_self=True):
    """Stable sort of float64 squared distances: ties to the lowest index."""
    x = np.asarray(x, np.float64)
    if metric == "cosine":
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
    d2 = np.empty((x.shape[0], x.shape[0]))
    for i0 in range(0, x.shape[0], 256):
        d2[i0 : i0 + 256] = ((x[i0 : i0 + 256, None, :] - x[None, :, :]) ** 2).sum(-1)
    if exclude_self:
        np.fill_diagonal(d2, np.inf)
    idx = np.argsort(d2, axis=1, kind="stable")[:, :k]
    return idx, np.take_along_axis(d2, idx, 1)


def points(rng, n, d, kind, dtype):
    if kind == "normal":
        x = rng.standard_normal((n, d))
    elif kind == "grid":  # small integers: exact distances, many exact ties
        x = rng.integers(0, 3, (n, d)).astype(float)
    elif kind == "duplicates":
        x = rng.standard_normal((max(1, n // 5), d))[rng.integers(0, max(1, n // 5), n)]
    elif kind == "far":  # far from the origin: the expansion cancels without centring
        x = (1e4 if dtype == np.float32 else 1e8) + rng.standard_normal((n, d))
    elif kind == "far_grid":
        x = 1e4 + rng.integers(0, 3, (n, d)).astype(float)
    elif kind == "tiny":
        x = (1e-30 if dtype == np.float32 else 1e-200) * rng.standard_normal((n, d))
    elif kind == "huge":
        x = (1e30 if dtype == np.float32 else 1e200) * rng.standard_normal((n, d))
    elif kind == "one_cluster":
        x = rng.standard_normal(d) + 1e-3 * rng.standard_normal((n, d))
    elif kind == "clusters":
        centres = 10 * rng.standard_normal((max(1, n // 50), d))
        x = centres[rng.integers(0, len(centres), n)] + 0.1 * rng.standard_normal((n, d))
    else:
        raise ValueError(kind)
    x = x.astype(dtype)
    x[~np.any(x != 0, axis=1), 0] = 1  # cosine needs non-zero rows
    return np.ascontiguousarray(x)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("n", [2, BLOCK - 1, BLOCK + 1, 3 * BLOCK + 5, 4 * BLOCK])
def test_symmetric_matches_plain_and_oracle(n, metric, dtype):
    rng = np.random.default_rng(n)
    x = points(rng, n, 9, "normal", dtype)
    for k in sorted({1, min(2, n - 1), min(10, n - 1), n - 1}):
        sym, plain = knn(x, k, metric), knn(x, k, metric, symmetric=False)
        assert_same_bits(sym, plain)
        idx, d2 = oracle(x, k, metric)
        # Indices where the oracle's float64 sum order cannot reorder them.
        gap = np.diff(d2, axis=1, append=np.inf) > 1e-9 * (1 + d2)
        gap &= np.diff(d2, axis=1, prepend=-np.inf) > 1e-9 * (1 + d2)
        assert (sym[0][gap] == idx[gap]).all()
        want = {"euclidean": np.sqrt(d2), "sqeuclidean": d2, "cosine": d2 / 2}[metric]
        tol = 1e-6 if dtype == np.float32 else 1e-12
        np.testing.assert_allclose(sym[1], want, rtol=tol, atol=tol)


@pytest.mark.parametrize("kind", ["grid", "far_grid", "duplicates"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exact_ties_go_to_the_lowest_index(kind, dtype):
    # Integer grids have exact float64 distances: the oracle's stable sort is
    # the answer itself, ties included.
    rng = np.random.default_rng(7)
    x = points(rng, 2 * BLOCK + 37, 3, kind, dtype)
    for metric in ("euclidean", "sqeuclidean"):
        for k in (1, 2, 10, x.shape[0] - 1):
            sym = knn(x, k, metric)
            assert_same_bits(sym, knn(x, k, metric, symmetric=False))
            if kind != "duplicates":
                np.testing.assert_array_equal(sym[0], oracle(x, k, metric)[0])


def test_every_row_equal_overflows_to_the_exact_scan():
    x = np.ones((2 * BLOCK + 3, 4), np.float32)
    sym = knn(x, 5)
    assert_same_bits(sym, knn(x, 5, symmetric=False))
    np.testing.assert_array_equal(sym[0][-1], [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(sym[0][0], [1, 2, 3, 4, 5])
    assert (sym[1] == 0).all()


@pytest.mark.parametrize("kind", ["tiny", "huge", "far", "one_cluster", "clusters"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adversarial_magnitudes(kind, dtype):
    rng = np.random.default_rng(11)
    x = points(rng, 3 * BLOCK + 1, 6, kind, dtype)
    # Cosine of rows 1e8 from the origin in float64: all distances are ~1e-16
    # and every row takes the slow exact path (about 10 s, on either scan).
    metrics = METRICS[:2] if (kind, dtype) == ("far", np.float64) else METRICS
    for metric in metrics:
        for k in (1, 10):
            sym = knn(x, k, metric)
            assert_same_bits(sym, knn(x, k, metric, symmetric=False))
            # The oracle on the rows divided by a power of two (exact) keeps the
            # float64 squares finite and normal.
            s = 2.0 ** np.floor(np.log2(np.abs(x.astype(np.float64)).max()))
            idx, d2 = oracle(x.astype(np.float64) / s, k, metric)
            gap = np.diff(d2, axis=1, append=np.inf) > 1e-9 * (1e-300 + d2)
            gap &= np.diff(d2, axis=1, prepend=-np.inf) > 1e-9 * (1e-300 + d2)
            assert (sym[0][gap] == idx[gap]).all()


def test_self_kept_when_not_excluded():
    rng = np.random.default_rng(5)
    x = points(rng, 2 * BLOCK + 9, 5, "duplicates", np.float64)
    for k in (1, 3, x.shape[0]):
        sym = knn(x, k, exclude_self=False)
        assert_same_bits(sym, knn(x, k, exclude_self=False, symmetric=False))
        np.testing.assert_array_equal(sym[0], oracle(x, k, exclude_self=False)[0])


@st.composite
def cases(draw):
    n = draw(st.integers(2, 5 * BLOCK))
    d = draw(st.integers(1, 12))
    kind = draw(st.sampled_from(["normal", "grid", "duplicates", "far", "tiny", "clusters"]))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    # (cosine of far float64 rows takes the slow exact path: see above)
    far64 = kind == "far" and dtype == np.float64
    metric = draw(st.sampled_from(METRICS[:2] if far64 else METRICS))
    exclude_self = draw(st.booleans())
    avail = n - 1 if exclude_self else n
    k = draw(st.sampled_from(sorted({1, min(2, avail), min(10, avail), avail})))
    x = points(np.random.default_rng(draw(st.integers(0, 2**32 - 1))), n, d, kind, dtype)
    return x, k, metric, exclude_self


@settings(max_examples=40, deadline=None)
@given(cases())
def test_symmetric_path_equals_plain_path(case):
    x, k, metric, exclude_self = case
    assert_same_bits(
        knn(x, k, metric, exclude_self),
        knn(x, k, metric, exclude_self, symmetric=False),
    )


SCRIPT = """
import hashlib, json, sys
import numpy as np
import tripletcore as tc
rng = np.random.default_rng(2)
out = {}
for dtype in ("float32", "float64"):
    x = rng.standard_normal((1700, 16)).astype(dtype)  # 5 blocks, run in parallel
    x[::9] = x[4]  # exact duplicates
    for metric in ("euclidean", "cosine"):
        r = tc.knn(x, 10, metric=metric)
        h = hashlib.sha256(r.indices.tobytes() + r.distances.tobytes()).hexdigest()
        out[dtype + metric] = h
json.dump(out, sys.stdout)
"""


def run_script(**env):
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env=dict(os.environ, **env),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_thread_count_and_simd_path_invariant():
    base = run_script(RAYON_NUM_THREADS="1")
    assert run_script(RAYON_NUM_THREADS="2") == base
    assert run_script(RAYON_NUM_THREADS="3") == base
    assert run_script(TRIPLETCORE_DISABLE_AVX512="1") == base
    assert run_script(TRIPLETCORE_DISABLE_SIMD="1") == base
