"""P x K batches for the triplet losses: a few classes, several rows each, so
that every anchor has a positive. NumPy only; for a ``torch`` sampler with
representatives see :mod:`tripletcore.torch.sampler`."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

I64 = npt.NDArray[np.int64]


def pk_batch(labels: Any, size: int, *, rng: np.random.Generator | int | None = None) -> I64:
    """Row indices (int64) of a P x K batch of exactly ``size`` rows.

    P = ``min(#classes, size // 2)`` classes (at least 2) are drawn at random
    without replacement, so K >= 2 and every anchor has a positive; the rows
    are shared out as evenly as possible (the first ``size % P`` classes get
    one more). Within a class the rows are drawn without replacement while
    the class has enough of them, else with replacement. ``rng`` is a
    ``numpy.random.Generator`` (advanced in place) or a seed.

    Raises ``TypeError`` for non-integer labels or size, ``ValueError`` for
    labels that are not 1-D, fewer than two classes, or ``size < 2``.
    """
    lab = np.asarray(labels)
    if lab.dtype.kind not in "iu":
        raise TypeError(f"labels must have an integer dtype, got {lab.dtype}")
    if lab.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {lab.shape}")
    if isinstance(size, bool) or not isinstance(size, int | np.integer):
        raise TypeError(f"size must be an int, got {type(size).__name__}")
    if size < 2:
        raise ValueError(f"size must be >= 2, got {size}")
    classes = np.unique(lab)
    if len(classes) < 2:
        raise ValueError(f"labels must hold at least two classes, got {len(classes)}")
    gen = np.random.default_rng(rng)  # a Generator is used as is
    p = max(2, min(len(classes), size // 2))
    chosen = gen.choice(classes, p, replace=False)
    counts = np.full(p, size // p)
    counts[: size % p] += 1
    rows = []
    for c, k in zip(chosen, counts, strict=True):
        pool = np.flatnonzero(lab == c)
        rows.append(gen.choice(pool, int(k), replace=bool(k > len(pool))))
    return np.concatenate(rows).astype(np.int64)


__all__ = ["pk_batch"]
