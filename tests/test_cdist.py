import numpy as np
import oracle
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import (
    COS_ATOL,
    COSINE_KINDS,
    DIST_RTOL,
    assert_dist_close,
    compute_dtype,
    metric_cases,
)

import tripletcore as tc


@settings(max_examples=150, deadline=None)
@given(metric_cases())
def test_cdist_self_matches_oracle(mc):
    metric, case = mc
    X = case.X
    got = tc.cdist(X, metric=metric)
    assert isinstance(got, np.ndarray)
    assert got.dtype == X.dtype
    assert got.shape == (case.n, case.n)
    assert_dist_close(got, oracle.cdist(X, None, metric), X.dtype, metric, err=repr(case))


@settings(max_examples=100, deadline=None)
@given(
    metric_cases(),
    st.integers(1, 50),
    st.integers(0, 2**32 - 1),
    st.sampled_from([np.float32, np.float64]),
)
def test_cdist_xy_matches_oracle(mc, m, seed, ydtype):
    metric, case = mc
    X = case.X
    rng = np.random.default_rng(seed)
    # Y: fresh points of the same kind plus some copies of rows of X (exact zeros)
    Y = (
        rng.standard_normal((m, case.d)) * np.abs(X).max()
        if np.any(X)
        else rng.standard_normal((m, case.d))
    )
    k = int(rng.integers(0, m + 1))
    Y[:k] = X[rng.integers(0, case.n, k)]
    Y = Y.astype(ydtype)
    if metric == "cosine":
        Y[~np.any(Y != 0, axis=1), 0] = 1
    got = tc.cdist(X, Y, metric=metric)
    cdt = compute_dtype(X, Y)
    assert got.dtype == cdt
    assert got.shape == (case.n, m)
    assert_dist_close(got, oracle.cdist(X, Y, metric), cdt, metric, err=repr(case))


@settings(max_examples=60, deadline=None)
@given(metric_cases())
def test_cdist_diagonal_and_duplicates_exactly_zero(mc):
    metric, case = mc
    X = case.X
    # every row duplicated: X2 = [X; X]
    X2 = np.concatenate([X, X])
    D = tc.cdist(X2, metric=metric)
    n = case.n
    assert np.all(np.diag(D) == 0), f"diagonal not exactly 0: {np.diag(D)[np.diag(D) != 0][:5]}"
    assert np.all(np.diag(D[:n, n:]) == 0), "distance between duplicate rows not exactly 0"
    assert np.all(np.diag(D[n:, :n]) == 0), "distance between duplicate rows not exactly 0"
    # also with Y given explicitly as a copy of X
    DY = tc.cdist(X, X.copy(), metric=metric)
    assert np.all(np.diag(DY) == 0)


def test_cdist_default_metric_is_euclidean():
    X = np.array([[0.0, 0.0], [3.0, 4.0]])
    np.testing.assert_array_equal(tc.cdist(X), [[0.0, 5.0], [5.0, 0.0]])
    np.testing.assert_array_equal(tc.cdist(X, metric="sqeuclidean"), [[0.0, 25.0], [25.0, 0.0]])
    np.testing.assert_allclose(
        tc.cdist(np.array([[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0]]), metric="cosine"),
        [[0, 1, 2], [1, 0, 1], [2, 1, 0]],
        atol=1e-15,
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("metric", ["euclidean", "sqeuclidean"])
def test_cdist_no_cancellation_far_from_origin(dtype, metric):
    # |x|^2 + |y|^2 - 2 x.y loses every digit here; the spec forbids it
    off = 1e4 if dtype == np.float32 else 1e8
    base = np.array([[off, -off, off]], dtype=dtype)
    steps = np.array([[0, 0, 0], [1, 0, 0], [0, 2, 0], [0.5, 0.5, 0.5], [0, 0, 0]], dtype=dtype)
    X = base + steps
    want = oracle.cdist(X, None, metric)
    got = tc.cdist(X, metric=metric)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=0)
    assert got[0, 4] == 0 and got[4, 0] == 0


@pytest.mark.parametrize("metric", oracle.METRICS)
def test_cdist_Y_none_equals_Y_is_X(metric):
    rng = np.random.default_rng(5)
    X = rng.standard_normal((37, 9))
    np.testing.assert_array_equal(tc.cdist(X, None, metric=metric), tc.cdist(X, X, metric=metric))


@settings(max_examples=30, deadline=None)
@given(metric_cases(kinds=COSINE_KINDS, dtypes=[np.float64]))
def test_cdist_integer_and_float16_inputs_promote_to_float64(mc):
    metric, case = mc
    X = case.X
    Xi = np.round(X * 3).astype(np.int64)
    if metric == "cosine":
        Xi[~np.any(Xi != 0, axis=1), 0] = 1
    got = tc.cdist(Xi, metric=metric)
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, tc.cdist(Xi.astype(np.float64), metric=metric))
    Xh = np.clip(Xi, -1000, 1000).astype(np.float16)
    got = tc.cdist(Xh, metric=metric)
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, tc.cdist(Xh.astype(np.float64), metric=metric))


def test_cdist_bool_input_promotes_to_float64():
    X = np.array([[True, False], [True, True], [False, True]])
    got = tc.cdist(X)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, oracle.cdist(X.astype(np.float64)), rtol=1e-15)


def test_cdist_mixed_float_dtypes_compute_in_float64():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((7, 3)).astype(np.float32)
    Y = rng.standard_normal((5, 3))
    got = tc.cdist(X, Y)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, oracle.cdist(X, Y), rtol=1e-12)
    got = tc.cdist(Y, X)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, oracle.cdist(Y, X), rtol=1e-12)


@pytest.mark.parametrize(
    ("dtype", "k"),
    [
        (np.float32, 40),
        (np.float32, 70),
        (np.float32, -70),
        (np.float64, 400),
        (np.float64, 600),
        (np.float64, -600),
    ],
)
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_cdist_extreme_scale(dtype, k, metric):
    """Scaling the points by 2^-k scales euclidean distances by 2^-k (cosine: unchanged).

    k > 0 tiny points, k < 0 huge ones.  The distances stay normal numbers of the dtype;
    only their squares underflow / overflow, so a distance between distinct points must
    not come out as 0 (nor inf, nor an error).
    """
    rng = np.random.default_rng(abs(k))
    Z = rng.standard_normal((30, 5)).astype(dtype)
    X = Z * dtype(2.0**-k)
    ref = tc.cdist(Z, metric=metric)
    got = tc.cdist(X, metric=metric)
    factor = 2.0**-k if metric == "euclidean" else 1.0
    atol = COS_ATOL[np.dtype(dtype)] if metric == "cosine" else 0.0
    np.testing.assert_allclose(got, ref * factor, rtol=DIST_RTOL[np.dtype(dtype)], atol=atol)
