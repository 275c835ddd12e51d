"""distributed=True: two gloo processes on CPU against the single-process loss.

Every rank must report the single-process loss of the concatenated batch (no
factor of the world size) and receive, for its own rows, the matching slice
of the single-process gradient.
"""

from __future__ import annotations

import socket
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import tripletcore.torch as tt

SIZES = (9, 14)  # rows per rank: unequal on purpose
CONFIGS = [
    {"backend": "rust", "mining": "batch_hard", "reduction": "mean"},
    {"backend": "torch", "mining": "semi_hard", "reduction": "sum", "metric": "cosine"},
    {"backend": "rust", "mining": "batch_all", "reduction": "mean_nonzero"},
    {"backend": "rust", "mining": "batch_hard", "reduction": "none", "normalize": True},
    {"backend": "torch", "mining": "batch_all", "reduction": "none", "soft": True},
]


def global_batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(11)
    n = sum(SIZES)
    return torch.randn(n, 5, dtype=torch.float64, generator=g), torch.randint(
        0, 5, (n,), generator=g
    )


def upstream(loss: torch.Tensor) -> torch.Tensor:
    """A scalar to differentiate: per-anchor losses get distinct weights."""
    if loss.ndim == 0:
        return loss
    return (loss * torch.linspace(-1.0, 2.0, loss.shape[0], dtype=loss.dtype)).sum()


def losses_and_grads(x: torch.Tensor, labels: torch.Tensor, distributed: bool) -> list:
    out = []
    for cfg in CONFIGS:
        leaf = x.detach().clone().requires_grad_()
        loss = tt.triplet_margin_loss(leaf, labels, distributed=distributed, **cfg)
        upstream(loss).backward()
        out.append((loss.detach(), leaf.grad))
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def worker(rank: int, world: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    try:
        x, labels = global_batch()
        start = sum(SIZES[:rank])
        rows = slice(start, start + SIZES[rank])
        results = losses_and_grads(x[rows], labels[rows], distributed=True)
        torch.save(results, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_ranks_match_one_process(tmp_path):
    mp.spawn(worker, args=(len(SIZES), free_port(), str(tmp_path)), nprocs=len(SIZES))
    x, labels = global_batch()
    want = losses_and_grads(x, labels, distributed=False)
    for rank in range(len(SIZES)):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        start = sum(SIZES[:rank])
        for cfg, (loss, grad), (want_loss, want_grad) in zip(CONFIGS, got, want, strict=True):
            msg = f"rank {rank}, {cfg}"
            torch.testing.assert_close(loss, want_loss, rtol=1e-12, atol=1e-14, msg=msg)
            torch.testing.assert_close(
                grad, want_grad[start : start + SIZES[rank]], rtol=1e-10, atol=1e-14, msg=msg
            )


def test_world_size_one():
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1
    )
    try:
        x, labels = global_batch()
        got = losses_and_grads(x, labels, distributed=True)
    finally:
        dist.destroy_process_group()
    want = losses_and_grads(x, labels, distributed=False)
    for (loss, grad), (want_loss, want_grad) in zip(got, want, strict=True):
        torch.testing.assert_close(loss, want_loss, rtol=0, atol=0)
        torch.testing.assert_close(grad, want_grad, rtol=0, atol=0)
