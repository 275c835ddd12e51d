"""PML parity of the drop-in names: TripletMarginMiner, TripletMarginLoss with a
reference set and smooth_loss, BatchHardMiner's self rule, and retrieval_metrics
against AccuracyCalculator.get_accuracy (with MAP, MRR and AMI).

Continuous random float64 data: no distance ties, where PML's choice is unspecified.
"""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pytorch_metric_learning import distances as pml_distances
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import miners as pml_miners
from pytorch_metric_learning.reducers import MeanReducer
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
from pytorch_metric_learning.utils.inference import CustomKNN

import tripletcore as tc
from tripletcore.torch import BatchHardMiner, TripletMarginLoss, TripletMarginMiner

torch.set_num_threads(1)

# PML distance -> (metric, normalize)
DISTANCES = {
    "lp": (lambda: pml_distances.LpDistance(), "euclidean", True),
    "lp_raw_sq": (
        lambda: pml_distances.LpDistance(normalize_embeddings=False, power=2),
        "sqeuclidean",
        False,
    ),
    "cosine": (lambda: pml_distances.CosineSimilarity(), "cosine", False),
}


def case(seed, n, m, d=5, classes=3):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = torch.randint(0, classes, (n,), generator=g)
    r = torch.randn(m, d, generator=g, dtype=torch.float64)
    ry = torch.randint(0, classes, (m,), generator=g)
    return x, y, r, ry


def ref_kwargs(mode, x, y, r, ry):
    if mode == "none":
        return {}
    if mode == "separate":
        return {"ref_emb": r, "ref_labels": ry}
    if mode == "same_objects":
        return {"ref_emb": x, "ref_labels": y}
    return {"ref_emb": x.clone(), "ref_labels": y.clone()}  # a copy: PML keeps pair (i, i)


def triplet_set(t):
    return sorted(zip(*[v.tolist() for v in t], strict=True))


REF_MODES = ["none", "separate", "same_objects", "copies"]


@settings(max_examples=25, deadline=None)
@given(
    st.integers(0, 2**31),
    st.sampled_from(["all", "hard", "semihard", "easy"]),
    st.sampled_from([-0.1, 0.0, 0.05, 0.3, 2.0]),
    st.sampled_from(sorted(DISTANCES)),
    st.sampled_from(REF_MODES),
)
def test_triplet_margin_miner_matches_pml(seed, kind, margin, dist, mode):
    make, metric, normalize = DISTANCES[dist]
    x, y, r, ry = case(seed, 14, 9)
    kw = ref_kwargs(mode, x, y, r, ry)
    want = pml_miners.TripletMarginMiner(margin, type_of_triplets=kind, distance=make())(x, y, **kw)
    ours = TripletMarginMiner(margin, kind, metric=metric, normalize=normalize)
    got = ours(x, y, **kw)
    assert triplet_set(got) == triplet_set(want)
    # in PML's order: anchor, then positive, then negative
    flat = list(zip(*[v.tolist() for v in got], strict=True))
    assert flat == sorted(flat)


def test_triplet_margin_miner_ties_are_exact():
    # 1-D: anchor 0 at 0, positive at 1, negative at -1: d_an - d_ap = 0 exactly -> "hard"
    x = torch.tensor([[0.0], [1.0], [-1.0]], dtype=torch.float64)
    y = torch.tensor([0, 0, 1])
    hard = triplet_set(TripletMarginMiner(0.1, "hard")(x, y))
    semi = triplet_set(TripletMarginMiner(0.1, "semihard")(x, y))
    assert (0, 1, 2) in hard and (0, 1, 2) not in semi


@settings(max_examples=25, deadline=None)
@given(
    st.integers(0, 2**31),
    st.booleans(),
    st.booleans(),
    st.sampled_from(["lp", "cosine"]),
    st.sampled_from(REF_MODES),
)
def test_loss_with_reference_matches_pml(seed, smooth, mean, dist, mode):
    make, metric, normalize = DISTANCES[dist]
    x, y, r, ry = case(seed, 10, 8)
    kw = ref_kwargs(mode, x, y, r, ry)
    extra = {"reducer": MeanReducer()} if mean else {}
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    kwa = {k: (xa if v is x else v) for k, v in kw.items()}
    kwb = {k: (xb if v is x else v) for k, v in kw.items()}
    want = pml_losses.TripletMarginLoss(margin=0.2, smooth_loss=smooth, distance=make(), **extra)(
        xa, y, **kwa
    )
    ours = TripletMarginLoss(
        0.2,
        mining="batch_all",
        metric=metric,
        normalize=normalize,
        reduction="mean" if mean else "mean_nonzero",
        smooth_loss=smooth,
    )
    got = ours(xb, y, **kwb)
    assert float(got.detach()) == pytest.approx(float(want.detach()), rel=1e-9, abs=1e-12)
    if want.requires_grad:
        want.backward()
        got.backward()
        torch.testing.assert_close(xb.grad, xa.grad, rtol=1e-8, atol=1e-10)


def test_loss_pairs_indices_and_reference_indices():
    x, y, r, ry = case(3, 6, 5)
    pml_miner = pml_miners.BatchEasyHardMiner()  # returns pairs (a1, p, a2, n)
    pairs = pml_miner(x, y, r, ry)
    want = pml_losses.TripletMarginLoss(margin=0.3, distance=pml_distances.LpDistance())(
        x, y, pairs, ref_emb=r, ref_labels=ry
    )
    ours = TripletMarginLoss(0.3, normalize=True, reduction="mean_nonzero")
    assert float(ours(x, y, pairs, ref_emb=r, ref_labels=ry)) == pytest.approx(float(want))


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31), st.sampled_from(REF_MODES), st.sampled_from(sorted(DISTANCES)))
def test_batch_hard_miner_self_rule_matches_pml(seed, mode, dist):
    make, metric, normalize = DISTANCES[dist]
    x, y, r, ry = case(seed, 12, 12)
    kw = ref_kwargs(mode, x, y, r, ry)
    if mode == "separate":
        kw = {"ref_emb": r, "ref_labels": y}  # labels the same object: PML drops pair (i, i)
    want = pml_miners.BatchHardMiner(distance=make())(x, y, **kw)
    got = BatchHardMiner(metric=metric, normalize=normalize)(x, y, **kw)
    assert [v.tolist() for v in got] == [v.tolist() for v in want]


def pml_accuracy(q, ql, ref=None, rl=None, inc=False, k=None):
    calc = AccuracyCalculator(
        k=k,
        knn_func=CustomKNN(pml_distances.LpDistance(normalize_embeddings=False)),
        exclude=("NMI", "AMI"),
    )
    t = lambda a: None if a is None else torch.tensor(a)  # noqa: E731
    return calc.get_accuracy(t(q), t(ql), t(ref), t(rl), inc)


KEYS = {
    "precision_at_1": "precision_at_1",
    "r_precision": "r_precision",
    "map_at_r": "mean_average_precision_at_r",
    "mean_average_precision": "mean_average_precision",
    "mean_reciprocal_rank": "mean_reciprocal_rank",
}


@settings(max_examples=30, deadline=None)
@given(
    st.integers(0, 2**31),
    st.sampled_from(["self", "separate", "includes"]),
    st.sampled_from([None, 3, "max_bin_count"]),
)
def test_retrieval_metrics_match_accuracy_calculator(seed, mode, k):
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((40, 4))
    ql = rng.integers(0, 5, 40)
    q[:, 0] += ql
    ref = rng.standard_normal((30, 4))
    rl = rng.integers(0, 6, 30)
    ref[:, 0] += rl
    if mode == "self":
        got = tc.retrieval_metrics(q, ql, k=k)
        want = pml_accuracy(q, ql, k=k)
    elif mode == "separate":
        got = tc.retrieval_metrics(q, ql, ref, rl, k=k)
        want = pml_accuracy(q, ql, ref, rl, False, k)
    else:
        ref, rl = np.concatenate([q, ref]), np.concatenate([ql, rl])
        got = tc.retrieval_metrics(q, ql, ref, rl, ref_includes_query=True, k=k)
        want = pml_accuracy(q, ql, ref, rl, True, k)
    for ours, theirs in KEYS.items():
        tol = 1e-6 if ours == "mean_reciprocal_rank" else 1e-12  # PML sums 1/rank in float32
        assert getattr(got, ours) == pytest.approx(want[theirs], abs=tol), ours


def test_ami_matches_scikit_learn():
    from sklearn.metrics import adjusted_mutual_info_score, normalized_mutual_info_score

    from tripletcore._retrieval import adjusted_mutual_info
    from tripletcore.evaluation import normalized_mutual_info

    rng = np.random.default_rng(5)
    for n, ca, cb in [(30, 3, 4), (200, 7, 7), (50, 1, 3), (12, 12, 2)]:
        a, b = rng.integers(0, ca, n), rng.integers(0, cb, n)
        assert adjusted_mutual_info(a, b) == pytest.approx(
            adjusted_mutual_info_score(a, b), abs=1e-10
        )
        assert normalized_mutual_info(a, b) == pytest.approx(
            normalized_mutual_info_score(a, b), abs=1e-10
        )
    x = rng.standard_normal((60, 3))
    y = rng.integers(0, 3, 60)
    got = tc.retrieval_metrics(x, y)
    assert -1.0 <= got.ami <= 1.0 and got.queries == 60
