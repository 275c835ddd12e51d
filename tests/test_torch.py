"""The PyTorch layer (tripletcore.torch): both backends against a float64 oracle.

The Rust backend wraps the NumPy API's kernels, so for the scalar reductions it
must return the NumPy API's numbers bit for bit. The tiled torch backend (the
CUDA path, run here on CPU tensors) and every ``reduction="none"`` path are
compared with a float64 brute force written below: the oracle's exactly mined
triplets (tests/oracle.py), textbook distance formulas, torch autograd.
"""

from __future__ import annotations

import numpy as np
import oracle
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pytorch_metric_learning.distances import LpDistance
from pytorch_metric_learning.losses import TripletMarginLoss as PMLTripletMarginLoss
from pytorch_metric_learning.miners import BatchHardMiner as PMLBatchHardMiner
from strategies import (
    COSINE_WELL_CONDITIONED,
    GRID_KINDS,
    fix_zero_rows,
    make_points,
    metric_cases,
)

import tripletcore as tc
import tripletcore.torch as tt
from tripletcore.torch import _rust, _tiled

# tiny tensors: more threads only add overhead (and stall on a busy machine)
torch.set_num_threads(1)

MININGS = ("batch_hard", "semi_hard", "batch_all")
METRICS = ("euclidean", "sqeuclidean", "cosine")
REDUCTIONS = ("mean", "sum", "mean_nonzero", "none")
FALLBACKS = ("hardest", "easiest", "drop")
BACKENDS = ("rust", "torch")
MARGINS = (0.0, 0.1, 0.2, 1.0)


# --------------------------------------------------------------------------
# float64 brute force
# --------------------------------------------------------------------------


def textbook_distance(u: torch.Tensor, v: torch.Tensor, metric: str) -> torch.Tensor:
    if metric == "cosine":
        return 1.0 - (u * v).sum(1) / (u.norm(dim=1) * v.norm(dim=1))
    sq = ((u - v) ** 2).sum(1)
    if metric == "sqeuclidean":
        return sq
    pos = sq > 0  # gradient 0 at distance 0, as the library
    return torch.where(pos, torch.sqrt(torch.where(pos, sq, 1.0)), 0.0)


def reference(X, labels, weights=None, *, margin, mining, metric, soft, reduction, fallback):
    """(loss, gradient of sum(weights * loss) or of loss, per-triplet pre-activations)."""
    T = oracle.triplets(X, labels, mining, margin, metric, fallback)
    x = torch.tensor(np.asarray(X, dtype=np.float64), requires_grad=True)
    a, p, q = (torch.from_numpy(np.ascontiguousarray(T[:, k])) for k in range(3))
    d_ap = textbook_distance(x[a], x[p], metric)
    d_an = textbook_distance(x[a], x[q], metric)
    v = d_ap - d_an + (0.0 if soft else margin)
    losses = torch.nn.functional.softplus(v, threshold=50.0) if soft else torch.relu(v)
    if reduction == "none":
        loss = torch.zeros(x.shape[0], dtype=torch.float64).index_add(0, a, losses)
    elif reduction == "sum":
        loss = losses.sum()
    elif reduction == "mean":
        loss = losses.sum() / max(len(T), 1)
    else:
        loss = losses.sum() / max(int((losses > 0).sum()), 1)
    out = loss if weights is None else (loss * torch.as_tensor(weights)).sum()
    out.backward()
    return loss.detach().numpy(), x.grad.numpy(), v.detach().numpy()


def run(X, labels, weights=None, *, backend, chunk_size=None, **kw):
    """The library's loss and gradient (of sum(weights * loss) for a vector loss)."""
    x = torch.tensor(X, requires_grad=True)
    lab = torch.as_tensor(np.asarray(labels))
    loss = tt.triplet_margin_loss(x, lab, backend=backend, chunk_size=chunk_size, **kw)
    out = loss if weights is None else (loss * torch.as_tensor(weights, dtype=loss.dtype)).sum()
    out.backward()
    return loss.detach().numpy(), x.grad.numpy()


def loss_settings():
    return st.fixed_dictionaries(
        {
            "margin": st.sampled_from(MARGINS),
            "mining": st.sampled_from(MININGS),
            "soft": st.booleans(),
            "reduction": st.sampled_from(REDUCTIONS),
            "fallback": st.sampled_from(FALLBACKS),
        }
    )


def near_kink(v, soft, kind, rel):
    """A hinge argument so close to 0 that rounding may put it on either side."""
    if soft or v.size == 0:
        return False
    exact = (v == 0) & (kind in GRID_KINDS)
    return bool(np.any((np.abs(v) <= rel * (1 + np.abs(v))) & ~exact))


def smallest_hinge_argument(X, labels, metric, margin):
    """min |d_ap - d_an + margin| over all batch-all triplets (float64)."""
    D = oracle.cdist(X, None, metric)
    same = labels[:, None] == labels[None, :]
    pos = same & ~np.eye(len(X), dtype=bool)
    out = np.inf
    for a in range(len(X)):
        v = D[a, pos[a]][:, None] - D[a, ~same[a]][None, :] + margin
        out = min(out, np.abs(v).min(initial=np.inf))
    return out


# --------------------------------------------------------------------------
# loss and gradient
# --------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    metric_cases(max_n=40, max_d=8, cosine_kinds=COSINE_WELL_CONDITIONED, cosine_min_d=2),
    loss_settings(),
)
def test_rust_backend_returns_the_numpy_api_numbers(mc, cfg):
    metric, case = mc
    assume(cfg["reduction"] != "none")
    X, labels = case.X, case.labels
    want, want_grad = tc.triplet_margin_loss(X, labels, metric=metric, **cfg)
    got, grad = run(X, labels, backend="rust", metric=metric, **cfg)
    assert got.dtype == X.dtype and grad.dtype == X.dtype
    np.testing.assert_array_equal(got, np.asarray(want, dtype=X.dtype))  # the loss, rounded
    np.testing.assert_array_equal(grad, want_grad)


@settings(max_examples=80, deadline=None)
@given(
    metric_cases(
        max_n=20,
        max_d=6,
        dtypes=(np.float64,),
        cosine_kinds=COSINE_WELL_CONDITIONED,
        cosine_min_d=2,
    ),
    loss_settings(),
    st.sampled_from(BACKENDS),
    st.integers(1, 20),
    st.integers(0, 2**32 - 1),
)
def test_float64_matches_brute_force(mc, cfg, backend, chunk_size, seed):
    metric, case = mc
    X, labels = case.X, case.labels
    weights = None
    if cfg["reduction"] == "none":  # per-anchor losses with arbitrary upstream weights
        weights = np.random.default_rng(seed).standard_normal(len(X))
    want, want_grad, v = reference(X, labels, weights, metric=metric, **cfg)
    assume(not near_kink(v, cfg["soft"], case.kind, 1e-12))
    got, grad = run(
        X, labels, weights, backend=backend, chunk_size=chunk_size, metric=metric, **cfg
    )
    scale = 1.0 + np.abs(want).max(initial=0.0)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10 * scale)
    gscale = 1.0 + np.abs(want_grad).max(initial=0.0)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-8, atol=1e-9 * gscale)


@pytest.mark.parametrize("seed", range(40))
def test_batch_all_gradient_of_close_pairs_is_exact_on_the_tiled_path(seed):
    # 1-D points 1e-7..1e-3 apart near 1: the expansion's absolute error is far below
    # the distances, but its relative error was enough to skew w / d in the gradient
    rng = np.random.default_rng(seed)
    X = 1.0 + rng.integers(-3, 4, (6, 1)) * 10.0 ** rng.uniform(-7, -3)
    X += rng.standard_normal((6, 1)) * 1e-9
    labels = rng.integers(0, 2, 6)
    kw = dict(margin=0.1, mining="batch_all", soft=False, reduction="mean", fallback="hardest")
    want, want_grad, v = reference(X, labels, metric="euclidean", **kw)
    assert np.abs(v).min(initial=1.0) > 0.05  # no hinge near its kink: margin >> distances
    _, grad = run(X, labels, backend="torch", chunk_size=1, metric="euclidean", **kw)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("metric", ("euclidean", "sqeuclidean"))
@pytest.mark.parametrize("margin", (0.0, 1.0))
@pytest.mark.parametrize("seed", range(4))
def test_float32_batch_all_exact_ties_at_the_kink(seed, margin, metric, backend):
    # integer points: many triplets have d_ap - d_an + margin == 0 exactly, and the
    # float32 expansion (of centred rows) rounds them to either side of the kink
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 3, (40, 3)).astype(np.float32)
    labels = rng.integers(0, 3, 40)
    kw = dict(margin=margin, mining="batch_all", soft=False, reduction="mean", fallback="hardest")
    want, want_grad, v = reference(X, labels, metric=metric, **kw)
    assert (v == 0).sum() > 10
    got, grad = run(X, labels, backend=backend, chunk_size=7, metric=metric, **kw)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-4, atol=1e-6 * np.abs(want_grad).max())


@settings(max_examples=40, deadline=None)
@given(
    metric_cases(
        max_n=24,
        max_d=6,
        dtypes=(np.float32,),
        cosine_kinds=COSINE_WELL_CONDITIONED,
        cosine_min_d=2,
        kinds=("normal", "grid", "dups", "clusters", "tiny"),
    ),
    loss_settings(),
    st.sampled_from(BACKENDS),
    st.integers(1, 24),
)
def test_float32_matches_brute_force(mc, cfg, backend, chunk_size):
    metric, case = mc
    X, labels = case.X, case.labels
    weights = np.linspace(-1.0, 2.0, len(X)) if cfg["reduction"] == "none" else None
    want, want_grad, v = reference(X, labels, weights, metric=metric, **cfg)
    assume(not near_kink(v, cfg["soft"], case.kind, 1e-4))
    got, grad = run(
        X, labels, weights, backend=backend, chunk_size=chunk_size, metric=metric, **cfg
    )
    assert got.dtype == np.float32 and grad.dtype == np.float32
    scale = np.abs(want).max(initial=0.0) + np.abs(X).max() ** (2 if metric == "sqeuclidean" else 1)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * scale + 1e-30)
    # Rounding errors scale with the gradient's terms, not with their sum,
    # which cancels to roundoff where points coincide (cosine at duplicates).
    T = oracle.triplets(X, labels, cfg["mining"], cfg["margin"], metric, cfg["fallback"])
    terms = oracle.loss_from_triplets_vectorized(
        X, T, cfg["margin"], metric, cfg["soft"], cfg["reduction"]
    )[2]
    wmax = 1.0 if weights is None else np.abs(weights).max()
    gscale = wmax * terms.max(initial=0.0) + np.abs(want_grad).max(initial=0.0) + 1e-30
    np.testing.assert_allclose(grad, want_grad, rtol=1e-3, atol=1e-4 * gscale)


@pytest.mark.parametrize("mining", MININGS)
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_torch_backend_float32_matches_rust_at_a_larger_size(mining, metric, backend):
    # a few hundred rows and several chunks, against the float64 kernels; the data are
    # chosen so that no hinge argument is within float32 rounding of its kink
    rng = np.random.default_rng(24)
    X = rng.standard_normal((200, 32)).astype(np.float32)
    labels = rng.integers(0, 40, 200)
    assert smallest_hinge_argument(X, labels, metric, 0.5) > 2e-5
    kw = dict(margin=0.5, mining=mining, metric=metric, reduction="mean")
    want, want_grad = tc.triplet_margin_loss(X.astype(np.float64), labels, **kw)
    got, grad = run(X, labels, backend=backend, chunk_size=64, **kw)
    np.testing.assert_allclose(got, want, rtol=2e-5)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-3, atol=1e-4 * np.abs(want_grad).max())


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mining", MININGS)
@pytest.mark.parametrize("metric", METRICS)
def test_gradcheck(backend, mining, metric):
    # continuous random points: no distance ties and no hinge at its kink
    g = torch.Generator().manual_seed(3)
    x = torch.randn(9, 3, dtype=torch.float64, generator=g, requires_grad=True)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 1])
    for reduction, soft in (("mean", False), ("none", True), ("mean_nonzero", False)):

        def f(inp: torch.Tensor) -> torch.Tensor:
            return tt.triplet_margin_loss(
                inp,
                labels,
                margin=0.3,
                mining=mining,
                metric=metric,
                soft=soft,  # noqa: B023
                reduction=reduction,  # noqa: B023
                backend=backend,
                chunk_size=4,
            )

        assert torch.autograd.gradcheck(f, (x,), eps=1e-6, atol=1e-7, rtol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_normalize_goes_through_autograd(backend):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(30, 5, dtype=torch.float64, generator=g, requires_grad=True)
    labels = torch.randint(0, 4, (30,), generator=g)
    got = tt.triplet_margin_loss(x, labels, normalize=True, backend=backend)
    (grad,) = torch.autograd.grad(got, x)
    y = x.detach().clone().requires_grad_()
    want = tt.triplet_margin_loss(torch.nn.functional.normalize(y, dim=1), labels)
    want.backward()
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(grad, y.grad, rtol=1e-10, atol=1e-12)
    # the gradient of a scale-invariant loss is orthogonal to each row
    assert float((grad * x.detach()).sum(1).abs().max()) < 1e-12


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mining", MININGS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_no_valid_triplet_gives_zero_loss_and_gradient(backend, mining, reduction):
    x = torch.randn(6, 3, requires_grad=True)
    for labels in (torch.zeros(6, dtype=torch.int64), torch.arange(6)):
        loss = tt.triplet_margin_loss(
            x, labels, mining=mining, reduction=reduction, backend=backend
        )
        assert torch.all(loss == 0)
        (grad,) = torch.autograd.grad(loss.sum(), x)
        assert torch.all(grad == 0)


@pytest.mark.parametrize("dtype", [torch.int8, torch.int16, torch.int32, torch.uint8])
def test_label_dtypes(dtype):
    x = torch.randn(20, 4, dtype=torch.float64)
    labels = torch.randint(0, 4, (20,))
    want = tt.triplet_margin_loss(x, labels)
    for backend in BACKENDS:
        got = tt.triplet_margin_loss(x, labels.to(dtype), backend=backend)
        torch.testing.assert_close(got, want, rtol=1e-12, atol=0)


def test_module_equals_functional_and_validates_early():
    x = torch.randn(24, 6, dtype=torch.float64)
    labels = torch.randint(0, 5, (24,))
    kw = dict(margin=0.3, mining="semi_hard", metric="cosine", soft=False, reduction="sum")
    mod = tt.TripletMarginLoss(**kw)
    torch.testing.assert_close(mod(x, labels), tt.triplet_margin_loss(x, labels, **kw))
    assert "semi_hard" in repr(mod)
    with pytest.raises(ValueError, match="mining"):
        tt.TripletMarginLoss(mining="hardest")
    with pytest.raises(ValueError, match="margin"):
        tt.TripletMarginLoss(margin=-1.0)
    with pytest.raises(ValueError, match="backend"):
        tt.TripletMarginLoss(backend="cuda")


def test_non_contiguous_input():
    base = torch.randn(10, 40, dtype=torch.float64)
    x = base[:, ::4].requires_grad_()  # a strided view
    labels = torch.randint(0, 3, (40,))[:10]
    for backend in BACKENDS:
        loss = tt.triplet_margin_loss(x, labels, backend=backend)
        (grad,) = torch.autograd.grad(loss, x)
        want, want_grad = tc.triplet_margin_loss(x.detach().numpy(), labels.numpy())
        assert loss.item() == pytest.approx(want, rel=1e-12)
        np.testing.assert_allclose(grad.numpy(), want_grad, rtol=1e-10, atol=1e-14)


def test_backward_through_a_retained_graph_again():
    # The first backward hands the kernel's gradient buffer to autograd (as
    # x.grad); a second one must not see that buffer altered in place.
    x = torch.randn(40, 6, dtype=torch.float64, requires_grad=True)
    labels = torch.arange(40) // 4
    want = tc.triplet_margin_loss(x.detach().numpy(), labels.numpy())[1]
    loss = tt.triplet_margin_loss(x, labels)
    loss.backward(retain_graph=True)
    np.testing.assert_array_equal(x.grad.numpy(), want)
    x.grad.mul_(-7.0)  # an in-place change of the handed-over buffer
    x.grad.zero_()
    (2.0 * loss).backward(retain_graph=True)
    np.testing.assert_array_equal(x.grad.numpy(), 2.0 * want)
    loss.backward()
    np.testing.assert_array_equal(x.grad.numpy(), 3.0 * want)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cpu_tensors_reach_the_rust_kernels_without_a_copy(monkeypatch, dtype):
    seen = []

    def spy(fn):
        def wrapped(x, *args):
            seen.append(x.__array_interface__["data"][0])
            return fn(x, *args)

        return wrapped

    for name in ("triplet_margin_loss", "batch_hard", "semi_hard"):
        monkeypatch.setattr(_rust._core, name, spy(getattr(_rust._core, name)))
    x = torch.randn(32, 8, dtype=dtype, requires_grad=True)
    labels = torch.randint(0, 4, (32,))
    tt.triplet_margin_loss(x, labels).backward()
    tt.triplet_margin_loss(x, labels, reduction="none", mining="semi_hard")
    tt.BatchHardMiner()(x, labels)
    assert seen == [x.data_ptr()] * 3


def test_a_chunk_stays_within_its_budget(monkeypatch):
    # with a tiny budget every chunk is one row; the answer does not change
    rng = np.random.default_rng(0)
    X = rng.standard_normal((50, 4))
    labels = rng.integers(0, 5, 50)
    assert _tiled.chunk_rows(10_000, 10_000, 4, None) * 10_000 * 4 <= _tiled.CHUNK_BYTES
    want = {m: run(X, labels, backend="torch", mining=m) for m in MININGS}
    monkeypatch.setattr(_tiled, "CHUNK_BYTES", 64)
    assert _tiled.chunk_rows(50, 50, 4, None) == 1
    for m in MININGS:
        got = run(X, labels, backend="torch", mining=m)
        np.testing.assert_allclose(got[0], want[m][0], rtol=1e-13)
        np.testing.assert_allclose(got[1], want[m][1], rtol=1e-11, atol=1e-14)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ties_are_settled_exactly_on_the_torch_path(monkeypatch, dtype):
    # integer points: many exactly tied distances, which the float expansion (centred on a
    # non-integer mean) cannot order; the flagged rows must be redone on exact distances
    levels = []
    keys = _tiled._Space.keys

    def counting(self, rows, level):
        levels.append(level)
        return keys(self, rows, level)

    monkeypatch.setattr(_tiled._Space, "keys", counting)
    rng = np.random.default_rng(1)
    X = rng.integers(0, 3, (80, 3)).astype(dtype)
    labels = rng.integers(0, 6, 80)
    xt, lt = torch.from_numpy(X), torch.from_numpy(labels)
    for metric in ("euclidean", "sqeuclidean"):
        res = tc.batch_hard(X, labels, metric=metric)
        a, p, n = tt.BatchHardMiner(metric, backend="torch", chunk_size=16)(xt, lt)
        keep = np.nonzero((res.pos_idx >= 0) & (res.neg_idx >= 0))[0]
        np.testing.assert_array_equal(a.numpy(), keep)
        np.testing.assert_array_equal(p.numpy(), res.pos_idx[keep])
        np.testing.assert_array_equal(n.numpy(), res.neg_idx[keep])
        for fallback in FALLBACKS:
            want = tc.semi_hard(X, labels, margin=0.5, metric=metric, fallback=fallback)
            got = tt.SemiHardMiner(0.5, metric, fallback, backend="torch", chunk_size=16)(xt, lt)
            for g, w in zip(got, want[:3], strict=True):
                np.testing.assert_array_equal(g.numpy(), w)
    assert 2 in levels


# --------------------------------------------------------------------------
# miners
# --------------------------------------------------------------------------


@st.composite
def spread_batches(draw, max_n=40):
    """Continuous points kept apart, so PML's torch.max/min have no ties to break."""
    n = draw(st.integers(2, max_n))
    d = draw(st.integers(2, 12))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    labels = rng.integers(0, draw(st.integers(1, 6)), n)
    X = rng.standard_normal((n, d))
    D = np.sqrt(((X[:, None] - X[None]) ** 2).sum(-1)) + np.eye(n)
    assume(D.min() > 1e-2)
    return X, labels


@settings(max_examples=40, deadline=None)
@given(spread_batches(), st.sampled_from(BACKENDS), st.booleans())
def test_batch_hard_miner_matches_pml(batch, backend, normalize):
    X, labels = batch
    x, lab = torch.from_numpy(X), torch.from_numpy(labels)
    # PML's default LpDistance normalises the embeddings
    distance = LpDistance(normalize_embeddings=normalize)
    pml = PMLBatchHardMiner(distance=distance)
    want = pml(x, lab)
    got = tt.BatchHardMiner(normalize=normalize, backend=backend)(x, lab)
    for g, w in zip(got, want, strict=True):
        assert g.dtype == torch.int64
        torch.testing.assert_close(g, w)


@settings(max_examples=30, deadline=None)
@given(spread_batches(), st.sampled_from([0.05, 0.2, 1.0]))
def test_pml_loss_accepts_our_miner_and_pml_migration(batch, margin):
    X, labels = batch
    x, lab = torch.tensor(X, requires_grad=True), torch.from_numpy(labels)
    # PML, default distance (normalised) and reducer (mean over non-zero losses) ...
    pml_loss = PMLTripletMarginLoss(margin=margin)
    want = pml_loss(x, lab, PMLBatchHardMiner()(x, lab))
    (want_grad,) = torch.autograd.grad(want, x)
    # ... fed our miner ...
    ours = tt.BatchHardMiner(normalize=True)(x, lab)
    got = pml_loss(x, lab, ours)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14)
    # ... and the two-line migration to our loss
    loss = tt.TripletMarginLoss(margin=margin, normalize=True, reduction="mean_nonzero")
    got = loss(x, lab)
    (grad,) = torch.autograd.grad(got, x)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    # PML's gradient passes through torch.cdist, whose float64 matmul expansion
    # (used above 25 rows) loses ~1e-8 relative near coincident points
    # (hypothesis found 1.76e-8); ours comes from coordinate differences
    torch.testing.assert_close(grad, want_grad, rtol=1e-7, atol=1e-10)
    # our loss also scores a PML miner's triplets
    torch.testing.assert_close(loss(x, lab, PMLBatchHardMiner()(x, lab)), want, rtol=1e-10, atol=0)


@pytest.mark.parametrize("d", [1, 3, 16, 17, 37, 128, 130])
def test_torch_path_exact_keys_have_the_rust_bits(d):
    # Far from the origin the float64 sums round; both paths must round alike.
    from tripletcore.distance import pair_distances
    from tripletcore.torch._tiled import _sum_squares

    rng = np.random.default_rng(d)
    a = rng.standard_normal((200, d)) * 1e8 + 1e9
    b = rng.standard_normal((200, d)) * 1e8
    rows = np.arange(200)
    want = pair_distances(a, b, rows, rows, "sqeuclidean")
    np.testing.assert_array_equal(_sum_squares(torch.from_numpy(a - b)).numpy(), want)


def test_reference_set_near_tie_far_from_the_origin():
    # A hypothesis case: squared distances ~4e16 (above 2**53) 7 apart; the
    # torch path summed them in its own order and picked the farther negative.
    x = np.array([[-99999998.0, 1e8, 1e8]])
    y = np.array(
        [
            [-99999998, -99999999, 100000001],
            [-1e8, -99999999, 100000002],
            [-1e8, -99999999, 100000002],
            [-99999999, -1e8, 100000002],
            [-99999998, -99999999, 100000001],
        ]
    )
    labels, ref_labels = np.array([2]), np.array([2, 1, 1, 2, 3])
    want = tc.batch_hard(x, labels, Y=y, ref_labels=ref_labels)
    assert want.neg_idx.tolist() == [4]  # 39999999600000002 < 39999999600000009
    for backend in BACKENDS:
        _, p, n = tt.BatchHardMiner(backend=backend)(
            *(torch.from_numpy(v) for v in (x, labels, y, ref_labels))
        )
        assert (p.tolist(), n.tolist()) == (want.pos_idx.tolist(), want.neg_idx.tolist())


@settings(max_examples=40, deadline=None)
@given(
    metric_cases(max_n=40, max_d=6, cosine_kinds=COSINE_WELL_CONDITIONED, cosine_min_d=2),
    st.integers(1, 30),
    st.integers(0, 2**32 - 1),
    st.sampled_from(BACKENDS),
)
def test_batch_hard_miner_with_a_reference_set(mc, n_ref, seed, backend):
    metric, case = mc
    rng = np.random.default_rng(seed)
    X = case.X
    Y = make_points(rng, n_ref, case.d, X.dtype.type, case.kind)
    if metric == "cosine":
        Y = fix_zero_rows(Y)
    labels = case.labels.astype(np.int64) % 4
    ref_labels = rng.integers(0, 5, n_ref)
    res = tc.batch_hard(X, labels, Y=Y, ref_labels=ref_labels, metric=metric)
    a, p, n = tt.BatchHardMiner(metric, backend=backend, chunk_size=7)(
        torch.from_numpy(X),
        torch.from_numpy(labels),
        torch.from_numpy(Y),
        torch.from_numpy(ref_labels),
    )
    keep = np.nonzero((res.pos_idx >= 0) & (res.neg_idx >= 0))[0]
    np.testing.assert_array_equal(a.numpy(), keep)
    np.testing.assert_array_equal(p.numpy(), res.pos_idx[keep])
    np.testing.assert_array_equal(n.numpy(), res.neg_idx[keep])


@settings(max_examples=60, deadline=None)
@given(
    metric_cases(max_n=40, max_d=6, cosine_kinds=COSINE_WELL_CONDITIONED, cosine_min_d=2),
    st.sampled_from([0.0, 0.1, 0.5, float("inf")]),
    st.sampled_from(FALLBACKS),
    st.sampled_from(BACKENDS),
    st.integers(1, 40),
)
def test_semi_hard_miner_matches_numpy_api(mc, margin, fallback, backend, chunk_size):
    metric, case = mc
    X, labels = case.X, case.labels
    want = tc.semi_hard(X, labels, margin=margin, metric=metric, fallback=fallback)
    miner = tt.SemiHardMiner(margin, metric, fallback, backend=backend, chunk_size=chunk_size)
    got = miner(torch.from_numpy(X), torch.from_numpy(labels.astype(np.int64)))
    for g, w in zip(got, want[:3], strict=True):
        np.testing.assert_array_equal(g.numpy(), w)


@settings(max_examples=60, deadline=None)
@given(
    metric_cases(max_n=60, max_d=8, cosine_kinds=COSINE_WELL_CONDITIONED, cosine_min_d=2),
    st.integers(1, 60),
)
def test_batch_hard_miner_torch_backend_matches_rust(mc, chunk_size):
    metric, case = mc
    x = torch.from_numpy(case.X)
    lab = torch.from_numpy(case.labels.astype(np.int64))
    want = tt.BatchHardMiner(metric, backend="rust")(x, lab)
    got = tt.BatchHardMiner(metric, backend="torch", chunk_size=chunk_size)(x, lab)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w)


# --------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------

X0 = torch.randn(6, 3)
L0 = torch.tensor([0, 0, 1, 1, 2, 2])


@pytest.mark.parametrize(
    ("embeddings", "labels", "kw", "error", "match"),
    [
        (X0.numpy(), L0, {}, TypeError, "torch.Tensor"),
        (X0, L0.numpy(), {}, TypeError, "torch.Tensor"),
        (X0[0], L0, {}, ValueError, "2-D"),
        (X0[:0], L0[:0], {}, ValueError, "empty"),
        (X0[:, :0], L0, {}, ValueError, "empty"),
        (X0.to(torch.int64), L0, {}, TypeError, "floating-point"),
        (X0.half(), L0, {}, TypeError, "CUDA only"),
        (X0.bfloat16(), L0, {}, TypeError, "CUDA only"),
        (X0, L0.float(), {}, TypeError, "integer"),
        (X0, L0.bool(), {}, TypeError, "integer"),
        (X0, L0[None], {}, ValueError, "1-D"),
        (X0, L0[:5], {}, ValueError, "5 entries"),
        (X0, L0.to("meta"), {}, ValueError, "device"),
        (torch.full((6, 3), float("nan")), L0, {}, ValueError, "embeddings contains NaN"),
        (X0.index_fill(0, torch.tensor([2]), float("inf")), L0, {}, ValueError, "infinite"),
        (X0, L0, {"mining": "hard"}, ValueError, "mining"),
        (X0, L0, {"metric": "l1"}, ValueError, "metric"),
        (X0, L0, {"reduction": "avg"}, ValueError, "reduction"),
        (X0, L0, {"fallback": "x"}, ValueError, "fallback"),
        (X0, L0, {"backend": "cuda"}, ValueError, "backend"),
        (X0, L0, {"margin": -0.1}, ValueError, "margin"),
        (X0, L0, {"margin": float("nan")}, ValueError, "margin"),
        (X0, L0, {"margin": "0.2"}, TypeError, "margin"),
        (X0, L0, {"chunk_size": 0, "backend": "torch"}, ValueError, "chunk_size"),
        (X0, L0, {"distributed": True}, RuntimeError, "init_process_group"),
    ],
)
def test_bad_input(embeddings, labels, kw, error, match):
    with pytest.raises(error, match=match):
        tt.triplet_margin_loss(embeddings, labels, **kw)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mining", MININGS)
@pytest.mark.parametrize("reduction", ("mean", "none"))
@pytest.mark.parametrize("bad", (float("nan"), float("inf"), -float("inf")))
def test_non_finite_embeddings_are_refused_on_every_path(backend, mining, reduction, bad):
    # the Rust loss path leaves the check to the kernel; the message is the torch layer's
    x = X0.clone()
    x[3, 1] = bad
    with pytest.raises(ValueError, match="^embeddings contains NaN or infinite values$"):
        tt.triplet_margin_loss(x, L0, mining=mining, reduction=reduction, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_cosine_zero_row(backend):
    x = torch.randn(6, 3)
    x[4] = 0
    with pytest.raises(ValueError, match="norm 0"):
        tt.triplet_margin_loss(x, L0, metric="cosine", backend=backend)


def test_miner_and_indices_errors():
    miner = tt.BatchHardMiner()
    with pytest.raises(ValueError, match="together"):
        miner(X0, L0, ref_emb=X0)
    with pytest.raises(TypeError, match="ref_emb"):
        miner(X0, L0, X0.double(), L0)
    with pytest.raises(ValueError, match="features"):
        miner(X0, L0, torch.randn(6, 4), L0)
    with pytest.raises(ValueError, match="ref_labels"):
        miner(X0, L0, X0, L0[:4])
    loss = tt.TripletMarginLoss()
    with pytest.raises(ValueError, match="indices_tuple"):
        loss(X0, L0, (torch.tensor([0]), torch.tensor([1])))
    with pytest.raises(ValueError, match="outside"):
        loss(X0, L0, (torch.tensor([0]), torch.tensor([1]), torch.tensor([6])))
    with pytest.raises(TypeError, match="int64"):
        loss(X0, L0, (torch.tensor([0.0]), torch.tensor([1]), torch.tensor([2])))


# --------------------------------------------------------------------------
# CUDA (skipped without a GPU)
# --------------------------------------------------------------------------

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@cuda
@pytest.mark.parametrize("mining", MININGS)
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cuda_matches_cpu(mining, metric, reduction):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((500, 32))
    labels = rng.integers(0, 60, 500)
    kw = dict(margin=0.3, mining=mining, metric=metric, reduction=reduction)
    for dtype, rtol in ((torch.float64, 1e-9), (torch.float32, 1e-4)):
        cpu = torch.tensor(X, dtype=dtype, requires_grad=True)
        want = tt.triplet_margin_loss(cpu, torch.from_numpy(labels), **kw)
        (want_grad,) = torch.autograd.grad(want.sum(), cpu)
        gpu = cpu.detach().cuda().requires_grad_()
        got = tt.triplet_margin_loss(gpu, torch.from_numpy(labels).cuda(), **kw)
        (grad,) = torch.autograd.grad(got.sum(), gpu)
        assert got.device.type == "cuda" and grad.device.type == "cuda"
        torch.testing.assert_close(got.cpu(), want, rtol=rtol, atol=rtol)
        scale = float(want_grad.abs().max())
        torch.testing.assert_close(grad.cpu(), want_grad, rtol=10 * rtol, atol=rtol * scale)


@cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("mining", MININGS)
def test_cuda_half_precision(dtype, mining):
    x = torch.randn(400, 64, device="cuda").to(dtype).requires_grad_()
    labels = torch.randint(0, 50, (400,), device="cuda")
    got = tt.triplet_margin_loss(x, labels, mining=mining)
    assert got.dtype == torch.float32
    got.backward()
    assert x.grad is not None and x.grad.dtype == dtype
    want = tt.triplet_margin_loss(x.detach().float().cpu(), labels.cpu(), mining=mining)
    torch.testing.assert_close(got.cpu(), want, rtol=1e-4, atol=1e-4)


@cuda
def test_cuda_memory_stays_below_the_full_matrix():
    n, d = 30_000, 64
    x = torch.randn(n, d, device="cuda", requires_grad=True)
    labels = torch.randint(0, n // 4, (n,), device="cuda")
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    tt.triplet_margin_loss(x, labels).backward()
    peak = torch.cuda.max_memory_allocated() - base
    assert peak < 0.5 * n * n * 4  # well under one float32 N x N matrix (3.6 GB)


def test_the_tiled_memory_benchmark_runs(tmp_path):
    # benches/bench_tiled_memory.py at a small N: its report holds the step and the peak
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benches" / "bench_tiled_memory.py"
    spec = importlib.util.spec_from_file_location("bench_tiled_memory", path)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "report.md"
    report = bench.main(["--n", "300", "--out", str(out)])
    assert out.read_text() == report
    assert "N = 300" in report and "peak memory" in report and "step (mine" in report
