"""The ``tripletcore`` command line (also ``python -m tripletcore``).

    tripletcore demo [--quick] [--mining ...] [--out DIR [--force]]
    tripletcore analyze EMBEDDINGS.npy LABELS.npy [--compare OTHER.npy] [--json]
                        [--plots DIR [--force]]

Output folders are never overwritten silently: one that is not empty is used
only with ``--force``, else a fresh numbered sibling (``DIR-1``, ``DIR-2``...).

Errors the user can fix are reported as one line, ``tripletcore: error: ...``,
on stderr with exit status 2 (1 for anything unexpected), never a traceback
(set ``TRIPLETCORE_DEBUG=1`` to see one).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import numpy.typing as npt

from .cli_checks import OVERWRITE_HELP, FlagError, check_range, check_seed, output_folder

PROG = "tripletcore"


class UsageError(Exception):
    """Bad input: reported as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse prints the usage block before its error; we keep one line."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: X)" to every option's help that has a default to show."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default is None or action.default is False or "default" in text:
            return text
        return super()._get_help_string(action) or text


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Exact triplet mining, losses and embedding geometry (tripletcore).",
    )
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    _add_demo_command(sub)
    _add_analyze_command(sub)
    return parser


def _add_demo_command(sub: argparse._SubParsersAction[_Parser]) -> None:
    demo = sub.add_parser(
        "demo",
        help="train an embedding of handwritten digits with batch-hard triplet loss",
        description="Train a small MLP on scikit-learn's digits with a triplet loss from "
        "tripletcore.torch; print Recall@1 / MAP@R before and after and the collapse "
        "diagnostics as it trains; write a report folder (plots, summary.md, summary.json).",
        formatter_class=_HelpFormatter,
    )
    demo.add_argument(
        "--dataset",
        choices=("digits", "glyphs"),
        default="digits",
        help="digits (default) or glyphs: rendered DejaVu glyphs, a small CNN trained on half "
        "the classes and measured on the unseen half (default 4 epochs, a few minutes; "
        "--quick: 100 classes, under a minute; docs/glyphs.md)",
    )
    demo.add_argument(
        "--mining",
        choices=("batch_hard", "semi_hard", "batch_all"),
        default="batch_hard",
        help="how the loss picks its triplets",
    )
    demo.add_argument(
        "--batch-size",
        type=int,
        default=80,
        metavar="B",
        help="rows per P x K batch (P = min(10, B/2) classes), 4 to the training images",
    )
    demo.add_argument(
        "--embedding-dim", type=int, default=32, metavar="D", help="embedding dimension (1-4096)"
    )
    demo.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="passes over the training images (default 800, about a minute on 2 cores; --quick: 6)",
    )
    demo.add_argument(
        "--steps", type=int, default=None, help="training steps; overrides --epochs (no default)"
    )
    demo.add_argument(
        "--eval-every",
        type=float,
        default=None,
        metavar="EPOCHS",
        help="epochs between test-set evaluations (default: about 32 in all)",
    )
    demo.add_argument("--margin", type=float, default=0.2, help="triplet loss margin (0-100)")
    demo.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (0-10)")
    demo.add_argument("--hidden", type=int, default=256, help="hidden layer width (1-16384)")
    demo.add_argument(
        "--seed", type=int, default=0, help="seed of the split, the batches and the network"
    )
    demo.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads, at most the CPUs (1: the MLP is small; the loss kernels use "
        "all cores)",
    )
    demo.add_argument(
        "--out",
        type=Path,
        default=Path("tripletcore-demo-report"),
        metavar="DIR",
        help=f"report folder; {OVERWRITE_HELP}",
    )
    demo.add_argument(
        "--force", action="store_true", help="write into --out even if it is not empty (overwrite)"
    )
    demo.add_argument(
        "--quick", action="store_true", help="a few seconds: 6 epochs (for tests and a first look)"
    )
    demo.add_argument("--no-progress", action="store_true", help="no progress bar")


def _add_analyze_command(sub: argparse._SubParsersAction[_Parser]) -> None:
    an = sub.add_parser(
        "analyze",
        formatter_class=_HelpFormatter,
        help="retrieval metrics, Triplet-Separation and collapse indicators of an embedding",
        description="Analyse a labelled embedding saved with numpy.save: retrieval metrics, "
        "whether it is Triplet-Separated and its hardest triplet, bounds on its distance to "
        "the Triplet-Separated set, collapse indicators; optionally the class Hausdorff "
        "distance and isometric error against another embedding of the same points.",
    )
    an.add_argument("embeddings", type=Path, metavar="EMBEDDINGS.npy", help="(N, d) array")
    an.add_argument("labels", type=Path, metavar="LABELS.npy", help="(N,) integer array")
    an.add_argument(
        "--compare",
        type=Path,
        metavar="OTHER.npy",
        help="another embedding (N, d') of the same points",
    )
    an.add_argument("--json", action="store_true", help="machine-readable output")
    an.add_argument(
        "--plots", type=Path, metavar="DIR", help=f"write PNG plots to DIR; {OVERWRITE_HELP}"
    )
    an.add_argument(
        "--force", action="store_true", help="write into --plots even if it is not empty"
    )
    an.add_argument("--no-progress", action="store_true", help="no progress bar")
    an.add_argument(
        "--no-bounds",
        action="store_true",
        help="skip the certified bounds to the Triplet-Separated set",
    )
    an.add_argument(
        "--bounds-sample",
        type=int,
        metavar="M",
        help="compute those bounds on a random subsample of M points "
        "(by default only when N <= 100: they cost O(steps N^2 d))",
    )
    an.add_argument(
        "--bounds-steps",
        type=int,
        default=1500,
        metavar="S",
        help="optimiser steps of the upper bounds (0-1000000)",
    )
    an.add_argument(
        "--thickness",
        choices=("auto", "on", "off"),
        default="auto",
        help="thickness (minimum width): auto computes it for d <= 8 only",
    )
    an.add_argument("--margin", type=float, default=0.2, help="margin of the at-margin indicator")
    an.add_argument("--seed", type=int, default=0, help="seed of the subsample and the bounds")


# ---------------------------------------------------------------- input checks


def load_array(path: Path, what: str) -> npt.NDArray[Any]:
    if not path.exists():
        raise UsageError(f"{what} file '{path}' does not exist")
    if path.is_dir():
        raise UsageError(f"{what} '{path}' is a folder, expected a .npy file")
    try:
        with path.open("rb") as f:
            magic = f.read(6)
        # np.load would take any other file for a pickle and say so, which misleads
        if magic != b"\x93NUMPY" and not magic.startswith(b"PK"):
            raise UsageError(f"{what} '{path}' is not a NumPy .npy file (save it with numpy.save)")
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise UsageError(f"cannot read {what} '{path}' as a NumPy .npy file ({e})") from None
    if not isinstance(arr, np.ndarray):
        arr.close()
        raise UsageError(f"{what} '{path}' is an .npz archive; save one array with numpy.save")
    return arr


def check_embeddings(arr: npt.NDArray[Any], path: Path, what: str) -> npt.NDArray[np.float64]:
    if arr.dtype.kind not in "biuf":
        raise UsageError(f"{what} '{path}' must be numeric, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise UsageError(f"{what} '{path}' must be 2-D (N, d), got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise UsageError(f"{what} '{path}' is empty (shape {arr.shape})")
    x = np.asarray(arr, dtype=np.float64)
    bad = ~np.isfinite(x)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise UsageError(
            f"{what} '{path}' has {int(bad.sum())} NaN or infinite values "
            f"(first at row {r}, column {c})"
        )
    return x


def check_labels(arr: npt.NDArray[Any], path: Path, rows: int) -> npt.NDArray[np.int64]:
    if arr.dtype.kind not in "iu":
        if arr.dtype.kind == "f" and arr.size and np.all(np.isfinite(arr)):
            hint = " (round and cast them: labels.astype(int))"
            hint = hint if np.all(arr == np.round(arr)) else ""
        else:
            hint = ""
        raise UsageError(f"labels '{path}' must be integers, got dtype {arr.dtype}{hint}")
    if arr.ndim != 1:
        raise UsageError(f"labels '{path}' must be 1-D (N,), got shape {arr.shape}")
    if arr.shape[0] != rows:
        raise UsageError(
            f"labels '{path}' has {arr.shape[0]} entries but the embeddings have {rows} rows"
        )
    if arr.dtype.kind == "u" and arr.size and int(arr.max()) > np.iinfo(np.int64).max:
        _, codes = np.unique(arr, return_inverse=True)  # keep equal labels equal
        return codes.astype(np.int64)
    return arr.astype(np.int64)


# ---------------------------------------------------------------- commands


def cmd_analyze(args: argparse.Namespace) -> int:
    from . import analysis

    x = check_embeddings(load_array(args.embeddings, "embeddings"), args.embeddings, "embeddings")
    labels = check_labels(load_array(args.labels, "labels"), args.labels, x.shape[0])
    if not analysis.has_triplet(labels):
        raise UsageError(
            "the labels give no triplet: they need two or more classes, one of them with "
            "at least two points"
        )
    other = None
    if args.compare is not None:
        other = check_embeddings(load_array(args.compare, "--compare"), args.compare, "--compare")
        if other.shape[0] != x.shape[0]:
            raise UsageError(
                f"--compare '{args.compare}' has {other.shape[0]} rows but the embeddings "
                f"have {x.shape[0]}: it must embed the same points"
            )
    try:
        check_range("--bounds-sample", args.bounds_sample, 4, math.inf)
        check_range("--bounds-steps", args.bounds_steps, 0, 1_000_000)
        check_range("--margin", args.margin, 0, math.inf)
        check_seed("--seed", args.seed)
        plots = None
        if args.plots is not None:
            plots, note = output_folder(args.plots, "--plots", args.force)
            if note:
                print(f"{PROG}: {note}", file=sys.stderr)
    except FlagError as e:
        raise UsageError(str(e)) from None

    t0 = time.perf_counter()
    result = analysis.analyze(
        x,
        labels,
        other=other,
        bounds=not args.no_bounds,
        bounds_sample=args.bounds_sample,
        bounds_steps=args.bounds_steps,
        thickness_mode=args.thickness,
        margin=args.margin,
        seed=args.seed,
        progress=not args.no_progress,
    )
    result["input"] = {
        "embeddings": str(args.embeddings),
        "labels": str(args.labels),
        "compare": None if args.compare is None else str(args.compare),
    }
    if plots is not None:
        from .analysis_plots import write_plots

        try:
            result["plots"] = write_plots(x, labels, result, plots)
        except OSError as e:
            raise UsageError(f"--plots '{plots}': cannot write the plots ({e})") from None
    result["seconds"] = time.perf_counter() - t0
    if args.json:
        print(json.dumps(analysis.json_safe(result), indent=2))
    else:
        print(analysis.format_text(result, str(args.embeddings)))
        if plots is not None:
            print(f"\nplots: {', '.join(result['plots'])}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from . import demo

    demo.set_thread_policy()  # before torch is imported
    glyphs = args.dataset == "glyphs"
    if glyphs:
        from . import demo_glyphs
    kw: dict[str, Any] = dict(demo.QUICK) if args.quick else {}
    if glyphs:
        kw = dict(demo_glyphs.QUICK if args.quick else demo_glyphs.DEFAULTS)
    if args.epochs is not None:
        kw["epochs"] = args.epochs
    if args.eval_every is not None:
        kw["eval_every"] = args.eval_every
    cfg = demo.DemoConfig(
        mining=args.mining,
        batch_size=args.batch_size,
        embedding_dim=args.embedding_dim,
        steps=args.steps,
        margin=args.margin,
        lr=args.lr,
        hidden=args.hidden,
        seed=args.seed,
        threads=args.threads,
        out=args.out,
        progress=not args.no_progress,
        **kw,
    )
    try:
        demo.check_config(cfg)  # every flag, before the folder is made
        cfg.out, note = output_folder(args.out, "--out", args.force)
        if note:
            print(f"{PROG}: {note}", file=sys.stderr)
        if glyphs:
            demo_glyphs.run_glyph_demo(cfg, quick=args.quick)
        else:
            demo.run_demo(cfg)
    except (demo.DemoError, FlagError) as e:
        raise UsageError(str(e)) from None
    except OSError as e:
        raise UsageError(f"--out '{cfg.out}': cannot write the report ({e})") from None
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (``sys.exit(main())``)."""
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 2
        if args.command == "demo":
            return cmd_demo(args)
        return cmd_analyze(args)
    except UsageError as e:
        return _fail(str(e), 2)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except (ValueError, TypeError) as e:  # the library's own input checks
        if os.environ.get("TRIPLETCORE_DEBUG"):
            raise
        return _fail(str(e), 2)
    except Exception as e:
        if os.environ.get("TRIPLETCORE_DEBUG"):
            raise
        return _fail(f"{type(e).__name__}: {e} (TRIPLETCORE_DEBUG=1 shows the traceback)", 1)


def _fail(message: str, status: int) -> int:
    one_line = " ".join(message.split())
    print(f"{PROG}: error: {one_line}", file=sys.stderr)
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
