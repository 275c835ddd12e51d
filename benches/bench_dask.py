#!/usr/bin/env python
"""tripletcore.dask on a memory-limited LocalCluster, against the in-memory
functions.

Writes two float32 embeddings of N points (A, and B = A plus 1% noise, "two
embeddings of the same points") and their labels to NumPy files in a temp
folder, opens them as memmaps, and on a LocalCluster of ``--workers``
single-threaded worker processes whose memory limit is below the data size
times:

* (a) ``hausdorff(A, B)`` and (b) ``batch_hard(A, labels)``, compared bit for
  bit with the in-memory functions (run in a fresh subprocess on the same
  memmaps, all cores);
* the peak RSS of every worker process, sampled every 50 ms by a thread in
  the worker, next to its idle RSS, and the peak of the data the worker held
  (distributed's managed memory);
* the task graph's size for a few block sizes (no compute).

The workers' memory limit is enforced on the data they hold (spill to disk
above 60%); the process-RSS thresholds (pause, terminate) are off because an
idle worker process, with NumPy, dask and tripletcore imported, is already
larger than the limit.

    python benches/bench_dask.py            # N = 300,000, d = 64
    python benches/bench_dask.py --quick    # N = 20,000, a few seconds
"""

from __future__ import annotations

import argparse
import json
import logging
import pickle
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import dask
import distributed
import numpy as np

import tripletcore.dask as tcd

HERE = Path(__file__).resolve().parent


def write_data(folder: Path, n: int, d: int, classes: int, seed: int = 0) -> dict[str, Path]:
    """A, B = A + noise and labels as .npy files, written in slices so this
    process never holds them whole."""
    rng = np.random.default_rng(seed)
    paths = {name: folder / f"{name}.npy" for name in ("A", "B", "labels")}
    a = np.lib.format.open_memmap(paths["A"], "w+", np.float32, (n, d))
    b = np.lib.format.open_memmap(paths["B"], "w+", np.float32, (n, d))
    lab = np.lib.format.open_memmap(paths["labels"], "w+", np.int64, (n,))
    for s in range(0, n, 50_000):
        e = min(n, s + 50_000)
        a[s:e] = rng.standard_normal((e - s, d), dtype=np.float32)
        b[s:e] = a[s:e] + np.float32(0.01) * rng.standard_normal((e - s, d), dtype=np.float32)
        lab[s:e] = rng.integers(0, classes, e - s)
    for m in (a, b, lab):
        m.flush()
    del a, b, lab
    return paths


IN_MEMORY = """
import json, pickle, resource, sys, time
import numpy as np
import tripletcore as tc
a, b, lab = (np.load(p, mmap_mode="r") for p in sys.argv[1:4])
t0 = time.perf_counter()
r = tc.hausdorff(a, b) if sys.argv[4] == "hausdorff" else tc.batch_hard(a, lab)
sec = time.perf_counter() - t0
with open(sys.argv[5], "wb") as fh:
    pickle.dump(tuple(r), fh)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": sec, "peak_rss_mb": peak}))
"""


def in_memory(paths: dict[str, Path], what: str, folder: Path) -> tuple[dict[str, Any], Any]:
    """The in-memory function in a fresh process (its peak RSS is its own)."""
    out = folder / f"want-{what}.pickle"
    args = [str(paths[k]) for k in ("A", "B", "labels")]
    proc = subprocess.run(
        [sys.executable, "-c", IN_MEMORY, *args, what, str(out)],
        capture_output=True,
        text=True,
        check=True,
    )
    with open(out, "rb") as fh:
        return json.loads(proc.stdout), pickle.load(fh)


def start_sampler(dask_worker: Any, interval: float = 0.05) -> int:
    """Runs in each worker: a thread keeps the peak RSS and managed bytes."""
    import psutil

    proc = psutil.Process()
    state = {"rss": proc.memory_info().rss, "managed": 0, "stop": False}

    def loop() -> None:
        while not state["stop"]:
            state["rss"] = max(state["rss"], proc.memory_info().rss)
            state["managed"] = max(state["managed"], dask_worker.state.nbytes)
            time.sleep(interval)

    threading.Thread(target=loop, daemon=True).start()
    dask_worker.tc_sampler = state
    return int(state["rss"])


def stop_sampler(dask_worker: Any) -> dict[str, float]:
    state = dask_worker.tc_sampler
    state["stop"] = True
    return {"peak_rss_mb": state["rss"] / 2**20, "peak_managed_mb": state["managed"] / 2**20}


def run_on_cluster(client: Any, lazy: Any) -> tuple[Any, float, dict[str, Any]]:
    idle = client.run(start_sampler)
    t0 = time.perf_counter()
    result = client.compute(lazy).result()
    sec = time.perf_counter() - t0
    time.sleep(0.1)
    peaks = client.run(stop_sampler)
    workers = {w: {"idle_rss_mb": idle[w] / 2**20, **peaks[w]} for w in sorted(peaks, key=str)}
    return result, sec, workers


def same(got: Any, want: tuple[Any, ...]) -> bool:
    return all(
        np.array_equal(np.asarray(g), np.asarray(w), equal_nan=np.asarray(w).dtype.kind == "f")
        for g, w in zip(got, want, strict=True)
    )


def graph_sizes(paths: dict[str, Path], n: int) -> list[dict[str, int]]:
    a, b, lab = (np.load(paths[k], mmap_mode="r") for k in ("A", "B", "labels"))
    rows = []
    for blocks in (4, 8, 16, 32, 64):
        br = -(-n // blocks)
        rows.append(
            {
                "blocks": blocks,
                "block_rows": br,
                "hausdorff_tasks": len(tcd.hausdorff(a, b, block_rows=br, compute=False).dask),
                "batch_hard_tasks": len(tcd.batch_hard(a, lab, block_rows=br, compute=False).dask),
                "knn_tasks": len(tcd.knn(a, 10, block_rows=br, compute=False).dask),
                "isometric_tasks": len(
                    tcd.isometric_error(a, b, block_rows=br, compute=False).dask
                ),
            }
        )
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=300_000)
    p.add_argument("--d", type=int, default=64)
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--memory-limit", default="40MB")
    p.add_argument("--block-rows", type=int, default=20_000)
    p.add_argument("--quick", action="store_true", help="N = 20,000, blocks of 4,000 rows")
    p.add_argument(
        "--only", choices=("hausdorff", "batch_hard"), help="time one function, not both"
    )
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args()
    if args.quick:
        args.n, args.block_rows = 20_000, 4_000

    report: dict[str, Any] = {"n": args.n, "d": args.d, "workers": args.workers}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        paths = write_data(folder, args.n, args.d, args.classes)
        data_mb = sum(paths[k].stat().st_size for k in ("A", "B")) / 2**20
        report["data_mb"] = {"A": data_mb / 2, "A+B": data_mb}
        print(f"wrote A, B ({data_mb / 2:.0f} MiB each) in {time.perf_counter() - t0:.1f} s")
        report["graph"] = graph_sizes(paths, args.n)

        config = {
            "distributed.worker.memory.target": 0.6,
            "distributed.worker.memory.spill": False,
            "distributed.worker.memory.pause": False,
            "distributed.worker.memory.terminate": False,
            "distributed.worker.local-directory": str(folder / "workers"),
        }
        with (
            dask.config.set(config),
            distributed.LocalCluster(
                n_workers=args.workers,
                threads_per_worker=1,
                processes=True,
                memory_limit=args.memory_limit,
                dashboard_address=None,
                silence_logs=logging.ERROR,
                env={"RAYON_NUM_THREADS": "1"},
            ) as cluster,
            distributed.Client(cluster) as client,
        ):
            # Warm the workers (imports, the extension) before measuring.
            client.compute(tcd.knn(np.eye(4), 1, compute=False)).result()
            a, b, lab = (np.load(paths[k], mmap_mode="r") for k in ("A", "B", "labels"))
            cases = {
                "hausdorff": tcd.hausdorff(a, b, block_rows=args.block_rows, compute=False),
                "batch_hard": tcd.batch_hard(a, lab, block_rows=args.block_rows, compute=False),
            }
            report["block_rows"] = args.block_rows
            report["memory_limit"] = args.memory_limit
            if args.only:
                cases = {args.only: cases[args.only]}
            for what, lazy in cases.items():
                got, sec, workers = run_on_cluster(client, lazy)
                ref, want = in_memory(paths, what, folder)
                report[what] = {
                    "dask_seconds": sec,
                    "in_memory_seconds": ref["seconds"],
                    "in_memory_peak_rss_mb": ref["peak_rss_mb"],
                    "tasks": len(lazy.dask),
                    "identical": same(got, want),
                    "workers": workers,
                }
                print(json.dumps({what: report[what]}, indent=1), flush=True)

    print_tables(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


def print_tables(r: dict[str, Any]) -> None:
    print(
        f"\nN = {r['n']:,}, d = {r['d']}, float32: A and B {r['data_mb']['A']:.0f} MiB each; "
        f"{r['workers']} workers x 1 thread, memory limit {r['memory_limit']} each, "
        f"blocks of {r['block_rows']:,} rows\n"
    )
    print(
        "| function | dask (s) | in-memory (s) | identical | worker peak RSS (MiB) "
        "| worker idle RSS (MiB) | worker peak held data (MiB) | in-memory peak RSS (MiB) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for what in ("hausdorff", "batch_hard"):
        if what not in r:
            continue
        c = r[what]
        w = list(c["workers"].values())

        def each(field: str, digits: int, w: list[dict[str, float]] = w) -> str:
            return " / ".join(f"{x[field]:.{digits}f}" for x in w)

        print(
            f"| {what} | {c['dask_seconds']:.1f} | {c['in_memory_seconds']:.1f} | "
            f"{c['identical']} | {each('peak_rss_mb', 0)} | {each('idle_rss_mb', 0)} | "
            f"{each('peak_managed_mb', 1)} | {c['in_memory_peak_rss_mb']:.0f} |"
        )
    print(
        "\n| blocks | rows per block | hausdorff tasks | batch_hard tasks | knn tasks "
        "| isometric_error tasks |"
    )
    print("|---|---|---|---|---|---|")
    for g in r["graph"]:
        print(
            f"| {g['blocks']} | {g['block_rows']:,} | {g['hausdorff_tasks']:,} | "
            f"{g['batch_hard_tasks']:,} | {g['knn_tasks']:,} | {g['isometric_tasks']:,} |"
        )


if __name__ == "__main__":
    main()
