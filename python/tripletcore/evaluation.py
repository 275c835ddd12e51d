"""Exact nearest neighbours and the retrieval metrics of metric-learning
papers, with pytorch-metric-learning's AccuracyCalculator definitions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from . import _core
from ._convert import FloatArray, IntArray, as_int, as_labels, as_pair
from ._errors import InputError
from ._options import METRICS, Metric, as_choice
from ._retrieval import adjusted_mutual_info, ranked_labels, ranking_depth, ranking_metrics


class KnnResult(NamedTuple):
    """``(distances, indices)``, in scikit-learn's ``kneighbors`` and faiss's
    ``search`` order: ``indices[i]`` are the ``k`` nearest reference rows of
    query ``i``, nearest first (ties: lowest index); ``distances[i]`` their
    distances. Both ``(n_queries, k)``; indices int64, distances of the
    inputs' float type."""

    distances: FloatArray
    indices: IntArray


def knn(
    X: Any,
    k: int,
    Y: Any = None,
    *,
    metric: Metric = "euclidean",
    exclude_self: bool = True,
) -> KnnResult:
    """Exact ``k`` nearest neighbours of every row of ``X`` among the rows of
    ``Y`` (``Y=None``: among the rows of ``X``; then ``exclude_self`` keeps a
    row from being its own neighbour, while other rows equal to it still
    count). Fused tiled kernel: O(N k) memory, no N x M matrix; candidates
    are ranked by exact float64 distances."""
    metric = as_choice(metric, "metric", METRICS)
    if isinstance(k, bool) or not isinstance(k, int | np.integer):
        raise TypeError(f"k must be an int, got {type(k).__name__}")
    x, y = as_pair(X, Y)
    available = x.shape[0] - 1 if y is None and exclude_self else (x if y is None else y).shape[0]
    if int(k) < 1:
        raise InputError(f"k must be >= 1, got {k}", "k", "range")
    if int(k) > available:
        raise InputError(
            f"k must be between 1 and {available} (the neighbours available), got {k}", "k", "range"
        )
    indices, distances = _core.knn(x, int(k), y, metric, bool(exclude_self))
    return KnnResult(distances=distances, indices=indices)


class RetrievalMetrics(NamedTuple):
    """Retrieval quality of embeddings: queries ranked against a reference set.

    ``recall_at`` maps K to Recall@K (a same-class point among the K
    nearest); ``precision_at_1``, ``r_precision``, ``map_at_r``,
    ``mean_average_precision`` and ``mean_reciprocal_rank`` follow
    pytorch-metric-learning's AccuracyCalculator (over its ranking depth
    ``k``); ``nmi`` and ``ami`` compare the query labels with a k-means
    clustering of the queries, one cluster per query class. Queries whose
    class has no other member in the reference set are left out of the
    ranking metrics (``queries`` says how many were used)."""

    precision_at_1: float
    recall_at: dict[int, float]
    r_precision: float
    map_at_r: float
    nmi: float
    queries: int
    mean_average_precision: float
    mean_reciprocal_rank: float
    ami: float


def retrieval_metrics(
    X: Any,
    labels: Any,
    reference: Any = None,
    reference_labels: Any = None,
    *,
    ks: Sequence[int] = (1, 2, 4, 8),
    metric: Metric = "euclidean",
    seed: int = 0,
    ref_includes_query: bool = False,
    k: int | str | None = None,
) -> RetrievalMetrics:
    """Recall@K, precision@1, R-precision, MAP@R, MAP, MRR, NMI and AMI of
    the queries ``X`` (with ``labels``) ranked against ``reference``.

    As PML's ``AccuracyCalculator.get_accuracy(query, query_labels,
    reference, reference_labels, ref_includes_query)``: ``reference=None``
    ranks every row against the other rows; ``ref_includes_query=True``
    says the first ``len(X)`` reference rows are the queries (each is left
    out of its own ranking). ``k``: PML's ranking depth (``None``: the whole
    reference set, an int, or ``"max_bin_count"``); R-precision and MAP@R
    are cut at it. Exact neighbours (ties by lowest index), so the numbers
    are those of the definitions, not of an approximate index. Memory: one
    chunk of query rows x depth at a time."""
    metric = as_choice(metric, "metric", METRICS)
    x, _ = as_pair(X, None)
    lab = as_labels(labels, "labels", x.shape[0], "X")
    return scored_retrieval(
        x, lab, reference, reference_labels, ks, metric, seed, ref_includes_query, k, knn
    )


def scored_retrieval(
    x: FloatArray,
    lab: IntArray,
    reference: Any,
    reference_labels: Any,
    ks: Sequence[int],
    metric: str,
    seed: int,
    ref_includes_query: bool,
    k: int | str | None,
    knn: Any,
) -> RetrievalMetrics:
    """:func:`retrieval_metrics` of checked queries ``x``/``lab``, the
    neighbours from ``knn`` (the NumPy function, or the torch one on a
    device: ``tripletcore.torch.retrieval_metrics``)."""
    ks = tuple(as_int(v, "ks") for v in ks)
    seed = as_int(seed, "seed")
    if not ks or min(ks) < 1:
        raise InputError(f"ks must be positive integers, got {ks}", "ks", "range")
    if (reference is None) != (reference_labels is None):
        raise InputError(
            "reference and reference_labels must be given together",
            "reference_labels" if reference_labels is None else "reference",
            "conflict",
        )
    if reference is None:
        y, rlab, self_ref = x, lab, True
    else:
        x, y_given = as_pair(x, reference, ("X", "reference"))
        assert y_given is not None
        y = y_given
        rlab = as_labels(reference_labels, "reference_labels", y.shape[0], "reference")
        self_ref = bool(ref_includes_query)
        if self_ref and not (
            y.shape[0] >= x.shape[0]
            and np.array_equal(y[: x.shape[0]], x)
            and np.array_equal(rlab[: x.shape[0]], lab)
        ):
            raise InputError(
                "ref_includes_query=True needs the first len(X) reference rows (and labels) "
                "to be the queries",
                "ref_includes_query",
                "conflict",
            )
    classes, inverse = np.unique(lab, return_inverse=True)
    ref_in = np.searchsorted(classes, rlab).clip(max=classes.size - 1)
    ref_codes = np.where(classes[ref_in] == rlab, ref_in, -1).astype(np.int64)
    counts = np.bincount(ref_codes[ref_codes >= 0], minlength=classes.size)
    r = counts[inverse] - int(self_ref)  # relevant reference rows per query
    queries = np.flatnonzero(r > 0)
    if queries.size == 0:
        what = (
            "no class has two or more points"
            if reference is None
            else "no query has a same-class reference row other than itself"
        )
        raise InputError(f"{what}: no query has a relevant neighbour", "labels", "range")
    depth = ranking_depth(k, int(counts.max()), y.shape[0], int(self_ref))
    cols = min(max(depth, max(ks)), y.shape[0] - int(self_ref))
    codes = ranked_labels(knn, x, y, ref_codes, cols, metric, self_ref, queries)
    rel = codes == inverse[queries][:, None]
    ranking = ranking_metrics(rel, r[queries], ks, depth)
    clusters = kmeans(np.asarray(x, np.float64), len(classes), seed=seed)
    return RetrievalMetrics(
        nmi=normalized_mutual_info(inverse, clusters),
        ami=adjusted_mutual_info(inverse, clusters),
        queries=int(queries.size),
        **ranking,
    )


def kmeans(
    X: npt.NDArray[np.float64], k: int, seed: int = 0, n_init: int = 4, iters: int = 100
) -> IntArray:
    """Lloyd's k-means with k-means++ seeding, best of ``n_init`` starts;
    the assignment step uses the exact nearest-centre kernel."""
    rng = np.random.default_rng(seed)
    X = _unit_scale(X)
    n = X.shape[0]
    k = min(k, n)
    best: tuple[float, IntArray] | None = None
    for _ in range(n_init):
        centres = [X[rng.integers(n)]]
        d2 = ((X - centres[0]) ** 2).sum(axis=1)
        for _ in range(1, k):
            total = d2.sum()
            pick = rng.integers(n) if total == 0 else rng.choice(n, p=d2 / total)
            centres.append(X[pick])
            d2 = np.minimum(d2, ((X - X[pick]) ** 2).sum(axis=1))
        c = np.array(centres)
        assign = np.full(n, -1, dtype=np.int64)
        for _ in range(iters):
            new = knn(X, 1, c).indices[:, 0]
            if np.array_equal(new, assign):
                break
            assign = new
            for j in range(k):
                members = X[assign == j]
                if len(members):
                    c[j] = members.mean(axis=0)
        inertia = float(((X - c[assign]) ** 2).sum())
        if best is None or inertia < best[0]:
            best = (inertia, assign)
    assert best is not None
    return best[1]


def _unit_scale(X: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """``X`` times the power of two that brings its largest magnitude into [0.5, 1).

    Clustering is scale-invariant, and squared distances of rows beyond
    ~1e154 overflow (or below ~1e-162 underflow); the power-of-two factor is
    exact, so the clustering of ordinary data is unchanged bit for bit.
    """
    top = float(np.abs(X).max()) if X.size else 0.0
    if top == 0.0 or not np.isfinite(top):
        return X
    _, exponent = np.frexp(top)
    if -64 <= exponent <= 64:
        return X  # squares are far from the range's ends
    return np.ldexp(X, -int(exponent))


def normalized_mutual_info(
    a: npt.NDArray[np.integer[Any]], b: npt.NDArray[np.integer[Any]]
) -> float:
    """NMI with the arithmetic-mean normalisation (scikit-learn's default);
    1.0 when both labelings are a single cluster."""
    _, ia = np.unique(a, return_inverse=True)
    _, ib = np.unique(b, return_inverse=True)
    joint = np.zeros((ia.max() + 1, ib.max() + 1))
    np.add.at(joint, (ia, ib), 1.0)
    p = joint / joint.sum()
    pa, pb = p.sum(axis=1), p.sum(axis=0)
    nz = p > 0
    mi = float((p[nz] * np.log(p[nz] / np.outer(pa, pb)[nz])).sum())
    ha = float(-(pa * np.log(pa)).sum())
    hb = float(-(pb * np.log(pb)).sum())
    if ha == 0.0 and hb == 0.0:
        return 1.0
    return max(0.0, mi / ((ha + hb) / 2))
