"""Gradient decomposition of triplet losses on the unit sphere (seed paper 004):
the components recombine to autograd's gradient, and the triplet, NCA and
selectively contrastive special cases of DecomposedTripletLoss have the
gradients of the explicit losses."""

import numpy as np
import pytest
import torch

import tripletcore.torch as tt

torch.manual_seed(0)


def batch(n=24, d=5, classes=4, seed=0, spread=0.0):
    """Random rows; ``spread`` > 0 moves each class towards its own centre,
    so that easy and hard triplets both occur."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64) * 3
    y = torch.randint(0, classes, (n,), generator=g)
    centres = torch.randn(classes, d, generator=g, dtype=torch.float64)
    x = x + spread * centres[y]
    return x.requires_grad_(), y


def sims(x, a, p, n):
    f = torch.nn.functional.normalize(x, dim=1)
    return (f[a] * f[p]).sum(1), (f[a] * f[n]).sum(1)


def random_triplets(n, t, seed):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randint(0, n, (t,), generator=g) for _ in range(3))


@pytest.mark.parametrize("seed", range(4))
def test_components_recombine_to_autograd(seed):
    x, _ = batch(seed=seed)
    # Arbitrary triplets, rows reused and even a == p: the scatter must add up.
    a, p, n = random_triplets(len(x), 60, seed)
    g = torch.Generator().manual_seed(seed + 100)
    lp, ln = torch.randn(60, generator=g, dtype=torch.float64), torch.randn(60, generator=g)
    s_ap, s_an = sims(x, a, p, n)
    (want,) = torch.autograd.grad((lp * s_ap + ln.double() * s_an).sum(), x)
    comps = tt.triplet_gradient_components(x, a, p, n)
    got = tt.combine_components(comps, lp, ln, a, p, n, len(x))
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(comps.s_ap, s_ap.detach())
    torch.testing.assert_close(comps.s_an, s_an.detach())


def test_components_are_tangent_and_match_the_formulas():
    x, _ = batch()
    a, p, n = random_triplets(len(x), 30, 7)
    c = tt.triplet_gradient_components(x, a, p, n)
    xd = x.detach()
    f = xd / xd.norm(dim=1, keepdim=True)
    # Tangent to the sphere at the row they move.
    for vec, row in ((c.anchor_pos, a), (c.anchor_neg, a), (c.positive, p), (c.negative, n)):
        assert (vec * f[row]).sum(1).abs().max() < 1e-13
    # Field notes, section 3: anchor (f_p - S_ap f_a) / |x_a|, ...
    na = xd[a].norm(dim=1, keepdim=True)
    torch.testing.assert_close(c.anchor_pos, (f[p] - c.s_ap[:, None] * f[a]) / na)
    torch.testing.assert_close(
        c.negative, (f[a] - c.s_an[:, None] * f[n]) / xd[n].norm(dim=1, keepdim=True)
    )


def explicit_losses(tau=0.1, lam=1.0, margin=0.3):
    """Losses written out as functions of (S_ap, S_an), for autograd."""

    def nca(s_ap, s_an):
        return -torch.log_softmax(torch.stack([s_ap, s_an], 1) / tau, 1)[:, 0]

    return {
        "triplet": (tt.TripletWeights(), lambda s_ap, s_an: s_an - s_ap),
        "hinge": (tt.TripletWeights(margin), lambda s_ap, s_an: torch.relu(s_an - s_ap + margin)),
        "nca": (tt.NCAWeights(tau), nca),
        "sc": (
            tt.SCWeights(lam, tau),
            lambda s_ap, s_an: torch.where(s_an > s_ap, lam * s_an, nca(s_ap, s_an)),
        ),
    }


@pytest.mark.parametrize("name", ["triplet", "hinge", "nca", "sc"])
@pytest.mark.parametrize("mining", ["batch_hard", "easy_positive"])
def test_special_cases_have_the_explicit_losses_gradient(name, mining):
    weights, explicit = explicit_losses()[name]
    x, y = batch(n=40, classes=5, seed=3, spread=6.0)
    loss = tt.DecomposedTripletLoss(weights, mining=mining)
    a, p, n = tt.mine_triplets(x, y, mining)
    s_ap, s_an = sims(x, a, p, n)
    hard = int((s_an > s_ap).sum())
    if name == "sc":
        assert 0 < hard < len(a)  # both branches are exercised
    want_value = explicit(s_ap, s_an).mean()
    (want,) = torch.autograd.grad(want_value, x)
    value = loss(x, y)
    (got,) = torch.autograd.grad(value, x)
    torch.testing.assert_close(value, want_value.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def test_selectively_contrastive_loss_is_the_sc_special_case():
    x, y = batch(n=40, classes=5, seed=4)
    for mining in ("easy_positive", "batch_hard"):
        sc = tt.SelectivelyContrastiveLoss(lam=0.7, tau=0.2, mining=mining)
        dec = tt.DecomposedTripletLoss(tt.SCWeights(0.7, 0.2), mining=mining)
        v1, v2 = sc(x, y), dec(x, y)
        (g1,) = torch.autograd.grad(v1, x)
        (g2,) = torch.autograd.grad(v2, x)
        torch.testing.assert_close(v1, v2)
        torch.testing.assert_close(g1, g2, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    "loss",
    [
        tt.DecomposedTripletLoss(tt.TripletWeights(0.2)),
        tt.DecomposedTripletLoss(tt.NCAWeights(0.5), mining="easy_positive"),
        tt.DecomposedTripletLoss(tt.SCWeights(1.0, 0.5), mining="easy_positive", reduction="sum"),
        tt.SelectivelyContrastiveLoss(lam=1.0, tau=0.5),
        tt.SelectivelyContrastiveLoss(mining="batch_hard"),
    ],
    ids=repr,
)
def test_gradcheck(loss):
    x, y = batch(n=16, d=4, classes=3, seed=5)
    assert torch.autograd.gradcheck(lambda z: loss(z, y), (x,))


def test_custom_weights_without_values_use_the_surrogate():
    x, y = batch(seed=6)

    def only_negatives(s_ap, s_an):
        return torch.zeros_like(s_ap), torch.ones_like(s_an) * 2.0

    loss = tt.DecomposedTripletLoss(only_negatives)
    a, p, n = tt.mine_triplets(x, y)
    s_ap, s_an = sims(x, a, p, n)
    value = loss(x, y)
    (got,) = torch.autograd.grad(value, x)
    (want,) = torch.autograd.grad((2.0 * s_an).mean(), x)
    torch.testing.assert_close(value, (2.0 * s_an).mean().detach())
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-13)
    # The positive of a triplet is only moved through other triplets' terms.
    comps = tt.triplet_gradient_components(x, a, p, n)
    torch.testing.assert_close(
        got,
        tt.combine_components(comps, s_ap * 0, s_an * 0 + 2, a, p, n, len(x)) / len(a),
    )


def test_given_triplets_and_empty_batches():
    x, y = batch(seed=8)
    trip = random_triplets(len(x), 10, 1)
    loss = tt.DecomposedTripletLoss(tt.TripletWeights())
    s_ap, s_an = sims(x, *trip)
    torch.testing.assert_close(loss(x, y, trip), (s_an - s_ap).mean().detach())
    one_class = torch.zeros(len(x), dtype=torch.int64)
    for fn in (loss, tt.SelectivelyContrastiveLoss()):
        v = fn(x, one_class)
        (g,) = torch.autograd.grad(v, x)
        assert float(v.detach()) == 0.0 and not g.any()


def brute_mining(x, y, mining):
    f = torch.nn.functional.normalize(x.detach(), dim=1).numpy()
    s = f @ f.T
    y = y.numpy()
    out = []
    for i in range(len(y)):
        pos = [j for j in range(len(y)) if y[j] == y[i] and j != i]
        neg = [j for j in range(len(y)) if y[j] != y[i]]
        if not pos or not neg:
            continue
        row = s[i]
        sign = -1.0 if mining == "easy_positive" else 1.0
        p = min(pos, key=lambda j, row=row, sign=sign: sign * row[j])  # first on ties
        n = min(neg, key=lambda j, row=row: -row[j])
        out.append((i, p, n))
    return out


@pytest.mark.parametrize("mining", ["batch_hard", "easy_positive"])
def test_mining_matches_brute_force(mining):
    x, y = batch(n=30, classes=4, seed=9)
    y[0] = 99  # a singleton class: anchor dropped
    a, p, n = tt.mine_triplets(x, y, mining)
    got = list(zip(a.tolist(), p.tolist(), n.tolist(), strict=True))
    assert got == brute_mining(x, y, mining)


def test_bad_input():
    x, y = batch()
    z = x.detach().clone()
    z[3] = 0
    with pytest.raises(ValueError, match="row 3 has norm 0"):
        tt.triplet_gradient_components(z, *random_triplets(len(z), 5, 0))
    with pytest.raises(ValueError, match="norm 0"):
        tt.SelectivelyContrastiveLoss()(z, y)
    with pytest.raises(ValueError, match="outside"):
        tt.triplet_gradient_components(x, torch.tensor([0]), torch.tensor([1]), torch.tensor([99]))
    with pytest.raises(TypeError, match="int64"):
        tt.triplet_gradient_components(x, torch.tensor([0.0]), torch.tensor([1]), torch.tensor([2]))
    with pytest.raises(ValueError, match="same length"):
        tt.triplet_gradient_components(
            x, torch.tensor([0]), torch.tensor([1, 2]), torch.tensor([2])
        )
    with pytest.raises(TypeError, match="callable"):
        tt.DecomposedTripletLoss(3)
    with pytest.raises(ValueError, match="shape"):
        tt.DecomposedTripletLoss(lambda s, t: (s[:1], t))(x, y)
    with pytest.raises(ValueError, match="weight_fn must return"):
        tt.DecomposedTripletLoss(lambda s, t: (s,))(x, y)
    with pytest.raises(ValueError, match="unknown mining"):
        tt.SelectivelyContrastiveLoss(mining="all")
    with pytest.raises(ValueError, match="unknown reduction"):
        tt.DecomposedTripletLoss(tt.NCAWeights(), reduction="none")
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="tau"):
            tt.NCAWeights(bad)
        with pytest.raises(ValueError, match="lam"):
            tt.SCWeights(lam=bad)
    with pytest.raises(TypeError, match="tau"):
        tt.SelectivelyContrastiveLoss(tau="0.1")
    with pytest.raises(ValueError, match="margin"):
        tt.TripletWeights(-0.1)
    with pytest.raises(TypeError, match="torch.Tensor"):
        tt.SelectivelyContrastiveLoss()(np.zeros((3, 2)), y)
    with pytest.raises(ValueError, match="labels has"):
        tt.SelectivelyContrastiveLoss()(x, y[:-1])
