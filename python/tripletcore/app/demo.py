"""``tripletcore demo``: batch-hard training of a small embedding network on
scikit-learn's handwritten digits, with retrieval metrics and collapse
diagnostics as it trains, and a report folder of plots and a summary.

Needs the ``demo`` extra (torch, scikit-learn, matplotlib, tqdm). The digits
ship inside scikit-learn: nothing is downloaded.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from ..evaluation import retrieval_metrics
from ..geometry import hardest_triplet
from ..sampling import pk_batch
from .analysis import collapse_indicators, has_triplet
from .cli_checks import FlagError, check_range, check_seed, cpu_count
from .demo_report import jsonable, markdown, write_report

if TYPE_CHECKING:
    import torch

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

MINING = ("batch_hard", "semi_hard", "batch_all")
TEST_FRACTION = 0.3


class DemoError(Exception):
    """A problem the user can fix (a missing extra, a bad option)."""


@dataclass
class DemoConfig:
    mining: str = "batch_hard"
    batch_size: int = 80  # P x K = 10 classes x 8
    embedding_dim: int = 32
    epochs: int = 800
    steps: int | None = None  # overrides epochs
    eval_every: float | None = None  # epochs; None: about 32 evaluations
    margin: float = 0.2
    lr: float = 1e-3
    hidden: int = 256
    seed: int = 0
    threads: int = 1
    out: Path = Path("tripletcore-demo-report")
    progress: bool = True


QUICK = {"epochs": 6, "eval_every": 2.0}


@dataclass
class Snapshot:
    """Test-set measures after ``step`` training steps (0: at initialisation)."""

    step: int
    epoch: float
    seconds: float  # training time so far, evaluations excluded
    train_loss: float  # mean training loss since the previous snapshot (NaN at step 0)
    batch_hardest: float  # hardest-triplet value of the last training batch
    recall_at_1: float
    recall_at: dict[str, float]
    map_at_r: float
    r_precision: float
    nmi: float
    hardest: float  # hardest-triplet value L on the test set (eq. 38)
    hardest_triplet: tuple[int, int, int]
    iso_lower: float  # d_iso(f, F_TS) >= max(0, L) / 2
    spread: float
    effective_rank: float
    effective_rank_frac: float
    at_margin: float


@dataclass
class DemoResult:
    config: dict[str, Any]
    data: dict[str, Any]
    before: Snapshot
    after: Snapshot
    history: list[Snapshot] = field(default_factory=list)
    seconds_total: float = 0.0
    seconds_train: float = 0.0
    files: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- dependencies


def _need(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise DemoError(
            f"the demo needs {module.split('.')[0]} ({e}); install the extra: "
            "pip install 'tripletcore[demo]'"
        ) from None


# ---------------------------------------------------------------- data


@dataclass
class Digits:
    """Images as 8 x 8 arrays scaled to [0, 1]; a stratified split."""

    train_images: F32
    train_labels: I64
    test_images: F32
    test_labels: I64
    mean: F32  # per-pixel training mean, subtracted before the network
    scale: float  # one global training standard deviation


def load_digits(seed: int) -> Digits:
    datasets = _need("sklearn.datasets")
    bunch = datasets.load_digits()
    images = np.asarray(bunch.images, dtype=np.float32) / 16.0
    labels = np.asarray(bunch.target, dtype=np.int64)
    rng = np.random.default_rng(seed)
    test = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == c))
        test[rows[: round(TEST_FRACTION * len(rows))]] = True
    train_images = images[~test]
    mean = train_images.mean(axis=0)
    scale = float((train_images - mean).std())
    return Digits(train_images, labels[~test], images[test], labels[test], mean, scale)


def features(d: Digits, images: F32) -> F32:
    return np.asarray(((images - d.mean) / d.scale).reshape(len(images), -1), dtype=np.float32)


def augment(images: F32, rng: np.random.Generator) -> F32:
    """Shift each image by up to one pixel (zero padding: the digits'
    background) and add a little noise, so repeated rows of a class differ."""
    b = len(images)
    padded = np.pad(images, ((0, 0), (1, 1), (1, 1)))
    dy = rng.integers(0, 3, size=b)
    dx = rng.integers(0, 3, size=b)
    r = (dy[:, None] + np.arange(8))[:, :, None]
    c = (dx[:, None] + np.arange(8))[:, None, :]
    out = padded[np.arange(b)[:, None, None], r, c]
    noise = rng.normal(0.0, 0.05, size=out.shape).astype(np.float32)
    return np.asarray(out + noise, dtype=np.float32)


# ---------------------------------------------------------------- model


def make_model(cfg: DemoConfig) -> torch.nn.Module:
    import torch

    class Embedder(torch.nn.Module):
        """64 -> hidden -> hidden -> embedding_dim, outputs L2-normalised
        (as FaceNet): the embeddings live on the unit sphere."""

        def __init__(self) -> None:
            super().__init__()
            self.body = torch.nn.Sequential(
                torch.nn.Linear(64, cfg.hidden),
                torch.nn.ReLU(),
                torch.nn.Linear(cfg.hidden, cfg.hidden),
                torch.nn.ReLU(),
                torch.nn.Linear(cfg.hidden, cfg.embedding_dim),
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.normalize(self.body(x), dim=1)

    return Embedder()


def embed(model: torch.nn.Module, x: F32) -> F64:
    import torch

    with torch.no_grad():
        out = model(torch.from_numpy(x))
    return np.asarray(out.numpy(), dtype=np.float64)


# ---------------------------------------------------------------- measures


def snapshot(
    emb: F64,
    labels: I64,
    *,
    step: int,
    epoch: float,
    seconds: float,
    train_loss: float,
    batch_hardest: float,
    margin: float,
) -> Snapshot:
    m = retrieval_metrics(emb, labels)
    h = hardest_triplet(emb, labels)
    c = collapse_indicators(emb, labels, margin)
    return Snapshot(
        step=step,
        epoch=epoch,
        seconds=seconds,
        train_loss=train_loss,
        batch_hardest=batch_hardest,
        recall_at_1=m.recall_at[1],
        recall_at={str(k): v for k, v in m.recall_at.items()},
        map_at_r=m.map_at_r,
        r_precision=m.r_precision,
        nmi=m.nmi,
        hardest=h.value,
        hardest_triplet=(h.anchor, h.positive, h.negative),
        iso_lower=max(0.0, h.value) / 2.0,
        spread=c["spread"],
        effective_rank=c["effective_rank"],
        effective_rank_frac=c["effective_rank_frac"],
        at_margin=c["at_margin"],
    )


def snapshot_line(s: Snapshot, dim: int) -> str:
    loss = "   -  " if math.isnan(s.train_loss) else f"{s.train_loss:.4f}"
    batch = "  -   " if math.isnan(s.batch_hardest) else f"{s.batch_hardest:+.3f}"
    return (
        f"epoch {s.epoch:6.1f} | loss {loss} | R@1 {s.recall_at_1:.3f} MAP@R {s.map_at_r:.3f}"
        f" | L {s.hardest:+.3f} (d_iso >= {s.iso_lower:.3f}) batch L {batch}"
        f" | spread {s.spread:.3f} erank {s.effective_rank:.1f}/{dim}"
        f" at-margin {s.at_margin:.2f}"
    )


# ---------------------------------------------------------------- training


@dataclass(frozen=True)
class _Schedule:
    """How long training runs and how often it stops to evaluate."""

    steps_per_epoch: int
    total: int  # training steps
    epochs: float
    eval_steps: int  # steps between test-set evaluations


def _schedule(cfg: DemoConfig, n_train: int) -> _Schedule:
    steps_per_epoch = math.ceil(n_train / cfg.batch_size)
    total = cfg.steps if cfg.steps is not None else cfg.epochs * steps_per_epoch
    epochs = total / steps_per_epoch
    every = cfg.eval_every if cfg.eval_every is not None else max(1.0, epochs / 32)
    return _Schedule(steps_per_epoch, total, epochs, max(1, round(every * steps_per_epoch)))


@dataclass
class _Training:
    """The model, its optimiser and loss, and the batch sampler's generator."""

    model: Any
    opt: Any
    loss_fn: Any
    rng: np.random.Generator


def run_demo(cfg: DemoConfig, say: Callable[[str], None] = print) -> DemoResult:
    """Train, measure, write the report folder; returns what was measured."""
    check_config(cfg)
    t_start = time.perf_counter()
    torch = _need("torch")
    tqdm = _need("tqdm").tqdm
    import tripletcore.torch as tt

    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    data = load_digits(cfg.seed)
    x_test = features(data, data.test_images)
    n_train = len(data.train_labels)
    if cfg.batch_size > n_train:
        raise DemoError(
            f"--batch-size must be <= {n_train} (the training images), got {cfg.batch_size}"
        )
    sched = _schedule(cfg, n_train)

    model = make_model(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    # batch-all averages over the triplets that still violate the margin (as
    # PML): a plain mean over all of them vanishes as most become easy.
    reduction = "mean_nonzero" if cfg.mining == "batch_all" else "mean"
    loss_fn = tt.TripletMarginLoss(margin=cfg.margin, mining=cfg.mining, reduction=reduction)
    p = max(2, min(10, cfg.batch_size // 2))
    say(
        f"digits: {len(data.train_labels) + len(data.test_labels)} 8x8 images, 10 classes; "
        f"train {n_train} / test {len(data.test_labels)} (seed {cfg.seed})"
    )
    say(
        f"model: MLP 64-{cfg.hidden}-{cfg.hidden}-{cfg.embedding_dim}, L2-normalised; "
        f"loss: {cfg.mining} margin {cfg.margin} ({reduction}); batches {cfg.batch_size} "
        f"rows = {p} classes x ~{cfg.batch_size / p:.3g}; {sched.total} steps "
        f"({sched.epochs:.3g} epochs); torch threads {torch.get_num_threads()}"
    )

    emb0 = embed(model, x_test)
    before = snapshot(
        emb0,
        data.test_labels,
        step=0,
        epoch=0.0,
        seconds=0.0,
        train_loss=math.nan,
        batch_hardest=math.nan,
        margin=cfg.margin,
    )
    history = [before]
    say("before: " + snapshot_line(before, cfg.embedding_dim))
    training = _Training(model, opt, loss_fn, rng)
    train_seconds = _train(cfg, data, x_test, training, sched, history, tqdm, say)
    after = history[-1]
    emb1 = embed(model, x_test)
    say("after:  " + snapshot_line(after, cfg.embedding_dim))
    say(
        f"Recall@1 {before.recall_at_1:.4f} -> {after.recall_at_1:.4f}, "
        f"MAP@R {before.map_at_r:.4f} -> {after.map_at_r:.4f} "
        f"(test set, {len(data.test_labels)} queries); training {train_seconds:.1f} s"
    )
    result = DemoResult(
        config={**asdict(cfg), "out": str(cfg.out), "reduction": reduction},
        data={
            "dataset": "sklearn.datasets.load_digits",
            "train": n_train,
            "test": len(data.test_labels),
            "steps": sched.total,
            "steps_per_epoch": sched.steps_per_epoch,
            "classes_per_batch": p,
        },
        before=before,
        after=after,
        history=history,
        seconds_train=train_seconds,
    )
    result.files = write_report(result, emb0, emb1, data.test_labels, cfg.out)
    result.seconds_total = time.perf_counter() - t_start
    # rewrite the summaries with the final wall time
    (cfg.out / "summary.json").write_text(json.dumps(jsonable(result), indent=2) + "\n")
    (cfg.out / "summary.md").write_text(markdown(result, cfg.out))
    say(f"report: {cfg.out}/ ({', '.join(result.files)}); total {result.seconds_total:.1f} s")
    return result


def _train(
    cfg: DemoConfig,
    data: Digits,
    x_test: F32,
    tr: _Training,
    sched: _Schedule,
    history: list[Snapshot],
    tqdm: Any,
    say: Callable[[str], None],
) -> float:
    """The training loop: appends a snapshot every ``eval_steps`` steps and
    at the end; returns the training time (evaluations excluded)."""
    torch = _need("torch")
    total = sched.total
    bar = tqdm(total=total, unit="step", disable=None if cfg.progress else True, leave=False)
    write = bar.write if cfg.progress else say
    train_seconds, losses = 0.0, []
    batch_l = math.nan
    for step in range(1, total + 1):
        t0 = time.perf_counter()
        rows = pk_batch(data.train_labels, cfg.batch_size, rng=tr.rng)
        xb = torch.from_numpy(features(data, augment(data.train_images[rows], tr.rng)))
        yb = torch.from_numpy(data.train_labels[rows])
        emb = tr.model(xb)
        loss = tr.loss_fn(emb, yb)
        tr.opt.zero_grad()
        loss.backward()
        tr.opt.step()
        train_seconds += time.perf_counter() - t0
        losses.append(float(loss.detach()))
        bar.update(1)
        if step % 50 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}", refresh=False)
        if step % sched.eval_steps == 0 or step == total:
            yb_np = data.train_labels[rows]
            if has_triplet(yb_np):
                batch_l = hardest_triplet(emb.detach().numpy(), yb_np).value
            s = snapshot(
                embed(tr.model, x_test),
                data.test_labels,
                step=step,
                epoch=step / sched.steps_per_epoch,
                seconds=train_seconds,
                train_loss=float(np.mean(losses)),
                batch_hardest=batch_l,
                margin=cfg.margin,
            )
            losses = []
            history.append(s)
            write(snapshot_line(s, cfg.embedding_dim))
    bar.close()
    return train_seconds


def check_config(cfg: DemoConfig) -> None:
    """Every option in its range (named as its command-line flag), before any work."""
    if cfg.mining not in MINING:
        raise DemoError(f"--mining must be one of {', '.join(MINING)}, got {cfg.mining!r}")
    ranges: list[tuple[str, Any, float, float]] = [
        ("--batch-size", cfg.batch_size, 4, 100_000),
        ("--embedding-dim", cfg.embedding_dim, 1, 4096),
        ("--epochs", cfg.epochs, 1, 1_000_000),
        ("--steps", cfg.steps, 1, 1_000_000_000),
        ("--threads", cfg.threads, 1, cpu_count()),
        ("--hidden", cfg.hidden, 1, 16_384),
        ("--margin", cfg.margin, 0, 100),
    ]
    try:
        for flag, value, low, high in ranges:
            check_range(flag, value, low, high)
        check_range("--eval-every", cfg.eval_every, 0, 1_000_000, low_open=True)
        check_range("--lr", cfg.lr, 0, 10, low_open=True)
        check_seed("--seed", cfg.seed)
    except FlagError as e:
        raise DemoError(str(e)) from None
    if cfg.out.exists() and not cfg.out.is_dir():
        raise DemoError(f"--out {cfg.out} exists and is not a folder")


def set_thread_policy() -> None:
    """torch's OpenMP threads spin after each operation and can take the
    cores from the Rust kernels' threads (docs/torch.md): ask for a passive
    wait before torch is imported, unless the user chose otherwise."""
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
