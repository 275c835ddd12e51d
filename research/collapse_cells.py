"""One cell of the collapse grid (:mod:`research.collapse`): the data, the
NumPy MLP and its optimiser, the collapse measures, one training run, and
the geometric version (the nearest Triplet-Separated configuration)."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

import tripletcore as tc
from tripletcore import pk_batch
from tripletcore.theory import nearest_triplet_separated

from .common import load_digits, stratified_parts

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
    r = nearest_triplet_separated(X, labels, objective=objective, seed=seed)
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
    centred and scaled with training statistics; the split is stratified.
    ``kind="glyphs"``: :func:`glyph_dataset`, held-out classes unseen."""
    if kind == "glyphs":
        return glyph_dataset(seed)
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


#: Glyph classes of the collapse grid: half train, half unseen held-out.
GLYPH_CLASSES = 120


def glyph_dataset(seed: int, classes: int = GLYPH_CLASSES) -> Dataset:
    """The glyph benchmark at 16 x 16 (2 x 2 block means of the 32 x 32
    renders, to keep the NumPy MLP cheap), ``classes`` classes: half of them
    (drawn by ``seed``) are the held-out set, unseen in training; the
    validation part of :func:`research.glyph_data.glyph_split` trains too."""
    from .glyph_data import glyph_split

    parts = glyph_split(seed, classes, pool=2)
    x_train = np.concatenate([parts.x["train"], parts.x["val"]]).astype(np.float64)
    y_train = np.concatenate([parts.y["train"], parts.y["val"] + parts.classes["train"]])
    mean = x_train.mean(axis=0)
    scale = float(x_train.std()) or 1.0
    x_test = (parts.x["test"].astype(np.float64) - mean) / scale
    side = parts.side
    return Dataset(
        "glyphs", (x_train - mean) / scale, y_train, x_test, parts.y["test"], (side, side)
    )


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
    idx = pk_batch(data.y_train, size, rng=rng)
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
        np.asarray(E, np.float64), labels, margin=margin, mining="batch_hard", reduction="none"
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
        loss, grad = tc.triplet_margin_loss(e, yb, margin=cfg.margin, mining="batch_hard")
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
