"""The torch backend protocol: every backend returns the same shapes and indices,
and a new backend plugs in by registering one object."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import tripletcore.torch as tt  # noqa: E402
from tripletcore.torch import _backend  # noqa: E402
from tripletcore.torch._backend import (  # noqa: E402
    backend_choices,
    register_backend,
    registered_backends,
    resolve_backend,
)

RNG = np.random.default_rng(11)


def batch(n=40, d=5, classes=6, dtype=torch.float64):
    # a grid: many exact ties, so the tie rule is exercised
    x = torch.tensor(RNG.integers(-2, 3, (n, d)), dtype=dtype)
    labels = torch.tensor(RNG.integers(0, classes, n))
    return x, labels


def test_builtins_in_auto_order():
    names = [b.name for b in registered_backends()]
    assert names[:3] == ["triton", "rust", "torch"]
    assert backend_choices()[:4] == ("auto", "triton", "rust", "torch")
    assert resolve_backend("auto", torch.device("cpu")).name == "rust"
    assert resolve_backend("auto", torch.device("meta")).name == "torch"


@pytest.mark.parametrize("metric", ["euclidean", "sqeuclidean", "cosine"])
def test_backends_agree_on_the_contract(metric):
    x, labels = batch()
    ref, ref_labels = batch(n=17)
    rust, tiled = (resolve_backend(b, x.device) for b in ("rust", "torch"))
    for kw in (
        {},
        {"ref": ref, "ref_labels": ref_labels},
        {"ref": ref, "ref_labels": ref_labels, "ref_follows_batch": True},
        {"ref": ref[:0], "ref_labels": ref_labels[:0], "ref_follows_batch": True},
    ):
        out = [b.mine_batch_hard(x, labels, metric, chunk_size=7, **kw) for b in (rust, tiled)]
        for pos, neg in out:
            assert pos.dtype == neg.dtype == torch.int64
            assert pos.shape == neg.shape == (x.shape[0],)
        assert all(torch.equal(a, b) for a, b in zip(out[0], out[1], strict=True)), kw
    for fallback in ("hardest", "easiest", "drop"):
        out = [
            b.mine_semi_hard(x, labels, 0.5, metric, fallback, chunk_size=7) for b in (rust, tiled)
        ]
        for t in out:
            assert len(t) == 3 and all(v.dtype == torch.int64 and v.ndim == 1 for v in t)
        assert all(torch.equal(a, b) for a, b in zip(out[0], out[1], strict=True))
    for reduction, shape in (("mean", ()), ("none", (x.shape[0],))):
        for b in (rust, tiled):
            loss = b.loss(x, labels, 0.2, "batch_hard", metric, False, reduction, "hardest")
            assert loss.shape == shape and loss.dtype == x.dtype


class Recording:
    """A third backend: the tiled one, counting its calls (as a Triton one would plug in)."""

    name = "recording"
    loss_checks_finite = False

    def __init__(self):
        self.inner = resolve_backend("torch", torch.device("cpu"))
        self.calls = []

    def check_device(self, device):
        return None

    def auto_for(self, device):
        return device.type == "cpu"

    def mine_batch_hard(self, *args, **kwargs):
        self.calls.append("mine_batch_hard")
        return self.inner.mine_batch_hard(*args, **kwargs)

    def mine_semi_hard(self, *args, **kwargs):
        self.calls.append("mine_semi_hard")
        return self.inner.mine_semi_hard(*args, **kwargs)

    def loss(self, *args, **kwargs):
        self.calls.append("loss")
        return self.inner.loss(*args, **kwargs)


def test_a_registered_backend_serves_every_caller(monkeypatch):
    monkeypatch.setattr(_backend, "_REGISTRY", dict(_backend._REGISTRY))
    rec = Recording()
    register_backend(rec, prefer=True)
    assert backend_choices() == ("auto", "recording", "triton", "rust", "torch")
    x, labels = batch(dtype=torch.float32)
    for backend in ("auto", "recording"):
        rec.calls.clear()
        loss = tt.TripletMarginLoss(backend=backend)(x, labels)
        expect = tt.TripletMarginLoss(backend="torch")(x, labels)
        assert torch.equal(loss, expect)
        bh = tt.BatchHardMiner(backend=backend)(x, labels)
        assert all(
            torch.equal(a, b)
            for a, b in zip(bh, tt.BatchHardMiner(backend="torch")(x, labels), strict=True)
        )
        sh = tt.SemiHardMiner(backend=backend)(x, labels)
        assert all(
            torch.equal(a, b)
            for a, b in zip(sh, tt.SemiHardMiner(backend="torch")(x, labels), strict=True)
        )
        memory = tt.CrossBatchMemory(tt.TripletMarginLoss(backend=backend), 5, 30)
        memory(x, labels)
        memory(x + 1, labels)
        assert rec.calls == ["loss", "mine_batch_hard", "mine_semi_hard"] + ["mine_batch_hard"] * 2


def test_a_backend_named_auto_is_refused(monkeypatch):
    monkeypatch.setattr(_backend, "_REGISTRY", dict(_backend._REGISTRY))
    rec = Recording()
    rec.name = "auto"
    with pytest.raises(ValueError, match="'auto' is not a backend name"):
        register_backend(rec)


def test_a_backend_without_prefer_comes_after_the_builtins(monkeypatch):
    monkeypatch.setattr(_backend, "_REGISTRY", dict(_backend._REGISTRY))
    rec = Recording()
    register_backend(rec)
    assert backend_choices() == ("auto", "triton", "rust", "torch", "recording")
    assert resolve_backend("auto", torch.device("cpu")).name == "rust"
    assert resolve_backend("recording", torch.device("cpu")) is rec
