"""tripletcore.dask against the in-memory functions, bit for bit.

Every function runs on a two-process LocalCluster and on the threaded
scheduler, over random, tied (integer-grid), duplicate and class-imbalanced
data, with row blocks of one row, uneven dask chunks, and NumPy, memmap and
zarr sources. Values and indices must equal the in-memory answers exactly.
"""

from __future__ import annotations

import logging
import pickle

import numpy as np
import pytest

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")
try:
    import zarr
except ImportError:  # zarr sources are then not tested
    zarr = None

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from strategies import cases, metric_cases  # noqa: E402

import tripletcore as tc  # noqa: E402
import tripletcore.dask as tcd  # noqa: E402

# --------------------------------------------------------------------------
# data sets and sources
# --------------------------------------------------------------------------


def dataset(kind: str, rows: int | None = None) -> dict[str, np.ndarray]:
    """Two embeddings of the same points (and one of another dimension),
    labels, and a reference set with its labels; ``rows`` keeps the first."""
    rng = np.random.default_rng(sum(map(ord, kind)))  # fixed data per kind
    if kind == "random":  # d <= 8: the k-d tree path of hausdorff
        n, X = 17, rng.standard_normal((17, 5))
        X2 = X + 0.1 * rng.standard_normal(X.shape)
        labels = rng.integers(0, 3, n)
    elif kind == "grid":  # float32 with many exact ties
        n = 16
        X = rng.integers(0, 3, (n, 3)).astype(np.float32)
        X2 = (X + rng.integers(0, 2, X.shape)).astype(np.float32)
        labels = rng.integers(0, 3, n).astype(np.uint8)
    elif kind == "dups":  # repeated rows, d > 8: the tiled path
        n = 15
        X = rng.standard_normal((5, 12))[rng.integers(0, 5, n)]
        X2 = X.copy()
        X2[::4] += 1.0
        labels = rng.integers(0, 2, n).astype(np.int32)
    elif kind == "imbalanced":  # one big class and singletons
        n = 18
        X = rng.integers(-2, 3, (n, 4)).astype(np.float64)
        X2 = X[:, ::-1] * 2.0
        labels = np.where(rng.random(n) < 0.8, 7, np.arange(n) + 100)
    else:
        raise ValueError(kind)
    Y = X[rng.integers(0, n, 9)] + rng.integers(0, 2, (9, X.shape[1]))
    if rows is not None:
        X, X2, labels = X[:rows], X2[:rows], labels[:rows]
    return {
        "X": np.ascontiguousarray(X),
        "X2": np.ascontiguousarray(X2),
        "X3": np.ascontiguousarray(X2[:, :2] * 3),  # another dimension (isometric_error)
        "labels": labels,
        "Y": np.ascontiguousarray(Y.astype(X.dtype)),
        "ref_labels": rng.integers(0, 3, 9).astype(labels.dtype),
    }


KINDS = ("random", "grid", "dups", "imbalanced")
LAYOUTS = ("rows1", "uneven", "numpy", "memmap") + (("zarr",) if zarr is not None else ())
# Each (layout, kind) runs once: two kinds per layout on the cluster, the
# other two on the threaded scheduler (scheduling costs about a millisecond
# per task). One-row blocks (N^2 tasks) use the first 8 rows.
CLUSTER_KINDS = {
    "rows1": ("grid", "imbalanced"),
    "uneven": ("random", "dups"),
    "numpy": ("grid", "dups"),
    "memmap": ("random", "imbalanced"),
    "zarr": ("random", "grid"),
}


def wrap(arr: np.ndarray, layout: str, where, name: str):
    """``arr`` as the given source, and the block_rows to pass."""
    n = arr.shape[0]
    if layout == "rows1":
        return da.from_array(arr, chunks=(1,) + arr.shape[1:]), None
    if layout == "uneven":
        sizes = [3, 1, 0, 5]
        sizes.append(n - sum(sizes))
        rest = arr.shape[1:]
        return da.from_array(arr, chunks=(tuple(sizes),) + tuple((1,) * r for r in rest)), None
    if layout == "numpy":
        return arr, 4
    if layout == "memmap":
        path = where / f"{name}.npy"
        mm = np.lib.format.open_memmap(path, mode="w+", dtype=arr.dtype, shape=arr.shape)
        mm[:] = arr
        mm.flush()
        del mm
        return np.load(path, mmap_mode="r"), 5
    z = zarr.open_array(
        str(where / f"{name}.zarr"),
        mode="w",
        shape=arr.shape,
        chunks=(8,) + arr.shape[1:],
        dtype=arr.dtype,
    )
    z[:] = arr
    return z, 8


def calls(data: dict[str, np.ndarray], layout: str, where):
    """(name, lazy dask result, in-memory result) for every function."""
    src = {}
    block = None
    for name, arr in data.items():
        src[name], block = wrap(arr, layout, where, name)
    X, X2, Y, lab, rlab = src["X"], src["X2"], src["Y"], src["labels"], src["ref_labels"]
    x, x2, y, l_, rl = data["X"], data["X2"], data["Y"], data["labels"], data["ref_labels"]
    x3 = data["X3"]
    kw = {"block_rows": block, "compute": False}
    n = x.shape[0]
    return [
        ("knn", tcd.knn(X, 3, **kw), tc.knn(x, 3)),
        ("knn all", tcd.knn(X, n - 1, **kw), tc.knn(x, n - 1)),
        (
            "knn self sq",
            tcd.knn(X, 2, exclude_self=False, metric="sqeuclidean", **kw),
            tc.knn(x, 2, exclude_self=False, metric="sqeuclidean"),
        ),
        ("knn Y", tcd.knn(X, 4, Y, **kw), tc.knn(x, 4, y)),
        ("batch_hard", tcd.batch_hard(X, lab, **kw), tc.batch_hard(x, l_)),
        (
            "batch_hard Y",
            tcd.batch_hard(X, lab, Y=Y, ref_labels=rlab, **kw),
            tc.batch_hard(x, l_, Y=y, ref_labels=rl),
        ),
        ("hausdorff", tcd.hausdorff(X, X2, **kw), tc.hausdorff(x, x2)),
        ("hausdorff Y", tcd.hausdorff(Y, X, **kw), tc.hausdorff(y, x)),
        ("directed", tcd.hausdorff(X, Y, directed=True, **kw), tc.hausdorff(x, y, directed=True)),
        ("class_hausdorff", tcd.class_hausdorff(X, X2, lab, **kw), tc.class_hausdorff(x, x2, l_)),
        ("isometric", tcd.isometric_error(X, X2, **kw), tc.isometric_error(x, x2)),
        ("isometric dims", tcd.isometric_error(X, src["X3"], **kw), tc.isometric_error(x, x3)),
    ]


def _cosine_near_ties_aside(got, want):
    """k-NN results with the columns of cosine near-ties (distances within
    float64 rounding, 2**-50 relative) set aside: tripletcore.dask merges
    its blocks by float64 distance, then index, while the kernel orders such
    ties by exact rational arithmetic (docs/dask.md says so)."""
    d = np.asarray(want.distances, dtype=np.float64)
    close = np.isclose(d[:, :, None], d[:, None, :], rtol=2.0**-50, atol=0)
    tied = close.sum(axis=2) > 1
    idx_g, idx_w = np.where(tied, -1, got.indices), np.where(tied, -1, want.indices)
    return got._replace(indices=idx_g), want._replace(indices=idx_w)


def assert_same(got, want, what: str) -> None:
    assert type(got) is type(want), what
    if what == "cosine" and hasattr(want, "indices"):
        got, want = _cosine_near_ties_aside(got, want)
    for field, g, w in zip(want._fields, got, want, strict=True):
        if isinstance(w, np.ndarray):
            assert g.dtype == w.dtype, f"{what}.{field}: dtype {g.dtype} != {w.dtype}"
            if what == "cosine" and field == "distances":
                # exact cosine ties share one key within a call (cosine_exact.rs moves
                # near-tied keys by ulps into their exact order): a block of the
                # reference set may round such a distance an ulp apart
                np.testing.assert_allclose(g, w, rtol=2.0**-50, atol=0, err_msg=f"{what}.{field}")
                continue
            np.testing.assert_array_equal(g, w, err_msg=f"{what}.{field}")
        else:
            assert type(g) is type(w) and g == w, f"{what}.{field}: {g!r} != {w!r}"


# --------------------------------------------------------------------------
# the cluster
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        n_workers=2,
        processes=True,
        threads_per_worker=1,
        dashboard_address=None,
        silence_logs=logging.ERROR,
        env={"RAYON_NUM_THREADS": "1"},
    )
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("scheduler", ["distributed", "threads"])
def test_every_function_matches_in_memory(layout, scheduler, request, tmp_path):
    cluster = scheduler == "distributed"
    rows = 8 if layout == "rows1" else None
    lazy, want, names = [], [], []
    kinds = [k for k in KINDS if (k in CLUSTER_KINDS[layout]) == cluster]
    for kind in kinds:
        where = tmp_path / kind
        where.mkdir()
        for name, got, ref in calls(dataset(kind, rows), layout, where):
            lazy.append(got)
            want.append(ref)
            names.append(f"{kind}/{layout}/{name}")
    if cluster:
        c = request.getfixturevalue("client")
        got = c.gather(c.compute(lazy))
    else:
        got = dask.compute(*lazy, scheduler="threads")
    for g, w, what in zip(got, want, names, strict=True):
        assert_same(g, w, what)


def test_compute_true_runs_on_the_default_client(client):
    rng = np.random.default_rng(3)
    X = rng.integers(0, 4, (30, 6)).astype(np.float32)
    labels = rng.integers(0, 4, 30)
    dx = da.from_array(X, chunks=(7, 3))  # columns are merged into one chunk
    with distributed.get_task_stream(client) as stream:
        assert_same(tcd.batch_hard(dx, labels), tc.batch_hard(X, labels), "batch_hard")
        assert_same(tcd.hausdorff(dx, X[::-1]), tc.hausdorff(X, X[::-1]), "hausdorff")
    assert any("tripletcore-batch_hard-pair" in str(t["key"]) for t in stream.data)


# --------------------------------------------------------------------------
# broader data on the threaded scheduler
# --------------------------------------------------------------------------


@settings(max_examples=25)
@given(case=cases(max_n=28, max_d=10), block=st.integers(1, 30), seed=st.integers(0, 2**16))
def test_random_cases_threaded(case, block, seed):
    X, labels = case.X, case.labels
    rng = np.random.default_rng(seed)
    X2 = (X + rng.integers(0, 2, X.shape)).astype(X.dtype)
    n = X.shape[0]
    block = max(block, -(-n // 5))  # at most 5 blocks: 25 pair tasks a call
    k = int(rng.integers(1, n)) if n > 1 else 1
    kw = {"block_rows": block, "compute": False}
    pairs = [
        (tcd.batch_hard(X, labels, **kw), tc.batch_hard(X, labels)),
        (tcd.hausdorff(X, X2, **kw), tc.hausdorff(X, X2)),
        (tcd.class_hausdorff(X, X2, labels, **kw), tc.class_hausdorff(X, X2, labels)),
        (tcd.isometric_error(X, X2, **kw), tc.isometric_error(X, X2)),
        (tcd.knn(X, k, exclude_self=n > 1, **kw), tc.knn(X, k, exclude_self=n > 1)),
    ]
    got = dask.compute(*[p[0] for p in pairs], scheduler="threads")
    for g, (_, w) in zip(got, pairs, strict=True):
        assert_same(g, w, type(w).__name__)


@settings(max_examples=20)
@given(mc=metric_cases(max_n=30, max_d=10), block=st.integers(1, 30), data=st.data())
def test_random_metric_cases_threaded(mc, block, data):
    metric, case = mc
    X, labels = case.X, case.labels
    n = X.shape[0]
    block = max(block, -(-n // 5))
    m = data.draw(st.integers(1, n), label="reference rows")
    Y, ref = X[::-1][:m].copy(), labels[::-1][:m].copy()
    k = data.draw(st.integers(1, m), label="k")
    kw = {"block_rows": block, "compute": False}
    pairs = [
        (tcd.batch_hard(X, labels, metric=metric, **kw), tc.batch_hard(X, labels, metric=metric)),
        (
            tcd.batch_hard(X, labels, Y, ref, metric=metric, **kw),
            tc.batch_hard(X, labels, Y, ref, metric=metric),
        ),
        (tcd.knn(X, k, Y, metric=metric, **kw), tc.knn(X, k, Y, metric=metric)),
    ]
    got = dask.compute(*[p[0] for p in pairs], scheduler="threads")
    for g, (_, w) in zip(got, pairs, strict=True):
        assert_same(g, w, metric)


@pytest.mark.parametrize("metric", ["euclidean", "sqeuclidean", "cosine"])
def test_metrics_and_mixed_dtypes(metric):
    rng = np.random.default_rng(5)
    X = rng.integers(1, 4, (21, 7)).astype(np.float32)
    Y = rng.integers(1, 4, (13, 7)).astype(np.float64)
    labels = rng.integers(0, 3, 21).astype(np.uint64)
    ref = rng.integers(0, 3, 13).astype(np.int8)
    kw = {"block_rows": 4, "compute": False}
    pairs = [
        (tcd.knn(X, 5, Y, metric=metric, **kw), tc.knn(X, 5, Y, metric=metric)),
        (tcd.knn(X, 5, None, metric=metric, **kw), tc.knn(X, 5, None, metric=metric)),
        (tcd.batch_hard(X, labels, metric=metric, **kw), tc.batch_hard(X, labels, metric=metric)),
        (
            tcd.batch_hard(X, labels, Y, ref, metric=metric, **kw),
            tc.batch_hard(X, labels, Y, ref, metric=metric),
        ),
    ]
    got = dask.compute(*[p[0] for p in pairs], scheduler="threads")
    for g, (_, w) in zip(got, pairs, strict=True):
        assert_same(g, w, metric)


def test_single_rows_and_huge_labels():
    one = np.array([[1.0, 2.0]])
    assert tcd.isometric_error(one, one[:, :1]) == tc.isometric_error(one, one[:, :1])
    assert tcd.hausdorff(one, one + 1) == tc.hausdorff(one, one + 1)
    lab = np.array([2**63 + 5, 1, 2**63 + 5], dtype=np.uint64)
    X = np.array([[0.0], [1.0], [3.0]])
    assert_same(
        tcd.class_hausdorff(X, X[::-1], lab, block_rows=1), tc.class_hausdorff(X, X[::-1], lab), ""
    )
    assert_same(
        tcd.batch_hard(X, lab, Y=X, ref_labels=np.array([-1, 1, 5]), block_rows=2),
        tc.batch_hard(X, lab, Y=X, ref_labels=np.array([-1, 1, 5])),
        "",
    )


# --------------------------------------------------------------------------
# the graph and the memory model
# --------------------------------------------------------------------------


def test_lazy_result_and_task_counts(tmp_path):
    X = np.random.default_rng(0).standard_normal((40, 3))
    lazy = tcd.knn(X, 2, block_rows=10, compute=False)
    assert dask.is_dask_collection(lazy)
    graph = dict(lazy.__dask_graph__())
    pairs = [k for k in graph if isinstance(k, tuple) and "-pair-" in k[0]]
    assert len(pairs) == 16  # 4 x 4 blocks
    iso = dict(tcd.isometric_error(X, X, block_rows=10, compute=False).__dask_graph__())
    assert len([k for k in iso if isinstance(k, tuple) and "-pair-" in k[0]]) == 6  # a < b
    assert_same(lazy.compute(scheduler="sync"), tc.knn(X, 2), "knn")


def test_memmap_and_zarr_sources_travel_as_references(tmp_path):
    X = np.random.default_rng(0).standard_normal((4000, 16))
    path = tmp_path / "x.npy"
    np.save(path, X)
    mm = np.load(path, mmap_mode="r")
    sources = [mm, mm[1000:3000]]
    if zarr is not None:
        z = zarr.open_array(str(tmp_path / "x.zarr"), mode="w", shape=X.shape, chunks=(500, 16))
        z[:] = X
        sources.append(z)
    for source in sources:
        lazy = tcd.hausdorff(source, source, block_rows=500, compute=False)
        # No task carries data: the whole pickled graph is smaller than a block.
        assert len(pickle.dumps(dict(lazy.__dask_graph__()))) < 500 * X[0].nbytes
    strided = np.lib.format.open_memmap(tmp_path / "f.npy", "w+", X.dtype, X.shape, True)
    strided[:] = X
    for source in (mm[1000:3000], strided, mm[::2]):
        data = np.asarray(source)
        assert_same(
            tcd.hausdorff(source, X[:7], block_rows=300, compute=False).compute(scheduler="sync"),
            tc.hausdorff(data, X[:7]),
            "memmap view",
        )


# --------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------


def test_argument_errors():
    X = np.zeros((5, 2))
    lab = np.zeros(5, dtype=np.int64)
    with pytest.raises(ValueError, match="k must be between 1 and 4"):
        tcd.knn(X, 5)
    with pytest.raises(TypeError, match="k must be an int"):
        tcd.knn(X, 2.0)
    with pytest.raises(ValueError, match="unknown metric"):
        tcd.knn(X, 2, metric="l1")
    with pytest.raises(TypeError, match="integer dtype"):
        tcd.batch_hard(X, lab.astype(float))
    with pytest.raises(ValueError, match="labels has 4 entries"):
        tcd.batch_hard(X, lab[:4])
    with pytest.raises(ValueError, match="together"):
        tcd.batch_hard(X, lab, Y=X)
    with pytest.raises(ValueError, match="features"):
        tcd.hausdorff(X, np.zeros((3, 3)))
    with pytest.raises(ValueError, match="same points"):
        tcd.isometric_error(X, X[:4])
    with pytest.raises(ValueError, match="2-D"):
        tcd.hausdorff(X[0], X)
    with pytest.raises(ValueError, match="empty"):
        tcd.hausdorff(X[:0], X)
    with pytest.raises(ValueError, match="block_rows"):
        tcd.knn(X, 2, block_rows=0)
    bad = X.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError):
        tcd.hausdorff(bad, X, block_rows=2, compute=False).compute(scheduler="threads")
