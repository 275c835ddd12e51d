"""Certified bounds on the thickness (minimum width) of a point set in R^n.

``theta(A) = min over unit e of width_e(A)``, ``width_e(A) = max_x e.x - min_x e.x``
(Definition 3 of the seed paper). The 2-D case is solved exactly elsewhere; this
module brackets ``theta`` for any ``n`` (``n <= 6`` to a relative ``rtol``):

* upper bounds: the width along explicit directions (singular vectors, simplex
  directions, random ones), a batched smoothed descent on the sphere, then
  successive LPs on the polar body ``{y : width_y(A) <= 1}`` (SciPy's HiGHS; a
  NumPy vertex-hopping search without SciPy) down to a local minimum;
* lower bounds, each rigorous: (a) the exact width of simplices spanned by rows
  of ``A`` (``hull(A)`` contains them; width is monotone under inclusion);
  (b) ``sqrt(lambda_min(sum_k w_k d_k d_k^T))`` for a probability weighting of
  difference vectors ``d_k`` (the useful one above ``n = 6``); (c) for
  ``n <= 6``, branch and bound over the sphere, every cell bounded by
  ``min_{e in cell} g.e`` for vectors ``g`` of the difference body
  ``conv(A) - conv(A)``: the extreme pairs at the cell centre and "certificates"
  aligned with locally optimal directions, which near the minimum lose only
  ``theta * rho^2 / 2`` on a cell of angular radius ``rho``.

Lower bounds are computed in float64 and then lowered by explicit bounds on the
rounding error, so ``lower <= theta(A)`` holds rigorously. ``upper`` is the width
of ``A`` along ``direction`` as computed in float64 (``ptp(A @ direction)``).
"""

from __future__ import annotations

import importlib
import math
from fractions import Fraction
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ._thickness_lower import _CHUNK, _U, _branch_and_bound, _design_lower, _simplex_lower

F64 = NDArray[np.float64]

_MAX_BB_DIM = 6  # branch and bound above this dimension is hopeless
_USE_SCIPY = True  # tests switch this off to exercise the NumPy fallbacks


def _scipy(name: str) -> Any:
    """``scipy.<name>`` or None (SciPy is optional; importlib keeps mypy from
    needing its stubs)."""
    if not _USE_SCIPY:
        return None
    try:
        return importlib.import_module("scipy." + name)
    except Exception:  # pragma: no cover - depends on the environment
        return None


def _linprog() -> Any:
    opt = _scipy("optimize")
    return None if opt is None else opt.linprog


def _widths(X: F64, E: F64) -> F64:
    """Float widths of the rows of ``X`` along each row of ``E`` (chunked)."""
    out = np.empty(E.shape[0])
    step = max(1, _CHUNK // max(1, X.shape[0]))
    for s in range(0, E.shape[0], step):
        P = X @ E[s : s + step].T
        out[s : s + step] = P.max(axis=0) - P.min(axis=0)
    return out


def _ptp(A: F64, e: F64) -> float:
    t = A @ e
    return float(t.max() - t.min())


def thickness_interval(
    A: F64, *, rtol: float = 1e-6, max_cells: int = 200_000, seed: int = 0
) -> tuple[float, float, F64, bool]:
    """Certified interval ``lower <= theta(A) <= upper`` for the thickness of the rows of ``A``.

    ``A``: finite float64 ``(N, n)``, ``N >= 1`` (validated by the caller). Returns
    ``(lower, upper, direction, exact)``: ``direction`` is a unit vector with
    ``ptp(A @ direction) == upper``; ``exact`` is True when ``upper - lower <=
    rtol * upper`` (or theta is known to be exactly 0: ``N <= n``, equal rows).
    ``lower`` is rigorous, rounding included; ``upper`` is the float64 width, within
    about ``n * eps * max|x|`` of the exact width along ``direction``.
    ``max_cells`` bounds the cells of the branch and bound (``n <= 6``; lowered for
    hulls with very many vertices so that the work stays near 2e9 flops); ``seed``
    fixes the random starts. Above ``n = 6`` the interval is not tight (the lower
    bound is typically 40-70% of the upper one for Gaussian clouds).
    """
    A = np.ascontiguousarray(A, dtype=np.float64)
    N, n = A.shape
    e1 = np.zeros(n)
    e1[0] = 1.0
    if N == 1 or bool(np.all(A == A[0])):
        return 0.0, 0.0, e1, True
    if n == 1:
        hi, lo = float(A.max()), float(A.min())
        w = hi - lo
        # the float difference may round up: step down if it did
        low = w if Fraction(w) <= Fraction(hi) - Fraction(lo) else math.nextafter(w, 0.0)
        return low, w, e1, True
    scale, X = _normalise(A)
    if N <= n:
        # the affine hull has dimension < n: its normal has width exactly 0
        _, _, Vt = np.linalg.svd(X, full_matrices=True)
        return 0.0, 0.0, np.ascontiguousarray(Vt[-1]), True
    R = float(np.sqrt(np.einsum("ij,ij->i", X, X).max())) * (1.0 + 1e-12)
    slack = (40.0 * n + 128.0) * _U * R  # see _branch_and_bound
    rng = np.random.default_rng(seed)
    search = _Search(X, rng)
    lower = 0.0
    if search.ub > 1e3 * slack:  # else numerically flat: nothing to certify
        lower, dirs = _simplex_lower(X, R, rng, n_restarts=8 if n <= 16 else 1)
        search.offer(dirs)
        if n > _MAX_BB_DIM:
            low, dirs = _design_lower(X, R, rng)
            lower = max(lower, low)
            search.offer(dirs)
        search.polish(starts=3 if n <= _MAX_BB_DIM else 6)
        if n <= _MAX_BB_DIM and lower < search.ub * (1.0 - 0.9 * rtol):
            lower = max(lower, _branch_and_bound(search, rtol, max_cells, slack))
            if lower < search.ub * (1.0 - rtol):  # budget exhausted
                lower = max(lower, _design_lower(X, R, rng)[0])
    e = search.best_e
    upper = _ptp(A, e)
    lower = min(float(np.ldexp(max(lower, 0.0), scale)), upper)
    exact = upper - lower <= rtol * upper
    return float(lower), float(upper), e, bool(exact)


def _normalise(A: F64) -> tuple[int, F64]:
    """``(k, X)`` with ``A = 2^k (X + c)``, ``max|X|`` in ``(1/2, 1]``.

    Both scalings are by powers of two (exact, barring underflow of entries far
    below the largest, which moves points by far less than the rounding slack), so
    widths neither overflow nor underflow; ``X = fl(A / s - c)`` moves each point
    by at most ``u |x - c|``."""
    e_a = math.frexp(float(np.abs(A).max()))[1]
    As = np.ldexp(A, -e_a)
    X = As - As.mean(axis=0)
    m = float(np.abs(X).max())
    if m == 0.0:  # the centring merged distinct rows: centre on a row instead
        X = As - As[0]
        m = float(np.abs(X).max())
    e_x = math.frexp(m)[1]
    X = np.ldexp(X, -e_x)
    return e_a + e_x, np.ascontiguousarray(X)


# ----------------------------------------------------------------------------- upper


class _Search:
    """Best direction so far; widths are screened on a subset ``H`` of the centred
    rows (hull vertices or extreme points) and confirmed on all of them."""

    def __init__(self, X: F64, rng: np.random.Generator) -> None:
        self.X = X
        self.rng = rng
        n = X.shape[1]
        self.H = _reduce(X, rng)
        self.best_e = np.eye(n)[0]
        self.ub = math.inf
        self.certs: list[F64] = []
        self.refined: list[F64] = []
        _, _, Vt = np.linalg.svd(X[: min(X.shape[0], 20_000)], full_matrices=False)
        rand = rng.standard_normal((256 * n if n <= 8 else 64 * n, n))
        cand = np.vstack([Vt[::-1], np.eye(n), rand / np.linalg.norm(rand, axis=1)[:, None]])
        self.offer(cand)

    def offer(self, E: F64, wH: F64 | None = None) -> bool:
        """Consider directions ``E`` (rows, unit); True if the best improved."""
        if E.shape[0] == 0:
            return False
        if wH is None:
            wH = _widths(self.H, E)
        improved = False
        for k in np.argsort(wH)[:8]:
            if not wH[k] < self.ub:
                break
            e = E[k]
            t = self.X @ e
            w = float(t.max() - t.min())
            tH = self.H @ e
            if t.max() > tH.max() or t.min() < tH.min():
                # H missed a support point (no hull available): add it
                self.H = np.vstack([self.H, self.X[[int(t.argmax()), int(t.argmin())]]])
            if w < self.ub:
                self.ub, self.best_e, improved = w, np.ascontiguousarray(e), True
        return improved

    def polish(self, starts: int = 3) -> None:
        """Smoothed descent from a batch of good and random directions, then local
        LP refinement of the best few distinct results."""
        n = self.X.shape[1]
        B = 32 if n <= _MAX_BB_DIM else 64
        rand = self.rng.standard_normal((64 * n, n))
        E = rand / np.linalg.norm(rand, axis=1)[:, None]
        good = E[np.argsort(_widths(self.H, E))[: B // 2]]
        E = np.vstack([self.best_e, good, E[: B - 1 - good.shape[0]]])
        w, E = _descend(self.H, E)
        self.offer(E, w)
        chosen: list[F64] = [self.best_e]
        for k in np.argsort(w):
            if len(chosen) >= starts:
                break
            if all(abs(float(f @ E[k])) < 0.999 for f in chosen):
                chosen.append(E[k])
        for e in chosen:
            self._refine(e)

    def _refine(self, e: F64) -> None:
        for f in self.refined:
            if abs(float(f @ e)) > 1.0 - 1e-12:
                return
        self.refined.append(e)
        lp = _linprog()
        d = _refine_lp(self.H, e, lp) if lp is not None else _refine_hop(self.H, e)
        if d is None:
            return
        self.offer(d[None, :])
        if self.X.shape[1] > _MAX_BB_DIM:
            return  # certificates only serve the branch and bound
        g = _certificate(self.H, d)
        if g is not None:
            self.certs.append(g)


def _descend(H: F64, E: F64, iters: int = 300) -> tuple[F64, F64]:
    """Batched descent on the sphere from the rows of ``E``: normalised steps down
    the gradient of a log-sum-exp smoothed width, step and smoothing shrinking
    geometrically. Returns the best width (on ``H``) and direction of each run."""
    R = float(np.linalg.norm(H, axis=1).max())
    best = _widths(H, E)
    bestE = E.copy()
    s0, s1 = 0.3, 1e-4
    for k in range(iters):
        s = s0 * (s1 / s0) ** (k / (iters - 1))
        P = H @ E.T
        tau = 0.5 * s * R
        a = np.exp((P - P.max(axis=0)) / tau)
        b = np.exp((P.min(axis=0) - P) / tau)
        G = (H.T @ (a / a.sum(axis=0) - b / b.sum(axis=0))).T
        G -= np.einsum("ij,ij->i", G, E)[:, None] * E
        G /= np.maximum(np.linalg.norm(G, axis=1), 1e-300)[:, None]
        E = E - s * G
        E /= np.linalg.norm(E, axis=1)[:, None]
        w = _widths(H, E)
        better = w < best
        best[better] = w[better]
        bestE[better] = E[better]
    return best, bestE


def _reduce(X: F64, rng: np.random.Generator) -> F64:
    """Rows that can matter: hull vertices (SciPy, n <= 5) or extreme points of
    many directions. Any subset is safe: it only weakens lower bounds, and upper
    bounds are confirmed on all rows."""
    N, n = X.shape
    if N <= 4 * n + 8:
        return X
    spatial = _scipy("spatial") if 2 <= n <= 5 and N * 2 ** (n - 2) <= 2_000_000 else None
    if spatial is not None:
        try:
            return np.ascontiguousarray(X[np.sort(spatial.ConvexHull(X).vertices)])
        except Exception:  # qhull failed (e.g. degenerate input): sample instead
            pass
    if n > _MAX_BB_DIM:
        return X
    E = rng.standard_normal((min(4096, 64 * 2**n), n))
    idx = np.zeros(N, dtype=bool)
    step = max(1, _CHUNK // N)
    for s in range(0, E.shape[0], step):
        P = X @ E[s : s + step].T
        idx[P.argmax(axis=0)] = True
        idx[P.argmin(axis=0)] = True
    return np.ascontiguousarray(X[idx])


def _refine_lp(H: F64, e: F64, linprog: Any, max_iter: int = 40, tol: float = 1e-13) -> F64 | None:
    """Successive LPs: ``y <- argmax{c.y : width_y(H) <= 1}``, ``c = y/|y|``.

    ``|y|`` never decreases (``|y'| >= c.y' >= c.y = |y|``) and the width along
    ``y/|y|`` is at most ``1/|y|``; the fixed point is a vertex of the polar body,
    i.e. a local minimum of the width. Each LP is solved by constraint generation
    (rows extreme along the current direction first; violated rows added)."""
    N, n = H.shape
    m0 = min(N, 2 * n + 8)
    S = _extreme_rows(H @ e, m0)
    cvec = e.copy()
    best: F64 | None = None
    best_norm = 0.0
    for _ in range(max_iter):
        y = None
        for _round in range(50):
            y = _width_lp(H[S], cvec, linprog)
            if y is None:
                if S.size == N:
                    return best
                S = np.arange(N)  # subset LP unbounded: use every row
                continue
            t = H @ y
            tS = t[S]
            if t.max() <= tS.max() + 1e-9 and t.min() >= tS.min() - 1e-9:
                break
            S = np.union1d(S, _extreme_rows(t, m0))
        if y is None:
            break
        ny = float(np.linalg.norm(y))
        if not np.isfinite(ny) or ny <= best_norm * (1.0 + tol):
            break
        best, best_norm = y / ny, ny
        cvec = best
    return best


def _extreme_rows(t: F64, m: int) -> NDArray[np.intp]:
    if t.size <= 2 * m:
        return np.arange(t.size)
    part = np.argpartition(t, (m, t.size - m - 1))
    return np.union1d(part[:m], part[t.size - m :])


def _width_lp(H: F64, c: F64, linprog: Any) -> F64 | None:
    """``argmax{c.y : max_i h_i.y - min_i h_i.y <= 1}`` (variables ``y, t, s``)."""
    N, n = H.shape
    Aub = np.zeros((2 * N + 1, n + 2))
    Aub[:N, :n] = H
    Aub[:N, n] = -1.0
    Aub[N : 2 * N, :n] = -H
    Aub[N : 2 * N, n + 1] = 1.0
    Aub[2 * N, n] = 1.0
    Aub[2 * N, n + 1] = -1.0
    bub = np.zeros(2 * N + 1)
    bub[-1] = 1.0
    res = linprog(
        -np.concatenate([c, [0.0, 0.0]]),
        A_ub=Aub,
        b_ub=bub,
        bounds=[(None, None)] * (n + 2),
        method="highs",
    )
    if res.status != 0 or res.x is None:
        return None
    return np.asarray(res.x[:n], dtype=np.float64)


def _refine_hop(H: F64, e: F64, max_iter: int = 200) -> F64 | None:
    """NumPy fallback: hop between candidate facets of the difference body. At
    ``e``, the ``p`` highest and ``n + 1 - p`` lowest rows span two parallel
    hyperplanes whose common normal is a candidate; keep the best, else try
    small random moves."""
    N, n = H.shape
    rng = np.random.default_rng(0)
    best, wbest = e, _ptp(H, e)
    step = 0.1
    for _ in range(max_iter):
        t = H @ best
        order = np.argsort(t)
        cands = []
        for p in range(1, n + 1):
            top = H[order[N - p :]]
            bot = H[order[: n + 1 - p]]
            M = np.vstack([top[1:] - top[0], bot[1:] - bot[0]])
            if M.shape[0] == 0:
                continue
            _, _, Vt = np.linalg.svd(M, full_matrices=True)
            d = Vt[-1]
            cands.append(d if d @ best >= 0 else -d)
        moves = best + step * rng.standard_normal((4 * n, n))
        E = np.vstack(cands + [moves]) if cands else moves
        E = E / np.linalg.norm(E, axis=1)[:, None]
        w = _widths(H, E)
        k = int(np.argmin(w))
        if w[k] < wbest * (1.0 - 1e-15):
            best, wbest = E[k], float(w[k])
        else:
            step *= 0.5
            if step < 1e-12:
                break
    return best


def _certificate(H: F64, e: F64) -> F64 | None:
    """A vector ``g`` of ``conv(H) - conv(H)`` nearly parallel to ``e`` with
    ``g.e ~ width_e``: the min-norm point of ``conv(P) - conv(Q)`` for the rows
    ``P``/``Q`` (nearly) attaining the max/min along ``e``. At a local minimum of
    the width this is ``theta * e`` (the foot of the perpendicular on a facet of
    the difference body). Any convex weights give a valid ``g``."""
    t = H @ e
    hi, lo = float(t.max()), float(t.min())
    tau = 1e-9 * (hi - lo) + 1e-12 * float(np.abs(t).max())
    P = H[t >= hi - tau]
    Q = H[t <= lo + tau]
    n = H.shape[1]
    if P.shape[0] + Q.shape[0] > 4 * n + 8:
        return None
    Pa, Qa = np.arange(P.shape[0]), np.arange(Q.shape[0])
    for _ in range(P.shape[0] + Q.shape[0]):
        V = np.vstack([P[Pa], -Q[Qa]])
        m, p = V.shape[0], Pa.size
        K = np.zeros((m + 2, m + 2))
        K[:m, :m] = V @ V.T
        K[m, :p] = K[:p, m] = 1.0
        K[m + 1, p:m] = K[p:m, m + 1] = 1.0
        rhs = np.zeros(m + 2)
        rhs[m:] = 1.0
        z = np.linalg.lstsq(K, rhs, rcond=None)[0][:m]
        lam, mu = z[:p], z[p:]
        if lam.min() >= 0.0 and mu.min() >= 0.0:
            break
        # drop the most negative weight (keep one row on each side) and re-solve
        if lam.min() < mu.min() and p > 1:
            Pa = np.delete(Pa, int(lam.argmin()))
        elif mu.size > 1:
            Qa = np.delete(Qa, int(mu.argmin()))
        elif p > 1:
            Pa = np.delete(Pa, int(lam.argmin()))
        else:
            break
    lam = np.maximum(lam, 0.0)
    mu = np.maximum(mu, 0.0)
    if lam.sum() <= 0.0 or mu.sum() <= 0.0:
        return None
    g = (lam / lam.sum()) @ P[Pa] - (mu / mu.sum()) @ Q[Qa]
    if not float(g @ e) > 0.0:
        return None
    return np.asarray(g, dtype=np.float64)
