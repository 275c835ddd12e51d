"""tripletcore in one minute: mine, score and differentiate a batch.

Runs the README example on a P x K batch of synthetic embeddings, checks the
mined indices against a brute-force float64 NumPy computation, and prints
how long each step took next to NumPy's bare matrix product.
"""

from __future__ import annotations

import time

import numpy as np

import tripletcore as tc


def timed(fn, repeat=3):
    fn()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return out, best


def main() -> None:
    rng = np.random.default_rng(0)
    n, d, per_class = 4096, 128, 4
    labels = rng.permutation(np.arange(n) // per_class)
    centers = rng.standard_normal((n // per_class, d))
    X = (0.3 * centers[labels] + rng.standard_normal((n, d))).astype(np.float32)
    print(f"tripletcore {tc.__version__}: batch of N={n}, d={d}, {n // per_class} classes")

    hard, t_mine = timed(lambda: tc.batch_hard(X, labels))
    (loss, grad), t_loss = timed(lambda: tc.triplet_margin_loss(X, labels, margin=0.2))
    (loss_all, _), t_all = timed(
        lambda: tc.triplet_margin_loss(X, labels, mining="batch_all", reduction="mean_nonzero"),
        repeat=1,
    )
    _, t_gemm = timed(lambda: X @ X.T)

    # Brute force in float64 (builds the N x N matrix, which tripletcore never does).
    X64 = X.astype(np.float64)
    sq = (X64 * X64).sum(1)
    D = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2 * X64 @ X64.T, 0))
    same = labels[:, None] == labels[None, :]
    np.fill_diagonal(same, False)
    diff = labels[:, None] != labels[None, :]
    gap_pos = np.abs(np.where(same, D, -np.inf).max(1) - hard.pos_dist).max()
    gap_neg = np.abs(np.where(diff, D, np.inf).min(1) - hard.neg_dist).max()

    print(f"batch_hard           {t_mine * 1e3:8.1f} ms")
    print(
        f"loss + gradient      {t_loss * 1e3:8.1f} ms   loss = {loss:.4f}, |grad| = "
        f"{np.linalg.norm(grad):.4f}"
    )
    print(
        f"batch-all loss+grad  {t_all * 1e3:8.1f} ms   loss = {loss_all:.4f} "
        f"(mean over {n * (per_class - 1) * (n - per_class):,} triplets' non-zero terms)"
    )
    print(f"numpy X @ X.T        {t_gemm * 1e3:8.1f} ms   (matrix product only, for scale)")
    print(
        f"largest gap to the float64 brute force: positives {gap_pos:.2e}, negatives {gap_neg:.2e}"
    )
    frac = float(np.mean(hard.pos_dist - hard.neg_dist + 0.2 > 0))
    print(f"anchors whose hardest triplet violates the margin (untrained data): {frac:.1%}")


if __name__ == "__main__":
    main()
