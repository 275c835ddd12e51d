"""Representative batches (seed paper 002): the batch sampler's invariants,
hard class mining against a brute force, and the representative-anchor loss."""

import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import tripletcore.torch as tt


def labels_of(sizes):
    return np.repeat(np.arange(len(sizes)), sizes)


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.integers(4, 12), min_size=3, max_size=9),
    st.integers(2, 3),
    st.integers(2, 4),
    st.integers(1, 5),
    st.integers(0, 1000),
)
def test_batches_hold_representatives_and_fresh_samples(sizes, p, m, lifetime, seed):
    y = np.random.default_rng(seed).permutation(labels_of(sizes))  # classes interleaved
    s = tt.RepresentativeBatchSampler(y, p, m, lifetime, seed=seed)
    c = len(sizes)
    seen_classes, seen_samples = [], set()
    prev_reps, prev_gen = s.representatives.copy(), 0
    for b in range(40):
        batch = s.next_batch()
        assert len(batch) == p * m == s.batch_size
        assert len(set(batch)) == len(batch)  # no repeats within a batch
        groups = [batch[g * m : (g + 1) * m] for g in range(p)]
        classes = [int(y[g[0]]) for g in groups]
        assert len(set(classes)) == p
        for g, k in zip(groups, classes, strict=True):
            assert set(y[g]) == {k}
            assert g[0] == s.representatives[k]  # the representative comes first
        # Representatives live exactly `lifetime` batches; a redraw changes all.
        assert s.generation == b // lifetime
        if s.generation != prev_gen:
            assert (s.representatives != prev_reps).all()
            prev_reps, prev_gen = s.representatives.copy(), s.generation
        else:
            np.testing.assert_array_equal(s.representatives, prev_reps)
        seen_classes.append(set(classes))
        seen_samples.update(batch)
    # Every class is visited: all in the first pass, and in every window of
    # 2 ceil(C / P) + 1 batches.
    first = math.ceil(c / p)
    assert set().union(*seen_classes[:first]) == set(range(c))
    w = 2 * first + 1
    for start in range(len(seen_classes) - w + 1):
        assert set().union(*seen_classes[start : start + w]) == set(range(c))
    if 40 * (m - 1) * p >= 3 * len(y):  # enough fresh draws to cover every sample
        assert seen_samples == set(range(len(y)))


def test_iteration_epochs_and_dataloader():
    y = labels_of([6, 7, 8, 9, 10])
    s = tt.RepresentativeBatchSampler(torch.tensor(y), 2, 3, lifetime=4, seed=1)
    assert len(s) == len(y) // 6
    ds = torch.utils.data.TensorDataset(torch.arange(len(y)), torch.tensor(y))
    loader = torch.utils.data.DataLoader(ds, batch_sampler=s)
    for _ in range(2):  # two epochs; the lifetime counts across them
        for idx, lab in loader:
            assert idx.shape == (6,)
            assert lab[0] == lab[1] == lab[2] and lab[3] == lab[4] == lab[5]
    assert s.batches_drawn == 2 * len(s)
    assert s.generation == (2 * len(s) - 1) // 4
    # Same seed, same batches.
    a = tt.RepresentativeBatchSampler(y, 2, 3, 4, seed=5)
    b = tt.RepresentativeBatchSampler(y, 2, 3, 4, seed=5)
    assert [a.next_batch() for _ in range(10)] == [b.next_batch() for _ in range(10)]


def nearest_classes(emb, seed, p):
    d2 = ((emb - emb[seed]) ** 2).sum(1)
    d2[seed] = np.inf
    return [seed] + [int(k) for k in np.argsort(d2, kind="stable")[: p - 1]]


@pytest.mark.parametrize("p", [2, 4])
def test_hard_class_mining_batches_the_nearest_classes(p):
    rng = np.random.default_rng(0)
    y = labels_of([5] * 12)
    points = rng.standard_normal((len(y), 3))
    s = tt.RepresentativeBatchSampler(y, p, 3, lifetime=3, hard_class_mining=True, seed=2)
    seeds = []
    prev_reps = s.representatives.copy()
    for _ in range(60):
        # Feed every representative's embedding (as a loop does after a redraw).
        assert s.update_representative_embeddings(s.representatives, points[s.representatives])
        emb = s.representative_embeddings.copy()
        batch = s.next_batch()
        classes = [int(y[batch[g * 3]]) for g in range(p)]
        if s.batches_drawn > 1 and (s.batches_drawn - 1) % 3 == 0:
            # Just redrawn: the previous representatives' embeddings stay
            # in use until the new ones are fed.
            assert (s.representatives != prev_reps).all()
            np.testing.assert_array_equal(s.representative_embeddings, points[prev_reps])
        assert classes == nearest_classes(emb, classes[0], p)
        seeds.append(classes[0])
        prev_reps = s.representatives.copy()
        # Hard batches hold the representatives too.
        assert all(batch[g * 3] == s.representatives[k] for g, k in enumerate(classes))
    # Every class is a seed once per pass over the classes.
    assert set(seeds[:12]) == set(range(12))


def test_hard_class_mining_before_and_with_partial_embeddings():
    y = labels_of([4] * 6)
    s = tt.RepresentativeBatchSampler(y, 3, 2, lifetime=100, hard_class_mining=True, seed=3)
    b = s.next_batch()  # nothing fed: random classes, still valid batches
    assert len({int(y[i]) for i in b}) == 3
    # Only classes 0 and 1 known: a batch seeded by class 0 takes 1, then a random one.
    reps = s.representatives
    emb = np.zeros((2, 2))
    emb[1] = [1.0, 0.0]
    assert s.update_representative_embeddings(reps[:2], emb) == 2
    assert (
        s.update_representative_embeddings(
            [reps[0] + 1 if reps[0] % 4 != 3 else reps[0] - 1], np.ones((1, 2))
        )
        == 0
    )  # not a representative
    for _ in range(12):
        classes = [int(y[i]) for i in s.next_batch()[::2]]
        if classes[0] in (0, 1):
            assert classes[1] == 1 - classes[0]
        assert len(set(classes)) == 3


def test_anchor_mask_and_small_classes():
    y = labels_of([2, 5, 5, 5])
    with pytest.warns(UserWarning, match="1 classes have fewer than samples_per_class=3"):
        s = tt.RepresentativeBatchSampler(y, 2, 3, lifetime=2)
    assert s.classes.tolist() == [1, 2, 3]
    assert all(y[i] != 0 for _ in range(10) for i in s.next_batch())
    mask = s.anchor_mask()
    assert mask.tolist() == [True, False, False, True, False, False]


@pytest.mark.parametrize(
    ("args", "kwargs", "exc", "match"),
    [
        (([0.0, 1.0], 2, 2, 1), {}, TypeError, "integer dtype"),
        ((np.zeros((2, 2), int), 2, 2, 1), {}, ValueError, "1-D"),
        ((labels_of([3, 3]), 1, 2, 1), {}, ValueError, "classes_per_batch must be >= 2"),
        ((labels_of([3, 3]), 2, 1, 1), {}, ValueError, "samples_per_class must be >= 2"),
        ((labels_of([3, 3]), 2, 2, 0), {}, ValueError, "lifetime must be >= 1"),
        ((labels_of([3, 3]), 2, 2, 1.5), {}, TypeError, "lifetime must be an int"),
        ((labels_of([3, 3]), 3, 2, 1), {}, ValueError, "only 2 classes"),
        ((labels_of([3, 3]), 2, 2, 1), {"batches_per_epoch": 0}, ValueError, "batches_per_epoch"),
    ],
)
def test_sampler_bad_input(args, kwargs, exc, match):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(exc, match=match):
            tt.RepresentativeBatchSampler(*args, **kwargs)


def test_update_bad_input():
    s = tt.RepresentativeBatchSampler(labels_of([3, 3]), 2, 2, 1, hard_class_mining=True)
    with pytest.raises(ValueError, match="one row per index"):
        s.update_representative_embeddings([0, 1], np.zeros((3, 2)))
    with pytest.raises(ValueError, match="NaN"):
        s.update_representative_embeddings([0], np.full((1, 2), np.nan))
    with pytest.raises(TypeError, match="integer"):
        s.update_representative_embeddings([0.5], np.zeros((1, 2)))
    s.update_representative_embeddings([0], np.zeros((1, 2)))
    with pytest.raises(ValueError, match="features"):
        s.update_representative_embeddings([0], np.zeros((1, 3)))


# ---------------------------------------------------------------- the loss


def brute_rep_loss(x, y, mask, margin):
    D = torch.cdist(x, x)
    total, count = 0.0, 0
    for a in np.flatnonzero(mask):
        pos = [j for j in range(len(y)) if y[j] == y[a] and j != a]
        neg = [j for j in range(len(y)) if y[j] != y[a]]
        if not pos or not neg:
            continue
        total = total + torch.relu(D[a, pos].max() - D[a, neg].min() + margin)
        count += 1
    return total / max(count, 1)


@pytest.mark.parametrize("normalize", [False, True])
def test_representative_loss_matches_brute_force(normalize):
    y = labels_of([6, 6, 6, 6, 6])
    s = tt.RepresentativeBatchSampler(y, 3, 4, lifetime=2, seed=4)
    g = torch.Generator().manual_seed(0)
    data = torch.randn(len(y), 6, generator=g, dtype=torch.float64)
    loss = tt.RepresentativeTripletLoss(margin=0.5, normalize=normalize)
    for _ in range(4):
        batch = s.next_batch()
        x = data[batch].clone().requires_grad_()
        lab = torch.tensor(y[batch])
        mask = s.anchor_mask()
        got = loss(x, lab, mask)
        z = torch.nn.functional.normalize(x, dim=1) if normalize else x
        want = brute_rep_loss(z, lab.numpy(), mask.numpy(), 0.5)
        torch.testing.assert_close(got, want)
        (g1,) = torch.autograd.grad(got, x)
        (g2,) = torch.autograd.grad(
            brute_rep_loss(
                torch.nn.functional.normalize(x, dim=1) if normalize else x,
                lab.numpy(),
                mask.numpy(),
                0.5,
            ),
            x,
        )
        torch.testing.assert_close(g1, g2)
        assert torch.autograd.gradcheck(lambda z, lab=lab, mask=mask: loss(z, lab, mask), (x,))
    # All anchors masked: the ordinary batch-hard mean.
    full = torch.ones(len(batch), dtype=torch.bool)
    torch.testing.assert_close(
        loss(x, lab, full), tt.triplet_margin_loss(x, lab, 0.5, normalize=normalize)
    )


def test_representative_loss_bad_input():
    x, lab = torch.randn(4, 2), torch.tensor([0, 0, 1, 1])
    with pytest.raises(TypeError, match="boolean"):
        tt.representative_triplet_loss(x, lab, torch.tensor([1, 0, 1, 0]))
    with pytest.raises(ValueError, match="shape"):
        tt.representative_triplet_loss(x, lab, torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="margin"):
        tt.representative_triplet_loss(x, lab, torch.ones(4, dtype=torch.bool), margin=-1.0)
    # No valid anchor among the masked rows: 0, not NaN.
    v = tt.representative_triplet_loss(
        x, torch.tensor([0, 1, 1, 1]), torch.tensor([True, False, False, False])
    )
    assert float(v) == 0.0
