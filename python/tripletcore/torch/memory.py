"""Cross-batch memory (Wang et al. 2020): mine against recent embeddings too."""

from __future__ import annotations

import torch
from torch import Tensor

from .._convert import as_int
from .._errors import InputError
from ._backend import resolve_backend
from ._checks import check_embeddings, check_labels, compute_dtype
from ._loss import TripletMarginLoss
from ._triplets import hard_triplets, triplet_loss

__all__ = ["CrossBatchMemory"]


class CrossBatchMemory(torch.nn.Module):
    """Batch-hard triplet loss whose positives and negatives come from the
    current batch *and* a ring buffer of the last ``memory_size`` (detached)
    embeddings of earlier steps.

    ``loss`` gives the margin, metric, soft/normalize and reduction (its
    mining must be ``"batch_hard"``; default ``TripletMarginLoss()``). For
    each anchor of the batch the reference set is: the other rows of the
    batch (with gradients) followed by the memory (constants); an anchor is
    never its own positive. The batch is added to the memory after the loss
    is computed, so a row meets its own earlier copies, never itself. The
    memory lives in buffers of ``dtype`` on the module's device (``.to()``
    moves it); ``reset()`` empties it.
    """

    embedding_memory: Tensor
    label_memory: Tensor

    def __init__(
        self,
        loss: TripletMarginLoss | None,
        embedding_size: int,
        memory_size: int = 1024,
        *,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        self.loss = TripletMarginLoss() if loss is None else loss
        if not isinstance(self.loss, TripletMarginLoss):
            raise TypeError("loss must be a tripletcore.torch.TripletMarginLoss")
        if self.loss.mining != "batch_hard":
            raise InputError(
                "CrossBatchMemory mines batch-hard triplets: use mining='batch_hard'",
                "loss",
                "conflict",
            )
        if self.loss.distributed:
            raise InputError(
                "CrossBatchMemory does not gather across ranks (distributed=True)",
                "loss",
                "conflict",
            )
        embedding_size = as_int(embedding_size, "embedding_size")
        memory_size = as_int(memory_size, "memory_size")
        if embedding_size < 1 or memory_size < 1:
            raise InputError(
                "embedding_size and memory_size must be >= 1",
                "embedding_size" if embedding_size < 1 else "memory_size",
                "range",
            )
        if dtype not in (torch.float32, torch.float64):
            raise TypeError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        self.embedding_size = int(embedding_size)
        self.memory_size = int(memory_size)
        self.register_buffer(
            "embedding_memory", torch.zeros(memory_size, embedding_size, dtype=dtype), False
        )
        self.register_buffer("label_memory", torch.zeros(memory_size, dtype=torch.int64), False)
        self.next_slot = 0
        self.filled = 0

    def reset(self) -> None:
        """Empty the memory (the buffers stay allocated)."""
        self.next_slot = 0
        self.filled = 0

    @property
    def memory(self) -> tuple[Tensor, Tensor]:
        """The stored embeddings and labels (in slot order, not time order)."""
        return self.embedding_memory[: self.filled], self.label_memory[: self.filled]

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """The batch-hard loss of ``embeddings`` (N, ``embedding_size``) with
        ``labels`` (N,) against the batch and the memory, then the batch
        (detached) enters the memory. Returns the reduced loss as the
        wrapped ``loss`` would; gradients reach ``embeddings`` only."""
        cfg = self.loss
        x = check_embeddings(embeddings)
        lab = check_labels(labels, x)
        if x.shape[1] != self.embedding_size:
            raise InputError(
                f"embeddings have {x.shape[1]} features but the memory holds {self.embedding_size}",
                "embeddings",
                "shape",
            )
        bank, bank_labels = self.memory
        if x.device != bank.device:
            raise InputError(
                f"embeddings are on {x.device} but the memory on {bank.device}; "
                "move the module with .to(device)",
                "embeddings",
                "device",
            )
        if compute_dtype(x.dtype) != bank.dtype:
            raise TypeError(
                f"embeddings are {x.dtype} but the memory holds {bank.dtype}; "
                "construct CrossBatchMemory(..., dtype=...) to match"
            )
        engine = resolve_backend(cfg.backend, x.device)
        x = x.to(bank.dtype)
        if cfg.normalize:
            x = torch.nn.functional.normalize(x, dim=1)
        with torch.no_grad():
            # the reference is the batch (self excluded) followed by the memory
            pi, ni = engine.mine_batch_hard(
                x.detach(),
                lab,
                cfg.metric,
                bank,
                bank_labels,
                ref_follows_batch=True,
                chunk_size=cfg.chunk_size,
            )
        a, p, q = hard_triplets(pi, ni)
        ref_rows = torch.cat([x, bank]) if self.filled else x
        loss = triplet_loss(x, ref_rows, a, p, q, cfg.margin, cfg.metric, cfg.soft, cfg.reduction)
        self._enqueue(x.detach(), lab)
        return loss

    @torch.no_grad()
    def _enqueue(self, x: Tensor, labels: Tensor) -> None:
        size = self.memory_size
        if x.shape[0] >= size:
            x, labels = x[-size:], labels[-size:]
        slots = (self.next_slot + torch.arange(x.shape[0], device=x.device)) % size
        self.embedding_memory[slots] = x
        self.label_memory[slots] = labels
        self.next_slot = (self.next_slot + x.shape[0]) % size
        self.filled = min(self.filled + x.shape[0], size)

    def extra_repr(self) -> str:
        return (
            f"embedding_size={self.embedding_size}, memory_size={self.memory_size}, "
            f"dtype={self.embedding_memory.dtype}, filled={self.filled}"
        )
