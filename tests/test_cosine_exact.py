"""Cosine ties are exact: mathematically equal cosine distances go to the lowest index.

The oracle (``oracle.order_keys``) ranks cosine distances in exact rational
arithmetic, so on integer grids, where many cosine distances tie exactly but
differ by an ulp after normalisation, any rounding-decided tie shows up.
"""

import numpy as np
import oracle
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tripletcore as tc


def grid_case(seed, n, d, lo=-2, hi=2, n_labels=3):
    rng = np.random.default_rng(seed)
    X = rng.integers(lo, hi + 1, (n, d)).astype(np.float64)
    X[~X.any(axis=1), 0] = 1  # no zero rows
    return X, rng.integers(0, n_labels, n)


def test_issue_repro_picks_lowest_index():
    X = np.array(
        [
            [-2, 0, -2, -2, 2, -1, 2, 1, -1],
            [2, -1, 2, 0, 1, -1, -2, -2, 2],
            [1, -2, 0, -1, 2, -1, 2, 1, 1],
            [0, 0, 0, -2, 2, -2, 0, -2, -1.0],
        ]
    )
    labels = np.array([0, 0, 1, 1])
    # d(0, 2) = d(0, 3) = 1 + 6/sqrt(24 * 28) ... equal exactly: the lowest index, 2
    K = oracle.order_keys(X, None, "cosine")
    assert K[0, 2] == K[0, 3]
    for dtype in (np.float64, np.float32):
        assert tc.batch_hard(X.astype(dtype), labels, metric="cosine").neg_idx[0] == 2


@settings(max_examples=150, deadline=None)
@given(
    st.integers(0, 2**32 - 1),
    st.integers(2, 24),
    st.integers(1, 9),
    st.sampled_from([np.float32, np.float64]),
)
def test_batch_hard_cosine_grid_matches_exact_oracle(seed, n, d, dtype):
    X, labels = grid_case(seed, n, d)
    res = tc.batch_hard(X.astype(dtype), labels, metric="cosine")
    pi, _, ni, _ = oracle.batch_hard(X, labels, "cosine")
    np.testing.assert_array_equal(res.pos_idx, pi)
    np.testing.assert_array_equal(res.neg_idx, ni)


@settings(max_examples=80, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 16), st.integers(1, 20), st.integers(1, 7))
def test_batch_hard_cosine_grid_reference_set(seed, n, m, d):
    X, labels = grid_case(seed, n, d)
    Y, ref_labels = grid_case(seed + 1, m, d)
    res = tc.batch_hard(X, labels, metric="cosine", Y=Y, ref_labels=ref_labels)
    pi, _, ni, _ = oracle.batch_hard(X, labels, "cosine", Y, ref_labels)
    np.testing.assert_array_equal(res.pos_idx, pi)
    np.testing.assert_array_equal(res.neg_idx, ni)


@settings(max_examples=80, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(2, 20), st.integers(1, 8))
def test_knn_cosine_grid_ranks_exactly(seed, n, d):
    X, _ = grid_case(seed, n, d)
    k = min(5, n - 1)
    idx = tc.knn(X, k, metric="cosine").indices
    K = oracle.order_keys(X, None, "cosine")
    for i in range(n):
        ranked = sorted((j for j in range(n) if j != i), key=lambda j: (K[i, j], j))
        assert list(idx[i]) == ranked[:k], i


@settings(max_examples=60, deadline=None)
@given(
    st.integers(0, 2**32 - 1),
    st.integers(2, 18),
    st.integers(1, 6),
    st.sampled_from(["hardest", "easiest", "drop"]),
)
def test_semi_hard_cosine_grid_matches_exact_oracle(seed, n, d, fallback):
    # margin inf: the window test is d(a,p) < d(a,n), decided exactly
    X, labels = grid_case(seed, n, d)
    res = tc.semi_hard(X, labels, margin=float("inf"), metric="cosine", fallback=fallback)
    a, p, q, _, _ = oracle.semi_hard(X, labels, float("inf"), "cosine", fallback)
    got = sorted(
        zip(res.anchor.tolist(), res.positive.tolist(), res.negative.tolist(), strict=True)
    )
    assert got == sorted(zip(a.tolist(), p.tolist(), q.tolist(), strict=True))


def exact_cosine_keys(X):
    """Integer keys ordering cosine distances within a row exactly (small integer X)."""
    Xi = X.astype(np.int64)
    dot = Xi @ Xi.T
    sq = (Xi * Xi).sum(axis=1)
    lcm = int(np.lcm.reduce(np.unique(sq)))
    assert int(np.abs(dot).max()) ** 2 * lcm < 2**62  # the keys fit int64
    return -np.sign(dot) * dot * dot * (lcm // sq)[None, :]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_integer_grid_every_anchor_picks_lowest_index_tie(dtype):
    # 102 integer-grid batches of 102 points (10,404 anchors), as in the issue's report
    total = mismatched = 0
    for seed in range(102):
        X, labels = grid_case(1000 + seed, 102, 9, n_labels=4)
        keys = exact_cosine_keys(X)
        res = tc.batch_hard(X.astype(dtype), labels, metric="cosine")
        for i in range(len(X)):
            neg = np.nonzero(labels != labels[i])[0]
            pos = np.nonzero((labels == labels[i]) & (np.arange(len(X)) != i))[0]
            want_n = neg[np.argmin(keys[i, neg])] if len(neg) else -1  # argmin: first of ties
            want_p = pos[np.argmax(keys[i, pos])] if len(pos) else -1
            total += 1
            mismatched += (res.neg_idx[i], res.pos_idx[i]) != (want_n, want_p)
    assert total == 10404 and mismatched == 0


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(2, 24), st.integers(1, 9))
def test_tiled_torch_cosine_grid_matches_exact_oracle(seed, n, d):
    torch = pytest.importorskip("torch")
    from tripletcore.torch import BatchHardMiner, SemiHardMiner

    X, labels = grid_case(seed, n, d)
    xt, yt = torch.tensor(X), torch.tensor(labels)
    pi, _, ni, _ = oracle.batch_hard(X, labels, "cosine")
    keep = (pi >= 0) & (ni >= 0)
    a, p, q = BatchHardMiner(metric="cosine", backend="torch")(xt, yt)
    assert a.tolist() == np.nonzero(keep)[0].tolist()
    assert p.tolist() == pi[keep].tolist() and q.tolist() == ni[keep].tolist()
    inf = float("inf")
    got = SemiHardMiner(margin=inf, metric="cosine", fallback="drop", backend="torch")(xt, yt)
    want = oracle.semi_hard(X, labels, inf, "cosine", "drop")[:3]
    assert [t.tolist() for t in got] == [w.tolist() for w in want]


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(2, 24), st.integers(1, 9))
def test_normalize_true_miner_ties_exact(seed, n, d):
    # unit rows order every metric as the cosine distance: ties go to the lowest index
    torch = pytest.importorskip("torch")
    from tripletcore.torch import BatchHardMiner

    X, labels = grid_case(seed, n, d)
    pi, _, ni, _ = oracle.batch_hard(X, labels, "cosine")
    keep = (pi >= 0) & (ni >= 0)
    for metric in ("euclidean", "sqeuclidean", "cosine"):
        for backend in ("rust", "torch"):
            miner = BatchHardMiner(metric=metric, normalize=True, backend=backend)
            a, p, q = miner(torch.tensor(X), torch.tensor(labels))
            assert p.tolist() == pi[keep].tolist() and q.tolist() == ni[keep].tolist()


def test_loss_with_normalize_mines_the_exact_cosine_ties():
    """Issue 17: ``normalize=True`` mined on rounded unit rows, so equal cosine
    distances an ulp apart went to rounding; the loss now mines as
    ``BatchHardMiner(normalize=True)`` does (lowest index), on every backend."""
    torch = pytest.importorskip("torch")
    import tripletcore.torch as tt

    x = torch.tensor(
        [[-2, 0, -2, -2, 2, -1, 2, 1, -1], [2, -1, 2, 0, 1, -1, -2, -2, 2],
         [1, -2, 0, -1, 2, -1, 2, 1, 1], [0, 0, 0, -2, 2, -2, 0, -2, -1.0]],
        dtype=torch.float64,
    )  # fmt: skip
    y = torch.tensor([0, 0, 1, 1])
    for backend in ("rust", "torch"):
        xs = x.clone().requires_grad_(True)
        loss = tt.triplet_margin_loss(
            xs, y, margin=1.0, normalize=True, reduction="none", backend=backend
        )
        loss[0].backward()  # anchor 0's triplet only: its negative gets a gradient
        assert float(loss[0].detach()) > 0
        assert xs.grad[2].abs().sum() > 0, backend
        assert xs.grad[3].abs().sum() == 0, backend
