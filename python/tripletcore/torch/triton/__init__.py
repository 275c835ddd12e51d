"""The Triton backend of ``tripletcore.torch`` (``backend="triton"``).

:func:`register` makes it selectable (ahead of the others for
``backend="auto"``, which then picks it for CUDA tensors when Triton is
importable); Triton itself is imported only when a kernel runs.
``python -m tripletcore.torch.triton --compile 80,90`` compiles every kernel
ahead of time for the given CUDA architectures, without a GPU.
"""

from __future__ import annotations

from .._backend import register_backend
from ._backend import TRITON_BACKEND, TritonBackend, interpreting, triton_available


def register() -> None:
    """Register ``backend="triton"``, first in ``"auto"``'s order (it serves only CUDA)."""
    register_backend(TRITON_BACKEND, prefer=True)


__all__ = ["TRITON_BACKEND", "TritonBackend", "interpreting", "register", "triton_available"]
