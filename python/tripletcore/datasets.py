"""Small image data sets for metric-learning experiments, in the manner of
scikit-learn's loaders: :func:`load_glyphs` (a many-class benchmark rendered
offline from the DejaVu fonts that ship with matplotlib; docs/glyphs.md) and
:func:`load_digits` (scikit-learn's 8 x 8 handwritten digits).

The glyph benchmark, in short: every code point that all twelve DejaVu faces
(Sans, Serif, Sans Mono; regular, bold, oblique, bold oblique) draw is a
candidate class; classes whose canonical renderings coincide are merged (the
lowest code point stays: Latin A stays, Greek Alpha and Cyrillic A go) and
near-empty ones are dropped, which leaves about 1,950 classes at 32 x 32.
Each sample is one face's glyph with random affine jitter, a stroke-width
change and noise, drawn from a generator seeded by ``(seed, code point)``:
the same arguments give the same bytes, and a class's samples do not depend
on which other classes are loaded. :meth:`ImageSet.split_classes` gives the
Omniglot protocol: half the classes to train on, the other half unseen.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from . import _glyph_render as render
from ._errors import InputError

__all__ = [
    "FACES",
    "GlyphSplit",
    "ImageSet",
    "default_cache_dir",
    "glyph_classes",
    "load",
    "load_digits",
    "load_glyphs",
]

F32 = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]
I64 = npt.NDArray[np.int64]

FACES = render.FACES
#: Bumped whenever rendering changes, so that old caches are not reused.
CACHE_VERSION = 1
#: Two classes coincide when, in some face, their canonical renders
#: (binarised at half intensity) differ in at most this fraction of the
#: pixels: 2 of 1024 at 32 x 32. A glyph is empty when it has fewer than
#: ``_MIN_INK`` ink pixels in some face.
COINCIDE_FRACTION = 2 / 1024
_MIN_INK = 3
SIZES = (8, 128)  # allowed image sizes, inclusive


@dataclass(frozen=True)
class ImageSet:
    """Labelled grayscale images.

    ``images`` (N, size, size), uint8 for glyphs (0 background, 255 ink) and
    float32 in [0, 1] for digits; ``labels`` (N,) index ``class_names``;
    ``fonts`` (N,) index ``face_names`` (glyphs only; -1 for digits).
    ``code_points`` (C,) is the code point of each glyph class."""

    images: npt.NDArray[Any]
    labels: I64
    class_names: tuple[str, ...]
    fonts: I64
    face_names: tuple[str, ...] = ()
    code_points: I64 = field(default_factory=lambda: np.zeros(0, np.int64))

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, rows: npt.NDArray[Any]) -> ImageSet:
        """The samples ``rows`` (indices or a boolean mask); class and face
        lists unchanged, so labels keep their meaning."""
        return replace(
            self, images=self.images[rows], labels=self.labels[rows], fonts=self.fonts[rows]
        )

    def split_classes(self, seed: int = 0, test_faces: Iterable[str] = ()) -> GlyphSplit:
        """The Omniglot protocol: the classes are permuted by ``seed`` and
        the first half (rounded down) is for training, the rest unseen at
        test. With ``test_faces``, those faces are held out too: training
        keeps only the other faces, the test only these."""
        present = np.unique(self.labels)
        perm = np.random.default_rng(seed).permutation(present)
        train_classes = np.sort(perm[: len(present) // 2])
        is_train = np.isin(self.labels, train_classes)
        held = _face_indices(test_faces, self.face_names, "test_faces")
        in_test_face = np.isin(self.fonts, held) if held.size else np.ones(len(self), bool)
        in_train_face = ~np.isin(self.fonts, held)
        train = self.subset(is_train & in_train_face)
        test = self.subset(~is_train & in_test_face)
        return GlyphSplit(train, test, train_classes, np.setdiff1d(present, train_classes))


@dataclass(frozen=True)
class GlyphSplit:
    train: ImageSet
    test: ImageSet
    train_classes: I64
    test_classes: I64


# ---------------------------------------------------------------- arguments


def _as_int(value: Any, name: str, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < low or (high is not None and value > high):
        span = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise InputError(f"{name} must be {span}, got {value}", name, "range")
    return int(value)


def _face_indices(faces: Iterable[str], known: Sequence[str], name: str) -> I64:
    if isinstance(faces, str):
        raise TypeError(f"{name} must be a sequence of face names, not one string")
    out = []
    for f in faces:
        if f not in known:
            raise InputError(
                f"{name}: unknown face {f!r}; choose from {', '.join(known)}", name, "option"
            )
        out.append(known.index(f))
    return np.asarray(sorted(set(out)), np.int64)


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/tripletcore``, else ``~/.cache/tripletcore``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "tripletcore"


def _cache_folder(cache_dir: str | os.PathLike[str] | None) -> Path:
    if cache_dir is not None and not isinstance(cache_dir, str | os.PathLike):
        raise TypeError(f"cache_dir must be a path, got {type(cache_dir).__name__}")
    folder = default_cache_dir() if cache_dir is None else Path(cache_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise InputError(
            f"cache_dir {str(folder)!r} is not a writable folder ({e.strerror or e}); "
            "pass another cache_dir or cache=False",
            "cache_dir",
            "range",
        ) from None
    return folder


# ---------------------------------------------------------------- cache


def _checksum(arrays: dict[str, npt.NDArray[Any]], key: str) -> str:
    h = hashlib.sha256(key.encode())
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _read_cache(path: Path, key: str) -> dict[str, npt.NDArray[Any]] | None:
    """The arrays of a cache file whose key and checksum match, else None
    (with a warning when the file exists but is unusable)."""
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        stored_key = str(arrays.pop("key"))
        stored_sum = str(arrays.pop("checksum"))
        if stored_key == key and stored_sum == _checksum(arrays, key):
            return arrays
        why = "its key or checksum does not match"
    except Exception as e:  # any unreadable file: rebuild it
        why = f"it cannot be read ({type(e).__name__}: {e})"
    warnings.warn(f"rebuilding the cache file {path}: {why}", RuntimeWarning, stacklevel=3)
    return None


def _write_cache(path: Path, key: str, arrays: dict[str, npt.NDArray[Any]]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        payload: dict[str, Any] = dict(arrays)
        payload.update(key=np.asarray(key), checksum=np.asarray(_checksum(arrays, key)))
        np.savez(f, **payload)
    os.replace(tmp, path)  # atomic: a reader never sees half a file


def _mpl_version() -> str:
    render.ft2font()  # the ImportError naming the extra
    return str(importlib.import_module("matplotlib").__version__)


def _progress(total: int, desc: str, enabled: bool | None) -> Any:
    """A tqdm bar when tqdm is installed (``enabled=None``: only on a
    terminal), else None."""
    if enabled is False:
        return None
    try:
        tqdm = importlib.import_module("tqdm").tqdm
    except ImportError:
        return None
    return tqdm(
        total=total,
        desc=desc,
        unit="glyph",
        leave=False,
        disable=None if enabled is None else False,
    )


# ---------------------------------------------------------------- classes


def _canonical(code_points: I64, size: int, bar: Any) -> F32:
    """Undistorted renders (C, faces, size, size) in [0, 1]."""
    out = np.empty((len(code_points), len(FACES), size, size), np.float32)
    for f, path in enumerate(render.font_files(FACES)):
        out[:, f] = render.downsample(render.render_masters(path, code_points, 2 * size))
        if bar is not None:
            bar.update(len(code_points))
    return out


def coinciding(renders: F32, tolerance: int) -> npt.NDArray[np.bool_]:
    """(C, C) boolean: classes whose binarised renders differ in at most
    ``tolerance`` pixels in at least one face (the diagonal is True)."""
    c, faces = renders.shape[:2]
    ink = (renders.reshape(c, faces, -1) > 0.5).astype(np.float32)
    out = np.zeros((c, c), bool)
    for f in range(faces):
        b = ink[:, f]
        n = b.sum(axis=1)
        hamming = n[:, None] + n[None, :] - 2.0 * (b @ b.T)
        out |= hamming <= tolerance + 0.5
    return out


def _select_classes(code_points: I64, renders: F32, size: int) -> I64:
    """Drop empty glyphs, then keep a class only when it coincides with no
    class kept before it (ascending code points)."""
    ink = (renders > 0.5).sum(axis=(2, 3))
    empty = (ink < _MIN_INK).any(axis=1)
    same = coinciding(renders, int(COINCIDE_FRACTION * size * size))
    gone = empty.copy()
    keep = []
    for i in range(len(code_points)):
        if not gone[i]:
            keep.append(i)
            gone |= same[i]
    return code_points[np.asarray(keep, np.int64)]


def glyph_classes(
    size: int = 32,
    *,
    cache: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool | None = None,
) -> I64:
    """The code points of the glyph classes at ``size`` (ascending): those
    all twelve faces draw, less the empty and the coinciding ones. Cached."""
    size = _as_int(size, "size", *SIZES)
    key = json.dumps(
        {"what": "classes", "v": CACHE_VERSION, "size": size, "mpl": _mpl_version()},
        sort_keys=True,
    )
    path = (
        _cache_folder(cache_dir) / f"glyph-classes-v{CACHE_VERSION}-{size}px.npz" if cache else None
    )
    if path is not None and (hit := _read_cache(path, key)) is not None:
        return np.asarray(hit["code_points"], np.int64)
    candidates = render.shared_code_points(FACES)
    bar = _progress(len(candidates) * len(FACES), "glyph classes", progress)
    try:
        kept = _select_classes(candidates, _canonical(candidates, size, bar), size)
    finally:
        if bar is not None:
            bar.close()
    if path is not None:
        _write_cache(path, key, {"code_points": kept})
    return kept


# ---------------------------------------------------------------- samples


def _pick(classes: I64, max_classes: int | None) -> I64:
    """``max_classes`` classes spread evenly over the code points (so a
    small set still mixes scripts and symbols), else all."""
    if max_classes is None or max_classes >= len(classes):
        return classes
    idx = np.unique(np.linspace(0, len(classes) - 1, max_classes).round().astype(np.int64))
    return classes[idx]


def _render_samples(
    code_points: I64, faces: I64, per_class: int, size: int, seed: int, bar: Any
) -> tuple[U8, I64, I64]:
    files = render.font_files([FACES[f] for f in faces])
    masters = np.stack([render.render_masters(p, code_points, 2 * size) for p in files], axis=1)
    face_of = np.arange(per_class) % len(faces)  # sample j: face j mod F
    images = np.empty((len(code_points), per_class, size, size), np.uint8)
    for k, cp in enumerate(code_points):
        rng = np.random.default_rng([seed, int(cp)])
        images[k] = render.distort(masters[k, face_of], rng)
        if bar is not None:
            bar.update(1)
    labels = np.repeat(np.arange(len(code_points), dtype=np.int64), per_class)
    fonts = np.tile(faces[face_of], len(code_points))
    return images.reshape(-1, size, size), labels, fonts


def load_glyphs(
    size: int = 32,
    *,
    samples_per_class: int = 24,
    max_classes: int | None = None,
    faces: Sequence[str] | None = None,
    seed: int = 0,
    cache: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool | None = None,
) -> ImageSet:
    """Rendered glyphs: ``samples_per_class`` images per class, uint8
    (N, size, size), classes in ascending code point order.

    Sample ``j`` of a class uses face ``faces[j % len(faces)]`` (default
    all twelve, :data:`FACES`), so 24 samples are two per face. With
    ``max_classes``, that many classes spread evenly over the code points.
    Results are cached under ``cache_dir`` (default
    :func:`default_cache_dir`); a cache file whose key or checksum does not
    match is rebuilt with a warning. ``progress``: a tqdm bar (None: on a
    terminal only). Needs matplotlib (the ``plot`` extra).
    """
    size = _as_int(size, "size", *SIZES)
    per_class = _as_int(samples_per_class, "samples_per_class", 1, 10_000)
    if max_classes is not None:
        max_classes = _as_int(max_classes, "max_classes", 2)
    seed = _as_int(seed, "seed", 0)
    face_idx = _face_indices(FACES if faces is None else faces, FACES, "faces")
    if face_idx.size == 0:
        raise InputError("faces must name at least one face", "faces", "empty")
    folder = _cache_folder(cache_dir) if cache else None
    params = {
        "what": "glyphs",
        "v": CACHE_VERSION,
        "size": size,
        "per_class": per_class,
        "max_classes": max_classes,
        "faces": face_idx.tolist(),
        "seed": seed,
        "mpl": _mpl_version(),
    }
    key = json.dumps(params, sort_keys=True)
    tag = hashlib.sha256(key.encode()).hexdigest()[:16]
    path = None if folder is None else folder / f"glyphs-v{CACHE_VERSION}-{size}px-{tag}.npz"
    arrays = None if path is None else _read_cache(path, key)
    if arrays is None:
        classes = _pick(glyph_classes(size, cache=cache, cache_dir=cache_dir), max_classes)
        bar = _progress(len(classes), "rendering glyphs", progress)
        try:
            images, labels, fonts = _render_samples(classes, face_idx, per_class, size, seed, bar)
        finally:
            if bar is not None:
                bar.close()
        arrays = {"images": images, "labels": labels, "fonts": fonts, "code_points": classes}
        if path is not None:
            _write_cache(path, key, arrays)
    cps = np.asarray(arrays["code_points"], np.int64)
    return ImageSet(
        images=np.asarray(arrays["images"], np.uint8),
        labels=np.asarray(arrays["labels"], np.int64),
        class_names=tuple(render.class_name(int(c)) for c in cps),
        fonts=np.asarray(arrays["fonts"], np.int64),
        face_names=FACES,
        code_points=cps,
    )


def load_digits() -> ImageSet:
    """scikit-learn's 1,797 handwritten digits: float32 (N, 8, 8) images in
    [0, 1] (pixel / 16), labels 0-9. Needs scikit-learn."""
    try:
        sk = importlib.import_module("sklearn.datasets")
    except ImportError as e:
        raise ImportError(
            f"load_digits needs scikit-learn ({e}); install the extra: "
            "pip install 'tripletcore[demo]'"
        ) from None
    d = sk.load_digits()
    labels = np.asarray(d.target, np.int64)
    return ImageSet(
        images=np.asarray(d.images, np.float32) / np.float32(16.0),
        labels=labels,
        class_names=tuple(str(k) for k in range(10)),
        fonts=np.full(len(labels), -1, np.int64),
    )


DATASETS = ("glyphs", "digits")


def load(name: str, **kwargs: Any) -> ImageSet:
    """:func:`load_glyphs` or :func:`load_digits` by name."""
    if name == "glyphs":
        return load_glyphs(**kwargs)
    if name == "digits":
        return load_digits(**kwargs)
    raise InputError(
        f"name: unknown dataset {name!r}; choose from {', '.join(DATASETS)}", "name", "option"
    )
