"""``python -m tripletcore.torch.triton --compile 80,90``: compile every kernel ahead of time."""

from __future__ import annotations

import argparse
import os
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tripletcore.torch.triton")
    parser.add_argument(
        "--compile",
        metavar="ARCHS",
        required=True,
        help="comma-separated CUDA compute capabilities, e.g. 80,90",
    )
    parser.add_argument(
        "--only",
        metavar="TEXT",
        default="",
        help="compile only the variants whose name has TEXT (alternatives split by |)",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=os.cpu_count() or 1,
        help="compiler processes (default: the CPU count)",
    )
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be >= 1, got {args.jobs}")
    try:
        archs = [int(a) for a in args.compile.split(",") if a.strip()]
    except ValueError:
        parser.error(f"--compile takes integers like 80,90, got {args.compile!r}")
    if not archs:
        parser.error("--compile needs at least one architecture")
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        print("unset TRITON_INTERPRET: the interpreter replaces the kernels", file=sys.stderr)
        return 2
    from ._aot import compile_all

    try:
        reports = compile_all(archs, args.only, args.jobs)
    except Exception as e:  # any compiler failure is the CLI's answer
        print(f"compile failed: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    for r in reports:
        print(r.line())
    from ._aot import KNOWN_SPILLS

    spilled = [r for r in reports if r.spill_stores or r.spill_loads]
    for r in spilled:
        print(f"sm_{r.arch}  {r.name}: {KNOWN_SPILLS.get(r.name, 'no explanation: a defect')}")
    bad = [r for r in spilled if r.unexplained_spill()]
    print(
        f"{len(reports)} kernels compiled, {len(spilled)} with spills "
        f"({len(spilled) - len(bad)} explained)"
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
