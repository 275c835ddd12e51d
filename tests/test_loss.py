import numpy as np
import oracle
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from strategies import COSINE_WELL_CONDITIONED, GRID_KINDS, metric_cases

import tripletcore as tc

MARGINS = [0.0, 0.1, 0.2, 0.5, 1.0, 2.0]

# loss: |got - want| <= LOSS_RTOL * (|want| + sum over triplets of (d_ap + d_an + margin) * scale)
# grad: |got - want| <= GRAD_RTOL * (sum of |terms| added into that entry)
# kink: a hinge pre-activation v with |v| <= KINK * (d_ap + d_an + margin) may fall on
#       either side of 0 after rounding: such a triplet may or may not count as non-zero
#       (mean_nonzero), and its gradient term may or may not be there, so the tolerance
#       of the gradient grows by the size of its terms.
TOL = {
    np.dtype(np.float32): {"loss": 2e-5, "grad": 1e-4, "kink": 1e-5},
    np.dtype(np.float64): {"loss": 1e-11, "grad": 1e-11, "kink": 1e-11},
}


def check_loss(X, labels, *, margin, mining, metric, soft, reduction, fallback, kind, err=""):
    """Library vs oracle.  Returns (got_loss, got_grad, info) for further checks."""
    kw = dict(
        margin=margin,
        mining=mining,
        metric=metric,
        soft=soft,
        reduction=reduction,
        fallback=fallback,
    )
    got, grad = tc.triplet_margin_loss(X, labels, **kw)
    cdt = np.dtype(np.float32) if X.dtype == np.float32 else np.dtype(np.float64)
    tol = TOL[cdt]
    want, wgrad, info = oracle.triplet_margin_loss(X, labels, **kw)
    n = X.shape[0]
    assert isinstance(grad, np.ndarray) and grad.shape == X.shape and grad.dtype == cdt, (
        grad.shape,
        grad.dtype,
    )
    assert np.all(np.isfinite(grad)), f"non-finite gradient {err}"

    T = info["triplets"]
    losses = info["losses"]
    m = 0.0 if soft else margin
    # error scale of each triplet's loss; a cosine distance 1 - cos is accurate to a few
    # units of rounding of 1 (not of its own size), whence the + 2
    s_t = np.abs(info["dap"]) + np.abs(info["dan"]) + m + (2.0 if metric == "cosine" else 0.0)
    v = info["v"]
    if soft:
        # softplus underflows to 0 for very negative v (float32: v < -103)
        near = losses < 1e-30
        amb_count = near
    else:
        near = np.abs(v) <= tol["kink"] * s_t
        exact_zero = (v == 0.0) & (kind in GRID_KINDS)  # integer differences: v is exact
        amb_count = near & ~exact_zero

    scale_used = info["scale"]
    if reduction == "none":
        assert isinstance(got, np.ndarray) and got.shape == (n,), type(got)
        assert np.all(np.isfinite(got))
        anchor_scale = np.zeros(n)
        np.add.at(anchor_scale, T[:, 0], s_t)
        allowed = tol["loss"] * (np.abs(want) + anchor_scale)
        bad = np.nonzero(np.abs(got - want) > allowed)[0]
        assert len(bad) == 0, (
            f"per-anchor loss at {bad[:5]}: got {got[bad[:5]]} want {want[bad[:5]]} {err}"
        )
        clear = want == 0
        clear[T[amb_count, 0]] = False  # anchors of triplets at a kink may be tiny non-zero
        assert np.all(got[clear] == 0), f"anchors without loss must give exactly 0 {err}"
    else:
        assert type(got) is float, f"loss is {type(got)}, not a Python float"
        assert np.isfinite(got), err
        if reduction == "mean_nonzero":
            # the number of non-zero losses is known up to the ambiguous triplets
            S = float(np.sum(losses))
            c_lo = info["nonzero"] - int(np.sum(amb_count & (losses > 0)))
            c_hi = info["nonzero"] + int(np.sum(amb_count & (losses == 0)))
            options = [(0, 0.0)] if c_lo == 0 else []
            options += [(c, S / c) for c in range(max(c_lo, 1), c_hi + 1)]
            fits = [
                c
                for c, w in options
                if abs(got - w)
                <= tol["loss"] * (abs(w) + float(np.sum(s_t)) / max(c, 1)) + (c == 0) * S
            ]
            assert fits, f"mean_nonzero loss {got!r}: want one of {options[:5]} (T={len(T)}) {err}"
            c_used = info["nonzero"] if info["nonzero"] in fits else fits[0]
            scale_used = 1.0 / c_used if c_used else 0.0
            if c_hi == 0 or (c_lo == c_hi and want == 0.0):
                assert got == 0.0, f"loss {got!r} want exactly 0 {err}"
        else:
            allowed = tol["loss"] * (abs(want) + info["scale"] * float(np.sum(s_t)))
            assert abs(got - want) <= allowed, f"loss {got!r} want {want!r} (T={len(T)}) {err}"
            if want == 0.0 and not np.any(amb_count):
                assert got == 0.0, f"loss {got!r} want exactly 0 {err}"

    # gradient, rescaled to the count the library evidently used for mean_nonzero
    ratio = scale_used / info["scale"] if info["scale"] else 0.0
    want_grad = wgrad * ratio
    allowed = tol["grad"] * info["grad_scale"] * ratio
    if np.any(near):
        allowed = allowed + oracle.triplet_grad_abs_scale(
            X, metric, T[near], np.ones(int(near.sum())) * scale_used
        )
    excess = np.abs(grad.astype(np.float64) - want_grad) - allowed
    if np.any(excess > 0):
        i, j = np.unravel_index(np.argmax(excess), excess.shape)
        raise AssertionError(
            f"gradient [{i},{j}]: got {grad[i, j]!r} want {want_grad[i, j]!r} "
            f"(allowed {allowed[i, j]!r}), {int(np.sum(excess > 0))} bad entries {err}"
        )
    return got, grad, info


@settings(max_examples=400, deadline=None)
@given(
    metric_cases(max_n=40, max_d=12, cosine_kinds=COSINE_WELL_CONDITIONED, cosine_min_d=2),
    st.sampled_from(oracle.MININGS),
    st.sampled_from(oracle.REDUCTIONS),
    st.booleans(),
    st.sampled_from(MARGINS),
    st.sampled_from(oracle.FALLBACKS),
)
def test_loss_matches_oracle(mc, mining, reduction, soft, margin, fallback):
    metric, case = mc
    check_loss(
        case.X,
        case.labels,
        margin=margin,
        mining=mining,
        metric=metric,
        soft=soft,
        reduction=reduction,
        fallback=fallback,
        kind=case.kind,
        err=repr(case),
    )


@settings(max_examples=80, deadline=None)
@given(
    st.integers(2, 12),
    st.integers(1, 5),
    st.integers(1, 4),
    st.integers(0, 2**32 - 1),
    st.sampled_from(oracle.METRICS),
    st.sampled_from(oracle.MININGS),
    st.sampled_from(oracle.REDUCTIONS),
    st.booleans(),
    st.sampled_from([0.1, 0.3, 1.0]),
    st.sampled_from(oracle.FALLBACKS),
)
def test_grad_matches_finite_differences(
    n, d, k, seed, metric, mining, reduction, soft, margin, fallback
):
    """Central differences of the float64 oracle loss (re-mining at every point)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    labels = rng.integers(0, k, n)
    D = oracle.cdist(X, None, metric)
    gap = 1e-3
    # stay away from ties (mining would switch) and kinks / window edges
    for a in range(n):
        row = np.sort(np.delete(D[a], a))
        assume(len(row) < 2 or np.min(np.diff(row)) > gap)
        diffs = D[a][:, None] - D[a][None, :]  # d(a,i) - d(a,j)
        assume(np.all(np.abs(np.abs(diffs[np.abs(diffs) > gap]) - margin) > gap))
    kw = dict(
        margin=margin,
        mining=mining,
        metric=metric,
        soft=soft,
        reduction=reduction,
        fallback=fallback,
    )
    _, _, info = oracle.triplet_margin_loss(X, labels, **kw)
    assume(soft or np.all(np.abs(info["v"]) > gap))
    _, grad = tc.triplet_margin_loss(X, labels, **kw)
    h = 1e-6
    fd = np.zeros_like(X)
    for i in range(n):
        for j in range(d):
            Xp, Xm = X.copy(), X.copy()
            Xp[i, j] += h
            Xm[i, j] -= h
            fd[i, j] = (
                oracle.loss_value(Xp, labels, **kw) - oracle.loss_value(Xm, labels, **kw)
            ) / (2 * h)
    scale = 1.0 + np.max(np.abs(fd))
    np.testing.assert_allclose(grad, fd, rtol=0, atol=1e-6 * scale)
    _, wgrad, _ = oracle.triplet_margin_loss(X, labels, **kw)
    np.testing.assert_allclose(wgrad, fd, rtol=0, atol=1e-6 * scale)  # the oracle itself


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mining", oracle.MININGS)
@pytest.mark.parametrize("reduction", oracle.REDUCTIONS)
@pytest.mark.parametrize("soft", [False, True])
def test_no_valid_triplet_gives_zero_loss_and_gradient(dtype, mining, reduction, soft):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((9, 4)).astype(dtype)
    for labels in (np.arange(9), np.full(9, 3), np.array([5])):  # no positive / no negative / N=1
        Xi = X[: len(labels)]
        loss, grad = tc.triplet_margin_loss(
            Xi, labels, mining=mining, reduction=reduction, soft=soft
        )
        if reduction == "none":
            assert isinstance(loss, np.ndarray)
            np.testing.assert_array_equal(loss, np.zeros(len(labels)))
        else:
            assert type(loss) is float and loss == 0.0
        assert grad.dtype == dtype and grad.shape == Xi.shape
        np.testing.assert_array_equal(grad, np.zeros_like(Xi))


def test_loss_defaults_and_hand_example():
    # 1-D: class 0 at 0 and 1, class 1 at 1.5 and 4; margin 0.2, batch_hard, euclidean, mean
    X = np.array([[0.0], [1.0], [1.5], [4.0]])
    labels = np.array([0, 0, 1, 1])
    # a=0: p=1 (1), n=2 (1.5): [1 - 1.5 + .2]_+ = 0
    # a=1: p=0 (1), n=2 (0.5): 0.7
    # a=2: p=3 (2.5), n=1 (0.5): 2.2
    # a=3: p=2 (2.5), n=1 (3): 0
    loss, grad = tc.triplet_margin_loss(X, labels)
    assert loss == pytest.approx((0.7 + 2.2) / 4, rel=1e-15)
    # a=1 term d(1,0) - d(1,2): x1 gets (+1) - (-1) = 2, x0 gets -1, x2 gets -1
    # a=2 term d(2,3) - d(2,1): x2 gets (-1) - (+1) = -2, x3 gets +1, x1 gets +1;  all / 4
    np.testing.assert_allclose(grad[:, 0], np.array([-1, 2 + 1, -1 - 2, 1]) / 4, rtol=1e-15)
    loss, _ = tc.triplet_margin_loss(X, labels, reduction="sum")
    assert loss == pytest.approx(2.9, rel=1e-15)
    loss, _ = tc.triplet_margin_loss(X, labels, reduction="mean_nonzero")
    assert loss == pytest.approx(1.45, rel=1e-15)
    loss, _ = tc.triplet_margin_loss(X, labels, reduction="none")
    np.testing.assert_allclose(loss, [0, 0.7, 2.2, 0], rtol=1e-15, atol=0)


@pytest.mark.parametrize("mining", ["batch_hard", "batch_all"])
@pytest.mark.parametrize("metric", oracle.METRICS)
def test_soft_ignores_margin(mining, metric):
    rng = np.random.default_rng(2)
    X = rng.standard_normal((20, 5))
    labels = rng.integers(0, 3, 20)
    a = tc.triplet_margin_loss(X, labels, margin=0.0, mining=mining, metric=metric, soft=True)
    b = tc.triplet_margin_loss(X, labels, margin=3.0, mining=mining, metric=metric, soft=True)
    assert a[0] == b[0]
    np.testing.assert_array_equal(a[1], b[1])


def test_gradient_is_zero_at_zero_euclidean_distance():
    # anchor 0 and its positive 1 coincide; the positive term's gradient is taken as 0
    X = np.array([[0.0, 0.0], [0.0, 0.0], [0.5, 0.0]])
    labels = np.array([0, 0, 1])
    loss, grad = tc.triplet_margin_loss(X, labels, margin=1.0, reduction="sum")
    # a=0: p=1 (0), n=2 (0.5): 0.5 ; a=1: p=0 (0), n=2 (0.5): 0.5 ; a=2: no positive
    assert loss == pytest.approx(1.0, rel=1e-15)
    # d(0,2) and d(1,2) each with weight -1: d/dx0 (-|x0 - x2|) = (x2 - x0)/|x2 - x0| = +e_x
    np.testing.assert_allclose(grad, [[1.0, 0.0], [1.0, 0.0], [-2.0, 0.0]], rtol=1e-15, atol=0)


# ---------------------------------------------------------------------------
# batch_all on a few hundred points (vectorised oracle): ties, duplicates, kinks
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    ("kind", "metric", "margin", "soft"),
    [
        ("normal", "euclidean", 0.3, False),
        ("normal", "cosine", 0.1, False),
        ("normal", "euclidean", 0.0, True),
        ("grid", "sqeuclidean", 1.0, False),  # exact ties and exact kinks (v == 0)
        ("grid", "euclidean", 0.5, False),
        ("dups", "euclidean", 0.2, False),
    ],
)
def test_batch_all_medium_vs_vectorized_oracle(dtype, kind, metric, margin, soft):
    rng = np.random.default_rng(17)
    n, d = 400, 8
    if kind == "normal":
        X = rng.standard_normal((n, d))
    elif kind == "grid":
        X = rng.integers(0, 3, (n, d)).astype(np.float64)
    else:
        X = rng.standard_normal((60, d))[rng.integers(0, 60, n)]
    X = X.astype(dtype)
    labels = rng.integers(0, 12, n)
    tol = TOL[np.dtype(dtype)]
    for reduction in oracle.REDUCTIONS:
        got, grad = tc.triplet_margin_loss(
            X,
            labels,
            margin=margin,
            mining="batch_all",
            metric=metric,
            soft=soft,
            reduction=reduction,
        )
        want, wgrad, info = oracle.batch_all_loss_vectorized(
            X, labels, margin, metric, soft, reduction, kink_tol=tol["kink"], exact=(kind == "grid")
        )
        scale_used = info["scale"]
        if reduction == "none":
            np.testing.assert_array_less(
                np.abs(got - want), tol["loss"] * (np.abs(want) + info["per_anchor_scale"]) + 1e-300
            )
        elif reduction == "mean_nonzero":
            S, total = info["loss_sum"], info["per_anchor_scale"].sum()
            fits = [
                c
                for c in range(max(info["c_lo"], 1), info["c_hi"] + 1)
                if abs(got - S / c) <= tol["loss"] * (S + total) / c
            ]
            assert fits, (reduction, got, want, info["c_lo"], info["c_hi"])
            c_used = info["nonzero"] if info["nonzero"] in fits else fits[0]
            scale_used = 1.0 / c_used
        else:
            allowed = tol["loss"] * (abs(want) + info["scale"] * info["per_anchor_scale"].sum())
            assert abs(got - want) <= allowed, (reduction, got, want)
        ratio = scale_used / info["scale"]
        allowed = (tol["grad"] * info["grad_scale"] + info["grad_amb"]) * ratio
        excess = np.abs(grad.astype(np.float64) - wgrad * ratio) - allowed
        assert np.all(excess <= 0), (reduction, np.max(excess), int(np.sum(excess > 0)))


@pytest.mark.parametrize("mining", oracle.MININGS)
@pytest.mark.parametrize("metric", ["euclidean", "sqeuclidean"])
@pytest.mark.parametrize(("dtype", "offset"), [(np.float64, 1e8), (np.float32, 1e4)])
def test_translation_invariance_far_from_origin(mining, metric, dtype, offset):
    """Loss and gradient of X + c equal those of X (c exactly representable shift).

    The coordinates are multiples of a power of two so that X + c is exact: any difference
    beyond rounding comes from computing far from the origin (cancellation).
    """
    rng = np.random.default_rng(99)
    step = 2.0**-20 if dtype == np.float64 else 2.0**-10
    X = (np.round(rng.standard_normal((40, 6)) / step) * step).astype(dtype)
    Xc = (X.astype(np.float64) + offset).astype(dtype)
    assert np.array_equal(Xc.astype(np.float64) - offset, X.astype(np.float64))  # exact shift
    labels = rng.integers(0, 4, 40)
    kw = dict(margin=0.3, mining=mining, metric=metric, reduction="sum")
    loss0, grad0 = tc.triplet_margin_loss(X, labels, **kw)
    loss1, grad1 = tc.triplet_margin_loss(Xc, labels, **kw)
    _, want, info = oracle.triplet_margin_loss(X, labels, **kw)
    rtol = TOL[np.dtype(dtype)]["grad"]
    assert loss1 == pytest.approx(loss0, rel=TOL[np.dtype(dtype)]["loss"])
    for name, grad in (("at origin", grad0), ("shifted", grad1)):
        err = np.abs(grad.astype(np.float64) - want) / (info["grad_scale"] + 1e-300)
        assert np.max(err) <= rtol, f"{name}: gradient relative error {np.max(err):.3g}"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("metric", oracle.METRICS)
@pytest.mark.parametrize(("mining", "n"), [("batch_hard", 3000), ("semi_hard", 400)])
def test_mined_loss_large_vs_vectorized_oracle(dtype, metric, mining, n):
    rng = np.random.default_rng(23)
    d = 16
    X = rng.standard_normal((n, d)).astype(dtype)
    labels = rng.integers(0, 30 if mining == "batch_hard" else 6, n)
    margin = 0.3
    if mining == "batch_hard":
        pi, _, ni, _, _ = oracle.batch_hard_vectorized(X, labels, metric)
        keep = (pi >= 0) & (ni >= 0)
        T = np.stack([np.nonzero(keep)[0], pi[keep], ni[keep]], axis=1)
    else:
        a, p, q, _, _ = oracle.semi_hard_vectorized(X, labels, margin, metric, "hardest")
        T = np.stack([a, p, q], axis=1)
    tol = TOL[np.dtype(dtype)]
    for soft in (False, True):
        for reduction in oracle.REDUCTIONS:
            got, grad = tc.triplet_margin_loss(
                X,
                labels,
                margin=margin,
                mining=mining,
                metric=metric,
                soft=soft,
                reduction=reduction,
            )
            want, wgrad, gscale, v = oracle.loss_from_triplets_vectorized(
                X, T, margin, metric, soft, reduction
            )
            # fixed data: verify that no triplet sits at a hinge kink (so nothing is ambiguous)
            assert soft or np.min(np.abs(v)) > 1e-4
            np.testing.assert_allclose(got, want, rtol=tol["loss"] * 10, atol=0)
            excess = np.abs(grad.astype(np.float64) - wgrad) - tol["grad"] * gscale
            assert np.all(excess <= 0), (soft, reduction, np.max(excess), int(np.sum(excess > 0)))


@pytest.mark.parametrize(
    ("dtype", "k"),
    [
        (np.float32, 40),
        (np.float32, 70),
        (np.float32, -70),
        (np.float64, 400),
        (np.float64, 600),
        (np.float64, -600),
    ],
)
@pytest.mark.parametrize("mining", oracle.MININGS)
def test_loss_extreme_scale_euclidean(dtype, k, mining):
    """X -> 2^-k X with margin -> 2^-k margin: the loss scales by 2^-k, the gradient
    (unit vectors) is unchanged.  k > 0 tiny points, k < 0 huge ones; distances stay
    normal numbers of the dtype, their squares do not."""
    rng = np.random.default_rng(abs(k) + 1)
    Z = rng.standard_normal((40, 5)).astype(dtype)
    labels = rng.integers(0, 4, 40)
    X = Z * dtype(2.0**-k)
    for reduction in ("sum", "mean_nonzero"):
        l0, g0 = tc.triplet_margin_loss(Z, labels, margin=0.5, mining=mining, reduction=reduction)
        l1, g1 = tc.triplet_margin_loss(
            X, labels, margin=0.5 * 2.0**-k, mining=mining, reduction=reduction
        )
        assert l0 > 0
        tol = TOL[np.dtype(dtype)]
        assert l1 == pytest.approx(l0 * 2.0**-k, rel=tol["loss"] * 10), (reduction, l1, l0)
        np.testing.assert_allclose(g1, g0, rtol=tol["grad"], atol=tol["grad"] * np.abs(g0).max())
