"""tripletcore: exact, fast, memory-lean triplet mining and losses.

The O(N^2) work runs in a Rust core (tiled, parallel, never materialising
the N x N matrix except in :func:`cdist`); this package is a thin typed
layer over it.
"""

from ._core import __version__
from .distance import cdist
from .loss import triplet_margin_loss
from .mining import BatchHardResult, SemiHardResult, batch_hard, semi_hard

__all__ = [
    "BatchHardResult",
    "SemiHardResult",
    "__version__",
    "batch_hard",
    "cdist",
    "semi_hard",
    "triplet_margin_loss",
]
