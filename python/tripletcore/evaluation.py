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
    """Retrieval quality of embeddings (each row queried against the others).

    ``recall_at`` maps K to Recall@K (a same-class point among the K
    nearest); ``precision_at_1``, ``r_precision`` and ``map_at_r`` follow
    pytorch-metric-learning's AccuracyCalculator; ``nmi`` is the normalised
    mutual information between the labels and a k-means clustering with one
    cluster per class. Queries whose class has no other member are left
    out (``queries`` says how many were used)."""

    precision_at_1: float
    recall_at: dict[int, float]
    r_precision: float
    map_at_r: float
    nmi: float
    queries: int


def retrieval_metrics(
    X: Any,
    labels: Any,
    *,
    ks: Sequence[int] = (1, 2, 4, 8),
    metric: Metric = "euclidean",
    seed: int = 0,
) -> RetrievalMetrics:
    """Recall@K, precision@1, R-precision, MAP@R and NMI of ``X``: every row
    is a query, the other rows are the gallery. Exact neighbours (ties by
    lowest index), so the numbers are those of the definitions, not of an
    approximate index."""
    metric = as_choice(metric, "metric", METRICS)
    x, _ = as_pair(X, None)
    lab = as_labels(labels, "labels", x.shape[0], "X")
    seed = as_int(seed, "seed")
    plan = RetrievalPlan.of(lab, ks, x.shape[0])
    nbrs = knn(x, plan.k, metric=metric).indices[plan.queries]
    return plan.scores(nbrs, kmeans(np.asarray(x, np.float64), plan.classes, seed=seed))


class RetrievalPlan(NamedTuple):
    """The queries of :func:`retrieval_metrics` and how many neighbours they
    need (shared with ``tripletcore.torch.retrieval_metrics``)."""

    ks: tuple[int, ...]
    inverse: IntArray  # class of each row, 0..classes-1
    r: IntArray  # same-class points other than the row
    queries: IntArray  # rows with r > 0
    k: int  # neighbours per query
    classes: int

    @classmethod
    def of(cls, lab: IntArray, ks: Sequence[int], n: int) -> RetrievalPlan:
        ks = tuple(as_int(k, "ks") for k in ks)
        if not ks or min(ks) < 1:
            raise InputError(f"ks must be positive integers, got {ks}", "ks", "range")
        _, inverse, counts = np.unique(lab, return_inverse=True, return_counts=True)
        r = counts[inverse] - 1  # same-class points other than the query
        queries = np.flatnonzero(r > 0)
        if queries.size == 0:
            raise InputError(
                "no class has two or more points: no query has a relevant neighbour",
                "labels",
                "range",
            )
        k = min(max(max(ks), int(r.max())), n - 1)
        return cls(ks, inverse, r, queries, k, len(counts))

    def scores(self, nbrs: IntArray, clusters: IntArray) -> RetrievalMetrics:
        """The metrics from the queries' neighbours (nearest first) and a clustering."""
        k, queries, inverse = self.k, self.queries, self.inverse
        rel = inverse[nbrs] == inverse[queries][:, None]
        rq = self.r[queries]
        ranks = np.arange(1, k + 1)
        within_r = ranks[None, :] <= rq[:, None]
        r_precision = (rel & within_r).sum(axis=1) / rq
        precision_at_i = np.cumsum(rel, axis=1) / ranks[None, :]
        map_at_r = (precision_at_i * (rel & within_r)).sum(axis=1) / rq
        recall = {kk: float(rel[:, : min(kk, k)].any(axis=1).mean()) for kk in self.ks}
        return RetrievalMetrics(
            precision_at_1=float(rel[:, 0].mean()),
            recall_at=recall,
            r_precision=float(r_precision.mean()),
            map_at_r=float(map_at_r.mean()),
            nmi=normalized_mutual_info(inverse, clusters),
            queries=int(queries.size),
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
