#!/usr/bin/env python
"""Geometry benchmark: Hausdorff and isometric error against scipy and NumPy.

In one run and on the same data:

* ``hausdorff`` (undirected) against scipy's ``directed_hausdorff`` taken
  both ways and a NumPy brute force (BLAS expansion, row blocks of 2,048 so
  it fits in memory), on random 3-D clouds, random d = 128 sets, and the
  overlapping cases (a permutation and a 1e-3-noisy copy of the same set);
* ``isometric_error`` against NumPy's two-``cdist`` approach (two BLAS
  distance matrices in blocks, the largest absolute difference);
* the peak memory of ``isometric_error`` at N = 100,000, d = 64, measured
  in a fresh subprocess (peak RSS increase over the RSS after set-up).

Each timing is the best of ``--repeats`` calls; scipy and NumPy peers that
would take longer than ``--peer-budget`` seconds (estimated from a smaller
run) are skipped, and the table says so.

    python benches/bench_geometry.py            # the issue's sizes
    python benches/bench_geometry.py --quick    # small sizes, a few seconds
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np
from scipy.spatial.distance import directed_hausdorff

import tripletcore as tc


def best_time(fn, repeats):
    out, best = None, float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return out, best


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


def run_peer(fn, small_fn, scale, budget, repeats):
    """Times fn, unless a run at a smaller size predicts more than budget."""
    _, t_small = best_time(small_fn, 1)
    estimate = t_small * scale
    if estimate > budget:
        return None, f"skipped (estimated {estimate:.0f} s)"
    out, t = best_time(fn, max(1, repeats if estimate * repeats < budget else 1))
    return out, t


MEMORY_SCRIPT = """
import json, time
import numpy as np
import tripletcore as tc
rng = np.random.default_rng(0)
x1 = rng.standard_normal((100_000, 64)).astype(np.float32)
x2 = (x1 + 0.01 * rng.standard_normal(x1.shape)).astype(np.float32)
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
print(json.dumps({"seconds": t, "peak_kb": peak, "base_kb": base, "value": r.distance}))
"""


def memory_case():
    out = subprocess.run(
        [sys.executable, "-c", MEMORY_SCRIPT], capture_output=True, text=True, timeout=3600
    )
    if out.returncode != 0:
        return f"failed: {out.stderr.strip()[-200:]}"
    r = json.loads(out.stdout)
    grown = (r["peak_kb"] - r["base_kb"]) / 1024
    verdict = "pass" if grown < 500 else "FAIL"
    return f"{r['seconds']:.1f} s, peak RSS increase {grown:.0f} MB ({verdict}, target < 500 MB)"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--peer-budget", type=float, default=300.0, help="seconds per peer call")
    ap.add_argument("--no-memory", action="store_true")
    args = ap.parse_args(argv)

    print(f"tripletcore {tc.__version__}, numpy {np.__version__}; best of {args.repeats}")
    print()
    print("| case | tripletcore | scipy | NumPy brute force | vs scipy | vs NumPy | agree |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for name, a, b in hausdorff_cases(args.quick):
        got, t_tc = best_time(lambda a=a, b=b: tc.hausdorff(a, b).distance, args.repeats)
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

        def cell(t):
            return t if isinstance(t, str) else f"{t:.3f} s"

        def ratio(t, ref=t_tc):
            return "" if isinstance(t, str) else f"{t / ref:.1f}x"

        agree = all(v is None or abs(v - got) <= 1e-6 * max(1.0, got) for v in (sp, npv))
        print(
            f"| hausdorff, {name} | {t_tc:.3f} s | {cell(t_sp)} | {cell(t_np)} | {ratio(t_sp)} "
            f"| {ratio(t_np)} | {'yes' if agree else 'NO'} |"
        )

    n = 2_048 if args.quick else 8_192
    rng = np.random.default_rng(1)
    x1 = rng.standard_normal((n, 64)).astype(np.float32)
    x2 = (x1 + 0.01 * rng.standard_normal(x1.shape)).astype(np.float32)
    got, t_tc = best_time(lambda: tc.isometric_error(x1, x2).distance, args.repeats)
    want, t_np = best_time(lambda: numpy_isometric_error(x1, x2), args.repeats)
    agree = abs(want - got) <= 1e-5 * max(1.0, got)
    print(
        f"| isometric_error, N={n:,}, d=64 | {t_tc:.3f} s | | {t_np:.3f} s | "
        f"| {t_np / t_tc:.1f}x | {'yes' if agree else 'NO'} |"
    )
    if not args.no_memory and not args.quick:
        print()
        print(f"isometric_error, N=100,000, d=64: {memory_case()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
