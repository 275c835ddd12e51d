"""Exact k-NN and the retrieval metrics of torch tensors (CUDA or CPU).

The semantics are those of :func:`tripletcore.knn` and
:func:`tripletcore.retrieval_metrics`: the same indices bit for bit (ties to
the lowest index), distances equal to rounding. Backends: ``"rust"`` (CPU
tensors, the Rust kernel on the tensors' memory), ``"triton"`` (CUDA tensors;
CPU tensors under ``TRITON_INTERPRET=1``), ``"torch"`` (the tiled torch path,
any device) and ``"auto"`` (rust on the CPU, triton on CUDA when Triton is
importable, else torch).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import numpy as np
import torch
from torch import Tensor

from .._errors import InputError
from .._options import BACKENDS, METRICS, as_choice
from ..evaluation import KnnResult, RetrievalMetrics, scored_retrieval
from ..evaluation import knn as numpy_knn
from ._checks import check_embeddings, check_finite, check_labels, compute_dtype
from ._knn_exact import KnnProblem, torch_knn


def knn(
    x: Tensor,
    k: int,
    y: Tensor | None = None,
    *,
    metric: str = "euclidean",
    exclude_self: bool = True,
    backend: str = "auto",
) -> KnnResult:
    """Exact ``k`` nearest neighbours of every row of ``x`` among the rows of
    ``y`` (``None``: of ``x``, a row not its own neighbour with
    ``exclude_self``), as :func:`tripletcore.knn` finds them.

    Returns ``KnnResult(indices, distances)`` of tensors on ``x``'s device:
    ``indices`` int64 (N x k), nearest first, ties to the lowest index;
    ``distances`` in ``x``'s dtype (float32 for float16/bfloat16, float64 if
    ``x`` and ``y`` differ). No N x M matrix is formed on any backend.
    """
    metric = as_choice(metric, "metric", METRICS)
    backend = as_choice(backend, "backend", BACKENDS)
    x, y = _check_pair(x, y)
    if isinstance(k, bool) or not isinstance(k, int | np.integer):
        raise TypeError(f"k must be an int, got {type(k).__name__}")
    k = int(k)
    self_excluded = y is None and bool(exclude_self)
    available = (x if y is None else y).shape[0] - int(self_excluded)
    if not 1 <= k <= available:
        raise InputError(
            f"k must be between 1 and {available} (the neighbours available), got {k}",
            "k",
            "range",
        )
    name = _backend_for(backend, x.device)
    if name == "rust":
        return _rust_knn(x, k, y, metric, bool(exclude_self))
    # cosine: one neighbour more, to see ties at the k-th place (below)
    extra = int(metric == "cosine" and k < available)
    with torch.no_grad():
        problem = KnnProblem.build(x.detach(), _detach(y), k + extra, metric, bool(exclude_self))
        if name == "triton":
            from .triton._knn import triton_knn

            idx, d2 = triton_knn(problem)
        else:
            idx, d2 = torch_knn(problem)
        if metric == "cosine":
            idx, d2 = _exact_cosine_ties(x, y, k, idx, d2, bool(exclude_self))
        dist = problem.distances(d2, x.dtype)
    # the NumPy result type, holding tensors (annotated for arrays)
    return KnnResult(indices=cast(Any, idx), distances=cast(Any, dist))


def _exact_cosine_ties(
    x: Tensor, y: Tensor | None, k: int, idx: Tensor, d2: Tensor, exclude_self: bool
) -> tuple[Tensor, Tensor]:
    """The first ``k`` of the ``idx``/``d2`` lists, with the rows whose float64
    cosine keys hold a near-tie (within twice their error, among the listed
    ones or at the k-th place) ranked again by the Rust kernel, which orders
    such ties by exact rational arithmetic (``cosine_exact.rs``). Those rows
    and the reference rows go to the CPU (a host synchronisation)."""
    from ._cosine_exact import key_error

    tol = 2.0 * key_error(x.shape[1])  # d2 keys are twice the cosine key
    near = ((d2[:, 1:] - d2[:, :-1]) <= 2.0 * tol).any(dim=1)
    rows = torch.nonzero(near).flatten()
    idx, d2 = idx[:, :k].clone(), d2[:, :k].clone()
    if rows.numel() == 0:
        return idx, d2
    ref = x if y is None else y
    q = x[rows].detach().double().cpu().numpy()
    r = ref.detach().double().cpu().numpy()
    self_rows = exclude_self and y is None
    found = numpy_knn(q, k + int(self_rows), r, metric="cosine")
    fi = torch.from_numpy(np.asarray(found.indices))
    fd = torch.from_numpy(np.asarray(found.distances, dtype=np.float64))
    if self_rows:
        own = fi == rows.cpu()[:, None]
        drop = torch.where(own.any(dim=1), own.int().argmax(dim=1), k)
        keep = torch.ones_like(own)
        keep[torch.arange(rows.numel()), drop] = False
        fi, fd = fi[keep].reshape(-1, k), fd[keep].reshape(-1, k)
    idx[rows] = fi.to(idx.device)
    d2[rows] = (2.0 * fd).to(d2.device)  # the cosine distance is half the key
    return idx, d2


def _detach(y: Tensor | None) -> Tensor | None:
    return None if y is None else y.detach()


def _check_pair(x: Any, y: Any) -> tuple[Tensor, Tensor | None]:
    """Finite 2-D floating tensors of one compute dtype, on one device."""
    x = check_embeddings(x, "x")
    x = x.to(compute_dtype(x.dtype))
    if y is None:
        return x, None
    y = check_embeddings(y, "y", finite=False)
    if y.device != x.device:
        raise InputError(
            f"y is on {y.device} but x on {x.device}; move both to one device", "y", "device"
        )
    check_finite(y, "y")
    y = y.to(compute_dtype(y.dtype))
    if y.shape[1] != x.shape[1]:
        raise InputError(
            f"y has {y.shape[1]} columns but x has {x.shape[1]}; the dimensions must agree",
            "y",
            "shape",
        )
    if x.dtype != y.dtype:  # as the NumPy API: both in float64
        x, y = x.double(), y.double()
    return x, y


def _backend_for(backend: str, device: torch.device) -> str:
    """The backend that serves ``device`` (clear errors for one that cannot)."""
    from .triton import TRITON_BACKEND

    if backend == "auto":
        if device.type == "cpu":
            return "rust"
        return "triton" if TRITON_BACKEND.auto_for(device) else "torch"
    if backend == "rust" and device.type != "cpu":
        raise InputError(
            f"backend='rust' takes CPU tensors, got {device}; use backend='auto', 'triton' "
            "or 'torch'",
            "backend",
            "device",
        )
    if backend == "triton":
        TRITON_BACKEND.check_device(device)
    return backend


def _rust_knn(x: Tensor, k: int, y: Tensor | None, metric: str, exclude_self: bool) -> KnnResult:
    """The Rust kernel on the tensors' memory (no copy for contiguous rows)."""
    ya = None if y is None else y.detach().numpy()
    res = numpy_knn(x.detach().numpy(), k, ya, metric=cast(Any, metric), exclude_self=exclude_self)
    idx, dist = torch.from_numpy(res.indices), torch.from_numpy(res.distances)
    return KnnResult(indices=cast(Any, idx), distances=cast(Any, dist))


def retrieval_metrics(
    x: Tensor,
    labels: Tensor,
    reference: Tensor | None = None,
    reference_labels: Tensor | None = None,
    *,
    ks: Sequence[int] = (1, 2, 4, 8),
    metric: str = "euclidean",
    seed: int = 0,
    ref_includes_query: bool = False,
    k: int | str | None = None,
    backend: str = "auto",
) -> RetrievalMetrics:
    """:func:`tripletcore.retrieval_metrics` of tensors, with the neighbours
    from :func:`knn` on ``x``'s device (``backend`` as there). The same
    numbers as the NumPy function.

    The NMI's and AMI's k-means runs on the CPU (NumPy and the Rust kernel,
    on a float64 copy of ``x``); the neighbour lists (a chunk of queries x
    the ranking depth at a time) come back to the CPU for the scores.
    """
    metric = as_choice(metric, "metric", METRICS)
    x, ref = _check_pair(x, reference)
    lab = check_labels(labels, x, "labels", "x").cpu().numpy()
    rlab = None
    if reference_labels is not None:  # (without a reference: the conflict is named below)
        rlab = (
            np.asarray(reference_labels.cpu())
            if ref is None
            else check_labels(reference_labels, ref, "reference_labels", "reference").cpu().numpy()
        )
    gallery = x if ref is None else ref

    def device_knn(query: Any, depth: int, _: Any, *, metric: str) -> Any:
        q = torch.from_numpy(np.ascontiguousarray(query)).to(x.device)
        found = knn(q, depth, gallery, metric=metric, exclude_self=False, backend=backend)
        return KnnResult(
            distances=cast(Any, None), indices=cast(Tensor, found.indices).cpu().numpy()
        )

    x_np = x.detach().cpu().numpy()
    ref_np = None if ref is None else ref.detach().cpu().numpy()
    return scored_retrieval(
        x_np, lab, ref_np, rlab, ks, metric, seed, ref_includes_query, k, device_knn
    )
