"""Run pytorch-metric-learning's own tests against tripletcore's drop-in classes.

Usage (from a scratch folder holding PML's ``tests/`` from its repository)::

    TEST_DEVICE=cpu TEST_DTYPES=float32,float64 \\
        python /path/to/tools/pml_shim.py tests/miners/test_batch_hard_miner.py ...

It replaces PML's ``BatchHardMiner``, ``TripletMarginMiner``,
``TripletMarginLoss`` and ``AccuracyCalculator`` by thin adapters that map
PML's constructor arguments (``distance``, ``reducer``...) onto tripletcore's
and run the tripletcore classes, then runs pytest. Options with no
tripletcore equivalent raise ``NotImplementedError`` (so a test that needs
one fails rather than passing through PML). Nothing of PML is copied here.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import torch
from pytorch_metric_learning import distances as pml_distances
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import miners as pml_miners
from pytorch_metric_learning import reducers as pml_reducers
from pytorch_metric_learning.utils import accuracy_calculator as pml_accuracy
from pytorch_metric_learning.utils import inference as pml_inference

import tripletcore as tc
from tripletcore import torch as tct


def metric_of(distance: Any) -> tuple[str, bool]:
    """(metric, normalize) for a PML distance object (None: PML's default LpDistance())."""
    if distance is None:
        return "euclidean", True
    if isinstance(distance, pml_distances.CosineSimilarity):
        return "cosine", False
    if isinstance(distance, pml_distances.LpDistance) and distance.p == 2:
        if distance.power == 1:
            return "euclidean", bool(distance.normalize_embeddings)
        if distance.power == 2:
            return "sqeuclidean", bool(distance.normalize_embeddings)
    raise NotImplementedError(f"no tripletcore metric for {distance!r}")


def reduction_of(reducer: Any) -> str:
    if reducer is None or isinstance(reducer, pml_reducers.AvgNonZeroReducer):
        return "mean_nonzero"
    if isinstance(reducer, pml_reducers.MeanReducer):
        return "mean"
    if isinstance(reducer, pml_reducers.SumReducer):
        return "sum"
    raise NotImplementedError(f"no tripletcore reduction for {reducer!r}")


def no_extra(kwargs: dict[str, Any], allowed: tuple[str, ...]) -> None:
    extra = set(kwargs) - set(allowed)
    if extra:
        raise NotImplementedError(f"options without a tripletcore equivalent: {sorted(extra)}")


class BatchHardMiner(tct.BatchHardMiner):
    def __init__(self, **kwargs: Any) -> None:
        no_extra(kwargs, ("distance",))
        metric, normalize = metric_of(kwargs.get("distance"))
        super().__init__(metric=metric, normalize=normalize)


class TripletMarginMiner(tct.TripletMarginMiner):
    def __init__(self, margin: float = 0.2, type_of_triplets: str = "all", **kwargs: Any) -> None:
        no_extra(kwargs, ("distance",))
        metric, normalize = metric_of(kwargs.get("distance"))
        super().__init__(margin, type_of_triplets, metric=metric, normalize=normalize)


class TripletMarginLoss(tct.TripletMarginLoss):
    """PML's defaults: margin 0.05, every triplet, mean over the non-zero losses."""

    def __init__(
        self,
        margin: float = 0.05,
        swap: bool = False,
        smooth_loss: bool = False,
        triplets_per_anchor: Any = "all",
        **kwargs: Any,
    ) -> None:
        no_extra(kwargs, ("distance", "reducer"))
        if swap or triplets_per_anchor != "all":
            raise NotImplementedError("swap and triplets_per_anchor have no equivalent")
        metric, normalize = metric_of(kwargs.get("distance"))
        super().__init__(
            margin,
            mining="batch_all",
            metric=metric,
            normalize=normalize,
            reduction=reduction_of(kwargs.get("reducer")),
            smooth_loss=smooth_loss,
        )


KEYS = {
    "precision_at_1": "precision_at_1",
    "r_precision": "r_precision",
    "mean_average_precision_at_r": "map_at_r",
    "mean_average_precision": "mean_average_precision",
    "mean_reciprocal_rank": "mean_reciprocal_rank",
    "NMI": "nmi",
    "AMI": "ami",
}


def _array(a: Any) -> np.ndarray:
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


def _labels(a: Any) -> np.ndarray:
    v = _array(a)
    if v.ndim != 1:
        raise NotImplementedError("multi-dimensional labels")
    if v.dtype.kind == "f":
        if not np.all(v == np.round(v)):
            raise NotImplementedError("non-integer labels")
        v = v.astype(np.int64)
    return v


class AccuracyCalculator:
    def __init__(
        self,
        include: Any = (),
        exclude: Any = (),
        avg_of_avgs: bool = False,
        return_per_class: bool = False,
        k: Any = None,
        label_comparison_fn: Any = None,
        device: Any = None,
        knn_func: Any = None,
        kmeans_func: Any = None,
    ) -> None:
        if avg_of_avgs or return_per_class or label_comparison_fn is not None:
            raise NotImplementedError("avg_of_avgs, return_per_class, label_comparison_fn")
        if kmeans_func is not None:
            raise NotImplementedError("kmeans_func (tripletcore clusters with its own k-means)")
        self.metric = "euclidean"
        exact_l2 = isinstance(knn_func, pml_inference.FaissKNN) and (
            knn_func.index_init_fn.__name__ == "IndexFlatL2"
        )
        if knn_func is not None and not exact_l2:  # an exact L2 index ranks as euclidean
            if not isinstance(knn_func, pml_inference.CustomKNN):
                raise NotImplementedError(f"knn_func {knn_func!r}")
            distance = knn_func.distance
            distance = getattr(distance, "distance", distance)  # unwrap BatchedDistance
            self.metric, normalize = metric_of(distance)
            if normalize:
                raise NotImplementedError("normalised CustomKNN distance")
        for names in (include, exclude):
            if not isinstance(names, (tuple, list)):
                raise TypeError("include/exclude must be tuples")
            if not set(names) <= set(KEYS):
                raise ValueError(f"unknown metrics {set(names) - set(KEYS)}")
        if not ((isinstance(k, int) and k > 0) or k in (None, "max_bin_count")):
            raise ValueError("k must be an integer > 0, None or 'max_bin_count'")
        self.k, self.include, self.exclude = k, tuple(include), tuple(exclude)

    def get_accuracy(
        self,
        query: Any,
        query_labels: Any,
        reference: Any = None,
        reference_labels: Any = None,
        ref_includes_query: bool = False,
        include: Any = (),
        exclude: Any = (),
    ) -> dict[str, float]:
        names = list(include or self.include or KEYS)
        names = [n for n in names if n not in (exclude or self.exclude)]
        q, ql = _array(query).astype(np.float32), _labels(query_labels)
        ref = rl = None
        if reference is not None:
            ref, rl = _array(reference).astype(np.float32), _labels(reference_labels)
        got = tc.retrieval_metrics(
            q, ql, ref, rl, metric=self.metric, ref_includes_query=ref_includes_query, k=self.k
        )
        return {n: getattr(got, KEYS[n]) for n in names}


def install() -> None:
    pml_miners.BatchHardMiner = BatchHardMiner
    pml_miners.TripletMarginMiner = TripletMarginMiner
    pml_losses.TripletMarginLoss = TripletMarginLoss
    pml_accuracy.AccuracyCalculator = AccuracyCalculator


if __name__ == "__main__":
    import pytest

    install()
    sys.exit(pytest.main(["-p", "no:cacheprovider", *sys.argv[1:]]))
