"""The Theorem 3 counterexample search (research.theorem3): a quick run writes
its files, and its helpers work without the lead solver."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

import tripletcore as tc

pytest.importorskip("scipy")

TINY = 1e-9


def _config(seed: int, m: int, n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    while True:
        lab = rng.integers(0, k, m).astype(np.int64)
        _, counts = np.unique(lab, return_counts=True)
        if counts.size >= 2 and counts.max() >= 2:
            break
    kind = seed % 3
    if kind == 0:
        x = rng.standard_normal((m, n))
    elif kind == 1:  # collinear, many exact ties
        x = np.outer(rng.integers(0, 4, m), np.ones(n)).astype(np.float64)
    else:  # near-duplicates across classes
        base = rng.standard_normal((2, n))
        x = base[rng.integers(0, 2, m)] + 1e-3 * rng.standard_normal((m, n))
    return x, lab


def test_theorem3_quick_run_writes_its_files(tmp_path: object) -> None:
    pytest.importorskip("matplotlib")
    from pathlib import Path

    from research import theorem3

    out = Path(str(tmp_path)) / "search"
    assert theorem3.main(["--quick", "--seed", "1", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert (out / "ratios.png").stat().st_size > 0
    assert summary["worst"] and all((out / w["file"]).exists() for w in summary["worst"])
    ratios = summary["max_ratio"]
    assert 0.5 - TINY <= ratios["lp_over_L"] <= 1.0 + TINY
    assert ratios["lower_over_L"] <= ratios["upper_over_L"] + TINY
    worst = np.load(out / summary["worst"][0]["file"])
    assert tc.hardest_triplet(worst["X"], worst["labels"]).value > 0


def test_theorem3_helpers_without_the_lead_solver(monkeypatch: pytest.MonkeyPatch) -> None:
    from research import theorem3

    monkeypatch.setitem(sys.modules, "tripletcore.theory", None)
    assert theorem3.lead_solver() is None
    x, lab = _config(5, 7, 2, 3)
    cfg = theorem3.SearchConfig.quick()
    value, y, how = theorem3.best_upper(x, lab, cfg, seeds=(0,))
    assert tc.is_triplet_separated(y, lab)
    assert value == tc.isometric_error(x, y).distance
    assert value <= tc.diameter(x).distance * (1 + 1e-12)
    # the counterexample checks run (here on line3, which is no counterexample)
    ev = theorem3.evaluate("t", np.array([[0.0], [2.0], [1.0]]), np.array([0, 0, 1]), cfg)
    assert ev is not None and ev.lower == pytest.approx(1.0)
    checks = theorem3.check_counterexample(ev, np.random.default_rng(0))
    assert checks["is_ts"] is False
    assert checks["line_all_permutations"] == pytest.approx(1.0)
    assert all(r == pytest.approx(1.0, abs=1e-6) for r in checks["perturbed_lower_over_L"])
