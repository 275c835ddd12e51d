"""The triplet margin loss for torch tensors: functional form and nn.Module."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .._errors import InputError
from .._options import FALLBACKS, METRICS, MININGS, REDUCTIONS, as_choice
from ._backend import check_backend_name, resolve_backend
from ._checks import (
    check_chunk_size,
    check_embeddings,
    check_finite,
    check_labels,
    check_margin,
    compute_dtype,
)
from ._triplets import triplet_loss
from .distributed import all_gather_with_grad


def _prepare(x: Tensor, normalize: bool) -> Tensor:
    x = x.to(compute_dtype(x.dtype))
    return torch.nn.functional.normalize(x, dim=1) if normalize else x


def triplet_margin_loss(
    embeddings: Tensor,
    labels: Tensor,
    margin: float = 0.2,
    mining: str = "batch_hard",
    metric: str = "euclidean",
    soft: bool = False,
    normalize: bool = False,
    reduction: str = "mean",
    fallback: str = "hardest",
    *,
    backend: str = "auto",
    distributed: bool = False,
    chunk_size: int | None = None,
) -> Tensor:
    """Triplet loss ``[d(a,p) - d(a,n) + margin]_+`` of mined triplets, differentiable.

    Semantics as :func:`tripletcore.triplet_margin_loss` (mining
    ``"batch_hard"``, ``"semi_hard"`` with ``fallback``, ``"batch_all"``;
    reductions ``"mean"``, ``"sum"``, ``"mean_nonzero"``, ``"none"`` =
    per-anchor sums; ``soft=True``: ``log(1 + exp(d_ap - d_an))``). The
    gradient is exact with the mined triplets held fixed.

    ``normalize=True`` L2-normalises the rows first (through autograd).
    ``backend``: ``"rust"`` (CPU, the Rust kernels, zero-copy), ``"torch"``
    (tiled torch ops on any device, never the whole N x N matrix) or
    ``"auto"`` (Rust on CPU, torch elsewhere). ``distributed=True`` mines over
    the batches of all ranks (see :mod:`tripletcore.torch.distributed`).
    ``chunk_size``: rows per tile on the torch path (default: a 256 MB budget).

    Returns a 0-d tensor, or for ``reduction="none"`` one entry per row (of
    the global batch when distributed). float16/bfloat16 (CUDA only) are
    computed, and returned, in float32.
    """
    mining = as_choice(mining, "mining", MININGS)
    metric = as_choice(metric, "metric", METRICS)
    reduction = as_choice(reduction, "reduction", REDUCTIONS)
    fallback = as_choice(fallback, "fallback", FALLBACKS)
    m = check_margin(margin)
    chunk_size = check_chunk_size(chunk_size)
    x = check_embeddings(embeddings, finite=False)
    lab = check_labels(labels, x)
    engine = resolve_backend(backend, x.device)
    if distributed or not engine.loss_checks_finite:
        check_finite(x)
    x = _prepare(x, bool(normalize))
    if distributed:
        x, lab = all_gather_with_grad(x, lab)
    return engine.loss(
        x, lab, m, mining, metric, bool(soft), reduction, fallback, chunk_size=chunk_size
    )


class TripletMarginLoss(torch.nn.Module):
    """Module form of :func:`triplet_margin_loss` (mining built in).

    ``forward(embeddings, labels)`` mines and scores; given
    ``indices_tuple=(anchor, positive, negative)`` (e.g. from a
    pytorch-metric-learning miner) it scores those triplets instead.
    """

    def __init__(
        self,
        margin: float = 0.2,
        mining: str = "batch_hard",
        metric: str = "euclidean",
        soft: bool = False,
        normalize: bool = False,
        reduction: str = "mean",
        fallback: str = "hardest",
        *,
        backend: str = "auto",
        distributed: bool = False,
        chunk_size: int | None = None,
    ) -> None:
        super().__init__()
        self.margin = check_margin(margin)
        self.mining = as_choice(mining, "mining", MININGS)
        self.metric = as_choice(metric, "metric", METRICS)
        self.soft = bool(soft)
        self.normalize = bool(normalize)
        self.reduction = as_choice(reduction, "reduction", REDUCTIONS)
        self.fallback = as_choice(fallback, "fallback", FALLBACKS)
        self.backend = check_backend_name(backend)
        self.distributed = bool(distributed)
        self.chunk_size = check_chunk_size(chunk_size)

    def forward(self, embeddings: Tensor, labels: Tensor, indices_tuple: Any = None) -> Tensor:
        """The loss of a batch: ``embeddings`` (N, d) float32/float64 on any
        device, ``labels`` (N,) integers. Without ``indices_tuple`` the
        module's ``mining`` picks the triplets; with ``(anchor, positive,
        negative)`` index tensors (a PML miner's output) exactly those are
        scored. Returns a 0-d tensor (length N per-anchor sums for
        ``reduction="none"``) that backpropagates to ``embeddings``."""
        if indices_tuple is not None:
            return self._given_triplets(embeddings, labels, indices_tuple)
        return triplet_margin_loss(
            embeddings,
            labels,
            self.margin,
            self.mining,
            self.metric,
            self.soft,
            self.normalize,
            self.reduction,
            self.fallback,
            backend=self.backend,
            distributed=self.distributed,
            chunk_size=self.chunk_size,
        )

    def _given_triplets(self, embeddings: Tensor, labels: Tensor, indices: Any) -> Tensor:
        if self.distributed:
            raise InputError(
                "indices_tuple refers to the local batch; not with distributed=True",
                "indices_tuple",
                "conflict",
            )
        x = check_embeddings(embeddings)
        check_labels(labels, x)
        a, p, q = _triplet_indices(indices, x)
        return triplet_loss(
            _prepare(x, self.normalize),
            None,
            a,
            p,
            q,
            self.margin,
            self.metric,
            self.soft,
            self.reduction,
        )

    def extra_repr(self) -> str:
        return (
            f"margin={self.margin}, mining={self.mining!r}, metric={self.metric!r}, "
            f"soft={self.soft}, normalize={self.normalize}, reduction={self.reduction!r}, "
            f"fallback={self.fallback!r}, backend={self.backend!r}, "
            f"distributed={self.distributed}, chunk_size={self.chunk_size}"
        )


def _triplet_indices(indices: Any, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    if not isinstance(indices, (tuple, list)) or len(indices) != 3:
        raise InputError(
            "indices_tuple must be (anchor, positive, negative) index tensors",
            "indices_tuple",
            "shape",
        )
    out = []
    for name, t in zip(("anchor", "positive", "negative"), indices, strict=True):
        if not isinstance(t, Tensor) or t.dtype != torch.int64 or t.ndim != 1:
            raise TypeError(f"indices_tuple {name} must be a 1-D int64 tensor")
        if t.device != x.device:
            raise InputError(
                f"indices_tuple {name} is on {t.device} but embeddings on {x.device}",
                "indices_tuple",
                "device",
            )
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= x.shape[0]):
            raise InputError(
                f"indices_tuple {name} has indices outside [0, {x.shape[0]})",
                "indices_tuple",
                "range",
            )
        out.append(t)
    if not out[0].shape == out[1].shape == out[2].shape:
        raise InputError(
            "indices_tuple tensors must have the same length", "indices_tuple", "shape"
        )
    return out[0], out[1], out[2]
