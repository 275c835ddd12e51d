#!/usr/bin/env python
"""Foundation benchmark for tripletcore (batch-hard mining and triplet loss).

Measures, in one run and on the same data, for every size (N, d):

* ``tc.batch_hard``   ``tripletcore.batch_hard(X, labels)`` (mining only);
* ``tc.loss``         ``tripletcore.triplet_margin_loss(X, labels,
                      mining="batch_hard")`` (mine + loss + gradient);
* ``numpy X@X.T``     the matrix-multiply floor (2*N^2*d flops);
* ``torch mine``      ``torch.cdist`` + masked max/min, no autograd (mining
                      only, the peer of ``tc.batch_hard``);
* ``torch fwd+bwd``   the same plus ``relu(d_ap - d_an + m).mean()`` and
                      ``loss.backward()`` (the peer of ``tc.loss``);
* ``PML fwd+bwd``     pytorch-metric-learning ``BatchHardMiner`` +
                      ``TripletMarginLoss`` (LpDistance without
                      normalisation), forward and backward.

Data: float32 ``X ~ N(0, 1)`` (seeded) and P x K labels
(``arange(N) // K``, shuffled; K = 4 by default).

Method. Every (implementation, size) runs in a fresh subprocess, which
imports what it needs, builds the data, makes one tiny call (N = 64) so that
thread pools and lazily loaded code exist, and then takes its memory
baseline. It then runs ``--warmup`` untimed calls and ``--repeats`` timed
calls (fewer, but at least 3, when a call is so slow that the repeats would
exceed ``--case-budget`` seconds) and reports the median wall time. Peak
memory is the increase of the process's peak resident set size (Linux
``VmHWM``, reset to the current RSS at the baseline through
``/proc/self/clear_refs``; ``ru_maxrss`` elsewhere) over the baseline RSS,
so it counts every allocation, Rust's and BLAS's included. GFLOP/s is the
same nominal count ``2*N^2*d / time`` for every implementation (the flops of
the Gram matrix), so it is a rate relative to the matmul floor, not a count
of each implementation's real work. Speed-up = peer time / tripletcore time
(> 1: tripletcore is faster).

Peers that hold all-pairs N x N matrices are skipped, not tried and crashed,
when a documented estimate of their peak (``BYTES_PER_PAIR`` below) times
N^2 exceeds a limit: ``--pml-max-gb`` (8 GB) for PML, ``--max-gb``
(80 % of the memory available at start) for the others.

``--memory`` (also run at the end of a default run unless ``--no-memory``)
runs, each in its own subprocess and once, ``batch_hard`` at N = 100,000,
d = 64 and ``triplet_margin_loss(mining="batch_all")`` at N = 20,000, d = 64,
and reports time and peak RSS increase against a 500 MB target.

A short correctness check (``--no-check`` skips it) compares tripletcore with
a float64 NumPy reference on small inputs, and the benchmark cross-checks the
losses, gradient norms and mined distances of the implementations at every
size.

Examples::

    python benches/bench_foundation.py --quick
    python benches/bench_foundation.py --out bench.md
    python benches/bench_foundation.py --sizes 2048,8192 --dims 64 --no-memory
    python benches/bench_foundation.py --memory
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field

MARGIN = 0.2
RESULT_TAG = "@@RESULT "
GB = 1e9
MB = 1e6

# Implementations: key -> (label, what it computes).
IMPLS: dict[str, tuple[str, str]] = {
    "tc_batch_hard": ("tripletcore batch_hard", "mine"),
    "tc_loss": ("tripletcore triplet_margin_loss", "mine+loss+grad"),
    "np_matmul": ("numpy X @ X.T", "matmul floor"),
    "torch_mine": ("torch cdist+max/min (no grad)", "mine"),
    "torch_loss": ("torch cdist+max/min fwd+bwd", "mine+loss+grad"),
    "pml_loss": ("PML BatchHardMiner+TripletMarginLoss fwd+bwd", "mine+loss+grad"),
}
# tripletcore function each peer is compared with.
PEER_OF = {
    "np_matmul": ("tc_batch_hard", "tc_loss"),
    "torch_mine": ("tc_batch_hard",),
    "torch_loss": ("tc_loss",),
    "pml_loss": ("tc_loss",),
}

# Peak-memory estimates of the all-pairs peers, in bytes per pair (x N^2).
# Measured peak-RSS increases with this script (N = 4096 and 8192, d = 64
# and 512, torch 2.15, PML 2.9) were, in bytes per pair:
# * numpy X @ X.T: 4.0-4.3 (the float32 Gram matrix);
# * torch mine: 11-14 (cdist and its mm-path temporaries, the equality, eye
#   and positive masks, two masked float32 copies);
# * torch fwd+bwd: 17-23 (as above, plus what autograd keeps and the N x N
#   gradients that backward builds for max/min, masked_fill and cdist);
# * PML: 29-37 (the miner's distance matrix, uint8 match/diff masks and
#   masked copies, then the loss's own distance matrix with its graph and
#   backward's N x N gradients).
# The estimates round the largest of these up.
BYTES_PER_PAIR = {
    "np_matmul": 4.5,
    "torch_mine": 16,
    "torch_loss": 24,
    "pml_loss": 40,
}

MEMORY_CASES = (
    # key, N, d, description
    ("mem_batch_hard", 100_000, 64, "batch_hard (euclidean)"),
    ("mem_batch_all", 20_000, 64, 'triplet_margin_loss(mining="batch_all")'),
)
MEMORY_TARGET_MB = 500.0


# --------------------------------------------------------------------------
# Memory probes (used in the worker subprocesses)
# --------------------------------------------------------------------------


def _status_kb(field_name: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _ru_maxrss_bytes() -> int:
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024


class PeakRSS:
    """Peak-RSS increase over a baseline taken by :meth:`reset`."""

    def __init__(self) -> None:
        self.method = "ru_maxrss"
        self.base = 0

    def reset(self) -> None:
        rss = _status_kb("VmRSS")
        if rss is not None:
            try:
                with open("/proc/self/clear_refs", "w") as fh:
                    fh.write("5")  # resets VmHWM to the current RSS
                hwm = _status_kb("VmHWM")
                if hwm is not None and hwm <= rss + 1024:
                    self.method = "VmHWM"
                    self.base = _status_kb("VmRSS") * 1024
                    return
            except OSError:
                pass
        # Fallback: increase of the (unresettable) peak over the peak so far.
        self.method = "ru_maxrss"
        self.base = _ru_maxrss_bytes()

    def increase(self) -> int:
        if self.method == "VmHWM":
            return max(0, _status_kb("VmHWM") * 1024 - self.base)
        return max(0, _ru_maxrss_bytes() - self.base)


# --------------------------------------------------------------------------
# Data and implementations
# --------------------------------------------------------------------------


def make_data(n: int, d: int, k: int, seed: int):
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d), dtype=np.float32)
    labels = rng.permutation(np.arange(n, dtype=np.int64) // k)
    return x, labels


def build_case(impl: str, x, labels):
    """Return ``(call, summarise)``: ``call()`` runs one timed iteration and
    returns its raw result; ``summarise(result)`` (untimed) returns a dict of
    check values."""
    if impl in ("tc_batch_hard", "mem_batch_hard", "tc_loss", "mem_batch_all"):
        return _tripletcore_case(impl, x, labels)
    if impl == "np_matmul":

        def call():
            return x @ x.T

        return call, lambda r: {}

    if impl in ("torch_mine", "torch_loss"):
        return _torch_case(impl, x, labels)
    if impl == "pml_loss":
        return _pml_case(x, labels)
    raise ValueError(f"unknown implementation {impl!r}")


def _tripletcore_case(impl: str, x, labels):
    import numpy as np

    import tripletcore as tc

    if impl in ("tc_batch_hard", "mem_batch_hard"):

        def call():
            return tc.batch_hard(x, labels)

        def summarise(r):
            return {
                "sum_pos_dist": float(np.sum(r.pos_dist, dtype=np.float64)),
                "sum_neg_dist": float(np.sum(r.neg_dist, dtype=np.float64)),
            }

        return call, summarise

    if impl in ("tc_loss", "mem_batch_all"):
        mining = "batch_all" if impl == "mem_batch_all" else "batch_hard"

        def call():
            return tc.triplet_margin_loss(x, labels, margin=MARGIN, mining=mining)

        def summarise(r):
            loss, grad = r
            out = {"loss": float(loss), "grad_norm": float(np.linalg.norm(grad))}
            if impl == "tc_loss":  # PML's default reducer is AvgNonZero
                loss_nz, grad_nz = tc.triplet_margin_loss(
                    x, labels, margin=MARGIN, mining="batch_hard", reduction="mean_nonzero"
                )
                out["loss_nz"] = float(loss_nz)
                out["grad_norm_nz"] = float(np.linalg.norm(grad_nz))
            return out

        return call, summarise

    raise ValueError(f"unknown implementation {impl!r}")


def _torch_case(impl: str, x, labels):
    """Mining (and the loss) written in plain torch with an N x N matrix."""
    import torch

    xt = torch.from_numpy(x)
    lt = torch.from_numpy(labels)

    n = x.shape[0]

    def mine(emb):
        dist = torch.cdist(emb, emb)
        same = lt[:, None] == lt[None, :]
        pos = same & ~torch.eye(n, dtype=torch.bool)
        d_ap, p_idx = dist.masked_fill(~pos, float("-inf")).max(dim=1)
        d_an, n_idx = dist.masked_fill(same, float("inf")).min(dim=1)
        valid = pos.any(dim=1) & ~same.all(dim=1)
        return d_ap, d_an, p_idx, n_idx, valid

    if impl == "torch_mine":

        def call():
            with torch.no_grad():
                return mine(xt)

        def summarise(r):
            d_ap, d_an, _, _, _ = r
            return {
                "sum_pos_dist": float(d_ap.double().sum()),
                "sum_neg_dist": float(d_an.double().sum()),
            }

        return call, summarise

    xg = xt.clone().requires_grad_(True)

    def call():
        xg.grad = None
        d_ap, d_an, _, _, valid = mine(xg)
        loss = torch.relu(d_ap - d_an + MARGIN)[valid].mean()
        loss.backward()
        return loss.detach(), xg.grad

    def summarise(r):
        return {"loss": float(r[0]), "grad_norm": float(r[1].norm())}

    return call, summarise


def _pml_case(x, labels):
    """pytorch-metric-learning's batch-hard miner and triplet margin loss."""
    import torch

    xt = torch.from_numpy(x)
    lt = torch.from_numpy(labels)

    from pytorch_metric_learning.distances import LpDistance
    from pytorch_metric_learning.losses import TripletMarginLoss
    from pytorch_metric_learning.miners import BatchHardMiner

    miner = BatchHardMiner(distance=LpDistance(normalize_embeddings=False))
    loss_fn = TripletMarginLoss(margin=MARGIN, distance=LpDistance(normalize_embeddings=False))
    xg = xt.clone().requires_grad_(True)

    def call():
        xg.grad = None
        triplets = miner(xg, lt)
        loss = loss_fn(xg, lt, triplets)
        loss.backward()
        return loss.detach(), xg.grad

    def summarise(r):
        return {"loss": float(r[0]), "grad_norm": float(r[1].norm())}

    return call, summarise


def worker(spec: dict) -> dict:
    """Run one (implementation, size) case in this (fresh) process."""
    impl, n, d = spec["impl"], spec["n"], spec["d"]
    peak = PeakRSS()
    # Tiny call first: thread pools, lazily loaded kernels, autograd engine.
    xs, ls = make_data(min(64, n), d, spec["k"], spec["seed"] + 1)
    call, _ = build_case(impl, xs, ls)
    call()
    del xs, ls, call
    x, labels = make_data(n, d, spec["k"], spec["seed"])
    call, summarise = build_case(impl, x, labels)
    peak.reset()
    result = None
    t0 = time.perf_counter()
    for _ in range(spec["warmup"]):
        call()
    t_warm = (time.perf_counter() - t0) / max(1, spec["warmup"])
    repeats = spec["repeats"]
    if spec["warmup"] and t_warm * repeats > spec["budget"]:
        repeats = max(min(3, repeats), int(spec["budget"] // t_warm))
    times = []
    for i in range(repeats):
        t0 = time.perf_counter()
        r = call()
        times.append(time.perf_counter() - t0)
        if i == repeats - 1:
            result = r
        del r
    peak_inc = peak.increase()
    out = {
        "times": times,
        "median": statistics.median(times),
        "peak_bytes": peak_inc,
        "peak_method": peak.method,
    }
    out.update(summarise(result))
    return out


# --------------------------------------------------------------------------
# Correctness check against a float64 NumPy reference (parent process)
# --------------------------------------------------------------------------


def _ref_dist(x):
    import numpy as np
    from scipy.spatial.distance import cdist

    x64 = np.asarray(x, dtype=np.float64)
    return x64, cdist(x64, x64)


def _grad_from_weights(x64, dist, w):
    """Gradient of sum_ij w_ij * ||x_i - x_j|| (0 where the distance is 0)."""
    import numpy as np

    g = np.divide(w, dist, out=np.zeros_like(w), where=dist > 0)
    return (g.sum(1)[:, None] * x64 - g @ x64) + (g.sum(0)[:, None] * x64 - g.T @ x64)


def _ref_batch_hard(x, labels):
    import numpy as np

    x64, dist = _ref_dist(x)
    n = len(labels)
    same = labels[:, None] == labels[None, :]
    pos = same & ~np.eye(n, dtype=bool)
    dp = np.where(pos, dist, -np.inf)
    dn = np.where(same, np.inf, dist)
    p_idx, n_idx = dp.argmax(1), dn.argmin(1)  # first index on ties
    rows = np.arange(n)
    return x64, dist, p_idx, dist[rows, p_idx], n_idx, dist[rows, n_idx]


def _ref_loss_batch_hard(x, labels, margin):
    import numpy as np

    x64, dist, p_idx, d_ap, n_idx, d_an = _ref_batch_hard(x, labels)
    n = len(labels)
    losses = np.maximum(d_ap - d_an + margin, 0.0)
    w = np.zeros((n, n))
    active = losses > 0
    rows = np.arange(n)[active]
    np.add.at(w, (rows, p_idx[active]), 1.0 / n)
    np.add.at(w, (rows, n_idx[active]), -1.0 / n)
    return losses.mean(), _grad_from_weights(x64, dist, w)


def _ref_loss_batch_all(x, labels, margin):
    import numpy as np

    x64, dist = _ref_dist(x)
    n = len(labels)
    w = np.zeros((n, n))
    total, count = 0.0, 0
    for a in range(n):
        same = labels == labels[a]
        p = np.flatnonzero(same & (np.arange(n) != a))
        q = np.flatnonzero(~same)
        lo = dist[a, p][:, None] - dist[a, q][None, :] + margin
        act = lo > 0
        total += lo[act].sum()
        count += lo.size
        w[a, p] += act.sum(1)
        w[a, q] -= act.sum(0)
    return total / count, _grad_from_weights(x64, dist, w / count)


def run_checks(dim: int, k: int, seed: int) -> list[str]:
    """Compare tripletcore with the float64 reference; return report lines."""
    import numpy as np

    import tripletcore as tc

    lines = []

    def rel(a, b):
        a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))

    def record(name, ok, detail):
        lines.append(f"- {'OK' if ok else '**MISMATCH**'} {name}: {detail}")

    def guarded(name, fn):
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - any library failure is reported
            record(name, False, f"raised {type(exc).__name__}: {exc}")

    x, labels = make_data(1024, dim, k, seed + 7)

    def check_batch_hard():
        r = tc.batch_hard(x, labels)
        _, _, p_idx, d_ap, n_idx, d_an = _ref_batch_hard(x, labels)
        bad_p = int(np.sum(np.asarray(r.pos_idx) != p_idx))
        bad_n = int(np.sum(np.asarray(r.neg_idx) != n_idx))
        e = max(rel(r.pos_dist, d_ap), rel(r.neg_dist, d_an))
        ok = bad_p == 0 and bad_n == 0 and e < 1e-6
        record(
            f"batch_hard N=1024 d={dim} vs float64 scipy",
            ok,
            f"{bad_p} pos / {bad_n} neg index differences, distance rel. err {e:.1e}",
        )

    def check_loss(mining, n_small, ref):
        xs, ls = (x, labels) if n_small == 1024 else make_data(n_small, dim, k, seed + 8)
        loss, grad = tc.triplet_margin_loss(xs, ls, margin=MARGIN, mining=mining)
        ref_loss, ref_grad = ref(xs, ls, MARGIN)
        el, eg = abs(loss - ref_loss) / abs(ref_loss), rel(grad, ref_grad)
        record(
            f'triplet_margin_loss(mining="{mining}") N={n_small} d={dim} vs float64 NumPy',
            el < 1e-5 and eg < 1e-4,
            f"loss {loss:.7g} (ref {ref_loss:.7g}, rel. err {el:.1e}), grad rel. err {eg:.1e}",
        )

    guarded("batch_hard", check_batch_hard)
    guarded("loss batch_hard", lambda: check_loss("batch_hard", 1024, _ref_loss_batch_hard))
    guarded("loss batch_all", lambda: check_loss("batch_all", 256, _ref_loss_batch_all))
    return lines


# --------------------------------------------------------------------------
# Parent: orchestration and report
# --------------------------------------------------------------------------


@dataclass
class Case:
    impl: str
    n: int
    d: int
    status: str = "pending"  # ok | skipped | failed
    note: str = ""
    result: dict = field(default_factory=dict)


def run_worker(spec: dict, timeout: float) -> tuple[str, str, dict]:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(spec)]
    try:
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "failed", f"timeout after {timeout:.0f} s", {}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_TAG):
            return "ok", "", json.loads(line[len(RESULT_TAG) :])
    if proc.returncode < 0:
        try:
            name = signal.Signals(-proc.returncode).name
        except ValueError:
            name = str(-proc.returncode)
        why = f"killed by {name}" + (" (out of memory?)" if name == "SIGKILL" else "")
    else:
        why = f"exit code {proc.returncode}"
    err = [ln.strip() for ln in proc.stderr.splitlines() if ln.strip()]
    last = err[-1].replace("|", "/")[:200] if err else ""
    return "failed", f"crashed, {why}" + (f": {last}" if last else ""), {}


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    if sys.platform == "darwin":
        try:
            return subprocess.run(
                ["sysctl", "-n", "machdep.cpu.brand_string"],
                check=False,
                capture_output=True,
                text=True,
            ).stdout.strip()
        except OSError:
            pass
    return platform.processor() or "unknown"


def physical_cores() -> int | None:
    try:
        cores = set()
        phys = None
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("physical id"):
                    phys = line.split(":")[1].strip()
                elif line.startswith("core id"):
                    cores.add((phys, line.split(":")[1].strip()))
        return len(cores) or None
    except OSError:
        return None


def meminfo_bytes(key: str) -> int | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def header_lines(args, max_gb: float) -> list[str]:
    import numpy as np

    blas_cfg = np.show_config(mode="dicts").get("Build Dependencies", {}).get("blas", {})
    blas = f"{blas_cfg.get('name', '?')} {blas_cfg.get('version', '')}".strip()
    try:
        import torch

        torch_threads = f"{torch.get_num_threads()} threads, default"
    except ImportError:
        torch_threads = "not importable"
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    total = meminfo_bytes("MemTotal")
    now = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    try:
        load = os.getloadavg()[0]
        busy = " (**busy: other work may disturb the timings**)" if load > 0.5 else ""
        load_text = f"; 1-min load average at start {load:.2f}{busy}"
    except (AttributeError, OSError):
        load_text = ""
    return [
        "# tripletcore foundation benchmark",
        "",
        f"- date: {now}{load_text}",
        (
            f"- CPU: {cpu_model()}; {os.cpu_count()} logical CPUs "
            f"({physical_cores() or '?'} physical cores), {usable} usable here"
        ),
        f"- memory: {total / GB:.1f} GB total" if total else "- memory: unknown",
        f"- OS: {platform.platform()}; Python {platform.python_version()}",
        (
            f"- versions: tripletcore {version('tripletcore')}, "
            f"numpy {np.__version__} (BLAS: {blas}), "
            f"torch {version('torch')} ({torch_threads}), "
            f"pytorch-metric-learning {version('pytorch-metric-learning')}, "
            f"scipy {version('scipy')}"
        ),
        (
            f"- data: float32 X ~ N(0,1), seed {args.seed}; labels arange(N) // "
            f"{args.k}, shuffled ({args.k} per class); margin {MARGIN}; euclidean"
        ),
        (
            f"- timing: {args.warmup} warm-up call(s), then the median of "
            f"{args.repeats} timed calls (cut, to no fewer than 3, where they would "
            f"take over {args.case_budget:g} s); each case in a fresh subprocess"
        ),
        (
            "- GFLOP/s = 2*N^2*d / median time (the Gram-matrix flops, the same "
            "count for every implementation); speed-up = peer time / tripletcore time"
        ),
        (
            "- peak ΔRSS = peak resident memory during the calls minus the RSS after "
            "imports, data creation and one tiny (N = 64) call"
        ),
        (
            "- peers skipped where their estimated peak (bytes per pair x N^2) "
            f"exceeds: PML {args.pml_max_gb:g} GB, others {max_gb:g} GB"
        ),
    ]


def fmt_time(t: float) -> str:
    if t < 1e-3:
        return f"{t * 1e6:.0f} µs"
    if t < 1:
        return f"{t * 1e3:.1f} ms"
    return f"{t:.2f} s"


def fmt_mb(b: float) -> str:
    return f"{b / MB:,.0f}" if b >= 10 * MB else f"{b / MB:.1f}"


def results_table(cases: list[Case]) -> list[str]:
    by_key = {(c.impl, c.n, c.d): c for c in cases}
    lines = [
        (
            "| N | d | implementation | computes | median | min | reps | GFLOP/s "
            "| peak ΔRSS (MB) | tc.batch_hard speed-up | tc.loss speed-up |"
        ),
        "|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in cases:
        label, what = IMPLS[c.impl]
        if c.status != "ok":
            lines.append(f"| {c.n} | {c.d} | {label} | {what} | {c.status}: {c.note} | | | | | | |")
            continue
        t = c.result["median"]
        gflops = 2.0 * c.n * c.n * c.d / t / 1e9
        ups = []
        for tc_key in ("tc_batch_hard", "tc_loss"):
            ref = by_key.get((tc_key, c.n, c.d))
            if tc_key in PEER_OF.get(c.impl, ()) and ref and ref.status == "ok":
                ups.append(f"{t / ref.result['median']:.2f}x")
            else:
                ups.append("")
        lines.append(
            f"| {c.n} | {c.d} | {label} | {what} | {fmt_time(t)} "
            f"| {fmt_time(min(c.result['times']))} "
            f"| {len(c.result['times'])} "
            f"| {gflops:.1f} | {fmt_mb(c.result['peak_bytes'])} | {ups[0]} | {ups[1]} |"
        )
    return lines


def consistency_lines(cases: list[Case], tol: float) -> list[str]:
    """Cross-check the implementations' outputs at each size."""
    by_key = {(c.impl, c.n, c.d): c.result for c in cases if c.status == "ok"}
    sizes = sorted({(c.n, c.d) for c in cases})
    lines = []
    pairs = (
        ("tc_loss", "loss", "torch_loss", "loss", "loss (mean) tc vs torch"),
        ("tc_loss", "grad_norm", "torch_loss", "grad_norm", "|grad| tc vs torch"),
        ("tc_loss", "loss_nz", "pml_loss", "loss", "loss (mean_nonzero) tc vs PML"),
        ("tc_loss", "grad_norm_nz", "pml_loss", "grad_norm", "|grad| (mean_nonzero) tc vs PML"),
        ("tc_batch_hard", "sum_pos_dist", "torch_mine", "sum_pos_dist", "Σ d_ap tc vs torch"),
        ("tc_batch_hard", "sum_neg_dist", "torch_mine", "sum_neg_dist", "Σ d_an tc vs torch"),
    )
    for n, d in sizes:
        parts, bad = [], False
        for ka, fa, kb, fb, name in pairs:
            a, b = by_key.get((ka, n, d), {}).get(fa), by_key.get((kb, n, d), {}).get(fb)
            if a is None or b is None:
                continue
            err = abs(a - b) / max(abs(b), 1e-30)
            bad |= not err <= tol
            parts.append(f"{name} {err:.1e}" + ("" if err <= tol else " **MISMATCH**"))
        if parts:
            lines.append(f"- N={n} d={d}: {'OK' if not bad else 'MISMATCH'} ({'; '.join(parts)})")
    return lines


def memory_section(args, progress) -> list[str]:
    lines = [
        "## Memory mode",
        "",
        f"One call each, in a fresh subprocess; target: peak ΔRSS < {MEMORY_TARGET_MB:.0f} MB.",
        "",
        "| call | N | d | time | peak ΔRSS (MB) | target |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for key, n, d, desc in MEMORY_CASES:
        progress.set_description(f"memory {desc} N={n}")
        spec = {
            "impl": key,
            "n": n,
            "d": d,
            "k": args.k,
            "seed": args.seed,
            "warmup": 0,
            "repeats": 1,
            "budget": 1e9,
        }
        status, note, res = run_worker(spec, args.timeout)
        progress.update(1)
        if status != "ok":
            lines.append(f"| {desc} | {n} | {d} | {status}: {note} | | |")
            continue
        peak_mb = res["peak_bytes"] / MB
        verdict = "pass" if peak_mb < MEMORY_TARGET_MB else "**FAIL**"
        lines.append(
            f"| {desc} | {n} | {d} | {fmt_time(res['median'])} | {peak_mb:,.1f} | {verdict} |"
        )
    return lines


def parse_ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers: {text!r}") from exc
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers: {text!r}")
    return values


def parse_impls(text: str) -> list[str]:
    values = [v for v in text.replace(" ", "").split(",") if v]
    unknown = sorted(set(values) - set(IMPLS))
    if unknown or not values:
        raise argparse.ArgumentTypeError(
            f"unknown implementation(s) {unknown}; choose from {', '.join(IMPLS)}"
        )
    return [k for k in IMPLS if k in values]


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n\n".join((__doc__ or "").split("\n\n")[1:]),
    )
    ap.add_argument(
        "--quick",
        action="store_true",
        help="small subset: N in {1024, 4096}, d = 128 (sizes/dims override)",
    )
    ap.add_argument("--sizes", type=parse_ints, help="comma-separated N (default 1024,8192,32768)")
    ap.add_argument("--dims", type=parse_ints, help="comma-separated d (default 64,128,512)")
    ap.add_argument(
        "--impls",
        type=parse_impls,
        default=list(IMPLS),
        help=f"comma-separated subset of: {', '.join(IMPLS)} (default all)",
    )
    ap.add_argument("--k", type=int, default=4, help="samples per class (default 4)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=5, help="timed calls per case (default 5)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed calls per case (default 1)")
    ap.add_argument(
        "--case-budget",
        type=float,
        default=60.0,
        help="seconds of timed calls per case before repeats are cut (min 3)",
    )
    ap.add_argument(
        "--timeout",
        type=float,
        default=3600.0,
        help="seconds before a case's subprocess is killed (default 3600)",
    )
    ap.add_argument(
        "--pml-max-gb",
        type=float,
        default=8.0,
        help="skip PML when its estimated peak exceeds this (default 8)",
    )
    ap.add_argument(
        "--max-gb",
        type=float,
        default=None,
        help="skip other all-pairs peers above this estimated peak "
        "(default 80%% of available memory)",
    )
    ap.add_argument(
        "--tol",
        type=float,
        default=1e-3,
        help="relative tolerance of the cross-checks (default 1e-3)",
    )
    mem = ap.add_mutually_exclusive_group()
    mem.add_argument("--memory", action="store_true", help="run only the memory mode")
    mem.add_argument("--no-memory", action="store_true", help="skip the memory mode")
    ap.add_argument("--no-check", action="store_true", help="skip the correctness check")
    ap.add_argument("--out", help="also write the markdown report to this file")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    return ap


def plan_cases(args, sizes: list[int], dims: list[int], max_gb: float) -> list[Case]:
    """Every (implementation, N, d) case; all-pairs peers whose estimated
    peak exceeds their limit are marked skipped."""
    cases: list[Case] = []
    for n in sizes:
        for d in dims:
            for impl in args.impls:
                c = Case(impl, n, d)
                per_pair = BYTES_PER_PAIR.get(impl)
                if per_pair is not None:
                    est = per_pair * n * n / GB
                    limit = args.pml_max_gb if impl == "pml_loss" else max_gb
                    if est > limit:
                        c.status = "skipped"
                        c.note = f"too large (est. {est:.3g} GB > {limit:g} GB)"
                cases.append(c)
    return cases


def run_cases(cases: list[Case], args, progress) -> None:
    """Each pending case in its own subprocess; fills in status, note, result."""
    for c in cases:
        if c.status != "pending":
            continue
        progress.set_description(f"{c.impl} N={c.n} d={c.d}")
        spec = {
            "impl": c.impl,
            "n": c.n,
            "d": c.d,
            "k": args.k,
            "seed": args.seed,
            "warmup": args.warmup,
            "repeats": args.repeats,
            "budget": args.case_budget,
        }
        c.status, c.note, c.result = run_worker(spec, args.timeout)
        progress.update(1)


def results_section(cases: list[Case], tol: float) -> list[str]:
    """The results table and the cross-checks (empty without cases)."""
    if not cases:
        return []
    report: list[str] = []
    methods = {c.result.get("peak_method") for c in cases if c.status == "ok"}
    report += ["", "## Results", "", *results_table(cases), ""]
    if methods - {"VmHWM"}:
        report.append(f"(peak memory method: {', '.join(sorted(m for m in methods if m))})")
    cons = consistency_lines(cases, tol)
    if cons:
        report += [
            "",
            f"## Cross-checks (relative differences, tolerance {tol:g})",
            "",
            *cons,
        ]
    return report


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)

    if args.worker:  # an exception here crashes the worker; the parent reports it
        print(RESULT_TAG + json.dumps(worker(json.loads(args.worker))), flush=True)
        return 0

    from tqdm import tqdm

    sizes = args.sizes or ([1024, 4096] if args.quick else [1024, 8192, 32768])
    dims = args.dims or ([128] if args.quick else [64, 128, 512])
    max_gb = args.max_gb
    if max_gb is None:
        avail = meminfo_bytes("MemAvailable")
        max_gb = round(0.8 * avail / GB, 1) if avail else 16.0

    report = header_lines(args, max_gb)
    try:
        import tripletcore  # noqa: F401

        tc_ok = True
    except ImportError as exc:
        tc_ok = False
        report += ["", f"**tripletcore is not importable ({exc}); its cases fail.**"]

    cases = [] if args.memory else plan_cases(args, sizes, dims, max_gb)

    n_runs = sum(c.status == "pending" for c in cases)
    do_memory = not args.no_memory
    total = n_runs + (len(MEMORY_CASES) if do_memory else 0) + (tc_ok and not args.no_check)
    progress = tqdm(total=total, file=sys.stderr, unit="case", dynamic_ncols=True)

    check_lines: list[str] = []
    if tc_ok and not args.no_check:
        progress.set_description("correctness check")
        check_lines = run_checks(dims[0], args.k, args.seed)
        progress.update(1)

    run_cases(cases, args, progress)

    report += results_section(cases, args.tol)
    if check_lines:
        report += ["", "## Correctness check (tripletcore vs float64 reference)", "", *check_lines]
    if do_memory:
        report += ["", *memory_section(args, progress)]
    progress.close()

    text = "\n".join(report) + "\n"
    sys.stdout.write(text)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
