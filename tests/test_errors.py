"""Structured errors: every bad input raises tripletcore.InputError with .arg and .kind.

For each kind a representative bad input of the NumPy, torch and Dask layers;
InputError stays a ValueError (old ``except ValueError`` code keeps working),
pickles with its fields, and the messages are those the other tests assert on.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import tripletcore as tc
from tripletcore import _core
from tripletcore._errors import KINDS

RNG = np.random.default_rng(3)
X0 = RNG.standard_normal((6, 3))
L0 = np.array([0, 0, 1, 1, 2, 2])


def with_nan(x):
    x = x.copy()
    x[2, 1] = np.nan
    return x


def raises(arg, kind, match=None):
    """pytest.raises for InputError, checking .arg and .kind after the block."""

    class Check:
        def __enter__(self):
            self.ctx = pytest.raises(tc.InputError, match=match)
            self.info = self.ctx.__enter__()
            return self.info

        def __exit__(self, *exc):
            out = self.ctx.__exit__(*exc)
            err = self.info.value
            assert (err.arg, err.kind) == (arg, kind), (err.arg, err.kind, str(err))
            return out

    return Check()


def test_input_error_is_a_value_error_and_pickles():
    assert issubclass(tc.InputError, ValueError)
    try:
        tc.batch_hard(with_nan(X0), L0)
    except ValueError as e:  # old code's except clause still catches it
        err = e
    assert isinstance(err, tc.InputError)
    assert (err.arg, err.kind, str(err)) == ("X", "nonfinite", "X contains NaN or infinite values")
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is tc.InputError
    assert (back.arg, back.kind, str(back)) == (err.arg, err.kind, str(err))


def test_kinds_are_a_closed_set():
    with pytest.raises(AssertionError, match="unknown InputError kind"):
        tc.InputError("x is bad", "x", "bad")
    assert len(set(KINDS)) == len(KINDS) == 10


def test_renamed_rewrites_the_leading_name_only():
    e = tc.InputError("X row 2 has norm 0", "X", "zero_norm")
    r = e.renamed({"X": "embeddings"})
    assert (r.arg, r.kind, str(r)) == ("embeddings", "zero_norm", "embeddings row 2 has norm 0")
    e2 = tc.InputError("X2 has 2 rows but X1 has 3", "X", "shape")
    assert str(e2.renamed({"X": "embeddings"})) == "X2 has 2 rows but X1 has 3"
    assert e.renamed({"Y": "ref"}) is e


# --------------------------------------------------------------- NumPy layer

NUMPY_CASES = [
    # (call, arg, kind, message regex)
    (lambda: tc.batch_hard(with_nan(X0), L0), "X", "nonfinite", "^X contains NaN"),
    (lambda: tc.cdist(X0, with_nan(X0)), "Y", "nonfinite", "^Y contains NaN"),
    (lambda: tc.batch_hard(X0[:, :0], L0), "X", "empty", "X is empty"),
    (lambda: tc.cdist(X0, np.zeros((0, 3))), "Y", "empty", "Y is empty"),
    (lambda: tc.batch_hard(X0[0], L0), "X", "shape", "X must be 2-D"),
    (lambda: tc.batch_hard(X0, L0[:4]), "labels", "shape", "labels has 4 entries"),
    (lambda: tc.cdist(X0, np.zeros((2, 4))), "Y", "shape", "features"),
    (lambda: tc.isometric_error(X0, X0[:4]), "X2", "shape", "same points"),
    (
        lambda: tc.batch_hard(np.zeros((6, 3)), L0, metric="cosine"),
        "X",
        "zero_norm",
        "X row 0 has norm 0",
    ),
    (lambda: tc.semi_hard(X0, L0, margin=-1.0), "margin", "range", "margin"),
    (lambda: tc.knn(X0, 0), "k", "range", "k must be >= 1"),
    (lambda: tc.knn(X0, 6), "k", "range", "k must be between 1 and 5"),
    (lambda: tc.kcenter(X0, 7), "k", "range", "k must be between 1 and 6"),
    (lambda: tc.is_triplet_separated(X0, L0, tol=-1.0), "tol", "range", "tol"),
    (lambda: tc.hardest_triplet(X0, np.zeros(6, np.int64)), "labels", "range", "no triplet"),
    (lambda: tc.batch_hard(X0, L0, metric="l1"), "metric", "option", "unknown metric 'l1'"),
    (
        lambda: tc.triplet_margin_loss(X0, L0, reduction="avg"),
        "reduction",
        "option",
        "unknown reduction",
    ),
    (lambda: tc.batch_hard(X0, L0, Y=X0), "ref_labels", "conflict", "together"),
]


@pytest.mark.parametrize("case", range(len(NUMPY_CASES)))
def test_numpy_layer(case):
    fn, arg, kind, match = NUMPY_CASES[case]
    with raises(arg, kind, match):
        fn()


def test_every_kind_of_the_numpy_layer_is_covered_here():
    covered = {kind for _, _, kind, _ in NUMPY_CASES}
    # layout: the bindings' own check (below); device: torch only; too_large:
    # the kernels rescale by powers of two, so no float32/float64 input we
    # could build reaches the overflow check (its mapping is CoreError::kind)
    assert covered == set(KINDS) - {"layout", "device", "too_large"}


def test_the_bindings_own_checks():
    f = np.asfortranarray(X0)  # as_slice alone would read it transposed
    with raises("X", "layout", "^X must be C-contiguous$"):
        _core.batch_hard(f, L0, "euclidean", None, None)
    with raises("labels", "layout", "^labels must be C-contiguous$"):
        _core.batch_hard(X0, np.zeros(12, np.int64)[::2], "euclidean", None, None)
    with raises("ref_labels", "conflict", "together"):
        _core.batch_hard(X0, L0, "euclidean", X0, None)
    with raises("metric", "option", "unknown metric"):
        _core.cdist(X0, None, "l1")
    rows = np.array([0, -1], dtype=np.int64)
    with raises("rows", "range", "non-negative"):
        _core.pair_distances(X0, X0, rows, np.zeros(2, np.int64), "euclidean")
    # a wrong type stays a TypeError
    with pytest.raises(TypeError) as info:
        _core.batch_hard(X0.astype(np.int64), L0, "euclidean", None, None)
    assert not isinstance(info.value, ValueError)


# --------------------------------------------------------------- torch layer


@pytest.fixture(scope="module")
def torch_mod():
    return pytest.importorskip("torch")


def torch_cases(torch):
    import tripletcore.torch as tt

    x = torch.tensor(X0)
    lab = torch.tensor(L0)
    nan = torch.tensor(with_nan(X0))
    return [
        (lambda b: tt.triplet_margin_loss(nan, lab, backend=b), "embeddings", "nonfinite"),
        (
            lambda b: tt.triplet_margin_loss(nan, lab, reduction="none", backend=b),
            "embeddings",
            "nonfinite",
        ),
        (lambda b: tt.BatchHardMiner(backend=b)(nan, lab), "embeddings", "nonfinite"),
        (lambda b: tt.triplet_margin_loss(x[:0], lab[:0], backend=b), "embeddings", "empty"),
        (lambda b: tt.triplet_margin_loss(x[0], lab, backend=b), "embeddings", "shape"),
        (lambda b: tt.triplet_margin_loss(x, lab[:4], backend=b), "labels", "shape"),
        (
            lambda b: tt.triplet_margin_loss(
                torch.zeros(6, 3, dtype=torch.float64), lab, metric="cosine", backend=b
            ),
            "embeddings",
            "zero_norm",
        ),
        (lambda b: tt.triplet_margin_loss(x, lab, margin=-1.0, backend=b), "margin", "range"),
        (lambda b: tt.triplet_margin_loss(x, lab, mining="hard", backend=b), "mining", "option"),
        (
            lambda b: tt.BatchHardMiner(backend=b)(x, lab, ref_emb=x),
            "ref_labels",
            "conflict",
        ),
        (
            lambda b: tt.TripletMarginLoss(backend=b)(x, lab, (lab[:2], lab[:2], lab[:3])),
            "indices_tuple",
            "shape",
        ),
    ]


@pytest.mark.parametrize("backend", ["rust", "torch"])
@pytest.mark.parametrize("case", range(11))
def test_torch_layer(torch_mod, backend, case):
    fn, arg, kind = torch_cases(torch_mod)[case]
    with raises(arg, kind):
        fn(backend)


def test_torch_messages_name_the_users_argument(torch_mod):
    import tripletcore.torch as tt

    nan = torch_mod.tensor(with_nan(X0))
    lab = torch_mod.tensor(L0)
    for backend in ("rust", "torch"):
        with pytest.raises(ValueError, match="^embeddings contains NaN or infinite values$"):
            tt.triplet_margin_loss(nan, lab, backend=backend)


def test_torch_rust_path_does_not_rescan_the_data(torch_mod, monkeypatch):
    """The kernel's error is renamed; no second pass over the data builds the message."""
    import tripletcore.torch as tt
    from tripletcore.torch import _checks, _loss

    def no_rescan(*args, **kwargs):
        raise AssertionError("the torch layer rescanned the data")

    monkeypatch.setattr(_loss, "check_finite", no_rescan)
    monkeypatch.setattr(_checks, "_all_finite", no_rescan)
    nan = torch_mod.tensor(with_nan(X0), requires_grad=True)
    with raises("embeddings", "nonfinite", "^embeddings contains NaN"):
        tt.triplet_margin_loss(nan, torch_mod.tensor(L0), backend="rust")


def test_torch_device_and_backend_errors(torch_mod):
    import tripletcore.torch as tt

    x = torch_mod.tensor(X0)
    lab = torch_mod.tensor(L0)
    expected = "unknown backend 'gpu'; expected one of auto, triton, rust, torch"
    with raises("backend", "option", expected):
        tt.triplet_margin_loss(x, lab, backend="gpu")
    from tripletcore.torch._backend import resolve_backend

    # no second device here: the checks themselves, on a device type they reject
    with raises("backend", "device", "backend='rust' needs CPU tensors"):
        resolve_backend("rust", torch_mod.device("meta"))
    meta_labels = torch_mod.zeros(6, dtype=torch_mod.int64, device="meta")
    with raises("labels", "device", "move both to one device"):
        tt.triplet_margin_loss(torch_mod.zeros(6, 3, device="meta"), lab)
    with raises("labels", "device", "move both to one device"):
        tt.triplet_margin_loss(x, meta_labels)


def test_torch_memory_errors(torch_mod):
    import tripletcore.torch as tt

    with raises("loss", "conflict", "batch-hard"):
        tt.CrossBatchMemory(tt.TripletMarginLoss(mining="semi_hard"), 3)
    mem = tt.CrossBatchMemory(None, 4)
    with raises("embeddings", "shape", "features"):
        mem(torch_mod.tensor(X0, dtype=torch_mod.float32), torch_mod.tensor(L0))


# ---------------------------------------------------------------- Dask layer


def test_dask_layer():
    pytest.importorskip("dask")
    import tripletcore.dask as tcd

    X = np.zeros((5, 2))
    lab = np.zeros(5, dtype=np.int64)
    cases = [
        (lambda: tcd.knn(X, 5), "k", "range", "k must be between 1 and 4"),
        (lambda: tcd.knn(X, 2, metric="l1"), "metric", "option", "unknown metric"),
        (lambda: tcd.batch_hard(X, lab[:4]), "labels", "shape", "labels has 4 entries"),
        (lambda: tcd.batch_hard(X, lab, Y=X), "ref_labels", "conflict", "together"),
        (lambda: tcd.hausdorff(X, np.zeros((3, 3))), "B", "shape", "features"),
        (lambda: tcd.isometric_error(X, X[:4]), "X2", "shape", "same points"),
        (lambda: tcd.hausdorff(X[0], X), "A", "shape", "2-D"),
        (lambda: tcd.hausdorff(X[:0], X), "A", "empty", "empty"),
        (lambda: tcd.knn(X, 2, block_rows=0), "block_rows", "range", "block_rows"),
    ]
    for fn, arg, kind, match in cases:
        with raises(arg, kind, match):
            fn()
    # a block's kernel error travels through the graph with its fields
    bad = RNG.standard_normal((5, 2))
    bad[3, 1] = np.nan
    with pytest.raises(tc.InputError, match="contains NaN") as info:
        tcd.batch_hard(bad, lab, block_rows=2, compute=False).compute(scheduler="threads")
    # the block kernel's name: the bad block is a query (X) or a reference (Y) block
    assert info.value.arg in ("X", "Y") and info.value.kind == "nonfinite"
