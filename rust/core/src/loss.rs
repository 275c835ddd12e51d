//! The triplet margin loss and its exact gradient.
//!
//! Hard and semi-hard mining give an explicit list of triplets; their
//! gradient terms are grouped by the row they act on and summed in a fixed
//! order, so the result does not depend on the number of threads.
//! Batch-all never lists triplets: per anchor, sorted negative distances
//! and prefix sums give the loss, and each pair's gradient weight is a
//! count from the same sort (recomputed in a second, gathering pass); see
//! [`crate::batch_all`].

use rayon::prelude::*;

use crate::batch_all::batch_all_loss;
use crate::batch_hard::batch_hard_picks;
use crate::error::{CoreError, Result};
use crate::exact::Exact;
use crate::matrix::{check_labels, encode_labels, Matrix, SERIAL_LIMIT};
use crate::metric::Metric;
use crate::pack::row_norms;
use crate::parallel::{on_pool, worth_parallel};
use crate::real::Real;
use crate::scale::Pow2;
use crate::scale::{distance_factor, with_safe_scale};
use crate::semi_hard::{check_margin, mine, Fallback, Triplet};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mining {
    BatchHard,
    SemiHard,
    BatchAll,
}

impl Mining {
    pub fn parse(name: &str) -> Result<Mining> {
        match name {
            "batch_hard" => Ok(Mining::BatchHard),
            "semi_hard" => Ok(Mining::SemiHard),
            "batch_all" => Ok(Mining::BatchAll),
            other => Err(CoreError::InvalidValue {
                arg: "mining",
                detail: format!(
                    "unknown mining {other:?}; expected 'batch_hard', 'semi_hard' or 'batch_all'"
                ),
            }),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reduction {
    Mean,
    Sum,
    MeanNonzero,
    /// Per-anchor sums.
    None,
}

impl Reduction {
    pub fn parse(name: &str) -> Result<Reduction> {
        match name {
            "mean" => Ok(Reduction::Mean),
            "sum" => Ok(Reduction::Sum),
            "mean_nonzero" => Ok(Reduction::MeanNonzero),
            "none" => Ok(Reduction::None),
            other => Err(CoreError::InvalidValue {
                arg: "reduction",
                detail: format!(
                    "unknown reduction {other:?}; expected 'mean', 'sum', 'mean_nonzero' or 'none'"
                ),
            }),
        }
    }

    /// Factor applied to the sum of triplet losses.
    pub(crate) fn scale(self, triplets: f64, nonzero: f64) -> f64 {
        let inv = |c: f64| if c > 0.0 { 1.0 / c } else { 0.0 };
        match self {
            Reduction::Mean => inv(triplets),
            Reduction::MeanNonzero => inv(nonzero),
            Reduction::Sum | Reduction::None => 1.0,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct LossOptions {
    pub margin: f64,
    pub mining: Mining,
    pub soft: bool,
    pub reduction: Reduction,
    pub fallback: Fallback,
}

#[derive(Debug, Clone)]
pub struct LossOutput<T> {
    /// The reduced loss (the total for `Reduction::None`).
    pub loss: f64,
    /// Per-anchor losses, for `Reduction::None` only.
    pub per_anchor: Option<Vec<f64>>,
    /// Gradient of `loss` with respect to X, row-major like X.
    pub grad: Vec<T>,
}

#[inline]
pub(crate) fn softplus(z: f64) -> f64 {
    if z > 0.0 {
        z + (-z).exp().ln_1p()
    } else {
        z.exp().ln_1p()
    }
}

#[inline]
pub(crate) fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// Loss of one triplet and its derivative with respect to `d(a,p) - d(a,n)`.
#[inline]
fn term(dap: f64, dan: f64, margin: f64, soft: bool) -> (f64, f64) {
    let z = dap - dan;
    if soft {
        (softplus(z), sigmoid(z))
    } else {
        let h = z + margin;
        if h > 0.0 {
            (h, 1.0)
        } else {
            (0.0, 0.0)
        }
    }
}

pub fn triplet_margin_loss<T: Real>(
    x: &Matrix<T>,
    labels: &[i64],
    metric: Metric,
    opts: LossOptions,
) -> Result<LossOutput<T>> {
    check_labels(labels, x.rows, "labels", "X")?;
    check_margin(opts.margin, false)?;
    // Batch-hard of a small batch runs here; the other minings always use the pool.
    let parallel = opts.mining != Mining::BatchHard || worth_parallel(x.rows * x.rows * x.cols);
    on_pool(parallel, || {
        with_safe_scale(x, None, |x, _, s| {
            // On x / s, distances are d / f; the gradient picks up f / s.
            let f = distance_factor(metric, s);
            let mut out = scaled_loss(x, labels, metric, opts, f, parallel)?;
            let g = f / s;
            if !g.is_one() {
                out.grad
                    .par_iter_mut()
                    .for_each(|v| *v = T::from_f64(v.to_f64() * g));
            }
            Ok(out)
        })
    })
}

/// The loss on data divided by a power of two whose distances are the
/// original ones divided by `f`: distances are taken back to the caller's
/// units (`* f`) before any loss term, so soft margins stay exact.
fn scaled_loss<T: Real>(
    x: &Matrix<T>,
    labels: &[i64],
    metric: Metric,
    opts: LossOptions,
    f: Pow2,
    parallel: bool,
) -> Result<LossOutput<T>> {
    let scales = row_norms(x, metric, "X")?;
    let exact = Exact {
        x: *x,
        y: *x,
        nx: scales.as_deref(),
        ny: scales.as_deref(),
        metric,
    };
    // Batch-hard encodes the labels itself.
    let codes = || encode_labels(labels, None).0;
    match opts.mining {
        Mining::BatchHard => {
            let bh = batch_hard_picks(x, labels, metric, parallel)?;
            // The picks' exact squared distances serve the loss and the gradient.
            let mut d2s = Vec::with_capacity(x.rows);
            let ts: Vec<Triplet> = (0..x.rows)
                .filter(|&a| bh.pos_idx[a] >= 0 && bh.neg_idx[a] >= 0)
                .map(|a| {
                    let (p, n) = (bh.pos_idx[a] as usize, bh.neg_idx[a] as usize);
                    let (ap, an) = (bh.pos_d2[a], bh.neg_d2[a]);
                    d2s.push((ap, an));
                    Triplet {
                        a: a as u32,
                        p: p as u32,
                        n: n as u32,
                        dap: metric.from_d2(ap) * f,
                        dan: metric.from_d2(an) * f,
                    }
                })
                .collect();
            Ok(explicit_loss(&exact, &ts, Some(&d2s), opts, parallel))
        }
        Mining::SemiHard => {
            let mut ts = mine(&exact, &codes(), opts.margin / f, opts.fallback);
            for t in ts.iter_mut() {
                t.dap *= f;
                t.dan *= f;
            }
            Ok(explicit_loss(&exact, &ts, None, opts, parallel))
        }
        Mining::BatchAll => batch_all_loss(x, &exact, &codes(), opts, f),
    }
}

/// `d2s`: the triplets' exact `(d2(a, p), d2(a, n))` where already known.
fn explicit_loss<T: Real>(
    exact: &Exact<T>,
    ts: &[Triplet],
    d2s: Option<&[(f64, f64)]>,
    opts: LossOptions,
    parallel: bool,
) -> LossOutput<T> {
    let (n, d) = (exact.x.rows, exact.x.cols);
    let terms: Vec<(f64, f64)> = ts
        .iter()
        .map(|t| term(t.dap, t.dan, opts.margin, opts.soft))
        .collect();
    let nonzero = terms.iter().filter(|t| t.0 > 0.0).count() as f64;
    let scale = opts.reduction.scale(ts.len() as f64, nonzero);
    let total: f64 = terms.iter().map(|t| t.0).sum();
    let per_anchor = (opts.reduction == Reduction::None).then(|| {
        let mut v = vec![0.0; n];
        for (t, l) in ts.iter().zip(&terms) {
            v[t.a as usize] += l.0;
        }
        v
    });
    // Gradient terms (row acted on, other row, weight on d(row, other), and
    // the pair's squared distance where the metric's gradient needs it).
    let need_d2 = exact.metric == Metric::Euclidean;
    let mut entries: Vec<(u32, u32, f64, Option<f64>)> = Vec::with_capacity(4 * ts.len());
    for (k, (t, &(_, g))) in ts.iter().zip(&terms).enumerate() {
        if g != 0.0 {
            let g = g * scale;
            let (ap, an) = match (need_d2, d2s) {
                (false, _) => (None, None),
                (true, Some(v)) => (Some(v[k].0), Some(v[k].1)),
                (true, None) => {
                    let (a, p, n) = (t.a as usize, t.p as usize, t.n as usize);
                    (Some(exact.d2(a, p)), Some(exact.d2(a, n)))
                }
            };
            entries.extend([
                (t.a, t.p, g, ap),
                (t.p, t.a, g, ap),
                (t.a, t.n, -g, an),
                (t.n, t.a, -g, an),
            ]);
        }
    }
    // Stable counting sort by row, so every row sums its terms in one order.
    let mut start = vec![0usize; n + 1];
    for e in &entries {
        start[e.0 as usize + 1] += 1;
    }
    for i in 0..n {
        start[i + 1] += start[i];
    }
    let mut fill = start.clone();
    let mut sorted = vec![(0u32, 0.0f64, None); entries.len()];
    for e in &entries {
        sorted[fill[e.0 as usize]] = (e.1, e.2, e.3);
        fill[e.0 as usize] += 1;
    }
    let mut grad = vec![T::ZERO; n * d];
    let row_grad = |buf: &mut Vec<f64>, (i, out): (usize, &mut [T])| {
        buf.fill(0.0);
        for &(j, w, d2) in &sorted[start[i]..start[i + 1]] {
            exact.add_grad_d2(i, j as usize, w, d2, buf);
        }
        for (o, v) in out.iter_mut().zip(buf.iter()) {
            *o = T::from_f64(*v);
        }
    };
    // The work is O(4 d) per triplet: a small batch is done on this thread.
    if !parallel || 4 * ts.len() * d <= SERIAL_LIMIT {
        let mut buf = vec![0.0f64; d];
        grad.chunks_mut(d)
            .enumerate()
            .for_each(|item| row_grad(&mut buf, item));
    } else {
        grad.par_chunks_mut(d)
            .enumerate()
            .for_each_init(|| vec![0.0f64; d], row_grad);
    }
    LossOutput {
        loss: total
            * if opts.reduction == Reduction::None {
                1.0
            } else {
                scale
            },
        per_anchor,
        grad,
    }
}
