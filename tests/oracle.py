"""Brute-force float64 reference implementation ("oracle") of the tripletcore API.

Everything here is written for clarity, not speed: it is meant for N of a few
dozen points.  Two kinds of quantities are computed:

* distance *values* in plain float64 NumPy (``cdist``), promoted from whatever
  the inputs were (float32 inputs are promoted exactly);
* distance *order* in exact integer / rational arithmetic (``order_keys``),
  so that "arg-min / arg-max of the exact distance, ties -> lowest index" is
  decided without any rounding at all.  Every finite float is an integer times
  a power of two, so after scaling all coordinates to integers the squared
  Euclidean distance is an exact Python integer, and the cosine similarity
  can be ranked by the exact fraction ``sign(x.y) (x.y)^2 / |y|^2``.

The loss oracle enumerates triplets explicitly and differentiates them by the
textbook formulas:

* euclidean   d = |x - y|                 dd/dx = (x - y) / |x - y|   (0 when d == 0)
* sqeuclidean d = |x - y|^2               dd/dx = 2 (x - y)
* cosine      d = 1 - x.y / (|x| |y|)     dd/dx = -(y / (|x||y|) - (x.y) x / (|x|^3 |y|))
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

METRICS = ("euclidean", "sqeuclidean", "cosine")
MININGS = ("batch_hard", "semi_hard", "batch_all")
REDUCTIONS = ("mean", "sum", "mean_nonzero", "none")
FALLBACKS = ("hardest", "easiest", "drop")


# --------------------------------------------------------------------------
# distances
# --------------------------------------------------------------------------


def reduction_scale(reduction, count, nonzero):
    """Factor applied to the sum of triplet losses by each reduction."""
    if reduction == "mean":
        return 1.0 / count if count else 0.0
    if reduction in ("sum", "none"):
        return 1.0
    if reduction == "mean_nonzero":
        return 1.0 / nonzero if nonzero else 0.0
    raise ValueError(reduction)


def as_f64(A):
    return np.asarray(A, dtype=np.float64)


def cdist(X, Y=None, metric="euclidean"):
    """Float64 distance matrix computed from coordinate differences."""
    X = as_f64(X)
    Y = X if Y is None else as_f64(Y)
    if metric in ("euclidean", "sqeuclidean"):
        diff = X[:, None, :] - Y[None, :, :]
        sq = np.sum(diff * diff, axis=-1)
        return np.sqrt(sq) if metric == "euclidean" else sq
    if metric == "cosine":
        nx = np.sqrt(np.sum(X * X, axis=1))
        ny = np.sqrt(np.sum(Y * Y, axis=1))
        return 1.0 - (X / nx[:, None]) @ (Y / ny[:, None]).T
    raise ValueError(metric)


def _to_exact_ints(*arrays):
    """Scale float arrays by a common power of two so that all become integers.

    Returns object arrays of Python ints (exact).
    """
    flat = [float(v) for A in arrays for v in np.asarray(A, dtype=np.float64).ravel()]
    den = max([v.as_integer_ratio()[1] for v in flat], default=1)
    out = []
    for A in arrays:
        A = np.asarray(A, dtype=np.float64)
        vals = []
        for v in A.ravel():
            num, d = float(v).as_integer_ratio()
            vals.append(num * (den // d))
        arr = np.empty(len(vals), dtype=object)
        arr[:] = vals
        out.append(arr.reshape(A.shape))
    return out


def order_keys(X, Y=None, metric="euclidean"):
    """Exact keys K (object array N x M): K[i, j] < K[i, k] iff d(i, j) < d(i, k) exactly.

    Only comparisons within one row are meaningful for cosine.
    """
    Xi, Yi = _to_exact_ints(X, X if Y is None else Y)
    if metric in ("euclidean", "sqeuclidean"):
        diff = Xi[:, None, :] - Yi[None, :, :]
        return (diff * diff).sum(axis=-1)
    if metric == "cosine":
        dot = (Xi[:, None, :] * Yi[None, :, :]).sum(axis=-1)
        ny = (Yi * Yi).sum(axis=-1)
        keys = np.empty(dot.shape, dtype=object)
        for i in range(dot.shape[0]):
            for j in range(dot.shape[1]):
                s = dot[i, j]
                # cosine similarity of row i with j is s / (|x_i| sqrt(ny_j));
                # sign(s) s^2 / ny_j is an increasing function of it (|x_i| fixed).
                sim_key = Fraction((1 if s > 0 else -1) * s * s, ny[j])
                keys[i, j] = -sim_key  # larger similarity = smaller distance
        return keys
    raise ValueError(metric)


def _argbest(keys_row, candidates, largest):
    """Index of the largest/smallest key among candidates (ascending), lowest index on ties."""
    best = -1
    for j in candidates:
        if best < 0:
            best = j
        elif largest and keys_row[j] > keys_row[best]:
            best = j
        elif not largest and keys_row[j] < keys_row[best]:
            best = j
    return best


def label_values(labels):
    """Labels as a list of Python ints (compares by value across dtypes)."""
    return [int(v) for v in np.asarray(labels).ravel()]


# --------------------------------------------------------------------------
# mining
# --------------------------------------------------------------------------


def batch_hard(X, labels, metric="euclidean", Y=None, ref_labels=None):
    """Returns (pos_idx, pos_dist, neg_idx, neg_dist); distances float64, NaN where idx == -1."""
    self_ref = Y is None
    R = X if self_ref else Y
    lab = label_values(labels)
    rlab = lab if self_ref else label_values(ref_labels)
    D = cdist(X, R, metric)
    K = order_keys(X, R, metric)
    n, m = D.shape
    pos_idx = np.full(n, -1, dtype=np.int64)
    neg_idx = np.full(n, -1, dtype=np.int64)
    pos_dist = np.full(n, np.nan)
    neg_dist = np.full(n, np.nan)
    for i in range(n):
        pos = [j for j in range(m) if rlab[j] == lab[i] and not (self_ref and j == i)]
        neg = [j for j in range(m) if rlab[j] != lab[i]]
        if pos:
            p = _argbest(K[i], pos, largest=True)
            pos_idx[i], pos_dist[i] = p, D[i, p]
        if neg:
            q = _argbest(K[i], neg, largest=False)
            neg_idx[i], neg_dist[i] = q, D[i, q]
    return pos_idx, pos_dist, neg_idx, neg_dist


def semi_hard(X, labels, margin=0.2, metric="euclidean", fallback="hardest"):
    """Returns (anchor, positive, negative) int64 arrays and (pos_dist, neg_dist) float64."""
    lab = label_values(labels)
    D = cdist(X, None, metric)
    K = order_keys(X, None, metric)
    n = len(lab)
    out = []
    for a in range(n):
        negs = [j for j in range(n) if lab[j] != lab[a]]
        if not negs:
            continue
        for p in range(n):
            if p == a or lab[p] != lab[a]:
                continue
            window = [
                j
                for j in negs
                if K[a, j] > K[a, p] and D[a, j] < D[a, p] + margin  # d(a,p) < d(a,n) < d(a,p)+m
            ]
            if window:
                q = _argbest(K[a], window, largest=False)
            elif fallback == "hardest":
                q = _argbest(K[a], negs, largest=False)
            elif fallback == "easiest":
                q = _argbest(K[a], negs, largest=True)
            elif fallback == "drop":
                continue
            else:
                raise ValueError(fallback)
            out.append((a, p, q))
    arr = np.array(out, dtype=np.int64).reshape(-1, 3)
    a, p, q = arr[:, 0], arr[:, 1], arr[:, 2]
    return a, p, q, D[a, p], D[a, q]


def triplets(X, labels, mining, margin=0.2, metric="euclidean", fallback="hardest"):
    """The (a, p, n) triplets the loss uses, as an int64 array (T, 3)."""
    if mining == "batch_hard":
        pi, _, ni, _ = batch_hard(X, labels, metric)
        keep = (pi >= 0) & (ni >= 0)
        a = np.nonzero(keep)[0]
        return np.stack([a, pi[keep], ni[keep]], axis=1).astype(np.int64)
    if mining == "semi_hard":
        a, p, q, _, _ = semi_hard(X, labels, margin, metric, fallback)
        return np.stack([a, p, q], axis=1).astype(np.int64)
    if mining == "batch_all":
        lab = np.array(label_values(labels), dtype=object)
        n = len(lab)
        same = lab[:, None] == lab[None, :]
        pos = same & ~np.eye(n, dtype=bool)
        neg = ~same
        valid = pos[:, :, None] & neg[:, None, :]  # valid[a, p, n]
        return np.argwhere(valid).astype(np.int64).reshape(-1, 3)
    raise ValueError(mining)


# --------------------------------------------------------------------------
# loss and gradient
# --------------------------------------------------------------------------


def distance_grad(X, metric):
    """G[i, j] = d d(x_i, x_j) / d x_i  (shape N x N x d).  d/dx_j d(x_i, x_j) = G[j, i].

    Also returns A, the same shape, holding the sum of the absolute values of the
    terms of each entry of G (the scale of its rounding error).
    """
    X = as_f64(X)
    diff = X[:, None, :] - X[None, :, :]
    if metric == "euclidean":
        dist = np.sqrt(np.sum(diff * diff, axis=-1))
        safe = np.where(dist > 0, dist, 1.0)
        G = np.where(dist[..., None] > 0, diff / safe[..., None], 0.0)
        return G, np.abs(G)
    if metric == "sqeuclidean":
        return 2.0 * diff, 2.0 * np.abs(diff)
    if metric == "cosine":
        # with u = x/|x|, w = y/|y|:  y/(|x||y|) - (x.y) x/(|x|^3|y|) = (w - (u.w) u) / |x|
        nrm = np.sqrt(np.sum(X * X, axis=1))
        U = X / nrm[:, None]
        cos = U @ U.T
        term1 = U[None, :, :] / nrm[:, None, None]  # w / |x|
        term2 = cos[:, :, None] * U[:, None, :] / nrm[:, None, None]  # (u.w) u / |x|
        return -(term1 - term2), np.abs(term1) + np.abs(term2)
    raise ValueError(metric)


def grad_from_pair_weights(X, metric, W_ap, W_an):
    """Gradient of sum_{i,j} (W_ap[i,j] - W_an[i,j]) d(x_i, x_j), and its error scale."""
    G, A = distance_grad(X, metric)  # G[i, j] = d d(i,j) / d x_i
    # d/dx_k of sum_{i,j} W[i,j] d(i,j) = sum_j W[k,j] G[k,j] + sum_i W[i,k] G[k,i]
    Wd = W_ap - W_an
    grad = np.einsum("kj,kjd->kd", Wd, G) + np.einsum("ik,kid->kd", Wd, G)
    absW = np.abs(W_ap) + np.abs(W_an)
    grad_scale = np.einsum("kj,kjd->kd", absW, A) + np.einsum("ik,kid->kd", absW, A)
    return grad, grad_scale


def triplet_grad_abs_scale(X, metric, T, w):
    """Sum of |terms| that triplets T (array (k, 3)) with loss weights w add into the gradient.

    Bounds how much the gradient can change if these triplets' weights change by up to |w|.
    """
    n = X.shape[0]
    W_ap = np.zeros((n, n))
    W_an = np.zeros((n, n))
    np.add.at(W_ap, (T[:, 0], T[:, 1]), np.abs(w))
    np.add.at(W_an, (T[:, 0], T[:, 2]), np.abs(w))
    return grad_from_pair_weights(X, metric, W_ap, W_an)[1]


def softplus(z):
    return np.logaddexp(0.0, z)


def sigmoid(z):
    """1 / (1 + exp(-z)), without cancellation for very negative z."""
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def triplet_margin_loss(
    X,
    labels,
    margin=0.2,
    mining="batch_hard",
    metric="euclidean",
    soft=False,
    reduction="mean",
    fallback="hardest",
):
    """Returns (loss, grad, info).

    loss: float (or float64 array of length N for reduction="none");
    grad: float64 array shaped like X;
    info: dict with the triplets, the per-triplet pre-activation v = d_ap - d_an (+ margin),
          per-triplet losses, the distances, and `grad_scale`, an array shaped like X holding
          the sum of absolute values of the terms added into each gradient entry (the natural
          scale of rounding error in the gradient).
    """
    X = as_f64(X)
    n = X.shape[0]
    T = triplets(X, labels, mining, margin, metric, fallback)
    D = cdist(X, None, metric)
    a, p, q = T[:, 0], T[:, 1], T[:, 2]
    dap, dan = D[a, p], D[a, q]
    if soft:
        v = dap - dan
        losses = softplus(v)
        dl_dv = sigmoid(v)
    else:
        v = dap - dan + margin
        losses = np.maximum(v, 0.0)
        dl_dv = (v > 0).astype(np.float64)

    count = len(T)
    nonzero = int(np.sum(losses > 0))
    scale = reduction_scale(reduction, count, nonzero)

    if reduction == "none":
        loss = np.zeros(n)
        np.add.at(loss, a, losses)
    else:
        loss = float(np.sum(losses) * scale)

    # Pair weights: W_ap[i, j] = sum of dL/dd(i, j) over triplets with (a, p) = (i, j), etc.
    w = dl_dv * scale
    W_ap = np.zeros((n, n))
    W_an = np.zeros((n, n))
    np.add.at(W_ap, (a, p), w)
    np.add.at(W_an, (a, q), w)
    grad, grad_scale = grad_from_pair_weights(X, metric, W_ap, W_an)

    info = {
        "triplets": T,
        "v": v,
        "dl_dv": dl_dv,
        "losses": losses,
        "dap": dap,
        "dan": dan,
        "count": count,
        "nonzero": nonzero,
        "scale": scale,
        "grad_scale": grad_scale,
    }
    return loss, grad, info


def loss_value(X, labels, **kw):
    """Just the scalar loss (sum for reduction="none"); re-mines triplets at X."""
    loss, _, _ = triplet_margin_loss(X, labels, **kw)
    return float(np.sum(loss))


# --------------------------------------------------------------------------
# vectorised float64 oracle for large inputs (argmax/argmin return the first,
# i.e. lowest, index on ties; float64 differences of float32 data are exact)
# --------------------------------------------------------------------------


def cdist_rows(X, Y, metric, block=256):
    """Float64 distances from coordinate differences, a block of rows at a time."""
    X, Y = as_f64(X), as_f64(Y)
    out = np.empty((X.shape[0], Y.shape[0]))
    for s in range(0, X.shape[0], block):
        out[s : s + block] = cdist(X[s : s + block], Y, metric)
    return out


def batch_hard_vectorized(X, labels, metric="euclidean", Y=None, ref_labels=None):
    self_ref = Y is None
    R = X if self_ref else Y
    lab = np.asarray(labels).astype(np.int64)
    rlab = lab if self_ref else np.asarray(ref_labels).astype(np.int64)
    D = cdist_rows(X, R, metric)
    same = lab[:, None] == rlab[None, :]
    pos_mask = same.copy()
    if self_ref:
        np.fill_diagonal(pos_mask, False)
    neg_mask = ~same
    Dp = np.where(pos_mask, D, -np.inf)
    Dn = np.where(neg_mask, D, np.inf)
    pos_idx = np.argmax(Dp, axis=1)
    neg_idx = np.argmin(Dn, axis=1)
    has_pos = pos_mask.any(axis=1)
    has_neg = neg_mask.any(axis=1)
    rows = np.arange(len(lab))
    pos_dist = np.where(has_pos, D[rows, pos_idx], np.nan)
    neg_dist = np.where(has_neg, D[rows, neg_idx], np.nan)
    pos_idx = np.where(has_pos, pos_idx, -1).astype(np.int64)
    neg_idx = np.where(has_neg, neg_idx, -1).astype(np.int64)
    return pos_idx, pos_dist, neg_idx, neg_dist, D


def batch_all_loss_vectorized(
    X,
    labels,
    margin=0.2,
    metric="euclidean",
    soft=False,
    reduction="mean",
    kink_tol=0.0,
    exact=False,
):
    """batch_all loss for a few hundred points: one anchor at a time, all its (p, n) at once.

    Returns (loss, grad, info) like `triplet_margin_loss`.  Hinge triplets with
    |v| <= kink_tol * (d_ap + d_an + margin) are "near a kink" (their side of 0 may flip under
    rounding; with exact=True, v == 0 is taken as exact).  info holds: count, nonzero,
    c_lo / c_hi (range of possible non-zero counts), loss_sum, per_anchor_scale,
    grad_scale, and grad_amb (the |terms| the near-kink triplets add to the gradient,
    per unit of scale).
    """
    X = as_f64(X)
    lab = np.asarray(labels).astype(np.int64)
    n = len(lab)
    D = cdist_rows(X, X, metric)
    m = 0.0 if soft else margin
    # error scale of one triplet: |d_ap| + |d_an| + margin (+ 2 for cosine, whose distances
    # 1 - cos are accurate to a few roundings of 1)
    extra = m + (2.0 if metric == "cosine" else 0.0)
    W_ap = np.zeros((n, n))
    W_an = np.zeros((n, n))
    A_ap = np.zeros((n, n))  # near-kink triplet counts per pair
    A_an = np.zeros((n, n))
    per_anchor = np.zeros(n)
    per_anchor_scale = np.zeros(n)
    count = nonzero = amb_pos = amb_zero = 0
    for a in range(n):
        pos = np.nonzero((lab == lab[a]) & (np.arange(n) != a))[0]
        neg = np.nonzero(lab != lab[a])[0]
        if len(pos) == 0 or len(neg) == 0:
            continue
        dp, dn = D[a, pos][:, None], D[a, neg][None, :]
        V = dp - dn + m
        L = softplus(V) if soft else np.maximum(V, 0.0)
        dL = sigmoid(V) if soft else (V > 0).astype(np.float64)
        per_anchor[a] = L.sum()
        per_anchor_scale[a] = (np.abs(dp) + np.abs(dn) + extra).sum()
        count += L.size
        nonzero += int((L > 0).sum())
        near = (L < 1e-30) if soft else (np.abs(V) <= kink_tol * (np.abs(dp) + np.abs(dn) + extra))
        amb = near & ~(exact & (V == 0.0)) if not soft else near
        amb_pos += int((amb & (L > 0)).sum())
        amb_zero += int((amb & (L == 0)).sum())
        W_ap[a, pos] += dL.sum(axis=1)
        W_an[a, neg] += dL.sum(axis=0)
        A_ap[a, pos] += near.sum(axis=1)
        A_an[a, neg] += near.sum(axis=0)
    scale = reduction_scale(reduction, count, nonzero)
    loss = per_anchor.copy() if reduction == "none" else float(per_anchor.sum() * scale)
    grad, grad_scale = grad_from_pair_weights(X, metric, W_ap * scale, W_an * scale)
    info = {
        "count": count,
        "nonzero": nonzero,
        "c_lo": nonzero - amb_pos,
        "c_hi": nonzero + amb_zero,
        "loss_sum": float(per_anchor.sum()),
        "scale": scale,
        "per_anchor_scale": per_anchor_scale,
        "grad_scale": grad_scale,
        "grad_amb": grad_from_pair_weights(X, metric, A_ap, A_an)[1],
    }
    return loss, grad, info


def semi_hard_vectorized(X, labels, margin=0.2, metric="euclidean", fallback="hardest"):
    """Semi-hard triplets for a few hundred points, by sorting each anchor's negatives.

    Float64 comparisons (exact for data whose float64 distances are exact, e.g. small
    integer coordinates).  Returns (anchor, positive, negative, pos_dist, neg_dist).
    """
    lab = np.asarray(labels).astype(np.int64)
    n = len(lab)
    D = cdist_rows(X, X, metric)
    out_a, out_p, out_n = [], [], []
    for a in range(n):
        neg = np.nonzero(lab != lab[a])[0]
        pos = np.nonzero((lab == lab[a]) & (np.arange(n) != a))[0]
        if len(neg) == 0 or len(pos) == 0:
            continue
        order = neg[np.lexsort((neg, D[a, neg]))]  # by distance, then index
        ds = D[a, order]
        dp = D[a, pos]
        first_beyond = np.searchsorted(ds, dp, side="right")  # first d(a,n) > d(a,p)
        has = first_beyond < len(order)
        cand = order[np.minimum(first_beyond, len(order) - 1)]
        in_window = has & (D[a, cand] < dp + margin)
        if fallback == "hardest":
            fb = np.full(len(pos), order[0])
        elif fallback == "easiest":
            fb = np.full(len(pos), order[np.searchsorted(ds, ds[-1], side="left")])
        else:
            fb = np.full(len(pos), -1)
        chosen = np.where(in_window, cand, fb)
        keep = chosen >= 0
        out_a.append(np.full(int(keep.sum()), a))
        out_p.append(pos[keep])
        out_n.append(chosen[keep])
    a, p, q = (
        np.concatenate(parts + [np.zeros(0, np.int64)]).astype(np.int64)
        for parts in (out_a, out_p, out_n)
    )
    return a, p, q, D[a, p], D[a, q]


def loss_from_triplets_vectorized(
    X, T, margin=0.2, metric="euclidean", soft=False, reduction="mean"
):
    """Loss and gradient of the given triplets (array (k, 3)), O(k d) memory.

    Returns (loss, grad, grad_scale, v) with grad_scale the sum of |terms| per entry.
    """
    X = as_f64(X)
    n = X.shape[0]
    a, p, q = T[:, 0], T[:, 1], T[:, 2]

    def dist_and_grads(i, j):
        xi, xj = X[i], X[j]
        if metric in ("euclidean", "sqeuclidean"):
            diff = xi - xj
            sq = np.sum(diff * diff, axis=1)
            if metric == "sqeuclidean":
                return sq, 2 * diff, 2 * np.abs(diff)
            d = np.sqrt(sq)
            g = np.where(d[:, None] > 0, diff / np.where(d > 0, d, 1.0)[:, None], 0.0)
            return d, g, np.abs(g)
        ni = np.sqrt(np.sum(xi * xi, axis=1))
        nj = np.sqrt(np.sum(xj * xj, axis=1))
        ui, uj = xi / ni[:, None], xj / nj[:, None]
        c = np.sum(ui * uj, axis=1)
        t1, t2 = uj / ni[:, None], c[:, None] * ui / ni[:, None]
        return 1.0 - c, -(t1 - t2), np.abs(t1) + np.abs(t2)

    dap, g_ap_a, s_ap_a = dist_and_grads(a, p)
    _, g_ap_p, s_ap_p = dist_and_grads(p, a)
    dan, g_an_a, s_an_a = dist_and_grads(a, q)
    _, g_an_n, s_an_n = dist_and_grads(q, a)
    v = dap - dan + (0.0 if soft else margin)
    losses = softplus(v) if soft else np.maximum(v, 0.0)
    w = sigmoid(v) if soft else (v > 0).astype(np.float64)
    k, nz = len(T), int(np.sum(losses > 0))
    if reduction == "mean":
        scale = 1.0 / k if k else 0.0
    elif reduction in ("sum", "none"):
        scale = 1.0
    else:  # mean_nonzero
        scale = 1.0 / nz if nz else 0.0
    if reduction == "none":
        loss = np.zeros(n)
        np.add.at(loss, a, losses)
    else:
        loss = float(np.sum(losses) * scale)
    w = w * scale
    grad = np.zeros_like(X)
    gscale = np.zeros_like(X)
    for idx, g, s, sign in (
        (a, g_ap_a, s_ap_a, 1.0),
        (p, g_ap_p, s_ap_p, 1.0),
        (a, g_an_a, s_an_a, -1.0),
        (q, g_an_n, s_an_n, -1.0),
    ):
        np.add.at(grad, idx, sign * w[:, None] * g)
        np.add.at(gscale, idx, np.abs(w)[:, None] * s)
    return loss, grad, gscale, v
