"""Smoke test of an installed tripletcore wheel (needs only NumPy).

Run in a fresh environment after ``pip install --no-deps WHEEL``: imports
the package, then checks batch_hard, triplet_margin_loss and knn against a
float64 brute force. Exits non-zero on any mismatch.
"""

from __future__ import annotations

import sys
from importlib import metadata

import numpy as np

import tripletcore as tc


def main() -> int:
    installed = metadata.version("tripletcore")
    assert tc.__version__ == installed, (tc.__version__, installed)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 16))
    y = rng.integers(0, 7, 200)
    d = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
    same = y[:, None] == y[None, :]
    np.fill_diagonal(same, False)
    other = y[:, None] != y[None, :]

    # batch-hard: farthest positive, nearest negative (ties: lowest index)
    hard = tc.batch_hard(x, y)
    pos = np.where(same, d, -np.inf).argmax(axis=1)
    neg = np.where(other, d, np.inf).argmin(axis=1)
    np.testing.assert_array_equal(hard.pos_idx, pos)
    np.testing.assert_array_equal(hard.neg_idx, neg)
    rows = np.arange(len(x))
    np.testing.assert_allclose(hard.pos_dist, d[rows, pos], rtol=1e-12)
    np.testing.assert_allclose(hard.neg_dist, d[rows, neg], rtol=1e-12)

    # the batch-hard triplet loss, mean over anchors
    loss, grad = tc.triplet_margin_loss(x, y, margin=0.2, mining="batch_hard")
    want = np.maximum(d[rows, pos] - d[rows, neg] + 0.2, 0.0).mean()
    assert abs(loss - want) <= 1e-12 * max(1.0, want), (loss, want)
    assert grad.shape == x.shape and np.isfinite(grad).all()

    # exact k-NN, (distances, indices) like scikit-learn and faiss
    distances, indices = tc.knn(x, 5)
    dd = d.copy()
    np.fill_diagonal(dd, np.inf)
    want_idx = np.argsort(dd, axis=1, kind="stable")[:, :5]
    np.testing.assert_array_equal(indices, want_idx)
    np.testing.assert_allclose(distances, np.take_along_axis(dd, want_idx, axis=1), rtol=1e-12)

    print(f"tripletcore {tc.__version__} from {tc.__file__}: smoke test passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
