"""The torch backend protocol and its registry.

A backend is one object that mines and scores triplets of torch tensors. The
losses (``_loss.py``), the miners (``miners.py``) and the cross-batch memory
(``memory.py``) hold no per-backend code: they validate the arguments, ask
:func:`resolve_backend` for the backend object, and call its methods. A new
backend plugs in by implementing :class:`TorchBackend` and calling
:func:`register_backend` once (e.g. when its module is imported).

Contract (what the callers guarantee, and what every backend must return):

Inputs, already validated by the caller:

- ``x``: a 2-D (N x d, N >= 1, d >= 1) floating-point tensor in its compute
  dtype (float32 or float64: float16/bfloat16 were converted to float32),
  on a device for which :meth:`TorchBackend.check_device` passed, rows
  L2-normalised already when the user asked for it. Finite, except that
  :meth:`TorchBackend.loss` receives it unchecked when the backend sets
  ``loss_checks_finite`` (then the backend rejects non-finite ``x`` itself,
  with ``InputError(arg="embeddings", kind="nonfinite")``).
  ``mine_*`` receive ``x`` detached (under ``torch.no_grad``); ``loss``
  receives it with its autograd history.
- ``labels``: int64, 1-D, length N, on ``x``'s device.
- ``ref``/``ref_labels``: both or neither; ``ref`` is M x d (M >= 0 only
  with ``ref_follows_batch``, else M >= 1), same dtype and device as ``x``,
  finite; ``ref_labels`` int64 of length M.
- ``metric`` in ``METRICS``, ``mining`` in ``MININGS``, ``reduction`` in
  ``REDUCTIONS``, ``fallback`` in ``FALLBACKS`` (``tripletcore._options``);
  ``margin`` a float >= 0 (may be ``inf``); ``soft`` a bool.
- ``chunk_size``: ``None`` or rows per tile, a memory hint; a backend that
  does not tile may ignore it.

Returns, on ``x``'s device:

- :meth:`~TorchBackend.mine_batch_hard`: ``(pos_idx, neg_idx)``, int64,
  shape (N,). Per query row the farthest same-label reference row and the
  nearest other-label reference row; -1 where there is none. The reference
  rows are ``x`` with row i excluded for query i (``ref=None``); or ``ref``,
  every same-label row eligible (``ref_follows_batch=False``); or
  ``torch.cat([x, ref])`` with row i of the batch excluded for query i
  (``ref_follows_batch=True``, indices into the concatenation).
- :meth:`~TorchBackend.mine_semi_hard`: ``(anchor, positive, negative)``,
  int64, 1-D, equal lengths, ordered by anchor then positive: FaceNet's
  semi-hard negative per positive pair with the ``fallback`` rule, as
  :func:`tripletcore.semi_hard`.
- :meth:`~TorchBackend.loss`: the triplet loss of :func:`tripletcore.torch.
  triplet_margin_loss` (its mining, reduction, soft and margin semantics),
  differentiable in ``x`` with the mined triplets held fixed; 0-d, or shape
  (N,) for ``reduction="none"`` (per-anchor sums); dtype of ``x``.

Exactness and ties: choices are made on the exact distances (screen with
any fast expansion and a rigorous error bound, settle the survivors from
coordinate differences in float64), ties to the lowest reference index. So
every backend returns the same indices as the Rust kernels, bit for bit;
loss values and gradients agree with them to rounding.

Errors: bad input raises :class:`tripletcore.InputError` naming the user's
argument (``"embeddings"``, ``"labels"``, ``"ref_emb"``...), never a crash.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor

from .._errors import InputError
from .._options import BACKENDS, as_choice

__all__ = [
    "TorchBackend",
    "backend_choices",
    "register_backend",
    "registered_backends",
    "resolve_backend",
]


class TorchBackend(Protocol):
    """What the losses, miners and memory call; see the module docstring."""

    #: The user's ``backend=`` string.
    name: str
    #: ``loss`` rejects non-finite ``x`` itself (in a pass it makes anyway),
    #: so the caller does not scan ``x`` first.
    loss_checks_finite: bool

    def check_device(self, device: torch.device) -> None:
        """Raise ``InputError(arg="backend", kind="device")`` if ``device``
        cannot be served (say which backend to use, or what to install)."""
        ...

    def auto_for(self, device: torch.device) -> bool:
        """Whether ``backend="auto"`` may pick this backend for ``device``."""
        ...

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
        """``(pos_idx, neg_idx)``, int64 (N,), -1 where none."""
        ...

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
        """``(anchor, positive, negative)``, int64, 1-D, equal lengths."""
        ...

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
        """The differentiable loss: 0-d, or (N,) for ``reduction="none"``."""
        ...


def reference_rows(
    x: Tensor,
    labels: Tensor,
    ref: Tensor | None,
    ref_labels: Tensor | None,
    ref_follows_batch: bool,
) -> tuple[Tensor | None, Tensor | None, int | None]:
    """``(ref, ref_labels, self_offset)`` for a kernel that mines against one reference set.

    Maps the protocol's three reference modes onto one set: ``ref=None``
    (the batch itself, query i excluded: offset 0), a separate ``ref``
    (every same-label row eligible: offset ``None``) and
    ``ref_follows_batch`` (the batch followed by ``ref``, query i excluded:
    offset 0; a tie goes to the batch, which comes first).
    """
    if ref is None or ref_labels is None:
        return ref, ref_labels, 0
    if ref_follows_batch:
        return torch.cat([x, ref]), torch.cat([labels, ref_labels]), 0
    return ref, ref_labels, None


# Registration order is the preference order of backend="auto".
_REGISTRY: dict[str, TorchBackend] = {}
_BUILTINS_LOADED = False


def _load_builtins() -> None:
    """Register the built-in backends (``_options.BACKENDS``: Triton, Rust, tiled torch), once.

    Imported here, at first use, because their modules import this one.
    """
    global _BUILTINS_LOADED
    if _BUILTINS_LOADED:
        return
    _BUILTINS_LOADED = True
    from ._rust import RUST_BACKEND
    from ._tiled_backend import TILED_BACKEND
    from .triton import TRITON_BACKEND

    builtin: dict[str, TorchBackend] = {
        b.name: b for b in (TRITON_BACKEND, RUST_BACKEND, TILED_BACKEND)
    }
    for name in BACKENDS:  # "auto", then the built-ins in auto's order
        if name in builtin and name not in _REGISTRY:
            register_backend(builtin[name])


def register_backend(backend: TorchBackend, *, prefer: bool = False) -> None:
    """Make ``backend`` selectable as ``backend=backend.name``.

    The built-ins are registered first, so without ``prefer`` a backend
    comes after them for ``"auto"``; ``prefer=True`` puts it ahead of every
    registered one (a specialised backend, e.g. for CUDA, ahead of the
    portable one). Registering a name again replaces that backend.
    """
    if backend.name == "auto":
        raise ValueError("'auto' is not a backend name")
    _load_builtins()
    _REGISTRY.pop(backend.name, None)
    if prefer:
        rest = dict(_REGISTRY)
        _REGISTRY.clear()
        _REGISTRY[backend.name] = backend
        _REGISTRY.update(rest)
    else:
        _REGISTRY[backend.name] = backend


def registered_backends() -> tuple[TorchBackend, ...]:
    """The registered backends in ``"auto"``'s preference order."""
    _load_builtins()
    return tuple(_REGISTRY.values())


def backend_choices() -> tuple[str, ...]:
    """The accepted ``backend=`` strings: ``"auto"`` and the registered names."""
    _load_builtins()
    return ("auto", *_REGISTRY)


def check_backend_name(backend: str) -> str:
    """``backend`` if it names ``"auto"`` or a registered backend."""
    return as_choice(backend, "backend", backend_choices())


def resolve_backend(backend: str, device: torch.device) -> TorchBackend:
    """The backend object for ``backend=`` and the tensors' ``device``.

    ``"auto"`` takes the first registered backend whose ``auto_for(device)``
    holds; a named one must accept the device (``check_device``).
    """
    name = check_backend_name(backend)
    if name == "auto":
        for candidate in _REGISTRY.values():
            if candidate.auto_for(device):
                return candidate
        raise InputError(f"backend: no backend serves {device}", "backend", "device")
    chosen = _REGISTRY[name]
    chosen.check_device(device)
    return chosen
