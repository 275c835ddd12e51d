"""The glyph benchmark (:func:`tripletcore.datasets.load_glyphs`, docs/glyphs.md)
cut for the experiments: the Omniglot protocol, classes unseen at test.

``glyph_split(seed, classes)`` loads ``classes`` classes spread over the
code points (24 samples each, two per DejaVu face), gives half of them
(drawn by ``seed``) to testing, and of the other half keeps a fifth of the
classes for validation (model selection), so validation classes are unseen
too. Labels are renumbered 0..C-1 within each part; pixels are flattened
and scaled to [0, 1] (``pool=2`` averages 2 x 2 blocks first: 16 x 16)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from tripletcore.datasets import ImageSet, load_glyphs

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]

VAL_FRACTION = 0.2


@dataclass
class GlyphParts:
    x: dict[str, F32]
    y: dict[str, I64]
    classes: dict[str, int]
    side: int  # image side after pooling


def _flat(s: ImageSet, pool: int) -> tuple[F32, int]:
    img = s.images.astype(np.float32) / np.float32(255.0)
    n, side, _ = img.shape
    if pool > 1:
        side //= pool
        img = img.reshape(n, side, pool, side, pool).mean(axis=(2, 4))
    return np.ascontiguousarray(img.reshape(n, -1), dtype=np.float32), side


def glyph_split(
    seed: int, classes: int, *, samples_per_class: int = 24, pool: int = 1
) -> GlyphParts:
    """Train / validation / test parts with disjoint classes (see the module)."""
    g = load_glyphs(32, samples_per_class=samples_per_class, max_classes=classes, progress=False)
    split = g.split_classes(seed=seed)
    rng = np.random.default_rng([seed, 1])
    train_classes = rng.permutation(split.train_classes)
    n_val = max(2, round(VAL_FRACTION * len(train_classes)))
    parts = {
        "train": split.train.subset(np.isin(split.train.labels, train_classes[n_val:])),
        "val": split.train.subset(np.isin(split.train.labels, train_classes[:n_val])),
        "test": split.test,
    }
    out = GlyphParts({}, {}, {}, 0)
    for name, part in parts.items():
        out.x[name], out.side = _flat(part, pool)
        out.y[name] = np.unique(part.labels, return_inverse=True)[1].astype(np.int64)
        out.classes[name] = int(out.y[name].max()) + 1
    return out
