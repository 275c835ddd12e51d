"""Exact k-NN of torch tensors: tripletcore.torch.knn against faiss's exact
IndexFlatL2 (faiss-gpu when installed, else faiss-cpu, else a chunked
torch.cdist + topk), in one run, on the same data; peak GPU memory.

    python benches/bench_knn_gpu.py                          # CUDA, N = 1,000,000, d = 128, k = 10
    python benches/bench_knn_gpu.py --sizes 100000,1000000
    python benches/bench_knn_gpu.py --device cpu --sizes 2000  # smoke test (rust, torch paths)

Queries are the set itself (self excluded). The indices of tripletcore are
checked against the Rust ``tripletcore.knn`` on the first ``--check`` queries
(they must agree exactly); faiss ranks on the float32 expansion and breaks
ties its own way, so only its agreement rate is reported.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

import tripletcore as tc
import tripletcore.torch as tt


def timed(fn: Callable[[], Any], device: torch.device, repeats: int) -> tuple[float, Any]:
    """Best wall time of ``repeats`` runs (the device synchronised) and the last result."""
    best, out = float("inf"), None
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return best, out


def peak_extra_mib(fn: Callable[[], Any], device: torch.device) -> float | None:
    """Peak GPU memory of ``fn`` above what was allocated before it (MiB)."""
    if device.type != "cuda":
        return None
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated(device) - base) / 2**20


def reference(x: torch.Tensor, k: int) -> tuple[str, Callable[[], np.ndarray]]:
    """The peer: a callable returning (N x k) neighbour indices without the query itself."""
    try:
        import faiss  # type: ignore[import-not-found]
    except ImportError:
        faiss = None
    d = x.shape[1]
    if faiss is not None and x.device.type == "cuda" and hasattr(faiss, "StandardGpuResources"):
        res = faiss.StandardGpuResources()

        def run_gpu() -> np.ndarray:
            index = faiss.GpuIndexFlatL2(res, d)
            index.add(x.cpu().numpy())
            return _without_self(index.search(x.cpu().numpy(), k + 1)[1], k)

        return "faiss-gpu GpuIndexFlatL2", run_gpu
    if faiss is not None:

        def run_cpu() -> np.ndarray:
            index = faiss.IndexFlatL2(d)
            xs = x.cpu().numpy()
            index.add(xs)
            return _without_self(index.search(xs, k + 1)[1], k)

        return "faiss-cpu IndexFlatL2", run_cpu

    def run_cdist() -> np.ndarray:
        out = []
        step = max(1, 2**28 // (4 * x.shape[0]))  # a 256 MiB distance block at a time
        for s in range(0, x.shape[0], step):
            dist = torch.cdist(x[s : s + step], x)
            dist[torch.arange(dist.shape[0]), torch.arange(s, s + dist.shape[0])] = float("inf")
            out.append(dist.topk(k, largest=False).indices.cpu())
        return torch.cat(out).numpy()

    return "torch.cdist + topk (chunked; no faiss)", run_cdist


def _without_self(idx: np.ndarray, k: int) -> np.ndarray:
    rows = np.arange(idx.shape[0])[:, None]
    keep = idx != rows
    return np.stack([r[m][:k] for r, m in zip(idx, keep, strict=True)])


def exact_agreement(x: torch.Tensor, got: torch.Tensor, k: int, q: int) -> float:
    """Fraction of the first ``q`` queries whose indices equal the Rust kernel's."""
    xs = x.cpu().numpy()
    ref = tc.knn(xs[:q], k + 1, xs).indices  # the query itself is among them, at distance 0
    want = np.stack([r[r != i][:k] for i, r in enumerate(ref)])
    return float((want == got[:q].cpu().numpy()).all(axis=1).mean())


def run_size(n: int, args: argparse.Namespace, device: torch.device) -> None:
    g = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(n, args.d, generator=g, device=device)
    k, q = args.k, min(args.check, n)
    print(f"\nN={n:,} d={args.d} k={k} float32 on {device}")
    ours: dict[str, np.ndarray] = {}
    for backend in args.backends.split(","):
        t, res = timed(lambda b=backend: tt.knn(x, k, backend=b), device, args.repeats)
        mem = peak_extra_mib(lambda b=backend: tt.knn(x, k, backend=b), device)
        exact = exact_agreement(x, res.indices, k, q)
        mem_s = "" if mem is None else f"  peak extra GPU memory {mem:9.1f} MiB"
        print(f"tripletcore.torch.knn[{backend:6s}] {t:9.3f} s{mem_s}  exact on {q}: {exact:.4f}")
        ours[backend] = res.indices[:q].cpu().numpy()
    name, peer = reference(x, k)
    t, idx = timed(peer, device, args.repeats)
    mem = peak_extra_mib(peer, device)
    mem_s = "" if mem is None else f"  peak extra GPU memory {mem:9.1f} MiB"
    print(f"{name:32s} {t:9.3f} s{mem_s}")
    for backend, got in ours.items():
        same_set = np.mean([set(a) == set(b) for a, b in zip(idx[:q], got, strict=True)])
        same_order = float((idx[:q] == got).all(axis=1).mean())
        print(
            f"  agreement with {backend} on {q} queries: same neighbour sets {same_set:.4f}, "
            f"same ordered lists {same_order:.4f}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--sizes", default="1000000", help="comma-separated N")
    ap.add_argument("--d", type=int, default=128)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--check", type=int, default=2000, help="queries checked against Rust")
    ap.add_argument(
        "--backends",
        default=None,
        help="tripletcore backends to time (default: triton,torch on cuda; rust,torch on cpu)",
    )
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run with --device cpu for the smoke test")
    if args.backends is None:
        args.backends = "triton,torch" if device.type == "cuda" else "rust,torch"
    if device.type == "cuda":
        print(torch.cuda.get_device_name(device))
    for n in (int(s) for s in args.sizes.split(",") if s.strip()):
        run_size(n, args, device)


if __name__ == "__main__":
    main()
