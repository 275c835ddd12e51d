"""The demo's report folder: ``summary.json``, ``summary.md`` and the plots
of :func:`tripletcore.app.demo.run_demo`."""

from __future__ import annotations

import importlib
import json
import math
import platform
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from .. import __version__
from .analysis import json_safe

if TYPE_CHECKING:
    from .demo import DemoResult

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

# ---------------------------------------------------------------- report


def jsonable(r: DemoResult) -> dict[str, Any]:
    d = asdict(r)
    d["versions"] = {
        "tripletcore": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": importlib.import_module("torch").__version__,
    }
    d["command"] = "tripletcore demo " + " ".join(sys.argv[2:]) if _is_cli() else None
    out: dict[str, Any] = json_safe(d)
    return out


def _is_cli() -> bool:
    return len(sys.argv) > 1 and sys.argv[1] == "demo"


def write_report(r: DemoResult, emb0: F64, emb1: F64, labels: I64, out: Path) -> list[str]:
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "test_embeddings.npy", emb1.astype(np.float32))
    np.save(out / "test_embeddings_init.npy", emb0.astype(np.float32))
    np.save(out / "test_labels.npy", labels)
    (out / "summary.json").write_text(json.dumps(jsonable(r), indent=2) + "\n")
    (out / "summary.md").write_text(markdown(r, out))
    plot_training(r, out / "training.png")
    plot_embeddings(emb0, emb1, labels, r, out / "embeddings.png")
    return [
        "summary.md",
        "summary.json",
        "training.png",
        "embeddings.png",
        "test_embeddings.npy",
        "test_embeddings_init.npy",
        "test_labels.npy",
    ]


def markdown(r: DemoResult, out: Path) -> str:
    c, b, a = r.config, r.before, r.after
    rows = [
        ("Recall@1", b.recall_at_1, a.recall_at_1),
        ("Recall@2", b.recall_at["2"], a.recall_at["2"]),
        ("MAP@R", b.map_at_r, a.map_at_r),
        ("R-precision", b.r_precision, a.r_precision),
        ("NMI (k-means)", b.nmi, a.nmi),
        ("hardest triplet L (test)", b.hardest, a.hardest),
        ("d_iso(f, F_TS) >= L/2", b.iso_lower, a.iso_lower),
        ("spread (mean distance to centroid)", b.spread, a.spread),
        ("effective rank", b.effective_rank, a.effective_rank),
        ("anchors at the margin", b.at_margin, a.at_margin),
    ]
    table = "\n".join(f"| {name} | {x:.4f} | {y:.4f} |" for name, x, y in rows)
    hist = "\n".join(
        f"| {s.epoch:.1f} | {s.step} | {_num(s.train_loss)} | {s.recall_at_1:.4f} | "
        f"{s.map_at_r:.4f} | {s.hardest:+.4f} | {s.iso_lower:.4f} | {s.spread:.4f} | "
        f"{s.effective_rank:.2f} | {s.at_margin:.3f} |"
        for s in r.history
    )
    return f"""# tripletcore demo report

Digits (scikit-learn, {r.data["train"]} train / {r.data["test"]} test images), MLP
64-{c["hidden"]}-{c["hidden"]}-{c["embedding_dim"]} with L2-normalised outputs, trained with
`tripletcore.torch.TripletMarginLoss(margin={c["margin"]}, mining="{c["mining"]}",
reduction="{c["reduction"]}")` on P x K batches of {c["batch_size"]} rows for
{r.data["steps"]} steps (seed {c["seed"]}); training took {r.seconds_train:.1f} s,
the whole run {r.seconds_total:.1f} s. All measures are on the test set.

| measure | before | after |
|---|---:|---:|
{table}

L is the hardest-triplet value `sup d(a,p) - d(a,n)` (eq. 38): L <= 0 means the
test embedding is Triplet-Separated, and any Triplet-Separated embedding is at
least `max(0, L)/2` away in the isometric error `d_iso`. A spread and an
effective rank that keep falling while the loss sits near the margin are the
signs of collapse. Batch-hard training from scratch usually passes through a
short collapsed phase (spread near 0, every anchor at the margin) before it
spreads out; with a batch much larger than the embedding dimension it stays
there: compare `--batch-size 1000 --embedding-dim 8 --steps 1500` with
`--batch-size 80 --embedding-dim 8 --steps 1500`.

## During training

| epoch | step | train loss | Recall@1 | MAP@R | L | L/2 | spread | eff. rank | at margin |
|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|
{hist}

![training](training.png)

![embeddings](embeddings.png)

Analyse the saved test embeddings further, against the untrained network's:

```bash
tripletcore analyze {out}/test_embeddings.npy {out}/test_labels.npy \\
    --compare {out}/test_embeddings_init.npy --plots {out}/analysis
```
"""


def _num(v: float) -> str:
    return "-" if math.isnan(v) else f"{v:.4f}"


def plot_training(r: DemoResult, path: Path, title: str = "digits") -> None:
    from matplotlib.figure import Figure

    h = r.history
    ep = [s.epoch for s in h]
    fig = Figure(figsize=(11, 7.5), layout="constrained")
    ax = fig.subplots(2, 2)
    ax[0, 0].plot(ep[1:], [s.train_loss for s in h[1:]], "o-", color="C0")
    ax[0, 0].axhline(r.config["margin"], color="grey", ls=":", label="margin")
    ax[0, 0].set(title="training loss (mean between evaluations)", xlabel="epoch")
    ax[0, 0].legend()
    ax[0, 1].plot(ep, [s.recall_at_1 for s in h], "o-", label="Recall@1")
    ax[0, 1].plot(ep, [s.map_at_r for s in h], "s-", label="MAP@R")
    ax[0, 1].set(title="test retrieval", xlabel="epoch", ylim=(0, 1.02))
    ax[0, 1].legend()
    ax[1, 0].plot(ep, [s.hardest for s in h], "o-", label="hardest triplet L (test)")
    ax[1, 0].plot(ep, [s.iso_lower for s in h], "s-", label="d_iso(f, F_TS) >= max(0, L)/2")
    ax[1, 0].plot(ep[1:], [s.batch_hardest for s in h[1:]], "^-", label="L of a training batch")
    ax[1, 0].axhline(0.0, color="grey", ls=":")
    ax[1, 0].set(title="Triplet-Separation", xlabel="epoch")
    ax[1, 0].legend()
    ax[1, 1].plot(ep, [s.spread for s in h], "o-", label="spread (mean dist. to centroid)")
    ax[1, 1].plot(ep, [s.effective_rank_frac for s in h], "s-", label="effective rank / d")
    ax[1, 1].plot(ep, [s.at_margin for s in h], "^-", label="anchors at the margin")
    ax[1, 1].set(title="collapse indicators (test)", xlabel="epoch", ylim=(0, None))
    ax[1, 1].legend()
    c = r.config
    fig.suptitle(
        f"{title}, {c['mining']}, batch {c['batch_size']}, embedding dim {c['embedding_dim']}"
    )
    fig.savefig(path, dpi=100)


def pca2(x: F64) -> F64:
    """The rows projected on their first two principal axes (zero-padded in 1-D)."""
    xc = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(xc, full_matrices=False)
    out = xc @ vt[:2].T
    if out.shape[1] < 2:
        out = np.hstack([out, np.zeros((len(out), 2 - out.shape[1]))])
    return np.asarray(out, dtype=np.float64)


def plot_embeddings(emb0: F64, emb1: F64, labels: I64, r: DemoResult, path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 5), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, e, s, title in (
        (axes[0], emb0, r.before, "before training"),
        (axes[1], emb1, r.after, "after training"),
    ):
        z = pca2(e)
        sc = ax.scatter(z[:, 0], z[:, 1], c=labels, cmap="tab10", s=9, vmin=-0.5, vmax=9.5)
        a, p, n = s.hardest_triplet
        ax.plot(z[[a, p], 0], z[[a, p], 1], "k-", lw=1.5)
        ax.plot(z[[a, n], 0], z[[a, n], 1], "r--", lw=1.5)
        ax.set(
            title=f"{title}: Recall@1 {s.recall_at_1:.3f}, MAP@R {s.map_at_r:.3f}",
            xlabel="PC 1",
            ylabel="PC 2",
        )
        ax.set_aspect("equal", adjustable="datalim")
    fig.colorbar(sc, ax=axes, ticks=range(10), label="digit")
    fig.suptitle("test embeddings (PCA); hardest triplet: a-p black, a-n red dashed")
    fig.savefig(path, dpi=100)
