"""Gradient decomposition of triplet losses on the unit sphere (seed paper 004,
Xuan & Pless, and Xuan et al., "Hard negative examples are hard, but useful",
ECCV 2020).

For L2-normalised embeddings ``f = x / ||x||`` and a triplet with
similarities ``S_ap = f_a . f_p`` and ``S_an = f_a . f_n``, any loss
``L(S_ap, S_an)`` has the gradient

* anchor:   ``L_p (f_p - S_ap f_a) / ||x_a|| + L_n (f_n - S_an f_a) / ||x_a||``
* positive: ``L_p (f_a - S_ap f_p) / ||x_p||``
* negative: ``L_n (f_a - S_an f_n) / ||x_n||``

with ``L_p = dL/dS_ap`` and ``L_n = dL/dS_an``: the four vectors are the
gradients of ``S_ap`` and ``S_an`` (tangent to the sphere), and losses
differ only in the two weights. :func:`triplet_gradient_components` returns
the vectors, :func:`combine_components` recombines them with any weights,
and :class:`DecomposedTripletLoss` trains with a gradient built from
user-chosen weights (a custom autograd Function).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import Tensor

from .._errors import InputError
from ._checks import as_choice, check_embeddings, check_labels
from .miners import BatchHardMiner

__all__ = [
    "DecomposedTripletLoss",
    "GradientComponents",
    "NCAWeights",
    "SCWeights",
    "SelectivelyContrastiveLoss",
    "TripletWeights",
    "combine_components",
    "mine_triplets",
    "triplet_gradient_components",
]

MINING = ("batch_hard", "easy_positive")

WeightFn = Callable[[Tensor, Tensor], tuple[Tensor, ...]]


class GradientComponents(NamedTuple):
    """Per triplet (length T): the similarities and the gradients of
    ``S_ap`` and ``S_an`` with respect to the three raw embeddings (T x d)."""

    s_ap: Tensor
    s_an: Tensor
    anchor_pos: Tensor  # d S_ap / d x_a = (f_p - S_ap f_a) / |x_a|
    anchor_neg: Tensor  # d S_an / d x_a = (f_n - S_an f_a) / |x_a|
    positive: Tensor  # d S_ap / d x_p = (f_a - S_ap f_p) / |x_p|
    negative: Tensor  # d S_an / d x_n = (f_a - S_an f_n) / |x_n|


def _check_triplets(x: Tensor, *idx: Any) -> tuple[Tensor, Tensor, Tensor]:
    out = []
    for name, t in zip(("anchor", "positive", "negative"), idx, strict=True):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name} must be a 1-D int64 tensor, got {type(t).__name__}")
        if t.dtype != torch.int64 or t.ndim != 1:
            raise TypeError(f"{name} must be a 1-D int64 tensor, got {t.dtype} {tuple(t.shape)}")
        if t.device != x.device:
            raise InputError(
                f"{name} is on {t.device} but embeddings on {x.device}", name, "device"
            )
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= x.shape[0]):
            raise InputError(f"{name} has indices outside [0, {x.shape[0]})", name, "range")
        out.append(t)
    if not out[0].shape == out[1].shape == out[2].shape:
        raise InputError(
            "anchor, positive and negative must have the same length", "negative", "shape"
        )
    return out[0], out[1], out[2]


def _norms(x: Tensor) -> Tensor:
    n: Tensor = torch.linalg.vector_norm(x, dim=1)
    if bool((n == 0).any()):
        row = int(torch.nonzero(n == 0)[0])
        raise InputError(
            f"embeddings row {row} has norm 0: its direction is undefined",
            "embeddings",
            "zero_norm",
        )
    return n


def _components(x: Tensor, a: Tensor, p: Tensor, n: Tensor) -> GradientComponents:
    norms = _norms(x)
    f = x / norms[:, None]
    fa, fp, fn = f[a], f[p], f[n]
    s_ap, s_an = (fa * fp).sum(1), (fa * fn).sum(1)
    ia, ip, in_ = ((1.0 / norms[t])[:, None] for t in (a, p, n))
    return GradientComponents(
        s_ap,
        s_an,
        (fp - s_ap[:, None] * fa) * ia,
        (fn - s_an[:, None] * fa) * ia,
        (fa - s_ap[:, None] * fp) * ip,
        (fa - s_an[:, None] * fn) * in_,
    )


def triplet_gradient_components(
    embeddings: Tensor, anchor: Tensor, positive: Tensor, negative: Tensor
) -> GradientComponents:
    """The gradients of ``S_ap`` and ``S_an`` of each triplet ``(anchor[t],
    positive[t], negative[t])`` (rows of the raw, unnormalised ``embeddings``)
    with respect to the three embeddings: the directions along which every
    triplet loss on normalised embeddings pushes (module docstring). Computed
    without autograd; zero-norm rows raise ``ValueError``."""
    x = check_embeddings(embeddings)
    a, p, n = _check_triplets(x, anchor, positive, negative)
    with torch.no_grad():
        return _components(x.detach(), a, p, n)


def combine_components(
    components: GradientComponents,
    lp: Tensor,
    ln: Tensor,
    anchor: Tensor,
    positive: Tensor,
    negative: Tensor,
    num_rows: int,
) -> Tensor:
    """The ``num_rows x d`` gradient of ``sum_t L(S_ap[t], S_an[t])`` given
    ``lp[t] = dL/dS_ap`` and ``ln[t] = dL/dS_an``: each triplet's four
    vectors weighted and added to the rows they belong to."""
    c = components
    lp, ln = lp.to(c.anchor_pos.dtype)[:, None], ln.to(c.anchor_pos.dtype)[:, None]
    out = torch.zeros(
        num_rows, c.anchor_pos.shape[1], dtype=c.anchor_pos.dtype, device=c.anchor_pos.device
    )
    out.index_add_(0, anchor, lp * c.anchor_pos + ln * c.anchor_neg)
    out.index_add_(0, positive, lp * c.positive)
    out.index_add_(0, negative, ln * c.negative)
    return out


# ---------------------------------------------------------------- weights


def _positive(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    v = float(value)
    if not (v > 0 and math.isfinite(v)):
        raise InputError(f"{name} must be positive and finite, got {v}", name, "range")
    return v


class TripletWeights:
    """``(L_p, L_n) = (-1, +1)``: the linear triplet loss ``S_an - S_ap``; with
    a ``margin``, the hinge ``[S_an - S_ap + margin]_+`` (weights 0 where the
    hinge is inactive). Returns ``(L_p, L_n, loss values)``."""

    def __init__(self, margin: float | None = None) -> None:
        self.margin = None if margin is None else float(margin)
        if self.margin is not None and not (self.margin >= 0 and math.isfinite(self.margin)):
            raise InputError(f"margin must be >= 0 and finite, got {margin}", "margin", "range")

    def __call__(self, s_ap: Tensor, s_an: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        v = s_an - s_ap
        if self.margin is None:
            one = torch.ones_like(v)
            return -one, one, v
        active = (v + self.margin > 0).to(v.dtype)
        return -active, active, torch.relu(v + self.margin)

    def __repr__(self) -> str:
        return f"TripletWeights(margin={self.margin})"


class NCAWeights:
    """NCA with temperature ``tau``: ``L = -log softmax([S_ap, S_an] / tau)_0``,
    ``(L_p, L_n) = (-(1 - P) / tau, (1 - P) / tau)`` with ``P`` the softmax
    probability of the positive."""

    def __init__(self, tau: float = 0.1) -> None:
        self.tau = _positive(tau, "tau")

    def __call__(self, s_ap: Tensor, s_an: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        z = (s_an - s_ap) / self.tau
        q = torch.sigmoid(z)  # 1 - P
        return -q / self.tau, q / self.tau, torch.nn.functional.softplus(z)

    def __repr__(self) -> str:
        return f"NCAWeights(tau={self.tau})"


class SCWeights:
    """Selectively contrastive (Xuan et al. 2020): for a hard triplet
    (``S_an > S_ap``) the loss ``lam * S_an``, weights ``(0, lam)``: only push
    the negative away; otherwise the NCA loss and weights."""

    def __init__(self, lam: float = 1.0, tau: float = 0.1) -> None:
        self.lam = _positive(lam, "lam")
        self.nca = NCAWeights(tau)

    def __call__(self, s_ap: Tensor, s_an: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        lp, ln, v = self.nca(s_ap, s_an)
        hard = s_an > s_ap
        zero = torch.zeros_like(lp)
        return (
            torch.where(hard, zero, lp),
            torch.where(hard, torch.full_like(ln, self.lam), ln),
            torch.where(hard, self.lam * s_an, v),
        )

    def __repr__(self) -> str:
        return f"SCWeights(lam={self.lam}, tau={self.nca.tau})"


# ---------------------------------------------------------------- mining


@torch.no_grad()
def mine_triplets(
    embeddings: Tensor, labels: Tensor, mining: str = "batch_hard"
) -> tuple[Tensor, Tensor, Tensor]:
    """One triplet per anchor that has a positive and a negative, by cosine
    similarity of the normalised rows: the hardest negative (most similar)
    with the hardest positive (``"batch_hard"``, the exact Rust/tiled miner)
    or the easiest positive (``"easy_positive"``, most similar, as Xuan et
    al.; a float64 B x B similarity matrix). Ties: lowest index."""
    mining = as_choice(mining, "mining", MINING)
    x = check_embeddings(embeddings)
    lab = check_labels(labels, x)
    _norms(x)
    if mining == "batch_hard":
        a, p, n = BatchHardMiner(metric="cosine")(x, lab)
        return a, p, n
    f = torch.nn.functional.normalize(x.detach().to(torch.float64), dim=1)
    s = f @ f.T
    same = lab[:, None] == lab[None, :]
    eye = torch.eye(len(lab), dtype=torch.bool, device=x.device)
    pos, neg = same & ~eye, ~same
    keep = pos.any(1) & neg.any(1)
    ninf = torch.tensor(-math.inf, dtype=s.dtype, device=s.device)
    p_idx = torch.where(pos, s, ninf).argmax(1)  # first maximum: lowest index
    n_idx = torch.where(neg, s, ninf).argmax(1)
    a_idx = torch.nonzero(keep).flatten()
    return a_idx, p_idx[a_idx], n_idx[a_idx]


# ---------------------------------------------------------------- the loss


class _Decomposed(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any, x: Tensor, a: Tensor, p: Tensor, n: Tensor, weight_fn: WeightFn, mean: bool
    ) -> Tensor:
        comps = _components(x, a, p, n)
        out = weight_fn(comps.s_ap, comps.s_an)
        if len(out) not in (2, 3):
            raise InputError(
                "weight_fn must return (L_p, L_n) or (L_p, L_n, loss_values)", "weight_fn", "shape"
            )
        lp, ln = out[0], out[1]
        for name, w in (("L_p", lp), ("L_n", ln)):
            if not isinstance(w, Tensor) or w.shape != comps.s_ap.shape:
                raise InputError(
                    f"weight_fn's {name} must be a tensor of shape {tuple(a.shape)}",
                    "weight_fn",
                    "shape",
                )
        # Without loss values the value is the linear surrogate whose
        # gradient, weights held fixed, is the constructed one.
        values = out[2] if len(out) == 3 else lp * comps.s_ap + ln * comps.s_an
        scale = 1.0 / max(a.shape[0], 1) if mean else 1.0
        grad = combine_components(comps, lp, ln, a, p, n, x.shape[0]) * scale
        ctx.save_for_backward(grad)
        return (values.sum() * scale).to(x.dtype)

    @staticmethod
    def backward(ctx: Any, *grads: Tensor) -> tuple[Tensor | None, ...]:
        if torch.is_grad_enabled():
            # the constructed gradient comes from weight_fn outside autograd:
            # returning it would be a silently detached gradient
            raise RuntimeError(
                "DecomposedTripletLoss has no double backward: its gradient is built "
                "from weight_fn's weights outside autograd, so it cannot be "
                "differentiated again (torch.autograd.grad(..., create_graph=True)); "
                "use tripletcore.torch.TripletMarginLoss for gradient penalties"
            )
        (grad,) = ctx.saved_tensors
        return grads[0] * grad, None, None, None, None, None


def _given_or_mined(
    x: Tensor, lab: Tensor, mining: str, indices_tuple: Any
) -> tuple[Tensor, Tensor, Tensor]:
    """The caller's ``(anchor, positive, negative)`` tensors, checked, or mined."""
    if indices_tuple is None:
        return mine_triplets(x, lab, mining)
    if not isinstance(indices_tuple, (tuple, list)) or len(indices_tuple) != 3:
        raise InputError(
            "indices_tuple must be (anchor, positive, negative) tensors", "indices_tuple", "shape"
        )
    return _check_triplets(x, *indices_tuple)


class DecomposedTripletLoss(torch.nn.Module):
    """A triplet loss whose gradient is built from the two components with
    user-chosen weights: ``weight_fn(S_ap, S_an) -> (L_p, L_n)`` or
    ``(L_p, L_n, loss_values)`` (tensors of length T).

    ``TripletWeights()``, ``NCAWeights(tau)`` and ``SCWeights(lam, tau)`` give
    the linear triplet, NCA and selectively contrastive gradients; any other
    rule (e.g. only the anchor-negative component) is a new function. The
    returned value is the mean (or sum) of ``loss_values``; without them, of
    the surrogate ``L_p S_ap + L_n S_an`` (weights held fixed), whose
    gradient is the constructed one. ``forward(embeddings, labels,
    indices_tuple=None)`` mines with ``mining`` (see :func:`mine_triplets`)
    unless triplets are given. A batch without triplets gives 0.
    """

    def __init__(
        self, weight_fn: WeightFn, mining: str = "batch_hard", reduction: str = "mean"
    ) -> None:
        super().__init__()
        if not callable(weight_fn):
            raise TypeError(f"weight_fn must be callable, got {type(weight_fn).__name__}")
        self.weight_fn = weight_fn
        self.mining = as_choice(mining, "mining", MINING)
        self.reduction = as_choice(reduction, "reduction", ("mean", "sum"))

    def forward(self, embeddings: Tensor, labels: Tensor, indices_tuple: Any = None) -> Tensor:
        """The loss of ``embeddings`` (N, d) with ``labels`` (N,), on the
        triplets of ``indices_tuple=(anchor, positive, negative)`` or mined
        with ``mining``; backward applies the weighted gradient components."""
        x = check_embeddings(embeddings)
        lab = check_labels(labels, x)
        a, p, n = _given_or_mined(x, lab, self.mining, indices_tuple)
        out: Tensor = _Decomposed.apply(x, a, p, n, self.weight_fn, self.reduction == "mean")
        return out

    def extra_repr(self) -> str:
        return f"weight_fn={self.weight_fn!r}, mining={self.mining!r}, reduction={self.reduction!r}"


class SelectivelyContrastiveLoss(torch.nn.Module):
    """Selectively contrastive loss (Xuan et al., ECCV 2020), as an explicit
    function differentiated by autograd: per triplet ``lam * S_an`` when
    ``S_an > S_ap`` (a hard triplet: only the negative is pushed), else
    ``-log softmax([S_ap, S_an] / tau)_0``; mean over the triplets.
    Triplets: easiest positive and hardest negative per anchor by default
    (as the paper), or ``mining="batch_hard"``, or ``indices_tuple``.
    ``DecomposedTripletLoss(SCWeights(lam, tau))`` has the same gradient.
    """

    def __init__(self, lam: float = 1.0, tau: float = 0.1, mining: str = "easy_positive") -> None:
        super().__init__()
        self.lam = _positive(lam, "lam")
        self.tau = _positive(tau, "tau")
        self.mining = as_choice(mining, "mining", MINING)

    def forward(self, embeddings: Tensor, labels: Tensor, indices_tuple: Any = None) -> Tensor:
        """The mean selectively contrastive loss of ``embeddings`` (N, d) with
        ``labels`` (N,), on the triplets of ``indices_tuple`` or mined with
        ``mining``; differentiated by autograd."""
        x = check_embeddings(embeddings)
        lab = check_labels(labels, x)
        a, p, n = _given_or_mined(x, lab, self.mining, indices_tuple)
        _norms(x)
        f = torch.nn.functional.normalize(x, dim=1)
        s_ap, s_an = (f[a] * f[p]).sum(1), (f[a] * f[n]).sum(1)
        nca = torch.nn.functional.softplus((s_an - s_ap) / self.tau)
        losses = torch.where(s_an > s_ap, self.lam * s_an, nca)
        return losses.sum() / max(a.shape[0], 1)

    def extra_repr(self) -> str:
        return f"lam={self.lam}, tau={self.tau}, mining={self.mining!r}"
