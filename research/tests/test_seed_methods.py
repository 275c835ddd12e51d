"""The seed-methods experiment on digits runs every method end to end (a few
epochs) and reports sane numbers; the split is stratified and disjoint."""

import numpy as np
import pytest

pytest.importorskip("sklearn")

from research import seed_methods as sm  # noqa: E402


@pytest.fixture(scope="module")
def data():
    return sm.load_digits_split(0)


def test_split_is_stratified_and_disjoint(data):
    sizes = {k: len(v) for k, v in data.y.items()}
    assert sum(sizes.values()) == 1797
    assert sizes["train"] > sizes["test"] > sizes["val"]
    for part in data.y.values():
        counts = np.bincount(part.numpy(), minlength=10)
        assert counts.min() > 0.8 * counts.mean()
    rows = [set(map(tuple, v.numpy().round(4).tolist())) for v in data.x.values()]
    assert all(len(r) > 0 for r in rows)


@pytest.mark.parametrize("method", list(sm.METHODS))
def test_every_method_trains(data, method):
    cfg = sm.Config(epochs=1, seeds=(0,), patience=1)
    r = sm.train(method, data, cfg, seed=0)
    assert 0.85 < r["recall_at_1"] <= 1.0  # raw digits already retrieve well
    assert 0.3 < r["map_at_r"] <= 1.0
    assert r["best_epoch"] == 0


def test_rounds_restart_with_fresh_proxies(data):
    cfg = sm.Config(epochs=6, seeds=(0,), patience=1, lr=3e-2)  # too large: stalls early
    r = sm.train("multi_proxy_rounds", data, cfg, seed=0)
    assert r["rounds"] >= 1
    assert len(r["covering_radii"]) == r["rounds"]
    assert all(0 <= v <= 2 for v in r["covering_radii"])  # unit sphere


def test_table_and_bad_method(data):
    rows = [
        {"method": "sc", "recall_at_1": 0.9, "map_at_r": 0.5, "rounds": 0},
        {"method": "sc", "recall_at_1": 1.0, "map_at_r": 0.7, "rounds": 0},
    ]
    t = sm.table(rows, ["batch_hard", "sc"])
    assert "| sc: " in t and "95.00 ± 7.07" in t and "60.00 ± 14.14" in t
    assert "batch_hard" not in t  # no runs, no row
    with pytest.raises(ValueError, match="unknown method"):
        sm.train("nope", data, sm.Config(), 0)
