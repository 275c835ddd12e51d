#!/usr/bin/env python
"""Benchmark of tripletcore.torch: one training step (mine + loss + backward).

Implementations, on the same data in one run:

* ``tripletcore``  ``tripletcore.torch.triplet_margin_loss(x, y, margin=0.2)``
                   (batch-hard) + ``backward()``; ``backend="auto"``: the Rust
                   kernels on CPU, the tiled torch path on CUDA;
* ``tc tiled``     the same with ``backend="torch"`` (the CUDA path run on the
                   CPU; only with ``--tiled-cpu``);
* ``torch``        the straightforward version: ``torch.cdist`` + masked
                   ``amax``/``amin`` + ``relu(d_ap - d_an + m).mean()`` + ``backward()``;
* ``PML``          pytorch-metric-learning ``BatchHardMiner`` + ``TripletMarginLoss``
                   (``LpDistance(normalize_embeddings=False)``) + ``backward()``.

Data: float32 ``x ~ N(0, 1)`` (seeded), ``requires_grad=True``, d = 128, P x K
labels (``arange(N) // 4`` shuffled). Method: each implementation makes
``--warmup`` untimed steps, then the implementations take turns for
``--repeats`` rounds (so slow drifts of a shared machine hit all of them
alike); the table gives the median and the minimum step time, and the
speed-up = peer median / tripletcore median. Peers whose all-pairs matrices
would not fit (``--max-gb``) are skipped. Before timing, the losses are
cross-checked (tripletcore ``mean`` vs torch, ``mean_nonzero`` vs PML).

Thread pools: on a small machine, torch's idle OpenMP threads spin for a
while after each torch op and compete with the Rust kernels' threads for the
cores; ``OMP_WAIT_POLICY=passive`` makes them sleep instead (report both).

``--device cuda`` times the GPU path at N = 256, 1,024, 8,192, 65,536 and
262,144 (auto, backend='triton' when Triton is importable, backend='torch'
tiled, and the peers where they fit) and reports
each implementation's peak GPU memory (``torch.cuda.max_memory_allocated``
above what was allocated before the step).

Examples::

    python benches/bench_torch.py --quick
    python benches/bench_torch.py --out bench-results/torch.md
    OMP_WAIT_POLICY=passive python benches/bench_torch.py
    python benches/bench_torch.py --device cuda --out bench-results/torch-cuda.md
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np
import torch

import tripletcore
import tripletcore.torch as tt

MARGIN = 0.2
DIM = 128
GB = 1e9
# rough peak bytes per (i, j) pair of the all-pairs peers (distance matrix, masks,
# where-copies, autograd buffers), measured on CPU at N = 8,192
BYTES_PER_PAIR = {"torch": 20, "pml": 40}

Step = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def tc_step(backend: str) -> Step:
    def step(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        loss = tt.triplet_margin_loss(x, y, margin=MARGIN, backend=backend)
        loss.backward()
        return loss

    return step


def torch_step(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    d = torch.cdist(x, x)
    same = y[:, None] == y[None, :]
    pos = same & ~torch.eye(len(y), dtype=torch.bool, device=x.device)
    d_ap = torch.where(pos, d, -torch.inf).amax(dim=1)
    d_an = torch.where(same, torch.inf, d).amin(dim=1)
    valid = pos.any(dim=1) & ~same.all(dim=1)
    loss = torch.relu(d_ap - d_an + MARGIN)[valid].mean()
    loss.backward()
    return loss


def pml_step() -> Step:
    from pytorch_metric_learning.distances import LpDistance
    from pytorch_metric_learning.losses import TripletMarginLoss
    from pytorch_metric_learning.miners import BatchHardMiner

    distance = LpDistance(normalize_embeddings=False)
    miner = BatchHardMiner(distance=distance)
    loss_fn = TripletMarginLoss(margin=MARGIN, distance=distance)

    def step(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        loss = loss_fn(x, y, miner(x, y))
        loss.backward()
        return loss

    return step


def make_data(n: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal((n, DIM)).astype(np.float32)).to(device)
    y = torch.from_numpy(rng.permutation(np.arange(n) // 4)).to(device)
    return x.requires_grad_(), y


def timed(step: Step, x: torch.Tensor, y: torch.Tensor, cuda: bool) -> tuple[float, float]:
    """Seconds of one step and its peak GPU memory in bytes (0 on CPU)."""
    x.grad = None
    if cuda:
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    step(x, y)
    if cuda:
        torch.cuda.synchronize()
    dt = time.perf_counter() - t
    peak = torch.cuda.max_memory_allocated() - base if cuda else 0
    return dt, float(peak)


def cross_check(x: torch.Tensor, y: torch.Tensor, impls: dict[str, Step]) -> str:
    """Loss agreement: tripletcore mean vs torch, mean_nonzero vs PML."""
    xd = x.detach().requires_grad_()
    notes = []
    ours = float(tt.triplet_margin_loss(xd, y, margin=MARGIN).detach())
    if "torch" in impls:
        ref = float(impls["torch"](xd, y).detach())
        notes.append(f"mean: tc {ours:.6f} vs torch {ref:.6f}")
    if "pml" in impls:
        nz = float(tt.triplet_margin_loss(xd, y, margin=MARGIN, reduction="mean_nonzero").detach())
        ref = float(impls["pml"](xd, y).detach())
        notes.append(f"mean_nonzero: tc {nz:.6f} vs PML {ref:.6f}")
    return "; ".join(notes)


def fmt_time(s: float) -> str:
    return f"{s * 1e3:.2f} ms" if s < 1 else f"{s:.2f} s"


def run(args: argparse.Namespace) -> str:
    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA device available")
    sizes = args.sizes or (
        [256, 1024]
        if args.quick
        else ([256, 1024, 8192, 65536, 262144] if cuda else [256, 1024, 8192])
    )
    repeats = args.repeats or (3 if args.quick else 7)
    free = torch.cuda.mem_get_info()[0] if cuda else _available_memory()
    limit = args.max_gb * GB if args.max_gb else 0.6 * free
    lines = [
        "# tripletcore.torch benchmark: mine + loss + backward",
        "",
        f"- date: {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}",
        f"- command: `python {' '.join(sys.argv)}`",
        f"- device: {_device_name(cuda)}; torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), tripletcore {tripletcore.__version__} "
        f"(RAYON_NUM_THREADS={os.environ.get('RAYON_NUM_THREADS', 'unset')}, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}), "
        f"Python {platform.python_version()}",
        f"- 1-min load average at start: {_load()} (a shared machine: read the ratios)",
        f"- data: float32 x ~ N(0,1), d = {DIM}, labels arange(N) // 4 shuffled; margin {MARGIN}",
        f"- {args.warmup} warm-up step(s), then {repeats} rounds in turn; median (min)",
        "",
        "| N | implementation | median | min | "
        + ("peak GPU memory | " if cuda else "")
        + "tripletcore speed-up |",
        "|---:|---|---:|---:|" + ("---:|" if cuda else "") + "---:|",
    ]
    checks = []
    for n in sizes:
        impls: dict[str, Step] = {"tc": tc_step("auto")}
        if args.tiled_cpu and not cuda:
            impls["tc_tiled"] = tc_step("torch")
        if cuda:
            impls.update(_cuda_backends())
        skipped = []
        for name in ("torch", "pml"):
            if name in args.skip:
                continue
            if BYTES_PER_PAIR[name] * n * n > limit:
                skipped.append(f"{name} (needs ~{BYTES_PER_PAIR[name] * n * n / GB:.0f} GB)")
                continue
            impls[name] = torch_step if name == "torch" else pml_step()
        x, y = make_data(n, args.device)
        checks.append(f"N={n}: {cross_check(x, y, impls)}")
        for step in impls.values():
            for _ in range(args.warmup):
                timed(step, x, y, cuda)
        times: dict[str, list[float]] = {k: [] for k in impls}
        peaks: dict[str, float] = {k: 0.0 for k in impls}
        for _ in range(repeats):
            for name, step in impls.items():
                dt, peak = timed(step, x, y, cuda)
                times[name].append(dt)
                peaks[name] = max(peaks[name], peak)
        base = statistics.median(times["tc"])
        for name in impls:
            med = statistics.median(times[name])
            ratio = "" if name == "tc" else f"{med / base:.1f}x"
            mem = f" {peaks[name] / 2**20:,.0f} MiB |" if cuda else ""
            lines.append(
                f"| {n} | {LABELS[name]} | {fmt_time(med)} | {fmt_time(min(times[name]))} |"
                f"{mem} {ratio} |"
            )
        for s in skipped:
            lines.append(f"| {n} | skipped: {s} | | |" + (" |" if cuda else "") + " |")
        print("\n".join(lines[-len(impls) - len(skipped) :]), flush=True)
    lines += ["", "Cross-checks (loss values on the same batch):", ""]
    lines += [f"- {c}" for c in checks]
    return "\n".join(lines) + "\n"


def _cuda_backends() -> dict[str, Step]:
    """The Triton backend (when Triton is installed) and the tiled one."""
    from tripletcore.torch.triton import triton_available

    out = {"tc_tiled": tc_step("torch")}
    if triton_available():
        out["tc_triton"] = tc_step("triton")
    return out


LABELS = {
    "tc": "tripletcore.torch (auto backend)",
    "tc_tiled": "tripletcore.torch (backend='torch')",
    "tc_triton": "tripletcore.torch (backend='triton')",
    "torch": "torch cdist + masked amax/amin",
    "pml": "PML BatchHardMiner + TripletMarginLoss",
}


def _available_memory() -> float:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    return 8 * GB


def _device_name(cuda: bool) -> str:
    if cuda:
        return torch.cuda.get_device_name()
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs"


def _load() -> str:
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "n/a"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--quick", action="store_true", help="N = 256, 1024 and 3 rounds")
    p.add_argument("--sizes", type=lambda s: [int(v) for v in s.split(",")], default=None)
    p.add_argument("--repeats", type=int, default=None, help="timed rounds (default 7)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--skip", nargs="*", default=[], choices=["torch", "pml"])
    p.add_argument("--tiled-cpu", action="store_true", help="also time backend='torch' on CPU")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads and, unless RAYON_NUM_THREADS is set, the Rust kernels' threads",
    )
    p.add_argument("--max-gb", type=float, default=None, help="memory limit for the peers")
    p.add_argument("--out", default=None, help="also write the markdown report here")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
        # read by the Rust thread pool when it starts (at the first kernel call)
        os.environ.setdefault("RAYON_NUM_THREADS", str(args.threads))
    report = run(args)
    print()
    print(report)
    if args.out:
        with open(args.out, "w") as f:
            f.write(report)


if __name__ == "__main__":
    main()
