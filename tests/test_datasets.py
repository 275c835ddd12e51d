"""tripletcore.datasets: the rendered-glyph benchmark and the digits wrapper.

The class list (about 18 s to build) is made once per session in a temporary
cache folder; the sample tests use a few classes."""

import shutil
import sys
import warnings

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from tripletcore import InputError  # noqa: E402
from tripletcore import _glyph_render as render  # noqa: E402
from tripletcore import datasets as ds  # noqa: E402


@pytest.fixture(scope="session")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("glyph-cache")


@pytest.fixture(scope="session")
def classes(cache):
    return ds.glyph_classes(cache_dir=cache)


@pytest.fixture
def fresh(tmp_path, cache, classes):
    """An empty cache folder but for the session's class list."""
    for f in cache.glob("glyph-classes-*.npz"):
        shutil.copy(f, tmp_path / f.name)
    return tmp_path


def small(cache, **kw):
    kw.setdefault("max_classes", 24)
    kw.setdefault("samples_per_class", 12)
    return ds.load_glyphs(cache_dir=cache, **kw)


def test_class_count_and_look_alikes_merged(classes):
    # docs/glyphs.md: 2,364 code points shared by the 12 faces, ~1,950 kept at 32 px
    assert len(render.shared_code_points(ds.FACES)) > 2300
    assert 1850 <= len(classes) <= 2050
    assert np.all(np.diff(classes) > 0)
    kept = set(classes.tolist())
    assert {0x41, 0x48, 0x4B, 0x61} <= kept  # Latin A, H, K, a stay (lowest code point)
    # Greek Alpha, Cyrillic A, Greek Eta, Cyrillic En, Kelvin sign, Cyrillic a go
    assert not kept & {0x391, 0x410, 0x397, 0x41D, 0x212A, 0x430}


def test_no_two_kept_classes_render_alike(classes):
    # every kept class below U+0530 (Latin, Greek, Cyrillic: the look-alikes)
    cps = classes[classes < 0x530]
    renders = ds._canonical(cps, 32, None)
    tol = int(ds.COINCIDE_FRACTION * 32 * 32)
    same = ds.coinciding(renders, tol)
    assert np.array_equal(same, np.eye(len(cps), dtype=bool))
    # the test can fail: among the raw candidates, A and Alpha coincide
    raw = ds._canonical(np.array([0x41, 0x391, 0x410, 0x42]), 32, None)
    m = ds.coinciding(raw, tol)
    assert m[0, 1] and m[0, 2] and not m[0, 3]
    assert (renders > 0.5).sum(axis=(2, 3)).min() >= 3  # none empty


def test_counts_and_determinism(cache, fresh):
    a = small(cache, seed=3)
    b = small(fresh, seed=3)  # rendered again
    assert a.images.dtype == np.uint8 and a.images.shape == (24 * 12, 32, 32)
    assert a.images.tobytes() == b.images.tobytes()
    assert np.array_equal(a.labels, np.repeat(np.arange(24), 12))
    assert len(a.class_names) == 24 and a.class_names[0].startswith("U+0021")
    # sample j uses face j mod 12: every face once per class here
    assert np.array_equal(np.bincount(a.fonts, minlength=12), np.full(12, 24))
    c = small(cache, seed=4)
    assert not np.array_equal(a.images, c.images)
    again = small(cache, seed=3)  # from the cache file
    assert again.images.tobytes() == a.images.tobytes()
    # a class's samples do not depend on which other classes are loaded
    more = small(cache, seed=3, max_classes=48)
    k = len(more.class_names) - 1  # both pick the first and the last class
    assert more.code_points[k] == a.code_points[-1]
    assert np.array_equal(more.images[more.labels == k], a.images[a.labels == 23])
    # noise and jitter: no two samples of a class are equal
    imgs = a.images[a.labels == 0].reshape(12, -1)
    assert len({r.tobytes() for r in imgs}) == 12
    assert 0.02 < a.images.mean() / 255 < 0.5  # ink on a dark background


def test_faces_option(cache):
    g = small(cache, faces=["DejaVuSerif", "DejaVuSans-Bold"], samples_per_class=4)
    assert set(np.unique(g.fonts).tolist()) == {1, 4}


def test_split_is_disjoint_and_halves_the_classes(cache):
    g = small(cache, max_classes=40)
    s = g.split_classes(seed=0)
    assert len(s.train_classes) == len(s.test_classes) == 20
    assert not set(s.train_classes.tolist()) & set(s.test_classes.tolist())
    assert set(np.unique(s.train.labels)) == set(s.train_classes.tolist())
    assert set(np.unique(s.test.labels)) == set(s.test_classes.tolist())
    assert len(s.train) + len(s.test) == len(g)
    assert np.array_equal(g.split_classes(seed=0).test_classes, s.test_classes)
    assert not np.array_equal(g.split_classes(seed=1).test_classes, s.test_classes)
    h = g.split_classes(seed=0, test_faces=["DejaVuSansMono", "DejaVuSerif-Italic"])
    assert not set(h.train.fonts.tolist()) & {6, 8}
    assert set(h.test.fonts.tolist()) == {6, 8}
    assert not set(h.train.labels.tolist()) & set(h.test.labels.tolist())


def test_corrupt_cache_is_rebuilt(fresh):
    tmp_path = fresh
    good = small(tmp_path, max_classes=6, samples_per_class=3)
    files = sorted(tmp_path.glob("glyphs-*.npz"))
    assert len(files) == 1
    raw = bytearray(files[0].read_bytes())
    for corrupt in (raw[: len(raw) // 2], raw[:-300] + bytes(300), b"not a zip"):
        files[0].write_bytes(bytes(corrupt))
        with pytest.warns(RuntimeWarning, match="rebuilding the cache"):
            again = small(tmp_path, max_classes=6, samples_per_class=3)
        assert again.images.tobytes() == good.images.tobytes()
    # a valid archive with altered pixels: the checksum catches it
    with np.load(files[0]) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["images"][0, 5, 5] ^= 1
    np.savez(files[0], **arrays)
    with pytest.warns(RuntimeWarning, match="key or checksum"):
        again = small(tmp_path, max_classes=6, samples_per_class=3)
    assert again.images.tobytes() == good.images.tobytes()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        small(tmp_path, max_classes=6, samples_per_class=3)  # repaired: no warning


@pytest.mark.parametrize(
    ("kw", "arg", "exc"),
    [
        ({"size": 4}, "size", InputError),
        ({"size": 200}, "size", InputError),
        ({"size": 32.0}, "size", TypeError),
        ({"samples_per_class": 0}, "samples_per_class", InputError),
        ({"max_classes": 1}, "max_classes", InputError),
        ({"faces": ["Comic Sans"]}, "faces", InputError),
        ({"faces": []}, "faces", InputError),
        ({"faces": "DejaVuSans"}, "faces", TypeError),
        ({"seed": -1}, "seed", InputError),
        ({"cache_dir": 3}, "cache_dir", TypeError),
    ],
)
def test_bad_arguments_name_the_argument(kw, arg, exc):
    with pytest.raises(exc, match=arg):
        ds.load_glyphs(**kw)


def test_unwritable_cache_and_unknown_name(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(InputError, match="cache_dir") as e:
        ds.load_glyphs(max_classes=4, cache_dir=blocker / "sub")
    assert e.value.arg == "cache_dir"
    with pytest.raises(InputError, match="unknown dataset") as e:
        ds.load("omniglot")
    assert e.value.arg == "name"
    with pytest.raises(InputError, match="test_faces"):
        ds.ImageSet(
            np.zeros((2, 8, 8), np.uint8), np.zeros(2, np.int64), ("a",), np.zeros(2, np.int64)
        ).split_classes(test_faces=["nope"])


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert ds.default_cache_dir() == tmp_path / "tripletcore"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert ds.default_cache_dir() == tmp_path / "home" / ".cache" / "tripletcore"


def test_missing_matplotlib_names_the_plot_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib.ft2font", None)
    with pytest.raises(ImportError, match=r"tripletcore\[plot\]"):
        ds.load_glyphs(max_classes=4, cache_dir=tmp_path)


def test_load_digits():
    pytest.importorskip("sklearn")
    d = ds.load("digits")
    assert d.images.shape == (1797, 8, 8) and d.images.dtype == np.float32
    assert d.images.max() == 1.0 and len(d.class_names) == 10
    s = d.split_classes(seed=0)
    assert len(s.train_classes) == 5 and not set(s.train.labels) & set(s.test.labels)
