"""The triplet margin loss with its exact gradient."""

from __future__ import annotations

from typing import Any, Literal, overload

import numpy as np
import numpy.typing as npt

from . import _core
from ._convert import FloatArray, as_labels, as_margin, as_pair
from ._options import (
    FALLBACKS,
    METRICS,
    MININGS,
    REDUCTIONS,
    Fallback,
    Metric,
    Mining,
    Reduction,
    ScalarReduction,
    as_choice,
)


@overload
def triplet_margin_loss(
    X: Any,
    labels: Any,
    *,
    margin: float = ...,
    mining: Mining = ...,
    metric: Metric = ...,
    soft: bool = ...,
    reduction: ScalarReduction = ...,
    fallback: Fallback = ...,
) -> tuple[float, FloatArray]: ...


@overload
def triplet_margin_loss(
    X: Any,
    labels: Any,
    *,
    margin: float = ...,
    mining: Mining = ...,
    metric: Metric = ...,
    soft: bool = ...,
    reduction: Literal["none"],
    fallback: Fallback = ...,
) -> tuple[npt.NDArray[np.float64], FloatArray]: ...


@overload
def triplet_margin_loss(
    X: Any,
    labels: Any,
    *,
    margin: float = ...,
    mining: Mining = ...,
    metric: Metric = ...,
    soft: bool = ...,
    reduction: Reduction,
    fallback: Fallback = ...,
) -> tuple[float | npt.NDArray[np.float64], FloatArray]: ...


def triplet_margin_loss(
    X: Any,
    labels: Any,
    *,
    margin: float = 0.2,
    mining: Mining = "batch_hard",
    metric: Metric = "euclidean",
    soft: bool = False,
    reduction: Reduction = "mean",
    fallback: Fallback = "hardest",
) -> tuple[float | npt.NDArray[np.float64], FloatArray]:
    """Triplet loss ``[d(a,p) - d(a,n) + margin]_+`` and its gradient.

    ``soft=True`` uses ``log(1 + exp(d(a,p) - d(a,n)))`` instead (margin
    ignored). ``mining`` picks the triplets: ``"batch_hard"`` (one per anchor
    having a positive and a negative), ``"semi_hard"`` (as :func:`semi_hard`,
    with ``fallback``) or ``"batch_all"`` (every valid triplet, computed by
    sorting in O(N^2 log N) time without listing them). ``reduction``:
    ``"mean"`` over triplets, ``"sum"``, ``"mean_nonzero"`` (mean over
    triplets with positive loss, pytorch-metric-learning's default) or
    ``"none"`` (per-anchor sums, length N).

    Returns ``(loss, grad)``: ``loss`` a float (an array for ``"none"``),
    ``grad`` the gradient of the loss (of its sum for ``"none"``) with
    respect to ``X``, with the mined triplets held fixed. No valid triplet
    gives loss 0 and a zero gradient.
    """
    metric = as_choice(metric, "metric", METRICS)
    mining = as_choice(mining, "mining", MININGS)
    reduction = as_choice(reduction, "reduction", REDUCTIONS)
    fallback = as_choice(fallback, "fallback", FALLBACKS)
    x, _ = as_pair(X, None)
    lab = as_labels(labels, "labels", x.shape[0], "X")
    loss, grad = _core.triplet_margin_loss(
        x, lab, as_margin(margin), mining, metric, bool(soft), reduction, fallback
    )
    return without_negative_zero(loss), grad


def without_negative_zero(loss: Any) -> Any:
    """``loss`` with ``-0.0`` (an empty sum scaled by a negative) made ``0.0``.

    Adding ``0.0`` maps ``-0.0`` to ``0.0`` and leaves every other value as it is.
    """
    if isinstance(loss, np.ndarray):
        return np.add(loss, 0.0, out=loss)
    return loss + 0.0
