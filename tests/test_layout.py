"""Input dtypes and memory layouts, input immutability, and thread-count independence."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import oracle
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import LABEL_DTYPES, metric_cases

import tripletcore as tc


def all_outputs(X, labels, metric, margin=0.3):
    """Every public function's output on (X, labels), as a flat list of arrays / floats."""
    out = [tc.cdist(X, metric=metric)]
    out += list(tc.batch_hard(X, labels, metric=metric))
    out += list(tc.semi_hard(X, labels, margin=margin, metric=metric, fallback="hardest"))
    for mining in oracle.MININGS:
        for reduction in ("mean", "none"):
            loss, grad = tc.triplet_margin_loss(
                X, labels, margin=margin, mining=mining, metric=metric, reduction=reduction
            )
            out += [np.asarray(loss), grad]
    return out


def assert_identical(a, b, what=""):
    assert len(a) == len(b)
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        x, y = np.asarray(x), np.asarray(y)
        assert x.dtype == y.dtype and x.shape == y.shape, (what, i, x.dtype, y.dtype)
        assert x.tobytes() == y.tobytes(), f"{what}: output {i} differs"


@settings(max_examples=40, deadline=None)
@given(metric_cases(max_n=30, cosine_min_d=2), st.sampled_from(LABEL_DTYPES))
def test_label_dtypes_give_identical_results(mc, label_dtype):
    metric, case = mc
    X = case.X
    ids = np.unique(case.labels, return_inverse=True)[1]  # class ids 0..k-1
    ref = all_outputs(X, ids.astype(np.int64), metric)
    info = np.iinfo(label_dtype)
    # the same partition into classes, with values near both ends of the dtype's range
    top = np.array(info.max, dtype=label_dtype) - ids.astype(label_dtype)
    for labels in (ids.astype(label_dtype), top):
        assert_identical(ref, all_outputs(X, labels, metric), f"labels {label_dtype}")
    if info.min < 0:
        labels = np.array(info.min, dtype=label_dtype) + ids.astype(label_dtype)
        assert_identical(ref, all_outputs(X, labels, metric), f"labels {label_dtype} negative")


@settings(max_examples=40, deadline=None)
@given(metric_cases(min_n=2, max_n=30, min_d=2, cosine_min_d=2))
def test_layouts_give_identical_results(mc):
    metric, case = mc
    X, labels = case.X, case.labels
    ref = all_outputs(X, labels, metric)
    variants = {
        "fortran": np.asfortranarray(X),
        "col-strided": np.repeat(X, 2, axis=1)[:, ::2],
        "row-strided": np.repeat(X, 2, axis=0)[::2],
        "negative-strides": np.ascontiguousarray(X[::-1, ::-1])[::-1, ::-1],
        "padded-view": np.pad(X, 1)[1:-1, 1:-1],
    }
    for name, Xv in variants.items():
        assert np.array_equal(Xv, X)
        assert_identical(ref, all_outputs(Xv, labels, metric), name)
    lab_strided = np.repeat(labels, 2)[::2]
    assert_identical(ref, all_outputs(X, lab_strided, metric), "strided labels")
    lab_big_endian = labels.astype(labels.dtype.newbyteorder(">"))
    assert_identical(ref, all_outputs(X, lab_big_endian, metric), "big-endian labels")


def test_reference_set_layouts():
    rng = np.random.default_rng(4)
    X = rng.standard_normal((20, 6))
    Y = rng.standard_normal((25, 6))
    labels = rng.integers(0, 3, 20)
    ref_labels = rng.integers(0, 3, 25)
    ref = tc.batch_hard(X, labels, Y=Y, ref_labels=ref_labels)
    got = tc.batch_hard(
        np.asfortranarray(X),
        labels[::-1].copy()[::-1],
        Y=np.repeat(Y, 3, axis=1)[:, ::3],
        ref_labels=np.repeat(ref_labels, 2)[::2],
    )
    assert_identical(list(ref), list(got), "reference-set layouts")
    Yv = np.ascontiguousarray(Y[:, ::-1])[:, ::-1]  # negative column stride
    np.testing.assert_array_equal(tc.cdist(X, Y), tc.cdist(np.asfortranarray(X), Yv))


@pytest.mark.parametrize("metric", oracle.METRICS)
def test_inputs_are_not_modified(metric):
    rng = np.random.default_rng(8)
    for dtype in (np.float32, np.float64):
        X = rng.standard_normal((40, 7)).astype(dtype)
        labels = rng.integers(0, 4, 40).astype(np.int32)
        Xc, lc = X.copy(), labels.copy()
        all_outputs(X, labels, metric)
        np.testing.assert_array_equal(X, Xc)
        np.testing.assert_array_equal(labels, lc)
        Xf = np.asfortranarray(X)
        all_outputs(Xf, labels, metric)
        np.testing.assert_array_equal(Xf, Xc)


def test_outputs_do_not_alias_inputs():
    X = np.random.default_rng(0).standard_normal((10, 3))
    labels = np.array([0, 1] * 5)
    D = tc.cdist(X)
    _, grad = tc.triplet_margin_loss(X, labels)
    assert not np.shares_memory(D, X) and not np.shares_memory(grad, X)
    grad[:] = 7.0  # writing to the outputs leaves X and later results alone
    np.testing.assert_array_equal(tc.triplet_margin_loss(X, labels)[1] != 7.0, True)


@pytest.mark.parametrize(
    "dtype", [np.int8, np.int32, np.int64, np.uint8, np.uint64, np.float16, np.bool_]
)
def test_non_float_embeddings_compute_in_float64(dtype):
    rng = np.random.default_rng(1)
    Xi = rng.integers(0, 2, (15, 4)).astype(dtype)
    Xi[:, 0] = 1  # no zero rows (cosine)
    labels = rng.integers(0, 3, 15)
    X64 = Xi.astype(np.float64)
    for metric in oracle.METRICS:
        got, want = all_outputs(Xi, labels, metric), all_outputs(X64, labels, metric)
        assert_identical(want, got, f"{np.dtype(dtype).name} {metric}")
    bh = tc.batch_hard(Xi, labels)
    assert bh.pos_dist.dtype == np.float64
    _, grad = tc.triplet_margin_loss(Xi, labels)
    assert grad.dtype == np.float64


def test_float32_and_float64_results_dtypes():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((12, 3))
    labels = rng.integers(0, 3, 12)
    for dtype in (np.float32, np.float64):
        Xd = X.astype(dtype)
        assert tc.cdist(Xd).dtype == dtype
        bh = tc.batch_hard(Xd, labels)
        assert bh.pos_dist.dtype == dtype and bh.neg_dist.dtype == dtype
        assert bh.pos_idx.dtype == np.int64 and bh.neg_idx.dtype == np.int64
        sh = tc.semi_hard(Xd, labels)
        assert sh.pos_dist.dtype == dtype and sh.neg_dist.dtype == dtype
        assert sh.anchor.dtype == np.int64
        loss, grad = tc.triplet_margin_loss(Xd, labels)
        assert type(loss) is float and grad.dtype == dtype
    # mixed X / Y float dtypes: float64
    bh = tc.batch_hard(
        X.astype(np.float32), labels, Y=X[:5].astype(np.float64), ref_labels=labels[:5]
    )
    assert bh.pos_dist.dtype == np.float64


# ---------------------------------------------------------------------------
# results do not depend on the number of threads
# ---------------------------------------------------------------------------

THREAD_SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    import tripletcore as tc

    rng = np.random.default_rng(123)
    n, d = 700, 33
    out = {}
    base = rng.standard_normal((n, d))
    base[::7] = base[1::7][: len(base[::7])]  # exact duplicates across rows
    labels = rng.integers(0, 25, n)
    for dtype in (np.float32, np.float64):
        X = base.astype(dtype)
        for metric in ("euclidean", "sqeuclidean", "cosine"):
            key = f"{np.dtype(dtype).name}-{metric}"
            out[key + "-cdist"] = tc.cdist(X, metric=metric)
            for i, a in enumerate(tc.batch_hard(X, labels, metric=metric)):
                out[f"{key}-bh{i}"] = a
            for i, a in enumerate(tc.semi_hard(X, labels, margin=0.5, metric=metric)):
                out[f"{key}-sh{i}"] = a
            for mining in ("batch_hard", "semi_hard", "batch_all"):
                for soft in (False, True):
                    # soft batch_all is O(N^3) work: once per dtype only
                    if soft and mining == "batch_all" and metric != "euclidean":
                        continue
                    for reduction in ("mean_nonzero", "none"):
                        loss, grad = tc.triplet_margin_loss(
                            X, labels, margin=0.5, mining=mining, metric=metric,
                            soft=soft, reduction=reduction,
                        )
                        k = f"{key}-{mining}-{soft}-{reduction}"
                        out[k + "-loss"] = np.asarray(loss)
                        out[k + "-grad"] = grad
    np.savez(sys.argv[1], **out)
    """
)


def test_results_independent_of_thread_count(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(THREAD_SCRIPT)
    results = {}
    for threads in ("1", "2", "3"):
        env = dict(os.environ, RAYON_NUM_THREADS=threads)
        path = tmp_path / f"out{threads}.npz"
        subprocess.run([sys.executable, str(script), str(path)], env=env, check=True, timeout=300)
        with np.load(path) as f:
            results[threads] = {k: f[k] for k in f.files}
    ref = results["1"]
    assert len(ref) > 100
    for threads in ("2", "3"):
        other = results[threads]
        assert sorted(other) == sorted(ref)
        differ = [
            k
            for k in ref
            if ref[k].dtype != other[k].dtype or ref[k].tobytes() != other[k].tobytes()
        ]
        assert not differ, f"RAYON_NUM_THREADS={threads} differs from 1 in {differ[:10]}"
