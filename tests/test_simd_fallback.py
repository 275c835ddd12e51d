"""The portable kernels (no AVX2/FMA) and the AVX2 ones give the same answers as
the widest SIMD path of this CPU (AVX-512 where it has it)."""

import json
import os
import subprocess
import sys

SCRIPT = """
import json, sys
import numpy as np
import tripletcore as tc
rng = np.random.default_rng(4)
out = {}
for dtype in ("float32", "float64"):
    X = rng.standard_normal((530, 37)).astype(dtype)
    X[::7] = X[3]  # exact duplicates: ties resolved by index
    y = rng.integers(0, 25, 530)
    r = tc.batch_hard(X, y)
    ref = tc.batch_hard(X[:100], y[:100], Y=X, ref_labels=y)
    loss, grad = tc.triplet_margin_loss(X, y, mining="batch_all")
    _, bh_grad = tc.triplet_margin_loss(X, y)  # batch-hard: exact pair terms only
    out[dtype] = {
        "pos": r.pos_idx.tolist(), "neg": r.neg_idx.tolist(),
        "pos_d": r.pos_dist.astype(float).tolist(), "neg_d": r.neg_dist.astype(float).tolist(),
        "ref": ref.pos_idx.tolist() + ref.neg_idx.tolist(),
        "cdist": tc.cdist(X[:50], X, metric="cosine").astype(float).ravel().tolist(),
        "loss": loss, "grad": grad.astype(float).ravel().tolist(),
        "bh_grad": bh_grad.astype(float).ravel().tolist(),
    }
json.dump(out, sys.stdout)
"""


def run(disable: str, **extra: str) -> dict:
    env = dict(os.environ, TRIPLETCORE_DISABLE_SIMD=disable, **extra)
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_portable_path_matches_simd_path():
    simd, portable = run("0"), run("1")
    for dtype in ("float32", "float64"):
        a, b = simd[dtype], portable[dtype]
        # Every answer is bit for bit the same: the portable tiles fuse the
        # same multiply-adds in the same order (docs/api.md promises it).
        for key in ("pos", "neg", "ref", "pos_d", "neg_d", "bh_grad", "cdist", "loss", "grad"):
            assert a[key] == b[key], (dtype, key)


def test_avx2_path_matches_the_widest_path():
    # On a CPU with AVX-512 the default runs the 12 x 32 / 12 x 16 tiles; capped at
    # AVX2 it runs 6 x 16 / 6 x 8. Both fuse the same multiply-adds in the same order.
    wide, avx2 = run("0"), run("0", TRIPLETCORE_DISABLE_AVX512="1")
    for dtype in ("float32", "float64"):
        for key in ("pos", "neg", "ref", "pos_d", "neg_d", "cdist", "loss", "grad", "bh_grad"):
            assert wide[dtype][key] == avx2[dtype][key], (dtype, key)
