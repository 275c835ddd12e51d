"""Exact k-NN of torch tensors: the problem as the Rust kernel sees it, and
the tiled torch path (any device).

The Rust kernel (rust/core/src/knn.rs) first divides the data by a power of
two when its magnitudes are outside 2**+-(emax/4) (scale.rs), ranks
neighbours on float64 squared distances from coordinate differences summed
in its fixed order (of rows divided by their ``safe_norm`` for cosine), ties
to the lowest index, and maps the distances back. :class:`KnnProblem` does
the same preparation, so every path here ranks on the same float64 keys and
returns the same indices.

The torch path screens a chunk of query rows with the expansion
(``_tiled._Space``, level 0), keeps every reference row whose screen key is
within three error bounds of the row's k-th smallest one (the argument is in
``triton/_knn_kernels.py``), and ranks those pairs on the exact keys. At
most a chunk x M block of keys exists at a time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from .._errors import InputError
from ._tiled import _PAIR_SLICE, _Space, _sum_squares, chunk_rows

# Rows of one slice of the float64 norm computation.
_NORM_ROWS = 1 << 16


def _pow2_scale(x: Tensor, y: Tensor | None) -> float:
    """scale.rs ``pow2_scale``: 1, or the power of two to divide the data by."""
    # max |v| without an N x d temporary
    amax = max(float(x.max()), -float(x.min()))
    if y is not None:
        amax = max(amax, float(y.max()), -float(y.min()))
    limit = math.floor(math.log2(torch.finfo(x.dtype).max)) / 4.0
    if amax == 0.0 or -limit < math.log2(amax) < limit:
        return 1.0
    return 2.0 ** math.floor(math.log2(amax))


def safe_norms(x: Tensor, name: str) -> Tensor:
    """Float64 row norms as the Rust ``safe_norm`` forms them: scaled by the
    row's largest magnitude, squares summed left to right (same bits)."""
    out = torch.empty(x.shape[0], dtype=torch.float64, device=x.device)
    for s in range(0, x.shape[0], _NORM_ROWS):  # float64 copies of a slice at a time
        a = x[s : s + _NORM_ROWS].double()
        amax = a.abs().amax(dim=1)
        zero = torch.nonzero(amax == 0).flatten()
        if zero.numel():
            raise InputError(
                f"{name} row {s + int(zero[0])} has norm 0; the cosine distance is undefined "
                "for it",
                name,
                "zero_norm",
            )
        q = a / amax[:, None]
        n2 = torch.zeros_like(amax)
        for c in range(q.shape[1]):
            n2 = n2 + q[:, c] * q[:, c]
        out[s : s + _NORM_ROWS] = amax * correct_sqrt(n2)
    return out


def correct_sqrt(v: Tensor) -> Tensor:
    """The correctly rounded square root (Rust's ``f64::sqrt``): torch's
    float64 sqrt on the CPU is not always (2.x with AVX-512), CUDA's is."""
    if v.device.type == "cpu":
        return torch.from_numpy(np.sqrt(v.numpy()))
    return v.sqrt()


@dataclass
class KnnProblem:
    """Query rows ``x`` against reference rows ``y`` (``None``: ``x`` itself),
    divided by ``scale`` as the Rust kernel divides them."""

    x: Tensor
    y: Tensor | None
    k: int
    metric: str
    self_excluded: bool
    scale: float = 1.0
    norms: tuple[Tensor, Tensor] | None = None  # cosine: float64 safe norms of x, y
    _space: _Space | None = field(default=None, repr=False)

    @classmethod
    def build(
        cls, x: Tensor, y: Tensor | None, k: int, metric: str, exclude_self: bool
    ) -> KnnProblem:
        s = _pow2_scale(x, y)
        if s != 1.0:  # in float64, then rounded once, as scale.rs ``divided``
            x = (x.double() / s).to(x.dtype)
            y = None if y is None else (y.double() / s).to(y.dtype)
        norms = None
        if metric == "cosine":
            nx = safe_norms(x, "x")
            norms = (nx, nx if y is None else safe_norms(y, "y"))
        return cls(x, y, k, metric, y is None and exclude_self, s, norms)

    @property
    def ref(self) -> Tensor:
        return self.x if self.y is None else self.y

    @property
    def space(self) -> _Space:
        """The screen's rows (centred, or unit for cosine), norms and bound."""
        if self._space is None:
            x, y = self.x, self.y
            if self.norms is not None:  # near-unit rows: no norm underflows in _Space
                x = x / self.norms[0].to(x.dtype)[:, None]
                y = None if y is None else y / self.norms[1].to(y.dtype)[:, None]
            self._space = _Space(x, y, self.metric)
        return self._space

    def pair_d2(self, rows: Tensor, cols: Tensor) -> Tensor:
        """Float64 squared distances of the pairs, bit for bit the Rust ``Exact::d2``."""
        parts = []
        for s in range(0, rows.numel(), _PAIR_SLICE):
            r, c = rows[s : s + _PAIR_SLICE], cols[s : s + _PAIR_SLICE]
            u, v = self.x[r].double(), self.ref[c].double()
            if self.norms is not None:
                u, v = u / self.norms[0][r, None], v / self.norms[1][c, None]
            parts.append(_sum_squares(u - v))
        return torch.cat(parts) if parts else rows.new_zeros(0, dtype=torch.float64)

    def distances(self, d2: Tensor, dtype: torch.dtype) -> Tensor:
        """Distances in ``dtype`` from squared ones, rounded as knn.rs rounds them."""
        if self.metric == "euclidean":
            d = correct_sqrt(d2)
        elif self.metric == "cosine":
            d = 0.5 * d2
        else:
            d = d2
        out = d.to(dtype)
        # scale.rs: distances times s (euclidean) or s^2 (sqeuclidean) for the
        # power of two s, exactly (Pow2): 0 stays 0, an overflow is inf
        power = {"euclidean": 1, "sqeuclidean": 2}.get(self.metric, 0)
        if self.scale != 1.0 and power:
            exponent = power * (math.frexp(self.scale)[1] - 1)
            out = torch.ldexp(out.double(), torch.tensor(exponent, device=out.device)).to(dtype)
        return out


def first_k(rows: Tensor, cols: Tensor, d2: Tensor, n_rows: int, k: int) -> tuple[Tensor, Tensor]:
    """Per row, the k pairs of smallest ``d2``, ties to the lowest column.

    ``(rows, cols)`` come row-major with ascending columns within a row, and
    every row has at least k pairs; returns (n_rows x k) columns and keys.
    """
    order = torch.sort(d2, stable=True).indices  # equal keys keep their column order
    order = order[torch.sort(rows[order], stable=True).indices]
    r, c, v = rows[order], cols[order], d2[order]
    counts = torch.bincount(rows, minlength=n_rows)
    start = torch.cumsum(counts, 0) - counts
    pos = torch.arange(r.numel(), device=r.device) - start[r]
    keep = pos < k
    idx = torch.empty(n_rows, k, dtype=torch.int64, device=r.device)
    key = torch.empty(n_rows, k, dtype=torch.float64, device=r.device)
    idx[r[keep], pos[keep]] = c[keep]
    key[r[keep], pos[keep]] = v[keep]
    return idx, key


def torch_knn(problem: KnnProblem, rows: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Indices and float64 squared distances (len(rows) x k) of the query
    ``rows`` (``None``: every row), by the tiled torch path."""
    space, k = problem.space, problem.k
    device = problem.x.device
    if rows is None:
        rows = torch.arange(space.rows, device=device)
    m = space.cols
    step = chunk_rows(max(1, rows.numel()), m, 2 * problem.x.element_size() + 2, None)
    idx = torch.empty(rows.numel(), k, dtype=torch.int64, device=device)
    key = torch.empty(rows.numel(), k, dtype=torch.float64, device=device)
    for s in range(0, rows.numel(), step):
        part = rows[s : s + step]
        keys = space.keys(part, space.start)
        if problem.self_excluded:
            keys[torch.arange(part.numel(), device=device), part] = math.inf
        kth = torch.topk(keys, k, dim=1, largest=False).values[:, -1]
        hit = keys <= (kth + 3.0 * space.tol(part, space.start))[:, None]
        r, c = torch.nonzero(hit, as_tuple=True)
        d2 = problem.pair_d2(part[r], c)
        idx[s : s + step], key[s : s + step] = first_k(r, c, d2, part.numel(), k)
    return idx, key
