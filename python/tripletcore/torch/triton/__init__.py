"""The Triton backend of ``tripletcore.torch`` (``backend="triton"``).

Importing this package registers the backend (ahead of the others for
``backend="auto"``, which picks it for CUDA tensors when Triton is
importable); Triton itself is imported only when a kernel runs.
``python -m tripletcore.torch.triton --compile 80,90`` compiles every kernel
ahead of time for the given CUDA architectures, without a GPU.
"""

from __future__ import annotations

from .._backend import register_backend
from ._backend import TRITON_BACKEND, TritonBackend, interpreting, triton_available

register_backend(TRITON_BACKEND, prefer=True)

__all__ = ["TRITON_BACKEND", "TritonBackend", "interpreting", "triton_available"]
