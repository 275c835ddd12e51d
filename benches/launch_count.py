"""Kernel launches of one training step (mine + loss + backward), counted on the CPU.

A GPU step costs at least one launch per ATen operation that computes
something, and one per Triton kernel. Both are counted here without a GPU:
ATen operations with a ``TorchDispatchMode`` (views, metadata and
allocations left out: they launch nothing), Triton kernels (run by Triton's
interpreter on CPU tensors) by wrapping their launch. Host synchronisations
are counted as the operations that read a device value back (``item``,
``nonzero``, ``unique`` and friends).

    python benches/launch_count.py [--n 256] [--mining batch_hard]
"""

from __future__ import annotations

import argparse
import os
from collections import Counter
from typing import Any

os.environ.setdefault("TRITON_INTERPRET", "1")

import torch  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

import tripletcore.torch as tt  # noqa: E402

# ATen operations that launch no kernel (views, metadata, allocation)
NO_LAUNCH = {
    "view", "_unsafe_view", "reshape", "expand", "t", "transpose", "permute", "slice", "select",
    "as_strided", "alias", "detach", "unsqueeze", "squeeze", "empty", "empty_like",
    "empty_strided", "new_empty", "new_empty_strided", "lift_fresh", "_reshape_alias", "unbind",
    "split", "chunk", "narrow", "diagonal", "_local_scalar_dense_meta", "is_same_size",
}  # fmt: skip
# ATen operations that wait for the device (a value or a size read back)
SYNCS = {"_local_scalar_dense", "nonzero", "unique", "_unique2", "masked_select", "item"}


class CountOps(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter[str] = Counter()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        name = func.overloadpacket.__name__
        if name not in NO_LAUNCH:
            self.ops[name] += 1
        return func(*args, **(kwargs or {}))


def count_triton(counter: Counter[str]) -> None:
    """Count every Triton kernel launch (``kernel[grid](...)``) into ``counter``."""
    from torch.utils._python_dispatch import _disable_current_modes
    from triton.runtime.interpreter import InterpretedFunction

    original = InterpretedFunction.run

    def run(self: Any, *args: Any, **kwargs: Any) -> Any:
        counter["triton:" + self.fn.__name__] += 1
        with _disable_current_modes():  # the interpreter's own tensor copies are no launches
            return original(self, *args, **kwargs)

    InterpretedFunction.run = run


def step_counts(backend: str, n: int, mining: str, triton_ops: Counter[str]) -> Counter[str]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 128, generator=g).requires_grad_(True)
    y = torch.randint(0, max(1, n // 4), (n,), generator=g)
    triton_ops.clear()
    with CountOps() as mode:
        loss = tt.triplet_margin_loss(x, y, margin=0.2, mining=mining, backend=backend)
        loss.backward()
    return mode.ops + triton_ops


def pml_counts(n: int) -> Counter[str]:
    from pytorch_metric_learning.losses import TripletMarginLoss
    from pytorch_metric_learning.miners import BatchHardMiner

    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 128, generator=g).requires_grad_(True)
    y = torch.randint(0, max(1, n // 4), (n,), generator=g)
    with CountOps() as mode:
        loss = TripletMarginLoss(margin=0.2)(x, y, BatchHardMiner()(x, y))
        loss.backward()
    return mode.ops


def summary(name: str, ops: Counter[str]) -> str:
    launches = sum(ops.values())
    kernels = sum(v for k, v in ops.items() if k.startswith("triton:"))
    syncs = sum(v for k, v in ops.items() if k in SYNCS)
    top = ", ".join(f"{k} {v}" for k, v in ops.most_common(8))
    return (
        f"{name:28s} launches {launches:4d} (Triton kernels {kernels}), syncs {syncs}\n"
        f"{'':28s} {top}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=256, help="batch size")
    parser.add_argument(
        "--mining", default="batch_hard", choices=["batch_hard", "semi_hard", "batch_all"]
    )
    args = parser.parse_args(argv)
    triton_ops: Counter[str] = Counter()
    count_triton(triton_ops)
    print(f"one training step, N = {args.n}, d = 128, mining = {args.mining}")
    for backend in ("triton", "torch"):
        ops = step_counts(backend, args.n, args.mining, triton_ops)
        print(summary(f"tripletcore backend={backend}", ops))
    if args.mining == "batch_hard":
        try:
            print(summary("PML BatchHard + TripletMargin", pml_counts(args.n)))
        except ImportError:
            print("(pytorch-metric-learning is not installed)")


if __name__ == "__main__":
    main()
