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
from ._tiled import mine_batch_hard as tiled_batch_hard
from ._triplets import hard_triplets, triplet_loss
from .distributed import all_gather_with_grad
from .margin_miner import all_triplets, check_reference, excludes_self


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
    if distributed:
        x, lab = all_gather_with_grad(x, lab)
    if normalize and mining == "batch_hard" and bool((x != 0).any(dim=1).all()):
        # On unit rows every metric orders as the cosine distance of the raw
        # rows, whose ties the kernels settle exactly (not so after rounding):
        # mine there, score the unit rows (as BatchHardMiner(normalize=True))
        with torch.no_grad():
            pi, ni = engine.mine_batch_hard(x.detach(), lab, "cosine", chunk_size=chunk_size)
        a, p, q = hard_triplets(pi, ni)
        return triplet_loss(_prepare(x, True), None, a, p, q, m, metric, bool(soft), reduction)
    x = _prepare(x, bool(normalize))
    return engine.loss(
        x, lab, m, mining, metric, bool(soft), reduction, fallback, chunk_size=chunk_size
    )


class TripletMarginLoss(torch.nn.Module):
    """Module form of :func:`triplet_margin_loss` (mining built in).

    ``forward(embeddings, labels)`` mines and scores; given
    ``indices_tuple`` (e.g. from a pytorch-metric-learning miner) it scores
    those triplets instead: ``(anchor, positive, negative)``, or PML's pairs
    ``(a1, p, a2, n)``, which become every ``(a, p, n)`` with ``a1 == a2``.

    PML's reference set: with ``ref_emb``/``ref_labels`` the anchors are rows
    of ``embeddings`` and the positives and negatives rows of ``ref_emb``
    (indices into it); mining is ``"batch_hard"`` or ``"batch_all"`` (all
    triplets, as PML without a miner). As in PML, row i is not anchor i's
    positive only when ``ref_labels is labels``. ``smooth_loss=True`` is
    PML's ``softplus(d_ap - d_an + margin)``; ``soft=True`` stays
    ``softplus(d_ap - d_an)``. With either, ``"batch_all"`` scores every
    triplet (O(N P Q) time, chunked memory: see :class:`TripletMarginMiner`).
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
        smooth_loss: bool = False,
    ) -> None:
        super().__init__()
        if soft and smooth_loss:
            raise InputError("soft and smooth_loss exclude each other", "smooth_loss", "conflict")
        self.smooth_loss = bool(smooth_loss)
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

    def forward(
        self,
        embeddings: Tensor,
        labels: Tensor,
        indices_tuple: Any = None,
        ref_emb: Tensor | None = None,
        ref_labels: Tensor | None = None,
    ) -> Tensor:
        """The loss of a batch: ``embeddings`` (N, d) float32/float64 on any
        device, ``labels`` (N,) integers. Without ``indices_tuple`` the
        module's ``mining`` picks the triplets; with a PML miner's output
        (``(anchor, positive, negative)`` or the four pair tensors) exactly
        those are scored. Positives and negatives come from
        ``ref_emb``/``ref_labels`` when given (see the class docstring).
        Returns a 0-d tensor (length N per-anchor sums for
        ``reduction="none"``) that backpropagates to ``embeddings``."""
        if indices_tuple is not None or ref_emb is not None or ref_labels is not None:
            return self._with_triplets(embeddings, labels, indices_tuple, ref_emb, ref_labels)
        if self.smooth_loss:
            return self._with_triplets(embeddings, labels, None, None, None)
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

    def _with_triplets(
        self,
        embeddings: Tensor,
        labels: Tensor,
        indices: Any,
        ref_emb: Tensor | None,
        ref_labels: Tensor | None,
    ) -> Tensor:
        if self.distributed:
            raise InputError(
                "indices_tuple and ref_emb refer to the local batch; not with distributed=True",
                "indices_tuple" if indices is not None else "ref_emb",
                "conflict",
            )
        x = check_embeddings(embeddings)
        lab = check_labels(labels, x)
        ref, rlab = check_reference(x, ref_emb, ref_labels)
        if ref is not None and ref_emb is embeddings and ref_labels is labels:
            ref = rlab = None  # PML: the batch itself
        if indices is not None:
            a, p, q = _triplet_indices(indices, x, x if ref is None else ref)
        else:
            a, p, q = self._mine(x, lab, ref, rlab, excludes_self(labels, ref_labels))
        return triplet_loss(
            _prepare(x, self.normalize),
            None if ref is None else _prepare(ref, self.normalize),
            a,
            p,
            q,
            self.margin,
            self.metric,
            self.soft,
            self.reduction,
            self.smooth_loss,
        )

    def _mine(
        self, x: Tensor, lab: Tensor, ref: Tensor | None, rlab: Tensor | None, self_excluded: bool
    ) -> tuple[Tensor, Tensor, Tensor]:
        """The triplets of ``self.mining`` (detached rows) for the given-triplets path."""
        with torch.no_grad():
            xd = _prepare(x.detach(), self.normalize)
            rd = None if ref is None else _prepare(ref.detach(), self.normalize)
            if self.mining == "batch_all":
                return all_triplets(
                    xd,
                    lab,
                    rd,
                    rlab,
                    self.metric,
                    self_excluded=self_excluded,
                    chunk_size=self.chunk_size,
                )
            if self.mining == "semi_hard":
                if rd is not None:
                    raise InputError(
                        "mining='semi_hard' takes no reference set; use 'batch_hard' or "
                        "'batch_all', or pass indices_tuple",
                        "ref_emb",
                        "conflict",
                    )
                engine = resolve_backend(self.backend, x.device)
                return engine.mine_semi_hard(
                    xd, lab, self.margin, self.metric, self.fallback, chunk_size=self.chunk_size
                )
            if rd is not None and self_excluded:
                pi, ni = tiled_batch_hard(xd, lab, self.metric, rd, rlab, 0, self.chunk_size)
            else:
                engine = resolve_backend(self.backend, x.device)
                pi, ni = engine.mine_batch_hard(
                    xd, lab, self.metric, rd, rlab, chunk_size=self.chunk_size
                )
            return hard_triplets(pi, ni)

    def extra_repr(self) -> str:
        return (
            f"margin={self.margin}, mining={self.mining!r}, metric={self.metric!r}, "
            f"soft={self.soft}, normalize={self.normalize}, reduction={self.reduction!r}, "
            f"fallback={self.fallback!r}, backend={self.backend!r}, "
            f"distributed={self.distributed}, chunk_size={self.chunk_size}"
        )


def _triplet_indices(indices: Any, x: Tensor, ref: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(a, p, n)`` from PML's triplets or pairs ``(a1, p, a2, n)`` (every
    ``(a1[i], p[i], n[j])`` with ``a1[i] == a2[j]``, as PML converts them)."""
    if not isinstance(indices, (tuple, list)) or len(indices) not in (3, 4):
        raise InputError(
            "indices_tuple must be (anchor, positive, negative) or (a1, p, a2, n) index tensors",
            "indices_tuple",
            "shape",
        )
    names: tuple[str, ...] = ("anchor", "positive", "negative")
    if len(indices) == 4:
        names = ("a1", "positive", "a2", "negative")
    out = []
    for name, t in zip(names, indices, strict=True):
        if not isinstance(t, Tensor) or t.dtype != torch.int64 or t.ndim != 1:
            raise TypeError(f"indices_tuple {name} must be a 1-D int64 tensor")
        if t.device != x.device:
            raise InputError(
                f"indices_tuple {name} is on {t.device} but embeddings on {x.device}",
                "indices_tuple",
                "device",
            )
        rows = x.shape[0] if name in ("anchor", "a1", "a2") else ref.shape[0]
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= rows):
            raise InputError(
                f"indices_tuple {name} has indices outside [0, {rows})",
                "indices_tuple",
                "range",
            )
        out.append(t)
    if len(out) == 4:
        if out[0].shape != out[1].shape or out[2].shape != out[3].shape:
            raise InputError(
                "indices_tuple pairs must have equal lengths", "indices_tuple", "shape"
            )
        i, j = torch.nonzero(out[0][:, None] == out[2][None, :], as_tuple=True)
        return out[0][i], out[1][i], out[3][j]
    if not out[0].shape == out[1].shape == out[2].shape:
        raise InputError(
            "indices_tuple tensors must have the same length", "indices_tuple", "shape"
        )
    return out[0], out[1], out[2]
