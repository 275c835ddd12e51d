"""PyTorch layer: triplet losses, miners and a cross-batch memory for tensors.

CPU tensors go through the Rust kernels without a copy; CUDA tensors (or
``backend="torch"``) through a tiled implementation in torch ops that never
holds the N x N distance matrix. Semantics follow the NumPy API
(docs/api.md); the user guide is docs/torch.md.
"""

from .._extras import missing

try:
    import torch as _torch  # noqa: F401
except ImportError as _exc:
    raise ImportError(missing("tripletcore.torch", "PyTorch", "torch"), name="torch") from _exc

from ._loss import TripletMarginLoss, triplet_margin_loss
from .decomposition import (
    DecomposedTripletLoss,
    GradientComponents,
    NCAWeights,
    SCWeights,
    SelectivelyContrastiveLoss,
    TripletWeights,
    combine_components,
    mine_triplets,
    triplet_gradient_components,
)
from .distributed import all_gather_with_grad
from .evaluation import knn, retrieval_metrics
from .memory import CrossBatchMemory
from .miners import BatchHardMiner, SemiHardMiner, TripletMarginMiner
from .proxies import MultiProxyLoss, ProximalRegularizer, RoundController
from .sampler import (
    RepresentativeBatchSampler,
    RepresentativeTripletLoss,
    representative_triplet_loss,
)

__all__ = [
    "BatchHardMiner",
    "CrossBatchMemory",
    "DecomposedTripletLoss",
    "GradientComponents",
    "MultiProxyLoss",
    "NCAWeights",
    "ProximalRegularizer",
    "RepresentativeBatchSampler",
    "RepresentativeTripletLoss",
    "RoundController",
    "SCWeights",
    "SelectivelyContrastiveLoss",
    "SemiHardMiner",
    "TripletMarginLoss",
    "TripletMarginMiner",
    "TripletWeights",
    "all_gather_with_grad",
    "combine_components",
    "knn",
    "mine_triplets",
    "representative_triplet_loss",
    "retrieval_metrics",
    "triplet_gradient_components",
    "triplet_margin_loss",
]
