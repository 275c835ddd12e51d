"""The ``backend="triton"`` object (the ``torch._backend`` protocol).

Batch-hard mining (loss, ``BatchHardMiner``, the reference set and the
cross-batch memory) and semi-hard mining (loss, ``SemiHardMiner``) run on
Triton screens with exact float64 settles (``_mining``, ``_semi``); the
batch-hard loss and its backward are Triton kernels (``_loss``), the
semi-hard loss torch ops on the mined triplets. The batch-all loss is served
by the tiled torch path on the same device (no Triton kernel for it yet), so
the backend answers every call of the protocol with the Rust kernels' choices.

Triton is imported on first use, not with this module: registering the
backend costs nothing where Triton is missing, and ``check_device`` then says
what to install.
"""

from __future__ import annotations

import importlib.util
import os

import torch
from torch import Tensor

from ..._errors import InputError
from .._backend import reference_rows
from .._checks import compute_dtype
from .._triplets import triplet_loss


def triton_available() -> bool:
    """Whether the ``triton`` package can be imported (without importing it)."""
    return importlib.util.find_spec("triton") is not None


def interpreting() -> bool:
    """Whether Triton's interpreter runs the kernels (``TRITON_INTERPRET=1``), on CPU tensors."""
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "on", "yes")


class TritonBackend:
    """Triton kernels on CUDA tensors (CPU tensors under ``TRITON_INTERPRET=1``)."""

    name = "triton"
    loss_checks_finite = False

    def check_device(self, device: torch.device) -> None:
        if not triton_available():
            raise InputError(
                "backend='triton' needs the triton package (pip install triton, Linux with an "
                "NVIDIA GPU); use backend='torch' or 'auto' instead",
                "backend",
                "device",
            )
        if interpreting():
            if device.type not in ("cpu", "cuda"):
                raise InputError(
                    f"backend='triton' under TRITON_INTERPRET=1 takes CPU or CUDA tensors, "
                    f"got {device}; use backend='torch'",
                    "backend",
                    "device",
                )
            return
        if device.type != "cuda" or not torch.cuda.is_available():
            raise InputError(
                f"backend='triton' needs CUDA tensors, got {device}; use backend='rust' for CPU "
                "tensors, 'torch' for other devices, or 'auto' (set TRITON_INTERPRET=1 to run "
                "the kernels on CPU tensors in Triton's interpreter)",
                "backend",
                "device",
            )

    def auto_for(self, device: torch.device) -> bool:
        return device.type == "cuda" and not interpreting() and triton_available()

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
        from ._mining import mine_batch_hard

        ref, ref_labels, offset = reference_rows(x, labels, ref, ref_labels, ref_follows_batch)
        return mine_batch_hard(x, labels, metric, ref, ref_labels, offset)

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
        from ._semi import mine_semi_hard

        return mine_semi_hard(x, labels, margin, metric, fallback)

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
        x = x.to(compute_dtype(x.dtype))
        if mining == "batch_all":
            from ._batch_all import batch_all_loss

            return batch_all_loss(x, labels, margin, metric, soft, reduction)
        if mining == "semi_hard":
            with torch.no_grad():
                a, p, q = self.mine_semi_hard(x.detach(), labels, margin, metric, fallback)
            return triplet_loss(x, None, a, p, q, margin, metric, soft, reduction)
        from ._loss import hard_loss

        with torch.no_grad():
            pos, neg = self.mine_batch_hard(x.detach(), labels, metric)
        return hard_loss(x, pos, neg, margin, metric, soft, reduction)


TRITON_BACKEND = TritonBackend()
