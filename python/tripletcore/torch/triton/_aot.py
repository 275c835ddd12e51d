"""Ahead-of-time compilation of every kernel for given CUDA architectures.

``triton.compile`` with a ``GPUTarget`` needs no GPU: it lowers each kernel
to PTX and assembles it with the ptxas shipped in the Triton wheel. The
register count, spills and shared memory come from ``ptxas -v`` on the same
PTX (Triton reads them from the driver, which needs a GPU). Run it with
``TRITON_INTERPRET`` unset: the interpreter replaces the kernels.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Spills that are explained, and their bound: float64 kernels that call
# libdevice's double-precision square root, division, exp or log (euclidean
# distances, soft margins). The call convention saves registers to a small
# stack frame, although the kernel stays well under the register limit.
LIBDEVICE_CALLS = "float64 libdevice calls (sqrt, division, exp, log) save registers to the stack"
KNOWN_SPILLS = {
    "semi_screen[fp64,euc]": LIBDEVICE_CALLS,
    "ba_fwd[fp64,euc,hinge]": LIBDEVICE_CALLS,
    "ba_bwd[fp64,euc,hinge]": LIBDEVICE_CALLS,
    "ba_exact_bwd_settle[fp32,euc,soft]": LIBDEVICE_CALLS,
}
KNOWN_SPILL_BYTES = 64


@dataclass
class KernelReport:
    name: str
    arch: int
    registers: int
    spill_stores: int
    spill_loads: int
    shared_bytes: int

    def unexplained_spill(self) -> bool:
        """A spill that ``KNOWN_SPILLS`` does not explain, or one over its bound."""
        spilled = max(self.spill_stores, self.spill_loads)
        if not spilled:
            return False
        return self.name not in KNOWN_SPILLS or spilled > KNOWN_SPILL_BYTES

    def line(self) -> str:
        return (
            f"sm_{self.arch}  {self.name:48s} registers {self.registers:3d}  "
            f"spills {self.spill_stores}/{self.spill_loads} B (store/load)  "
            f"shared {self.shared_bytes} B"
        )


def _variants() -> list[tuple[str, Any, dict[str, str], dict[str, Any]]]:
    """(name, kernel, signature, constexprs) of every specialisation the backend launches."""
    from . import _kernels as k

    out = []
    for dtype in ("fp32", "fp64"):
        for cosine in (False, True):
            for has_self in (True, False):
                sig = {
                    **{p: f"*{dtype}" for p in ("zx_ptr", "zr_ptr", "nx_ptr", "nr_ptr", "tol_ptr")},
                    "lab_ptr": "*i64",
                    "rlab_ptr": "*i64",
                    "pos_ptr": "*i64",
                    "neg_ptr": "*i64",
                    "amb_ptr": "*i8",
                    "n_rows": "i32",
                    "n_cols": "i32",
                    "dim": "i32",
                    "stride_x": "i32",
                    "stride_r": "i32",
                    "self_offset": "i32",
                }
                consts = {
                    "HAS_SELF": has_self,
                    "COSINE": cosine,
                    "BM": k.BLOCK_M,
                    "BN": k.BLOCK_N,
                    "BD": k.BLOCK_D,
                }
                for c in consts:
                    sig[c] = "constexpr"
                name = (
                    f"hard_screen[{dtype},{'cosine' if cosine else 'sq'},"
                    f"{'self' if has_self else 'ref'}]"
                )
                out.append((name, k.hard_screen_kernel, sig, consts))
    out += _loss_variants()
    out += _settle_variants()
    out += _semi_variants()
    out += _batch_all_variants()
    out += _knn_variants()
    return out


def _batch_all_variants() -> list[tuple[str, Any, dict[str, str], dict[str, Any]]]:
    from . import _batch_all_kernels as k

    out = []
    ints = {p: "i32" for p in ("n", "dim", "stride", "pmax")}
    for dtype in ("fp32", "fp64"):
        f = f"*{dtype}"
        blocks = dict(zip(("BM", "BN", "BD", "PC"), k.BLOCKS[dtype], strict=True))
        exact = {"BN": k.EXACT_BLOCK_N, "PC": k.EXACT_SLOTS, "LN": k.LANES}
        eps = 2.0**-23 if dtype == "fp32" else 2.0**-52
        for mname, metric in (("euc", 0), ("sqeuc", 1), ("cos", 2)):
            sig = {"z_ptr": f, "nz_ptr": f, "pidx_ptr": "*i64", "tk_ptr": f, **ints}
            consts: dict[str, Any] = {
                "METRIC": metric, "BM": blocks["BM"], "BD": blocks["BD"], "PC": blocks["PC"]
            }  # fmt: skip
            sig.update({c: "constexpr" for c in consts})
            out.append((f"ba_slot_keys[{dtype},{mname}]", k.ba_slot_keys_kernel, sig, consts))
            for soft in (False, True):
                tag = f"{dtype},{mname},{'soft' if soft else 'hinge'}"
                sig = {
                    "z_ptr": f, "nz_ptr": f, "tol_ptr": f, "lab_ptr": "*i64", "pidx_ptr": "*i64",
                    "tk_ptr": f, "loss_ptr": "*fp64", "cnt_ptr": "*i64", "flag_ptr": "*i8",
                    "margin_ptr": f, **ints,
                }  # fmt: skip
                consts = {"METRIC": metric, "SOFT": soft, "EPS": eps, **blocks}
                sig.update({c: "constexpr" for c in consts})
                out.append((f"ba_fwd[{tag}]", k.ba_fwd_kernel, sig, consts))
                sig = {
                    "x_ptr": "*fp64" if mname == "cos" else f, "lab_ptr": "*i64",
                    "pidx_ptr": "*i64", "flag_ptr": "*i8", "loss_ptr": "*fp64",
                    "cnt_ptr": "*i64", "margin_ptr": "*fp64", **ints,
                }  # fmt: skip
                consts = {"METRIC": metric, "SOFT": soft, **exact}
                sig.update({c: "constexpr" for c in consts})
                out.append((f"ba_exact_fwd_settle[{tag}]", k.ba_exact_fwd_kernel, sig, consts))
                sig = {
                    "z_ptr": f, "nz_ptr": f, "lab_ptr": "*i64", "pidx_ptr": "*i64", "tk_ptr": f,
                    "flag_ptr": "*i8", "gs_ptr": f, "wap_ptr": f, "gz_ptr": f, "margin_ptr": f,
                    **ints,
                }  # fmt: skip
                consts = {"METRIC": metric, "SOFT": soft, **blocks, "SD": k.SCATTER[dtype]}
                sig.update({c: "constexpr" for c in consts})
                out.append((f"ba_bwd[{tag}]", k.ba_bwd_kernel, sig, consts))
                sig = {
                    "x_ptr": "*fp64" if mname == "cos" else f, "lab_ptr": "*i64",
                    "pidx_ptr": "*i64", "flag_ptr": "*i8", "gs_ptr": "*fp64", "gz_ptr": "*fp64",
                    "margin_ptr": "*fp64", **ints,
                }  # fmt: skip
                consts = {"METRIC": metric, "SOFT": soft, **exact}
                sig.update({c: "constexpr" for c in consts})
                out.append((f"ba_exact_bwd_settle[{tag}]", k.ba_exact_bwd_kernel, sig, consts))
    return out


def _semi_variants() -> list[tuple[str, Any, dict[str, str], dict[str, Any]]]:
    from . import _semi_kernels as k

    out = []
    for dtype in ("fp32", "fp64"):
        f = f"*{dtype}"
        ints = {p: "i32" for p in ("n", "dim", "stride", "pmax", "fallback", "inf_margin")}
        for mname, metric in (("euc", 0), ("sqeuc", 1), ("cos", 2)):
            sig = {
                "z_ptr": f, "nz_ptr": f, "tol_ptr": f, "lab_ptr": "*i64", "pidx_ptr": "*i64",
                "out_ptr": "*i64", "flag_ptr": "*i8", "margin_ptr": f, **ints,
                "METRIC": "constexpr", "REL": "constexpr", "BM": "constexpr",
                "BN": "constexpr", "BD": "constexpr", "PC": "constexpr",
            }  # fmt: skip
            consts = {
                "METRIC": metric, "REL": 2.0**-20 if dtype == "fp32" else 2.0**-49,
                **dict(zip(("BM", "BN", "BD", "PC"), k.SCREEN_BLOCKS[dtype], strict=True)),
            }  # fmt: skip
            out.append((f"semi_screen[{dtype},{mname}]", k.semi_screen_kernel, sig, consts))
            sig = {
                "x_ptr": f, "lab_ptr": "*i64", "pidx_ptr": "*i64", "out_ptr": "*i64",
                "flag_ptr": "*i8", "margin_ptr": "*fp64", **ints,
                "METRIC": "constexpr", "BN": "constexpr", "PC": "constexpr", "LN": "constexpr",
            }  # fmt: skip
            consts = {"METRIC": metric, "BN": k.SETTLE_BLOCK_N, "PC": k.SETTLE_SLOTS, "LN": k.LANES}
            out.append((f"semi_settle[{dtype},{mname}]", k.semi_settle_kernel, sig, consts))
    return out


def _knn_variants() -> list[tuple[str, Any, dict[str, str], dict[str, Any]]]:
    from ._knn_kernels import aot_variants

    return aot_variants()


def _settle_variants() -> list[tuple[str, Any, dict[str, str], dict[str, Any]]]:
    from . import _kernels as k

    out = []
    for dtype in ("fp32", "fp64"):
        for has_self in (True, False):
            sig = {
                "x_ptr": f"*{dtype}", "r_ptr": f"*{dtype}", "lab_ptr": "*i64",
                "rlab_ptr": "*i64", "flag_ptr": "*i8", "pos_ptr": "*i64", "neg_ptr": "*i64",
                "n_cols": "i32", "dim": "i32", "stride_x": "i32", "stride_r": "i32",
                "self_offset": "i32",
                "HAS_SELF": "constexpr", "BN": "constexpr", "LN": "constexpr",
            }  # fmt: skip
            consts = {"HAS_SELF": has_self, "BN": k.SETTLE_BLOCK_N, "LN": k.LANES}
            name = f"hard_settle[{dtype},{'self' if has_self else 'ref'}]"
            out.append((name, k.hard_settle_kernel, sig, consts))
    return out


def _loss_variants() -> list[tuple[str, Any, dict[str, str], dict[str, Any]]]:
    from . import _kernels as k
    from ._loss import BLOCK_D, BLOCK_T

    out = []
    ints = {"n_rows": "i32", "dim": "i32", "stride": "i32"}
    for dtype in ("fp32", "fp64"):
        for mname, metric in (
            ("euc", k.EUCLIDEAN),
            ("sqeuc", k.SQEUCLIDEAN),
            ("cos", k.COSINE_UNIT),
        ):
            f = f"*{dtype}"
            fwd_sig = {
                "z_ptr": f, "pos_ptr": "*i64", "neg_ptr": "*i64", "loss_ptr": f,
                "slope_ptr": f, "dap_ptr": f, "dan_ptr": f, **ints, "margin_ptr": f,
                "METRIC": "constexpr", "SOFT": "constexpr", "BT": "constexpr", "BD": "constexpr",
            }  # fmt: skip
            for soft in (False, True):
                consts = {"METRIC": metric, "SOFT": soft, "BT": BLOCK_T, "BD": BLOCK_D}
                name = f"hard_loss_fwd[{dtype},{mname},{'soft' if soft else 'hinge'}]"
                out.append((name, k.hard_loss_fwd_kernel, fwd_sig, consts))
            bwd_sig = {
                "z_ptr": f, "pos_ptr": "*i64", "neg_ptr": "*i64", "slope_ptr": f,
                "dap_ptr": f, "dan_ptr": f, "gout_ptr": f, "gz_ptr": f, **ints,
                "METRIC": "constexpr", "BT": "constexpr", "BD": "constexpr",
            }  # fmt: skip
            consts = {"METRIC": metric, "BT": BLOCK_T, "BD": BLOCK_D}
            out.append((f"hard_loss_bwd[{dtype},{mname}]", k.hard_loss_bwd_kernel, bwd_sig, consts))
    return out


def _sm(ptx: str, arch: int) -> str:
    """The PTX's own ``.target`` (Triton's sm_90 PTX targets sm_90a)."""
    found = re.search(r"^\s*\.target\s+(sm_\w+)", ptx, re.MULTILINE)
    return found.group(1) if found else f"sm_{arch}"


def _ptxas_usage(ptx: str, arch: int) -> tuple[int, int, int, int]:
    """(registers, spill store bytes, spill load bytes, static shared bytes) from ``ptxas -v``."""
    from triton.backends.nvidia.compiler import get_ptxas  # type: ignore[import-untyped]

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "k.ptx"
        src.write_text(ptx)
        res = subprocess.run(
            [
                get_ptxas(arch).path,
                "-v",
                f"--gpu-name={_sm(ptx, arch)}",
                str(src),
                "-o",
                os.devnull,
            ],
            capture_output=True,
            text=True,
            check=True,
        )
    log = res.stderr + res.stdout
    regs = re.search(r"Used (\d+) registers", log)
    spills = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", log)
    smem = re.search(r"(\d+) bytes smem", log)
    if regs is None or spills is None:
        raise RuntimeError(f"unexpected ptxas output:\n{log}")
    return (
        int(regs.group(1)),
        int(spills.group(1)),
        int(spills.group(2)),
        int(smem.group(1)) if smem else 0,
    )


def _compile_one(arch: int, index: int) -> KernelReport:
    """Compile variant ``index`` of ``_variants()`` for ``arch``; raises on a failure."""
    import triton  # type: ignore[import-untyped]
    from triton.backends.compiler import GPUTarget  # type: ignore[import-untyped]
    from triton.compiler import ASTSource  # type: ignore[import-untyped]

    name, fn, sig, consts = _variants()[index]
    # the exact kernels must not contract mul + add (the Rust sums round both)
    options = {"enable_fp_fusion": "_settle[" not in name}
    target = GPUTarget("cuda", arch, 32)
    compiled = triton.compile(ASTSource(fn, sig, consts), target=target, options=options)
    # (softplus' exp and log come from libdevice, which uses FMA by design)
    checks_fma = not options["enable_fp_fusion"] and "soft]" not in name
    if checks_fma and "fma.rn.f64" in compiled.asm["ptx"]:
        raise RuntimeError(f"{name}: FMA in the exact sums (sm_{arch})")
    regs, st, ld, _ = _ptxas_usage(compiled.asm["ptx"], arch)
    return KernelReport(name, arch, regs, st, ld, int(compiled.metadata.shared))


def compile_all(archs: list[int], only: str = "", jobs: int = 1) -> list[KernelReport]:
    """Compile every kernel variant for every architecture, in ``jobs``
    processes; raises on a failure."""
    names = [v[0] for v in _variants()]
    work = [
        (arch, i)
        for arch in archs
        for i, name in enumerate(names)
        if any(part in name for part in only.split("|"))
    ]
    if jobs <= 1 or len(work) < 2:
        return [_compile_one(arch, i) for arch, i in work]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # spawn: a fork of a process that has imported torch and Triton is not safe
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        return list(pool.map(_compile_one, *zip(*work, strict=True)))
