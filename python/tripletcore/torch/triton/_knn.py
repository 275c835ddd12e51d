"""Exact k-NN on the Triton kernels (``_knn_kernels``): screen, collect, settle.

Memory: the screen's prepared rows (as batch-hard's), a threshold per row,
``candidate_capacity(k)`` int32 slots per row and the (N x k) answer; no
N x M block. One host synchronisation, to find the rows whose candidates
overflowed their slots (many near-ties, e.g. more exact duplicates than
slots); those rows, and every row when k > ``MAX_K``, are answered by the
tiled torch path, which ranks on the same exact keys.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._knn_exact import KnnProblem, torch_knn
from . import _knn_kernels as kk
from ._mining import _cdiv, _tolerance


def triton_knn(problem: KnnProblem) -> tuple[Tensor, Tensor]:
    """Indices (N x k, int64) and float64 squared distances of ``problem``."""
    k = problem.k
    if k > kk.MAX_K:
        return torch_knn(problem)
    space = problem.space
    n, m = space.rows, space.cols
    zx, zr = space.zx.contiguous(), space.zr.contiguous()
    nx, nr = space.nx.contiguous(), space.nr.contiguous()
    tol = _tolerance(space).to(nx.dtype).contiguous()
    device = zx.device
    cap, bn = kk.candidate_capacity(k), kk.column_block(k)
    bm = kk.row_block(k, zx.dtype == torch.float64)
    common = dict(
        HAS_SELF=problem.self_excluded, COSINE=problem.metric == "cosine", BD=kk.BLOCK_D
    )  # fmt: skip
    thr = torch.empty(n, dtype=nx.dtype, device=device)
    kk.knn_threshold_kernel[(_cdiv(n, bm),)](
        zx, zr, nx, nr, tol, thr, n, m, zx.shape[1], zx.stride(0), zr.stride(0), 0, k,
        KB=kk.key_buffer(k), LOG_K=kk.key_buffer(k).bit_length() - 1,
        BM=bm, BN=bn, LOG_N=bn.bit_length() - 1, **common,
    )  # fmt: skip
    cand = torch.empty(n, cap, dtype=torch.int32, device=device)
    count = torch.empty(n, dtype=torch.int32, device=device)
    kk.knn_collect_kernel[(_cdiv(n, kk.BLOCK_M),)](
        zx, zr, nx, nr, thr, cand, count,
        n, m, zx.shape[1], zx.stride(0), zr.stride(0), 0,
        CAP=cap, BM=kk.BLOCK_M, BN=kk.BLOCK_N, **common,
    )  # fmt: skip
    idx, d2 = _settle(problem, cand, count, cap)
    over = torch.nonzero(count > cap).flatten()  # the one host synchronisation
    if over.numel():
        idx[over], d2[over] = torch_knn(problem, over)
    return idx, d2


def _settle(problem: KnnProblem, cand: Tensor, count: Tensor, cap: int) -> tuple[Tensor, Tensor]:
    x, ref = problem.x.contiguous(), problem.ref.contiguous()
    n, k = x.shape[0], problem.k
    if problem.norms is not None:
        sx, sr = (v.contiguous() for v in problem.norms)
    else:
        sx = sr = x.new_ones(1, dtype=torch.float64)  # not read
    idx = torch.empty(n, k, dtype=torch.int64, device=x.device)
    d2 = torch.empty(n, k, dtype=torch.float64, device=x.device)
    br = kk.settle_rows(k, problem.norms is not None)
    kk.knn_settle_kernel[(_cdiv(n, br),)](
        x, ref, sx, sr, cand, count, idx, d2, n, k, x.shape[1], x.stride(0), ref.stride(0),
        COSINE=problem.norms is not None, CAP=cap, BR=br, LN=kk.LANES,
        enable_fp_fusion=False,
    )  # fmt: skip
    return idx, d2
