#!/usr/bin/env python
"""Geometry benchmark: Hausdorff, isometric error and k-NN against their peers.

In one run and on the same data:

* ``hausdorff`` (undirected) against scipy's ``directed_hausdorff`` taken
  both ways and a NumPy brute force (BLAS expansion, row blocks of 2,048 so
  it fits in memory), and against tripletcore's own unpruned path (the
  block pruning of issue 18 switched off): random 3-D clouds, random
  d = 128 sets, a permutation and a 1e-3-noisy copy in the same order, and
  the shuffled 1e-2-noisy copy in float64 and float32;
* ``isometric_error`` against its unpruned path and NumPy's two-``cdist``
  approach: unclustered random data and two embeddings of clustered data
  (``clustered_embeddings``: 1,000 Gaussian classes, the second embedding a
  rotated, rescaled, noisy copy);
* the peak memory of ``isometric_error`` at N = 100,000 (and with
  ``--million`` at N = 1,000,000), d = 64, in a fresh subprocess (peak RSS
  increase over the RSS after set-up);
* ``knn`` against faiss's ``IndexFlatL2`` (``benches/bench_knn.py``, run as
  a subprocess with faiss's OpenBLAS forced to its best kernel).

The "pairs skipped" column is the share of block pairs the pruned kernel
skipped by its bounds (``_core._pruning_counts``): it says why a case is
fast or slow. Each timing is the best of ``--repeats`` calls; peers that
would take longer than ``--peer-budget`` seconds (estimated from a smaller
run) are skipped, and the table says so.

    python benches/bench_geometry.py            # the issue's sizes
    python benches/bench_geometry.py --quick    # small sizes, a few seconds
    python benches/bench_geometry.py --million  # adds d_iso at N = 1,000,000
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from scipy.spatial.distance import directed_hausdorff

import tripletcore as tc
from tripletcore import _core


def best_time(fn, repeats):
    out, best = None, float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return out, best


@contextlib.contextmanager
def unpruned():
    """tripletcore's geometry kernels without their block pruning."""
    previous = _core._set_pruning(False)
    try:
        yield
    finally:
        _core._set_pruning(previous)


def timed_with_pruning(fn, repeats):
    """(result, best time, share of block pairs skipped as text)."""
    _core._pruning_counts()
    out, t = best_time(fn, repeats)
    considered, skipped = _core._pruning_counts()
    rate = f"{skipped / considered:.1%} of {considered // repeats:,}" if considered else "-"
    return out, t, rate


def scipy_hausdorff(a, b):
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    return max(directed_hausdorff(a64, b64, seed=0)[0], directed_hausdorff(b64, a64, seed=0)[0])


def block_distances(a, b, block=2048):
    """Yields (row offset, distance block) from the BLAS expansion."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    nb = (b64 * b64).sum(1)
    for r in range(0, len(a64), block):
        x = a64[r : r + block]
        d2 = (x * x).sum(1)[:, None] + nb[None, :] - 2.0 * x @ b64.T
        yield r, np.sqrt(np.maximum(d2, 0.0))


def numpy_hausdorff(a, b):
    h_ab = max(blk.min(1).max() for _, blk in block_distances(a, b))
    h_ba = max(blk.min(1).max() for _, blk in block_distances(b, a))
    return max(h_ab, h_ba)


def numpy_isometric_error(x1, x2, block=2048):
    best = 0.0
    pairs = zip(block_distances(x1, x1, block), block_distances(x2, x2, block), strict=True)
    for (_, d1), (_, d2) in pairs:
        best = max(best, float(np.abs(d1 - d2).max()))
    return best


def clustered_embeddings(
    n, d=64, classes=1000, spread=0.05, scale=1.1, noise=1e-2, seed=0, dtype=np.float32
):
    """Two embeddings of the same clustered points.

    Class centres are standard normal in ``d`` dimensions; each point is its
    class centre plus ``spread`` times a standard normal vector. The second
    embedding is the first rotated by a random orthogonal matrix, scaled by
    ``scale`` and moved by ``noise`` times a standard normal vector.
    """
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((classes, d))
    labels = rng.integers(classes, size=n)
    x1 = centres[labels] + spread * rng.standard_normal((n, d))
    rotation, _ = np.linalg.qr(rng.standard_normal((d, d)))
    x2 = scale * (x1 @ rotation) + noise * rng.standard_normal((n, d))
    return x1.astype(dtype), x2.astype(dtype)


def hausdorff_cases(quick):
    rng = np.random.default_rng(0)
    n3, nd = (20_000, 4_000) if quick else (200_000, 20_000)
    a3 = rng.standard_normal((n3, 3))
    b3 = rng.standard_normal((n3, 3))
    a = rng.standard_normal((nd, 128)).astype(np.float32)
    yield f"random 3-D, N={n3:,}", a3, b3
    yield f"random d=128, N={nd:,}", a, rng.standard_normal((nd, 128)).astype(np.float32)
    yield f"permutation d=128, N={nd:,}", a, a[rng.permutation(nd)]
    noisy = (a + 1e-3 * rng.standard_normal(a.shape)).astype(np.float32)
    yield f"noisy copy 1e-3 d=128, N={nd:,}", a, noisy
    a64 = rng.standard_normal((nd, 128))
    shuffled = (a64 + 1e-2 * rng.standard_normal(a64.shape))[rng.permutation(nd)]
    yield f"shuffled noisy copy 1e-2 d=128, N={nd:,}, float64", a64, shuffled
    yield (
        f"shuffled noisy copy 1e-2 d=128, N={nd:,}, float32",
        a64.astype(np.float32),
        shuffled.astype(np.float32),
    )


def run_peer(fn, small_fn, scale, budget, repeats):
    """Times fn, unless a run at a smaller size predicts more than budget."""
    _, t_small = best_time(small_fn, 1)
    estimate = t_small * scale
    if estimate > budget:
        return None, f"skipped (estimated {estimate:.0f} s)"
    out, t = best_time(fn, max(1, repeats if estimate * repeats < budget else 1))
    return out, t


def cell(t):
    return t if isinstance(t, str) else f"{t:.3f} s"


def ratio(t, ref):
    return "" if isinstance(t, str) else f"{t / ref:.1f}x"


def hausdorff_table(args):
    print(
        "| case | tripletcore | unpruned | scipy | NumPy brute force | vs unpruned | vs scipy "
        "| vs NumPy | pairs skipped | agree |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for name, a, b in hausdorff_cases(args.quick):
        with unpruned():
            r0, t_un = best_time(lambda a=a, b=b: tc.hausdorff(a, b), args.repeats)
        r, t_tc, rate = timed_with_pruning(lambda a=a, b=b: tc.hausdorff(a, b), args.repeats)
        k = max(1, len(a) // 8)
        small = (a[:k], b[:k])
        sp, t_sp = run_peer(
            lambda a=a, b=b: scipy_hausdorff(a, b),
            lambda s=small: scipy_hausdorff(*s),
            (len(a) / k) ** 2,
            args.peer_budget,
            args.repeats,
        )
        npv, t_np = run_peer(
            lambda a=a, b=b: numpy_hausdorff(a, b),
            lambda s=small: numpy_hausdorff(*s),
            (len(a) / k) ** 2,
            args.peer_budget,
            args.repeats,
        )
        got = r.distance
        same = (r.distance, r.i, r.j) == (r0.distance, r0.i, r0.j)
        agree = same and all(v is None or abs(v - got) <= 1e-6 * max(1.0, got) for v in (sp, npv))
        print(
            f"| {name} | {t_tc:.3f} s | {t_un:.3f} s | {cell(t_sp)} | {cell(t_np)} "
            f"| {t_un / t_tc:.1f}x | {ratio(t_sp, t_tc)} | {ratio(t_np, t_tc)} | {rate} "
            f"| {'yes' if agree else 'NO'} |"
        )


def isometric_cases(quick):
    rng = np.random.default_rng(1)
    n = 2_048 if quick else 8_192
    x1 = rng.standard_normal((n, 64)).astype(np.float32)
    yield f"random, noisy copy, N={n:,}", x1, (x1 + 0.01 * rng.standard_normal(x1.shape))
    n = 4_096 if quick else 20_000
    x1 = rng.standard_normal((n, 64)).astype(np.float32)
    yield f"random, independent, N={n:,}", x1, rng.standard_normal((n, 64)).astype(np.float32)
    n = 10_000 if quick else 100_000
    for spread in (0.05, 0.01):
        yield f"clustered, spread {spread}, N={n:,}", *clustered_embeddings(n, spread=spread)


def isometric_table(args):
    print(
        "| case, d=64 | tripletcore | unpruned | NumPy two-cdist | vs unpruned | vs NumPy "
        "| pairs skipped | agree |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for name, x1, x2 in isometric_cases(args.quick):
        isometric_row(name, x1, x2.astype(x1.dtype), args)


def isometric_row(name, x1, x2, args):
    repeats = 1 if len(x1) > 20_000 else args.repeats
    r, t_tc, rate = timed_with_pruning(lambda: tc.isometric_error(x1, x2), repeats)
    with unpruned():
        r0, t_un = best_time(lambda: tc.isometric_error(x1, x2), repeats)
    k = max(1, len(x1) // 8)
    want, t_np = run_peer(
        lambda: numpy_isometric_error(x1, x2),
        lambda: numpy_isometric_error(x1[:k], x2[:k]),
        (len(x1) / k) ** 2,
        args.peer_budget,
        1,
    )
    same = (r.distance, r.i, r.j) == (r0.distance, r0.i, r0.j)
    agree = same and (want is None or abs(want - r.distance) <= 1e-5 * max(1.0, r.distance))
    print(
        f"| {name} | {t_tc:.3f} s | {t_un:.3f} s | {cell(t_np)} | {t_un / t_tc:.1f}x "
        f"| {ratio(t_np, t_tc)} | {rate} | {'yes' if agree else 'NO'} |"
    )


MEMORY_SCRIPT = """
import json, sys, time
sys.path.insert(0, {bench_dir!r})
from bench_geometry import clustered_embeddings
import tripletcore as tc
x1, x2 = clustered_embeddings({n})
def status_kb(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])

tc.isometric_error(x1[:64], x2[:64])
# Reset the high-water mark to the current RSS, which is the baseline.
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
base = status_kb("VmRSS")
t = time.perf_counter()
r = tc.isometric_error(x1, x2)
t = time.perf_counter() - t
peak = status_kb("VmHWM")
print(json.dumps({{"seconds": t, "peak_kb": peak, "base_kb": base, "value": r.distance}}))
"""


def memory_case(n, limit_mb):
    script = MEMORY_SCRIPT.format(bench_dir=str(Path(__file__).parent), n=n)
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=7200
    )
    if out.returncode != 0:
        return f"failed: {out.stderr.strip()[-200:]}"
    r = json.loads(out.stdout)
    grown = (r["peak_kb"] - r["base_kb"]) / 1024
    verdict = "pass" if grown < limit_mb else "FAIL"
    return (
        f"{r['seconds']:.1f} s, peak RSS increase {grown:.0f} MB "
        f"({verdict}, target < {limit_mb} MB)"
    )


def openblas_coretype():
    """faiss's bundled OpenBLAS at its best kernel for this CPU."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    return "SkylakeX" if " avx512f" in flags else "Haswell" if " avx2" in flags else None


def knn_case(quick):
    env = dict(os.environ)
    core = openblas_coretype()
    if core and "OPENBLAS_CORETYPE" not in env:
        env["OPENBLAS_CORETYPE"] = core
    n = 10_000 if quick else 50_000
    cmd = [sys.executable, str(Path(__file__).parent / "bench_knn.py"), "--n", str(n)]
    cmd += ["--d", "128", "--k", "10", "--no-sklearn"]
    print(
        f"k-NN self-query (OPENBLAS_CORETYPE={env.get('OPENBLAS_CORETYPE')}): {' '.join(cmd[1:])}"
    )
    sys.stdout.flush()
    subprocess.run(cmd, env=env, check=False)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes")
    ap.add_argument("--repeats", type=int, default=3, help="(1 for d_iso above N = 20,000)")
    ap.add_argument("--peer-budget", type=float, default=300.0, help="seconds per peer call")
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--million", action="store_true", help="d_iso at N = 1,000,000")
    ap.add_argument("--no-knn", action="store_true")
    ap.add_argument("--only", choices=["hausdorff", "isometric", "knn"])
    args = ap.parse_args(argv)

    print(f"tripletcore {tc.__version__}, numpy {np.__version__}; best of {args.repeats}; ", end="")
    print(f"load average {os.getloadavg()[0]:.1f}")
    print()
    if args.only in (None, "hausdorff"):
        hausdorff_table(args)
        print()
    if args.only in (None, "isometric"):
        isometric_table(args)
        if not args.no_memory and not args.quick:
            print()
            print(f"isometric_error, clustered, N=100,000, d=64: {memory_case(100_000, 500)}")
        if args.million:
            print(f"isometric_error, clustered, N=1,000,000, d=64: {memory_case(1_000_000, 1024)}")
        print()
    if args.only in (None, "knn") and not args.no_knn:
        knn_case(args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
