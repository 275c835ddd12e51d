import re

import numpy as np
import oracle
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import (
    COSINE_WELL_CONDITIONED,
    assert_dist_close,
    assert_index_matches,
    compute_dtype,
    metric_cases,
)

import tripletcore as tc

MARGINS = [0.0, 0.05, 0.2, 0.5, 1.0, 2.0, float("inf")]


def check_semi_hard(X, labels, margin, metric, fallback, err=""):
    res = tc.semi_hard(X, labels, margin=margin, metric=metric, fallback=fallback)
    assert isinstance(res, tuple)
    assert res._fields == ("anchor", "positive", "negative", "pos_dist", "neg_dist")
    cdt = compute_dtype(X)
    for name in ("anchor", "positive", "negative"):
        arr = getattr(res, name)
        assert isinstance(arr, np.ndarray) and arr.dtype == np.int64 and arr.ndim == 1, name
    for name in ("pos_dist", "neg_dist"):
        arr = getattr(res, name)
        assert isinstance(arr, np.ndarray) and arr.dtype == cdt and arr.ndim == 1, (name, arr.dtype)
    a, p, q, dp, dq = oracle.semi_hard(X, labels, margin, metric, fallback)
    assert len(res.anchor) == len(a), f"{len(res.anchor)} triplets, want {len(a)} {err}"
    np.testing.assert_array_equal(res.anchor, a, err_msg=err)
    np.testing.assert_array_equal(res.positive, p, err_msg=err)
    D = oracle.cdist(X, None, metric)
    assert_index_matches(res.negative, q, D[a], X, metric, err=f"negative {err}")
    assert_dist_close(res.pos_dist, dp, cdt, metric, err=f"pos_dist {err}", mined=True)
    assert_dist_close(res.neg_dist, dq, cdt, metric, err=f"neg_dist {err}", mined=True)
    return res


@settings(max_examples=200, deadline=None)
@given(
    metric_cases(max_n=40, cosine_kinds=COSINE_WELL_CONDITIONED, cosine_min_d=2),
    st.sampled_from(MARGINS),
    st.sampled_from(["hardest", "easiest", "drop"]),
)
def test_semi_hard_matches_oracle(mc, margin, fallback):
    metric, case = mc
    check_semi_hard(case.X, case.labels, margin, metric, fallback, err=repr(case))


# 1-D example: anchor 0 at 0 and 1 at 1 share label 0; every other point is a singleton
HAND_X = np.array([[0.0], [1.0], [1.0], [1.5], [-1.25], [1.25], [3.0]])
HAND_LABELS = np.array([0, 0, 1, 2, 3, 4, 5])
# d(0, .) = [0, 1, 1, 1.5, 1.25, 1.25, 3]   d(1, .) = [1, 0, 0, 0.5, 2.25, 0.25, 2]
HAND_EXPECTED = {
    # (margin, fallback): negatives of the pairs (0, 1) and (1, 0); None = dropped
    (0.5, "hardest"): [4, 2],  # (0,1): window (1, 1.5) = {4, 5} tie -> 4; (1,0): empty -> nearest 2
    (0.5, "easiest"): [4, 4],  # (1,0): farthest negative 4 (2.25)
    (0.5, "drop"): [4, None],
    (0.25, "hardest"): [2, 2],  # window (1, 1.25) is open: 4 and 5 at exactly 1.25 are out
    (0.25, "drop"): [None, None],
    (float("inf"), "hardest"): [4, 6],  # nearest negative strictly farther than the positive
    (float("inf"), "drop"): [4, 6],
    (0.0, "hardest"): [2, 2],  # empty window: d(a,n) == d(a,p) (point 2) is not semi-hard
    (0.0, "easiest"): [6, 4],
    (0.0, "drop"): [None, None],
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("margin", "fallback"), list(HAND_EXPECTED))
def test_semi_hard_hand_example(margin, fallback, dtype):
    X = HAND_X.astype(dtype)
    want_neg = HAND_EXPECTED[(margin, fallback)]
    pairs = [
        (a, p, q) for (a, p), q in zip([(0, 1), (1, 0)], want_neg, strict=True) if q is not None
    ]
    res = tc.semi_hard(X, HAND_LABELS, margin=margin, fallback=fallback)
    assert res.anchor.tolist() == [t[0] for t in pairs]
    assert res.positive.tolist() == [t[1] for t in pairs]
    assert res.negative.tolist() == [t[2] for t in pairs]
    D = oracle.cdist(HAND_X)
    np.testing.assert_array_equal(res.pos_dist, [D[a, p] for a, p, _ in pairs])
    np.testing.assert_array_equal(res.neg_dist, [D[a, q] for a, _, q in pairs])
    # the oracle agrees with the hand-derived answer
    a, p, q, _, _ = oracle.semi_hard(X, HAND_LABELS, margin, "euclidean", fallback)
    assert q.tolist() == [t[2] for t in pairs]


def test_semi_hard_defaults():
    # margin=0.2, metric euclidean, fallback hardest
    X = np.array([[0.0], [1.0], [1.1], [1.3], [5.0]])
    labels = np.array([0, 0, 1, 2, 3])
    res = tc.semi_hard(X, labels)
    # (0,1): window (1, 1.2) -> 2
    # (1,0): window (1, 1.2): d(1, .) = 0.1, 0.3, 4 -> none -> nearest, 2
    assert res.anchor.tolist() == [0, 1]
    assert res.positive.tolist() == [1, 0]
    assert res.negative.tolist() == [2, 2]


def test_semi_hard_order_and_pairs():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((30, 4))
    labels = rng.integers(0, 4, 30)
    res = tc.semi_hard(X, labels, margin=float("inf"), fallback="hardest")
    want = [(a, p) for a in range(30) for p in range(30) if a != p and labels[a] == labels[p]]
    assert list(zip(res.anchor.tolist(), res.positive.tolist(), strict=True)) == want


@pytest.mark.parametrize("fallback", ["hardest", "easiest", "drop"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_semi_hard_no_triplets(fallback, dtype):
    X = np.arange(12, dtype=dtype).reshape(6, 2)
    for labels in (np.zeros(6, dtype=np.int64), np.arange(6)):  # no negatives / no positives
        res = tc.semi_hard(X, labels, fallback=fallback)
        for name in ("anchor", "positive", "negative"):
            arr = getattr(res, name)
            assert arr.shape == (0,) and arr.dtype == np.int64
        assert res.pos_dist.shape == (0,) and res.pos_dist.dtype == dtype
        assert res.neg_dist.shape == (0,) and res.neg_dist.dtype == dtype


def test_semi_hard_anchor_without_negatives_yields_nothing():
    # with a single class no anchor has a negative: no triplet, whatever the fallback
    X = np.array([[0.0], [1.0], [2.0]])
    res = tc.semi_hard(X, np.array([4, 4, 4]), margin=1.0, fallback="easiest")
    assert len(res.anchor) == 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_semi_hard_exact_ties_on_grid_sqeuclidean(dtype):
    # integer coordinates: squared distances are integers, so d(a,n) == d(a,p) + margin happens
    rng = np.random.default_rng(7)
    for _ in range(20):
        X = rng.integers(0, 3, (25, 3)).astype(dtype)
        labels = rng.integers(0, 3, 25)
        for margin in (0.0, 1.0, 2.0, float("inf")):
            for fallback in ("hardest", "easiest", "drop"):
                check_semi_hard(X, labels, margin, "sqeuclidean", fallback)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_semi_hard_cosine_parallel_vectors_tie(dtype):
    # x0, x1, x2 point the same way: the exact cosine distances d(0,1) = d(0,2) = 0 tie, so
    # for the pair (0, 1) the negative 2 is NOT strictly farther than the positive: no
    # semi-hard negative, and "easiest" falls back to the farthest negative, 3 (d = 2).
    X = np.array([[0.12573022], [0.64042264], [1.304], [-0.5]], dtype=dtype)
    labels = np.array([0, 0, 1, 1])
    res = tc.semi_hard(X, labels, margin=0.1, metric="cosine", fallback="easiest")
    assert res.anchor.tolist() == [0, 1, 2, 3]
    assert res.positive.tolist() == [1, 0, 3, 2]
    assert res.negative.tolist() == [3, 3, 0, 0]
    # every exact distance here is 0 or 2
    np.testing.assert_array_equal(res.pos_dist, [0, 0, 2, 2])
    np.testing.assert_array_equal(res.neg_dist, [2, 2, 0, 2])
    bh = tc.batch_hard(X, labels, metric="cosine")
    np.testing.assert_array_equal(bh.neg_dist, [0, 0, 0, 2])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    ("kind", "metric", "margin"),
    [
        ("grid", "sqeuclidean", 1.0),  # exact ties and exact window edges
        ("grid", "euclidean", 0.5),
        ("normal", "euclidean", 0.2),
        ("dups", "sqeuclidean", float("inf")),
    ],
)
@pytest.mark.parametrize("fallback", ["hardest", "easiest", "drop"])
def test_semi_hard_medium_vs_vectorized_oracle(dtype, kind, metric, margin, fallback):
    rng = np.random.default_rng(5)
    n, d = 400, 6
    if kind == "grid":
        X = rng.integers(0, 3, (n, d)).astype(np.float64)
    elif kind == "normal":
        X = rng.standard_normal((n, d))
    else:
        X = rng.standard_normal((80, d))[rng.integers(0, 80, n)]
    X = X.astype(dtype)
    labels = rng.integers(0, 8, n)
    res = tc.semi_hard(X, labels, margin=margin, metric=metric, fallback=fallback)
    a, p, q, dp, dq = oracle.semi_hard_vectorized(X, labels, margin, metric, fallback)
    assert len(res.anchor) == len(a)
    np.testing.assert_array_equal(res.anchor, a)
    np.testing.assert_array_equal(res.positive, p)
    np.testing.assert_array_equal(res.negative, q)
    assert_dist_close(res.pos_dist, dp, dtype, metric, mined=True)
    assert_dist_close(res.neg_dist, dq, dtype, metric, mined=True)


@pytest.mark.parametrize(("dtype", "k"), [(np.float32, 70), (np.float64, 520), (np.float64, 600)])
def test_semi_hard_huge_values_right_or_refused(dtype, k):
    """Coordinates ~2^k whose squared distances overflow the dtype: either the right answer
    (the triplets of the unscaled points) or a ValueError naming X, never a silent wrong
    answer.  (The stricter "always right" is asserted by the extreme-scale tests.)"""
    rng = np.random.default_rng(k)
    Z = rng.standard_normal((40, 5)).astype(dtype)
    labels = rng.integers(0, 4, 40)
    X = Z * dtype(2.0**k)
    ref = tc.semi_hard(Z, labels, margin=0.5)
    try:
        got = tc.semi_hard(X, labels, margin=0.5 * 2.0**k)
    except ValueError as e:
        assert re.search(r"(?<![A-Za-z_])X(?![A-Za-z_])", str(e)), str(e)
        return
    np.testing.assert_array_equal(got.anchor, ref.anchor)
    np.testing.assert_array_equal(got.positive, ref.positive)
    np.testing.assert_array_equal(got.negative, ref.negative)
    np.testing.assert_allclose(got.neg_dist, ref.neg_dist * dtype(2.0**k), rtol=1e-6)
