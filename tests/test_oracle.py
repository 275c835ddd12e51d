"""The oracle checked against itself: the vectorised helpers used for large inputs must
agree with the brute-force definitions (this file does not use tripletcore)."""

import numpy as np
import oracle
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import GRID_KINDS, metric_cases


@settings(max_examples=60, deadline=None)
@given(metric_cases(max_n=30, cosine_kinds=("normal", "clusters"), cosine_min_d=2))
def test_batch_hard_vectorized_equals_brute_force(mc):
    metric, case = mc
    X, labels = case.X, case.labels.astype(np.int64)
    want = oracle.batch_hard(X, labels, metric)
    got = oracle.batch_hard_vectorized(X, labels, metric)[:4]
    if metric != "cosine" and case.kind in (*GRID_KINDS, "normal", "dups", "clusters"):
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[2], want[2])
    np.testing.assert_allclose(got[1], want[1], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(got[3], want[3], rtol=1e-12, atol=1e-15)


@settings(max_examples=60, deadline=None)
@given(
    metric_cases(
        max_n=30,
        dtypes=[np.float64],
        kinds=("grid", "normal", "dups"),
        metrics=["euclidean", "sqeuclidean"],
    ),
    st.sampled_from([0.0, 0.5, 1.0, float("inf")]),
    st.sampled_from(oracle.FALLBACKS),
)
def test_semi_hard_vectorized_equals_brute_force(mc, margin, fallback):
    metric, case = mc
    X, labels = case.X, case.labels.astype(np.int64)
    want = oracle.semi_hard(X, labels, margin, metric, fallback)
    got = oracle.semi_hard_vectorized(X, labels, margin, metric, fallback)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)


@settings(max_examples=60, deadline=None)
@given(
    metric_cases(max_n=30, dtypes=[np.float64], kinds=("normal", "clusters"), cosine_min_d=2),
    st.sampled_from(oracle.MININGS),
    st.sampled_from(oracle.REDUCTIONS),
    st.booleans(),
    st.sampled_from([0.0, 0.3, 1.0]),
)
def test_vectorized_losses_equal_brute_force(mc, mining, reduction, soft, margin):
    metric, case = mc
    X, labels = case.X, case.labels.astype(np.int64)
    want, wgrad, info = oracle.triplet_margin_loss(
        X, labels, margin=margin, mining=mining, metric=metric, soft=soft, reduction=reduction
    )
    loss, grad, _, _ = oracle.loss_from_triplets_vectorized(
        X, info["triplets"], margin, metric, soft, reduction
    )
    np.testing.assert_allclose(loss, want, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(grad, wgrad, rtol=1e-10, atol=1e-12)
    if mining == "batch_all":
        loss, grad, _ = oracle.batch_all_loss_vectorized(X, labels, margin, metric, soft, reduction)
        np.testing.assert_allclose(loss, want, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(grad, wgrad, rtol=1e-10, atol=1e-12)


def test_exact_order_keys_break_float64_near_ties():
    # 1 + 2^-52 and 1 - 2^-53 are at distances 2^-52 and 2^-53 from 1: exact keys order them
    X = np.array([[1.0], [1.0 + 2.0**-52], [1.0 - 2.0**-53]])
    K = oracle.order_keys(X, None, "euclidean")
    assert K[0, 2] < K[0, 1] and K[0, 0] == 0
    # cosine: x and 2x are exactly parallel (key equal); y slightly off is farther
    Y = np.array([[1.0, 3.0], [2.0, 6.0], [1.0, 3.0 + 2.0**-40]])
    K = oracle.order_keys(Y, None, "cosine")
    assert K[0, 0] == K[0, 1] < K[0, 2]
