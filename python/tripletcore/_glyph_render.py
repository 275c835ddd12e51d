"""Rendering for :func:`tripletcore.datasets.load_glyphs`: the DejaVu faces
that ship with matplotlib, drawn by its FreeType wrapper, and the random
distortions (affine jitter, stroke width, noise) in vectorised NumPy.

Glyphs are drawn on a canvas twice the output size (the *master*), distorted
there and averaged down 2 x 2, which antialiases the result."""

from __future__ import annotations

import importlib
import os
import unicodedata
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]
I64 = npt.NDArray[np.int64]

#: The twelve DejaVu faces (the "Display" files hold only a few glyphs).
FACES: tuple[str, ...] = (
    "DejaVuSans",
    "DejaVuSans-Bold",
    "DejaVuSans-Oblique",
    "DejaVuSans-BoldOblique",
    "DejaVuSerif",
    "DejaVuSerif-Bold",
    "DejaVuSerif-Italic",
    "DejaVuSerif-BoldItalic",
    "DejaVuSansMono",
    "DejaVuSansMono-Bold",
    "DejaVuSansMono-Oblique",
    "DejaVuSansMono-BoldOblique",
)

# Font size in canvas pixels, and the baseline row, as fractions of the
# canvas: the em box (ascender 0.93 em, descender 0.24 em) is centred.
_FONT = 0.62
_BASELINE = 0.5 + 0.35 * _FONT


def ft2font() -> Any:
    """matplotlib.ft2font, or an ImportError that names the ``plot`` extra."""
    try:
        return importlib.import_module("matplotlib.ft2font")
    except ImportError as e:
        raise ImportError(
            f"the glyph benchmark renders matplotlib's fonts and needs matplotlib ({e}); "
            "install the extra: pip install 'tripletcore[plot]'"
        ) from None


def _no_hinting() -> Any:
    """FT_LOAD_NO_HINTING (outlines as designed, no grid fitting): an enum
    from matplotlib 3.10, a plain int before."""
    flags = getattr(ft2font(), "LoadFlags", None)
    return 2 if flags is None else flags.NO_HINTING


def font_files(faces: Sequence[str]) -> list[str]:
    ft2font()
    mpl = importlib.import_module("matplotlib")
    folder = os.path.join(mpl.get_data_path(), "fonts", "ttf")
    return [os.path.join(folder, f + ".ttf") for f in faces]


def shared_code_points(faces: Sequence[str]) -> I64:
    """Code points every face maps to a glyph (ascending), printable ones
    only: no controls, format or separator characters (they draw nothing)."""
    ft = ft2font()
    common: set[int] | None = None
    for path in font_files(faces):
        cmap = set(ft.FT2Font(path).get_charmap())
        common = cmap if common is None else common & cmap
    keep = [
        cp
        for cp in sorted(common or ())
        if unicodedata.category(chr(cp))[0] not in "CZ" and cp > 0x20
    ]
    return np.asarray(keep, dtype=np.int64)


def class_name(cp: int) -> str:
    return f"U+{cp:04X} {unicodedata.name(chr(cp), '?')}"


def _draw(font: Any, cp: int, px: float) -> tuple[F32, int]:
    """The glyph's bitmap (cropped to its ink box, values in [0, 1]) and its
    descent in pixels (rows below the baseline)."""
    font.clear()
    font.set_size(px, 72)  # 72 dpi: one point is one pixel
    font.set_text(chr(cp), 0.0, flags=_no_hinting())
    font.draw_glyphs_to_bitmap(antialiased=True)
    img = np.asarray(font.get_image(), dtype=np.float32) / 255.0
    return img, round(font.get_descent() / 64)


def render_masters(path: str, code_points: Sequence[int] | I64, canvas: int) -> F32:
    """One undistorted master per code point, ``(C, canvas, canvas)`` in [0, 1]:
    the glyph's box centred horizontally, its baseline on a fixed row (so
    position and size within the em box are part of the shape). A glyph too
    large for the canvas is drawn smaller and centred."""
    font = ft2font().FT2Font(path)
    out = np.zeros((len(code_points), canvas, canvas), np.float32)
    base_px = _FONT * canvas
    baseline = round(_BASELINE * canvas)
    for k, cp in enumerate(code_points):
        img, descent = _draw(font, int(cp), base_px)
        h, w = img.shape
        top = baseline - (h - descent)
        if h > canvas - 2 or w > canvas - 2 or top < 0 or top + h > canvas:
            shrink = (canvas - 4) / max(h, w, 1)
            img, _ = _draw(font, int(cp), base_px * min(shrink, 1.0))
            h, w = img.shape
            h, w = min(h, canvas), min(w, canvas)
            img = img[:h, :w]
            top = (canvas - h) // 2
        left = (canvas - w) // 2
        out[k, top : top + h, left : left + w] = img
    return out


def downsample(x: F32) -> F32:
    """2 x 2 block means: ``(..., 2s, 2s) -> (..., s, s)``."""
    s = x.shape[-1] // 2
    y = x.reshape(*x.shape[:-2], s, 2, s, 2).mean(axis=(-3, -1))
    return np.asarray(y, np.float32)


def _stroke(x: F32, change: npt.NDArray[np.int8]) -> F32:
    """Per image: +1 dilates (max over the 4-neighbourhood), -1 erodes
    half-way (the mean of the image and its 4-neighbourhood min, so that
    hairlines thin instead of vanishing), 0 leaves it."""
    p = np.pad(x, ((0, 0), (1, 1), (1, 1)))
    centre, up, down = p[:, 1:-1, 1:-1], p[:, :-2, 1:-1], p[:, 2:, 1:-1]
    nbrs = np.stack([centre, up, down, p[:, 1:-1, :-2], p[:, 1:-1, 2:]])
    out = x.copy()
    dil, ero = change > 0, change < 0
    out[dil] = nbrs[:, dil].max(axis=0)
    out[ero] = 0.5 * (x[ero] + nbrs[:, ero].min(axis=0))
    return out


def _affine(x: F32, rng: np.random.Generator) -> F32:
    """Random affine maps about the centre, bilinear sampling, zero outside:
    rotation +-10 degrees, scale 0.85-1.1 (and +-8 % between the axes),
    shear +-0.15, shift +-6 % of the canvas."""
    b, m, _ = x.shape
    theta = np.deg2rad(rng.uniform(-10, 10, b))
    scale = rng.uniform(0.85, 1.1, b)
    aspect = rng.uniform(0.92, 1.08, b)
    shear = rng.uniform(-0.15, 0.15, b)
    shift = rng.uniform(-0.06, 0.06, (b, 2)) * m
    c, s = np.cos(theta), np.sin(theta)
    # forward map A = R @ Shear @ diag(sx, sy); sample the source at A^-1 (p - t)
    a = np.empty((b, 2, 2))
    sx, sy = scale * aspect, scale / aspect
    a[:, 0, 0], a[:, 0, 1] = c * sx, (c * shear - s) * sy
    a[:, 1, 0], a[:, 1, 1] = s * sx, (s * shear + c) * sy
    inv = np.linalg.inv(a)
    centre = (m - 1) / 2.0
    rows, cols = np.meshgrid(np.arange(m) - centre, np.arange(m) - centre, indexing="ij")
    grid = np.stack([cols.ravel(), rows.ravel()]).astype(np.float32)  # (2, m*m) as (x, y)
    off = (inv.astype(np.float32) @ -shift[:, :, None].astype(np.float32)) + np.float32(centre)
    src = inv.astype(np.float32) @ grid[None] + off  # (b, 2, m*m)
    fl = np.floor(src)
    frac = src - fl
    # two zero rows and columns around the image: a clipped corner reads zeros
    ij = np.clip(fl, -2, m).astype(np.int32) + 2
    w = m + 4
    idx = ij[:, 1] * w + ij[:, 0]
    padded = np.pad(x, ((0, 0), (2, 2), (2, 2))).reshape(b, -1)
    fx, fy = frac[:, 0], frac[:, 1]
    top = (
        np.take_along_axis(padded, idx, 1) * (1 - fx) + np.take_along_axis(padded, idx + 1, 1) * fx
    )
    idx += w
    bottom = np.take_along_axis(padded, idx, 1) * (1 - fx)
    bottom += np.take_along_axis(padded, idx + 1, 1) * fx
    out = top * (1 - fy) + bottom * fy
    return np.asarray(out.reshape(b, m, m), np.float32)


def distort(masters: F32, rng: np.random.Generator, noise: float = 0.04) -> U8:
    """Distorted renderings of ``masters`` (B, 2s, 2s): stroke change (25 %
    thicker, 25 % thinner), affine jitter, 2 x 2 downsampling, Gaussian
    noise of standard deviation ``noise``; uint8 (B, s, s)."""
    change = rng.choice(np.array([-1, 0, 0, 1], np.int8), size=len(masters))
    x = _affine(_stroke(masters, change), rng)
    y = downsample(x) + rng.normal(0.0, noise, (len(x), x.shape[1] // 2, x.shape[2] // 2))
    return np.asarray(np.clip(np.rint(255 * y), 0, 255), np.uint8)
