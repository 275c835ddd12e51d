"""pytorch-metric-learning's ``TripletMarginMiner`` and the reference-set rules it shares.

The miner returns PML's triplet sets: every ``(a, p, n)`` (``a`` a query row,
``p``/``n`` reference rows of the same / another label) whose margin
``d(a,n) - d(a,p)`` meets the type's condition. Distances are the exact
float64 ones of the other miners (from coordinate differences; cosine ties
exact), and the sign conditions (``<= 0``, ``> 0``) are decided by the
order of those distances, so exactly tied pairs never fall on the side
rounding picks.

Cost: the answer can hold every triplet (``"all"`` with a large margin,
``"easy"``), so the work is O(N P Q) comparisons for N anchors with P
positives and Q negatives each, done per chunk of anchors as one
vectorised positives x negatives comparison; memory is one chunk's
``rows x M x M`` mask (``chunk_size`` rows, default a 256 MB budget), never
the N x M x M tensor, plus the output.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import torch
from torch import Tensor

from .._errors import InputError
from .._options import METRICS, as_choice
from ._checks import check_chunk_size, check_embeddings, check_labels, compute_dtype
from ._tiled import CHUNK_BYTES, _Space

__all__ = ["TripletMarginMiner", "all_triplets", "check_reference"]

TRIPLET_TYPES = ("all", "hard", "semihard", "easy")


def check_reference(
    x: Tensor, ref_emb: Tensor | None, ref_labels: Tensor | None
) -> tuple[Tensor | None, Tensor | None]:
    """Validated ``(ref, ref_labels)`` (int64) for query rows ``x``, or ``(None, None)``."""
    if (ref_emb is None) != (ref_labels is None):
        raise InputError(
            "ref_emb and ref_labels must be given together",
            "ref_labels" if ref_labels is None else "ref_emb",
            "conflict",
        )
    if ref_emb is None:
        return None, None
    ref = check_embeddings(ref_emb, "ref_emb")
    if ref.device != x.device:
        raise InputError(
            f"ref_emb is on {ref.device} but embeddings on {x.device}", "ref_emb", "device"
        )
    if ref.dtype != x.dtype:
        raise TypeError(f"ref_emb is {ref.dtype} but embeddings are {x.dtype}")
    if ref.shape[1] != x.shape[1]:
        raise InputError(
            f"ref_emb has {ref.shape[1]} features but embeddings have {x.shape[1]}",
            "ref_emb",
            "shape",
        )
    return ref, check_labels(ref_labels, ref, "ref_labels", "ref_emb")


def excludes_self(labels: Tensor, ref_labels: Tensor | None) -> bool:
    """PML's rule: a query row is not its own positive when the reference
    labels are the batch's labels (the same object) or there is no reference set."""
    return ref_labels is None or ref_labels is labels


def _triplet_margin(margin: Any) -> float:
    """A real margin; negative values are allowed (PML's miner takes them)."""
    is_scalar_tensor = isinstance(margin, Tensor) and margin.numel() == 1
    if isinstance(margin, bool) or not (isinstance(margin, numbers.Real) or is_scalar_tensor):
        raise TypeError(f"margin must be a real number, got {margin!r}")
    value = float(margin)
    if math.isnan(value):
        raise InputError("margin must not be NaN", "margin", "range")
    return value


def all_triplets(
    x: Tensor,
    labels: Tensor,
    ref: Tensor | None,
    ref_labels: Tensor | None,
    metric: str,
    margin: float = math.inf,
    kind: str = "all",
    *,
    self_excluded: bool = True,
    chunk_size: int | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """The ``(a, p, n)`` triplets of ``kind`` (PML's ``type_of_triplets``) in
    PML's order (anchor, then positive, then negative); ``x``/``ref`` detached
    rows in their compute dtype. ``ref=None``: the batch is the reference set."""
    space = _Space(x, ref, metric)
    rlab = labels if ref_labels is None else ref_labels
    n, m = space.rows, space.cols
    step = chunk_size or max(1, CHUNK_BYTES // max(1, 10 * m * m))
    parts: list[Tensor] = []
    for s in range(0, n, step):
        e = min(n, s + step)
        rows = torch.arange(s, e, device=x.device)
        keys = space.keys(rows, space.last)  # exact float64 keys, ties exact
        dist = space.distances(keys)
        same = labels[s:e, None] == rlab[None, :]
        pos = same.clone()
        if self_excluded and m == n:
            pos[torch.arange(e - s, device=x.device), rows] = False
        # [row, p, n]: the margin d(a,n) - d(a,p) and the exact order of the two
        gap = dist[:, None, :] - dist[:, :, None]
        farther = keys[:, None, :] > keys[:, :, None]
        if kind == "easy":
            keep = gap > margin
        else:
            keep = gap <= margin
            if kind == "hard":
                keep &= ~farther
            elif kind == "semihard":
                keep &= farther
        keep &= pos[:, :, None] & ~same[:, None, :]
        found = torch.nonzero(keep)
        found[:, 0] += s
        parts.append(found)
    out = torch.cat(parts) if parts else torch.zeros(0, 3, dtype=torch.int64, device=x.device)
    return out[:, 0], out[:, 1], out[:, 2]


class TripletMarginMiner(torch.nn.Module):
    """PML's ``TripletMarginMiner``: the triplets whose margin ``d(a,n) - d(a,p)``
    is ``<= margin`` (``"all"``), and ``<= 0`` too (``"hard"``) or ``> 0`` too
    (``"semihard"``); ``"easy"``: the others (``> margin``).

    Returns ``(a, p, n)`` int64 tensors in PML's order. With ``ref_emb``/
    ``ref_labels`` the positives and negatives are reference rows; as in PML,
    a row is excluded as its own positive only when ``ref_labels is labels``
    (or no reference set is given). PML's distances map to ``metric`` and
    ``normalize``: ``LpDistance()`` (its default normalises) is
    ``metric="euclidean", normalize=True``, ``LpDistance(power=2)``
    ``"sqeuclidean"``, ``CosineSimilarity()`` ``"cosine"`` (the margin of
    similarities ``s(a,p) - s(a,n)`` equals ``d(a,n) - d(a,p)``). The margin
    may be negative. Cost: see the module docstring (every triplet is
    compared: O(N P Q) time, one chunk's ``rows x M x M`` mask of memory).
    """

    def __init__(
        self,
        margin: float = 0.2,
        type_of_triplets: str = "all",
        metric: str = "euclidean",
        normalize: bool = False,
        *,
        chunk_size: int | None = None,
    ) -> None:
        super().__init__()
        self.margin = _triplet_margin(margin)
        self.type_of_triplets = as_choice(type_of_triplets, "type_of_triplets", TRIPLET_TYPES)
        self.metric = as_choice(metric, "metric", METRICS)
        self.normalize = bool(normalize)
        self.chunk_size = check_chunk_size(chunk_size)

    @torch.no_grad()
    def forward(
        self,
        embeddings: Tensor,
        labels: Tensor,
        ref_emb: Tensor | None = None,
        ref_labels: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``(anchor, positive, negative)`` index tensors of every triplet of
        the chosen type (positives and negatives from ``ref_emb`` when given),
        as PML's ``TripletMarginMiner`` returns them."""
        x = check_embeddings(embeddings)
        lab = check_labels(labels, x)
        ref, rlab = check_reference(x, ref_emb, ref_labels)
        self_excluded = excludes_self(labels, ref_labels)
        x = _rows(x, self.normalize)
        ref = None if ref is None else _rows(ref, self.normalize)
        return all_triplets(
            x,
            lab,
            ref,
            rlab,
            self.metric,
            self.margin,
            self.type_of_triplets,
            self_excluded=self_excluded,
            chunk_size=self.chunk_size,
        )

    def extra_repr(self) -> str:
        return (
            f"margin={self.margin}, type_of_triplets={self.type_of_triplets!r}, "
            f"metric={self.metric!r}, normalize={self.normalize}"
        )


def _rows(x: Tensor, normalize: bool) -> Tensor:
    x = x.detach().to(compute_dtype(x.dtype))
    return torch.nn.functional.normalize(x, dim=1) if normalize else x
