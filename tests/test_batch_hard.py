import zlib

import numpy as np
import oracle
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import (
    LABEL_DTYPES,
    LABEL_KINDS,
    assert_dist_close,
    assert_index_matches,
    compute_dtype,
    make_labels,
    metric_cases,
)

import tripletcore as tc


def check_batch_hard(X, labels, metric, Y=None, ref_labels=None, err=""):
    res = tc.batch_hard(X, labels, metric=metric, Y=Y, ref_labels=ref_labels)
    assert isinstance(res, tuple) and res._fields == ("pos_idx", "pos_dist", "neg_idx", "neg_dist")
    cdt = compute_dtype(X) if Y is None else compute_dtype(X, Y)
    n = X.shape[0]
    for name in ("pos_idx", "neg_idx"):
        arr = getattr(res, name)
        assert isinstance(arr, np.ndarray) and arr.dtype == np.int64 and arr.shape == (n,), name
    for name in ("pos_dist", "neg_dist"):
        arr = getattr(res, name)
        assert isinstance(arr, np.ndarray) and arr.dtype == cdt and arr.shape == (n,), (
            name,
            arr.dtype,
        )
    pi, pd, ni, nd = oracle.batch_hard(X, labels, metric, Y, ref_labels)
    R = X if Y is None else Y
    D = oracle.cdist(X, R, metric)
    assert_index_matches(res.pos_idx, pi, D, R, metric, err=f"pos_idx {err}")
    assert_index_matches(res.neg_idx, ni, D, R, metric, err=f"neg_idx {err}")
    # distances: those of the oracle's choice (for cosine the library may pick a
    # candidate whose distance is within COS_TIE, which the tolerance covers)
    assert_dist_close(res.pos_dist, pd, cdt, metric, err=f"pos_dist {err}", mined=True)
    assert_dist_close(res.neg_dist, nd, cdt, metric, err=f"neg_dist {err}", mined=True)
    return res


@settings(max_examples=250, deadline=None)
@given(metric_cases())
def test_batch_hard_matches_oracle(mc):
    metric, case = mc
    check_batch_hard(case.X, case.labels, metric, err=repr(case))


@settings(max_examples=120, deadline=None)
@given(
    metric_cases(),
    st.integers(1, 50),
    st.integers(0, 2**32 - 1),
    st.sampled_from(LABEL_KINDS),
    st.sampled_from(LABEL_DTYPES),
    st.booleans(),
)
def test_batch_hard_with_reference_set(mc, m, seed, rkind, rdtype, same_dtype):
    metric, case = mc
    X, labels = case.X, case.labels
    rng = np.random.default_rng(seed)
    # Y: rows of X (exact duplicates of anchors, including the anchor itself) and perturbed rows
    Y = X[rng.integers(0, case.n, m)].astype(np.float64)
    pert = rng.random(m) < 0.5
    Y[pert] += (
        0.1
        * rng.standard_normal((int(pert.sum()), case.d))
        * max(1.0, float(np.abs(Y).max()) * 1e-3)
    )
    Y = Y.astype(X.dtype if same_dtype else np.float64)
    if metric == "cosine":
        Y[~np.any(Y != 0, axis=1), 0] = 1
    if rng.random() < 0.5:
        # reference labels drawn from the anchors' labels (many shared classes)
        ref_labels = labels[rng.integers(0, case.n, m)]
        if not same_dtype and ref_labels.dtype != np.uint64:
            ref_labels = ref_labels.astype(np.int64)  # same values, other dtype
    else:
        ref_labels = make_labels(rng, m, rkind, rdtype)
    check_batch_hard(X, labels, metric, Y=Y, ref_labels=ref_labels, err=repr(case))


def test_batch_hard_hand_example_ties_lowest_index():
    # 1-D points; label 0 at 0, 1, -1, 1 ; label 1 at 3, -3, 3
    X = np.array([[0.0], [1.0], [-1.0], [1.0], [3.0], [-3.0], [3.0]])
    labels = np.array([0, 0, 0, 0, 1, 1, 1])
    res = tc.batch_hard(X, labels)
    # anchor 0: positives 1,2,3 all at distance 1 -> 1; negatives 4,5,6 all at 3 -> 4
    # anchor 1: positives 0 (1), 2 (2), 3 (0) -> 2; negatives 4 (2), 5 (4), 6 (2) -> 4
    # anchor 2: positives 0 (1), 1 (2), 3 (2) -> 1; negatives 4 (4), 5 (2), 6 (4) -> 5
    # anchor 3: like anchor 1 -> 2, 4
    # anchor 4: positives 5 (6), 6 (0) -> 5; negatives 0 (3) 1 (2) 2 (4) 3 (2) -> 1
    # anchor 5: positives 4 (6), 6 (6) -> 4; negatives 0 (3) 1 (4) 2 (2) 3 (4) -> 2
    # anchor 6: positives 4 (0), 5 (6) -> 5; negatives -> 1
    np.testing.assert_array_equal(res.pos_idx, [1, 2, 1, 2, 5, 4, 5])
    np.testing.assert_array_equal(res.pos_dist, [1, 2, 2, 2, 6, 6, 6])
    np.testing.assert_array_equal(res.neg_idx, [4, 4, 5, 4, 1, 2, 1])
    np.testing.assert_array_equal(res.neg_dist, [3, 2, 2, 2, 2, 2, 2])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batch_hard_missing_positive_and_negative(dtype):
    X = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]], dtype=dtype)
    res = tc.batch_hard(X, np.array([0, 1, 1]))
    np.testing.assert_array_equal(res.pos_idx, [-1, 2, 1])
    assert np.isnan(res.pos_dist[0]) and res.pos_dist.dtype == dtype
    np.testing.assert_allclose(res.pos_dist[1:], [np.sqrt(5)] * 2, rtol=1e-7)
    np.testing.assert_array_equal(res.neg_idx, [1, 0, 0])
    np.testing.assert_array_equal(res.neg_dist, np.array([1, 1, 2], dtype=dtype))
    # one class: no negatives anywhere
    res = tc.batch_hard(X, np.array([7, 7, 7]))
    np.testing.assert_array_equal(res.neg_idx, [-1, -1, -1])
    assert np.all(np.isnan(res.neg_dist))
    np.testing.assert_array_equal(res.pos_idx, [2, 2, 1])
    # a single point
    res = tc.batch_hard(X[:1], np.array([3]))
    assert res.pos_idx.tolist() == [-1] and res.neg_idx.tolist() == [-1]
    assert np.isnan(res.pos_dist[0]) and np.isnan(res.neg_dist[0])


def test_batch_hard_reference_set_anchor_is_its_own_positive():
    # with Y given, a same-label row equal to the anchor is eligible (no self exclusion)
    X = np.array([[0.0, 0.0], [5.0, 0.0], [0.0, 1.0]])
    labels = np.array([0, 1, 2])  # all singletons
    res = tc.batch_hard(X, labels, Y=X.copy(), ref_labels=labels.copy())
    np.testing.assert_array_equal(res.pos_idx, [0, 1, 2])
    np.testing.assert_array_equal(res.pos_dist, [0.0, 0.0, 0.0])
    np.testing.assert_array_equal(res.neg_idx, [2, 0, 0])
    # same object passed as Y: still a reference set (unlike PML's identity check)
    res2 = tc.batch_hard(X, labels, Y=X, ref_labels=labels)
    for a, b in zip(res, res2, strict=True):
        np.testing.assert_array_equal(a, b)
    # without Y: singletons have no positive
    res = tc.batch_hard(X, labels)
    np.testing.assert_array_equal(res.pos_idx, [-1, -1, -1])


def test_batch_hard_labels_compare_by_value_across_dtypes():
    X = np.array([[0.0], [1.0], [3.0], [6.0]])
    Y = np.array([[0.5], [2.0], [10.0]])
    labels = np.array([3, 5, 3, 5], dtype=np.int64)
    ref_labels = np.array([5, 3, 3], dtype=np.uint8)
    res = tc.batch_hard(X, labels, Y=Y, ref_labels=ref_labels)
    np.testing.assert_array_equal(res.pos_idx, [2, 0, 2, 0])
    np.testing.assert_array_equal(res.neg_idx, [0, 1, 0, 1])


def test_batch_hard_labels_differing_only_in_high_bits_are_different():
    # 1 and 2**32 + 1 (or -1 and 2**64 - 1 as uint64) must not be merged by truncation
    X = np.array([[0.0], [1.0], [3.0]])
    for labels in (
        np.array([1, 2**32 + 1, 1], dtype=np.int64),
        np.array([1, 2**32 + 1, 1], dtype=np.uint64),
        np.array([2**63, 0, 2**63], dtype=np.uint64),
        np.array([-(2**40), 2**40, -(2**40)], dtype=np.int64),
    ):
        res = tc.batch_hard(X, labels)
        np.testing.assert_array_equal(res.pos_idx, [2, -1, 0], err_msg=str(labels))
        np.testing.assert_array_equal(res.neg_idx, [1, 0, 1], err_msg=str(labels))


def test_batch_hard_labels_and_ref_labels_of_different_signedness():
    # labels compare by value: int64 -1 and uint64 2**64 - 1 are different labels
    X = np.array([[0.0], [1.0], [3.0]])
    res = tc.batch_hard(
        X[:1],
        np.array([-1], dtype=np.int64),
        Y=X[1:],
        ref_labels=np.array([2**64 - 1, 7], dtype=np.uint64),
    )
    assert res.pos_idx.tolist() == [-1]
    assert res.neg_idx.tolist() == [0]


# ---------------------------------------------------------------------------
# larger cases: several tiles / threads, vectorised float64 oracle
# ---------------------------------------------------------------------------


def _large_points(kind, dtype, n, d, rng):
    if kind == "normal":
        X = rng.standard_normal((n, d))
    elif kind == "dups":
        X = rng.standard_normal((n // 3, d))[rng.integers(0, n // 3, n)]
    elif kind == "offset_grid":
        off = 1e4 if dtype == np.float32 else 1e8
        X = off + rng.integers(0, 4, (n, d))
    return X.astype(dtype)


@pytest.mark.parametrize("metric", ["euclidean", "sqeuclidean"])
@pytest.mark.parametrize("kind", ["normal", "dups", "offset_grid"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batch_hard_large_vs_vectorized_oracle(metric, kind, dtype):
    rng = np.random.default_rng(zlib.crc32(f"{metric}{kind}{np.dtype(dtype).name}".encode()))
    n, d = 3000, 16
    X = _large_points(kind, dtype, n, d, rng)
    labels = rng.integers(0, 40, n)
    labels[:5] = 1000  # a class of 5
    labels[5] = 1001  # a singleton
    res = tc.batch_hard(X, labels, metric=metric)
    pi, pd, ni, nd, _ = oracle.batch_hard_vectorized(X, labels, metric)
    np.testing.assert_array_equal(res.pos_idx, pi)
    np.testing.assert_array_equal(res.neg_idx, ni)
    assert_dist_close(res.pos_dist, pd, dtype, metric, mined=True)
    assert_dist_close(res.neg_dist, nd, dtype, metric, mined=True)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batch_hard_large_reference_set(dtype):
    rng = np.random.default_rng(11)
    n, m, d = 2000, 2500, 16
    X = _large_points("offset_grid", dtype, n, d, rng)
    Y = np.concatenate(
        [X[rng.integers(0, n, m // 2)], _large_points("offset_grid", dtype, m - m // 2, d, rng)]
    )
    labels = rng.integers(0, 30, n)
    ref_labels = rng.integers(0, 35, m)
    res = tc.batch_hard(X, labels, Y=Y, ref_labels=ref_labels)
    pi, pd, ni, nd, _ = oracle.batch_hard_vectorized(X, labels, "euclidean", Y, ref_labels)
    np.testing.assert_array_equal(res.pos_idx, pi)
    np.testing.assert_array_equal(res.neg_idx, ni)
    assert_dist_close(res.pos_dist, pd, dtype, "euclidean", mined=True)
    assert_dist_close(res.neg_dist, nd, dtype, "euclidean", mined=True)


def test_batch_hard_large_cosine():
    rng = np.random.default_rng(3)
    n, d = 3000, 16
    X = rng.standard_normal((n, d)).astype(np.float32)
    labels = rng.integers(0, 50, n)
    res = tc.batch_hard(X, labels, metric="cosine")
    pi, pd, ni, nd, D = oracle.batch_hard_vectorized(X, labels, "cosine")
    assert_index_matches(res.pos_idx, pi, D, X, "cosine")
    assert_index_matches(res.neg_idx, ni, D, X, "cosine")
    assert_dist_close(res.pos_dist, pd, np.float32, "cosine", mined=True)
    assert_dist_close(res.neg_dist, nd, np.float32, "cosine", mined=True)


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
def test_batch_hard_extreme_scale_is_exact(dtype, k):
    """Scaling by 2^-k is exact: indices must not change and distances scale by 2^-k.

    k > 0: tiny points (float32 ~1e-21, float64 ~1e-181); k < 0: huge ones (float32 ~1e21,
    float64 ~1e180).  The distances stay normal numbers of the dtype; only their squares
    leave its range, which an exact method must not be affected by.
    """
    rng = np.random.default_rng(abs(k))
    Z = rng.standard_normal((60, 5)).astype(dtype)
    labels = rng.integers(0, 4, 60)
    X = Z * dtype(2.0**-k)
    assert np.array_equal(X.astype(np.float64) * 2.0**k, Z.astype(np.float64))
    ref, got = tc.batch_hard(Z, labels), tc.batch_hard(X, labels)
    np.testing.assert_array_equal(got.pos_idx, ref.pos_idx)
    np.testing.assert_array_equal(got.neg_idx, ref.neg_idx)
    np.testing.assert_array_equal(got.pos_dist, ref.pos_dist * dtype(2.0**-k))
    np.testing.assert_array_equal(got.neg_dist, ref.neg_dist * dtype(2.0**-k))
