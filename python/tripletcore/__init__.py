"""tripletcore: exact, fast, memory-lean triplet mining and losses.

The O(N^2) work runs in a Rust core (tiled, parallel, never materialising
the N x N matrix except in :func:`cdist`); this package is a thin typed
layer over it.
"""

from ._core import __version__
from ._errors import InputError
from .distance import cdist
from .evaluation import KnnResult, RetrievalMetrics, knn, retrieval_metrics
from .geometry import (
    Attained,
    ClassHausdorffResult,
    Displacement,
    HardestTriplet,
    Thickness,
    class_hausdorff,
    diameter,
    hardest_triplet,
    hausdorff,
    is_triplet_separated,
    isometric_error,
    sup_displacement,
    thickness,
)
from .loss import triplet_margin_loss
from .mining import BatchHardResult, SemiHardResult, batch_hard, semi_hard
from .proxies import CoveringRadius, KCenterResult, covering_radius, kcenter
from .sampling import pk_batch

__all__ = [
    "Attained",
    "BatchHardResult",
    "ClassHausdorffResult",
    "CoveringRadius",
    "Displacement",
    "HardestTriplet",
    "InputError",
    "KCenterResult",
    "KnnResult",
    "RetrievalMetrics",
    "SemiHardResult",
    "Thickness",
    "__version__",
    "batch_hard",
    "cdist",
    "class_hausdorff",
    "covering_radius",
    "diameter",
    "hardest_triplet",
    "hausdorff",
    "is_triplet_separated",
    "isometric_error",
    "kcenter",
    "knn",
    "pk_batch",
    "retrieval_metrics",
    "semi_hard",
    "sup_displacement",
    "thickness",
    "triplet_margin_loss",
]
