"""Argument checks shared by the torch layer (clear errors before any work)."""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .. import _core
from .._errors import InputError
from .._options import as_choice

HALF_DTYPES = (torch.float16, torch.bfloat16)

__all__ = [
    "HALF_DTYPES",
    "as_choice",
    "check_chunk_size",
    "check_embeddings",
    "check_finite",
    "check_labels",
    "check_margin",
    "compute_dtype",
]


def check_margin(margin: Any, allow_inf: bool = False) -> float:
    """A finite non-negative margin as a float (``inf`` too where ``allow_inf``:
    the semi-hard miner's window without upper bound, as the NumPy API).

    A tensor that requires grad is refused: the losses treat the margin as a
    constant, and silently dropping its gradient would be a wrong answer.
    """
    is_scalar_tensor = isinstance(margin, Tensor) and margin.numel() == 1
    if isinstance(margin, bool | np.bool_) or not (
        isinstance(margin, numbers.Real) or is_scalar_tensor
    ):
        raise TypeError(f"margin must be a real number, got {margin!r}")
    if isinstance(margin, Tensor) and margin.requires_grad:
        raise TypeError(
            "margin is a tensor that requires grad, but the margin is a constant of the "
            "loss (no gradient flows to it): pass float(margin) or margin.detach()"
        )
    value = float(margin)
    if math.isnan(value) or value < 0 or (math.isinf(value) and not allow_inf):
        bound = ">= 0 (or inf)" if allow_inf else "a finite number >= 0"
        raise InputError(f"margin must be {bound}, got {value}", "margin", "range")
    return value


def check_embeddings(x: Any, name: str = "embeddings", finite: bool = True) -> Tensor:
    """A 2-D, non-empty, finite floating-point tensor; half precision only on CUDA.

    ``finite=False`` leaves the finiteness to the caller (:func:`check_finite`).
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.dtype.is_floating_point:
        raise TypeError(f"{name} must have a floating-point dtype, got {x.dtype}")
    if x.ndim != 2:
        raise InputError(
            f"{name} must be 2-D (batch x features), got shape {tuple(x.shape)}", name, "shape"
        )
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise InputError(f"{name} is empty (shape {tuple(x.shape)})", name, "empty")
    if x.dtype in HALF_DTYPES and x.device.type == "cpu":
        raise TypeError(
            f"{name} is {x.dtype} on the CPU: half precision is supported on CUDA only "
            "(computed there with float32 accumulation); call .float() for the CPU kernels"
        )
    if finite:
        check_finite(x, name)
    return x


def check_finite(x: Tensor, name: str = "embeddings") -> None:
    if not _all_finite(x):
        raise InputError(f"{name} contains NaN or infinite values", name, "nonfinite")


def _all_finite(x: Tensor) -> bool:
    if x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64):
        # on the shared memory, without the boolean temporary of NumPy's or
        # torch's check (which costs more than the small kernels themselves)
        a = x.detach().numpy()
        return _core.all_finite(a) if x.is_contiguous() else bool(np.isfinite(a).all())
    return bool(torch.isfinite(x).all())


def check_labels(labels: Any, x: Tensor, name: str = "labels", of: str = "embeddings") -> Tensor:
    """Integer labels, one per row of ``x``, on ``x``'s device, as int64.

    The cast to int64 is injective for every integer dtype (uint64 wraps).
    """
    if not isinstance(labels, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(labels).__name__}")
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise TypeError(f"{name} must have an integer dtype, got {labels.dtype}")
    if labels.ndim != 1:
        raise InputError(f"{name} must be 1-D, got shape {tuple(labels.shape)}", name, "shape")
    if labels.shape[0] != x.shape[0]:
        raise InputError(
            f"{name} has {labels.shape[0]} entries but {of} has {x.shape[0]} rows", name, "shape"
        )
    if labels.device != x.device:
        raise InputError(
            f"{name} are on {labels.device} but {of} on {x.device}; move both to one device",
            name,
            "device",
        )
    return labels.to(torch.int64).detach()


def check_chunk_size(chunk_size: int | None) -> int | None:
    if chunk_size is not None and not isinstance(chunk_size, numbers.Integral | np.integer):
        raise TypeError(f"chunk_size must be an integer or None, got {chunk_size!r}")
    if chunk_size is not None and (isinstance(chunk_size, bool) or int(chunk_size) < 1):
        raise InputError(
            f"chunk_size must be a positive integer or None, got {chunk_size!r}",
            "chunk_size",
            "range",
        )
    return None if chunk_size is None else int(chunk_size)


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float16/bfloat16 are computed in float32."""
    return torch.float32 if dtype in HALF_DTYPES else dtype
