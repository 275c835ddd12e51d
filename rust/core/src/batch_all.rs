//! The batch-all loss without listing triplets: per anchor, sorted
//! positive distances and bucketed negatives give the loss, and each
//! pair's gradient weight is a count from the same sort (recomputed in a
//! second, gathering pass over distance blocks).

use std::ops::Range;

use rayon::prelude::*;

use crate::cdist::DistanceBlocks;
use crate::engine::{widest, with_tile_shape};
use crate::error::Result;
use crate::exact::Exact;
use crate::loss::{sigmoid, softplus, LossOptions, LossOutput, Reduction};
use crate::matrix::Matrix;
use crate::metric::Metric;
use crate::parallel::checkpoint;
use crate::real::Real;
use crate::scale::Pow2;

/// Per-anchor bookkeeping of batch-all: sorted positive distances and the
/// derivative of the anchor's loss with respect to each of them.
struct AnchorSummary {
    loss: f64,
    triplets: f64,
    nonzero: f64,
    pos_sorted: Vec<f64>,
    pos_weight: Vec<f64>,
}

/// Anchor rows per block of the batch-all passes (a multiple of the tile height).
const BLOCK: usize = 48;

pub(crate) fn batch_all_loss<T: Real>(
    x: &Matrix<T>,
    exact: &Exact<T>,
    codes: &[u32],
    opts: LossOptions,
    f: Pow2,
) -> Result<LossOutput<T>> {
    with_tile_shape!(
        widest::BATCH_ALL,
        T,
        batch_all_blocks(x, exact, codes, opts, f)
    )
}

/// Whether the triplet (positive at `p`, negative at `q`) has a positive
/// hinge. Every count in batch-all uses this one predicate, so the loss
/// and its gradient weights agree exactly.
#[inline(always)]
fn active(p: f64, q: f64, m: f64) -> bool {
    p - q + m > 0.0
}

/// How many of the sorted positive distances `pos` are active with a
/// negative at distance `q` (they form a suffix of `pos`).
#[inline]
fn active_count(pos: &[f64], q: f64, m: f64) -> usize {
    if pos.len() <= 16 {
        pos.iter().map(|&p| active(p, q, m) as usize).sum()
    } else {
        pos.len() - pos.partition_point(|&p| !active(p, q, m))
    }
}

/// One anchor's loss from its distance row. Hinge: each negative goes to
/// the bucket of the first positive it is active for; prefix counts and
/// sums over buckets give every positive's loss, in O(N log K), no sort.
fn summarize(
    row: &[f64],
    codes: &[u32],
    a: usize,
    opts: LossOptions,
    scratch: &mut (Vec<f64>, Vec<f64>),
) -> AnchorSummary {
    let (m, soft) = (opts.margin, opts.soft);
    let (pos, neg) = scratch;
    pos.clear();
    neg.clear();
    for (j, &v) in row.iter().enumerate() {
        if j == a {
            continue;
        }
        if codes[j] == codes[a] {
            pos.push(v);
        } else {
            neg.push(v);
        }
    }
    pos.sort_unstable_by(f64::total_cmp);
    let mut s = AnchorSummary {
        loss: 0.0,
        triplets: (pos.len() * neg.len()) as f64,
        nonzero: 0.0,
        pos_sorted: pos.clone(),
        pos_weight: vec![0.0; pos.len()],
    };
    if pos.is_empty() || neg.is_empty() {
        return s;
    }
    if soft {
        for (&p, w) in pos.iter().zip(s.pos_weight.iter_mut()) {
            for &q in neg.iter() {
                let l = softplus(p - q);
                s.loss += l;
                s.nonzero += (l > 0.0) as u8 as f64;
                *w += sigmoid(p - q);
            }
        }
    } else {
        let k = pos.len();
        let (mut count, mut sum) = (vec![0usize; k + 1], vec![0.0f64; k + 1]);
        for &q in neg.iter() {
            let first = k - active_count(pos, q, m);
            count[first] += 1;
            sum[first] += q;
        }
        let (mut c, mut sq) = (0usize, 0.0f64);
        for (i, &p) in pos.iter().enumerate() {
            c += count[i];
            sq += sum[i];
            s.loss += c as f64 * (p + m) - sq;
            s.nonzero += c as f64;
            s.pos_weight[i] = c as f64;
        }
    }
    s
}

/// The summaries' positive distances and weights in flat (CSR) arrays.
struct Positives {
    start: Vec<usize>,
    dist: Vec<f64>,
    weight: Vec<f64>,
}

impl Positives {
    fn new(summaries: &[AnchorSummary]) -> Self {
        let mut start = Vec::with_capacity(summaries.len() + 1);
        let (mut dist, mut weight) = (Vec::new(), Vec::new());
        start.push(0);
        for s in summaries {
            dist.extend_from_slice(&s.pos_sorted);
            weight.extend_from_slice(&s.pos_weight);
            start.push(dist.len());
        }
        Positives {
            start,
            dist,
            weight,
        }
    }

    #[inline(always)]
    fn of(&self, a: usize) -> (&[f64], &[f64]) {
        let r = self.start[a]..self.start[a + 1];
        (&self.dist[r.clone()], &self.weight[r])
    }
}

fn batch_all_blocks<T: Real, const MR: usize, const NR: usize>(
    x: &Matrix<T>,
    exact: &Exact<T>,
    codes: &[u32],
    opts: LossOptions,
    f: Pow2,
) -> Result<LossOutput<T>> {
    let blocks = DistanceBlocks::<T, MR, NR>::new(x, None, exact.metric, widest::BATCH_ALL)?;
    let summaries = summarize_blocks(&blocks, x.rows, codes, opts, f);
    let triplets: f64 = summaries.iter().map(|s| s.triplets).sum();
    let nonzero: f64 = summaries.iter().map(|s| s.nonzero).sum();
    let total: f64 = summaries.iter().map(|s| s.loss).sum();
    let scale = opts.reduction.scale(triplets, nonzero);
    let grad = GradPass {
        x,
        exact,
        blocks: &blocks,
        codes,
        positives: &Positives::new(&summaries),
        opts,
        f,
        scale,
    }
    .run();
    let per_anchor =
        (opts.reduction == Reduction::None).then(|| summaries.iter().map(|s| s.loss).collect());
    Ok(LossOutput {
        loss: if opts.reduction == Reduction::None {
            total
        } else {
            total * scale
        },
        per_anchor,
        grad,
    })
}

/// Block `b` of the anchor rows `0..n`.
fn rows_of(b: usize, n: usize) -> Range<usize> {
    (b * BLOCK)..((b + 1) * BLOCK).min(n)
}

/// Every anchor's summary, from its row of distances (in the caller's units).
fn summarize_blocks<T: Real, const MR: usize, const NR: usize>(
    blocks: &DistanceBlocks<T, MR, NR>,
    n: usize,
    codes: &[u32],
    opts: LossOptions,
    f: Pow2,
) -> Vec<AnchorSummary> {
    (0..n.div_ceil(BLOCK))
        .into_par_iter()
        .panic_fuse()
        .map_init(
            || {
                (
                    vec![T::ZERO; BLOCK * n],
                    vec![0.0f64; n],
                    (Vec::new(), Vec::new()),
                )
            },
            |(buf, row, scratch), b| {
                checkpoint();
                let rows = rows_of(b, n);
                let buf = &mut buf[..rows.len() * n];
                blocks.fill(rows.start, buf);
                rows.clone()
                    .map(|a| {
                        let k = a - rows.start;
                        for (r, v) in row.iter_mut().zip(&buf[k * n..(k + 1) * n]) {
                            *r = v.to_f64() * f;
                        }
                        summarize(row, codes, a, opts, scratch)
                    })
                    .collect::<Vec<_>>()
            },
        )
        .flatten_iter()
        .collect()
}

/// The gradient pass of batch-all: per block of rows, each pair's weight
/// on its distance, then the metric's gradient summed pair by pair.
struct GradPass<'a, 'm, T, const MR: usize, const NR: usize> {
    x: &'a Matrix<'m, T>,
    exact: &'a Exact<'m, T>,
    blocks: &'a DistanceBlocks<T, MR, NR>,
    codes: &'a [u32],
    positives: &'a Positives,
    opts: LossOptions,
    f: Pow2,
    scale: f64,
}

/// Per-worker buffers of the gradient pass: distances, coefficients, the
/// block's unit rows and accumulators, one other unit row.
type GradBuffers<T> = (Vec<T>, Vec<f64>, Vec<f64>, Vec<f64>);

impl<T: Real, const MR: usize, const NR: usize> GradPass<'_, '_, T, MR, NR> {
    fn run(&self) -> Vec<T> {
        let (n, d) = (self.x.rows, self.x.cols);
        let mut grad = vec![T::ZERO; n * d];
        grad.par_chunks_mut(BLOCK * d)
            .enumerate()
            .panic_fuse()
            .for_each_init(
                || {
                    (
                        vec![T::ZERO; BLOCK * n],
                        vec![0.0f64; BLOCK * n],
                        vec![0.0f64; 2 * BLOCK * d],
                        vec![0.0f64; d],
                    )
                },
                |bufs, (b, gblock)| {
                    checkpoint();
                    self.block(b, gblock, bufs)
                },
            );
        grad
    }

    /// d loss_a / d d(a, j) for anchor a and the distance v = d(a, j).
    #[inline]
    fn weight(&self, a: usize, positive: bool, v: f64) -> f64 {
        let (dist, w) = self.positives.of(a);
        if positive {
            let k = dist.partition_point(|&p| p < v);
            debug_assert!(dist[k] == v);
            w[k]
        } else if self.opts.soft {
            -dist.iter().map(|&p| sigmoid(p - v)).sum::<f64>()
        } else {
            -(active_count(dist, v, self.opts.margin) as f64)
        }
    }

    #[inline]
    fn norm(&self, i: usize) -> f64 {
        self.exact.nx.map_or(1.0, |s| s[i])
    }

    /// Weight of each pair on d(t, j) for the rows t of block `rows`, as the
    /// coefficient of the metric's gradient: Euclidean w/d * (x_t - x_j),
    /// squared 2w * (x_t - x_j), cosine w/|x_t| * (cos u_t - u_j), u =
    /// x/|x|. Returns the cosine's diagonal terms.
    fn coefficients(&self, rows: Range<usize>, buf: &[T], coef: &mut [f64]) -> [f64; BLOCK] {
        let (n, f, codes) = (self.x.rows, self.f, self.codes);
        let mut diag = [0.0f64; BLOCK];
        for (k, t) in rows.enumerate() {
            let ct = &mut coef[k * n..(k + 1) * n];
            for j in 0..n {
                let v = buf[k * n + j].to_f64();
                let positive = codes[j] == codes[t];
                // Weights live in the caller's units (v * f, exact: f is a power of two).
                let w = if j == t {
                    0.0
                } else {
                    (self.weight(t, positive, v * f) + self.weight(j, positive, v * f)) * self.scale
                };
                ct[j] = match self.exact.metric {
                    Metric::Euclidean if v > 0.0 => w / v,
                    Metric::Euclidean => 0.0,
                    Metric::SqEuclidean => 2.0 * w,
                    Metric::Cosine => {
                        diag[k] += w * (1.0 - v);
                        w
                    }
                };
            }
        }
        diag
    }

    /// The gradient rows of block `b` into `gblock`.
    fn block(&self, b: usize, gblock: &mut [T], bufs: &mut GradBuffers<T>) {
        let (x, n, d) = (self.x, self.x.rows, self.x.cols);
        let cosine = self.exact.metric == Metric::Cosine;
        let (buf, coef, acc, uj) = bufs;
        let rows = rows_of(b, n);
        let nr = rows.len();
        self.blocks.fill(rows.start, &mut buf[..nr * n]);
        let diag = self.coefficients(rows.clone(), buf, coef);
        let (ut, acc) = acc.split_at_mut(BLOCK * d);
        let acc = &mut acc[..nr * d];
        acc.fill(0.0);
        for (k, t) in rows.clone().enumerate() {
            for (o, v) in ut[k * d..(k + 1) * d].iter_mut().zip(x.row(t)) {
                *o = v.to_f64() / self.norm(t);
            }
        }
        // Differences taken pair by pair: no cancellation far from the origin.
        for j in 0..n {
            let nj = self.norm(j);
            for (o, v) in uj.iter_mut().zip(x.row(j)) {
                *o = v.to_f64() / nj;
            }
            for k in 0..nr {
                let c = coef[k * n + j];
                if c == 0.0 {
                    continue;
                }
                let a = &mut acc[k * d..(k + 1) * d];
                if cosine {
                    for (a, u) in a.iter_mut().zip(uj.iter()) {
                        *a -= c * u;
                    }
                } else {
                    for ((a, u), w) in a.iter_mut().zip(&ut[k * d..(k + 1) * d]).zip(uj.iter()) {
                        *a += c * (u - w);
                    }
                }
            }
        }
        for (k, t) in rows.enumerate() {
            let g = &mut gblock[k * d..(k + 1) * d];
            for ((o, a), u) in g
                .iter_mut()
                .zip(&acc[k * d..(k + 1) * d])
                .zip(&ut[k * d..(k + 1) * d])
            {
                *o = T::from_f64(if cosine {
                    (a + diag[k] * u) / self.norm(t)
                } else {
                    *a
                });
            }
        }
    }
}
