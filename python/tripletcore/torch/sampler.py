"""Representative batches (seed paper 002, alternating projections onto
feasible sets).

Every class has a *representative* sample. The representatives stay fixed
for ``lifetime`` consecutive batches, then all are redrawn; each batch holds
``classes_per_batch`` classes, and for each its representative plus
``samples_per_class - 1`` fresh samples. Losses may use only the
representatives as anchors (:func:`representative_triplet_loss`). With hard
class mining, a batch gathers classes whose representatives lie close in the
current embedding, which the training loop feeds back through
:meth:`RepresentativeBatchSampler.update_representative_embeddings`.

The paper's exact lifetime, regulariser and mining rule could not be checked
(field notes, section 3); the choices made here are documented on the class.
"""

from __future__ import annotations

import numbers
import warnings
from collections import deque
from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

from .._errors import InputError
from ._checks import check_embeddings, check_labels, check_margin
from ._loss import triplet_margin_loss

__all__ = [
    "RepresentativeBatchSampler",
    "RepresentativeTripletLoss",
    "representative_triplet_loss",
]

I64 = npt.NDArray[np.int64]


def _count(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if int(value) < minimum:
        raise InputError(f"{name} must be >= {minimum}, got {value}", name, "range")
    return int(value)


def _as_numpy(value: Any, name: str) -> npt.NDArray[Any]:
    if isinstance(value, Tensor):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


class _Cycle:
    """Endless shuffled passes over ``items``. ``take`` skips excluded items
    and puts them back in front, and a refill leaves out the items held
    back, so the queue never holds an item twice and every item is drawn
    once per pass, up to those deferrals."""

    def __init__(self, items: I64, rng: np.random.Generator) -> None:
        self.items, self.rng = items, rng
        self.queue: deque[int] = deque()

    def take(self, count: int, exclude: set[int]) -> list[int]:
        """``count`` distinct items not in ``exclude`` (the caller makes sure
        enough exist)."""
        out: list[int] = []
        held: list[int] = []
        while len(out) < count:
            if not self.queue:
                skip = set(held)
                self.queue.extend(int(i) for i in self.rng.permutation(self.items) if i not in skip)
            i = self.queue.popleft()
            if i in exclude or i in out:
                held.append(i)
                continue
            out.append(i)
        self.queue.extendleft(reversed(held))
        return out


class RepresentativeBatchSampler(torch.utils.data.Sampler[list[int]]):
    """A batch sampler (an iterable of index lists, for ``DataLoader(batch_sampler=...)``)
    of representative batches.

    Layout of a batch: ``classes_per_batch`` groups of ``samples_per_class``
    dataset indices, one group per class, the class's representative first
    (so :meth:`anchor_mask` is the same for every batch). Classes:

    * without hard class mining, the classes come from endless shuffled
      passes over all classes, so every class is in a batch at least once
      every ``ceil(C / classes_per_batch) + 1`` batches;
    * with ``hard_class_mining=True``, the first class of a batch (the
      *seed*) comes from those passes (every class is a seed once every C
      batches) and the others are the ``classes_per_batch - 1`` classes whose
      representative embeddings are nearest (Euclidean, float64, ties: lower
      class position) to the seed's; classes whose embedding was never fed
      fill remaining places at random.

    Representatives: drawn uniformly per class at construction, kept for
    ``lifetime`` batches (counted across epochs), then all redrawn (each a
    different sample of its class); ``generation`` counts the draws. The
    fresh samples of a class come from shuffled passes over the class and
    never repeat within a batch nor include the representative. The stored
    embedding of a class is the latest fed for one of its representatives:
    after a redraw the old one is used until the new representative's
    arrives (embed ``sampler.representatives`` after a redraw to refresh
    them all). Prefetching DataLoaders draw batches ahead of the training
    step, so fed embeddings reach mining a few batches late.

    Classes with fewer than ``samples_per_class`` samples cannot fill a
    group: they are left out, with a warning. ``batches_per_epoch`` defaults
    to the usable samples divided by the batch size.
    """

    def __init__(
        self,
        labels: Any,
        classes_per_batch: int,
        samples_per_class: int,
        lifetime: int,
        hard_class_mining: bool = False,
        *,
        batches_per_epoch: int | None = None,
        seed: int = 0,
    ) -> None:
        lab = _as_numpy(labels, "labels")
        if lab.dtype.kind not in "iu":
            raise TypeError(f"labels must have an integer dtype, got {lab.dtype}")
        if lab.ndim != 1 or lab.shape[0] == 0:
            raise InputError(
                f"labels must be a non-empty 1-D array, got shape {lab.shape}", "labels", "shape"
            )
        self.classes_per_batch = _count(classes_per_batch, "classes_per_batch", 2)
        self.samples_per_class = _count(samples_per_class, "samples_per_class", 2)
        self.lifetime = _count(lifetime, "lifetime", 1)
        self.hard_class_mining = bool(hard_class_mining)
        self.labels = lab
        classes, inverse, counts = np.unique(lab, return_inverse=True, return_counts=True)
        usable = counts >= self.samples_per_class
        if not usable.all():
            warnings.warn(
                f"{int((~usable).sum())} classes have fewer than samples_per_class="
                f"{self.samples_per_class} samples and are left out",
                stacklevel=2,
            )
        if int(usable.sum()) < self.classes_per_batch:
            raise InputError(
                f"only {int(usable.sum())} classes have at least {self.samples_per_class} "
                f"samples; classes_per_batch={self.classes_per_batch} needs as many",
                "classes_per_batch",
                "range",
            )
        #: The classes batched (label values), ascending.
        self.classes = classes[usable]
        order = np.argsort(inverse, kind="stable")
        bounds = np.cumsum(counts)[:-1]
        members = [m.astype(np.int64) for m in np.split(order, bounds)]
        self.members: list[I64] = [m for m, u in zip(members, usable, strict=True) if u]
        self._class_of = {int(c): k for k, c in enumerate(self.classes)}
        self._rng = np.random.default_rng(seed)
        self._class_cycle = _Cycle(np.arange(len(self.classes), dtype=np.int64), self._rng)
        self._fresh = [_Cycle(m, self._rng) for m in self.members]
        used = sum(len(m) for m in self.members)
        if batches_per_epoch is None:
            batches_per_epoch = max(1, used // self.batch_size)
        self.batches_per_epoch = _count(batches_per_epoch, "batches_per_epoch", 1)
        #: One dataset index per class (in ``classes`` order).
        self.representatives = np.array(
            [int(self._rng.choice(m)) for m in self.members], dtype=np.int64
        )
        self.generation = 0
        self.batches_drawn = 0
        self._embeddings: npt.NDArray[np.float64] | None = None
        self._known = np.zeros(len(self.classes), dtype=bool)

    @property
    def batch_size(self) -> int:
        return self.classes_per_batch * self.samples_per_class

    def __len__(self) -> int:
        return self.batches_per_epoch

    def __iter__(self) -> Iterator[list[int]]:
        for _ in range(self.batches_per_epoch):
            yield self.next_batch()

    def anchor_mask(self, device: torch.device | str | None = None) -> Tensor:
        """Boolean mask of the representatives' positions in every batch."""
        mask = torch.zeros(self.batch_size, dtype=torch.bool, device=device)
        mask[:: self.samples_per_class] = True
        return mask

    def next_batch(self) -> list[int]:
        """The next batch (what iteration yields), redrawing the
        representatives first when their lifetime is over."""
        if self.batches_drawn and self.batches_drawn % self.lifetime == 0:
            self._redraw()
        self.batches_drawn += 1
        batch: list[int] = []
        for k in self._batch_classes():
            rep = int(self.representatives[k])
            batch.append(rep)
            batch.extend(self._fresh[k].take(self.samples_per_class - 1, {rep}))
        return batch

    def _redraw(self) -> None:
        for k, m in enumerate(self.members):
            others = m[m != self.representatives[k]]
            self.representatives[k] = int(self._rng.choice(others))
        self.generation += 1

    def _batch_classes(self) -> list[int]:
        p = self.classes_per_batch
        if not self.hard_class_mining or self._embeddings is None:
            return self._class_cycle.take(p, set())
        (seed,) = self._class_cycle.take(1, set())
        chosen = [seed]
        if self._known[seed]:
            e = self._embeddings
            d2 = ((e - e[seed]) ** 2).sum(1)
            d2[~self._known] = np.inf
            d2[seed] = np.inf
            near = np.argsort(d2, kind="stable")[: p - 1]
            chosen += [int(k) for k in near if np.isfinite(d2[k])]
        if len(chosen) < p:
            chosen += self._class_cycle.take(p - len(chosen), set(chosen))
        return chosen

    def update_representative_embeddings(self, indices: Any, embeddings: Any) -> int:
        """Store the embeddings of representatives: ``indices`` are dataset
        indices (e.g. a batch's), ``embeddings`` their rows; the rows whose
        index is a current representative are kept (detached, float64) for
        hard class mining, the others ignored. Returns how many were stored."""
        idx = _as_numpy(indices, "indices")
        if idx.dtype.kind not in "iu" or idx.ndim != 1:
            raise TypeError("indices must be a 1-D integer sequence of dataset indices")
        emb = _as_numpy(embeddings, "embeddings").astype(np.float64, copy=False)
        if emb.ndim != 2 or emb.shape[0] != idx.shape[0]:
            raise InputError(
                f"embeddings must be 2-D with one row per index, got shape {emb.shape} "
                f"for {idx.shape[0]} indices",
                "embeddings",
                "shape",
            )
        if not np.isfinite(emb).all():
            raise InputError("embeddings contain NaN or infinite values", "embeddings", "nonfinite")
        if self._embeddings is None:
            self._embeddings = np.zeros((len(self.classes), emb.shape[1]))
        elif emb.shape[1] != self._embeddings.shape[1]:
            raise InputError(
                f"embeddings have {emb.shape[1]} features, "
                f"earlier ones {self._embeddings.shape[1]}",
                "embeddings",
                "shape",
            )
        stored = 0
        rep_pos = {int(r): k for k, r in enumerate(self.representatives)}
        for row, i in enumerate(idx.tolist()):
            k = rep_pos.get(int(i))
            if k is not None:
                self._embeddings[k] = emb[row]
                self._known[k] = True
                stored += 1
        return stored

    @property
    def representative_embeddings(self) -> npt.NDArray[np.float64] | None:
        """The stored class embeddings (``classes`` order; rows never fed are 0)."""
        return None if self._embeddings is None else self._embeddings.copy()


def _valid_anchors(lab: Tensor) -> Tensor:
    same = lab[:, None] == lab[None, :]
    count = same.sum(1)
    return (count > 1) & (count < lab.shape[0])


def representative_triplet_loss(
    embeddings: Tensor,
    labels: Tensor,
    anchor_mask: Tensor,
    margin: float = 0.2,
    metric: str = "euclidean",
    soft: bool = False,
    normalize: bool = False,
) -> Tensor:
    """The batch-hard triplet loss with only the masked rows (the
    representatives) as anchors: each masked anchor's farthest positive and
    nearest negative among all rows of the batch, averaged over the masked
    anchors that have both (0 when none). Exact per-anchor losses from
    :func:`tripletcore.torch.triplet_margin_loss` with ``reduction="none"``."""
    x = check_embeddings(embeddings)
    lab = check_labels(labels, x)
    if not isinstance(anchor_mask, Tensor) or anchor_mask.dtype != torch.bool:
        raise TypeError("anchor_mask must be a boolean tensor")
    if anchor_mask.shape != (x.shape[0],):
        raise InputError(
            f"anchor_mask has shape {tuple(anchor_mask.shape)}, expected ({x.shape[0]},)",
            "anchor_mask",
            "shape",
        )
    m = check_margin(margin)
    per_anchor = triplet_margin_loss(
        x, lab, m, "batch_hard", metric, soft, normalize, reduction="none"
    )
    use = anchor_mask.to(x.device) & _valid_anchors(lab)
    return per_anchor[use].sum() / max(int(use.sum()), 1)


class RepresentativeTripletLoss(torch.nn.Module):
    """Module form of :func:`representative_triplet_loss`:
    ``forward(embeddings, labels, anchor_mask)``; the mask of a
    :class:`RepresentativeBatchSampler` batch is ``sampler.anchor_mask()``."""

    def __init__(
        self,
        margin: float = 0.2,
        metric: str = "euclidean",
        soft: bool = False,
        normalize: bool = False,
    ) -> None:
        super().__init__()
        self.margin = check_margin(margin)
        self.metric = metric
        self.soft = bool(soft)
        self.normalize = bool(normalize)

    def forward(self, embeddings: Tensor, labels: Tensor, anchor_mask: Tensor) -> Tensor:
        """The representative triplet loss of a batch: ``embeddings`` (N, d),
        ``labels`` (N,) and ``anchor_mask`` (N,) bool marking the anchors
        (``sampler.anchor_mask()``); a 0-d tensor that backpropagates to
        ``embeddings``."""
        return representative_triplet_loss(
            embeddings,
            labels,
            anchor_mask,
            self.margin,
            self.metric,
            self.soft,
            self.normalize,
        )

    def extra_repr(self) -> str:
        return (
            f"margin={self.margin}, metric={self.metric!r}, soft={self.soft}, "
            f"normalize={self.normalize}"
        )
