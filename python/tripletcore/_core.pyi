"""Type stubs of the compiled extension (`rust/python`).

Every function raises `tripletcore.InputError` (a `ValueError`, defined in
`tripletcore/_errors.py`) for bad values and `TypeError` for wrong types;
`rust/python/src/errors.rs` does the mapping.
"""

from typing import Any

import numpy as np
import numpy.typing as npt

_F = npt.NDArray[np.float32] | npt.NDArray[np.float64]
_I = npt.NDArray[np.int64]

__all__ = [
    "all_finite",
    "cdist",
    "batch_hard",
    "semi_hard",
    "triplet_margin_loss",
    "hausdorff",
    "class_hausdorff",
    "sup_displacement",
    "diameter",
    "hardest_triplet",
    "min_width_2d",
    "knn",
    "pair_distances",
    "isometric_error",
    "kcenter",
    "covering_radius",
    "_force_panic",
    "_pruning_counts",
    "_set_pruning",
    "_set_bound_tightening",
    "_isometric_error_mode",
    "__version__",
]

__version__: str

def all_finite(x: npt.NDArray[np.float32] | npt.NDArray[np.float64]) -> bool: ...
def cdist(x: _F, y: _F | None, metric: str) -> _F: ...
def batch_hard(
    x: _F, labels: _I, metric: str, y: _F | None, ref_labels: _I | None
) -> tuple[_I, _F, _I, _F]: ...
def semi_hard(
    x: _F, labels: _I, margin: float, metric: str, fallback: str
) -> tuple[_I, _I, _I, _F, _F]: ...
def triplet_margin_loss(
    x: _F,
    labels: _I,
    margin: float,
    mining: str,
    metric: str,
    soft: bool,
    reduction: str,
    fallback: str,
) -> tuple[Any, _F]: ...
def hausdorff(a: _F, b: _F, directed: bool, pruning: str = ...) -> tuple[float, int, int]: ...
def class_hausdorff(
    x1: _F, x2: _F, labels: _I, pruning: str = ...
) -> tuple[_I, npt.NDArray[np.float64], _I, _I]: ...
def sup_displacement(x1: _F, x2: _F) -> tuple[float, int]: ...
def diameter(a: _F) -> tuple[float, int, int]: ...
def hardest_triplet(x: _F, labels: _I) -> tuple[float, int, int, int]: ...
def isometric_error(x1: _F, x2: _F) -> tuple[float, int, int]: ...
def min_width_2d(a: _F) -> tuple[float, tuple[float, float], int, int, int]: ...
def knn(
    x: _F, k: int, y: _F | None, metric: str, exclude_self: bool, symmetric: bool = ...
) -> tuple[_I, _F]: ...
def pair_distances(x: _F, y: _F, rows: _I, cols: _I, metric: str) -> npt.NDArray[np.float64]: ...
def kcenter(x: _F, k: int, seeds: _F | None, first: int) -> tuple[_I, float, int]: ...
def covering_radius(
    x: _F, labels: _I, proxies: _F, proxy_labels: _I, pruning: str = ...
) -> tuple[_I, npt.NDArray[np.float64], _I, _I]: ...
def _force_panic(name: str | None) -> None: ...  # test only (tests/test_robustness.py)
def _pruning_counts() -> tuple[int, int]: ...  # benches: block pairs considered, skipped
def _set_pruning(on: bool) -> bool: ...  # tests/benches: the unpruned path
def _set_bound_tightening(t: float) -> None: ...  # test only: a bound too tight
def _isometric_error_mode(
    x1: _F, x2: _F, mode: str, leaf: int
) -> tuple[float, int, int, int, int]: ...  # test only: forced scan; block pairs scanned, all
