"""``tripletcore demo --dataset glyphs``: a small convolutional network
trained with a triplet loss on rendered glyphs (:func:`tripletcore.datasets.load_glyphs`),
measured on classes it never saw (the Omniglot protocol, docs/glyphs.md).

Half the glyph classes train the network; retrieval (Recall@1, MAP@R of
:func:`tripletcore.retrieval_metrics`) and the Triplet-Separation and
collapse measures of the digits demo are taken on up to ``EVAL_CLASSES`` of
the other half (all their samples): the k-means behind the NMI grows with
the number of classes, and 200 classes keep an evaluation to seconds.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from ..datasets import ImageSet, load_glyphs
from ..geometry import hardest_triplet
from .analysis import has_triplet
from .demo import (
    DemoConfig,
    DemoError,
    DemoResult,
    Snapshot,
    _need,
    _schedule,
    check_config,
    snapshot,
    snapshot_line,
)
from .demo_report import jsonable, plot_training

if TYPE_CHECKING:
    import torch

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

#: Defaults of the glyph demo (about three minutes on 2 cores), and --quick.
DEFAULTS: dict[str, Any] = {"epochs": 4, "eval_every": 1.0}
QUICK: dict[str, Any] = {"epochs": 6, "eval_every": 3.0}
QUICK_DATA = {"max_classes": 100, "samples_per_class": 12}
EVAL_CLASSES = 200
SAMPLES_PER_BATCH_CLASS = 4  # K of the P x K batches


@dataclass
class GlyphData:
    """Training images of the train classes; evaluation images of (up to
    ``EVAL_CLASSES``) unseen classes; float32 in [0, 1], (N, 1, s, s)."""

    train_images: F32
    train_labels: I64
    test_images: F32
    test_labels: I64
    classes: int
    train_classes: int
    test_classes: int  # unseen classes in the evaluation set
    size: int


def glyph_data(seed: int, quick: bool, say: Callable[[str], None]) -> GlyphData:
    kw: dict[str, Any] = dict(QUICK_DATA) if quick else {}
    t0 = time.perf_counter()
    try:
        glyphs = load_glyphs(32, progress=None, **kw)
    except ImportError as e:
        raise DemoError(str(e)) from None
    seconds = time.perf_counter() - t0
    say(f"glyphs: {len(glyphs)} images, {len(glyphs.class_names)} classes ({seconds:.1f} s)")
    split = glyphs.split_classes(seed=seed)
    test_classes = np.random.default_rng(seed).permutation(split.test_classes)[:EVAL_CLASSES]
    test = split.test.subset(np.isin(split.test.labels, test_classes))
    return GlyphData(
        _floats(split.train),
        _dense(split.train.labels),
        _floats(test),
        _dense(test.labels),
        len(glyphs.class_names),
        len(split.train_classes),
        len(test_classes),
        glyphs.images.shape[-1],
    )


def _floats(s: ImageSet) -> F32:
    return np.asarray(s.images[:, None], np.float32) / np.float32(255.0)


def _dense(labels: I64) -> I64:
    return np.unique(labels, return_inverse=True)[1].astype(np.int64)


def augment(images: F32, rng: np.random.Generator, shift: int = 2) -> F32:
    """A random shift of up to ``shift`` pixels each way (zero padding)."""
    b, _, s, _ = images.shape
    padded = np.pad(images, ((0, 0), (0, 0), (shift, shift), (shift, shift)))
    dy: I64 = rng.integers(0, 2 * shift + 1, size=(b,), dtype=np.int64)
    dx: I64 = rng.integers(0, 2 * shift + 1, size=(b,), dtype=np.int64)
    r = (dy[:, None] + np.arange(s))[:, :, None]
    c = (dx[:, None] + np.arange(s))[:, None, :]
    return np.asarray(padded[np.arange(b)[:, None, None], 0, r, c][:, None], np.float32)


def make_cnn(cfg: DemoConfig, size: int) -> torch.nn.Module:
    """Three 3 x 3 convolution blocks (16, 32, 64 channels, each halving
    the image), a hidden layer and an L2-normalised embedding. Batch
    normalisation spreads the untrained embedding out: without it the
    all-positive ReLU features map every image near one direction, and
    batch-hard training starts (and stays, for long) collapsed."""
    import torch

    nn = torch.nn

    def block(cin: int, cout: int) -> list[Any]:
        return [
            nn.Conv2d(cin, cout, 3, padding=1),
            nn.BatchNorm2d(cout),
            nn.ReLU(),
            nn.MaxPool2d(2),
        ]

    class ConvEmbedder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            flat = 64 * (size // 8) ** 2
            self.body = nn.Sequential(
                *block(1, 16),
                *block(16, 32),
                *block(32, 64),
                nn.Flatten(),
                nn.Linear(flat, cfg.hidden),
                nn.BatchNorm1d(cfg.hidden),
                nn.ReLU(),
                nn.Linear(cfg.hidden, cfg.embedding_dim),
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return nn.functional.normalize(self.body(x), dim=1)

    return ConvEmbedder()


def embed(model: torch.nn.Module, x: F32, chunk: int = 1024) -> F64:
    import torch

    model.eval()
    with torch.no_grad():
        parts = [model(torch.from_numpy(x[i : i + chunk])).numpy() for i in range(0, len(x), chunk)]
    model.train()
    return np.asarray(np.concatenate(parts), dtype=np.float64)


def run_glyph_demo(
    cfg: DemoConfig, say: Callable[[str], None] = print, *, quick: bool = False
) -> DemoResult:
    """Train on half the glyph classes, measure on the unseen half, write
    the report folder; returns what was measured."""
    check_config(cfg)
    t_start = time.perf_counter()
    torch = _need("torch")
    tqdm = _need("tqdm").tqdm
    import tripletcore.torch as tt

    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    data = glyph_data(cfg.seed, quick, say)
    sched = _schedule(cfg, len(data.train_labels))
    model = make_cnn(cfg, data.size)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    reduction = "mean_nonzero" if cfg.mining == "batch_all" else "mean"
    loss_fn = tt.TripletMarginLoss(margin=cfg.margin, mining=cfg.mining, reduction=reduction)
    say(
        f"train: {len(data.train_labels)} images of {data.train_classes} classes; "
        f"test: {len(data.test_labels)} images of {data.test_classes} unseen classes "
        f"(split seed {cfg.seed})"
    )
    say(
        f"model: CNN 16-32-64 + {cfg.hidden} -> {cfg.embedding_dim}, L2-normalised; loss: "
        f"{cfg.mining} margin {cfg.margin} ({reduction}); batches of {cfg.batch_size} rows "
        f"(~{SAMPLES_PER_BATCH_CLASS} per class); {sched.total} steps ({sched.epochs:.3g} epochs); "
        f"torch threads {torch.get_num_threads()}"
    )

    def measure(step: int, seconds: float, loss: float, batch_l: float) -> Snapshot:
        return snapshot(
            embed(model, data.test_images),
            data.test_labels,
            step=step,
            epoch=step / sched.steps_per_epoch,
            seconds=seconds,
            train_loss=loss,
            batch_hardest=batch_l,
            margin=cfg.margin,
        )

    before = measure(0, 0.0, math.nan, math.nan)
    history = [before]
    say("before: " + snapshot_line(before, cfg.embedding_dim))
    rng = np.random.default_rng(cfg.seed)
    members = [np.flatnonzero(data.train_labels == c) for c in range(data.train_classes)]
    bar = tqdm(total=sched.total, unit="step", disable=None if cfg.progress else True, leave=False)
    write = bar.write if cfg.progress else say
    train_seconds, losses, batch_l = 0.0, [], math.nan
    for step in range(1, sched.total + 1):
        t0 = time.perf_counter()
        rows = pk_rows(members, _classes_per_batch(cfg), cfg.batch_size, rng)
        emb = model(torch.from_numpy(augment(data.train_images[rows], rng)))
        yb = data.train_labels[rows]
        loss = loss_fn(emb, torch.from_numpy(yb))
        opt.zero_grad()
        loss.backward()
        opt.step()
        train_seconds += time.perf_counter() - t0
        losses.append(float(loss.detach()))
        bar.update(1)
        if step % sched.eval_steps == 0 or step == sched.total:
            if has_triplet(yb):
                batch_l = hardest_triplet(emb.detach().numpy(), yb).value
            history.append(measure(step, train_seconds, float(np.mean(losses)), batch_l))
            losses = []
            write(snapshot_line(history[-1], cfg.embedding_dim))
    bar.close()
    after = history[-1]
    say(
        f"unseen classes: Recall@1 {before.recall_at_1:.4f} -> {after.recall_at_1:.4f}, "
        f"MAP@R {before.map_at_r:.4f} -> {after.map_at_r:.4f} "
        f"({len(data.test_labels)} queries); training {train_seconds:.1f} s"
    )
    result = DemoResult(
        config={**asdict(cfg), "out": str(cfg.out), "reduction": reduction, "quick": quick},
        data=_data_summary(cfg, data, sched),
        before=before,
        after=after,
        history=history,
        seconds_train=train_seconds,
    )
    result.files = write_glyph_report(result, embed(model, data.test_images), data, cfg.out)
    result.seconds_total = time.perf_counter() - t_start
    (cfg.out / "summary.json").write_text(json.dumps(jsonable(result), indent=2) + "\n")
    say(f"report: {cfg.out}/ ({', '.join(result.files)}); total {result.seconds_total:.1f} s")
    return result


def _data_summary(cfg: DemoConfig, data: GlyphData, sched: Any) -> dict[str, Any]:
    return {
        "dataset": "tripletcore.datasets.load_glyphs (32 x 32)",
        "classes": data.classes,
        "train_classes": data.train_classes,
        "test_classes": data.test_classes,
        "train": len(data.train_labels),
        "test": len(data.test_labels),
        "steps": sched.total,
        "steps_per_epoch": sched.steps_per_epoch,
        "classes_per_batch": _classes_per_batch(cfg),
    }


def pk_rows(members: list[I64], p: int, size: int, rng: np.random.Generator) -> I64:
    """``size`` rows from ``p`` random classes, shared out evenly, drawn
    without replacement within a class while it has rows enough."""
    p = min(p, len(members))
    counts = np.full(p, size // p)
    counts[: size % p] += 1
    chosen = rng.choice(len(members), p, replace=False)
    rows = [
        rng.choice(members[c], int(k), replace=len(members[c]) < k)
        for c, k in zip(chosen, counts, strict=True)
    ]
    return np.concatenate(rows).astype(np.int64)


def _classes_per_batch(cfg: DemoConfig) -> int:
    return max(2, cfg.batch_size // SAMPLES_PER_BATCH_CLASS)


def write_glyph_report(r: DemoResult, emb: F64, data: GlyphData, out: Path) -> list[str]:
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "test_embeddings.npy", emb.astype(np.float32))
    np.save(out / "test_labels.npy", data.test_labels)
    (out / "summary.json").write_text(json.dumps(jsonable(r), indent=2) + "\n")
    (out / "summary.md").write_text(glyph_markdown(r, out))
    plot_training(r, out / "training.png", title="glyphs (unseen classes)")
    return ["summary.md", "summary.json", "training.png", "test_embeddings.npy", "test_labels.npy"]


def glyph_markdown(r: DemoResult, out: Path) -> str:
    c, d, b, a = r.config, r.data, r.before, r.after
    rows = [
        ("Recall@1", b.recall_at_1, a.recall_at_1),
        ("MAP@R", b.map_at_r, a.map_at_r),
        ("R-precision", b.r_precision, a.r_precision),
        ("NMI (k-means)", b.nmi, a.nmi),
        ("hardest triplet L", b.hardest, a.hardest),
        ("d_iso(f, F_TS) >= L/2", b.iso_lower, a.iso_lower),
        ("spread", b.spread, a.spread),
        ("effective rank", b.effective_rank, a.effective_rank),
        ("anchors at the margin", b.at_margin, a.at_margin),
    ]
    table = "\n".join(f"| {name} | {x:.4f} | {y:.4f} |" for name, x, y in rows)
    return f"""# tripletcore demo report: glyphs

Rendered DejaVu glyphs (`tripletcore.datasets.load_glyphs`, {d["classes"]} classes; see
docs/glyphs.md). A CNN trained on {d["train_classes"]} classes ({d["train"]} images) with
`TripletMarginLoss(margin={c["margin"]}, mining="{c["mining"]}")`, {d["steps"]} steps of
{c["batch_size"]} rows (seed {c["seed"]}); measured on {d["test"]} images of
{d["test_classes"]} classes it never saw. Training {r.seconds_train:.1f} s, the whole run
{r.seconds_total:.1f} s.

| measure (unseen classes) | before | after |
|---|---:|---:|
{table}

![training](training.png)

```bash
tripletcore analyze {out}/test_embeddings.npy {out}/test_labels.npy --bounds-sample 60
```
"""
