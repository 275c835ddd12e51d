#!/usr/bin/env python
"""The tiled torch path (the CUDA path) at a batch whose N x N matrix cannot fit.

One training step (batch-hard mining + loss + ``backward()``) through
``backend="torch"``, float32, d = 128, P x K labels (K = 4). Reports the
time, the peak memory above what was held before the step, and the size of
the float32 N x N matrix that the tiles never form.

On CUDA the peak is ``torch.cuda.max_memory_allocated``; on the CPU it is
the growth of the process's peak resident set (``ru_maxrss``), which counts
every allocation (torch's, Python's), so it is an upper bound on the step's
own. The default N = 262,144 is the size the CUDA path must handle on one
80 GB GPU (its float32 N x N matrix is 275 GB).

Examples::

    python benches/bench_tiled_memory.py                    # CPU, N = 262,144
    python benches/bench_tiled_memory.py --device cuda
    python benches/bench_tiled_memory.py --n 32768 --mining batch_all
"""

from __future__ import annotations

import argparse
import datetime
import resource
import sys
import time

import numpy as np
import torch

import tripletcore.torch as tt

DIM = 128
GB = 1e9


def peak_rss_bytes() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024.0  # KiB on Linux


def main(argv: list[str] | None = None) -> str:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=262_144)
    p.add_argument("--device", default="cpu")
    p.add_argument("--mining", default="batch_hard", choices=("batch_hard", "semi_hard"))
    p.add_argument("--out", help="also write the report to this file")
    args = p.parse_args(argv)
    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA device available")

    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal((args.n, DIM), dtype=np.float32)).to(args.device)
    x.requires_grad_()
    y = torch.from_numpy(rng.permutation(np.arange(args.n) // 4)).to(args.device)

    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = float(torch.cuda.memory_allocated())
    else:
        base = peak_rss_bytes()
    t = time.perf_counter()
    loss = tt.triplet_margin_loss(x, y, margin=0.2, mining=args.mining, backend="torch")
    loss.backward()
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t
    peak = (torch.cuda.max_memory_allocated() if cuda else peak_rss_bytes()) - base
    assert x.grad is not None and bool(torch.isfinite(x.grad).all())

    full = 4.0 * args.n * args.n
    what = "max_memory_allocated" if cuda else "growth of peak RSS"
    lines = [
        "# tripletcore.torch tiled path: one step at large N",
        "",
        f"- date: {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}",
        f"- command: `python {' '.join(sys.argv)}`",
        f"- device: {args.device}; torch {torch.__version__} ({torch.get_num_threads()} threads)",
        f"- N = {args.n:,}, d = {DIM}, float32, {args.mining}, labels arange(N) // 4 shuffled",
        "",
        f"- step (mine + loss + backward): {seconds:.1f} s; loss {float(loss.detach()):.6f}",
        f"- peak memory above the inputs ({what}): {peak / GB:.2f} GB",
        f"- a float32 N x N matrix would take {full / GB:.0f} GB "
        f"({peak / full:.2%} of it was used)",
    ]
    report = "\n".join(lines) + "\n"
    print(report)
    if args.out:
        with open(args.out, "w") as f:
            f.write(report)
    return report


if __name__ == "__main__":
    main()
