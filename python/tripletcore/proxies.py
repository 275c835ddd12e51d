"""Proxy selection and its worst-case bound (seed paper 003, chance constraints).

:func:`kcenter` is greedy farthest-point selection (the paper's proxy
(re-)initialisation); :func:`covering_radius` is the bound the paper's
analysis rests on, the largest distance from a sample to its nearest
same-class proxy. Both are Euclidean and exact: squared distances are summed
in float64 from coordinate differences, ties go to the lowest index, and the
answers do not depend on the number of threads.
"""

from __future__ import annotations

import numbers
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from . import _core
from ._convert import IntArray, _integer_labels, as_embeddings, as_label_pair, as_two
from ._errors import InputError


class KCenterResult(NamedTuple):
    """``indices``: the chosen rows of ``X`` in the order chosen (int64).
    ``radius``: the covering radius they reach together with the seeds,
    ``max_i min_c ||X_i - c||`` over the chosen rows and seeds ``c``;
    ``farthest``: the row attaining it (lowest index on ties)."""

    indices: IntArray
    radius: float
    farthest: int


class CoveringRadius(NamedTuple):
    """Per class ``c`` the radius ``max_{i in c} min_{p in c} ||X_i - P_p||``
    (``per_class``, classes ascending in ``classes``) with the sample row
    and proxy row attaining it; ``radius`` is the largest over classes, in
    class ``label``, attained by sample ``sample`` and proxy ``proxy``."""

    radius: float
    label: int
    sample: int
    proxy: int
    classes: npt.NDArray[np.integer[Any]]
    per_class: npt.NDArray[np.float64]
    per_class_sample: IntArray
    per_class_proxy: IntArray


def _as_index(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    return int(value)


def kcenter(X: Any, k: int, seeds: Any = None, *, first: int = 0) -> KCenterResult:
    """Greedy k-center: ``k`` rows of ``X`` chosen one at a time, each the row
    farthest from everything chosen so far (Gonzalez's 2-approximation of
    the optimal covering radius).

    Without ``seeds`` the first centre is row ``first`` (row 0 by default).
    ``seeds`` (an ``(S, d)`` array of points, e.g. the current proxies; they
    need not be rows of ``X``) count as already chosen: the first centre is
    then the row farthest from the seeds. A chosen row is never chosen
    again, so rows equal to a centre are picked only once every other row is
    covered at distance 0. Each round is one parallel pass over the rows:
    O(N) memory, O(N (k + S) d) time.
    """
    k = _as_index(k, "k")
    first = _as_index(first, "first")
    if seeds is None:
        x = as_embeddings(X, "X")
        s = None
    else:
        x, s = as_two(X, seeds, ("X", "seeds"), same_rows=False)
    n = x.shape[0]
    if not 1 <= k <= n:
        raise InputError(f"k must be between 1 and {n} (the rows of X), got {k}", "k", "range")
    if not 0 <= first < n:
        raise InputError(f"first must be a row of X (0..{n - 1}), got {first}", "first", "range")
    indices, radius, farthest = _core.kcenter(x, k, s, first)
    return KCenterResult(indices, float(radius), int(farthest))


def covering_radius(X: Any, labels: Any, proxies: Any, proxy_labels: Any) -> CoveringRadius:
    """The largest distance from a sample to its nearest proxy of the same
    class, per class and overall (a directed Hausdorff distance per class).

    Every class of ``labels`` needs at least one proxy (else ``ValueError``);
    proxies of classes without samples are ignored. Ties: lowest sample
    row, then lowest proxy row; over classes, the lowest label.
    """
    x, p = as_two(X, proxies, ("X", "proxies"), same_rows=False)
    # Checked under their own names first; then one common integer coding.
    _integer_labels(labels, "labels", x.shape[0], "X")
    _integer_labels(proxy_labels, "proxy_labels", p.shape[0], "proxies")
    lab, plab = as_label_pair(labels, proxy_labels, x.shape[0], p.shape[0])
    classes, values, samples, owners = _core.covering_radius(x, lab, p, plab)
    orig = np.asarray(labels)
    if orig.dtype.kind != "i":
        # Unsigned labels: report the caller's values (the codes the kernel
        # saw are sorted, so their first rows give the classes in order).
        _, rows = np.unique(lab, return_index=True)
        classes = orig[rows]
    c = int(np.argmax(values))
    return CoveringRadius(
        float(values[c]),
        int(classes[c]),
        int(samples[c]),
        int(owners[c]),
        classes,
        values,
        samples,
        owners,
    )
