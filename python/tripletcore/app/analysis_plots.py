"""PNG plots of ``tripletcore analyze --plots DIR`` (needs matplotlib)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from .._extras import missing
from ..mining import batch_hard


def label_colours(k: int) -> tuple[Any, Any]:
    """A colour map of ``k`` discrete colours, one per class code 0..k-1, and
    the norm that gives each code exactly one colour (and one colour-bar band)."""
    from matplotlib import colormaps
    from matplotlib.colors import BoundaryNorm, ListedColormap

    base = colormaps["tab10" if k <= 10 else "tab20" if k <= 20 else "turbo"]
    colours = base(np.arange(k) % base.N) if k <= 20 else base(np.linspace(0.0, 1.0, k))
    return ListedColormap(colours), BoundaryNorm(np.arange(k + 1) - 0.5, k)


def write_plots(
    X: npt.NDArray[np.float64], labels: npt.NDArray[np.int64], r: dict[str, Any], out: Path
) -> list[str]:
    """A 2-D PCA view with the hardest triplet, the singular-value spectrum,
    and the histogram of per-anchor batch-hard gaps ``d(a,p) - d(a,n)``."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ValueError(missing("--plots", "matplotlib", "plot")) from None
    out.mkdir(parents=True, exist_ok=True)
    xc = X - X.mean(axis=0)
    _, s, vt = np.linalg.svd(xc, full_matrices=False)
    z = xc @ vt[:2].T
    if z.shape[1] < 2:
        z = np.hstack([z, np.zeros((len(z), 1))])
    sep = r["separation"]
    files = []

    fig = Figure(figsize=(6.5, 5.5), layout="constrained")
    ax = fig.subplots()
    classes, codes = np.unique(labels, return_inverse=True)
    cmap, norm = label_colours(len(classes))
    sc = ax.scatter(z[:, 0], z[:, 1], c=codes, cmap=cmap, norm=norm, s=10)
    a, p, n = sep["anchor"], sep["positive"], sep["negative"]
    ax.plot(z[[a, p], 0], z[[a, p], 1], "k-", lw=1.5, label=f"a-p  d = {sep['d_ap']:.3g}")
    ax.plot(z[[a, n], 0], z[[a, n], 1], "r--", lw=1.5, label=f"a-n  d = {sep['d_an']:.3g}")
    ax.legend(title=f"hardest triplet ({a}, {p}, {n})")
    ax.set(title="embeddings, first two principal axes", xlabel="PC 1", ylabel="PC 2")
    ax.set_aspect("equal", adjustable="datalim")
    bar = fig.colorbar(sc, ax=ax, label="label")
    # one tick per class at its colour's centre (at most ~20 legible ticks)
    shown = np.arange(0, len(classes), max(1, -(-len(classes) // 20)))
    bar.set_ticks(shown.tolist(), labels=[str(c) for c in classes[shown]])
    fig.savefig(out / "pca.png", dpi=100)
    files.append(str(out / "pca.png"))

    fig = Figure(figsize=(6.5, 4.5), layout="constrained")
    ax = fig.subplots()
    ax.semilogy(np.arange(1, len(s) + 1), np.maximum(s, 1e-300), "o-", ms=3)
    er = r["collapse"]["effective_rank"]
    ax.set(
        title=f"singular values of the centred embeddings (effective rank {er:.3g})",
        xlabel="index",
        ylabel="singular value",
    )
    fig.savefig(out / "spectrum.png", dpi=100)
    files.append(str(out / "spectrum.png"))

    # The gap (negative on the separated side) from the batch-hard pairs'
    # exact distances; its maximum is the hardest-triplet value.
    bh = batch_hard(X, labels)
    ok = (bh.pos_idx >= 0) & (bh.neg_idx >= 0)
    gap = np.asarray(bh.pos_dist, np.float64)[ok] - np.asarray(bh.neg_dist, np.float64)[ok]
    fig = Figure(figsize=(6.5, 4.5), layout="constrained")
    ax = fig.subplots()
    ax.hist(gap, bins=50, color="C0")
    ax.axvline(0.0, color="k", ls=":", label="Triplet-Separated side: < 0")
    ax.set(
        title="per-anchor batch-hard gap d(a,p) - d(a,n)",
        xlabel="farthest positive minus nearest negative",
        ylabel="anchors",
    )
    ax.legend()
    fig.savefig(out / "gaps.png", dpi=100)
    files.append(str(out / "gaps.png"))
    return files
