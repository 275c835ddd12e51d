"""Exact k-NN: tripletcore.knn against faiss's exact IndexFlatL2 and
scikit-learn's brute-force NearestNeighbors, in one run, on the same data.

    python benches/bench_knn.py                # N = 100,000, d = 128, k = 10
    python benches/bench_knn.py --n 20000      # smaller
    # issue 18's case: faiss at its best kernel, against another build too
    OPENBLAS_CORETYPE=SkylakeX python benches/bench_knn.py --n 50000 --no-sklearn \
        --base /tmp/knn_base/python

tripletcore is timed first, then the `--base` build (its `python/` folder, in
a subprocess, same data; its answer must be the same bits), then faiss: faiss's
OpenMP threads suffer most from other load, so timing it last does not favour
us. The load average is printed at the start and the end.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

import tripletcore as tc

BASE_SCRIPT = """
import json, sys, time
import numpy as np
import tripletcore as tc
x = np.load(sys.argv[1])
k, repeats = int(sys.argv[2]), int(sys.argv[3])
times = []
for _ in range(repeats):
    t = time.perf_counter()
    r = tc.knn(x, k)
    times.append(time.perf_counter() - t)
np.save(sys.argv[4], r.indices)
np.save(sys.argv[5], r.distances)
json.dump({"time": min(times), "file": tc.__file__}, sys.stdout)
"""


def time_base(base, x, k, repeats, got):
    """Times `tc.knn(x, k)` of the build under `base` in a subprocess and
    checks that its answer has the same bits as `got`."""
    with tempfile.TemporaryDirectory() as tmp:
        paths = [os.path.join(tmp, f) for f in ("x.npy", "i.npy", "d.npy")]
        np.save(paths[0], x)
        env = dict(os.environ, PYTHONPATH=base)
        cmd = [sys.executable, "-c", BASE_SCRIPT, paths[0], str(k), str(repeats), *paths[1:]]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
        res = json.loads(out.stdout)
        same = np.array_equal(np.load(paths[1]), got.indices) and np.array_equal(
            np.load(paths[2]).view(np.uint32), got.distances.view(np.uint32)
        )
    return res["time"], res["file"], same


def load():
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f}"


def best_of(fn, repeats):
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--d", type=int, default=128)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--no-sklearn", action="store_true")
    ap.add_argument("--base", help="python/ folder of another tripletcore build to A/B")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.n, args.d)).astype(np.float32)
    k = args.k
    print(f"N={args.n} d={args.d} k={k} float32, queries = the set itself (self excluded)")
    print(f"start: {load()}; OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE')}")

    t_tc, got = best_of(lambda: tc.knn(x, k), args.repeats)
    print(f"tripletcore.knn          {t_tc:8.2f} s  ({tc.__file__})")
    rows = {"tripletcore": t_tc}
    if args.base:
        t_b, where, same = time_base(args.base, x, k, args.repeats, got)
        rows["tripletcore --base"] = t_b
        print(f"tripletcore.knn (base)   {t_b:8.2f} s  ({where})")
        print(f"  same bits as the base build: {same}")
    try:
        import faiss

        def run_faiss():
            index = faiss.IndexFlatL2(args.d)
            index.add(x)
            return index.search(x, k + 1)  # the first hit is (usually) the query

        t_f, (fd, fi) = best_of(run_faiss, args.repeats)
        rows["faiss IndexFlatL2"] = t_f
        print(f"faiss IndexFlatL2        {t_f:8.2f} s  (threads: {faiss.omp_get_max_threads()})")
        # faiss ranks by the expansion in float32: compare neighbour sets.
        fi_wo_self = np.array([[j for j in r if j != i][:k] for i, r in enumerate(fi[:2000])])
        agree = np.mean(
            [set(a) == set(b) for a, b in zip(fi_wo_self, got.indices[:2000], strict=True)]
        )
        print(f"  same neighbour sets as faiss on the first 2000 queries: {agree:.4f}")
    except ImportError:
        print("faiss not installed (pip install faiss-cpu)")
    if not args.no_sklearn:
        try:
            from sklearn.neighbors import NearestNeighbors

            def run_sklearn():
                nn = NearestNeighbors(n_neighbors=k + 1, algorithm="brute").fit(x)
                return nn.kneighbors(x)

            t_s, _ = best_of(run_sklearn, args.repeats)
            rows["sklearn brute"] = t_s
            print(f"sklearn NearestNeighbors {t_s:8.2f} s")
        except ImportError:
            print("scikit-learn not installed")
    # Exactness spot check against float64 brute force on 200 queries.
    q = rng.choice(args.n, 200, replace=False)
    xd = x.astype(np.float64)
    for i in q:
        d2 = ((xd - xd[i]) ** 2).sum(1)
        d2[i] = np.inf
        want = np.argsort(d2, kind="stable")[:k]
        assert np.array_equal(got.indices[i], want), i  # same order, nearest first
        np.testing.assert_allclose(got.distances[i], np.sqrt(d2[want]), rtol=2e-7)  # float32 output
    print("exact: 200 random queries match a float64 brute force (indices in order, distances)")
    print(f"end: {load()}")
    print("\n| implementation | time (s) | tripletcore speed-up |\n|---|---:|---:|")
    for name, t in rows.items():
        print(f"| {name} | {t:.2f} | {t / t_tc:.2f}x |")


if __name__ == "__main__":
    main()
