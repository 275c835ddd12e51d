"""The glyph experiments' quick modes run end to end and write their outputs;
the research split keeps train, validation and test classes apart."""

import json

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("matplotlib")

from research import glyph_collapse, glyph_methods  # noqa: E402
from research.glyph_data import glyph_split  # noqa: E402


@pytest.fixture(autouse=True)
def glyph_cache(request, monkeypatch):
    # shared with tests/test_demo_glyphs.py: the class list renders once
    folder = request.config.cache.mkdir("tripletcore-glyphs")
    monkeypatch.setenv("XDG_CACHE_HOME", str(folder))


def test_split_parts_have_disjoint_classes():
    p = glyph_split(0, 40)
    assert p.classes == {"train": 16, "val": 4, "test": 20}
    assert p.x["train"].shape == (16 * 24, 32 * 32) and p.side == 32
    assert 0.0 <= p.x["test"].min() and p.x["test"].max() <= 1.0
    # disjoint classes: no image of one part appears in another
    rows = {k: {r.tobytes() for r in v} for k, v in p.x.items()}
    assert not rows["train"] & rows["test"] and not rows["val"] & rows["test"]
    assert not rows["train"] & rows["val"]
    pooled = glyph_split(0, 40, pool=2)
    assert pooled.side == 16 and pooled.x["val"].shape[1] == 256
    assert not np.array_equal(glyph_split(1, 40).x["test"][:5], p.x["test"][:5])


def test_glyph_methods_quick(tmp_path, capsys):
    methods = "batch_hard,rb_hcm_rep,multi_proxy_rounds,sc"
    assert glyph_methods.main(["--quick", "--methods", methods, "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "glyph_methods.json").read_text())
    rows = data["results"]
    assert [r["method"] for r in rows] == methods.split(",")
    for r in rows:
        assert 0.2 < r["recall_at_1"] <= 1.0  # 20 unseen classes: chance is 1/20
        assert 0.0 <= r["sub_iso_lower"] <= r["sub_iso_upper"] + 1e-9
        assert r["sub_iso_upper"] <= r["sub_diameter"] + 1e-9  # never worse than collapse
        assert r["test_iso_lower"] == pytest.approx(r["test_hardest"] / 2)
    md = (tmp_path / "glyph_methods.md").read_text()
    assert "Δ R@1 vs batch_hard" in md and "python -m research.glyph_methods --quick" in md
    assert "| sc |" in md  # the bounds table


def test_glyph_collapse_quick(tmp_path):
    assert glyph_collapse.main(["--quick", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "collapse.json").read_text())
    assert report["dataset"] == "glyphs"
    assert report["train_size"] == report["test_size"] == 60 * 24
    assert len(report["cells"]) == 4
    assert (tmp_path / "collapse.md").exists() and (tmp_path / "collapse_spread.png").exists()
