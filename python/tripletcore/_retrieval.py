"""The ranking metrics of :func:`tripletcore.retrieval_metrics`, with
pytorch-metric-learning's ``AccuracyCalculator`` definitions.

Queries are ranked against a reference set by the exact k-NN kernel (ties
to the lowest index), in chunks of queries, so memory is one chunk's
``rows x depth`` indices, never ``queries x reference``. When the reference
set holds the queries (its first rows, ``ref_includes_query``), a query's
own row is left out of its ranking.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from ._errors import InputError

# Ranked entries (query rows x depth) per chunk.
_CHUNK_ENTRIES = 1 << 22


def ranking_depth(k: Any, max_count: int, n_ref: int, self_count: int) -> int:
    """PML's ``determine_k``: ``None`` the whole reference set, ``"max_bin_count"``
    the largest class count in the reference set; less the query itself."""
    avail = n_ref - self_count
    if k is None:
        return avail
    if k == "max_bin_count":
        return max(1, min(avail, max_count - self_count))
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or int(k) < 1:
        raise InputError(
            f"k must be a positive int, None or 'max_bin_count', got {k!r}", "k", "range"
        )
    return min(int(k), avail)


def ranked_labels(
    knn: Any,
    query: npt.NDArray[Any],
    reference: npt.NDArray[Any],
    ref_codes: npt.NDArray[np.int64],
    depth: int,
    metric: str,
    self_offset: bool,
    rows: npt.NDArray[np.int64],
) -> npt.NDArray[np.int64]:
    """Label codes of the ``depth`` nearest reference rows of each query in
    ``rows`` (nearest first); with ``self_offset`` query i skips reference row i."""
    out = np.empty((rows.size, depth), dtype=np.int64)
    step = max(1, _CHUNK_ENTRIES // max(1, depth + 1))
    extra = int(self_offset)
    for s in range(0, rows.size, step):
        part = rows[s : s + step]
        idx = knn(query[part], depth + extra, reference, metric=metric).indices
        if self_offset:
            own = idx == part[:, None]
            # drop the query's own row where it is ranked, else the last column
            drop = np.where(own.any(axis=1), own.argmax(axis=1), depth)
            keep = np.ones(idx.shape, dtype=bool)
            keep[np.arange(part.size), drop] = False
            idx = idx[keep].reshape(part.size, depth)
        out[s : s + step] = ref_codes[idx]
    return out


def ranking_metrics(
    rel: npt.NDArray[np.bool_], r: npt.NDArray[np.int64], ks: Sequence[int], depth: int
) -> dict[str, Any]:
    """PML's definitions from the relevance of each ranked column (queries x
    columns) and each query's count ``r`` of relevant reference rows."""
    cols = np.arange(1, rel.shape[1] + 1)
    within = rel[:, :depth]
    ranks = cols[:depth]
    within_r = ranks[None, :] <= r[:, None]
    hits_r = within & within_r
    r_precision = hits_r.sum(axis=1) / np.minimum(r, depth)
    precision_at_i = np.cumsum(within, axis=1) / ranks[None, :]
    map_at_r = (precision_at_i * hits_r).sum(axis=1) / r
    mean_ap = (precision_at_i * within).sum(axis=1) / r
    first = np.where(within.any(axis=1), within.argmax(axis=1) + 1, 0)
    mrr = np.where(first > 0, 1.0 / np.maximum(first, 1), 0.0)
    return {
        "precision_at_1": float(within[:, 0].mean()),
        "recall_at": {kk: float(rel[:, : min(kk, rel.shape[1])].any(axis=1).mean()) for kk in ks},
        "r_precision": float(r_precision.mean()),
        "map_at_r": float(map_at_r.mean()),
        "mean_average_precision": float(mean_ap.mean()),
        "mean_reciprocal_rank": float(mrr.mean()),
    }


def adjusted_mutual_info(a: npt.NDArray[Any], b: npt.NDArray[Any]) -> float:
    """AMI with the arithmetic-mean normalisation (scikit-learn's default):
    ``(MI - E[MI]) / (mean(H(a), H(b)) - E[MI])``, the expectation under the
    hypergeometric model of random labelings with the same cluster sizes."""
    _, ia = np.unique(a, return_inverse=True)
    _, ib = np.unique(b, return_inverse=True)
    ra, rb = int(ia.max()) + 1, int(ib.max()) + 1
    if ra == rb == 1 or ra == rb == ia.size:
        return 1.0
    n = ia.size
    joint = np.zeros((ra, rb))
    np.add.at(joint, (ia, ib), 1.0)
    sa, sb = joint.sum(axis=1), joint.sum(axis=0)
    nz = joint > 0
    mi = float((joint[nz] / n * np.log(n * joint[nz] / np.outer(sa, sb)[nz])).sum())
    ha = float(-(sa / n * np.log(sa / n)).sum())
    hb = float(-(sb / n * np.log(sb / n)).sum())
    emi = _expected_mutual_info(sa.astype(np.int64), sb.astype(np.int64), n)
    denom = (ha + hb) / 2 - emi
    eps = float(np.finfo(np.float64).eps)
    denom = min(denom, -eps) if denom < 0 else max(denom, eps)
    return (mi - emi) / denom


def _expected_mutual_info(sa: npt.NDArray[np.int64], sb: npt.NDArray[np.int64], n: int) -> float:
    logfact = np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, n + 1, dtype=np.float64)))])
    total = 0.0
    for ai in sa.tolist():
        for bj in sb.tolist():
            lo, hi = max(1, ai + bj - n), min(ai, bj)
            if lo > hi:
                continue
            nij = np.arange(lo, hi + 1)
            term = nij / n * np.log(n * nij / (ai * bj))
            log_p = (
                logfact[ai]
                + logfact[bj]
                + logfact[n - ai]
                + logfact[n - bj]
                - logfact[n]
                - logfact[nij]
                - logfact[ai - nij]
                - logfact[bj - nij]
                - logfact[n - ai - bj + nij]
            )
            total += float((term * np.exp(log_p)).sum())
    return total if math.isfinite(total) else 0.0
