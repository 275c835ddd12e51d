"""Exact k-NN against a brute force, and the retrieval metrics against
pytorch-metric-learning's AccuracyCalculator and scikit-learn-free oracles."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pytorch_metric_learning.distances import LpDistance
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
from pytorch_metric_learning.utils.inference import CustomKNN

import tripletcore as tc
from tripletcore.evaluation import kmeans, normalized_mutual_info

SETTINGS = settings(max_examples=60, deadline=None)


def oracle_knn(x, k, y=None, metric="euclidean", exclude_self=True):
    """Stable sort of exact float64 distances: ties go to the lowest index."""
    x = np.asarray(x, np.float64)
    ref = x if y is None else np.asarray(y, np.float64)
    if metric == "cosine":
        xn = x / np.linalg.norm(x, axis=1, keepdims=True)
        rn = ref / np.linalg.norm(ref, axis=1, keepdims=True)
        d = ((xn[:, None, :] - rn[None, :, :]) ** 2).sum(-1)
    else:
        d = ((x[:, None, :] - ref[None, :, :]) ** 2).sum(-1)
    if y is None and exclude_self:
        np.fill_diagonal(d, np.inf)
    idx = np.argsort(d, axis=1, kind="stable")[:, :k]
    return idx, np.take_along_axis(d, idx, 1)


@st.composite
def knn_cases(draw):
    n = draw(st.integers(2, 80))
    m = draw(st.integers(1, 80))
    d = draw(st.integers(1, 40))
    seed = draw(st.integers(0, 2**32 - 1))
    kind = draw(st.sampled_from(["random", "grid", "duplicates", "far", "tiny"]))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    rng = np.random.default_rng(seed)
    x, y = rng.standard_normal((n, d)), rng.standard_normal((m, d))
    if kind == "grid":
        x, y = rng.integers(0, 3, (n, d)).astype(float), rng.integers(0, 3, (m, d)).astype(float)
    elif kind == "duplicates":
        x[::2] = x[0]
        y[::3] = x[0]
    elif kind == "far":
        x, y = x + 1e4, y + 1e4
    elif kind == "tiny":
        x, y = 1e-3 * x + 1.0, 1e-3 * y + 1.0
    use_ref = draw(st.booleans())
    avail = m if use_ref else n - 1
    k = draw(st.integers(1, max(1, min(avail, 25))))
    return x.astype(dtype), (y.astype(dtype) if use_ref else None), k


@SETTINGS
@given(knn_cases())
def test_knn_matches_brute_force(case):
    x, y, k = case
    if y is None and x.shape[0] < 2:
        return
    got = tc.knn(x, k, y)
    want_idx, want_d2 = oracle_knn(x, k, y)
    assert got.indices.shape == got.distances.shape == (x.shape[0], k)
    assert got.distances.dtype == x.dtype
    tol = 1e-5 if x.dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got.distances, np.sqrt(want_d2), rtol=tol, atol=tol)
    if x.dtype == np.float64:
        # Exact ranks; the oracle's sum order can differ only by rounding, so
        # compare indices where the oracle's distances are not tied.
        gap = np.diff(want_d2, axis=1, append=np.inf) > 1e-9 * (1 + want_d2)
        gap &= np.diff(want_d2, axis=1, prepend=-np.inf) > 1e-9 * (1 + want_d2)
        assert (got.indices[gap] == want_idx[gap]).all()


def test_knn_ties_go_to_the_lowest_index_and_self_is_excluded():
    x = np.zeros((7, 3))
    got = tc.knn(x, 3)
    np.testing.assert_array_equal(got.indices[0], [1, 2, 3])
    np.testing.assert_array_equal(got.indices[4], [0, 1, 2])
    assert (got.distances == 0).all()
    kept = tc.knn(x, 3, exclude_self=False)
    np.testing.assert_array_equal(kept.indices[4], [0, 1, 2])
    np.testing.assert_array_equal(tc.knn(x, 2, x).indices[5], [0, 1])
    grid = np.arange(10.0)[:, None]
    np.testing.assert_array_equal(tc.knn(grid, 2).indices[5], [4, 6])


@pytest.mark.parametrize("metric", ["euclidean", "sqeuclidean", "cosine"])
def test_knn_metrics_and_many_blocks(metric):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((700, 24))
    y = rng.standard_normal((900, 24))
    got = tc.knn(x, 10, y, metric=metric)
    idx, d2 = oracle_knn(x, 10, y, metric=metric)
    np.testing.assert_array_equal(got.indices, idx)
    want = {"euclidean": np.sqrt(d2), "sqeuclidean": d2, "cosine": d2 / 2}[metric]
    np.testing.assert_allclose(got.distances, want, rtol=1e-12, atol=1e-12)
    # Massive ties (every row equal) force the exact rescan path.
    flat = np.ones((300, 4))
    np.testing.assert_array_equal(tc.knn(flat, 5).indices[299], [0, 1, 2, 3, 4])


def test_knn_bad_input():
    x = np.zeros((5, 3))
    with pytest.raises(ValueError, match="k"):
        tc.knn(x, 5)  # only 4 other rows
    with pytest.raises(ValueError, match="k"):
        tc.knn(x, 0)
    with pytest.raises(TypeError):
        tc.knn(x, 2.0)
    with pytest.raises(ValueError):
        tc.knn(x, 2, np.zeros((4, 2)))
    with pytest.raises(ValueError, match="NaN"):
        tc.knn(np.full((3, 2), np.nan), 1)
    with pytest.raises(ValueError, match="metric"):
        tc.knn(x, 1, metric="manhattan")


def test_retrieval_metrics_match_pytorch_metric_learning():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 8))
    y = rng.integers(0, 7, 300)
    x[:, 0] += 0.7 * y
    y[0] = 99  # a class of one: not a query
    got = tc.retrieval_metrics(x, y)
    calc = AccuracyCalculator(
        include=("precision_at_1", "r_precision", "mean_average_precision_at_r"),
        knn_func=CustomKNN(LpDistance(normalize_embeddings=False)),
    )
    t, tl = torch.tensor(x), torch.tensor(y)
    want = calc.get_accuracy(t, tl, t, tl, ref_includes_query=True)
    assert got.queries == 299
    assert got.precision_at_1 == pytest.approx(want["precision_at_1"], abs=1e-12)
    assert got.r_precision == pytest.approx(want["r_precision"], abs=1e-12)
    assert got.map_at_r == pytest.approx(want["mean_average_precision_at_r"], abs=1e-12)
    assert got.recall_at[1] == got.precision_at_1
    assert all(got.recall_at[a] <= got.recall_at[b] for a, b in [(1, 2), (2, 4), (4, 8)])


def test_retrieval_metrics_on_perfect_and_hand_made_embeddings():
    y = np.repeat(np.arange(4), 5)
    perfect = np.eye(4)[y] * 10 + 0.01 * np.random.default_rng(1).standard_normal((20, 4))
    got = tc.retrieval_metrics(perfect, y)
    assert got.precision_at_1 == got.r_precision == got.map_at_r == 1.0
    assert got.nmi == pytest.approx(1.0)
    # By hand: points 0, 1, 2.5, 4 with labels a, b, a, b (R = 1 each).
    # Neighbours: 0 -> (1, 2), 1 -> (0, 2), 2 -> (1, 3) (a tie at 1.5: lowest
    # index first), 3 -> (2, 1). No first neighbour is relevant; queries 0
    # and 3 find theirs second.
    x = np.array([[0.0], [1.0], [2.5], [4.0]])
    got = tc.retrieval_metrics(x, np.array([0, 1, 0, 1]), ks=(1, 2))
    assert got.precision_at_1 == 0.0
    assert got.recall_at[2] == 0.5
    assert got.map_at_r == 0.0


def test_nmi_and_kmeans():
    from math import log

    a = np.array([0, 0, 1, 1])
    assert normalized_mutual_info(a, a) == pytest.approx(1.0)
    assert normalized_mutual_info(a, np.array([0, 1, 0, 1])) == pytest.approx(0.0, abs=1e-12)
    b = np.array([0, 0, 0, 1])
    # Hand computation: I = H(b) - H(b|a); H(a) = log 2.
    hb = -(0.75 * log(0.75) + 0.25 * log(0.25))
    mi = hb - 0.5 * log(2)
    assert normalized_mutual_info(a, b) == pytest.approx(mi / ((log(2) + hb) / 2))
    rng = np.random.default_rng(2)
    blobs = np.concatenate([rng.standard_normal((50, 2)) + c for c in ([0, 0], [20, 0], [0, 20])])
    truth = np.repeat(np.arange(3), 50)
    assert normalized_mutual_info(truth, kmeans(blobs, 3)) == pytest.approx(1.0)


def test_retrieval_metrics_bad_input():
    x = np.zeros((4, 2))
    with pytest.raises(ValueError, match="two or more"):
        tc.retrieval_metrics(x, np.arange(4))
    with pytest.raises(ValueError):
        tc.retrieval_metrics(x, np.arange(3))
    with pytest.raises(TypeError):
        tc.retrieval_metrics(x, np.zeros(4))
    with pytest.raises(ValueError, match="ks"):
        tc.retrieval_metrics(x, np.zeros(4, int), ks=(0,))
