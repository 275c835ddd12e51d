"""Shared hypothesis strategies, data generators and assertion helpers.

A drawn `Case` holds only small parameters and a seed (so hypothesis prints a
short, reproducible example); `case.X` / `case.labels` build the arrays.
"""

from __future__ import annotations

import dataclasses
from functools import cached_property

import numpy as np
import oracle
from hypothesis import strategies as st

FLOAT_DTYPES = (np.float32, np.float64)
LABEL_DTYPES = (
    np.int8,
    np.int16,
    np.int32,
    np.int64,
    np.uint8,
    np.uint16,
    np.uint32,
    np.uint64,
)

# Point-set kinds.  "grid" kinds make many distances tie exactly.
POINT_KINDS = (
    "normal",
    "grid",
    "dups",
    "near_dups",
    "offset",
    "offset_grid",
    "offset_dups",
    "tiny",
    "clusters",
)
# kinds whose exact ties are exact ties of the float64 cosine too (or that have no ties)
COSINE_KINDS = ("normal", "dups", "near_dups", "offset", "offset_dups", "tiny", "clusters")
# kinds where cosine distances are far above float64 rounding (the offset kinds put all
# points in nearly the same direction: cosine distances ~1e-16 for float64)
COSINE_WELL_CONDITIONED = ("normal", "dups", "near_dups", "tiny", "clusters")
# kinds whose coordinate differences are small integers: float64 distances are exact
GRID_KINDS = ("grid", "offset_grid")
LABEL_KINDS = ("few", "pk", "singletons", "one", "distinct")

OFFSET = {np.float32: 1e4, np.float64: 1e8}
TINY = {np.float32: 1e-15, np.float64: 1e-100}


def make_points(rng, n, d, dtype, kind):
    dtype = np.dtype(dtype).type
    if kind == "normal":
        X = rng.standard_normal((n, d))
    elif kind == "grid":
        X = rng.integers(0, 3, (n, d)).astype(np.float64)
    elif kind == "dups":
        m = int(rng.integers(1, max(1, n // 2) + 1))
        X = rng.standard_normal((m, d))[rng.integers(0, m, n)]
    elif kind == "near_dups":
        m = int(rng.integers(1, max(1, n // 2) + 1))
        base = rng.standard_normal((m, d))[rng.integers(0, m, n)]
        X = base * (1.0 + 1e-4 * rng.standard_normal((n, d)))
    elif kind == "offset":
        X = OFFSET[dtype] * rng.choice([-1.0, 1.0], d) + rng.standard_normal((n, d))
    elif kind == "offset_grid":
        X = OFFSET[dtype] * rng.choice([-1.0, 1.0], d) + rng.integers(0, 3, (n, d))
    elif kind == "offset_dups":
        m = int(rng.integers(1, max(1, n // 2) + 1))
        X = (
            OFFSET[dtype] * rng.choice([-1.0, 1.0], d)
            + rng.standard_normal((m, d))[rng.integers(0, m, n)]
        )
    elif kind == "tiny":
        X = TINY[dtype] * rng.standard_normal((n, d))
    elif kind == "clusters":
        m = int(rng.integers(1, 5))
        centers = rng.standard_normal((m, d))
        X = centers[rng.integers(0, m, n)] + 0.05 * rng.standard_normal((n, d))
    else:
        raise ValueError(kind)
    return np.ascontiguousarray(X.astype(dtype))


def fix_zero_rows(X):
    """Cosine needs rows of non-zero norm."""
    X = X.copy()
    zero = ~np.any(X != 0, axis=1)
    X[zero, 0] = 1
    return X


def make_labels(rng, n, kind, dtype):
    if kind == "few":
        ids = rng.integers(0, int(rng.integers(1, 5)), n)
    elif kind == "pk":
        k = int(rng.integers(2, 5))
        ids = rng.permutation(np.arange(n) // k)
    elif kind == "singletons":
        ids = rng.integers(0, max(1, n), n)  # mostly singleton classes
    elif kind == "one":
        ids = np.zeros(n, dtype=np.int64)
    elif kind == "distinct":
        ids = rng.permutation(n)
    else:
        raise ValueError(kind)
    info = np.iinfo(dtype)
    if rng.random() < 0.5:
        # map class ids to distinct values spread over the dtype's whole range
        nclass = int(ids.max()) + 1 if n else 0
        while True:
            vals = rng.integers(info.min, info.max, size=nclass, dtype=dtype, endpoint=True)
            if len(np.unique(vals)) == nclass:
                break
        return vals[ids]
    return ids.astype(dtype)


@dataclasses.dataclass(frozen=True)
class Case:
    n: int
    d: int
    dtype: str
    kind: str
    label_kind: str
    label_dtype: str
    seed: int
    cosine_safe: bool = False

    @cached_property
    def _arrays(self):
        rng = np.random.default_rng(self.seed)
        X = make_points(rng, self.n, self.d, np.dtype(self.dtype).type, self.kind)
        if self.cosine_safe:
            X = fix_zero_rows(X)
        labels = make_labels(rng, self.n, self.label_kind, np.dtype(self.label_dtype).type)
        return X, labels

    @property
    def X(self):
        return self._arrays[0].copy()

    @property
    def labels(self):
        return self._arrays[1].copy()


@st.composite
def cases(
    draw,
    min_n=1,
    max_n=60,
    min_d=1,
    max_d=20,
    dtypes=FLOAT_DTYPES,
    kinds=POINT_KINDS,
    label_kinds=LABEL_KINDS,
    label_dtypes=LABEL_DTYPES,
    cosine_safe=False,
):
    return Case(
        n=draw(st.integers(min_n, max_n)),
        d=draw(st.integers(min_d, max_d)),
        dtype=np.dtype(draw(st.sampled_from(dtypes))).name,
        kind=draw(st.sampled_from(kinds)),
        label_kind=draw(st.sampled_from(label_kinds)),
        label_dtype=np.dtype(draw(st.sampled_from(label_dtypes))).name,
        seed=draw(st.integers(0, 2**32 - 1)),
        cosine_safe=cosine_safe,
    )


@st.composite
def metric_cases(draw, metrics=oracle.METRICS, cosine_kinds=COSINE_KINDS, cosine_min_d=1, **kw):
    """(metric, Case) with point kinds restricted for cosine (see COSINE_KINDS).

    cosine_min_d=2 keeps cosine data away from d=1, where every pair of points is exactly
    parallel or anti-parallel (all cosine distances are exact ties at 0 or 2).
    """
    metric = draw(st.sampled_from(metrics))
    if metric == "cosine":
        kinds = tuple(k for k in kw.pop("kinds", POINT_KINDS) if k in cosine_kinds)
        kw["min_d"] = max(kw.get("min_d", 1), cosine_min_d)
        case = draw(cases(kinds=kinds, cosine_safe=True, **kw))
    else:
        case = draw(cases(**kw))
    return metric, case


# --------------------------------------------------------------------------
# tolerances and assertions
# --------------------------------------------------------------------------

# relative tolerance of distance values
DIST_RTOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-10}
# absolute tolerance for cosine distances (1 - cos suffers cancellation near 0)
COS_ATOL = {np.dtype(np.float32): 5e-6, np.dtype(np.float64): 1e-13}
# a float64 cosine distance computed two reasonable ways differs by at most this much
COS_TIE = 1e-13


def compute_dtype(*arrays):
    return (
        np.dtype(np.float32)
        if all(np.asarray(a).dtype == np.float32 for a in arrays)
        else np.dtype(np.float64)
    )


# mined distances are promised to be exact float64 values rounded to the compute dtype
MINED_RTOL = {np.dtype(np.float32): 1e-6, np.dtype(np.float64): 1e-12}


def assert_dist_close(got, want, dtype, metric, err="", mined=False):
    """Compare distance arrays; NaN must match NaN.

    mined=True: the values are promised to be exact float64 distances rounded to
    `dtype` (batch_hard / semi_hard), so the tolerance is tighter.
    """
    dtype = np.dtype(dtype)
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, err
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=f"NaN pattern {err}")
    if mined:
        rtol, atol = MINED_RTOL[dtype], (COS_TIE if metric == "cosine" else 0.0)
    else:
        rtol, atol = DIST_RTOL[dtype], (COS_ATOL[dtype] if metric == "cosine" else 0.0)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=err)
    # exact zeros stay exact zeros for the coordinate-difference metrics
    if metric != "cosine":
        np.testing.assert_array_equal(got == 0, want == 0, err_msg=f"zero pattern {err}")


def assert_index_matches(got, want, D, R, metric, err=""):
    """Indices chosen by the library vs the exact oracle, row by row.

    For euclidean / sqeuclidean the oracle is exact, so the index must be equal.
    For cosine the exact rational ranking and any float64 evaluation may order
    candidates whose cosine distances agree to ~1e-16 differently, so there we
    require: same -1 pattern, the library's candidate is within COS_TIE of the
    oracle's optimum, and no lower-index bit-identical duplicate row of the
    chosen one was eligible (the oracle's choice tells eligibility: -1 or not).
    """
    got = np.asarray(got)
    want = np.asarray(want)
    assert got.dtype == np.int64, f"index dtype {got.dtype} {err}"
    assert got.shape == want.shape, err
    if metric != "cosine":
        bad = np.nonzero(got != want)[0]
        assert len(bad) == 0, (
            f"index mismatch at rows {bad[:10].tolist()}: got {got[bad[:10]].tolist()} "
            f"want {want[bad[:10]].tolist()} {err}"
        )
        return
    np.testing.assert_array_equal(got < 0, want < 0, err_msg=f"-1 pattern {err}")
    for i in np.nonzero(want >= 0)[0]:
        g, w = int(got[i]), int(want[i])
        if g == w:
            continue
        assert 0 <= g < len(R), f"row {i}: index {g} out of range {err}"
        assert abs(D[i, g] - D[i, w]) <= COS_TIE, (
            f"row {i}: got {g} (d={D[i, g]!r}) want {w} (d={D[i, w]!r}) {err}"
        )
        dup_lower = [j for j in range(g) if np.array_equal(R[j], R[g])]
        assert w not in dup_lower, f"row {i}: got {g} but identical row {w} has a lower index {err}"
