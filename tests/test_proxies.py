"""Multi-proxy losses, proxy re-selection by k-center, the proximal regulariser
and the round controller (seed paper 003)."""

import math

import numpy as np
import pytest
import torch
from pytorch_metric_learning.losses import ProxyAnchorLoss
from torch.func import functional_call

import tripletcore as tc
import tripletcore.torch as tt


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)  # the proxies' random initialisation


def batch(n=30, d=6, classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = torch.randint(0, classes, (n,), generator=g)
    return x.requires_grad_(), y


def test_one_proxy_per_class_is_proxy_anchor():
    x, y = batch()
    loss = tt.MultiProxyLoss(5, 6, 1, "proxy_anchor", sample_weight=0).double()
    pml = ProxyAnchorLoss(5, 6, margin=0.1, alpha=32).double()
    pml.proxies.data.copy_(loss.proxies.data)
    v1, v2 = loss(x, y), pml(x, y)
    torch.testing.assert_close(v1, v2, rtol=1e-10, atol=0)
    (g1,) = torch.autograd.grad(v1, x)
    (g2,) = torch.autograd.grad(v2, x)
    torch.testing.assert_close(g1, g2, rtol=1e-8, atol=1e-10)


def brute_proxy_anchor(x, y, proxies, k, alpha, delta):
    """Proxy-Anchor with each sample attached to its most similar own proxy,
    written as loops over proxies."""
    z = torch.nn.functional.normalize(x, dim=1)
    p = torch.nn.functional.normalize(proxies, dim=1)
    s = z @ p.T
    owner = torch.arange(p.shape[0]) // k
    assigned = [
        int(y[i]) * k + int(s[i, y[i] * k : (y[i] + 1) * k].argmax()) for i in range(len(y))
    ]
    pos_terms, neg_terms = [], []
    for j in range(p.shape[0]):
        mine = [i for i in range(len(y)) if assigned[i] == j]
        others = [i for i in range(len(y)) if y[i] != owner[j]]
        if mine:
            pos_terms.append(torch.log1p(torch.exp(-alpha * (s[mine, j] - delta)).sum()))
        neg = torch.exp(alpha * (s[others, j] + delta)).sum() if others else 0.0
        neg_terms.append(torch.log1p(torch.as_tensor(neg, dtype=s.dtype)))
    return sum(pos_terms) / max(len(pos_terms), 1) + sum(neg_terms) / p.shape[0]


def brute_proxy_triplet(x, y, proxies, k, margin):
    def ball(v):
        return v / v.norm(dim=1, keepdim=True).clamp(min=1.0)

    z, p = ball(x), ball(proxies)
    owner = torch.arange(p.shape[0]) // k
    out = []
    for i in range(len(y)):
        d = (z[i] - p).norm(dim=1)
        own = d[owner == y[i]].min()
        other = d[owner != y[i]].min()
        out.append(torch.relu(own - other + margin))
    return torch.stack(out).mean()


@pytest.mark.parametrize("base", ["proxy_anchor", "proxy_triplet"])
@pytest.mark.parametrize("k", [1, 3])
def test_multi_proxy_losses_match_brute_force(base, k):
    x, y = batch(n=24, classes=4, seed=k)
    loss = tt.MultiProxyLoss(4, 6, k, base, sample_weight=0, margin=0.3).double()
    with torch.no_grad():  # norms on both sides of 1 for the unit-ball map
        loss.proxies.mul_(torch.linspace(0.5, 2.0, 4 * k, dtype=torch.float64)[:, None])
    got = loss(x, y)
    if base == "proxy_anchor":
        want = brute_proxy_anchor(x, y, loss.proxies, k, 32.0, 0.1)
    else:
        want = brute_proxy_triplet(x, y, loss.proxies, k, 0.3)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    (g1,) = torch.autograd.grad(got, x)
    (g2,) = torch.autograd.grad(want, x)
    torch.testing.assert_close(g1, g2, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("base", ["proxy_anchor", "proxy_triplet"])
def test_sample_term_is_weighted_batch_hard(base):
    x, y = batch(seed=2)
    with_s = tt.MultiProxyLoss(4, 6, 2, base, sample_weight=0.1).double()
    without = tt.MultiProxyLoss(4, 6, 2, base, sample_weight=0.0).double()
    without.load_state_dict(with_s.state_dict())
    z = torch.nn.functional.normalize(x, dim=1) if base == "proxy_anchor" else x
    if base == "proxy_triplet":
        z = x / x.norm(dim=1, keepdim=True).clamp(min=1.0)
    sample = tt.triplet_margin_loss(z, y, 0.2, "batch_hard")
    torch.testing.assert_close(with_s(x, y), without(x, y) + 0.1 * sample)


@pytest.mark.parametrize("base", ["proxy_anchor", "proxy_triplet"])
def test_gradcheck_embeddings_and_proxies(base):
    x, y = batch(n=14, d=4, classes=3, seed=3)
    loss = tt.MultiProxyLoss(3, 4, 2, base, alpha=4.0).double()
    p0 = loss.proxies.detach() * torch.linspace(0.6, 1.7, 6, dtype=torch.float64)[:, None]
    p0.requires_grad_()
    assert torch.autograd.gradcheck(
        lambda z, p: functional_call(loss, {"proxies": p}, (z, y)), (x, p0)
    )


def test_reinit_proxies_is_seeded_kcenter():
    x, y = batch(n=60, d=5, classes=3, seed=4)
    loss = tt.MultiProxyLoss(4, 5, 3, "proxy_triplet").double()  # class 3 has no samples
    before = loss.proxies.detach().clone()
    z = (x / x.norm(dim=1, keepdim=True).clamp(min=1.0)).detach().numpy()
    old = (before / before.norm(dim=1, keepdim=True).clamp(min=1.0)).numpy()
    cov = loss.reinit_proxies(x, y)
    after = loss.proxies.detach().numpy()
    for c in range(3):
        rows = np.flatnonzero(y.numpy() == c)
        pick = tc.kcenter(z[rows], 3, old[c * 3 : (c + 1) * 3])
        np.testing.assert_array_equal(after[c * 3 : (c + 1) * 3], z[rows[pick.indices]])
    np.testing.assert_array_equal(after[9:], before[9:].numpy())  # no samples: kept
    want = tc.covering_radius(z, y.numpy(), after, np.repeat(np.arange(4), 3))
    assert cov.radius == pytest.approx(want.radius, rel=1e-12)
    torch.testing.assert_close(
        torch.tensor(loss.covering_radius(x, y).per_class), torch.tensor(want.per_class)
    )
    # Unseeded: plain greedy from each class's first sample.
    loss.reinit_proxies(x, y, seeded=False)
    rows = np.flatnonzero(y.numpy() == 0)
    np.testing.assert_array_equal(
        loss.proxies.detach().numpy()[:3], z[rows[tc.kcenter(z[rows], 3).indices]]
    )


def test_reinit_with_fewer_samples_than_proxies():
    loss = tt.MultiProxyLoss(2, 3, 4, "proxy_anchor").double()
    before = loss.proxies.detach().clone()
    x = torch.tensor([[1.0, 0, 0], [0, 2.0, 0], [0, 0, 3.0]], dtype=torch.float64)
    y = torch.tensor([0, 0, 1])
    loss.reinit_proxies(x, y)
    p = loss.proxies.detach()
    got = {tuple(r) for r in p[:2].tolist()}
    assert got == {(1.0, 0.0, 0.0), (0.0, 1.0, 0.0)}  # both samples, on the sphere
    torch.testing.assert_close(p[2:4], before[2:4])
    torch.testing.assert_close(p[4], torch.tensor([0.0, 0, 1], dtype=torch.float64))
    torch.testing.assert_close(p[5:], before[5:])


def test_multi_proxy_bad_input():
    with pytest.raises(ValueError, match="unknown base"):
        tt.MultiProxyLoss(3, 4, 2, "softtriple")
    with pytest.raises(ValueError, match="proxies_per_class must be >= 1"):
        tt.MultiProxyLoss(3, 4, 0)
    with pytest.raises(ValueError, match="num_classes must be >= 2"):
        tt.MultiProxyLoss(1, 4, 2)
    with pytest.raises(TypeError, match="embedding_dim must be an int"):
        tt.MultiProxyLoss(3, 4.0, 2)
    with pytest.raises(ValueError, match="alpha"):
        tt.MultiProxyLoss(3, 4, 2, alpha=0)
    with pytest.raises(ValueError, match="sample_weight"):
        tt.MultiProxyLoss(3, 4, 2, sample_weight=-1)
    loss = tt.MultiProxyLoss(3, 4, 2)
    x = torch.randn(5, 4)
    with pytest.raises(ValueError, match=r"class ids in \[0, 3\)"):
        loss(x, torch.tensor([0, 1, 2, 3, 0]))
    with pytest.raises(ValueError, match="expected 4"):
        loss(torch.randn(5, 3), torch.zeros(5, dtype=torch.int64))
    with pytest.raises(ValueError, match="norm 0"):
        loss(torch.zeros(5, 4), torch.zeros(5, dtype=torch.int64))
    with pytest.raises(ValueError, match="NaN"):
        loss(torch.full((5, 4), math.nan), torch.zeros(5, dtype=torch.int64))
    with pytest.raises(TypeError, match="integer dtype"):
        loss.reinit_proxies(x, torch.zeros(5))


# ---------------------------------------------------------------- rounds


def small_model(seed=0):
    torch.manual_seed(seed)
    m = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    m[0].bias.requires_grad_(False)  # frozen: not regularised
    return m.double()


def test_proximal_regularizer():
    model = small_model()
    reg = tt.ProximalRegularizer(model, lam=0.5)
    assert float(reg()) == 0.0  # no snapshot yet: first round unregularised
    reg.snapshot()
    prev = {n: p.detach().clone() for n, p in model.named_parameters()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    value = reg()
    want = 0.25 * sum(
        ((p - prev[n]) ** 2).sum() for n, p in model.named_parameters() if p.requires_grad
    )
    torch.testing.assert_close(value, want)
    value.backward()
    for n, p in model.named_parameters():
        if p.requires_grad:
            torch.testing.assert_close(p.grad, 0.5 * (p.detach() - prev[n]))
    assert model[0].bias.grad is None
    # Snapshot from a saved state.
    reg.snapshot(prev)
    torch.testing.assert_close(reg(), want)

    # gradcheck through a wrapper whose parameters functional_call swaps in.
    class Wrapper(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = model

        def forward(self):
            return reg()

    w0 = (model[2].weight.detach() + 0.3).requires_grad_()
    swapped = functional_call(Wrapper(), {"inner.2.weight": w0}, ())
    assert float(swapped.detach()) != float(reg().detach())  # the swap reaches reg()
    assert torch.autograd.gradcheck(
        lambda w: functional_call(Wrapper(), {"inner.2.weight": w}, ()), (w0,)
    )
    with pytest.raises(ValueError, match="lam"):
        tt.ProximalRegularizer(model, lam=-1.0)
    with pytest.raises(TypeError, match="nn.Module"):
        tt.ProximalRegularizer([torch.zeros(2)])


def test_round_controller_restores_best_and_calls_back():
    model = small_model()
    reg = tt.ProximalRegularizer(model)
    calls = []
    ctl = tt.RoundController(model, patience=3, regularizer=reg, on_new_round=[calls.append])
    states = []
    metrics = [0.1, 0.3, 0.2, 0.25, 0.3, 0.5, 0.4]
    started = []
    for m in metrics:
        with torch.no_grad():
            for p in model.parameters():
                p.add_(1.0)  # a different model each evaluation
        states.append({k: v.clone() for k, v in model.state_dict().items()})
        started.append(ctl.step(m))
        if started[-1]:
            restored = {k: v.clone() for k, v in model.state_dict().items()}
    # 0.3 is not beaten by 0.2, 0.25, 0.3 (equal is no improvement): round 2 at step 5.
    assert started == [False, False, False, False, True, False, False]
    assert ctl.round == 1 and calls == [ctl]
    # The model went back to its weights at the best evaluation (step 2),
    # which became theta_prev, and the new round tracks its own best.
    for k, v in restored.items():
        assert torch.equal(v, states[1][k])
        assert not torch.equal(v, states[4][k])
    for name, p in reg.theta_prev.items():
        assert torch.equal(p, states[1][name])
    assert ctl.best_metric == 0.5
    for k, v in ctl.best_state.items():
        assert torch.equal(v, states[5][k])


def test_round_controller_restore_and_min_mode():
    model = small_model()
    ctl = tt.RoundController(model, patience=1, mode="min")
    best = {k: v.clone() for k, v in model.state_dict().items()}
    assert not ctl.step(1.0)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)
    assert ctl.step(2.0)  # worse with mode="min": new round, weights restored
    for k, v in model.state_dict().items():
        assert torch.equal(v, best[k])
    assert not ctl.step(5.0)  # first evaluation of the new round is its best


def test_round_controller_bad_input():
    model = small_model()
    with pytest.raises(ValueError, match="patience"):
        tt.RoundController(model, patience=0)
    with pytest.raises(ValueError, match="unknown mode"):
        tt.RoundController(model, mode="up")
    with pytest.raises(TypeError, match="callables"):
        tt.RoundController(model, on_new_round=[3])
    ctl = tt.RoundController(model)
    with pytest.raises(ValueError, match="finite"):
        ctl.step(float("nan"))
    with pytest.raises(TypeError, match="real number"):
        ctl.step("0.5")
