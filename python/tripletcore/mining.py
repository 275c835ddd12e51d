"""Triplet mining: batch-hard and semi-hard."""

from __future__ import annotations

from typing import Any, NamedTuple

from . import _core
from ._convert import (
    FloatArray,
    IntArray,
    as_label_pair,
    as_labels,
    as_margin,
    as_pair,
)
from ._errors import InputError
from ._options import FALLBACKS, METRICS, Fallback, Metric, as_choice


class BatchHardResult(NamedTuple):
    """Per anchor: the farthest positive and the nearest negative.

    Indices are int64 (into ``Y`` when a reference set is given); ``-1`` and
    NaN mark an anchor with no positive or no negative.
    """

    pos_idx: IntArray
    pos_dist: FloatArray
    neg_idx: IntArray
    neg_dist: FloatArray


class SemiHardResult(NamedTuple):
    """One triplet per ordered positive pair, in order of anchor then positive."""

    anchor: IntArray
    positive: IntArray
    negative: IntArray
    pos_dist: FloatArray
    neg_dist: FloatArray


def batch_hard(
    X: Any,
    labels: Any,
    Y: Any = None,
    ref_labels: Any = None,
    *,
    metric: Metric = "euclidean",
) -> BatchHardResult:
    """Batch-hard mining (Hermans et al. 2017) without the N x N matrix.

    For each row of ``X``: the same-label reference row at the largest
    distance (the anchor itself excluded when ``Y`` is None) and the
    other-label row at the smallest distance. ``Y``/``ref_labels`` give a
    separate reference set, e.g. a cross-batch memory; then every same-label
    row of ``Y`` is eligible. Indices are the exact arg-max/arg-min of the
    float64 distance, ties broken by the lowest index.
    """
    metric = as_choice(metric, "metric", METRICS)
    if (Y is None) != (ref_labels is None):
        raise InputError("Y and ref_labels must be given together", "ref_labels", "conflict")
    x, y = as_pair(X, Y)
    if y is None:
        lab, rlab = as_labels(labels, "labels", x.shape[0], "X"), None
    else:
        lab, rlab = as_label_pair(labels, ref_labels, x.shape[0], y.shape[0])
    return BatchHardResult(*_core.batch_hard(x, lab, metric, y, rlab))


def semi_hard(
    X: Any,
    labels: Any,
    *,
    margin: float = 0.2,
    metric: Metric = "euclidean",
    fallback: Fallback = "hardest",
) -> SemiHardResult:
    """Semi-hard mining: for every ordered positive pair ``(a, p)`` the nearest
    negative ``n`` with ``d(a,p) < d(a,n) < d(a,p) + margin``.

    ``margin=float("inf")`` drops the upper bound (TensorFlow Addons'
    semantics). When no such negative exists, ``fallback`` takes the nearest
    negative (``"hardest"``), the farthest (``"easiest"``, as TF Addons), or
    no triplet (``"drop"``). Ties: lowest index.
    """
    metric = as_choice(metric, "metric", METRICS)
    fallback = as_choice(fallback, "fallback", FALLBACKS)
    x, _ = as_pair(X, None)
    lab = as_labels(labels, "labels", x.shape[0], "X")
    return SemiHardResult(*_core.semi_hard(x, lab, as_margin(margin), metric, fallback))
