"""Triplet-Separation theory (seed paper 001): certified bounds on how far a
configuration is from the Triplet-Separated set ``F_TS``, and the thickness.

* :func:`ts_distance_bounds` and :func:`nearest_triplet_separated`: intervals
  for ``d_iso(f, F_TS)`` and ``d_haus(f, F_TS)``, with explicit, verified
  Triplet-Separated configurations as the upper certificates
  (:mod:`tripletcore.theory.separation`).
* :func:`iso_lower_bound_lp`: the certified semimetric-LP lower bound on
  ``d_iso(f, F_TS)`` for small sets, and :func:`iso_distance_line`, its exact
  value on the line by branch and bound (:mod:`tripletcore.theory.lp`; needs
  scipy).
* :func:`thickness`: certified bounds on the minimum width of a point set
  (the same function as ``tripletcore.thickness``).
"""

from ..geometry import Thickness, thickness
from .lp import CertifiedValue, LineResult, iso_distance_line, iso_lower_bound_lp
from .separation import (
    OBJECTIVES,
    TSBounds,
    TSConfiguration,
    nearest_triplet_separated,
    ts_distance_bounds,
)

__all__ = [
    "OBJECTIVES",
    "CertifiedValue",
    "LineResult",
    "TSBounds",
    "TSConfiguration",
    "Thickness",
    "iso_distance_line",
    "iso_lower_bound_lp",
    "nearest_triplet_separated",
    "thickness",
    "ts_distance_bounds",
]
