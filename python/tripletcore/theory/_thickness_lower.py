"""Rigorous lower bounds on the thickness for :mod:`._thickness`: the exact
width of simplices spanned by rows, the eigenvalue bound of a weighted design
of difference vectors, and branch and bound over the sphere (``n <= 6``).
Every bound is lowered by an explicit bound on its float64 rounding."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    from ._thickness import _Search

F64 = NDArray[np.float64]

_U = 2.0**-53  # unit roundoff of float64
_CHUNK = 1 << 21  # entries of a temporary projection matrix
_MAX_EXACT_SIMPLEX = 20  # enumerate the 2^n vertex subsets up to this n


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
