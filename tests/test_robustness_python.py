"""Reliability of the Python layer (issue 16): double backward, argument
types and ranges, signed zeros, huge magnitudes in the Python-side code."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import tripletcore as tc
import tripletcore.torch as tct

# ---------------------------------------------------------------- double backward


def _distances(x: torch.Tensor, metric: str) -> torch.Tensor:
    if metric == "cosine":
        x = x / x.norm(dim=1, keepdim=True)
    diff = x[:, None] - x[None]
    sq = (diff * diff).sum(-1)
    if metric == "sqeuclidean":
        return sq
    if metric == "cosine":
        return 0.5 * sq
    nonzero = sq > 0
    return torch.where(nonzero, torch.sqrt(torch.where(nonzero, sq, 1.0)), 0.0)


def _brute_loss(
    x: torch.Tensor, y: torch.Tensor, margin: float, mining: str, metric: str, soft: bool, red: str
) -> torch.Tensor:
    """The loss by enumeration in float64 autograd (semi-hard: the NumPy API's triplets)."""
    d = _distances(x, metric)
    n = len(y)
    same = y[:, None] == y[None]
    pos, neg = same & ~torch.eye(n, dtype=torch.bool), ~same
    if mining == "batch_all":
        a, p, q = torch.nonzero(pos[:, :, None] & neg[:, None, :], as_tuple=True)
    elif mining == "batch_hard":
        dd = d.detach()
        pi = torch.where(pos, dd, -1.0).argmax(1)
        ni = torch.where(neg, dd, float("inf")).argmin(1)
        a = torch.nonzero(pos.any(1) & neg.any(1)).flatten()
        p, q = pi[a], ni[a]
    else:
        mined = tc.semi_hard(x.detach().numpy(), y.numpy(), margin=margin, metric=metric)
        a, p, q = (torch.from_numpy(np.asarray(t)) for t in mined[:3])
    v = d[a, p] - d[a, q]
    losses = torch.logaddexp(v, torch.zeros_like(v)) if soft else torch.relu(v + margin)
    if red == "none":
        return torch.zeros(n, dtype=losses.dtype).index_add(0, a, losses)
    if red == "sum":
        return losses.sum()
    if red == "mean":
        return losses.sum() / max(len(losses), 1)
    return losses.sum() / max(int((losses > 0).sum()), 1)


def _penalised_weight_grad(loss_fn, inp, w0):  # type: ignore[no-untyped-def]
    """d/dW of ``loss + |d loss / d emb|^2`` for ``emb = inp @ W``: a gradient penalty."""
    w = w0.clone().requires_grad_()
    emb = inp @ w
    loss = loss_fn(emb).sum()
    (g,) = torch.autograd.grad(loss, emb, create_graph=True)
    assert g.requires_grad, "the gradient was returned detached"
    (gw,) = torch.autograd.grad(loss + (g**2).sum(), w)
    return gw


@pytest.mark.parametrize("backend", ["rust", "torch"])
@pytest.mark.parametrize("mining", ["batch_hard", "semi_hard", "batch_all"])
@pytest.mark.parametrize("metric", ["euclidean", "sqeuclidean", "cosine"])
@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum", "mean_nonzero", "none"])
def test_gradient_penalty_matches_float64_brute_force(
    backend: str, mining: str, metric: str, soft: bool, reduction: str
) -> None:
    gen = torch.Generator().manual_seed(0)
    inp = torch.randn(24, 6, dtype=torch.float64, generator=gen)
    w0 = torch.randn(6, 4, dtype=torch.float64, generator=gen)
    y = torch.arange(24) % 4
    kw = dict(margin=0.5, mining=mining, metric=metric, soft=soft, reduction=reduction)
    got = _penalised_weight_grad(
        lambda e: tct.triplet_margin_loss(e, y, backend=backend, **kw), inp, w0
    )
    want = _penalised_weight_grad(
        lambda e: _brute_loss(e, y, 0.5, mining, metric, soft, reduction), inp, w0
    )
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9 * float(want.abs().max()))


@pytest.mark.parametrize("backend", ["rust", "torch"])
@pytest.mark.parametrize("mining", ["batch_hard", "batch_all"])
def test_create_graph_first_gradient_equals_plain_backward(backend: str, mining: str) -> None:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(32, 5, generator=gen, requires_grad=True)
    y = torch.arange(32) % 5
    loss = tct.triplet_margin_loss(x, y, mining=mining, backend=backend)
    (plain,) = torch.autograd.grad(loss, x, retain_graph=True)
    (graph,) = torch.autograd.grad(loss, x, create_graph=True)
    assert graph.requires_grad and not plain.requires_grad
    torch.testing.assert_close(graph, plain, rtol=1e-5, atol=1e-6)


def test_decomposed_loss_refuses_double_backward() -> None:
    from tripletcore.torch import decomposition

    x = torch.randn(12, 4, dtype=torch.float64, requires_grad=True)
    y = torch.arange(12) % 3
    loss = decomposition.DecomposedTripletLoss(decomposition.TripletWeights())(x, y)
    with pytest.raises(RuntimeError, match="create_graph"):
        torch.autograd.grad(loss, x, create_graph=True)


# ---------------------------------------------------------------- argument types


X12 = np.random.default_rng(0).standard_normal((12, 3))
Y12 = np.arange(12) % 3


@pytest.mark.parametrize("margin", ["0.3", True, np.bool_(True), b"1", None, [0.3]])
def test_margin_must_be_a_real_number(margin: object) -> None:
    with pytest.raises(TypeError, match="margin"):
        tc.triplet_margin_loss(X12, Y12, margin=margin)
    with pytest.raises(TypeError, match="margin"):
        tc.semi_hard(X12, Y12, margin=margin)
    with pytest.raises(TypeError, match="margin"):
        tct.triplet_margin_loss(torch.tensor(X12), torch.tensor(Y12), margin=margin)
    with pytest.raises(TypeError, match="margin"):
        tct.TripletMarginLoss(margin=margin)


@pytest.mark.parametrize("margin", [np.float32(0.3), np.int64(1), np.array(0.5), 0.25])
def test_numeric_margins_still_accepted(margin: object) -> None:
    loss, _ = tc.triplet_margin_loss(X12, Y12, margin=margin)
    want, _ = tc.triplet_margin_loss(X12, Y12, margin=float(margin))  # type: ignore[arg-type]
    assert loss == want


@pytest.mark.parametrize("ks", [(1.7,), (1, "2"), (True,)])
def test_ks_must_be_integers(ks: tuple[object, ...]) -> None:
    with pytest.raises(TypeError, match="ks"):
        tc.retrieval_metrics(X12, Y12, ks=ks)


def test_retrieval_seed_and_chunk_size_types() -> None:
    with pytest.raises(TypeError, match="seed"):
        tc.retrieval_metrics(X12, Y12, seed=1.5)
    with pytest.raises(TypeError, match="chunk_size"):
        tct.TripletMarginLoss(chunk_size=2.5)
    with pytest.raises(TypeError, match="chunk_size"):
        tct.TripletMarginLoss(chunk_size="64")


def test_knn_error_names_k_once() -> None:
    with pytest.raises(ValueError) as info:
        tc.knn(X12, 600)
    assert str(info.value).startswith("k must be between 1 and 11")
    assert "k: k" not in str(info.value)
    assert info.value.arg == "k"  # type: ignore[attr-defined]


# ---------------------------------------------------------------- margins


@pytest.mark.parametrize("backend", ["rust", "torch"])
def test_infinite_margin_refused_by_every_loss(backend: str) -> None:
    x, y = torch.tensor(X12), torch.tensor(Y12)
    with pytest.raises(ValueError, match="margin"):
        tc.triplet_margin_loss(X12, Y12, margin=float("inf"))
    with pytest.raises(ValueError, match="margin"):
        tct.triplet_margin_loss(x, y, margin=float("inf"), backend=backend)
    with pytest.raises(ValueError, match="margin"):
        tct.TripletMarginLoss(margin=float("inf"), backend=backend)
    # the semi-hard window without upper bound stays, as documented
    miner = tct.SemiHardMiner(margin=float("inf"), backend=backend)
    a, _, _ = miner(x, y)
    assert len(a) == len(tc.semi_hard(X12, Y12, margin=float("inf")).anchor)


def test_margin_tensor_that_requires_grad_is_refused() -> None:
    x, y = torch.tensor(X12), torch.tensor(Y12)
    margin = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    with pytest.raises(TypeError, match="requires grad"):
        tct.triplet_margin_loss(x, y, margin=margin)
    with pytest.raises(TypeError, match="requires grad"):
        tct.TripletMarginLoss(margin=margin)
    # a constant tensor is fine
    assert float(tct.triplet_margin_loss(x, y, margin=margin.detach())) > 0


# ---------------------------------------------------------------- signed zeros


@pytest.mark.parametrize("mining", ["batch_hard", "semi_hard", "batch_all"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "mean_nonzero", "none"])
def test_no_triplet_gives_positive_zero(mining: str, reduction: str) -> None:
    singletons = np.arange(12)
    loss, grad = tc.triplet_margin_loss(X12, singletons, mining=mining, reduction=reduction)
    assert not np.signbit(loss).any()
    assert not grad.any()
    for backend in ("rust", "torch"):
        x = torch.tensor(X12, requires_grad=True)
        t = tct.triplet_margin_loss(
            x, torch.tensor(singletons), mining=mining, reduction=reduction, backend=backend
        )
        assert not torch.signbit(t).any(), backend


# ---------------------------------------------------------------- labels, thickness


def test_class_hausdorff_reports_uint64_labels_as_given() -> None:
    big = np.uint64(2**63)
    labels = (np.arange(12) % 3).astype(np.uint64) + big
    res = tc.class_hausdorff(X12, X12 + 0.1, labels)
    assert res.classes.dtype == np.uint64
    assert sorted(int(c) for c in res.classes) == [2**63, 2**63 + 1, 2**63 + 2]
    assert res.label >= 2**63
    import tripletcore.dask as tcd

    lazy = tcd.class_hausdorff(X12, X12 + 0.1, labels, block_rows=5)
    assert lazy.label == res.label and lazy.classes.dtype == np.uint64


@pytest.mark.parametrize("dim", [1, 2, 3, 4])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_thickness_rejects_nonfinite_values(dim: int, bad: float) -> None:
    a = np.random.default_rng(dim).standard_normal((8, dim))
    a[3, 0] = bad
    with pytest.raises(ValueError, match="^A contains NaN or infinite"):
        tc.thickness(a)


def test_thickness_accepts_numpy_integers_and_checks_types() -> None:
    a = np.random.default_rng(0).standard_normal((10, 3))
    got, want = tc.thickness(a, max_cells=np.int64(50)), tc.thickness(a, max_cells=50)
    assert (got.lower, got.upper) == (want.lower, want.upper)
    with pytest.raises(TypeError, match="max_cells"):
        tc.thickness(a, max_cells=50.0)
    with pytest.raises(TypeError, match="rtol"):
        tc.thickness(a, rtol="0.1")
    with pytest.raises(TypeError, match="tol"):
        tc.is_triplet_separated(X12, Y12, tol="0")


# ---------------------------------------------------------------- magnitudes


@pytest.mark.parametrize("scale", [1e160, 1e300, 1e-170, 1e-300])
def test_retrieval_metrics_at_extreme_magnitudes(scale: float) -> None:
    x = np.random.default_rng(0).standard_normal((40, 3))
    y = np.arange(40) % 4
    assert tc.retrieval_metrics(x * scale, y) == tc.retrieval_metrics(x, y)
