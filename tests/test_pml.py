"""Cross-checks with pytorch-metric-learning where the semantics coincide.

PML's LpDistance L2-normalises by default, so every distance here is built with
normalize_embeddings=False.  Data are continuous random float64 points, so there
are no distance ties (PML breaks ties by torch.max/min, which is unspecified).
"""

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pytorch_metric_learning.distances import LpDistance
from pytorch_metric_learning.losses import TripletMarginLoss
from pytorch_metric_learning.miners import BatchHardMiner

import tripletcore as tc

torch.set_num_threads(1)

# name -> (our metric, PML distance factory)
DISTANCES = {
    "euclidean": lambda: LpDistance(normalize_embeddings=False),
    "sqeuclidean": lambda: LpDistance(normalize_embeddings=False, power=2),
}


@st.composite
def batches(draw, max_n=48):
    n = draw(st.integers(2, max_n))
    d = draw(st.integers(1, 16))
    k = draw(st.integers(1, 6))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    if draw(st.booleans()):
        labels = rng.integers(0, k, n)
    else:  # P x K batch
        labels = rng.permutation(np.arange(n) // max(1, n // k))
    scale = draw(st.sampled_from([0.1, 1.0, 3.0]))
    X = rng.standard_normal((n, d)) * scale
    # torch.cdist computes |x|^2 + |y|^2 - 2 x.y for more than 25 rows: keep points apart
    # so that its cancellation error stays far below the tolerances used here
    D = np.sqrt(((X[:, None, :] - X[None, :, :]) ** 2).sum(-1)) + np.eye(n) * scale
    assume(D.min() > 1e-2 * scale)
    return X, labels


def pml_loss_and_grad(X, labels, margin, distance, indices=None, smooth=False):
    emb = torch.tensor(X, dtype=torch.float64, requires_grad=True)
    lab = torch.tensor(labels, dtype=torch.int64)
    loss_fn = TripletMarginLoss(margin=margin, distance=distance, smooth_loss=smooth)
    loss = loss_fn(emb, lab, indices) if indices is not None else loss_fn(emb, lab)
    loss.backward()
    return float(loss.detach()), emb.grad.numpy().copy()


def pml_batch_hard(X, labels, distance):
    miner = BatchHardMiner(distance=distance)
    a, p, n = miner(torch.tensor(X), torch.tensor(labels, dtype=torch.int64))
    return a.numpy(), p.numpy(), n.numpy(), (a, p, n)


@settings(max_examples=80, deadline=None)
@given(batches(), st.sampled_from(sorted(DISTANCES)))
def test_batch_hard_miner_matches_pml(batch, metric):
    X, labels = batch
    pa, pp, pn, _ = pml_batch_hard(X, labels, DISTANCES[metric]())
    res = tc.batch_hard(X, labels, metric=metric)
    keep = np.nonzero((res.pos_idx >= 0) & (res.neg_idx >= 0))[0]
    np.testing.assert_array_equal(pa, keep)
    np.testing.assert_array_equal(pp, res.pos_idx[keep])
    np.testing.assert_array_equal(pn, res.neg_idx[keep])


@settings(max_examples=80, deadline=None)
@given(batches(), st.sampled_from(sorted(DISTANCES)), st.sampled_from([0.05, 0.2, 1.0]))
def test_batch_hard_loss_matches_pml(batch, metric, margin):
    X, labels = batch
    distance = DISTANCES[metric]()
    _, _, _, tuples = pml_batch_hard(X, labels, distance)
    want, want_grad = pml_loss_and_grad(X, labels, margin, distance, tuples)
    got, grad = tc.triplet_margin_loss(
        X, labels, margin=margin, mining="batch_hard", metric=metric, reduction="mean_nonzero"
    )
    assert got == pytest.approx(want, rel=1e-10, abs=1e-12)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-9, atol=1e-11)


@settings(max_examples=60, deadline=None)
@given(batches(max_n=32), st.sampled_from(sorted(DISTANCES)), st.sampled_from([0.05, 0.2, 1.0]))
def test_batch_all_loss_matches_pml(batch, metric, margin):
    X, labels = batch
    want, want_grad = pml_loss_and_grad(X, labels, margin, DISTANCES[metric]())
    got, grad = tc.triplet_margin_loss(
        X, labels, margin=margin, mining="batch_all", metric=metric, reduction="mean_nonzero"
    )
    assert got == pytest.approx(want, rel=1e-10, abs=1e-12)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-9, atol=1e-11)


@settings(max_examples=40, deadline=None)
@given(batches(max_n=32), st.sampled_from(["batch_hard", "batch_all"]))
def test_soft_margin_matches_pml_smooth_loss(batch, mining):
    # PML's smooth loss is softplus(d_ap - d_an + margin); ours ignores the margin, so
    # compare at margin 0
    X, labels = batch
    distance = DISTANCES["euclidean"]()
    tuples = pml_batch_hard(X, labels, distance)[3] if mining == "batch_hard" else None
    want, want_grad = pml_loss_and_grad(X, labels, 0.0, distance, tuples, smooth=True)
    got, grad = tc.triplet_margin_loss(
        X, labels, margin=0.7, mining=mining, soft=True, reduction="mean_nonzero"
    )
    assert got == pytest.approx(want, rel=1e-10, abs=1e-12)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-9, atol=1e-11)
