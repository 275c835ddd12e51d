"""Mining over the global batch of all ranks (``torch.distributed``).

Every rank gathers all embeddings and labels and computes the same loss on
the concatenated batch (ordered by rank); its backward keeps the slice of
the gradient that belongs to the rank's own rows. No rank's loss is scaled
by the world size, and backward needs no communication: each rank already
holds the full gradient.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ["all_gather_with_grad"]


def _gather_rows(t: Tensor, sizes: list[int], group: Any) -> Tensor:
    """All ranks' ``t`` concatenated in rank order (rows may differ per rank)."""
    width = max(sizes)
    if t.shape[0] < width:
        pad = t.new_zeros((width - t.shape[0],) + tuple(t.shape[1:]))
        t = torch.cat([t, pad])
    out = [torch.empty_like(t) for _ in sizes]
    dist.all_gather(out, t.contiguous(), group=group)
    return torch.cat([part[:n] for part, n in zip(out, sizes, strict=True)])


class _GatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, *args: Any) -> Tensor:
        x, sizes, rank, group = args
        ctx.span = (sum(sizes[:rank]), sizes[rank])
        return _gather_rows(x.detach(), sizes, group)

    @staticmethod
    def backward(ctx: Any, *grads: Any) -> Any:
        (g,) = grads
        start, rows = ctx.span
        # every rank computes the same global loss, so its own slice is the gradient
        return g[start : start + rows], None, None, None


def all_gather_with_grad(
    embeddings: Tensor, labels: Tensor, group: Any = None
) -> tuple[Tensor, Tensor]:
    """Embeddings and labels of every rank, concatenated in rank order.

    Gradients of the gathered embeddings flow back to this rank's own rows
    only (the slice of the global gradient that belongs to them). Ranks may
    hold different numbers of rows. With one process the inputs come back.
    """
    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError(
            "distributed=True needs torch.distributed to be initialised "
            "(torch.distributed.init_process_group)"
        )
    world = dist.get_world_size(group)
    if world == 1:
        return embeddings, labels
    count = torch.tensor([embeddings.shape[0]], dtype=torch.int64, device=embeddings.device)
    counts = [torch.zeros_like(count) for _ in range(world)]
    dist.all_gather(counts, count, group=group)
    sizes = [int(c) for c in counts]
    rank = dist.get_rank(group)
    gathered: Tensor = _GatherWithGrad.apply(embeddings, sizes, rank, group)
    return gathered, _gather_rows(labels, sizes, group)
