"""Does batch-hard training collapse when the batch size N is much larger
than the embedding dimension n? (seed paper 001, "Novel Insights on Network
Collapse").

Two experiments on a grid of N x n:

* **training**: a small NumPy MLP with L2-normalised outputs (as FaceNet) is
  trained on scikit-learn's digits (or a synthetic fallback) with the
  batch-hard triplet loss of :func:`tripletcore.triplet_margin_loss`, the same
  number of gradient steps in every cell; collapse is measured on held-out
  data.
* **geometric**: for random labelled configurations of N points in n
  dimensions, how much the nearest Triplet-Separated configuration (the
  paper's ``f*_haus``) shrinks.

Run ``python -m research.collapse [--out DIR] [--quick] [--seed S]`` from the
repository root.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, cast

import numpy as np
import numpy.typing as npt

import tripletcore as tc
from tripletcore import pk_batch
from tripletcore.theory import nearest_triplet_separated

from .common import load_digits, log_to_stderr, stratified_parts

F64 = npt.NDArray[np.float64]
Arr = npt.NDArray[np.floating[Any]]
I64 = npt.NDArray[np.int64]

# ---------------------------------------------------------------- solver access


class NearestTS(NamedTuple):
    """A verified Triplet-Separated configuration near ``X``."""

    Y: F64
    value: float
    objective: str
    method: str


def nearest_ts(X: Any, labels: Any, objective: str = "sup", *, seed: int = 0) -> NearestTS:
    """The library's solver :func:`tripletcore.theory.nearest_triplet_separated`,
    its result as float64 arrays and plain fields."""
    r = nearest_triplet_separated(X, labels, objective, seed=seed)
    return NearestTS(np.asarray(r.Y, np.float64), float(r.value), str(r.objective), str(r.method))


# ---------------------------------------------------------------- data


@dataclass
class Dataset:
    """Train/held-out split; images are 8 x 8 for digits (used by augmentation)."""

    name: str
    x_train: F64
    y_train: I64
    x_test: F64
    y_test: I64
    image_shape: tuple[int, int] | None


def load_dataset(kind: str = "auto", seed: int = 0, test_fraction: float = 0.3) -> Dataset:
    """scikit-learn's digits when importable (``kind="auto"`` or ``"digits"``),
    else ten overlapping Gaussian classes in 64-D (``"synthetic"``). Features are
    centred and scaled with training statistics; the split is stratified."""
    rng = np.random.default_rng(seed)
    x: F64
    y: I64
    shape: tuple[int, int] | None = None
    name = "synthetic"
    if kind in ("auto", "digits"):
        try:
            x, y = load_digits()
        except ImportError:
            if kind == "digits":
                raise
        else:
            shape, name = (8, 8), "digits"
    if name == "synthetic":
        x, y = _synthetic(rng)
    test, train = stratified_parts(y, (test_fraction,), rng)
    mean = x[train].mean(axis=0)
    scale = float(x[train].std()) or 1.0
    x = (x - mean) / scale
    return Dataset(name, x[train], y[train], x[test], y[test], shape)


def _synthetic(
    rng: np.random.Generator, classes: int = 10, per_class: int = 180
) -> tuple[F64, I64]:
    # class means closer than the noise in most directions, so classes overlap
    dim = 64
    means = rng.standard_normal((classes, dim)) * 0.6
    basis = rng.standard_normal((dim, 8))
    x = np.concatenate(
        [
            means[c]
            + rng.standard_normal((per_class, dim)) * 0.8
            + rng.standard_normal((per_class, 8)) @ basis.T * 0.3
            for c in range(classes)
        ]
    )
    return x, np.repeat(np.arange(classes, dtype=np.int64), per_class)


def sample_batch(
    data: Dataset, size: int, rng: np.random.Generator, augment: bool = True
) -> tuple[F64, I64]:
    """A P x K batch of exactly ``size`` rows: P = min(#classes, size // 2)
    random classes, the rows shared out as evenly as possible (K = size / P),
    drawn without replacement while the class has rows left. Augmentation (a
    random shift of up to one pixel and a little noise) keeps repeats distinct
    when a batch is larger than a class."""
    idx = pk_batch(data.y_train, size, rng)
    x = data.x_train[idx]
    if augment:
        x = _augment(x, data.image_shape, rng)
    return x, data.y_train[idx]


def _augment(x: F64, shape: tuple[int, int] | None, rng: np.random.Generator) -> F64:
    out = x.copy()
    if shape is not None:
        img = out.reshape(len(x), *shape)
        shifts = rng.integers(-1, 2, size=(len(x), 2))
        for s in np.unique(shifts, axis=0):
            m = np.all(shifts == s, axis=1)
            img[m] = np.roll(img[m], (int(s[0]), int(s[1])), axis=(1, 2))
        out = img.reshape(len(x), -1)
    return out + 0.1 * rng.standard_normal(out.shape)


# ---------------------------------------------------------------- the model


@dataclass
class MLP:
    """``x -> relu(x W_1 + b_1) -> ... -> W_L -> z / ||z||`` (no hidden layer:
    a linear map). Parameters alternate weights and biases."""

    params: list[Arr]

    @classmethod
    def init(
        cls,
        sizes: Sequence[int],
        rng: np.random.Generator,
        dtype: type[np.floating[Any]] = np.float32,
    ) -> MLP:
        params: list[Arr] = []
        for a, b in zip(sizes[:-1], sizes[1:], strict=True):
            params.append((rng.standard_normal((a, b)) * math.sqrt(2.0 / a)).astype(dtype))
            params.append(np.zeros(b, dtype))
        return cls(params)

    def forward(self, x: Arr) -> tuple[Arr, list[Arr]]:
        """Unit-norm embeddings and the cache for :meth:`backward`."""
        h = x.astype(self.params[0].dtype, copy=False)
        cache = [h]
        layers = len(self.params) // 2
        for k in range(layers):
            h = h @ self.params[2 * k] + self.params[2 * k + 1]
            if k < layers - 1:
                h = np.maximum(h, 0)
            cache.append(h)
        norm = np.maximum(np.linalg.norm(h, axis=1, keepdims=True), 1e-12)
        e = h / norm
        cache.append(norm)
        return e, cache

    def backward(self, e: Arr, cache: list[Arr], grad_e: Arr) -> list[Arr]:
        """Gradients of the parameters given ``dL/de``."""
        norm = cache[-1]
        g_e = grad_e.astype(e.dtype, copy=False)
        # d(z/|z|)/dz projects out the radial direction, then divides by |z|
        g = (g_e - e * np.sum(g_e * e, axis=1, keepdims=True)) / norm
        layers = len(self.params) // 2
        grads: list[Arr] = [np.empty(0)] * len(self.params)
        for k in reversed(range(layers)):
            if k < layers - 1:
                g = g * (cache[k + 1] > 0)
            grads[2 * k] = cache[k].T @ g
            grads[2 * k + 1] = g.sum(axis=0)
            if k > 0:
                g = g @ self.params[2 * k].T
        return grads

    def embed(self, x: Arr) -> Arr:
        return self.forward(x)[0]


@dataclass
class Adam:
    lr: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    t: int = 0
    m: list[Arr] = field(default_factory=list)
    v: list[Arr] = field(default_factory=list)

    def step(self, params: list[Arr], grads: list[Arr]) -> None:
        if not self.m:
            self.m = [np.zeros_like(p) for p in params]
            self.v = [np.zeros_like(p) for p in params]
        self.t += 1
        c1, c2 = 1 - self.beta1**self.t, 1 - self.beta2**self.t
        for p, g, m, v in zip(params, grads, self.m, self.v, strict=True):
            m *= self.beta1
            m += (1 - self.beta1) * g
            v *= self.beta2
            v += (1 - self.beta2) * g * g
            p -= self.lr * (m / c1) / (np.sqrt(v / c2) + self.eps)


# ---------------------------------------------------------------- collapse measures


def random_sphere_distance(n: int) -> float:
    """``E ||u - v||`` for independent uniform u, v on the unit sphere of R^n:
    ``2^(n-1) Gamma(n/2)^2 / (sqrt(pi) Gamma(n - 1/2))`` (4/pi for n = 2, 4/3 for
    n = 3, towards sqrt(2))."""
    return math.exp(
        (n - 1) * math.log(2)
        + 2 * math.lgamma(n / 2)
        - 0.5 * math.log(math.pi)
        - math.lgamma(n - 0.5)
    )


def mean_pairwise_distance(E: Arr) -> float:
    m = len(E)
    if m < 2:
        return 0.0
    D = np.asarray(tc.cdist(np.asarray(E, np.float64)))
    return float(D.sum() / (m * (m - 1)))


def effective_rank(E: Arr) -> float:
    """exp(entropy of the normalised singular values) of the centred rows; 0
    when every row is the same point."""
    s = np.linalg.svd(np.asarray(E, np.float64) - np.mean(E, axis=0), compute_uv=False)
    total = float(s.sum())
    if total <= 1e-12 * max(1.0, float(np.abs(E).max())):
        return 0.0
    p = s[s > 0] / total
    return float(np.exp(-np.sum(p * np.log(p))))


def recall_at_1(E: Arr, labels: I64) -> float:
    """Leave-one-out nearest-neighbour label agreement (brute force)."""
    D = np.asarray(tc.cdist(np.asarray(E, np.float64)))
    np.fill_diagonal(D, np.inf)
    return float(np.mean(labels[np.argmin(D, axis=1)] == labels))


@dataclass
class Measures:
    mean_dist: float  # mean pairwise distance of held-out embeddings
    spread: float  # mean_dist / the random-on-the-sphere value
    erank: float  # effective rank
    erank_frac: float  # erank / n
    # fraction of held-out anchors whose batch-hard loss is within ``rel_tol * margin`` of
    # the margin (d_ap ~ d_an): 1 for a collapsed embedding
    at_margin: float
    loss: float  # held-out batch-hard loss (whole held-out set as one batch)
    recall1: float


def measure(E: Arr, labels: I64, margin: float, rel_tol: float = 0.1) -> Measures:
    """The collapse measures of held-out embeddings (the whole set is one batch)."""
    n = E.shape[1]
    per_anchor, _ = tc.triplet_margin_loss(
        np.asarray(E, np.float64), labels, margin, mining="batch_hard", reduction="none"
    )
    per = np.asarray(per_anchor)
    md = mean_pairwise_distance(E)
    er = effective_rank(E)
    return Measures(
        mean_dist=md,
        spread=md / random_sphere_distance(n),
        erank=er,
        erank_frac=er / n,
        at_margin=float(np.mean(np.abs(per - margin) <= rel_tol * margin)),
        loss=float(per.mean()),
        recall1=recall_at_1(E, labels),
    )


# ---------------------------------------------------------------- training


@dataclass
class TrainConfig:
    batch: int
    dim: int
    steps: int = 600
    hidden: tuple[int, ...] = (128,)
    lr: float = 1e-3
    margin: float = 0.2
    seed: int = 0


@dataclass
class CellResult:
    batch: int
    dim: int
    seed: int
    init: Measures
    final: Measures
    train_loss: float  # mean batch-hard loss over the last 10% of steps
    seconds: float
    # held-out (step, spread, Recall@1) at ten checkpoints, step 0 first
    curve: list[tuple[int, float, float]] = field(default_factory=list)


def train_cell(data: Dataset, cfg: TrainConfig) -> CellResult:
    """Train one model with batch-hard triplet loss and measure it on held-out data."""
    t0 = time.perf_counter()
    rng = np.random.default_rng([cfg.seed, cfg.batch, cfg.dim])
    model = MLP.init([data.x_train.shape[1], *cfg.hidden, cfg.dim], rng)
    x_test = data.x_test.astype(np.float32)
    init = measure(model.embed(x_test), data.y_test, cfg.margin)
    opt = Adam(lr=cfg.lr)
    tail: list[float] = []
    checkpoints = {max(1, round(cfg.steps * k / 10)) for k in range(1, 11)}
    curve = [(0, init.spread, init.recall1)]
    for step in range(cfg.steps):
        xb, yb = sample_batch(data, cfg.batch, rng)
        e, cache = model.forward(xb.astype(np.float32))
        # float32 embeddings take the library's SIMD path; the gradient is exact for them
        loss, grad = tc.triplet_margin_loss(e, yb, cfg.margin, mining="batch_hard")
        opt.step(model.params, model.backward(e, cache, grad))
        if step >= cfg.steps - max(1, cfg.steps // 10):
            tail.append(float(loss))
        if step + 1 in checkpoints and step + 1 < cfg.steps:
            e_test = model.embed(x_test)
            spread = mean_pairwise_distance(e_test) / random_sphere_distance(cfg.dim)
            curve.append((step + 1, spread, recall_at_1(e_test, data.y_test)))
    final = measure(model.embed(x_test), data.y_test, cfg.margin)
    curve.append((cfg.steps, final.spread, final.recall1))
    return CellResult(
        cfg.batch,
        cfg.dim,
        cfg.seed,
        init,
        final,
        float(np.mean(tail)),
        time.perf_counter() - t0,
        curve,
    )


# ---------------------------------------------------------------- geometric version


@dataclass
class GeoResult:
    points: int
    dim: int
    ratios: list[float]  # spread of f* / spread of f, one per random configuration
    values: list[float]  # d_inf(f, f*) / diam(f)
    separated: bool  # every f* verified Triplet-Separated
    method: str


def geometric_cell(points: int, dim: int, trials: int, seed: int, classes: int = 2) -> GeoResult:
    """Random configurations (standard normal, random labels with every class
    at least twice), their nearest Triplet-Separated configuration for
    ``d_haus`` and its spread ratio."""
    rng = np.random.default_rng([seed, points, dim, 7])
    ratios, values, ok, method = [], [], True, ""
    for t in range(trials):
        X = rng.standard_normal((points, dim))
        y = rng.permutation(np.arange(points) % classes).astype(np.int64)
        sol = nearest_ts(X, y, "sup", seed=seed + t)
        ok = ok and tc.is_triplet_separated(sol.Y, y, tol=1e-9)
        ratios.append(mean_pairwise_distance(sol.Y) / mean_pairwise_distance(X))
        values.append(sol.value / tc.diameter(X).distance)
        method = sol.method
    return GeoResult(points, dim, ratios, values, ok, method)


# ---------------------------------------------------------------- the experiment


@dataclass
class GridConfig:
    batches: tuple[int, ...] = (8, 32, 128, 512, 2048)
    dims: tuple[int, ...] = (2, 8, 32, 128)
    seeds: int = 2
    steps: int = 600
    hidden: tuple[int, ...] = (128,)
    lr: float = 1e-3
    margin: float = 0.2
    geo_points: tuple[int, ...] = (5, 10, 20, 40, 80)
    geo_dims: tuple[int, ...] = (2, 4, 8, 16)
    geo_trials: int = 4
    dataset: str = "auto"

    @classmethod
    def quick(cls) -> GridConfig:
        return cls(
            batches=(8, 64),
            dims=(2, 16),
            seeds=1,
            steps=40,
            geo_points=(6, 12),
            geo_dims=(2,),
            geo_trials=1,
        )


@dataclass
class CollapseReport:
    config: GridConfig
    dataset: str
    train_size: int
    test_size: int
    cells: list[CellResult]
    geometric: list[GeoResult]
    seconds: float
    files: list[str]

    def mean_over_seeds(self, batch: int, dim: int, key: str, final: bool = True) -> float:
        vals = [
            getattr(c.final if final else c.init, key)
            for c in self.cells
            if c.batch == batch and c.dim == dim
        ]
        return float(np.mean(vals))


MEASURES: dict[str, str] = {
    "spread": "mean pairwise distance / random-sphere value",
    "erank_frac": "effective rank / n",
    "at_margin": "fraction of anchors with loss = margin",
    "recall1": "Recall@1",
}


def one_blas_thread() -> AbstractContextManager[Any]:
    """Limit BLAS to one thread when threadpoolctl is installed: the model's
    matrices are small, and extra BLAS threads only spin (a 20x CPU overhead
    measured on a busy 2-core machine). The library's own threads still run."""
    try:
        tpc = importlib.import_module("threadpoolctl")
    except ImportError:
        return nullcontext()
    return cast(AbstractContextManager[Any], tpc.threadpool_limits(limits=1, user_api="blas"))


def run(
    out: Path,
    cfg: GridConfig,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> CollapseReport:
    """Run both experiments, write plots, ``collapse.md`` and ``collapse.json`` to ``out``."""
    with one_blas_thread():
        return _run(out, cfg, seed, log or log_to_stderr)


def _run(out: Path, cfg: GridConfig, seed: int, say: Callable[[str], None]) -> CollapseReport:
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    data = load_dataset(cfg.dataset, seed=seed)
    say(
        f"collapse: data {data.name}, {len(data.y_train)} train / {len(data.y_test)} held-out, "
        f"{len(cfg.batches)}x{len(cfg.dims)} grid x {cfg.seeds} seed(s), {cfg.steps} steps each"
    )
    # biggest batches first would give a misleading ETA; run them in grid order
    jobs = [(s, b, d) for s in range(cfg.seeds) for b in cfg.batches for d in cfg.dims]
    cells: list[CellResult] = []
    for k, (s, b, d) in enumerate(jobs, 1):
        tc_cfg = TrainConfig(b, d, cfg.steps, cfg.hidden, cfg.lr, cfg.margin, seed + s)
        r = train_cell(data, tc_cfg)
        cells.append(r)
        say(
            f"  [{k:3d}/{len(jobs)}] N={b:5d} n={d:4d} seed={seed + s}: "
            f"R@1 {r.final.recall1:.3f} spread {r.final.spread:.3f} "
            f"erank/n {r.final.erank_frac:.3f} at-margin {r.final.at_margin:.2f} "
            f"({r.seconds:.1f}s, total {time.perf_counter() - t0:.0f}s)"
        )
    geo: list[GeoResult] = []
    for k, (p, d) in enumerate([(p, d) for p in cfg.geo_points for d in cfg.geo_dims], 1):
        g = geometric_cell(p, d, cfg.geo_trials, seed)
        geo.append(g)
        say(
            f"  geometric [{k}/{len(cfg.geo_points) * len(cfg.geo_dims)}] N={p} n={d}: "
            f"spread ratio {np.mean(g.ratios):.3f}"
        )
    report = CollapseReport(
        cfg, data.name, len(data.y_train), len(data.y_test), cells, geo, 0.0, []
    )
    report.files = write_outputs(report, out)
    report.seconds = time.perf_counter() - t0
    (out / "collapse.json").write_text(json.dumps(asdict(report), indent=1))
    return report


def report_from_json(path: Path) -> CollapseReport:
    """Read back the ``collapse.json`` that :func:`run` wrote."""
    raw = json.loads(path.read_text())
    fields: dict[str, Any] = {
        k: tuple(v) if isinstance(v, list) else v for k, v in raw["config"].items()
    }
    cfg = GridConfig(**fields)
    cells = [
        CellResult(
            c["batch"],
            c["dim"],
            c["seed"],
            Measures(**c["init"]),
            Measures(**c["final"]),
            c["train_loss"],
            c["seconds"],
            [(int(a), float(b), float(r)) for a, b, r in c["curve"]],
        )
        for c in raw["cells"]
    ]
    geo = [GeoResult(**g) for g in raw["geometric"]]
    return CollapseReport(
        cfg,
        raw["dataset"],
        raw["train_size"],
        raw["test_size"],
        cells,
        geo,
        raw["seconds"],
        raw["files"],
    )


def power_law_fit(report: CollapseReport, key: str = "spread") -> tuple[float, float, float]:
    """Least-squares ``log m = a + b log N + c log n`` over the training grid
    (seed means of the held-out measure ``m``); returns ``(b, c, R^2)``. If only
    the ratio N/n mattered, ``b = -c``."""
    cfg = report.config
    return fit_power_law(
        [(b, d, report.mean_over_seeds(b, d, key)) for b in cfg.batches for d in cfg.dims]
    )


def fit_power_law(points: Sequence[tuple[float, float, float]]) -> tuple[float, float, float]:
    """``(b, c, R^2)`` of the least-squares fit ``log v = a + b log N + c log n``
    to ``(N, n, v)`` triples (non-positive ``v`` skipped; NaNs if fewer than 4)."""
    rows = [[1.0, math.log(b), math.log(d)] for b, d, v in points if v > 0]
    target = [math.log(v) for _, _, v in points if v > 0]
    if len(target) < 4:
        return float("nan"), float("nan"), float("nan")
    A, t = np.array(rows), np.array(target)
    coef = np.linalg.lstsq(A, t, rcond=None)[0]
    resid = t - A @ coef
    r2 = 1.0 - float(resid @ resid) / float(((t - t.mean()) ** 2).sum() or 1.0)
    return float(coef[1]), float(coef[2]), r2


def markdown_table(report: CollapseReport) -> str:
    cfg = report.config
    lines = [
        f"Data: {report.dataset} ({report.train_size} train / {report.test_size} held-out); "
        f"{cfg.steps} Adam steps (lr {cfg.lr}) per cell, batch-hard margin {cfg.margin}, "
        f"MLP hidden {list(cfg.hidden)}; mean over {cfg.seeds} seed(s); "
        "measures on the held-out set (init value in brackets).",
        "",
        "| N | n | N/n | Recall@1 | spread | erank/n | at margin | held-out loss | train loss |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for b in cfg.batches:
        for d in cfg.dims:
            cs = [c for c in report.cells if c.batch == b and c.dim == d]

            def f(key: str, cs: list[CellResult] = cs) -> str:
                fin = np.mean([getattr(c.final, key) for c in cs])
                ini = np.mean([getattr(c.init, key) for c in cs])
                return f"{fin:.3f} ({ini:.3f})"

            tl = np.mean([c.train_loss for c in cs])
            lines.append(
                f"| {b} | {d} | {b / d:g} | {f('recall1')} | {f('spread')} | {f('erank_frac')} "
                f"| {f('at_margin')} | {f('loss')} | {tl:.3f} |"
            )
    b_exp, c_exp, r2 = power_law_fit(report)
    if math.isfinite(b_exp):
        lines += [
            "",
            f"Power-law fit over the grid: spread ~ N^{b_exp:.3f} n^{c_exp:.3f} (R^2 = {r2:.3f}); "
            "a function of N/n alone would give equal and opposite exponents.",
        ]
    if report.geometric:
        lines += [
            "",
            "Geometric version: random N x n Gaussian configurations, two random classes, "
            "f* = nearest Triplet-Separated configuration for d_haus "
            f"({report.geometric[0].method}); mean pairwise distance of f* / that of f "
            "(mean +- std over trials); d_haus(f, F_TS) / diam(f).",
            "",
            "| N | n | spread ratio | d_haus / diam | all f* TS |",
            "|---:|---:|---:|---:|:---:|",
        ]
        gb, gc, gr2 = fit_power_law(
            [(g.points, g.dim, float(np.mean(g.ratios))) for g in report.geometric]
        )
        if math.isfinite(gb):
            lines[-4] += f" Fit: spread ratio ~ N^{gb:.3f} n^{gc:.3f} (R^2 = {gr2:.3f})."
        for g in report.geometric:
            lines.append(
                f"| {g.points} | {g.dim} | {np.mean(g.ratios):.3f} +- {np.std(g.ratios):.3f} "
                f"| {np.mean(g.values):.3f} | {'yes' if g.separated else 'NO'} |"
            )
    return "\n".join(lines) + "\n"


def write_outputs(report: CollapseReport, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm, Normalize

    cfg = report.config
    files: list[str] = []
    for key, title in MEASURES.items():
        grid = np.array(
            [[report.mean_over_seeds(b, d, key) for d in cfg.dims] for b in cfg.batches]
        )
        fig, ax = plt.subplots(figsize=(4.6, 3.9))
        # the spread spans decades: a log colour scale keeps the small values apart
        norm = LogNorm(vmin=3e-3, vmax=1.0) if key == "spread" else Normalize(0.0, 1.0)
        im = ax.imshow(grid, cmap="viridis", norm=norm, origin="lower", aspect="auto")
        for i in range(len(cfg.batches)):
            for j in range(len(cfg.dims)):
                v = float(grid[i, j])
                ax.text(
                    j,
                    i,
                    f"{v:.3f}" if key == "spread" else f"{v:.2f}",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if norm(max(v, 3e-3)) < 0.6 else "black",
                )
        ax.set_xticks(range(len(cfg.dims)), [str(d) for d in cfg.dims])
        ax.set_yticks(range(len(cfg.batches)), [str(b) for b in cfg.batches])
        ax.set_xlabel("embedding dimension n")
        ax.set_ylabel("batch size N")
        ax.set_title(f"{title}\n(batch-hard, {report.dataset}, held-out)", fontsize=9)
        fig.colorbar(im, ax=ax)
        fig.tight_layout()
        path = out / f"collapse_{key}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        files.append(str(path))
    if report.geometric:
        pts, dims = cfg.geo_points, cfg.geo_dims
        grid = np.array(
            [
                [
                    np.mean(
                        next(g.ratios for g in report.geometric if g.points == p and g.dim == d)
                    )
                    for d in dims
                ]
                for p in pts
            ]
        )
        fig, ax = plt.subplots(figsize=(4.6, 3.9))
        im = ax.imshow(grid, cmap="magma", vmin=0.0, vmax=1.0, origin="lower", aspect="auto")
        for i in range(len(pts)):
            for j in range(len(dims)):
                ax.text(
                    j,
                    i,
                    f"{grid[i, j]:.2f}",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if grid[i, j] < 0.6 else "black",
                )
        ax.set_xticks(range(len(dims)), [str(d) for d in dims])
        ax.set_yticks(range(len(pts)), [str(p) for p in pts])
        ax.set_xlabel("dimension n")
        ax.set_ylabel("points N")
        ax.set_title("spread of f*_haus / spread of f\n(random configurations)", fontsize=9)
        fig.colorbar(im, ax=ax)
        fig.tight_layout()
        path = out / "collapse_geometric.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        files.append(str(path))
    files.append(str(plot_curves(report, out)))
    files.append(str(plot_ratio(report, out)))
    md = out / "collapse.md"
    md.write_text(markdown_table(report))
    files.append(str(md))
    return files


def plot_curves(report: CollapseReport, out: Path) -> Path:
    """Held-out spread during training: one panel per n, one line per N (seed mean)."""
    import matplotlib.pyplot as plt

    cfg = report.config
    fig, axes = plt.subplots(
        1, len(cfg.dims), figsize=(2.6 * len(cfg.dims) + 0.6, 3.0), sharey=True, squeeze=False
    )
    cmap = plt.get_cmap("plasma")
    for j, d in enumerate(cfg.dims):
        ax = axes[0, j]
        for i, b in enumerate(cfg.batches):
            cs = [c for c in report.cells if c.batch == b and c.dim == d]
            steps = [pt[0] for pt in cs[0].curve]
            spread = np.mean([[pt[1] for pt in c.curve] for c in cs], axis=0)
            ax.plot(
                steps,
                spread,
                color=cmap(i / max(1, len(cfg.batches) - 1) * 0.85),
                label=f"N={b}",
                marker=".",
            )
        ax.set_title(f"n = {d}", fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("held-out spread\n(mean distance / random)")
    axes[0, -1].legend(fontsize=7)
    fig.tight_layout()
    path = out / "collapse_curves.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_ratio(report: CollapseReport, out: Path) -> Path:
    """Held-out spread and the at-margin fraction against N/n, one line per n."""
    import matplotlib.pyplot as plt

    cfg = report.config
    fig, axes = plt.subplots(1, 2, figsize=(8.4, 3.4))
    cmap = plt.get_cmap("viridis")
    for j, d in enumerate(cfg.dims):
        ratio = [b / d for b in cfg.batches]
        color = cmap(j / max(1, len(cfg.dims) - 1) * 0.9)
        for ax, key in zip(axes, ("spread", "at_margin"), strict=True):
            vals = [report.mean_over_seeds(b, d, key) for b in cfg.batches]
            ax.plot(ratio, vals, marker="o", color=color, label=f"n = {d}")
    axes[0].set_yscale("log")
    axes[0].set_ylabel("held-out spread (log)")
    axes[1].set_ylabel("fraction of anchors at the margin")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("N / n")
        ax.grid(alpha=0.3, which="both")
    axes[1].legend(fontsize=8)
    b_exp, c_exp, r2 = power_law_fit(report)
    fig.suptitle(
        f"batch-hard collapse vs N/n; fit spread ~ N^{b_exp:.2f} n^{c_exp:.2f} (R^2 {r2:.2f})",
        fontsize=9,
    )
    fig.tight_layout()
    path = out / "collapse_vs_ratio.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("paper-figures"), help="output folder")
    parser.add_argument("--quick", action="store_true", help="tiny grid, few steps (seconds)")
    parser.add_argument("--seed", type=int, default=0, help="base random seed")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    add_arguments(parser)
    parser.add_argument("--steps", type=int, help="gradient steps per cell (override)")
    parser.add_argument("--seeds", type=int, help="seeds per cell (override)")
    parser.add_argument(
        "--replot", action="store_true", help="redraw plots and table from OUT/collapse.json"
    )
    args = parser.parse_args(argv)
    if args.replot:
        report = report_from_json(args.out / "collapse.json")
        report.files = write_outputs(report, args.out)
        (args.out / "collapse.json").write_text(json.dumps(asdict(report), indent=1))
        print(markdown_table(report))
        return 0
    cfg = GridConfig.quick() if args.quick else GridConfig()
    if args.steps is not None:
        cfg.steps = args.steps
    if args.seeds is not None:
        cfg.seeds = args.seeds
    report = run(args.out, cfg, seed=args.seed)
    print(markdown_table(report))
    print(f"collapse: {report.seconds:.1f}s; wrote {', '.join(report.files)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
