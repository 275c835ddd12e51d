"""The paper figures and the collapse experiment (research.paper, research.collapse).

Both entry points run once with --quick (concurrently) into a temporary
folder; the checks read what they wrote. The NumPy backprop of the
experiment's model is checked against finite differences and torch.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tripletcore as tc

pytest.importorskip("matplotlib")

from research import collapse, paper  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]  # the checkout: `python -m research.*` runs there
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FIGURES = ["fig2_setup", "fig3_haus", "fig4_iso", "fig5_hardest", "fig6_collapse"]
COLLAPSE_PLOTS = [f"collapse_{k}" for k in collapse.MEASURES] + [
    "collapse_geometric",
    "collapse_curves",
    "collapse_vs_ratio",
]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Run ``paper --quick`` and ``collapse --quick`` side by side."""
    base = tmp_path_factory.mktemp("experiments")
    # one BLAS thread: the models are small, and the two runs share the cores
    env = dict(os.environ, MPLBACKEND="Agg", OPENBLAS_NUM_THREADS="1")
    procs = {}
    for name in ("paper", "collapse"):
        out = base / name
        cmd = [
            sys.executable,
            "-m",
            f"research.{name}",
            "--quick",
            "--out",
            str(out),
        ]
        procs[name] = (
            out,
            subprocess.Popen(
                cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT
            ),
        )
    done = {}
    for name, (out, proc) in procs.items():
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"{name} failed:\n{stdout}\n{stderr}"
        done[name] = (out, stdout, stderr)
    return done


def assert_png(path: Path):
    assert path.is_file(), path
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, path
    assert len(data) > 2000, (path, len(data))


def test_every_png_is_written(runs):
    out, _, _ = runs["paper"]
    for name in FIGURES + COLLAPSE_PLOTS:  # paper's main runs the collapse experiment too
        assert_png(out / f"{name}.png")
    out, _, _ = runs["collapse"]
    for name in COLLAPSE_PLOTS:
        assert_png(out / f"{name}.png")
    assert (out / "collapse.md").read_text().count("\n|") >= 4


def test_paper_numbers_are_consistent(runs):
    out, stdout, _ = runs["paper"]
    r = json.loads((out / "paper.json").read_text())
    X, y = np.array(r["toy"]), np.array(r["toy_labels"])
    assert X.shape == (5, 2) and len(set(y.tolist())) == 2
    assert not r["toy_separated"] and not tc.is_triplet_separated(X, y)
    h = tc.hardest_triplet(X, y)
    assert r["hardest"]["value"] == pytest.approx(h.value)
    L = max(0.0, h.value)
    assert L > 0

    haus, iso = np.array(r["haus"]["Y"]), np.array(r["iso"]["Y"])
    assert tc.is_triplet_separated(haus, y) and tc.is_triplet_separated(iso, y)
    d_iso = tc.isometric_error(X, iso).distance
    d_inf = tc.sup_displacement(X, haus).distance
    assert r["iso"]["value"] == pytest.approx(d_iso, rel=1e-12)
    assert r["haus"]["value"] == pytest.approx(d_inf, rel=1e-12)
    # the rigorous lower bounds hold for every Triplet-Separated configuration
    assert d_iso >= L / 2 - 1e-12
    assert d_inf >= L / 4 - 1e-12
    assert tc.isometric_error(X, haus).distance >= L / 2 - 1e-12
    # d_haus(f, g) <= d_inf(f, g) and d_iso(f, g) <= 2 d_inf(f, g)
    assert tc.class_hausdorff(X, haus, y).distance <= d_inf + 1e-12
    assert tc.isometric_error(X, haus).distance <= 2 * d_inf + 1e-12
    # a solution never worse than collapsing everything onto one point
    assert d_iso <= tc.diameter(X).distance + 1e-12

    R, ry = np.array(r["random_points"]), np.array(r["random_labels"])
    fit = np.array(r["collapse_fit"]["Y"])
    assert R.shape == (20, 2) and tc.is_triplet_separated(fit, ry)
    ratio = collapse.mean_pairwise_distance(fit) / collapse.mean_pairwise_distance(R)
    assert r["spread_ratio"] == pytest.approx(ratio)
    assert 1 <= r["distinct"] <= 20
    assert f"L = {L:.4f}" in stdout and "spread ratio" in stdout


def test_collapse_results_are_sane(runs):
    out, stdout, stderr = runs["collapse"]
    r = json.loads((out / "collapse.json").read_text())
    cfg = collapse.GridConfig.quick()
    assert len(r["cells"]) == len(cfg.batches) * len(cfg.dims) * cfg.seeds
    for cell in r["cells"]:
        assert cell["curve"][0][0] == 0 and cell["curve"][-1][0] == cfg.steps
        assert cell["curve"][-1][1] == pytest.approx(cell["final"]["spread"])
        for m in (cell["init"], cell["final"]):
            assert 0 <= m["recall1"] <= 1 and 0 <= m["at_margin"] <= 1
            assert 0 <= m["erank_frac"] <= 1 + 1e-9 and m["mean_dist"] <= 2 + 1e-9
            assert m["spread"] == pytest.approx(
                m["mean_dist"] / collapse.random_sphere_distance(cell["dim"])
            )
    assert r["geometric"] and all(g["separated"] for g in r["geometric"])
    assert "[  4/4]" in stderr  # the progress indicator
    assert "| N | n |" in stdout


# ---------------------------------------------------------------- backprop


def _mlp(sizes, seed=0):
    rng = np.random.default_rng(seed)
    model = collapse.MLP.init(sizes, rng, dtype=np.float64)
    for p in model.params:  # non-zero biases so every term of the gradient is exercised
        p += 0.1 * rng.standard_normal(p.shape)
    return model, rng


@pytest.mark.parametrize("sizes", [[5, 3], [5, 7, 3], [4, 6, 5, 2]])
def test_backprop_matches_finite_differences(sizes):
    model, rng = _mlp(sizes)
    x = rng.standard_normal((9, sizes[0]))
    C = rng.standard_normal((9, sizes[-1]))

    def f():
        return float(np.sum(C * model.embed(x)))

    e, cache = model.forward(x)
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, rtol=1e-12)
    grads = model.backward(e, cache, C)
    h = 1e-6
    for p, g in zip(model.params, grads, strict=True):
        num = np.zeros_like(p)
        for idx in np.ndindex(p.shape):
            old = p[idx]
            p[idx] = old + h
            up = f()
            p[idx] = old - h
            down = f()
            p[idx] = old
            num[idx] = (up - down) / (2 * h)
        np.testing.assert_allclose(g, num, rtol=1e-6, atol=1e-8)


def test_triplet_loss_chain_matches_finite_differences():
    # the whole training objective: model -> normalise -> batch-hard loss
    model, rng = _mlp([6, 8, 3], seed=3)
    x = rng.standard_normal((12, 6))
    y = np.repeat(np.arange(3), 4)

    def f():
        return tc.triplet_margin_loss(model.embed(x), y, margin=0.2, mining="batch_hard")[0]

    e, cache = model.forward(x)
    _, ge = tc.triplet_margin_loss(e, y, margin=0.2, mining="batch_hard")
    grads = model.backward(e, cache, ge)
    h = 1e-6
    W = model.params[0]
    num = np.zeros_like(W)
    for idx in np.ndindex(W.shape):
        old = W[idx]
        W[idx] = old + h
        up = f()
        W[idx] = old - h
        down = f()
        W[idx] = old
        num[idx] = (up - down) / (2 * h)
    np.testing.assert_allclose(grads[0], num, rtol=1e-5, atol=1e-8)


def test_backprop_matches_torch():
    torch = pytest.importorskip("torch")
    model, rng = _mlp([5, 7, 4], seed=1)
    x = rng.standard_normal((10, 5))
    G = rng.standard_normal((10, 4))
    e, cache = model.forward(x)
    grads = model.backward(e, cache, G)
    tp = [torch.tensor(p, requires_grad=True) for p in model.params]
    h = torch.relu(torch.tensor(x) @ tp[0] + tp[1]) @ tp[2] + tp[3]
    te = torch.nn.functional.normalize(h, dim=1)
    np.testing.assert_allclose(te.detach().numpy(), e, rtol=1e-12)
    (te * torch.tensor(G)).sum().backward()
    for g, t in zip(grads, tp, strict=True):
        np.testing.assert_allclose(g, t.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_adam_minimises_a_quadratic():
    p = [np.array([3.0, -2.0])]
    opt = collapse.Adam(lr=0.1)
    for _ in range(500):
        opt.step(p, [2 * p[0]])
    assert np.abs(p[0]).max() < 1e-2


# ---------------------------------------------------------------- measures and data


@pytest.mark.parametrize(("n", "expected"), [(2, 4 / np.pi), (3, 4 / 3)])
def test_random_sphere_distance_closed_forms(n, expected):
    assert collapse.random_sphere_distance(n) == pytest.approx(expected, rel=1e-12)


def test_random_sphere_distance_monte_carlo():
    rng = np.random.default_rng(0)
    for n in (5, 32):
        u = rng.standard_normal((200_000, n))
        v = rng.standard_normal((200_000, n))
        u /= np.linalg.norm(u, axis=1, keepdims=True)
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        mc = np.linalg.norm(u - v, axis=1).mean()
        assert collapse.random_sphere_distance(n) == pytest.approx(mc, rel=3e-3)
    assert collapse.random_sphere_distance(4096) == pytest.approx(np.sqrt(2), rel=1e-3)


def test_measures_of_a_collapsed_and_a_spread_embedding():
    labels = np.repeat(np.arange(4), 5)
    E = np.tile([[0.0, 1.0, 0.0]], (20, 1))
    m = collapse.measure(E, labels, margin=0.2)
    assert m.mean_dist == 0 and m.spread == 0 and m.erank == 0
    assert m.at_margin == 1 and m.loss == pytest.approx(0.2)
    # four well-separated tight clusters on the sphere: no anchor at the margin, perfect recall
    centres = np.eye(4)
    rng = np.random.default_rng(0)
    E = centres[labels] + 1e-3 * rng.standard_normal((20, 4))
    E /= np.linalg.norm(E, axis=1, keepdims=True)
    m = collapse.measure(E, labels, margin=0.2)
    assert m.recall1 == 1 and m.at_margin == 0 and m.loss == 0
    assert 2.9 < m.erank <= 4  # three centred directions carry the spread


def test_effective_rank_of_isotropic_directions():
    E = np.vstack([np.eye(6), -np.eye(6)])
    assert collapse.effective_rank(E) == pytest.approx(6.0)


def test_sample_batch_is_p_by_k():
    data = collapse.load_dataset("synthetic", seed=0)
    assert data.name == "synthetic" and len(np.unique(data.y_test)) == 10
    rng = np.random.default_rng(0)
    for size in (8, 30, 2048):
        x, y = collapse.sample_batch(data, size, rng)
        assert x.shape == (size, data.x_train.shape[1]) and y.shape == (size,)
        _, counts = np.unique(y, return_counts=True)
        assert len(counts) == min(10, size // 2)
        assert counts.max() - counts.min() <= 1


def test_training_reduces_the_batch_hard_loss():
    data = collapse.load_dataset("synthetic", seed=1)
    r = collapse.train_cell(data, collapse.TrainConfig(batch=40, dim=8, steps=60, lr=3e-3))
    assert r.final.loss < r.init.loss
    assert r.final.recall1 > 0.3  # ten classes: chance is 0.1


def test_ts_boundary_field_sign():
    X, y = paper.TOY_POINTS, paper.TOY_LABELS
    red = X[y == 0]
    inside = paper.ts_boundary_field(red, np.array([X[3, 0]]), np.array([X[3, 1]]))
    assert inside[0, 0] < 0  # the blue point 3 violates Triplet-Separation of red
    # every other-class point of a Triplet-Separated configuration is on or outside
    rng = np.random.default_rng(2)
    Y = np.vstack([rng.standard_normal((4, 2)) * 0.2, rng.standard_normal((3, 2)) * 0.2 + 5])
    lab = np.array([0] * 4 + [1] * 3)
    assert tc.is_triplet_separated(Y, lab)
    for c in (0, 1):
        other = Y[lab != c]
        field = paper.ts_boundary_field(Y[lab == c], other[:, 0], other[:, 1])
        assert np.all(np.diag(field) >= 0)


def test_distinct_points():
    P = np.array([[0.0, 0.0], [0.0, 1e-6], [1.0, 0.0], [1.0, 5e-7], [3.0, 3.0]])
    assert paper.distinct_points(P, 1e-4) == 3


def test_replot_reads_back_the_report(runs, tmp_path):
    out, _, _ = runs["collapse"]
    for f in out.iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    (tmp_path / "collapse_spread.png").unlink()
    assert collapse.main(["--replot", "--out", str(tmp_path)]) == 0
    assert_png(tmp_path / "collapse_spread.png")
    report = collapse.report_from_json(tmp_path / "collapse.json")
    assert len(report.cells) == len(json.loads((out / "collapse.json").read_text())["cells"])


def test_power_law_fit_recovers_exponents():
    cfg = collapse.GridConfig(batches=(8, 32, 128), dims=(2, 8, 32), seeds=1)
    zero = collapse.Measures(0, 0, 0, 0, 0, 0, 0)
    cells = []
    for b in cfg.batches:
        for d in cfg.dims:
            m = collapse.Measures(0, 3.0 * b**-0.5 * d**0.25, 0, 0, 0, 0, 0)
            cells.append(collapse.CellResult(b, d, 0, zero, m, 0, 0))
    report = collapse.CollapseReport(cfg, "x", 0, 0, cells, [], 0, [])
    b_exp, c_exp, r2 = collapse.power_law_fit(report)
    assert b_exp == pytest.approx(-0.5) and c_exp == pytest.approx(0.25) and r2 == pytest.approx(1)
