"""The other seed methods on scikit-learn's digits: batch-hard triplets,
representative batches (seed 002, with and without hard class mining),
chance-constrained multi-proxy rounds (seed 003) and the selectively
contrastive loss (seed 004), each training the same small MLP embedding.

Protocol (every method alike): a stratified split of the 1,797 digits into
train / validation / test (55 / 15 / 30 %, drawn per seed); an MLP
64 -> 128 -> 32 trained with Adam for a fixed number of epochs of P x M
batches (P = 4 classes, M = 8 samples); after each epoch the validation
MAP@R (cosine) is measured, and the weights of the best validation epoch
are evaluated on the test split (Recall@1 and MAP@R of
:func:`tripletcore.retrieval_metrics`, each test row queried against the
other test rows). The multi-proxy rounds use the same validation metric to
decide when a round ends (patience 3 epochs), as the paper does.

Run ``python -m research.seed_methods [--quick] [--seeds N]
[--epochs E] [--patience P] [--methods a,b] [--out FILE.json]``; it prints
a Markdown table of mean +- std over the seeds and the paired per-seed
differences to the first method. Needs torch and scikit-learn.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

import tripletcore as tc
import tripletcore.torch as tt

from .common import load_digits, stratified_parts

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

METHODS: dict[str, str] = {
    "batch_hard": "batch-hard triplet (PK batches)",
    "rb_all": "representative batches, all anchors",
    "rb_rep": "representative batches, representative anchors",
    "rb_hcm_all": "representative batches + hard class mining, all anchors",
    "rb_hcm_rep": "representative batches + hard class mining, representative anchors",
    "proxy_anchor": "Proxy-Anchor, 1 proxy per class",
    "multi_proxy": "multi-proxy (4 per class, Proxy-Anchor base), no rounds",
    "multi_proxy_rounds": "multi-proxy + chance-constrained rounds",
    "sc": "selectively contrastive (easy positive, hard negative)",
    "semi_hard": "semi-hard triplet (FaceNet; PK batches)",
    "batch_all": "batch-all triplet (mean over the violating triplets; PK batches)",
}
#: The digits experiment's methods (the two classic baselines joined later,
#: for the glyph benchmark, research/glyph_methods.py).
DIGITS_METHODS = tuple(m for m in METHODS if m not in ("semi_hard", "batch_all"))


@dataclass(frozen=True)
class Config:
    epochs: int = 80
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    methods: tuple[str, ...] = DIGITS_METHODS
    classes_per_batch: int = 4
    samples_per_class: int = 8
    lifetime: int = 10  # batches a set of representatives lives
    hidden: int = 128
    embedding_dim: int = 32
    lr: float = 1e-3
    proxy_lr: float = 1e-2  # proxies learn faster (as Proxy-Anchor's authors)
    margin: float = 0.2
    proxies_per_class: int = 4
    patience: int = 3
    lam: float = 2e-4
    sc_lam: float = 1.0
    sc_tau: float = 0.1

    @classmethod
    def quick(cls) -> Config:
        return cls(epochs=4, seeds=(0,))


@dataclass
class Split:
    x: dict[str, Tensor] = field(default_factory=dict)
    y: dict[str, Tensor] = field(default_factory=dict)


def load_digits_split(seed: int) -> Split:
    """Stratified 55 / 15 / 30 % split of sklearn's digits, pixels / 16."""
    pixels, y = load_digits()
    x = pixels.astype(np.float32)  # k / 16 is exact in both widths
    parts = stratified_parts(y, (0.55, 0.70), np.random.default_rng(seed))
    out = Split()
    for name, idx in zip(("train", "val", "test"), parts, strict=True):
        out.x[name] = torch.from_numpy(x[idx])
        out.y[name] = torch.from_numpy(y[idx])
    return out


def mlp(cfg: Config, in_dim: int = 64) -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Linear(in_dim, cfg.hidden),
        torch.nn.ReLU(),
        torch.nn.Linear(cfg.hidden, cfg.embedding_dim),
    )


class PKSampler:
    """P classes x M samples per batch, classes and samples from shuffled
    passes (the baseline's batches: representative batches without the
    representatives)."""

    def __init__(self, labels: I64, p: int, m: int, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.classes = np.unique(labels)
        self.members = [np.flatnonzero(labels == c) for c in self.classes]
        self.p, self.m = p, m
        self.class_queue: list[int] = []
        self.queues: list[list[int]] = [[] for _ in self.classes]

    def _take(self, queue: list[int], items: npt.NDArray[Any], count: int) -> list[int]:
        out: list[int] = []
        while len(out) < count:
            if not queue:
                queue.extend(int(i) for i in self.rng.permutation(items))
            i = queue.pop()
            if i in out:  # a pass boundary: keep it for later
                queue.insert(0, i)
                continue
            out.append(i)
        return out

    def next_batch(self) -> list[int]:
        batch: list[int] = []
        for k in self._take(self.class_queue, np.arange(len(self.classes)), self.p):
            batch += self._take(self.queues[k], self.members[k], self.m)
        return batch


def embed(model: torch.nn.Module, x: Tensor) -> Tensor:
    with torch.no_grad():
        out: Tensor = model(x)
    return out


def evaluate(model: torch.nn.Module, x: Tensor, y: Tensor) -> tc.RetrievalMetrics:
    e = embed(model, x).double().numpy()
    return tc.retrieval_metrics(e, y.numpy(), ks=(1,), metric="cosine")


def _state(model: torch.nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


LossFn = Callable[[Tensor, Tensor, list[int]], Tensor]


def _sampler(
    method: str, ynp: I64, cfg: Config, steps: int, seed: int
) -> tt.RepresentativeBatchSampler | PKSampler:
    """The batch sampler of ``method``: representative batches for ``rb_*``, else P x M."""
    p, m = cfg.classes_per_batch, cfg.samples_per_class
    if method.startswith("rb_"):
        hcm = method.startswith("rb_hcm")
        return tt.RepresentativeBatchSampler(
            ynp, p, m, cfg.lifetime, hard_class_mining=hcm, batches_per_epoch=steps, seed=seed
        )
    return PKSampler(ynp, p, m, seed)


def _loss(
    method: str,
    cfg: Config,
    model: torch.nn.Module,
    xtr: Tensor,
    ytr: Tensor,
    sampler: tt.RepresentativeBatchSampler | PKSampler,
) -> tuple[LossFn, tt.MultiProxyLoss | None]:
    """The loss of ``method`` as ``loss_fn(embeddings, labels, batch)``, and
    its proxies when it has them."""
    proxy_loss: tt.MultiProxyLoss | None = None
    loss_fn: LossFn
    if method in ("proxy_anchor", "multi_proxy", "multi_proxy_rounds"):
        k = 1 if method == "proxy_anchor" else cfg.proxies_per_class
        proxy_loss = tt.MultiProxyLoss(
            int(ytr.max()) + 1,  # labels 0..C-1
            cfg.embedding_dim,
            k,
            "proxy_anchor",
            sample_weight=0.0 if method == "proxy_anchor" else 0.1,
            margin=cfg.margin,
        )
        if k > 1:  # the paper initialises the proxies by k-center
            proxy_loss.reinit_proxies(embed(model, xtr), ytr, seeded=False)
        pl = proxy_loss
        loss_fn = lambda e, y, b: pl(e, y)  # noqa: E731
    elif method == "sc":
        sc = tt.SelectivelyContrastiveLoss(cfg.sc_lam, cfg.sc_tau)
        loss_fn = lambda e, y, b: sc(e, y)  # noqa: E731
    elif method.endswith("_rep"):  # representative anchors only
        assert isinstance(sampler, tt.RepresentativeBatchSampler)
        mask = sampler.anchor_mask()
        rep = tt.RepresentativeTripletLoss(cfg.margin, normalize=True)
        loss_fn = lambda e, y, b: rep(e, y, mask)  # noqa: E731
    elif method in ("semi_hard", "batch_all"):
        reduction = "mean_nonzero" if method == "batch_all" else "mean"
        tl = tt.TripletMarginLoss(cfg.margin, method, normalize=True, reduction=reduction)
        loss_fn = lambda e, y, b: tl(e, y)  # noqa: E731
    else:
        bh = tt.TripletMarginLoss(cfg.margin, normalize=True)
        loss_fn = lambda e, y, b: bh(e, y)  # noqa: E731
    return loss_fn, proxy_loss


def train(
    method: str,
    data: Split,
    cfg: Config,
    seed: int,
    extra: Callable[[torch.nn.Module], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Train one method with one seed; test metrics of the best validation
    epoch, and what ``extra`` measures on that model."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")
    torch.manual_seed(seed)
    xtr, ytr = data.x["train"], data.y["train"]
    model = mlp(cfg, xtr.shape[1])
    ynp = ytr.numpy()
    steps = max(1, len(ynp) // (cfg.classes_per_batch * cfg.samples_per_class))
    hcm = method.startswith("rb_hcm")
    sampler = _sampler(method, ynp, cfg, steps, seed)
    loss_fn, proxy_loss = _loss(method, cfg, model, xtr, ytr, sampler)

    def optimizer() -> torch.optim.Optimizer:
        groups: list[dict[str, Any]] = [{"params": model.parameters(), "lr": cfg.lr}]
        if proxy_loss is not None:
            groups.append({"params": proxy_loss.parameters(), "lr": cfg.proxy_lr})
        return torch.optim.Adam(groups)

    opt = optimizer()
    reg: tt.ProximalRegularizer | None = None
    ctl: tt.RoundController | None = None
    radii: list[float] = []
    if method == "multi_proxy_rounds":
        assert proxy_loss is not None
        reg = tt.ProximalRegularizer(model, cfg.lam)

        def new_round(_: tt.RoundController) -> None:
            nonlocal opt
            assert proxy_loss is not None
            cov = proxy_loss.reinit_proxies(embed(model, xtr), ytr, seeded=True)
            radii.append(cov.radius)
            opt = optimizer()  # moments of the old proxies are meaningless now

        ctl = tt.RoundController(model, cfg.patience, regularizer=reg, on_new_round=[new_round])

    def feed_representatives() -> None:
        assert isinstance(sampler, tt.RepresentativeBatchSampler)
        reps = torch.from_numpy(sampler.representatives)
        sampler.update_representative_embeddings(reps, embed(model, xtr[reps]))

    if hcm:
        feed_representatives()
    best: tuple[float, int, dict[str, Tensor]] = (-math.inf, -1, _state(model))
    t0 = time.perf_counter()
    for epoch in range(cfg.epochs):
        model.train()
        for _ in range(steps):
            gen = getattr(sampler, "generation", 0)
            batch = sampler.next_batch()
            if hcm and sampler.generation != gen:  # type: ignore[union-attr]
                feed_representatives()  # new representatives: embed them all
            idx = torch.tensor(batch)
            emb = model(xtr[idx])
            loss = loss_fn(emb, ytr[idx], batch)
            if reg is not None:
                loss = loss + reg()
            opt.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]  # torch leaves it unannotated
            opt.step()
            if hcm:
                assert isinstance(sampler, tt.RepresentativeBatchSampler)
                sampler.update_representative_embeddings(idx, emb.detach())
        model.eval()
        val = evaluate(model, data.x["val"], data.y["val"]).map_at_r
        if val > best[0]:
            best = (val, epoch, _state(model))
        if ctl is not None:
            ctl.step(val)
    seconds = time.perf_counter() - t0
    model.load_state_dict(best[2])
    test = evaluate(model, data.x["test"], data.y["test"])
    more = {} if extra is None else extra(model)
    return more | {
        "method": method,
        "seed": seed,
        "recall_at_1": test.recall_at[1],
        "map_at_r": test.map_at_r,
        "val_map_at_r": best[0],
        "best_epoch": best[1],
        "rounds": 0 if ctl is None else ctl.round,
        "covering_radii": radii,
        "train_seconds": seconds,
    }


def run(cfg: Config, log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    results = []
    for seed in cfg.seeds:
        data = load_digits_split(seed)
        for method in cfg.methods:
            r = train(method, data, cfg, seed)
            log(
                f"seed {seed} {method:>19}: R@1 {r['recall_at_1']:.4f}  MAP@R {r['map_at_r']:.4f}"
                f"  (best epoch {r['best_epoch']}, rounds {r['rounds']}, "
                f"{r['train_seconds']:.1f} s)"
            )
            results.append(r)
    return results


def _mean_std(values: Sequence[float]) -> str:
    a = np.asarray(values, np.float64)
    std = float(a.std(ddof=1)) if len(a) > 1 else 0.0
    return f"{100 * a.mean():.2f} ± {100 * std:.2f}"


def _paired(rows: Sequence[dict[str, Any]], base: Sequence[dict[str, Any]], key: str) -> str:
    """Mean ± std of the per-seed difference to the baseline, and in how
    many seeds the method was ahead."""
    ref = {r["seed"]: r[key] for r in base}
    diff = [100 * (r[key] - ref[r["seed"]]) for r in rows if r["seed"] in ref]
    if not diff:
        return "-"
    a = np.asarray(diff)
    std = float(a.std(ddof=1)) if len(a) > 1 else 0.0
    return f"{a.mean():+.2f} ± {std:.2f} ({int((a > 0).sum())}/{len(a)})"


def table(
    results: Sequence[dict[str, Any]], methods: Sequence[str], baseline: str | None = None
) -> str:
    """Markdown table of mean ± std (in %) per method, in ``methods`` order,
    with the paired per-seed differences to ``baseline`` (default: the
    first method) and the number of seeds in which the method was ahead."""
    present = [m for m in methods if any(r["method"] == m for r in results)]
    baseline = baseline or (present[0] if present else None)
    base = [r for r in results if r["method"] == baseline]
    lines = [
        f"| method | Recall@1 (%) | MAP@R (%) | Δ R@1 vs {baseline} | Δ MAP@R vs {baseline} "
        "| rounds | seeds |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for m in present:
        rows = [r for r in results if r["method"] == m]
        rounds = np.mean([r["rounds"] for r in rows])
        same = m == baseline
        lines.append(
            f"| {m}: {METHODS[m]} | {_mean_std([r['recall_at_1'] for r in rows])} | "
            f"{_mean_std([r['map_at_r'] for r in rows])} | "
            f"{'-' if same else _paired(rows, base, 'recall_at_1')} | "
            f"{'-' if same else _paired(rows, base, 'map_at_r')} | {rounds:.1f} | {len(rows)} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="4 epochs, one seed (a smoke test)")
    ap.add_argument("--seeds", type=int, help="number of seeds (0..N-1)")
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--patience", type=int, help="evaluations without gain before a new round")
    ap.add_argument("--methods", help="comma-separated subset of: " + ", ".join(METHODS))
    ap.add_argument("--out", help="write the per-run results as JSON here")
    args = ap.parse_args(argv)
    cfg = Config.quick() if args.quick else Config()
    if args.seeds is not None:
        cfg = replace(cfg, seeds=tuple(range(args.seeds)))
    if args.epochs is not None:
        cfg = replace(cfg, epochs=args.epochs)
    if args.patience is not None:
        cfg = replace(cfg, patience=args.patience)
    if args.methods:
        methods = tuple(s.strip() for s in args.methods.split(",") if s.strip())
        unknown = [m for m in methods if m not in METHODS]
        if unknown:
            ap.error(f"unknown methods {unknown}; choose from {', '.join(METHODS)}")
        cfg = replace(cfg, methods=methods)
    torch.set_num_threads(1)  # tiny matrices: threads cost more than they give
    t0 = time.perf_counter()
    results = run(cfg)
    print()
    print(table(results, cfg.methods))
    print(f"\n{len(results)} runs in {time.perf_counter() - t0:.0f} s")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"config": asdict(cfg), "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
