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
