"""tripletcore.pk_batch: P x K batches of exactly ``size`` rows."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tripletcore as tc


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, 6), min_size=2, max_size=60).filter(lambda v: len(set(v)) >= 2),
    st.integers(2, 70),
    st.integers(0, 2**32 - 1),
)
def test_batch_is_p_classes_of_k_rows(values, size, seed):
    labels = np.array(values, dtype=np.int64)
    rows = tc.pk_batch(labels, size, rng=np.random.default_rng(seed))
    assert rows.dtype == np.int64 and rows.shape == (size,)
    assert rows.min() >= 0 and rows.max() < len(labels)
    classes, counts = np.unique(labels[rows], return_counts=True)
    p = max(2, min(len(np.unique(labels)), size // 2))
    assert len(classes) == p
    assert counts.max() - counts.min() <= 1 and counts.sum() == size
    # the classes come in blocks, K >= 2 unless the batch is smaller than 2 P
    blocks = labels[rows]
    assert np.count_nonzero(blocks[1:] != blocks[:-1]) == p - 1
    if size >= 4:
        assert counts.min() >= 2
    for c, k in zip(classes, counts, strict=True):
        pool = np.count_nonzero(labels == c)
        picked = rows[labels[rows] == c]
        if k <= pool:  # without replacement while the class has the rows
            assert len(set(picked.tolist())) == k


def test_seed_and_generator_agree_and_generator_advances():
    labels = np.repeat(np.arange(5), 7)
    a = tc.pk_batch(labels, 12, rng=3)
    rng = np.random.default_rng(3)
    b = tc.pk_batch(labels, 12, rng=rng)
    np.testing.assert_array_equal(a, b)
    c = tc.pk_batch(labels, 12, rng=rng)  # the generator moved on
    assert not np.array_equal(b, c)


def test_any_integer_label_dtype():
    labels = np.array([7, 7, 9, 9, 11, 11], dtype=np.uint8)
    rows = tc.pk_batch(labels, 4, rng=0)
    assert sorted(np.unique(labels[rows]).tolist()) in ([7, 9], [7, 11], [9, 11])


@pytest.mark.parametrize(
    ("labels", "size", "error", "match"),
    [
        (np.zeros(5, dtype=np.int64), 4, ValueError, "two classes"),
        (np.array([0, 1]), 1, ValueError, "size"),
        (np.array([[0, 1]]), 2, ValueError, "1-D"),
        (np.array([0.0, 1.0]), 2, TypeError, "integer"),
        (np.array([0, 1]), 2.0, TypeError, "size"),
        (np.array([0, 1]), True, TypeError, "size"),
    ],
)
def test_bad_input(labels, size, error, match):
    with pytest.raises(error, match=match):
        tc.pk_batch(labels, size, rng=0)
