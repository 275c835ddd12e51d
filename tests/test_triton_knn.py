"""tripletcore.torch.knn / retrieval_metrics against the Rust kernel.

The Triton kernels run under Triton's interpreter on CPU tensors
(TRITON_INTERPRET is set before Triton is imported, as in test_triton.py);
the tiled torch path and the Rust path run as they are. Indices must equal
the Rust ``tripletcore.knn`` exactly and distances bit for bit (the paths
rank and round the same float64 keys).
"""

from __future__ import annotations

import importlib.util
import os

os.environ["TRITON_INTERPRET"] = "1"

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import tripletcore  # noqa: E402
import tripletcore.torch as tt  # noqa: E402

needs_triton = pytest.mark.skipif(
    importlib.util.find_spec("triton") is None, reason="triton is not installed"
)
METRICS = ["euclidean", "sqeuclidean", "cosine"]
KINDS = ["random", "grid", "duplicates", "far", "near", "tiny", "huge"]


def _points(kind: str, dtype: torch.dtype, n: int = 40, d: int = 7, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(KINDS.index(kind) * 101 + seed)
    f32 = dtype == torch.float32
    if kind == "grid":  # integer coordinates: many exactly tied distances
        x = torch.randint(-2, 3, (n, d), generator=g).double()
    elif kind == "duplicates":  # repeated rows
        base = torch.randn(n // 4, d, generator=g, dtype=torch.float64)
        x = base[torch.randint(0, n // 4, (n,), generator=g)]
    elif kind == "far":  # far from the origin, close together: the expansion cancels
        x = 1e6 + torch.randint(-3, 4, (n, d), generator=g).double() * 0.5
    elif kind == "near":  # clusters far below the float32 screen's resolution
        centres = torch.randn(4, d, generator=g, dtype=torch.float64)
        x = centres[torch.arange(n) % 4] + 1e-5 * torch.randn(
            n, d, generator=g, dtype=torch.float64
        )
    elif kind == "tiny":  # squares below the dtype's normal range (rescaled by scale.rs)
        x = torch.randn(n, d, generator=g, dtype=torch.float64) * (1e-30 if f32 else 1e-200)
    elif kind == "huge":  # squares above the dtype's range
        x = torch.randn(n, d, generator=g, dtype=torch.float64) * (1e30 if f32 else 1e200)
    else:
        x = torch.randn(n, d, generator=g, dtype=torch.float64)
    x = x.to(dtype)
    x[0] = x[1]  # an exact duplicate pair, whatever the data
    return x


def _same_as_rust(res, x, k, y=None, metric="euclidean", exclude_self=True) -> None:
    ref = tripletcore.knn(
        x.numpy(), k, None if y is None else y.numpy(), metric=metric, exclude_self=exclude_self
    )
    assert isinstance(res, tripletcore.KnnResult)
    assert res.indices.dtype == torch.int64 and res.distances.dtype == x.dtype
    assert res.indices.shape == (x.shape[0], k)
    np.testing.assert_array_equal(res.indices.numpy(), ref.indices)
    np.testing.assert_array_equal(res.distances.numpy(), ref.distances)


@needs_triton
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("kind", KINDS)
def test_triton_equals_rust(kind: str, metric: str, dtype: torch.dtype) -> None:
    x = _points(kind, dtype)
    _same_as_rust(tt.knn(x, 5, metric=metric, backend="triton"), x, 5, metric=metric)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("kind", KINDS)
def test_torch_path_equals_rust(kind: str, metric: str, dtype: torch.dtype) -> None:
    x = _points(kind, dtype)
    for k in (1, 5):
        _same_as_rust(tt.knn(x, k, metric=metric, backend="torch"), x, k, metric=metric)


@needs_triton
@pytest.mark.parametrize("backend", ["triton", "torch"])
@pytest.mark.parametrize("metric", METRICS)
def test_k_extremes_and_self(backend: str, metric: str) -> None:
    x = _points("grid", torch.float32, n=24, d=3)
    n = x.shape[0]
    _same_as_rust(tt.knn(x, 1, metric=metric, backend=backend), x, 1, metric=metric)
    _same_as_rust(tt.knn(x, n - 1, metric=metric, backend=backend), x, n - 1, metric=metric)
    # a row is a candidate of itself (distance 0, tied with its duplicates)
    res = tt.knn(x, n, metric=metric, exclude_self=False, backend=backend)
    _same_as_rust(res, x, n, metric=metric, exclude_self=False)


@needs_triton
@pytest.mark.parametrize("backend", ["triton", "torch"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("metric", METRICS)
def test_reference_set(backend: str, dtype: torch.dtype, metric: str) -> None:
    x = _points("far", dtype, n=20, d=5)
    y = _points("far", dtype, n=45, d=5, seed=1)
    y[7] = x[3]  # a query that is also a reference row: exclude_self does not apply
    for exclude_self in (True, False):
        res = tt.knn(x, 6, y, metric=metric, exclude_self=exclude_self, backend=backend)
        _same_as_rust(res, x, 6, y, metric=metric, exclude_self=exclude_self)


@needs_triton
def test_candidate_overflow_is_settled_exactly(monkeypatch: pytest.MonkeyPatch) -> None:
    """More exact duplicates than a row's candidate slots: those rows take the exact fallback."""
    from tripletcore.torch.triton import _knn, _knn_kernels

    g = torch.Generator().manual_seed(5)
    cap = _knn_kernels.candidate_capacity(3)
    dup = cap + 8
    x = torch.cat([torch.ones(dup, 4), torch.randn(20, 4, generator=g) * 3])
    x[dup:] += torch.arange(20)[:, None]  # the other rows apart from the duplicates
    fallback_rows: list[torch.Tensor] = []
    real = _knn.torch_knn

    def spy(problem, rows=None):
        fallback_rows.append(rows)
        return real(problem, rows)

    monkeypatch.setattr(_knn, "torch_knn", spy)
    for metric in ("euclidean", "cosine"):
        fallback_rows.clear()
        _same_as_rust(tt.knn(x, 3, metric=metric, backend="triton"), x, 3, metric=metric)
        assert len(fallback_rows) == 1 and fallback_rows[0] is not None
        assert set(range(dup)) <= set(fallback_rows[0].tolist())


@needs_triton
def test_k_above_the_kernels_buffers_uses_the_tiled_path() -> None:
    from tripletcore.torch.triton._knn_kernels import MAX_K

    x = _points("grid", torch.float64, n=MAX_K + 10, d=3)
    k = MAX_K + 1
    _same_as_rust(tt.knn(x, k, backend="triton"), x, k)


def test_cpu_auto_is_the_rust_kernel() -> None:
    x = _points("random", torch.float32, n=30)
    res = tt.knn(x, 4)
    _same_as_rust(res, x, 4)
    y = _points("random", torch.float64, n=12, seed=3)
    res = tt.knn(x, 4, y, backend="rust")  # float32 with float64: both in float64
    _same_as_rust(res, x.double(), 4, y)


@pytest.mark.parametrize(
    "backend", ["rust", "torch"] + (["triton"] if importlib.util.find_spec("triton") else [])
)
@pytest.mark.parametrize("metric", METRICS)
def test_retrieval_metrics_equal_numpy(backend: str, metric: str) -> None:
    g = torch.Generator().manual_seed(9)
    labels = torch.randint(0, 4, (36,), generator=g)
    x = torch.randn(36, 5, generator=g) + labels[:, None].float()
    x[2] = x[3]
    got = tt.retrieval_metrics(x, labels, ks=(1, 3, 5), metric=metric, backend=backend)
    want = tripletcore.retrieval_metrics(x.numpy(), labels.numpy(), ks=(1, 3, 5), metric=metric)
    assert got == want


def _err(exc, arg, fn, *a, **kw):
    with pytest.raises(exc) as info:
        fn(*a, **kw)
    if arg is not None:
        assert getattr(info.value, "arg", None) == arg, info.value
    return info.value


def test_bad_input(monkeypatch: pytest.MonkeyPatch) -> None:
    x = torch.randn(10, 3)
    _err(ValueError, "x", tt.knn, torch.randn(10), 2)
    _err(ValueError, "x", tt.knn, torch.randn(0, 3), 2)
    _err(TypeError, None, tt.knn, x.numpy(), 2)
    _err(TypeError, None, tt.knn, x.int(), 2)
    _err(TypeError, None, tt.knn, x.half(), 2)  # half precision is for CUDA
    _err(ValueError, "y", tt.knn, x, 2, torch.randn(5, 4))
    _err(ValueError, "y", tt.knn, x, 2, torch.randn(5, 3, device="meta"))
    for k in (0, 10, -1):
        _err(ValueError, "k", tt.knn, x, k)
    _err(ValueError, "k", tt.knn, x, 6, torch.randn(5, 3))
    _err(TypeError, None, tt.knn, x, 2.0)
    _err(TypeError, None, tt.knn, x, True)
    bad = x.clone()
    bad[4, 1] = float("nan")
    for backend in ("auto", "torch", "rust"):
        _err(ValueError, "x", tt.knn, bad, 2, backend=backend)
        _err(ValueError, "y", tt.knn, x, 2, bad.clone().fill_(float("inf")), backend=backend)
    _err(ValueError, "metric", tt.knn, x, 2, metric="manhattan")
    _err(ValueError, "backend", tt.knn, x, 2, backend="cuda")
    zero = x.clone()
    zero[3] = 0
    _err(ValueError, "x", tt.knn, zero, 2, metric="cosine", backend="torch")
    _err(ValueError, "y", tt.knn, x, 2, zero, metric="cosine", backend="torch")
    monkeypatch.setenv("TRITON_INTERPRET", "0")  # outside the interpreter: CUDA only
    if not torch.cuda.is_available():
        msg = _err(ValueError, "backend", tt.knn, x, 2, backend="triton")
        assert "CUDA" in str(msg)
    _err(ValueError, "labels", tt.retrieval_metrics, x, torch.arange(10))
    _err(ValueError, "ks", tt.retrieval_metrics, x, torch.zeros(10, dtype=torch.int64), ks=(0,))
    _err(ValueError, "labels", tt.retrieval_metrics, x, torch.zeros(9, dtype=torch.int64))


@needs_triton
def test_aot_compile_knn_kernels() -> None:
    """The k = 10 float32 screen, collect and settle through the AOT CLI for sm_80 and
    sm_90: no spills, and no FMA in the exact sums (the CLI checks the settle's PTX)."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_DEFAULT_FP_FUSION"] = "1"
    only = (
        "knn_threshold[fp32,sq,self,k=10]|knn_collect[fp32,sq,self,k=10]|knn_settle[fp32,sq,k=10]"
    )
    res = subprocess.run(
        [sys.executable, "-m", "tripletcore.torch.triton", "--compile", "80,90", "--only", only],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("sm_")]
    assert [ln.split()[0] for ln in lines] == ["sm_80"] * 3 + ["sm_90"] * 3, res.stdout
    assert all("spills 0/0 B" in ln for ln in lines), res.stdout
