"""Miners returning ``(anchor, positive, negative)`` index tensors, as
pytorch-metric-learning's miners do, so their output feeds any PML loss."""

from __future__ import annotations

import torch
from torch import Tensor

from .._options import FALLBACKS, METRICS, as_choice
from ._backend import check_backend_name, resolve_backend
from ._checks import (
    check_chunk_size,
    check_embeddings,
    check_labels,
    check_margin,
    compute_dtype,
)
from ._tiled import mine_batch_hard as tiled_batch_hard
from ._triplets import hard_triplets
from .margin_miner import TripletMarginMiner, check_reference, excludes_self

__all__ = ["BatchHardMiner", "SemiHardMiner", "TripletMarginMiner"]


def _rows(x: Tensor, normalize: bool) -> Tensor:
    x = x.detach().to(compute_dtype(x.dtype))
    return torch.nn.functional.normalize(x, dim=1) if normalize else x


def _no_zero_row(x: Tensor, ref: Tensor | None) -> bool:
    return all(bool((t != 0).any(dim=1).all()) for t in (x, ref) if t is not None)


class BatchHardMiner(torch.nn.Module):
    """Per anchor the farthest positive and the nearest negative (Hermans et al.).

    Returns ``(a, p, n)`` int64 tensors on the embeddings' device; anchors
    without a positive or a negative are dropped (PML's semantics). With
    ``ref_emb``/``ref_labels`` the positives and negatives are rows of the
    reference set: every same-label reference row is eligible, except that,
    as in PML, row i is not query i's positive when ``ref_labels is labels``
    (the same object). Ties go to the lowest index. PML's default distance
    normalises the embeddings: pass ``normalize=True`` for the same mining.
    """

    def __init__(
        self,
        metric: str = "euclidean",
        normalize: bool = False,
        *,
        backend: str = "auto",
        chunk_size: int | None = None,
    ) -> None:
        super().__init__()
        self.metric = as_choice(metric, "metric", METRICS)
        self.normalize = bool(normalize)
        self.backend = check_backend_name(backend)
        self.chunk_size = check_chunk_size(chunk_size)

    @torch.no_grad()
    def forward(
        self,
        embeddings: Tensor,
        labels: Tensor,
        ref_emb: Tensor | None = None,
        ref_labels: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``(anchor, positive, negative)`` int64 index tensors of the
        batch-hard triplets of ``embeddings`` (N, d) with ``labels`` (N,);
        positives and negatives index ``ref_emb`` when a reference set is
        given. No gradient flows (the miner only selects)."""
        x = check_embeddings(embeddings)
        lab = check_labels(labels, x)
        ref, rlab = check_reference(x, ref_emb, ref_labels)
        engine = resolve_backend(self.backend, x.device)
        if ref is not None and ref_emb is embeddings and ref_labels is labels:
            ref = rlab = None  # PML's rule: the batch itself, each row not its own positive
        metric, normalize = self.metric, self.normalize
        if normalize and _no_zero_row(x, ref):
            # On unit rows every metric orders as the cosine distance of the raw
            # rows, whose ties the kernels settle exactly (not so after rounding).
            metric, normalize = "cosine", False
        x = _rows(x, normalize)
        ref = None if ref is None else _rows(ref, normalize)
        if ref is not None and excludes_self(labels, ref_labels):
            # PML: ref_labels is labels excludes pair (i, i) of a separate reference set
            pi, ni = tiled_batch_hard(x, lab, metric, ref, rlab, 0, self.chunk_size)
            return hard_triplets(pi, ni)
        pi, ni = engine.mine_batch_hard(x, lab, metric, ref, rlab, chunk_size=self.chunk_size)
        return hard_triplets(pi, ni)

    def extra_repr(self) -> str:
        return (
            f"metric={self.metric!r}, normalize={self.normalize}, backend={self.backend!r}, "
            f"chunk_size={self.chunk_size}"
        )


class SemiHardMiner(torch.nn.Module):
    """FaceNet's semi-hard triplets: per positive pair (a, p) the nearest
    negative n with ``d(a,p) < d(a,n) < d(a,p) + margin``.

    ``fallback`` when none exists: ``"hardest"`` (nearest negative),
    ``"easiest"`` (farthest, TF Addons) or ``"drop"``. Returns ``(a, p, n)``
    int64 tensors, ordered by anchor then positive.
    """

    def __init__(
        self,
        margin: float = 0.2,
        metric: str = "euclidean",
        fallback: str = "hardest",
        normalize: bool = False,
        *,
        backend: str = "auto",
        chunk_size: int | None = None,
    ) -> None:
        super().__init__()
        self.margin = check_margin(margin, allow_inf=True)
        self.metric = as_choice(metric, "metric", METRICS)
        self.fallback = as_choice(fallback, "fallback", FALLBACKS)
        self.normalize = bool(normalize)
        self.backend = check_backend_name(backend)
        self.chunk_size = check_chunk_size(chunk_size)

    @torch.no_grad()
    def forward(self, embeddings: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(anchor, positive, negative)`` int64 index tensors of the
        semi-hard triplets of ``embeddings`` (N, d) with ``labels`` (N,), one
        per ordered positive pair (fewer with ``fallback="drop"``). No
        gradient flows (the miner only selects)."""
        x = check_embeddings(embeddings)
        lab = check_labels(labels, x)
        engine = resolve_backend(self.backend, x.device)
        x = _rows(x, self.normalize)
        return engine.mine_semi_hard(
            x, lab, self.margin, self.metric, self.fallback, chunk_size=self.chunk_size
        )

    def extra_repr(self) -> str:
        return (
            f"margin={self.margin}, metric={self.metric!r}, fallback={self.fallback!r}, "
            f"normalize={self.normalize}, backend={self.backend!r}, chunk_size={self.chunk_size}"
        )
