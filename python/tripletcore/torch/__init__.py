"""PyTorch layer: triplet losses, miners and a cross-batch memory for tensors.

CPU tensors go through the Rust kernels without a copy; CUDA tensors (or
``backend="torch"``) through a tiled implementation in torch ops that never
holds the N x N distance matrix. Semantics follow the NumPy API
(docs/api.md); the user guide is docs/torch.md.
"""

from ._loss import TripletMarginLoss, triplet_margin_loss
from .distributed import all_gather_with_grad
from .memory import CrossBatchMemory
from .miners import BatchHardMiner, SemiHardMiner

__all__ = [
    "BatchHardMiner",
    "CrossBatchMemory",
    "SemiHardMiner",
    "TripletMarginLoss",
    "all_gather_with_grad",
    "triplet_margin_loss",
]
