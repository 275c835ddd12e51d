"""Block sources for :mod:`tripletcore.dask`: an input array split into row
blocks by reference (dask chunks, file readers, store readers or in-memory
slices), read by the worker tasks, and the input checks on them."""

from __future__ import annotations

import mmap
from dataclasses import dataclass
from typing import Any

import dask.array as da
import numpy as np
import numpy.typing as npt
from dask.delayed import delayed

from ._errors import InputError

#: Target size of a row block for inputs that are not dask arrays: a pair
#: task holds two blocks plus about as much kernel scratch.
DEFAULT_BLOCK_BYTES = 8 << 20


@dataclass(frozen=True)
class _FileRows:
    """Rows ``[start, stop)`` of an array stored in a file (a NumPy memmap).

    Only the path and layout travel with the task, which reads its rows by
    itself: no mapping stays open, so a worker's memory holds the block only.
    """

    path: str
    dtype: str
    shape: tuple[int, ...]
    strides: tuple[int, ...]
    offset: int  # byte position of element 0 in the file
    start: int
    stop: int

    def read(self) -> npt.NDArray[Any]:
        dtype = np.dtype(self.dtype)
        shape = (self.stop - self.start, *self.shape[1:])
        inner = int(np.prod(self.shape[1:], dtype=np.int64))
        first = self.offset + self.start * self.strides[0]
        if self.strides == _c_strides(self.shape, dtype.itemsize):
            with open(self.path, "rb") as fh:
                fh.seek(first)
                data = np.fromfile(fh, dtype=dtype, count=shape[0] * inner)
            return data.reshape(shape)
        raw = np.memmap(self.path, dtype=np.uint8, mode="r")
        try:
            view = np.ndarray(shape, dtype, buffer=raw, offset=first, strides=self.strides)
            return np.array(view)
        finally:
            del raw


@dataclass(frozen=True)
class _StoreRows:
    """Rows ``[start, stop)`` of an array that pickles as a reference to its
    storage (a zarr array), read by the task itself."""

    array: Any
    start: int
    stop: int

    def read(self) -> npt.NDArray[Any]:
        return np.asarray(self.array[self.start : self.stop])


def _c_strides(shape: tuple[int, ...], itemsize: int) -> tuple[int, ...]:
    out, step = [], itemsize
    for n in reversed(shape):
        out.append(step)
        step *= n
    return tuple(reversed(out))


def _load(ref: Any) -> npt.NDArray[Any]:
    """A block: a reader's rows, or the array a dask chunk computed to.

    Arrays that distributed deserialised may sit at unaligned offsets of a
    received frame, which the compiled kernels reject: those are copied."""
    arr = ref.read() if isinstance(ref, _FileRows | _StoreRows) else np.asarray(ref)
    return np.require(arr, requirements=["C", "A"])


def _memmap_layout(arr: np.memmap[Any, Any]) -> tuple[str, int] | None:
    """(path, byte offset of element 0) of a memmap readable from its file,
    or None (no file, copy-on-write, or negative strides)."""
    mm = getattr(arr, "_mmap", None)
    path = getattr(arr, "filename", None)
    if mm is None or path is None or arr.mode == "c" or min(arr.strides, default=0) < 0:
        return None
    # numpy maps from the allocation boundary below the memmap's offset.
    base = np.frombuffer(mm, dtype=np.uint8).__array_interface__["data"][0]
    here = arr.__array_interface__["data"][0]
    mapped_from = arr.offset - arr.offset % mmap.ALLOCATIONGRANULARITY
    return str(path), mapped_from + (here - base)


class _Source:
    """An input array split into row blocks by reference, never loaded here."""

    def __init__(self, value: Any, name: str, ndim: int) -> None:
        self.name = name
        self.kind: str
        arr: Any
        if isinstance(value, da.Array):
            self.kind, arr = "dask", value
        elif isinstance(value, np.memmap) and _memmap_layout(value) is not None:
            self.kind, arr = "file", value
        elif type(value).__module__.split(".")[0] == "zarr":
            self.kind, arr = "store", value
        else:
            if value is None:
                raise TypeError(f"{name} must be a {ndim}-D array, got None")
            self.kind, arr = "memory", np.asarray(value)
        if any(np.isnan(s) for s in arr.shape):
            raise InputError(
                f"{name} has unknown chunk sizes; call compute_chunk_sizes() first", name, "shape"
            )
        self.value: Any = arr
        self.shape: tuple[int, ...] = tuple(int(s) for s in arr.shape)
        self.dtype = np.dtype(arr.dtype)
        if ndim == 2:
            if self.dtype == object or self.dtype.kind not in "biuf":
                raise TypeError(f"{name} must be a numeric array, got dtype {self.dtype}")
            if len(self.shape) != 2:
                raise InputError(
                    f"{name} must be 2-D (rows x features), got {len(self.shape)}-D "
                    f"shape {self.shape}",
                    name,
                    "shape",
                )
            if 0 in self.shape:
                raise InputError(
                    f"{name} is empty (shape {self.shape}); it needs at least one row and one "
                    "column",
                    name,
                    "empty",
                )
        else:
            if self.dtype.kind not in "iu":
                raise TypeError(f"{name} must have an integer dtype, got {self.dtype}")
            if len(self.shape) != 1:
                raise InputError(f"{name} must be 1-D, got shape {self.shape}", name, "shape")

    @property
    def rows(self) -> int:
        return self.shape[0]

    def compute_dtype(self) -> np.dtype[Any]:
        """The dtype the kernels see (as ``as_embeddings``)."""
        return self.dtype if self.dtype in (np.float32, np.float64) else np.dtype(np.float64)

    def bounds(self, block_rows: int | None) -> tuple[int, ...]:
        """Row boundaries: the dask chunks, else blocks of ``block_rows`` rows
        (by default about DEFAULT_BLOCK_BYTES each)."""
        n = self.rows
        if block_rows is None and self.kind == "dask":
            sizes = [int(c) for c in self.value.chunks[0] if c > 0]
            return tuple(int(b) for b in np.cumsum([0, *sizes]))
        if block_rows is None:
            width = int(np.prod(self.shape[1:], dtype=np.int64)) * self.compute_dtype().itemsize
            block_rows = max(1, DEFAULT_BLOCK_BYTES // max(width, 1))
        step = int(block_rows)
        return (*range(0, n, step), n)

    def blocks(self, bounds: tuple[int, ...], token: str) -> list[Any]:
        """One reference per block: a dask chunk (a ``Delayed``) or a reader."""
        spans = list(zip(bounds[:-1], bounds[1:], strict=True))
        if self.kind == "dask":
            arr = self.value
            sizes = tuple(b - a for a, b in spans)
            chunks = (sizes,) if arr.ndim == 1 else (sizes, (arr.shape[1],))
            if arr.chunks != chunks:
                arr = arr.rechunk(chunks)
            return list(arr.to_delayed().ravel())
        if self.kind == "file":
            path, offset = _memmap_layout(self.value) or ("", 0)
            meta = (path, self.dtype.str, self.shape, tuple(self.value.strides), offset)
            return [_FileRows(*meta, a, b) for a, b in spans]
        if self.kind == "store":
            return [_StoreRows(self.value, a, b) for a, b in spans]
        return [
            delayed(np.ascontiguousarray(self.value[a:b]), name=f"{self.name}-{token}-{k}")
            for k, (a, b) in enumerate(spans)
        ]


def _as_block_rows(block_rows: int | None) -> int | None:
    if block_rows is None:
        return None
    if isinstance(block_rows, bool) or not isinstance(block_rows, int | np.integer):
        raise TypeError(f"block_rows must be an int, got {type(block_rows).__name__}")
    if block_rows < 1:
        raise InputError(f"block_rows must be >= 1, got {block_rows}", "block_rows", "range")
    return int(block_rows)


def _common_dtype(*sources: _Source) -> np.dtype[Any]:
    """float32 when every embedding is float32, else float64 (as ``as_pair``)."""
    dtypes = {s.compute_dtype() for s in sources}
    return dtypes.pop() if len(dtypes) == 1 else np.dtype(np.float64)


def _same_dim(x: _Source, y: _Source) -> None:
    if x.shape[1] != y.shape[1]:
        raise InputError(
            f"{y.name} has {y.shape[1]} features but {x.name} has {x.shape[1]}", y.name, "shape"
        )


def _same_rows(x: _Source, y: _Source) -> None:
    if x.rows != y.rows:
        raise InputError(
            f"{y.name} has {y.rows} rows but {x.name} has {x.rows}: "
            "both must embed the same points",
            y.name,
            "shape",
        )


def _labels_for(labels: Any, name: str, x: _Source) -> _Source:
    lab = _Source(labels, name, ndim=1)
    if lab.rows != x.rows:
        raise InputError(
            f"{name} has {lab.rows} entries but {x.name} has {x.rows} rows", name, "shape"
        )
    return lab
