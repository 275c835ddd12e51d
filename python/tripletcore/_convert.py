"""Argument conversion shared by the public functions.

Float32/float64 C-contiguous arrays pass through untouched (zero copy);
anything else is converted once. Value checks (NaN, shapes that must
agree) happen in the Rust bindings.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import numpy.typing as npt

from ._errors import InputError
from ._options import as_choice as as_choice  # its home is _options; re-exported

FloatArray = npt.NDArray[np.float32] | npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def as_embeddings(value: Any, name: str, dtype: Any = None) -> FloatArray:
    """A C-contiguous 2-D float32/float64 array (converted once if needed)."""
    if value is None:
        raise TypeError(f"{name} must be a 2-D array, got None")
    arr = np.asarray(value)
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be a numeric array, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise InputError(
            f"{name} must be 2-D (rows x features), got {arr.ndim}-D shape {arr.shape}",
            name,
            "shape",
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InputError(
            f"{name} is empty (shape {arr.shape}); it needs at least one row and one column",
            name,
            "empty",
        )
    if dtype is None:
        dtype = arr.dtype if arr.dtype in (np.float32, np.float64) else np.float64
        if dtype == np.float32 and _spans_beyond_float32(arr):
            dtype = np.float64
    return np.ascontiguousarray(arr, dtype=dtype)


# Largest ratio of magnitudes that float32 arithmetic keeps: once the kernels
# rescale the largest value to about 1, squares of values 2**-60 below it
# still lie above float32's smallest normal (2**-126).
_FLOAT32_SPAN = 2.0**60
_SPAN_ROWS = 1 << 16


def _spans_beyond_float32(arr: npt.NDArray[Any]) -> bool:
    """Whether the non-zero magnitudes of float32 ``arr`` span more than
    float32 arithmetic keeps (rows of 1e30 beside rows of 1e-30): such data
    is computed (and returned) in float64, where it is exact."""
    top, low = 0.0, np.inf
    for s in range(0, arr.shape[0], _SPAN_ROWS):
        part = np.abs(arr[s : s + _SPAN_ROWS])
        top = max(top, float(part.max(initial=0.0)))
        low = min(low, float(part.min(where=part > 0, initial=np.inf)))
    return bool(np.isfinite(low) and np.isfinite(top) and top > low * _FLOAT32_SPAN)


def as_pair(
    x: Any, y: Any, names: tuple[str, str] = ("X", "Y")
) -> tuple[FloatArray, FloatArray | None]:
    """X and an optional Y in one common compute dtype."""
    xa = as_embeddings(x, names[0])
    if y is None:
        return xa, None
    ya = as_embeddings(y, names[1])
    if xa.dtype != ya.dtype:
        xa, ya = xa.astype(np.float64), ya.astype(np.float64)
    return xa, ya


def as_labels(value: Any, name: str, rows: int, of: str) -> IntArray:
    """Integer labels of any integer dtype as int64 (an injective cast)."""
    return as_int64(_integer_labels(value, name, rows, of))


def _integer_labels(value: Any, name: str, rows: int, of: str) -> npt.NDArray[Any]:
    if value is None:
        raise TypeError(f"{name} must be a 1-D integer array, got None")
    arr = np.asarray(value)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must have an integer dtype, got {arr.dtype}")
    if arr.ndim != 1:
        raise InputError(f"{name} must be 1-D, got shape {arr.shape}", name, "shape")
    if arr.shape[0] != rows:
        raise InputError(
            f"{name} has {arr.shape[0]} entries but {of} has {rows} rows", name, "shape"
        )
    return arr


def as_label_pair(
    labels: Any, ref_labels: Any, rows: int, ref_rows: int
) -> tuple[IntArray, IntArray]:
    """Labels and reference labels as int64 codes that are equal exactly
    when the original values are equal, whatever the two dtypes."""
    lab = _integer_labels(labels, "labels", rows, "X")
    ref = _integer_labels(ref_labels, "ref_labels", ref_rows, "Y")
    if lab.dtype == ref.dtype or (_fits_int64(lab) and _fits_int64(ref)):
        return as_int64(lab), as_int64(ref)
    # Mixed signedness beyond int64's range (e.g. -1 vs 2**64 - 1): compare
    # the exact integer values.
    joint = np.concatenate([lab.astype(object), ref.astype(object)])
    _, codes = np.unique(joint, return_inverse=True)
    codes = codes.astype(np.int64)
    return np.ascontiguousarray(codes[:rows]), np.ascontiguousarray(codes[rows:])


def _fits_int64(arr: npt.NDArray[Any]) -> bool:
    return bool(arr.dtype != np.uint64 or arr.size == 0 or arr.max() <= np.iinfo(np.int64).max)


def as_int64(arr: npt.NDArray[Any]) -> IntArray:
    """An injective cast to int64 (uint64 wraps around)."""
    return np.ascontiguousarray(arr.astype(np.int64, copy=False))


def is_real(value: Any) -> bool:
    """A real number: Python or NumPy ints and floats, a 0-d numeric array, or
    another number type with ``__float__`` (e.g. a one-element tensor). Not a
    bool (``True`` is no margin) and not a string (``float("0.3")`` parses)."""
    if isinstance(value, str | bytes | bool | np.bool_):
        return False
    if isinstance(value, np.ndarray):
        return value.ndim == 0 and value.dtype.kind in "iuf"
    return isinstance(value, numbers.Real) or hasattr(type(value), "__float__")


def as_real(value: Any, name: str) -> float:
    """``value`` as a float, or ``TypeError`` naming ``name``."""
    if not is_real(value):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    return float(value)


def as_int(value: Any, name: str) -> int:
    """``value`` as an int (Python or NumPy integers, not bools), or ``TypeError``."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    return int(value)


def as_margin(value: Any) -> float:
    return as_real(value, "margin")


def as_two(
    x: Any, y: Any, names: tuple[str, str], same_rows: bool, same_dim: bool = True
) -> tuple[FloatArray, FloatArray]:
    """Two embeddings in one dtype, with the same number of rows when they
    embed the same points and of features when they share a space."""
    if y is None:
        raise TypeError(f"{names[1]} must be a 2-D array, got None")
    xa, ya = as_pair(x, y, names)
    assert ya is not None
    if same_rows and xa.shape[0] != ya.shape[0]:
        raise InputError(
            f"{names[1]} has {ya.shape[0]} rows but {names[0]} has {xa.shape[0]}: "
            "both must embed the same points",
            names[1],
            "shape",
        )
    if same_dim and xa.shape[1] != ya.shape[1]:
        raise InputError(
            f"{names[1]} has {ya.shape[1]} features but {names[0]} has {xa.shape[1]}",
            names[1],
            "shape",
        )
    return xa, ya
