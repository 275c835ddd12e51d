"""The triton backend under Triton's interpreter (CPU tensors) against the Rust backend.

TRITON_INTERPRET is set before Triton is imported (the kernel module is
imported on first use, and ``triton.jit`` reads the variable then). The AOT
test compiles in a subprocess with the variable unset.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

os.environ["TRITON_INTERPRET"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402

import tripletcore  # noqa: E402
from tripletcore.torch import (  # noqa: E402
    BatchHardMiner,
    CrossBatchMemory,
    SemiHardMiner,
    TripletMarginLoss,
    triplet_margin_loss,
)

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("triton") is None, reason="triton is not installed"
)


METRICS = ["euclidean", "sqeuclidean", "cosine"]


def _data(
    kind: str, dtype: torch.dtype, n: int = 48, d: int = 6, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(KINDS.index(kind) + seed)
    labels = torch.randint(0, 5, (n,), generator=g)
    if kind == "grid":  # integer coordinates: many exactly tied distances
        x = torch.randint(-2, 3, (n, d), generator=g).to(dtype)
    elif kind == "duplicates":  # repeated rows, across and within classes
        base = torch.randn(n // 4, d, generator=g, dtype=torch.float64)
        x = base[torch.randint(0, n // 4, (n,), generator=g)].to(dtype)
    elif kind == "far":  # far from the origin, close together: the expansion cancels
        x = (1e4 + torch.randint(-3, 4, (n, d), generator=g).to(torch.float64) * 0.5).to(dtype)
    elif kind == "singletons":  # classes of one row (no positive), one class of the rest
        x = torch.randn(n, d, generator=g, dtype=torch.float64).to(dtype)
        labels = torch.where(torch.arange(n) < n // 2, torch.arange(n) + 10, 0)
    elif kind == "one_class":  # no negative anywhere
        x = torch.randn(n, d, generator=g, dtype=torch.float64).to(dtype)
        labels = torch.zeros(n, dtype=torch.int64)
    else:
        x = torch.randn(n, d, generator=g, dtype=torch.float64).to(dtype)
    if kind != "one_class" and kind != "singletons":
        x[0] = x[1]  # an exact duplicate pair, whatever the data
    return x, labels


KINDS = ["grid", "duplicates", "far", "singletons", "one_class", "random"]


def _mine(backend: str, x, labels, metric, ref=None, ref_labels=None):
    return BatchHardMiner(metric, backend=backend)(x, labels, ref, ref_labels)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_batch_hard_indices_equal_rust(kind: str, metric: str, dtype: torch.dtype) -> None:
    x, labels = _data(kind, dtype)
    if metric == "cosine" and kind == "grid":
        x[(x == 0).all(dim=1)] = 1.0  # the cosine distance needs non-zero rows
    from tripletcore.torch._backend import resolve_backend

    tri = resolve_backend("triton", x.device)
    rust = resolve_backend("rust", x.device)
    got = tri.mine_batch_hard(x, labels, metric)
    want = rust.mine_batch_hard(x, labels, metric)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


def test_batch_hard_miner_equals_rust() -> None:
    x, labels = _data("grid", torch.float32)
    for a, b in zip(
        _mine("triton", x, labels, "euclidean"), _mine("rust", x, labels, "euclidean"), strict=True
    ):
        assert torch.equal(a, b)


def test_screen_flags_and_settles_ties() -> None:
    """On an integer grid the screen leaves ties to the settle, which gives the lowest index."""
    from tripletcore.torch._tiled import _Space
    from tripletcore.torch.triton._mining import _screen

    x, labels = _data("grid", torch.float32)
    flags = _screen(_Space(x, None, "euclidean"), labels, labels, 0)[2]
    assert int(flags.sum()) > 0  # the settle path is exercised
    x, labels = _data("random", torch.float64)
    flags = _screen(_Space(x, None, "euclidean"), labels, labels, 0)[2]
    assert int(flags.sum()) < x.shape[0]  # and the screen alone decides some rows


@pytest.mark.parametrize("metric", METRICS)
def test_reference_set_and_memory_equal_rust(metric: str) -> None:
    x, labels = _data("grid", torch.float32, n=40)
    x = x + 3.0  # no zero rows (cosine)
    ref, rlab = _data("duplicates", torch.float32, n=24)
    ref = torch.cat([x[:5], ref])  # shared rows: ties between batch and reference
    rlab = torch.cat([labels[:5], rlab])
    for a, b in zip(
        _mine("triton", x, labels, metric, ref, rlab),
        _mine("rust", x, labels, metric, ref, rlab),
        strict=True,
    ):
        assert torch.equal(a, b)
    losses = {}
    grads = {}
    for backend in ("triton", "rust"):
        mem = CrossBatchMemory(TripletMarginLoss(metric=metric, backend=backend), 6, 32)
        out = []
        for step in range(3):
            xs = (x[step * 13 : step * 13 + 13]).clone().requires_grad_(True)
            loss = mem(xs, labels[step * 13 : step * 13 + 13])
            loss.backward()
            out.append((loss.detach(), xs.grad))
        losses[backend] = [o[0] for o in out]
        grads[backend] = [o[1] for o in out]
    for a, b in zip(losses["triton"], losses["rust"], strict=True):
        torch.testing.assert_close(a, b)
    for a, b in zip(grads["triton"], grads["rust"], strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none", "mean_nonzero"])
@pytest.mark.parametrize("soft", [False, True])
def test_batch_hard_loss_and_gradient_equal_rust(metric: str, reduction: str, soft: bool) -> None:
    from tripletcore._options import REDUCTIONS

    if reduction not in REDUCTIONS:
        pytest.skip(f"reduction {reduction!r} is not offered")
    x, labels = _data("duplicates", torch.float64, n=40)
    x = x + 0.25
    out = {}
    for backend in ("triton", "rust"):
        xs = x.clone().requires_grad_(True)
        loss = triplet_margin_loss(
            xs, labels, margin=0.3, metric=metric, soft=soft, reduction=reduction, backend=backend
        )
        loss.sum().backward()
        out[backend] = (loss.detach(), xs.grad)
    torch.testing.assert_close(out["triton"][0], out["rust"][0])
    torch.testing.assert_close(out["triton"][1], out["rust"][1])


@pytest.mark.parametrize("mining", ["semi_hard", "batch_all"])
def test_other_minings_equal_rust(mining: str) -> None:
    x, labels = _data("grid", torch.float32, n=32)
    out = {}
    for backend in ("triton", "rust"):
        xs = x.clone().requires_grad_(True)
        loss = triplet_margin_loss(xs, labels, margin=1.0, mining=mining, backend=backend)
        loss.backward()
        out[backend] = (loss.detach(), xs.grad)
    torch.testing.assert_close(out["triton"][0], out["rust"][0])
    torch.testing.assert_close(out["triton"][1], out["rust"][1])
    got = SemiHardMiner(1.0, backend="triton")(x, labels)
    want = SemiHardMiner(1.0, backend="rust")(x, labels)
    for a, b in zip(got, want, strict=True):
        assert torch.equal(a, b)


SEMI_CASES = [
    # (kind, metric, dtype, fallback, margin): every kind, metric, fallback, dtype,
    # and the margins 0 (an empty window), inf (no upper edge) and a wide one
    ("grid", "euclidean", torch.float32, "hardest", 1.0),
    ("grid", "sqeuclidean", torch.float64, "easiest", 0.0),
    ("grid", "cosine", torch.float32, "drop", 0.2),
    ("duplicates", "euclidean", torch.float64, "drop", float("inf")),
    ("duplicates", "cosine", torch.float64, "hardest", 0.5),
    ("far", "euclidean", torch.float32, "easiest", 0.5),
    ("far", "sqeuclidean", torch.float32, "hardest", 3.0),
    ("singletons", "cosine", torch.float32, "easiest", 0.2),
    ("one_class", "euclidean", torch.float32, "hardest", 0.2),
    ("random", "sqeuclidean", torch.float64, "drop", 0.2),
    ("random", "euclidean", torch.float32, "hardest", float("inf")),
]


@pytest.mark.parametrize(("kind", "metric", "dtype", "fallback", "margin"), SEMI_CASES)
def test_semi_hard_triplets_equal_rust(
    kind: str, metric: str, dtype: torch.dtype, fallback: str, margin: float
) -> None:
    x, labels = _data(kind, dtype, n=24)
    if metric == "cosine" and kind == "grid":
        x[(x == 0).all(dim=1)] = 1.0
    from tripletcore.torch._backend import resolve_backend

    got = resolve_backend("triton", x.device).mine_semi_hard(x, labels, margin, metric, fallback)
    want = resolve_backend("rust", x.device).mine_semi_hard(x, labels, margin, metric, fallback)
    for a, b in zip(got, want, strict=True):
        assert torch.equal(a, b)


def test_semi_hard_screen_flags_near_ties() -> None:
    """Integer grids tie distances exactly: the screen must send such rows to
    the float64 settle (a screen that never flags would mine other negatives)."""
    from tripletcore.torch.triton import _semi, _semi_kernels

    x, labels = _data("grid", torch.float32, n=24)
    pidx = _semi.positive_table(labels)
    space = _semi._Space(x, None, "euclidean")
    out = torch.empty_like(pidx)
    flag = torch.empty(x.shape[0], dtype=torch.int8)
    z = space.zx.contiguous()
    _semi_kernels.semi_screen_kernel[(2,)](
        z, space.nx.contiguous(), _semi._tolerance(space).contiguous(), labels, pidx, out, flag,
        torch.full((1,), 1.0), x.shape[0], z.shape[1], z.stride(0), pidx.shape[1], 0, 0,
        METRIC=0, REL=2.0**-20, BM=16, BN=16, BD=16, PC=8,
    )  # fmt: skip
    assert 0 < int(flag.sum()) < x.shape[0]


def test_positive_table() -> None:
    from tripletcore.torch.triton._semi import positive_table

    labels = torch.tensor([3, 1, 3, 3, 7, 1])
    want = [[2, 3], [5, -1], [0, 3], [0, 2], [-1, -1], [1, -1]]
    assert positive_table(labels).tolist() == want
    assert positive_table(torch.tensor([4, 5])).shape == (2, 0)


BATCH_ALL_CASES = [
    # (kind, metric, dtype, reduction, soft, margin)
    ("grid", "euclidean", torch.float32, "mean", False, 1.0),
    ("grid", "sqeuclidean", torch.float64, "mean_nonzero", False, 1.0),
    ("grid", "cosine", torch.float32, "none", False, 0.2),
    ("duplicates", "euclidean", torch.float32, "sum", False, 0.2),
    ("duplicates", "cosine", torch.float64, "mean", True, 0.2),
    ("far", "euclidean", torch.float32, "mean", False, 0.5),
    ("far", "sqeuclidean", torch.float32, "none", True, 0.5),
    ("singletons", "sqeuclidean", torch.float32, "mean_nonzero", True, 0.2),
    ("one_class", "euclidean", torch.float32, "mean", False, 0.2),
    ("random", "cosine", torch.float32, "mean_nonzero", False, 0.2),
    ("random", "euclidean", torch.float64, "none", False, 0.0),
]


@pytest.mark.parametrize(
    ("kind", "metric", "dtype", "reduction", "soft", "margin"), BATCH_ALL_CASES
)
def test_batch_all_loss_and_gradient_equal_rust(
    kind: str, metric: str, dtype: torch.dtype, reduction: str, soft: bool, margin: float
) -> None:
    x, labels = _data(kind, dtype, n=24)
    if metric == "cosine" and kind == "grid":
        x[(x == 0).all(dim=1)] = 1.0
    out = {}
    for backend in ("triton", "rust"):
        xs = x.clone().requires_grad_(True)
        loss = triplet_margin_loss(
            xs, labels, margin=margin, mining="batch_all", metric=metric,
            reduction=reduction, soft=soft, backend=backend,
        )  # fmt: skip
        loss.sum().backward()
        out[backend] = (loss.detach(), xs.grad)
    torch.testing.assert_close(out["triton"][0], out["rust"][0])
    if dtype == torch.float32:
        # float32 distances from the expansion: errors scale with the terms, not their sum
        gmax = float(out["rust"][1].abs().max())
        tol = {"rtol": 1e-4, "atol": 1e-5 * max(1.0, gmax)}
    else:
        tol = {}
    torch.testing.assert_close(out["triton"][1], out["rust"][1], **tol)


def test_batch_all_flags_kinks_and_close_pairs() -> None:
    """Integer grids put hinge terms exactly at the kink: those anchors must
    take the float64 path (their loss there equals the Rust kernel's bits)."""
    from tripletcore.torch.triton import _batch_all

    x, labels = _data("grid", torch.float32, n=24)
    parts = _batch_all._Parts(x, labels, "euclidean")
    loss, _, flag = _batch_all._forward(parts, 1.0, False)
    assert 0 < int(flag.sum()) <= x.shape[0]
    want, _ = tripletcore.triplet_margin_loss(
        x.numpy(), labels.numpy(), margin=1.0, mining="batch_all", reduction="none"
    )
    flagged = flag.bool()
    # both in float64 on exact distances; the Rust kernel's float32 input path
    # rounds its distances to float32 (relative 2**-24 each)
    torch.testing.assert_close(loss[flagged], torch.as_tensor(want)[flagged], rtol=1e-6, atol=0)


@pytest.mark.parametrize("mining", ["batch_hard", "semi_hard", "batch_all"])
@pytest.mark.parametrize("soft", [False, True])
def test_gradient_penalty_equals_rust(mining: str, soft: bool) -> None:
    """``create_graph=True`` gives a gradient connected to the graph (a gradient
    penalty differentiates it again), equal to the Rust backend's."""
    gen = torch.Generator().manual_seed(0)
    inp = torch.randn(20, 5, dtype=torch.float64, generator=gen)
    w0 = torch.randn(5, 4, dtype=torch.float64, generator=gen)
    labels = torch.arange(20) % 4
    out = {}
    for backend in ("triton", "rust"):
        w = w0.clone().requires_grad_(True)
        emb = inp @ w
        loss = triplet_margin_loss(
            emb, labels, margin=0.5, mining=mining, soft=soft, reduction="mean", backend=backend
        )
        (g,) = torch.autograd.grad(loss, emb, create_graph=True)
        assert g.requires_grad
        (out[backend],) = torch.autograd.grad(loss + (g**2).sum(), w)
    torch.testing.assert_close(out["triton"], out["rust"], rtol=1e-9, atol=1e-12)


def test_cosine_ties_go_to_the_lowest_index() -> None:
    """Issue 17's repro: mathematically equal cosine distances an ulp apart in
    float64; the Triton backend must pick the lowest index, as Rust does."""
    x = torch.tensor(
        [[-2, 0, -2, -2, 2, -1, 2, 1, -1], [2, -1, 2, 0, 1, -1, -2, -2, 2],
         [1, -2, 0, -1, 2, -1, 2, 1, 1], [0, 0, 0, -2, 2, -2, 0, -2, -1.0]]
    )  # fmt: skip
    labels = torch.tensor([0, 0, 1, 1])
    from tripletcore.torch._backend import resolve_backend

    _, neg = resolve_backend("triton", x.device).mine_batch_hard(x, labels, "cosine")
    assert int(neg[0]) == 2
    g = torch.Generator().manual_seed(5)
    grid = torch.randint(-2, 3, (30, 4), generator=g).double()
    grid[(grid == 0).all(dim=1)] = 1.0
    lab = torch.randint(0, 3, (30,), generator=g)
    for fallback in ("hardest", "easiest"):
        got = SemiHardMiner(0.1, "cosine", fallback, backend="triton")(grid, lab)
        want = SemiHardMiner(0.1, "cosine", fallback, backend="rust")(grid, lab)
        for a, b in zip(got, want, strict=True):
            assert torch.equal(a, b)


def test_bad_input_names_the_argument() -> None:
    x, labels = _data("random", torch.float32, n=16)
    bad = x.clone()
    bad[3, 2] = float("nan")
    with pytest.raises(ValueError, match="embeddings"):
        triplet_margin_loss(bad, labels, backend="triton")
    with pytest.raises(ValueError, match="embeddings"):
        BatchHardMiner(backend="triton")(bad, labels)
    with pytest.raises((ValueError, TypeError), match="labels"):
        triplet_margin_loss(x, labels[:-1], backend="triton")
    with pytest.raises(ValueError, match="ref_emb"):
        BatchHardMiner(backend="triton")(x, labels, x[:, :3], labels)


def test_device_errors_say_what_to_use(monkeypatch: pytest.MonkeyPatch) -> None:
    from tripletcore.torch.triton import _backend as tb

    x, labels = _data("random", torch.float32, n=8)
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(tripletcore.InputError, match="backend='rust'") as info:
        triplet_margin_loss(x, labels, backend="triton")
    assert info.value.arg == "backend"
    monkeypatch.setattr(tb, "triton_available", lambda: False)
    with pytest.raises(tripletcore.InputError, match="pip install triton"):
        BatchHardMiner(backend="triton")(x, labels)
    # auto keeps CPU tensors on the Rust kernels
    from tripletcore.torch._backend import resolve_backend

    assert resolve_backend("auto", torch.device("cpu")).name == "rust"


def test_aot_compile_sm80_sm90() -> None:
    """Three kernel variants (screen, exact settle without FMA, loss backward) through
    ``python -m tripletcore.torch.triton --compile 80,90``; the CLI compiles all 96
    variants for each architecture without ``--only`` (CI runs that)."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_DEFAULT_FP_FUSION"] = "1"
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "tripletcore.torch.triton",
            "--compile",
            "80,90",
            "--only",
            "hard_screen[fp32,sq,self]|hard_settle[fp32,self]|hard_loss_bwd[fp32,euc]",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("sm_")]
    assert [ln.split()[0] for ln in lines] == ["sm_80"] * 3 + ["sm_90"] * 3
    assert all("registers" in ln and "shared" in ln for ln in lines)
    assert all("spills 0/0 B" in ln for ln in lines), res.stdout  # spills are a defect
    bad = subprocess.run(
        [sys.executable, "-m", "tripletcore.torch.triton", "--compile", "eighty"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert bad.returncode != 0


def test_only_explained_spills_pass() -> None:
    from tripletcore.torch.triton._aot import KNOWN_SPILL_BYTES, KernelReport

    def report(name: str, spill: int) -> KernelReport:
        return KernelReport(name, 80, 168, spill, spill, 0)

    assert not report("hard_screen[fp32,sq,self]", 0).unexplained_spill()
    assert report("hard_screen[fp32,sq,self]", 8).unexplained_spill()
    assert not report("semi_screen[fp64,euc]", 40).unexplained_spill()
    assert report("semi_screen[fp64,euc]", KNOWN_SPILL_BYTES + 4).unexplained_spill()


@pytest.mark.parametrize("metric", METRICS)
def test_batch_hard_loss_float32_far_points(metric: str) -> None:
    """float32 far from the origin: the screen cancels, the settle and the
    difference-based loss do not."""
    x, labels = _data("far", torch.float32, n=40)
    out = {}
    for backend in ("triton", "rust"):
        xs = x.clone().requires_grad_(True)
        loss = triplet_margin_loss(xs, labels, margin=0.5, metric=metric, backend=backend)
        loss.backward()
        out[backend] = (loss.detach(), xs.grad)
    torch.testing.assert_close(out["triton"][0], out["rust"][0])
    torch.testing.assert_close(out["triton"][1], out["rust"][1])


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize(("n", "d"), [(1, 3), (2, 1), (40, 37)])
def test_batch_hard_shapes_equal_rust(metric: str, n: int, d: int) -> None:
    """One row, one feature, and d = 37 (the exact sums span three 16-lane chunks)."""
    from tripletcore.torch._backend import resolve_backend

    x, labels = _data("far", torch.float32, n=max(n, 8), d=d)
    x, labels = x[:n], labels[:n]
    tri = resolve_backend("triton", x.device)
    rust = resolve_backend("rust", x.device)
    for a, b in zip(
        tri.mine_batch_hard(x, labels, metric), rust.mine_batch_hard(x, labels, metric), strict=True
    ):
        assert torch.equal(a, b)
