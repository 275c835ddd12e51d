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

F64 = NDArray[np.float64]

_U = 2.0**-53  # unit roundoff of float64
_CHUNK = 1 << 21  # entries of a temporary projection matrix
_MAX_BB_DIM = 6  # branch and bound above this dimension is hopeless
_MAX_EXACT_SIMPLEX = 20  # enumerate the 2^n vertex subsets up to this n
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


# ----------------------------------------------------------------------------- simplex


def _greedy_simplex(X: F64, first: int) -> list[int] | None:
    """n+1 rows, each farthest from the affine span of those before (max-volume
    greedy, Gram-Schmidt on the residuals)."""
    N, n = X.shape
    Rres = X - X[first]
    idx = [first]
    for _ in range(n):
        nr = np.einsum("ij,ij->i", Rres, Rres)
        j = int(nr.argmax())
        if not nr[j] > 0.0:
            return None
        idx.append(j)
        q = Rres[j] / math.sqrt(nr[j])
        Rres = Rres - np.outer(Rres @ q, q)
    return idx


def _max_subset_norm(Z: F64) -> tuple[float, F64]:
    """Upper bound on ``max over t in {0,1}^n of |Z t|`` (exact up to rounding for
    ``n <= 20``; otherwise a semidefinite-dual bound) and a ``t`` attaining the max
    (or a good one).

    Rounding: every computed ``|Z t|^2`` (and ``|A s|^2`` below) is within
    ``c n u (sum_j |z_j|)^2 <= c n^2 u ||Z||_F^2`` of the exact value with
    ``c <= 8``; the eigenvalue route also pays ``eigh``'s backward error
    ``<= c n u ||G||`` and the rounded ``a_0``; ``slop`` covers all of it."""
    n = Z.shape[1]
    nz2 = float(np.einsum("ij,ij->", Z, Z))
    slop = 16.0 * (n + 2) ** 2 * _U * nz2
    if n <= _MAX_EXACT_SIMPLEX:
        # t = (t_lo, t_hi): |Z t|^2 = |s_lo|^2 + |s_hi|^2 + 2 s_lo.s_hi, all pairs by a matmul
        a = n // 2
        bits_lo = ((np.arange(2**a)[:, None] >> np.arange(a)) & 1).astype(np.float64)
        bits_hi = ((np.arange(2 ** (n - a))[:, None] >> np.arange(n - a)) & 1).astype(np.float64)
        S_lo = bits_lo @ Z[:, :a].T
        S_hi = bits_hi @ Z[:, a:].T
        n_lo = np.einsum("ij,ij->i", S_lo, S_lo)
        n_hi = np.einsum("ij,ij->i", S_hi, S_hi)
        Q = n_lo[:, None] + n_hi[None, :] + 2.0 * (S_lo @ S_hi.T)
        k = int(Q.argmax())
        i, j = divmod(k, Q.shape[1])
        t = np.concatenate([bits_lo[i], bits_hi[j]])
        return math.sqrt(max(float(Q[i, j]), 0.0) + slop) * (1.0 + 4.0 * _U), t
    # sum_I a_i over subsets I of {0..n} (a_0 = -sum a_i) is (1/2) A s for signs s,
    # and max_s s^T G s <= (n+1) lambda_max(G - diag(d)) + sum(d) for every d
    Afull = np.hstack([-Z.sum(axis=1, keepdims=True), Z])
    G = Afull.T @ Afull
    m = n + 1
    d = np.zeros(m)
    best = math.inf
    best_v = np.ones(m)
    gnorm = float(np.linalg.norm(G))
    for it in range(40):
        w, V = np.linalg.eigh(G - np.diag(d))
        dmax = float(np.abs(d).max())
        val = m * (float(w[-1]) + 16.0 * m * _U * (gnorm + dmax)) + float(d.sum()) * (1 + m * _U)
        if val < best:
            best, best_v = val, V[:, -1]
        grad = 1.0 - m * V[:, -1] ** 2
        d = d - (gnorm / m) * grad / (1.0 + it) / max(1e-300, float(np.linalg.norm(grad)))
    s = np.where(best_v >= 0.0, 1.0, -1.0)
    return math.sqrt(max(best, 0.0) + 4.0 * m * slop) / 2.0 * (1.0 + 4.0 * _U), (s[1:] > 0).astype(
        np.float64
    )


def _simplex_bound(X: F64, idx: list[int], R: float) -> tuple[float, F64 | None]:
    """Rigorous lower bound on the width of the simplex with vertices ``X[idx]``,
    and its min-width direction (an upper-bound candidate).

    With ``E`` the edge matrix (rows ``v_i - v_0``) and ``Y = E^-1``, the
    barycentric gradients are the columns ``a_i`` of ``Y`` and ``a_0 = -sum a_i``;
    ``w(S) = 1 / max_I |sum_I a_i| = 1 / max_{t in {0,1}^n} |Y t|``. ``Y`` is only
    known as a computed ``Z``: with ``delta >= ||E Z - I||_2`` (residual plus its
    own rounding), ``||Y - Z|| <= ||Z|| delta / (1 - delta)`` and
    ``|Y t| <= |Z t| + ||Y - Z|| sqrt(n)``."""
    n = X.shape[1]
    V = X[idx]
    E = V[1:] - V[0]
    try:
        Z = np.linalg.inv(E)
    except np.linalg.LinAlgError:
        return 0.0, None
    if not np.all(np.isfinite(Z)):
        return 0.0, None
    nE = float(np.linalg.norm(E)) * (1.0 + 1e-10)
    nZ = float(np.linalg.norm(Z)) * (1.0 + 1e-10)
    # E is itself rounded (<= u|E|): include it with the matmul error
    delta = float(np.linalg.norm(E @ Z - np.eye(n))) * (1.0 + 1e-10)
    delta += 4.0 * (n + 2) * _U * nE * nZ
    if not delta < 0.5:
        return 0.0, None
    M, t = _max_subset_norm(Z)
    M_up = M + nZ * delta / (1.0 - delta) * math.sqrt(n)
    lb = (1.0 / M_up) * (1.0 - 8.0 * _U) - 4.0 * _U * R
    y = Z @ t
    ny = float(np.linalg.norm(y))
    return max(lb, 0.0), (y / ny if ny > 0.0 else None)


def _simplex_lower(
    X: F64, R: float, rng: np.random.Generator, n_restarts: int
) -> tuple[float, F64]:
    """Best simplex bound over greedy simplices from several starting rows."""
    N, n = X.shape
    far = int(np.einsum("ij,ij->i", X, X).argmax())
    starts = [far] + [int(i) for i in rng.integers(0, N, size=n_restarts)]
    best = 0.0
    dirs = []
    for s in starts:
        idx = _greedy_simplex(X, s)
        if idx is None:
            continue
        lb, d = _simplex_bound(X, idx, R)
        best = max(best, lb)
        if d is not None:
            dirs.append(d)
    return best, (np.array(dirs) if dirs else np.zeros((0, n)))


# ----------------------------------------------------------------------------- design


def _design_lower(X: F64, R: float, rng: np.random.Generator, p: float = 16.0) -> tuple[float, F64]:
    """Lower bound from a weighted design of difference vectors, and the direction
    where the design is thinnest (an upper-bound candidate).

    For weights ``w >= 0`` on differences ``d_k = x_i - x_j`` and a unit ``e``,
    ``width_e^2 >= max_k (d_k.e)^2 >= sum_k w_k (d_k.e)^2 / sum w >= lambda_min(M) /
    sum w`` with ``M = sum_k w_k d_k d_k^T``: any weights give a bound (this is the
    dual of the Shor relaxation of ``max |y|`` over the polar body). The weights
    maximise Kiefer's ``phi_p`` criterion (a smooth ``lambda_min``) by the
    multiplicative algorithm; candidates are the extreme pairs of random
    directions."""
    N, n = X.shape
    iters = 400 if n <= 32 else 150
    E = rng.standard_normal((min(4000, 64 * n), n))
    P = X @ E.T
    pairs = np.unique(np.stack([P.argmax(axis=0), P.argmin(axis=0)], axis=1), axis=0)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    if pairs.shape[0] < n:
        return 0.0, np.zeros((0, n))
    D = X[pairs[:, 0]] - X[pairs[:, 1]]
    w = np.full(D.shape[0], 1.0 / D.shape[0])
    best, best_dir = 0.0, np.zeros((0, n))
    for it in range(iters):
        M = (D * w[:, None]).T @ D
        lam, V = np.linalg.eigh(M)
        if not lam[0] > 0.0:
            break
        # |M_exact - M| <= (K + 8) u 4R^2 sum(w) (products, sums, rounded d_k);
        # eigh is backward stable: allow 64 n u |M|_F more
        K = D.shape[0]
        sw = float(w.sum()) * (1.0 + (K + 2) * _U)
        err = 2.0 * (K + 8) * _U * 4.0 * R * R * sw + 64.0 * n * _U * float(np.linalg.norm(M))
        lb = math.sqrt(max(float(lam[0]) - err, 0.0) / sw) * (1.0 - 4.0 * _U) - 4.0 * _U * R
        if lb > best:
            best, best_dir = lb, V[:, :1].T.copy()
        s = lam[0] / lam
        c = s ** (p + 1.0)
        keep = c > 1e-12  # the eigenvectors that still weigh in the gradient
        g = ((D @ V[:, keep]) ** 2) @ c[keep]
        w = w * (g / (float((s**p).sum()) * float(lam[0]))) ** (1.0 / (p + 1.0))
        w /= w.sum()
        if it % 25 == 24:
            keep = w > 1e-9 * w.max()
            D, w = D[keep], w[keep] / w[keep].sum()
    return max(best, 0.0), best_dir


# ----------------------------------------------------------------------------- B&B


def _branch_and_bound(search: _Search, rtol: float, max_cells: int, slack: float) -> float:
    """Lower bound on theta by branch and bound over the sphere.

    Directions up to sign are covered by the ``n`` cube faces ``{u : u_k = 1,
    |u_j| <= 1}``; a cell is a square of centre ``u0`` and half-side ``h`` on one
    face. Every ``u`` in it has ``|u - u0| <= h sqrt(n-1) =: r``, so the angle
    between ``u`` and ``u0`` is at most ``rho = arcsin(r / |u0|)`` (r < |u0|). For
    ``g`` in the difference body and ``alpha = angle(g, u0)``, every ``e`` of the
    cell has ``width_e >= g.e >= |g| cos(alpha + rho) = cos(rho) g.e0 - sin(rho)
    |g - (g.e0) e0|``, clamped at 0 (``width >= 0``; with ``rho <= pi/2`` the
    formula is negative whenever ``alpha + rho > pi``). A cell is closed when its
    bound reaches ``ub (1 - 0.9 rtol)`` (or ``ub - 4 slack`` where rounding allows
    no better); the result is the least bound over the closed and the still open
    cells, minus ``slack``.

    Rounding (``u = 2^-53``, ``|g| <= 2R``, ``m <= 4n + 8`` rows in a certificate):
    ``X = fl(A/s - c)`` changes widths by ``<= 2uR``; a certificate computed from
    float weights is within ``(3m + 4) u 2R`` of a true point of the difference
    body; the computed centre ``e0`` is within ``(n + 3) u`` of the exact one;
    ``g.e0``, the perpendicular part and the final combination err by at most
    ``(6n + 21) u 2R`` in all. The sum, ``<= (36n + 100) u R``, is below
    ``slack = (40n + 128) u R``. Cell centres and half-sides are dyadic (exact),
    and ``rho`` is inflated by a relative ``1e-12``, far above its rounding."""
    H = search.H
    n = H.shape[1]
    nchild = 2 ** (n - 1)
    # each cell costs a pass over H: keep the total work near 2e9 flops
    max_cells = min(max_cells, max(10_000, int(2e9 / (H.shape[0] * n))))
    g0 = {2: 16, 3: 8, 4: 4, 5: 4, 6: 2}.get(n, 2)
    # initial grid on every face
    ax = -1.0 + (2.0 * np.arange(g0) + 1.0) / g0
    grid = np.stack(np.meshgrid(*([ax] * (n - 1)), indexing="ij"), axis=-1).reshape(-1, n - 1)
    U_list, F_list = [], []
    for k in range(n):
        U = np.insert(grid, k, 1.0, axis=1)
        U_list.append(U)
        F_list.append(np.full(U.shape[0], k))
    U = np.vstack(U_list)
    face = np.concatenate(F_list)
    h = np.full(U.shape[0], 1.0 / g0)
    signs = ((np.arange(nchild)[:, None] >> np.arange(n - 1)) & 1) * 2.0 - 1.0
    OFF = np.stack([np.insert(signs, k, 0.0, axis=1) for k in range(n)])  # (n, nchild, n)

    lb = _cell_bounds(search, U, h)
    evaluated = U.shape[0]
    closed_min = math.inf
    refines = 0
    while U.shape[0] > 0:
        target = search.ub - max(0.9 * rtol * search.ub, 4.0 * slack) + slack
        done = lb >= target
        if done.any():
            closed_min = min(closed_min, float(lb[done].min()))
            U, face, h, lb = U[~done], face[~done], h[~done], lb[~done]
        if U.shape[0] == 0 or evaluated >= max_cells:
            break
        # split the lowest cells; deeper than 2^-40 the centres would stop being exact
        order = lb + np.where(h >= 2.0**-40, 0.0, np.inf)
        B = min(int(np.isfinite(order).sum()), max(1, min(8192, max_cells - evaluated) // nchild))
        if B == 0:
            break
        sel = np.argpartition(order, B - 1)[:B] if B < U.shape[0] else np.arange(U.shape[0])
        keep = np.ones(U.shape[0], dtype=bool)
        keep[sel] = False
        hc = h[sel] / 2.0
        Uc = (U[sel][:, None, :] + hc[:, None, None] * OFF[face[sel]]).reshape(-1, n)
        fc = np.repeat(face[sel], nchild)
        hc = np.repeat(hc, nchild)
        old_ub = search.ub
        lbc = _cell_bounds(search, Uc, hc)
        evaluated += Uc.shape[0]
        if search.ub < old_ub * (1.0 - 1e-9) and refines < 12:
            # a cell centre beat the local searches: refine from it
            refines += 1
            search._refine(search.best_e)
        U = np.vstack([U[keep], Uc])
        face = np.concatenate([face[keep], fc])
        h = np.concatenate([h[keep], hc])
        lb = np.concatenate([lb[keep], lbc])
    low = min(closed_min, float(lb.min()) if lb.size else math.inf)
    return max(0.0, low - slack)


def _cell_bounds(search: _Search, U: F64, h: F64) -> F64:
    """Raw (before slack) lower bounds on the width over each cell; offers the
    cell centres as upper-bound candidates."""
    H = search.H
    N, n = H.shape
    nu = np.linalg.norm(U, axis=1)
    E0 = U / nu[:, None]
    r = h * math.sqrt(n - 1)
    ratio = r / nu * (1.0 + 1e-12)
    valid = ratio < 1.0 - 1e-9
    rho = np.arcsin(np.minimum(ratio, 1.0)) * (1.0 + 1e-12) + 1e-300
    cr, sr = np.cos(rho), np.sin(rho)
    out = np.zeros(U.shape[0])
    w0 = np.empty(U.shape[0])
    k = min(2, N)
    step = max(1, _CHUNK // max(1, N))
    for s in range(0, U.shape[0], step):
        sl = slice(s, s + step)
        P = H @ E0[sl].T  # (N, c)
        w0[sl] = P.max(axis=0) - P.min(axis=0)
        if k < N:
            top = np.argpartition(-P, k - 1, axis=0)[:k]
            bot = np.argpartition(P, k - 1, axis=0)[:k]
        else:
            top = bot = np.broadcast_to(np.arange(N)[:, None], (N, P.shape[1]))
        e0 = E0[sl]
        best = np.zeros(e0.shape[0])
        for i in range(top.shape[0]):
            for j in range(bot.shape[0]):
                g = H[top[i]] - H[bot[j]]  # (c, n)
                best = np.maximum(best, _cap_bound(g, e0, cr[sl], sr[sl]))
        if search.certs:
            Gc = np.array(search.certs)  # (m, n)
            for g in Gc:
                best = np.maximum(
                    best, _cap_bound(np.broadcast_to(g, e0.shape), e0, cr[sl], sr[sl])
                )
        out[sl] = best
    out[~valid] = 0.0
    search.offer(E0, w0)
    return out


def _cap_bound(g: F64, e0: F64, cr: F64, sr: F64) -> F64:
    """``min over e within angle rho of e0 of g.e`` (row-wise), per the formula above."""
    ge = np.einsum("ij,ij->i", g, e0)
    perp = g - ge[:, None] * e0
    return np.asarray(cr * ge - sr * np.sqrt(np.einsum("ij,ij->i", perp, perp)), dtype=np.float64)
