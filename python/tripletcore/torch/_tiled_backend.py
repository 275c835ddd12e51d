"""The tiled torch backend: the ``_backend`` protocol on ``_tiled``'s mining and
``_tiled_batch_all``'s loss, for tensors on any device."""

from __future__ import annotations

import torch
from torch import Tensor

from ._backend import reference_rows
from ._checks import compute_dtype
from ._tiled import mine_batch_hard, mine_semi_hard
from ._tiled_batch_all import BatchAllLoss
from ._triplets import hard_triplets, triplet_loss


def tiled_loss(
    x: Tensor,
    labels: Tensor,
    margin: float,
    mining: str,
    metric: str,
    soft: bool,
    reduction: str,
    fallback: str,
    chunk_size: int | None,
) -> Tensor:
    """The triplet loss of ``x`` (differentiable) computed by the tiled path."""
    x = x.to(compute_dtype(x.dtype))
    if mining == "batch_all":
        out: Tensor = BatchAllLoss.apply(x, labels, margin, metric, soft, reduction, chunk_size)
        return out
    with torch.no_grad():
        xd = x.detach()
        if mining == "batch_hard":
            a, p, q = hard_triplets(*mine_batch_hard(xd, labels, metric, chunk_size=chunk_size))
        else:
            a, p, q = mine_semi_hard(xd, labels, margin, metric, fallback, chunk_size)
    return triplet_loss(x, None, a, p, q, margin, metric, soft, reduction)


class TiledBackend:
    """Tiled torch ops on any device (see ``_backend``'s contract)."""

    name = "torch"
    loss_checks_finite = False

    def check_device(self, device: torch.device) -> None:
        return None

    def auto_for(self, device: torch.device) -> bool:
        return True

    def mine_batch_hard(
        self,
        x: Tensor,
        labels: Tensor,
        metric: str,
        ref: Tensor | None = None,
        ref_labels: Tensor | None = None,
        *,
        ref_follows_batch: bool = False,
        chunk_size: int | None = None,
    ) -> tuple[Tensor, Tensor]:
        ref, ref_labels, offset = reference_rows(x, labels, ref, ref_labels, ref_follows_batch)
        return mine_batch_hard(x, labels, metric, ref, ref_labels, offset, chunk_size)

    def mine_semi_hard(
        self,
        x: Tensor,
        labels: Tensor,
        margin: float,
        metric: str,
        fallback: str,
        *,
        chunk_size: int | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        return mine_semi_hard(x, labels, margin, metric, fallback, chunk_size)

    def loss(
        self,
        x: Tensor,
        labels: Tensor,
        margin: float,
        mining: str,
        metric: str,
        soft: bool,
        reduction: str,
        fallback: str,
        *,
        chunk_size: int | None = None,
    ) -> Tensor:
        return tiled_loss(x, labels, margin, mining, metric, soft, reduction, fallback, chunk_size)


TILED_BACKEND = TiledBackend()
