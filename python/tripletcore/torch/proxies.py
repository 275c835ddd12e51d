"""Chance-constrained proxies (seed paper 003): several trainable proxies per
class, their re-selection by greedy k-center, a proximal regulariser and the
round controller that ties them together.

Training runs in *rounds*. Within a round the loss is a multi-proxy loss
plus ``(lam / 2) ||theta - theta_prev||^2``; when the validation metric
stalls for ``patience`` evaluations, :class:`RoundController` starts a new
round: it restores the round's best weights, makes them ``theta_prev`` and
calls back (typically :meth:`MultiProxyLoss.reinit_proxies` on fresh
embeddings of the training data).
"""

from __future__ import annotations

import copy
import math
import numbers
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .. import proxies as _np_proxies
from .._errors import InputError
from ._checks import as_choice, check_embeddings, check_labels, check_margin
from ._loss import triplet_margin_loss

__all__ = ["BASES", "MultiProxyLoss", "ProximalRegularizer", "RoundController"]

BASES = ("proxy_anchor", "proxy_triplet")


def _real(value: Any, name: str, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    v = float(value)
    if not math.isfinite(v) or v < 0 or (positive and v == 0):
        raise InputError(
            f"{name} must be {'positive' if positive else '>= 0'} and finite, got {v}",
            name,
            "range",
        )
    return v


def _count(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if int(value) < 1:
        raise InputError(f"{name} must be >= 1, got {value}", name, "range")
    return int(value)


def unit_ball(x: Tensor) -> Tensor:
    """Rows of norm > 1 scaled onto the unit sphere, the others unchanged (as
    the paper's authors' code); differentiable."""
    n = torch.linalg.vector_norm(x, dim=1, keepdim=True)
    return x / torch.clamp(n, min=1.0)


class MultiProxyLoss(torch.nn.Module):
    """``proxies_per_class`` (K) trainable proxies per class, with a proxy loss
    and a sample-to-sample term.

    Each sample is assigned to its nearest proxy of its own class (most
    similar; ties: lowest proxy), the proxy whose distance is the covering
    radius's ingredient. Bases:

    * ``"proxy_anchor"`` (Kim et al. 2020, cosine similarity ``s``): with
      ``P+`` the proxies that have an assigned sample in the batch, ``X_p+``
      the samples assigned to ``p`` and ``X_p-`` the samples of other
      classes, ``1/|P+| sum_{p in P+} log(1 + sum_{X_p+} exp(-alpha (s - delta)))
      + 1/|P| sum_{p in P} log(1 + sum_{X_p-} exp(alpha (s + delta)))``.
      With K = 1 and ``sample_weight=0`` this is Proxy-Anchor exactly (the
      tests compare with pytorch-metric-learning's ``ProxyAnchorLoss``).
    * ``"proxy_triplet"`` (Euclidean, embeddings and proxies mapped into the
      unit ball as the paper's code does): per sample
      ``[d(x, p+) - d(x, p-) + margin]_+`` with ``p+`` its assigned proxy and
      ``p-`` the nearest proxy of another class, averaged over the batch.

    Plus ``sample_weight`` (0.1 by default, as the paper's code) times the
    batch-hard triplet loss among the samples (margin ``margin``, on the unit
    sphere for ``proxy_anchor``, in the unit ball for ``proxy_triplet``).

    ``forward(embeddings, labels)``; labels are class ids in
    ``[0, num_classes)``. The proxy choices (assignment, nearest other-class
    proxy, batch-hard triplets) are held fixed in the gradient, which is
    exact otherwise (float64 ``gradcheck`` in the tests).
    """

    proxy_labels: Tensor

    def __init__(
        self,
        num_classes: int,
        embedding_dim: int,
        proxies_per_class: int = 8,
        base: str = "proxy_anchor",
        *,
        alpha: float = 32.0,
        delta: float = 0.1,
        margin: float = 0.2,
        sample_weight: float = 0.1,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.num_classes = _count(num_classes, "num_classes")
        self.embedding_dim = _count(embedding_dim, "embedding_dim")
        self.proxies_per_class = _count(proxies_per_class, "proxies_per_class")
        if self.num_classes < 2:
            raise InputError(
                "num_classes must be >= 2: proxy losses need another class", "num_classes", "range"
            )
        self.base = as_choice(base, "base", BASES)
        self.alpha = _real(alpha, "alpha", positive=True)
        self.delta = _real(delta, "delta")
        self.margin = check_margin(margin)
        self.sample_weight = _real(sample_weight, "sample_weight")
        k = self.proxies_per_class
        init = torch.randn(self.num_classes * k, self.embedding_dim, generator=generator)
        self.proxies = torch.nn.Parameter(torch.nn.functional.normalize(init, dim=1))
        self.register_buffer(
            "proxy_labels", torch.arange(self.num_classes).repeat_interleave(k), persistent=False
        )

    # ------------------------------------------------------------ geometry

    def project(self, x: Tensor) -> Tensor:
        """The base's geometry: unit sphere (proxy_anchor) or unit ball."""
        if self.base == "proxy_anchor":
            return torch.nn.functional.normalize(x, dim=1)
        return unit_ball(x)

    def _check(self, embeddings: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        x = check_embeddings(embeddings)
        lab = check_labels(labels, x)
        if x.shape[1] != self.embedding_dim:
            raise InputError(
                f"embeddings have {x.shape[1]} features, expected {self.embedding_dim}",
                "embeddings",
                "shape",
            )
        if int(lab.min()) < 0 or int(lab.max()) >= self.num_classes:
            raise InputError(
                f"labels must be class ids in [0, {self.num_classes})", "labels", "range"
            )
        if self.base == "proxy_anchor" and bool((torch.linalg.vector_norm(x, dim=1) == 0).any()):
            raise InputError(
                "embeddings have a row of norm 0: cosine similarity is undefined",
                "embeddings",
                "zero_norm",
            )
        return x, lab

    def _assign(self, score: Tensor, lab: Tensor) -> Tensor:
        """Per sample the column of its best own-class proxy (score: larger
        is nearer; the first maximum, so ties go to the lowest proxy)."""
        k = self.proxies_per_class
        own = lab[:, None] * k + torch.arange(k, device=lab.device)[None, :]
        best = score.detach().gather(1, own).argmax(1)
        return own.gather(1, best[:, None])[:, 0]

    # ------------------------------------------------------------ losses

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """The proxy loss plus ``sample_weight`` times the samples' batch-hard
        loss, for ``embeddings`` (N, ``embedding_dim``) and ``labels`` (N,)
        in ``[0, num_classes)``; a 0-d tensor that backpropagates to the
        embeddings and the proxies."""
        x, lab = self._check(embeddings, labels)
        z = self.project(x)
        p = self.project(self.proxies.to(z.dtype))
        if self.base == "proxy_anchor":
            loss = self._proxy_anchor(z, p, lab)
        else:
            loss = self._proxy_triplet(z, p, lab)
        if self.sample_weight > 0:
            loss = loss + self.sample_weight * triplet_margin_loss(
                z, lab, self.margin, "batch_hard", "euclidean"
            )
        return loss

    def _proxy_anchor(self, z: Tensor, p: Tensor, lab: Tensor) -> Tensor:
        s = z @ p.T  # B x (C K) cosine similarities
        col = self._assign(s, lab)
        pos = torch.zeros_like(s, dtype=torch.bool)
        pos[torch.arange(len(lab), device=s.device), col] = True
        neg = lab[:, None] != self.proxy_labels[None, :].to(lab.device)
        ninf = torch.tensor(-math.inf, dtype=s.dtype, device=s.device)
        pos_lse = torch.logsumexp(torch.where(pos, -self.alpha * (s - self.delta), ninf), dim=0)
        neg_lse = torch.logsumexp(torch.where(neg, self.alpha * (s + self.delta), ninf), dim=0)
        with_pos = pos.any(0)
        # log(1 + sum exp(v)) = softplus(logsumexp(v)); an empty sum gives log 1 = 0.
        pos_term = torch.nn.functional.softplus(pos_lse[with_pos]).sum() / max(
            int(with_pos.sum()), 1
        )
        neg_term = torch.nn.functional.softplus(neg_lse).sum() / p.shape[0]
        return pos_term + neg_term

    def _proxy_triplet(self, z: Tensor, p: Tensor, lab: Tensor) -> Tensor:
        d = _pair_dist(z, p)  # B x (C K)
        col = self._assign(-d, lab)
        other = lab[:, None] != self.proxy_labels[None, :].to(lab.device)
        inf = torch.tensor(math.inf, dtype=d.dtype, device=d.device)
        near_other = torch.where(other, d.detach(), inf).argmin(1)
        rows = torch.arange(len(lab), device=d.device)
        return torch.relu(d[rows, col] - d[rows, near_other] + self.margin).mean()

    # ------------------------------------------------------------ proxies

    @torch.no_grad()
    def reinit_proxies(
        self, embeddings: Tensor, labels: Tensor, seeded: bool = True
    ) -> _np_proxies.CoveringRadius:
        """Re-select every class's proxies from ``embeddings`` (a pool of
        training embeddings, e.g. the whole training set under the current
        model) by greedy k-center in the base's geometry
        (:func:`tripletcore.kcenter`): with ``seeded=True`` (the paper's code)
        seeded by the class's current proxies, so the new proxies are the
        samples the old ones cover worst; with ``seeded=False`` starting from
        the class's first sample. A class with fewer than K samples gets all
        of them and keeps old proxies in the remaining slots; a class
        without samples keeps its proxies. Returns the covering radius of the
        pool by the new proxies (:func:`tripletcore.covering_radius`)."""
        x, lab = self._check(embeddings, labels)
        z = self.project(x.detach()).to(torch.float64).cpu().numpy()
        y = lab.cpu().numpy()
        old = self.project(self.proxies.detach()).to(torch.float64).cpu().numpy()
        # Slots not re-selected keep their exact values (projecting them
        # again would move a norm-1 proxy by rounding).
        new = self.proxies.detach().to(torch.float64).cpu().numpy().copy()
        k = self.proxies_per_class
        for c in np.unique(y):
            rows = np.flatnonzero(y == c)
            own = old[c * k : (c + 1) * k]
            pick = _np_proxies.kcenter(z[rows], min(k, len(rows)), own if seeded else None)
            new[c * k : c * k + len(pick.indices)] = z[rows[pick.indices]]
        self.proxies.copy_(torch.from_numpy(new).to(self.proxies))
        return self.covering_radius(x, lab)

    def covering_radius(self, embeddings: Tensor, labels: Tensor) -> _np_proxies.CoveringRadius:
        """The covering radius of ``embeddings`` by the current proxies, in the
        base's geometry (the paper's worst-case bound)."""
        x, lab = self._check(embeddings, labels)
        with torch.no_grad():
            z = self.project(x.detach()).to(torch.float64).cpu().numpy()
            p = self.project(self.proxies.detach()).to(torch.float64).cpu().numpy()
        return _np_proxies.covering_radius(z, lab.cpu().numpy(), p, self.proxy_labels.cpu().numpy())

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, embedding_dim={self.embedding_dim}, "
            f"proxies_per_class={self.proxies_per_class}, base={self.base!r}, "
            f"alpha={self.alpha}, delta={self.delta}, margin={self.margin}, "
            f"sample_weight={self.sample_weight}"
        )


def _pair_dist(u: Tensor, v: Tensor) -> Tensor:
    """All Euclidean distances from coordinate differences (no cancellation),
    with gradient 0 where a distance is 0."""
    diff = u[:, None, :] - v[None, :, :]
    sq = (diff * diff).sum(-1)
    nonzero = sq > 0
    return torch.where(nonzero, torch.sqrt(torch.where(nonzero, sq, torch.ones_like(sq))), 0.0)


class ProximalRegularizer:
    """``(lam / 2) ||theta - theta_prev||^2`` over the trainable parameters of
    ``model``; ``theta_prev`` is set by :meth:`snapshot` (0 before the first
    snapshot: the first round is unregularised). ``lam = 2e-4`` as the paper.
    Call it to get the (differentiable) penalty."""

    def __init__(self, model: torch.nn.Module, lam: float = 2e-4) -> None:
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self.lam = _real(lam, "lam")
        self.theta_prev: dict[str, Tensor] | None = None

    def _params(self) -> Iterable[tuple[str, torch.nn.Parameter]]:
        return ((n, p) for n, p in self.model.named_parameters() if p.requires_grad)

    @torch.no_grad()
    def snapshot(self, state_dict: dict[str, Tensor] | None = None) -> None:
        """``theta_prev`` := the current parameters, or those of ``state_dict``."""
        prev: dict[str, Tensor] = {}
        for name, p in self._params():
            src = p if state_dict is None else state_dict[name]
            prev[name] = src.detach().clone().to(p)
        self.theta_prev = prev

    def __call__(self) -> Tensor:
        params = list(self._params())
        if not params:
            return torch.zeros(())
        zero = params[0][1].new_zeros(())
        if self.theta_prev is None or self.lam == 0:
            return zero
        total = zero
        for name, p in params:
            total = total + ((p - self.theta_prev[name]) ** 2).sum()
        return 0.5 * self.lam * total


class RoundController:
    """Starts a new training round when the validation metric stalls.

    ``step(metric)`` after each evaluation (higher is better with
    ``mode="max"``, e.g. MAP@R) returns ``True`` when it started a new round:
    the metric has not improved by more than ``min_delta`` on the round's
    best for ``patience`` evaluations. A new round restores the round's best
    weights into ``model`` (``restore_best=True``), makes them
    ``theta_prev`` of ``regularizer`` and then calls each of
    ``on_new_round(controller)`` (e.g. re-select proxies, reset the
    optimiser). ``best_metric`` / ``best_state`` keep the best over all
    rounds, ``round`` counts the rounds started after the first.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        patience: int = 3,
        *,
        regularizer: ProximalRegularizer | None = None,
        on_new_round: Iterable[Callable[[RoundController], Any]] = (),
        mode: str = "max",
        min_delta: float = 0.0,
        restore_best: bool = True,
    ) -> None:
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self.patience = _count(patience, "patience")
        self.regularizer = regularizer
        self.callbacks = list(on_new_round)
        if not all(callable(c) for c in self.callbacks):
            raise TypeError("on_new_round must be callables taking the controller")
        self.mode = as_choice(mode, "mode", ("max", "min"))
        self.min_delta = _real(min_delta, "min_delta")
        self.restore_best = bool(restore_best)
        self.round = 0
        self.history: list[float] = []
        self.best_metric: float | None = None
        self.best_state: dict[str, Tensor] | None = None
        self._round_best: float | None = None
        self._round_state: dict[str, Tensor] | None = None
        self._stale = 0

    def _better(self, value: float, than: float | None) -> bool:
        if than is None:
            return True
        if self.mode == "max":
            return value > than + self.min_delta
        return value < than - self.min_delta

    def _state(self) -> dict[str, Tensor]:
        return copy.deepcopy({k: v.detach() for k, v in self.model.state_dict().items()})

    def step(self, metric: float) -> bool:
        """Record this evaluation's ``metric`` (a float or 0-d tensor); after
        ``patience`` evaluations without improving the round's best by
        ``min_delta``, start a new round and return True, else False."""
        if isinstance(metric, Tensor):
            metric = float(metric)
        value = _finite(metric)
        self.history.append(value)
        if self._better(value, self.best_metric):
            self.best_metric, self.best_state = value, self._state()
        if self._better(value, self._round_best):
            self._round_best, self._round_state = value, self._state()
            self._stale = 0
            return False
        self._stale += 1
        if self._stale < self.patience:
            return False
        self.new_round()
        return True

    def new_round(self) -> None:
        """Start a new round now (what ``step`` does when the metric stalls)."""
        best = self._round_state if self._round_state is not None else self._state()
        if self.restore_best:
            self.model.load_state_dict(best)
        if self.regularizer is not None:
            self.regularizer.snapshot(best)
        self.round += 1
        self._round_best, self._round_state, self._stale = None, None, 0
        for callback in self.callbacks:
            callback(self)


def _finite(metric: Any) -> float:
    if isinstance(metric, bool) or not isinstance(metric, numbers.Real):
        raise TypeError(f"metric must be a real number, got {metric!r}")
    v = float(metric)
    if not math.isfinite(v):
        raise InputError(f"metric must be finite, got {v}", "metric", "nonfinite")
    return v
