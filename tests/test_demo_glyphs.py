"""``tripletcore demo --dataset glyphs --quick``: trains the CNN on 50 glyph
classes and measures 50 unseen ones, in under a minute of CPU time.

The rendered glyphs are cached in pytest's cache folder (``.pytest_cache``),
so only the first run renders the class list (about 20 s)."""

import json
import math
import time

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("matplotlib")
pytest.importorskip("tqdm")

from tripletcore.app.cli import main  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def glyph_cache(request, monkeypatch):
    folder = request.config.cache.mkdir("tripletcore-glyphs")
    monkeypatch.setenv("XDG_CACHE_HOME", str(folder))
    return folder


def test_demo_glyphs_quick(tmp_path, capsys, glyph_cache):
    out = tmp_path / "report"
    cpu0, wall0 = time.process_time(), time.perf_counter()
    assert main(["demo", "--dataset", "glyphs", "--quick", "--no-progress", "--out", str(out)]) == 0
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    # CPU time, not wall time: the test machine may be shared (torch uses one thread)
    assert cpu < 60, f"quick glyph demo took {cpu:.0f} s of CPU ({wall:.0f} s wall)"
    printed = capsys.readouterr().out
    assert "unseen classes: Recall@1" in printed
    summary = json.loads((out / "summary.json").read_text())
    d = summary["data"]
    assert (d["classes"], d["train_classes"], d["test_classes"]) == (100, 50, 50)
    assert d["train"] == d["test"] == 50 * 12
    before, after = summary["before"], summary["after"]
    for s in (before, after):
        for key in ("recall_at_1", "map_at_r", "hardest", "iso_lower", "spread"):
            assert math.isfinite(s[key]), key
        assert s["iso_lower"] == pytest.approx(max(0.0, s["hardest"]) / 2)
    # seed 0 on this machine: R@1 0.49 -> 0.73, MAP@R 0.15 -> 0.34 on the unseen classes
    assert after["map_at_r"] > before["map_at_r"] + 0.05
    assert after["recall_at_1"] > before["recall_at_1"]
    assert len(summary["history"]) == 3  # epochs 0, 3, 6
    assert (out / "training.png").read_bytes().startswith(PNG)
    md = (out / "summary.md").read_text()
    assert "glyphs" in md and "| Recall@1 |" in md
    emb = np.load(out / "test_embeddings.npy")
    assert emb.shape == (600, 32)
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


def test_demo_unknown_dataset_names_the_option(capsys):
    assert main(["demo", "--dataset", "omniglot"]) == 2
    err = capsys.readouterr().err
    assert "--dataset" in err and "omniglot" in err and "Traceback" not in err
