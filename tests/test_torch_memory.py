"""CrossBatchMemory against a float64 brute force that keeps the whole history."""

from __future__ import annotations

import pytest
import torch

import tripletcore.torch as tt

# tiny tensors: more threads only add overhead (and stall on a busy machine)
torch.set_num_threads(1)

BACKENDS = ("rust", "torch")


def distance(u: torch.Tensor, v: torch.Tensor, metric: str) -> torch.Tensor:
    if metric == "cosine":
        return 1.0 - (u * v).sum(1) / (u.norm(dim=1) * v.norm(dim=1))
    sq = ((u - v) ** 2).sum(1)
    return sq if metric == "sqeuclidean" else sq.sqrt()


def brute_force(x, labels, bank, bank_labels, *, margin, metric, reduction):
    """Batch-hard over the batch (not the anchor itself) and the memory (constants)."""
    n = x.shape[0]
    ref = torch.cat([x, bank])
    ref_labels = torch.cat([labels, bank_labels])
    a_list, p_list, q_list = [], [], []
    for i in range(n):
        d = distance(x[i : i + 1].expand(len(ref), -1), ref, metric).detach()
        same = ref_labels == labels[i]
        pos = same.clone()
        pos[i] = False  # never its own positive
        if not pos.any() or same.all():
            continue
        a_list.append(i)
        p_list.append(int(torch.where(pos, d, -torch.inf).argmax()))
        q_list.append(int(torch.where(~same, d, torch.inf).argmin()))
    a, p, q = (torch.tensor(v, dtype=torch.int64) for v in (a_list, p_list, q_list))
    losses = torch.relu(distance(x[a], ref[p], metric) - distance(x[a], ref[q], metric) + margin)
    if reduction == "none":
        return torch.zeros(n, dtype=x.dtype).index_add(0, a, losses)
    if reduction == "sum":
        return losses.sum()
    if reduction == "mean":
        return losses.sum() / max(len(a), 1)
    return losses.sum() / max(int((losses > 0).sum()), 1)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("metric", ["euclidean", "sqeuclidean", "cosine"])
@pytest.mark.parametrize("reduction", ["mean", "none", "mean_nonzero"])
def test_matches_brute_force_over_steps_and_wrap_around(backend, metric, reduction):
    memory_size, dim = 10, 4
    loss = tt.TripletMarginLoss(margin=0.3, metric=metric, reduction=reduction, backend=backend)
    xbm = tt.CrossBatchMemory(loss, dim, memory_size, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    history_x, history_y = [], []
    # batch sizes: fill, wrap around, and one larger than the memory
    for step, size in enumerate([4, 7, 3, 12, 5, 6]):
        x = torch.randn(size, dim, dtype=torch.float64, generator=g, requires_grad=True)
        labels = torch.randint(0, 4, (size,), generator=g)
        bank = torch.cat(history_x)[-memory_size:] if history_x else x.new_zeros(0, dim)
        bank_labels = torch.cat(history_y)[-memory_size:] if history_y else labels.new_zeros(0)
        want = brute_force(
            x, labels, bank, bank_labels, margin=0.3, metric=metric, reduction=reduction
        )
        (want_grad,) = torch.autograd.grad(want.sum(), x)
        got = xbm(x, labels)
        (grad,) = torch.autograd.grad(got.sum(), x)
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12, msg=f"step {step}")
        torch.testing.assert_close(grad, want_grad, rtol=1e-9, atol=1e-12, msg=f"step {step}")
        history_x.append(x.detach())
        history_y.append(labels)
        stored, stored_labels = xbm.memory
        assert len(stored) == min(memory_size, sum(len(h) for h in history_x))
        # the memory holds exactly the last rows, in some slot order
        last = torch.cat(history_x)[-memory_size:]
        order = torch.argsort(stored[:, 0])
        torch.testing.assert_close(stored[order], last[torch.argsort(last[:, 0])])
        torch.testing.assert_close(
            stored_labels[order], torch.cat(history_y)[-memory_size:][torch.argsort(last[:, 0])]
        )


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_anchor_is_never_its_own_positive(backend):
    # a margin this large makes every triplet count: loss > 0 iff some anchor has a positive
    xbm = tt.CrossBatchMemory(tt.TripletMarginLoss(margin=10.0, backend=backend), 3, 16)
    x = torch.randn(4, 3)
    labels = torch.tensor([0, 1, 2, 3])
    # every label once: no anchor has a positive (PML's memory pairs it with its own copy)
    assert xbm(x, labels).item() == 0.0
    # next step: the earlier copies are in the memory and are valid positives
    loss = xbm(x + 0.01, labels)
    d_ap = 0.01 * 3**0.5
    d_an = torch.cdist(x + 0.01, torch.cat([x + 0.01, x]))
    d_an = torch.where(labels[:, None] == torch.cat([labels, labels])[None], torch.inf, d_an)
    want = (d_ap - d_an.min(dim=1).values + 10.0).mean()
    torch.testing.assert_close(loss, want, rtol=1e-5, atol=1e-5)


def test_normalize_and_half_buffers_follow_the_module():
    loss = tt.TripletMarginLoss(normalize=True, metric="cosine")
    xbm = tt.CrossBatchMemory(loss, 5, 8)
    x = torch.randn(6, 5)
    xbm(x, torch.randint(0, 3, (6,)))
    norms = xbm.memory[0].norm(dim=1)
    torch.testing.assert_close(norms, torch.ones(6))
    xbm.double()
    assert xbm.embedding_memory.dtype == torch.float64
    xbm(torch.randn(6, 5, dtype=torch.float64), torch.randint(0, 3, (6,)))
    xbm.reset()
    assert xbm.memory[0].shape == (0, 5)


def test_bad_input():
    with pytest.raises(ValueError, match="batch_hard"):
        tt.CrossBatchMemory(tt.TripletMarginLoss(mining="batch_all"), 4)
    with pytest.raises(ValueError, match="distributed"):
        tt.CrossBatchMemory(tt.TripletMarginLoss(distributed=True), 4)
    with pytest.raises(TypeError, match="TripletMarginLoss"):
        tt.CrossBatchMemory(torch.nn.MSELoss(), 4)  # type: ignore[arg-type]
    xbm = tt.CrossBatchMemory(None, 4, 8)
    with pytest.raises(ValueError, match="features"):
        xbm(torch.randn(5, 3), torch.zeros(5, dtype=torch.int64))
    with pytest.raises(TypeError, match="float64"):
        xbm(torch.randn(5, 4, dtype=torch.float64), torch.zeros(5, dtype=torch.int64))
    with pytest.raises(TypeError, match="integer"):
        xbm(torch.randn(5, 4), torch.zeros(5))
    assert xbm.filled == 0  # nothing was stored by the failed calls
    xbm.to("meta")
    with pytest.raises(ValueError, match="device"):
        xbm(torch.randn(5, 4), torch.zeros(5, dtype=torch.int64))
