"""Reliability of the Rust bindings (issue 16; docs/reliability.md).

- No panic reaches Python: every `_core` entry point, forced to panic inside
  a rayon worker by the test-only `_core._force_panic`, raises RuntimeError.
- Magnitudes: every kernel on integer data scaled by 2^e, for e across the
  whole float range (subnormals to the overflow edge), gives the indices of
  the unscaled data and its values scaled by 2^e, rounded once (`np.ldexp`).
- Ctrl-C: a long kernel in a subprocess stops soon after SIGINT.
- An input array changed by another thread during a call never panics and
  never gives NaN.

`RELIABILITY=1` selects the longer hypothesis profile ("reliability").
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tripletcore as tc
from tripletcore import _core
from tripletcore.distance import pair_distances

settings.register_profile(
    "reliability", parent=settings.get_profile("tripletcore"), max_examples=2000
)
LONG = os.environ.get("RELIABILITY") == "1"
EXAMPLES = settings.get_profile("reliability").max_examples if LONG else 60

rng = np.random.default_rng(16)
X = rng.standard_normal((40, 5))
X2 = rng.standard_normal((40, 5))
Y = np.arange(40) % 4

# One public call per `_core` entry point.
ENTRY_POINTS = {
    "all_finite": lambda: _core.all_finite(X),
    "cdist": lambda: tc.cdist(X),
    "batch_hard": lambda: tc.batch_hard(X, Y),
    "semi_hard": lambda: tc.semi_hard(X, Y),
    "triplet_margin_loss": lambda: tc.triplet_margin_loss(X, Y),
    "hausdorff": lambda: tc.hausdorff(X, X2),
    "class_hausdorff": lambda: tc.class_hausdorff(X, X2, Y),
    "sup_displacement": lambda: tc.sup_displacement(X, X2),
    "diameter": lambda: tc.diameter(X),
    "isometric_error": lambda: tc.isometric_error(X, X2),
    "hardest_triplet": lambda: tc.hardest_triplet(X, Y),
    "min_width_2d": lambda: tc.thickness(X[:, :2]),
    "knn": lambda: tc.knn(X, 3),
    "pair_distances": lambda: pair_distances(X, X2, [0, 1], [2, 3]),
    "kcenter": lambda: tc.kcenter(X, 3),
    "covering_radius": lambda: tc.covering_radius(X, Y, X[:4], np.arange(4)),
}


def test_every_entry_point_is_listed():
    names = {n for n in dir(_core) if not n.startswith("_") and callable(getattr(_core, n))}
    assert names == set(ENTRY_POINTS)


@pytest.mark.parametrize("name", sorted(ENTRY_POINTS))
def test_a_panic_becomes_runtime_error(name):
    ENTRY_POINTS[name]()  # works unforced
    _core._force_panic(name)
    try:
        with pytest.raises(RuntimeError, match=f"internal error occurred in {name}: forced panic"):
            ENTRY_POINTS[name]()
    finally:
        _core._force_panic(None)
    ENTRY_POINTS[name]()  # and works again


def test_a_panic_on_the_watched_thread_becomes_runtime_error():
    # large enough to run on the watcher's scoped thread, not inline
    big = rng.standard_normal((2100, 16))
    _core._force_panic("*")
    try:
        with pytest.raises(RuntimeError, match="internal error"):
            tc.batch_hard(big, np.arange(2100) % 7)
    finally:
        _core._force_panic(None)


# --- magnitudes ------------------------------------------------------------

F64_EXPONENTS = (-1074 + 4, -1060, -1040, -1023, -1000, -600, -300, 0, 300, 600, 1000, 1019)
F32_EXPONENTS = (-149 + 4, -140, -127, -100, -64, 0, 64, 100, 123)


def sweep(dtype):
    return F64_EXPONENTS if dtype == np.float64 else F32_EXPONENTS


def ints(seed, n=24, d=3):
    r = np.random.default_rng(seed)
    return r.integers(-8, 9, (n, d)).astype(np.float64), r.integers(0, 3, n)


def scale(a, e, dtype):
    out = np.ldexp(a, e).astype(dtype)
    assert np.array_equal(np.ldexp(out.astype(np.float64), -e), a)  # exact
    return out


def expect(values, e, dtype, power=1):
    """Values of the unscaled data times 2^(power e), rounded once to dtype."""
    with np.errstate(over="ignore"):  # inf is the expected overflow
        return np.ldexp(np.asarray(values, dtype=np.float64), power * e).astype(dtype)


def same(got, want, alt=None):
    """Equal bit for bit to `want`, or elementwise to `want` or `alt`: a
    float32 kernel may round its float32 value again where the scaled
    result is subnormal (both are roundings of the exact value)."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype, (got.dtype, want.dtype)
    ok = (got == want) | (np.isnan(got) & np.isnan(want))
    if alt is not None:
        ok |= got == np.asarray(alt)
    assert ok.all(), (got, want, alt)


def run_all(a, b, y):
    return {
        "bh": tc.batch_hard(a, y),
        "cd": {m: tc.cdist(a, b, metric=m) for m in ("euclidean", "sqeuclidean")},
        "knn": tc.knn(a, 4),
        "diam": tc.diameter(a),
        "haus": tc.hausdorff(a, b),
        "ch": tc.class_hausdorff(a, b, y),
        "cov": tc.covering_radius(a, y, b[:6], np.arange(6) % 3),
        "kc": tc.kcenter(a, 5),
        "iso": tc.isometric_error(a, b),
    }


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("seed", [0, 1])
def test_exponent_sweep_every_kernel(dtype, seed):
    a, y = ints(seed)
    b, _ = ints(seed + 100)
    b64, bt = run_all(a, b, y), run_all(a.astype(dtype), b.astype(dtype), y)

    def both(get, e, p=1):
        return expect(get(b64), e, dtype, p), expect(get(bt), e, dtype, p)

    for e in sweep(dtype):
        xa, xb = scale(a, e, dtype), scale(b, e, dtype)
        got = run_all(xa, xb, y)
        for f in ("pos_idx", "neg_idx"):
            same(getattr(got["bh"], f), getattr(bt["bh"], f))
        for f in ("pos_dist", "neg_dist"):
            same(getattr(got["bh"], f), *both(lambda r, f=f: getattr(r["bh"], f), e))
        same(got["cd"]["euclidean"], *both(lambda r: r["cd"]["euclidean"], e))
        same(got["cd"]["sqeuclidean"], *both(lambda r: r["cd"]["sqeuclidean"], e, 2))
        same(got["knn"].indices, bt["knn"].indices)
        same(got["knn"].distances, *both(lambda r: r["knn"].distances, e))
        for key in ("diam", "haus", "iso"):
            assert (got[key].i, got[key].j) == (bt[key].i, bt[key].j), (key, e)
            want = float(expect(b64[key].distance, e, np.float64))
            assert got[key].distance == want, (key, e)
        same(got["ch"].per_class, expect(b64["ch"].per_class, e, np.float64))
        same(got["cov"].per_class, expect(b64["cov"].per_class, e, np.float64))
        same(got["kc"].indices, bt["kc"].indices)
        assert got["kc"].radius == float(expect(b64["kc"].radius, e, np.float64)), e


@pytest.mark.parametrize("e", [-1060, -1030, -900, -300, 300, 900, 1000])
@pytest.mark.parametrize("mining", ["batch_hard", "batch_all"])
def test_exponent_sweep_loss(e, mining):
    a, y = ints(3)
    loss0, grad0 = tc.triplet_margin_loss(a, y, margin=1.0, mining=mining)
    xa = scale(a, e, np.float64)
    loss, grad = tc.triplet_margin_loss(xa, y, margin=float(np.ldexp(1.0, e)), mining=mining)
    assert loss == pytest.approx(np.ldexp(loss0, e), rel=1e-12)
    np.testing.assert_allclose(grad, grad0, rtol=1e-12, atol=1e-15)


@settings(max_examples=EXAMPLES, deadline=None)
@given(
    st.integers(-1070, 1019),
    st.integers(0, 2**32 - 1),
    st.sampled_from(["euclidean", "sqeuclidean"]),
)
def test_exponent_property_batch_hard_knn(e, seed, metric):
    a, y = ints(seed, n=16, d=2)
    base, kbase = tc.batch_hard(a, y, metric=metric), tc.knn(a, 3, metric=metric)
    xa = scale(a, e, np.float64)
    p = 2 if metric == "sqeuclidean" else 1
    got, k = tc.batch_hard(xa, y, metric=metric), tc.knn(xa, 3, metric=metric)
    same(got.pos_idx, base.pos_idx)
    same(got.neg_idx, base.neg_idx)
    same(got.pos_dist, expect(base.pos_dist, e, np.float64, p))
    same(k.indices, kbase.indices)
    same(k.distances, expect(kbase.distances, e, np.float64, p))


def test_subnormal_repro_of_the_issue():
    x = np.random.default_rng(0).standard_normal((12, 3)) * 1e-310
    y = np.arange(12) % 4
    assert tc.diameter(x).distance > 0
    assert (tc.batch_hard(x, y).pos_idx >= 0).all()
    assert tc.triplet_margin_loss(x, y)[0] == pytest.approx(0.2)
    assert np.isfinite(tc.kcenter(x, 3).radius)
    tc.hausdorff(x, x[::-1].copy())
    tc.class_hausdorff(x, 2 * x, y)
    tc.covering_radius(x, y, x[:4], np.arange(4))


def test_squared_distances_overflow_to_inf_not_nan():
    z = np.random.default_rng(0).standard_normal((6, 3)) * 1e200
    d = tc.cdist(z, z, metric="sqeuclidean")
    assert not np.isnan(d).any() and (np.diag(d) == 0).all() and np.isinf(d[0, 1])


def test_distance_past_the_float64_maximum_is_inf():
    m = np.array([[1.7e308, 0.0], [-1.7e308, 0.0], [1.0, 0.0]])
    assert tc.diameter(m).distance == np.inf
    assert tc.cdist(m)[0, 1] == np.inf
    assert tc.hausdorff(m[:1], m[1:2]).distance == np.inf


# --- cancellation ----------------------------------------------------------

CANCEL_CALLS = {
    # unit vectors in 256-D: nearly equal distances defeat the scan's pruning
    "hausdorff": "tc.hausdorff(S, T)",
    "isometric_error": "tc.isometric_error(A, B)",
    # clustered embeddings: the pruned block-pair scan (issue 18)
    "isometric_error_pruned": "tc.isometric_error(C1, C2)",
    "hausdorff_pruned": "tc.hausdorff(P, Q)",
    "batch_all": "tc.triplet_margin_loss(A, labels, mining='batch_all')",
    "knn": "tc.knn(A, 200)",
    "kcenter": "tc.kcenter(A, 15000)",
}


@pytest.mark.parametrize("name", sorted(CANCEL_CALLS))
def test_ctrl_c_stops_a_long_kernel(name):
    # Each call takes far longer than the test (tens of seconds on 2 cores).
    script = textwrap.dedent(
        f"""
        import sys, time
        import numpy as np
        import tripletcore as tc
        rng = np.random.default_rng(0)
        A = rng.standard_normal((30000, 48)); B = rng.standard_normal((30000, 48))
        labels = np.arange(30000) % 100
        if {name!r} == "hausdorff":
            S, T = rng.standard_normal((2, 30000, 256))
            S /= np.linalg.norm(S, axis=1, keepdims=True)
            T /= np.linalg.norm(T, axis=1, keepdims=True)
        if {name!r} == "isometric_error_pruned":
            centres = rng.standard_normal((1000, 64))
            C1 = centres[rng.integers(1000, size=100000)] + 0.05 * rng.standard_normal((100000, 64))
            C2 = 1.1 * C1[:, ::-1] + 0.01 * rng.standard_normal(C1.shape)
        if {name!r} == "hausdorff_pruned":
            P = rng.standard_normal((400000, 32))
            Q = (P + 0.01 * rng.standard_normal(P.shape))[rng.permutation(400000)]
        print("ready", flush=True)
        try:
            {CANCEL_CALLS[name]}
            print("finished", flush=True)
        except KeyboardInterrupt:
            print("interrupted", time.monotonic(), flush=True)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(1.5)
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        elapsed = time.monotonic() - sent
    finally:
        proc.kill()
    word, caught = out.split()
    assert word == "interrupted", (out, err)
    # KeyboardInterrupt within a second; the exit (freeing the data) soon after
    assert float(caught) - sent < 1.0, float(caught) - sent
    assert elapsed < 3.0, elapsed


# --- concurrent mutation ---------------------------------------------------


def test_input_changed_by_another_thread_never_panics_or_gives_nan():
    x = np.random.default_rng(1).standard_normal((3000, 16))
    y = np.arange(3000) % 30
    stop = threading.Event()

    def scribble():
        r = np.random.default_rng(2)
        while not stop.is_set():
            x[r.integers(0, 3000, 64)] = r.standard_normal((64, 16)) * r.choice([1e-300, 1, 1e300])
            y[r.integers(0, 3000, 64)] = r.integers(-(2**62), 2**62, 64)

    t = threading.Thread(target=scribble)
    t.start()
    try:
        for _ in range(6):
            loss, grad = tc.triplet_margin_loss(x, y, mining="batch_all")
            assert np.isfinite(loss) and np.isfinite(grad).all()
            bh = tc.batch_hard(x, y)
            assert np.isfinite(bh.pos_dist[bh.pos_idx >= 0]).all()
            assert (bh.pos_idx < 3000).all() and (bh.neg_idx < 3000).all()
    finally:
        stop.set()
        t.join()


def test_read_only_input_is_not_copied_but_still_correct():
    x = np.random.default_rng(3).standard_normal((50, 4))
    ro = x.copy()
    ro.flags.writeable = False
    same(tc.cdist(ro), tc.cdist(x))


def test_output_too_large_for_memory():
    x = np.zeros((10**6, 1))  # 8 MB in, 8 TB out: refused before any work
    with pytest.raises(MemoryError, match="cdist needs about"):
        tc.cdist(x)
    with pytest.raises(MemoryError, match="knn needs about"):
        tc.knn(x, 10**6 - 1)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc (Linux)")
def test_address_space_limit_gives_memory_error_not_abort():
    """Issue 16's repro: under ``ulimit -v 4GB`` a knn whose N x k output cannot
    fit raised SIGABRT after 39 s; the size check must see the limit too."""
    import resource

    def limit():  # the child's address space: 4 GB, as `ulimit -v 4000000`
        resource.setrlimit(resource.RLIMIT_AS, (4_000_000 * 1024, 4_000_000 * 1024))

    code = (
        "import numpy as np, tripletcore as tc\n"
        "X = np.random.default_rng(0).standard_normal((20000, 8))\n"
        "try:\n"
        "    tc.knn(X, 19999)\n"
        "except MemoryError as e:\n"
        "    print('MemoryError', e)\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
        preexec_fn=limit,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "MemoryError" in res.stdout and "available" in res.stdout


def test_float32_rows_of_1e30_and_1e_30_are_exact():
    """Issue 16: float32 rows of 1e30 beside rows of 1e-30 lost the small rows
    in the float32 rescale (wrong indices); such data is computed in float64."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((12, 3))
    x[:6] *= 1e30
    x[6:] *= 1e-30
    f32, y = x.astype(np.float32), np.arange(12) % 3
    f64 = f32.astype(np.float64)  # the same values, exactly
    for got, want in (
        (tc.batch_hard(f32, y), tc.batch_hard(f64, y)),
        (tc.knn(f32, 4), tc.knn(f64, 4)),
        (tc.semi_hard(f32, y), tc.semi_hard(f64, y)),
    ):
        for g, w in zip(got, want, strict=True):
            np.testing.assert_array_equal(g, w)
    np.testing.assert_array_equal(tc.cdist(f32), tc.cdist(f64))
    # ordinary float32 data stays float32
    assert tc.cdist(rng.standard_normal((4, 3)).astype(np.float32)).dtype == np.float32
