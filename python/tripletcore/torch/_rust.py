"""The CPU path: the Rust kernels run on the tensors' own memory.

``tensor.detach().numpy()`` shares memory, so contiguous float32/float64
embeddings reach the kernels without a copy (others are made contiguous
once). The loss's gradient is computed by the kernel in the forward pass;
backward only scales it (O(N d)).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import torch
from torch import Tensor

from .. import _core
from .._convert import FloatArray, IntArray
from .._errors import InputError
from ._checks import check_finite
from ._double_backward import batch_all_surrogate, gradient_graph
from ._tiled_backend import tiled_loss
from ._triplets import hard_triplets, triplet_loss

_T = TypeVar("_T")
# The kernels' argument names -> the torch layer's.
_USER_NAMES = {"X": "embeddings", "Y": "ref_emb"}


def _kernel(fn: Callable[..., _T], *args: Any) -> _T:
    """``fn(*args)`` with a kernel's InputError renamed to the user's argument."""
    try:
        return fn(*args)
    except InputError as e:
        raise e.renamed(_USER_NAMES) from None


def numpy_view(x: Tensor) -> FloatArray:
    """A NumPy view of a CPU float32/float64 tensor (a copy only if not contiguous)."""
    out: FloatArray = x.detach().contiguous().numpy()
    return out


def numpy_labels(labels: Tensor) -> IntArray:
    if labels.dtype != torch.int64 or not labels.is_contiguous():
        labels = labels.to(torch.int64).contiguous()
    out: IntArray = labels.detach().numpy()
    return out


class RustLoss(torch.autograd.Function):
    """Scalar loss from ``_core.triplet_margin_loss``; its gradient is saved."""

    @staticmethod
    def forward(ctx: Any, *args: Any) -> Tensor:
        x, labels, *opts = args
        # the kernel checks finiteness in the pass it makes anyway
        loss, grad = _kernel(_core.triplet_margin_loss, numpy_view(x), numpy_labels(labels), *opts)
        ctx.grad = grad
        ctx.opts = opts
        ctx.save_for_backward(x, labels)
        # a 0-d array of x's dtype shared as a tensor: cheaper than torch.tensor(float)
        # + 0.0: an empty sum comes back as -0.0
        return torch.from_numpy(np.array(loss + 0.0, dtype=grad.dtype))

    @staticmethod
    def backward(ctx: Any, *grads: Any) -> Any:
        (g,) = grads
        if torch.is_grad_enabled():
            # create_graph=True: the kernel's gradient is a constant to
            # autograd, so it is written again in torch ops
            x, labels = ctx.saved_tensors
            with torch.enable_grad():
                grad_graph = gradient_graph(x, _surrogate(x, labels, g, *ctx.opts))
            return (grad_graph,) + (None,) * 7
        grad = ctx.grad
        if grad is None:
            # a second backward through this graph (retain_graph=True): the
            # first handed its buffer over, so the gradient is computed again
            x, labels = ctx.saved_tensors
            _, grad = _core.triplet_margin_loss(numpy_view(x), numpy_labels(labels), *ctx.opts)
        ctx.grad = None
        # Scaled in place and handed over (autograd keeps it as x.grad): no
        # copy, no new buffer. NumPy, not torch: a torch op here would wake
        # torch's thread pool, whose spinning threads then compete with the
        # Rust kernels of the next step.
        scale = g.item()
        if scale != 1.0:
            grad *= grad.dtype.type(scale)
        return (torch.from_numpy(grad),) + (None,) * 7


def _surrogate(
    x: Tensor,
    labels: Tensor,
    g: Tensor,
    margin: float,
    mining: str,
    metric: str,
    soft: bool,
    reduction: str,
    fallback: str,
) -> Tensor:
    """The kernel's loss (times ``g``) in torch ops on ``x``, its triplets mined again."""
    if mining == "batch_all":
        return batch_all_surrogate(x, labels, g, margin, metric, soft, reduction, None)
    with torch.no_grad():
        if mining == "batch_hard":
            pi, _, ni, _ = rust_batch_hard(x, labels, metric)
            a, p, q = hard_triplets(pi, ni)
        else:
            a, p, q = rust_semi_hard(x, labels, margin, metric, fallback)
    return triplet_loss(x, None, a, p, q, margin, metric, soft, reduction) * g


def rust_batch_hard(
    x: Tensor,
    labels: Tensor,
    metric: str,
    ref: Tensor | None = None,
    ref_labels: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(pos_idx, pos_dist, neg_idx, neg_dist)`` as tensors (see ``tripletcore.batch_hard``)."""
    y = None if ref is None else numpy_view(ref)
    rlab = None if ref_labels is None else numpy_labels(ref_labels)
    pi, pd, ni, nd = _kernel(_core.batch_hard, numpy_view(x), numpy_labels(labels), metric, y, rlab)
    return torch.from_numpy(pi), torch.from_numpy(pd), torch.from_numpy(ni), torch.from_numpy(nd)


def rust_semi_hard(
    x: Tensor, labels: Tensor, margin: float, metric: str, fallback: str
) -> tuple[Tensor, Tensor, Tensor]:
    """``(anchor, positive, negative)`` of ``tripletcore.semi_hard`` as tensors."""
    a, p, q, _, _ = _kernel(
        _core.semi_hard, numpy_view(x), numpy_labels(labels), margin, metric, fallback
    )
    return torch.from_numpy(a), torch.from_numpy(p), torch.from_numpy(q)


def rust_loss(
    x: Tensor,
    labels: Tensor,
    margin: float,
    mining: str,
    metric: str,
    soft: bool,
    reduction: str,
    fallback: str,
    chunk_size: int | None,
) -> Tensor:
    """The triplet loss of CPU ``x`` through the Rust kernels (differentiable)."""
    if reduction != "none":
        out: Tensor = RustLoss.apply(x, labels, margin, mining, metric, soft, reduction, fallback)
        return out
    # Per-anchor losses need per-anchor gradients, which the kernel (gradient of
    # the sum) does not give: mine in Rust, differentiate the O(N) triplets.
    if mining == "batch_all":
        # every triplet counts: the tiled kernel recomputes per-anchor pair weights
        check_finite(x)
        return tiled_loss(x, labels, margin, mining, metric, soft, reduction, fallback, chunk_size)
    with torch.no_grad():
        if mining == "batch_hard":
            pi, _, ni, _ = rust_batch_hard(x, labels, metric)
            a, p, q = hard_triplets(pi, ni)
        else:
            a, p, q = rust_semi_hard(x, labels, margin, metric, fallback)
    return triplet_loss(x, None, a, p, q, margin, metric, soft, reduction)


class RustBackend:
    """The Rust kernels on CPU tensors' own memory (see ``_backend``'s contract)."""

    name = "rust"
    loss_checks_finite = True

    def check_device(self, device: torch.device) -> None:
        if device.type != "cpu":
            raise InputError(
                f"backend='rust' needs CPU tensors, got {device}; use backend='torch' or 'auto'",
                "backend",
                "device",
            )

    def auto_for(self, device: torch.device) -> bool:
        return device.type == "cpu"

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
        if not ref_follows_batch:
            pi, _, ni, _ = rust_batch_hard(x, labels, metric, ref, ref_labels)
            return pi, ni
        assert ref is not None and ref_labels is not None
        pi, pd, ni, nd = rust_batch_hard(x, labels, metric)
        if ref.shape[0]:
            # the batch against itself (self excluded) and against ref, merged;
            # ties go to the batch (it comes first in the reference)
            qi, qd, mi, md = rust_batch_hard(x, labels, metric, ref, ref_labels)
            n = x.shape[0]
            farther = (qi >= 0) & ((pi < 0) | (qd > pd))
            nearer = (mi >= 0) & ((ni < 0) | (md < nd))
            pi = torch.where(farther, qi + n, pi)
            ni = torch.where(nearer, mi + n, ni)
        return pi, ni

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
        return rust_semi_hard(x, labels, margin, metric, fallback)

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
        return rust_loss(x, labels, margin, mining, metric, soft, reduction, fallback, chunk_size)


RUST_BACKEND = RustBackend()
