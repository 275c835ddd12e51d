"""Conventions users already know: knn returns ``(distances, indices)`` as
scikit-learn and faiss do, options are keyword-only, options are typed as
``Literal``s and ``reduction="none"`` types as an array."""

import inspect
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import tripletcore as tc

ROOT = Path(__file__).resolve().parents[1]
RNG = np.random.default_rng(11)
X = RNG.standard_normal((30, 5))
Y = RNG.standard_normal((20, 5))
LX = RNG.integers(0, 3, 30)
LY = RNG.integers(0, 3, 20)

# Arguments that are data, not options: positional after the required ones.
DATA = {"Y", "ref_labels", "seeds", "reference", "reference_labels"}


def test_knn_is_distances_then_indices_like_sklearn_and_faiss():
    res = tc.knn(X, 4, Y)
    assert type(res)._fields == ("distances", "indices")
    distances, indices = res
    assert distances is res.distances and indices is res.indices
    assert indices.dtype == np.int64 and distances.dtype == np.float64
    d = np.sqrt(((X[:, None, :] - Y[None, :, :]) ** 2).sum(-1))
    want = np.argsort(d, axis=1, kind="stable")[:, :4]
    np.testing.assert_array_equal(indices, want)
    np.testing.assert_allclose(distances, np.take_along_axis(d, want, axis=1), rtol=1e-12)


def test_dask_knn_has_the_same_order():
    tcd = pytest.importorskip("tripletcore.dask")
    res = tcd.knn(X, 3, block_rows=7)
    assert type(res)._fields == ("distances", "indices")
    want = tc.knn(X, 3)
    np.testing.assert_array_equal(res.indices, want.indices)
    np.testing.assert_array_equal(res.distances, want.distances)


def test_batch_hard_binds_a_positional_reference_set_to_Y():
    by_position = tc.batch_hard(X, LX, Y, LY)
    by_name = tc.batch_hard(X, LX, Y=Y, ref_labels=LY)
    for a, b in zip(by_position, by_name, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(by_position.neg_idx, tc.batch_hard(X, LX).neg_idx)


@pytest.mark.parametrize(
    "call",
    [
        lambda: tc.cdist(X, Y, "cosine"),
        lambda: tc.knn(X, 3, None, "cosine"),
        lambda: tc.batch_hard(X, LX, None, None, "cosine"),
        lambda: tc.semi_hard(X, LX, 0.3),
        lambda: tc.triplet_margin_loss(X, LX, 0.3),
        lambda: tc.retrieval_metrics(X, LX, None, None, (1, 2)),
        lambda: tc.hausdorff(X, Y, True),
        lambda: tc.is_triplet_separated(X, LX, 0.1),
        lambda: tc.pk_batch(LX, 6, 0),
    ],
    ids=[
        "cdist",
        "knn",
        "batch_hard",
        "semi_hard",
        "loss",
        "retrieval",
        "hausdorff",
        "ts",
        "pk_batch",
    ],
)
def test_options_by_position_are_refused(call):
    with pytest.raises(TypeError, match="positional"):
        call()


def public_functions():
    import tripletcore.theory as th

    mods = [tc, th]
    try:
        import tripletcore.dask as tcd

        mods.append(tcd)
    except ImportError:
        pass
    for mod in mods:
        for name in mod.__all__:
            obj = getattr(mod, name)
            if inspect.isfunction(obj):
                yield f"{mod.__name__}.{name}", obj


def test_every_public_option_is_keyword_only():
    checked = []
    for name, fn in public_functions():
        for p in inspect.signature(fn).parameters.values():
            if p.default is not inspect.Parameter.empty and p.name not in DATA:
                assert p.kind is inspect.Parameter.KEYWORD_ONLY, f"{name}({p.name}=...)"
        checked.append(name)
    assert {"tripletcore.knn", "tripletcore.batch_hard", "tripletcore.dask.knn"} <= set(checked)


def test_literal_options_and_reduction_overloads_type_check(tmp_path):
    snippet = tmp_path / "use.py"
    snippet.write_text(
        textwrap.dedent(
            """
            from typing import assert_type

            import numpy as np
            import numpy.typing as npt

            import tripletcore as tc

            X = np.zeros((4, 2))
            y = np.array([0, 0, 1, 1])
            loss, _ = tc.triplet_margin_loss(X, y)
            assert_type(loss, float)
            summed, _ = tc.triplet_margin_loss(X, y, reduction="sum")
            assert_type(summed, float)
            per_anchor, _ = tc.triplet_margin_loss(X, y, reduction="none")
            assert_type(per_anchor, npt.NDArray[np.float64])
            d, i = tc.knn(X, 1)
            tc.batch_hard(X, y, metric="manhattan")  # BAD: not a Metric
            tc.triplet_margin_loss(X, y, mining="hardest")  # BAD: not a Mining
            """
        )
    )
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(snippet)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    bad = [str(n) for n, line in enumerate(snippet.read_text().splitlines(), 1) if "BAD" in line]
    errors = [line for line in out.stdout.splitlines() if ": error:" in line]
    assert [e.split(":")[1] for e in errors] == bad, out.stdout
    assert "manhattan" in errors[0] and "call-overload" in errors[1]


def test_torch_modules_show_their_settings_and_document_forward():
    torch = pytest.importorskip("torch")
    import tripletcore.torch as tt

    shown = {
        tt.TripletMarginLoss(margin=0.3, fallback="drop"): ["margin=0.3", "fallback='drop'"],
        tt.BatchHardMiner(metric="cosine"): ["metric='cosine'"],
        tt.SemiHardMiner(margin=0.4, fallback="easiest"): ["margin=0.4", "fallback='easiest'"],
        tt.CrossBatchMemory(None, 8, 64): ["embedding_size=8", "memory_size=64"],
        tt.RepresentativeTripletLoss(margin=0.7): ["margin=0.7"],
    }
    for module, parts in shown.items():
        for part in parts:
            assert part in repr(module), (part, repr(module))
    for name in tt.__all__:
        cls = getattr(tt, name)
        if isinstance(cls, type) and issubclass(cls, torch.nn.Module):
            assert cls.__doc__, name
            forward = cls.__dict__.get("forward")
            assert forward is not None and forward.__doc__, f"{name}.forward"
            assert "extra_repr" in cls.__dict__, f"{name}.extra_repr"
