"""Bad input: the error type, and a message that names the offending argument."""

import numpy as np
import pytest

import tripletcore as tc
from tripletcore import _core

RNG = np.random.default_rng(0)
X0 = RNG.standard_normal((6, 3))
L0 = np.array([0, 0, 1, 1, 2, 2])


def call(fn, X=X0, labels=L0, **kw):
    """Call one public function with (X, labels) and the keyword arguments it accepts."""
    if fn == "cdist":
        return tc.cdist(X, **kw)
    if fn == "batch_hard":
        return tc.batch_hard(X, labels, **kw)
    if fn == "semi_hard":
        return tc.semi_hard(X, labels, **kw)
    if fn == "loss":
        return tc.triplet_margin_loss(X, labels, **kw)
    raise AssertionError(fn)


ALL = ["cdist", "batch_hard", "semi_hard", "loss"]
WITH_LABELS = ["batch_hard", "semi_hard", "loss"]
WITH_Y = ["cdist", "batch_hard"]
WITH_MARGIN = ["semi_hard", "loss"]

# regexes that name an argument as a word (so "X" does not match inside "max")
NAME = {
    "X": r"(?<![A-Za-z_])X(?![A-Za-z_])",
    "Y": r"(?<![A-Za-z_])Y(?![A-Za-z_])",
    "labels": r"(?<![A-Za-z_])labels",
    "ref_labels": r"ref_labels",
    "metric": r"metric",
    "mining": r"mining",
    "reduction": r"reduction",
    "fallback": r"fallback",
    "margin": r"margin",
}


@pytest.mark.parametrize("fn", ALL)
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nonfinite_X(fn, value, dtype):
    X = X0.astype(dtype)
    X[2, 1] = value
    with pytest.raises(ValueError, match=NAME["X"]):
        call(fn, X)
    # also as the very first and very last entry
    X = X0.astype(dtype)
    X[0, 0] = value
    with pytest.raises(ValueError, match=NAME["X"]):
        call(fn, X)
    X = X0.astype(dtype)
    X[-1, -1] = value
    with pytest.raises(ValueError, match=NAME["X"]):
        call(fn, X)


@pytest.mark.parametrize("fn", WITH_Y)
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_nonfinite_Y(fn, value):
    Y = RNG.standard_normal((4, 3))
    Y[3, 2] = value
    kw = {"Y": Y} if fn == "cdist" else {"Y": Y, "ref_labels": np.array([0, 1, 2, 3])}
    with pytest.raises(ValueError, match=NAME["Y"]):
        call(fn, **kw)


def test_nonfinite_large_X_detected():
    # a NaN deep inside a large array (beyond any first tile / chunk)
    X = RNG.standard_normal((3000, 17))
    X[2999, 16] = np.nan
    with pytest.raises(ValueError, match=NAME["X"]):
        tc.cdist(X)
    with pytest.raises(ValueError, match=NAME["X"]):
        tc.batch_hard(X, np.arange(3000) % 7)


@pytest.mark.parametrize("fn", ALL)
@pytest.mark.parametrize("shape", [(6,), (6, 3, 1), (1, 6, 3)])
def test_X_wrong_ndim(fn, shape):
    X = RNG.standard_normal(shape)
    with pytest.raises(ValueError, match=NAME["X"]):
        call(fn, X)


@pytest.mark.parametrize("fn", ALL)
def test_X_scalar(fn):
    with pytest.raises((ValueError, TypeError), match=NAME["X"]):
        call(fn, np.float64(1.0))


@pytest.mark.parametrize("fn", ALL)
@pytest.mark.parametrize("shape", [(0, 3), (6, 0), (0, 0)])
def test_X_empty(fn, shape):
    X = np.zeros(shape)
    labels = np.zeros(shape[0], dtype=np.int64)
    with pytest.raises(ValueError, match=NAME["X"]):
        call(fn, X, labels)


@pytest.mark.parametrize("fn", WITH_Y)
@pytest.mark.parametrize("shape", [(0, 3), (4, 0), (3,), (2, 2, 3)])
def test_Y_bad_shape(fn, shape):
    Y = np.zeros(shape)
    kw = {"Y": Y} if fn == "cdist" else {"Y": Y, "ref_labels": np.zeros(shape[0], dtype=np.int64)}
    with pytest.raises(ValueError, match=NAME["Y"]):
        call(fn, **kw)


@pytest.mark.parametrize("fn", WITH_Y)
def test_X_Y_feature_mismatch(fn):
    Y = RNG.standard_normal((4, 5))
    kw = {"Y": Y} if fn == "cdist" else {"Y": Y, "ref_labels": np.arange(4)}
    with pytest.raises(ValueError, match=NAME["Y"]):
        call(fn, **kw)


@pytest.mark.parametrize("fn", WITH_LABELS)
@pytest.mark.parametrize("n", [0, 5, 7, 12])
def test_labels_length_mismatch(fn, n):
    with pytest.raises(ValueError, match=NAME["labels"]):
        call(fn, labels=np.zeros(n, dtype=np.int64))


@pytest.mark.parametrize("fn", WITH_LABELS)
def test_labels_wrong_ndim(fn):
    with pytest.raises(ValueError, match=NAME["labels"]):
        call(fn, labels=L0.reshape(6, 1))
    with pytest.raises(ValueError, match=NAME["labels"]):
        call(fn, labels=L0.reshape(2, 3))


@pytest.mark.parametrize("fn", WITH_LABELS)
@pytest.mark.parametrize(
    "labels",
    [
        L0.astype(np.float64),
        L0.astype(np.float32),
        L0.astype(np.float16),
        L0.astype(bool),
        L0.astype(np.complex128),
        L0.astype(str),
        [0.0, 0.0, 1.0, 1.0, 2.0, 2.0],
    ],
    ids=["f64", "f32", "f16", "bool", "complex", "str", "float-list"],
)
def test_labels_non_integer_is_type_error(fn, labels):
    with pytest.raises(TypeError, match=NAME["labels"]):
        call(fn, labels=labels)


@pytest.mark.parametrize("fn", WITH_LABELS)
@pytest.mark.parametrize("labels", [None, object(), 3.5])
def test_labels_not_array_like_is_type_error(fn, labels):
    with pytest.raises(TypeError, match=NAME["labels"]):
        call(fn, labels=labels)


@pytest.mark.parametrize("fn", WITH_LABELS)
def test_labels_integer_list_accepted(fn):
    a = call(fn, labels=[0, 0, 1, 1, 2, 2])
    b = call(fn, labels=L0)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


def test_ref_labels_errors():
    Y = RNG.standard_normal((4, 3))
    with pytest.raises(ValueError, match=NAME["ref_labels"]):
        tc.batch_hard(X0, L0, Y=Y, ref_labels=np.arange(5))  # length != rows of Y
    with pytest.raises(ValueError, match=NAME["ref_labels"]):
        tc.batch_hard(X0, L0, Y=Y, ref_labels=np.arange(6))  # length of labels, not of Y
    with pytest.raises(TypeError, match=NAME["ref_labels"]):
        tc.batch_hard(X0, L0, Y=Y, ref_labels=np.arange(4).astype(np.float64))
    with pytest.raises(TypeError, match=NAME["ref_labels"]):
        tc.batch_hard(X0, L0, Y=Y, ref_labels=np.arange(4).astype(bool))
    with pytest.raises(ValueError, match=NAME["ref_labels"]):
        tc.batch_hard(X0, L0, Y=Y, ref_labels=np.arange(4).reshape(2, 2))


def test_Y_without_ref_labels_and_reverse():
    Y = RNG.standard_normal((4, 3))
    with pytest.raises(ValueError, match=NAME["ref_labels"]):
        tc.batch_hard(X0, L0, Y=Y)
    with pytest.raises(ValueError, match=NAME["ref_labels"]):
        tc.batch_hard(X0, L0, ref_labels=np.arange(4))


@pytest.mark.parametrize("fn", ALL)
@pytest.mark.parametrize("metric", ["l2", "Euclidean", "cityblock", "", "euclidean "])
def test_unknown_metric(fn, metric):
    with pytest.raises(ValueError, match=NAME["metric"]):
        call(fn, metric=metric)


@pytest.mark.parametrize("mining", ["hard", "batch-hard", "all", "semihard", ""])
def test_unknown_mining(mining):
    with pytest.raises(ValueError, match=NAME["mining"]):
        tc.triplet_margin_loss(X0, L0, mining=mining)


@pytest.mark.parametrize("reduction", ["avg", "mean_non_zero", "nonzero", "", "Mean"])
def test_unknown_reduction(reduction):
    with pytest.raises(ValueError, match=NAME["reduction"]):
        tc.triplet_margin_loss(X0, L0, reduction=reduction)


@pytest.mark.parametrize("fallback", ["hard", "easy", "none", "", "nearest"])
def test_unknown_fallback(fallback):
    with pytest.raises(ValueError, match=NAME["fallback"]):
        tc.semi_hard(X0, L0, fallback=fallback)
    with pytest.raises(ValueError, match=NAME["fallback"]):
        tc.triplet_margin_loss(X0, L0, mining="semi_hard", fallback=fallback)


@pytest.mark.parametrize("fn", WITH_MARGIN)
@pytest.mark.parametrize("margin", [-0.1, -1e-300, -np.inf, np.nan])
def test_bad_margin(fn, margin):
    with pytest.raises(ValueError, match=NAME["margin"]):
        call(fn, margin=margin)


@pytest.mark.parametrize("fn", WITH_MARGIN)
def test_zero_margin_is_valid(fn):
    call(fn, margin=0.0)


@pytest.mark.parametrize("fn", ALL)
@pytest.mark.parametrize("row", [0, 3, 5])
def test_cosine_zero_norm_row(fn, row):
    X = X0.copy()
    X[row] = 0.0
    with pytest.raises(ValueError, match=NAME["X"]):
        call(fn, X, metric="cosine")
    # the same points are fine for the other metrics
    call(fn, X, metric="euclidean")


@pytest.mark.parametrize("fn", WITH_Y)
def test_cosine_zero_norm_row_in_Y(fn):
    Y = RNG.standard_normal((4, 3))
    Y[1] = 0.0
    kw = {"Y": Y} if fn == "cdist" else {"Y": Y, "ref_labels": np.arange(4)}
    with pytest.raises(ValueError, match=NAME["Y"]):
        call(fn, metric="cosine", **kw)


@pytest.mark.parametrize("fn", ALL)
def test_errors_leave_no_partial_state(fn):
    # after an error, a good call still works and gives the same answer as before
    before = call(fn)
    X = X0.copy()
    X[1, 1] = np.nan
    with pytest.raises(ValueError):
        call(fn, X)
    after = call(fn)
    if fn == "cdist":
        np.testing.assert_array_equal(before, after)
    else:
        for x, y in zip(before, after, strict=True):
            np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 7, 1000, (1 << 19) + 3])  # the last: the parallel scan
@pytest.mark.parametrize("bad", [None, np.nan, np.inf, -np.inf])
def test_all_finite_agrees_with_numpy(dtype, n, bad):
    rng = np.random.default_rng(n)
    x = (rng.standard_normal(n) * 1e30).astype(dtype)
    x[rng.integers(n)] = np.finfo(dtype).max  # the largest finite value is finite
    if bad is not None:
        x[rng.integers(n)] = bad
    assert _core.all_finite(x) is bool(np.isfinite(x).all())
    assert _core.all_finite(x.reshape(1, -1)) is bool(np.isfinite(x).all())
