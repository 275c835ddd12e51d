"""The Triton backend of ``tripletcore.torch`` (``backend="triton"``).

A built-in backend, first in ``backend="auto"``'s order, which picks it for
CUDA tensors when Triton is importable (``tripletcore._options.BACKENDS``);
Triton itself is imported only when a kernel runs.
``python -m tripletcore.torch.triton --compile 80,90`` compiles every kernel
ahead of time for the given CUDA architectures, without a GPU.
"""

from __future__ import annotations

from ._backend import TRITON_BACKEND, TritonBackend, interpreting, triton_available

__all__ = ["TRITON_BACKEND", "TritonBackend", "interpreting", "triton_available"]
