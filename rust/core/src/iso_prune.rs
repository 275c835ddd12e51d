//! The isometric error with block-pair pruning. Rows are ordered so that
//! nearby points share a block ([`BlockTree`]); the balls of blocks I and J
//! in both embeddings bound `|d1 - d2|` over all their pairs. A block pair
//! whose bound is below an exact discrepancy already found cannot hold the
//! maximum and is skipped; the others are screened on distance blocks and
//! settled exactly, as in the brute scan, so the answer (value, and the
//! lowest pair among ties) is the brute scan's.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use rayon::prelude::*;

use crate::blocks::{record_pairs, BlockTree};
use crate::cdist::DistanceBlocks;
use crate::engine::widest;
use crate::error::Result;
use crate::geometry::{dist, Attained};
use crate::iso_bound::{BallBound, ProjectedBound};
use crate::iso_tree::cluster_tree;
use crate::isometric::IsoBlock;
use crate::matrix::Matrix;
use crate::metric::Metric;
use crate::parallel::checkpoint;
use crate::real::Real;
use crate::screen::{
    difference_bound_coef, difference_bound_floor, settle_best, CandidateSet, Extreme,
};

/// Reference rows gathered per distance block (several J blocks at once).
const CHUNK_ROWS: usize = 1024;
/// Rows of blocks whose survival rate is sampled.
const SAMPLE_BLOCKS: usize = 16;

/// How the pruned scan runs.
#[derive(Clone, Copy)]
pub(crate) struct PruneKnobs {
    pub(crate) leaf: usize,
    /// The scan gives up (`None`) when a sample shows a larger share of
    /// pairs surviving the block bounds.
    pub(crate) give_up_above: f64,
}

/// What the pruned scan did: block pairs in all (`I <= J`), and scanned.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneStats {
    pub block_pairs: u64,
    pub scanned: u64,
}

/// A pair's exact discrepancy and its rows (`i < j`, original indices).
type Found = (f64, (usize, usize));

/// The shared lower bound on the maximum: the largest exact discrepancy
/// found so far (non-negative, so its bits order as its values).
struct SharedBest(AtomicU64);

impl SharedBest {
    fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
    fn raise(&self, v: f64) {
        self.0.fetch_max(v.to_bits(), Ordering::Relaxed);
    }
}

/// The larger of two found pairs, ties to the lower pair.
fn better(a: Option<Found>, b: Option<Found>) -> Option<Found> {
    settle_best(a.into_iter().chain(b), Extreme::Greatest)
}

/// The pruned scan, or `None` when the sampled survival rate says the brute
/// scan is cheaper.
pub(crate) fn iso_pruned<T: Real, const MR: usize, const NR: usize>(
    x1: &Matrix<T>,
    x2: &Matrix<T>,
    knobs: PruneKnobs,
) -> Result<Option<(Attained, PruneStats)>> {
    let tree = cluster_tree(&[x1, x2], knobs.leaf);
    let (b1, b2) = (tree.balls(x1), tree.balls(x2));
    let bound = BallBound::new(&b1, &b2, x1.cols, x2.cols);
    let projected = ProjectedBound::new(&tree, x1, x2, &b1, &b2);
    let nb = tree.starts.len() - 1;
    // Per block, its most promising partner by the centres' discrepancy:
    // the seed pairs, and the order that finds a near-maximum early.
    let heads: Vec<(f64, usize)> = (0..nb)
        .into_par_iter()
        .panic_fuse()
        .map(|i| {
            checkpoint();
            (i..nb)
                .map(|j| (bound.estimate(i, j), j))
                .fold((f64::NEG_INFINITY, i), |a, c| if c.0 > a.0 { c } else { a })
        })
        .collect();
    let exact = |i: usize, j: usize| (dist(x1, i, x1, j) - dist(x2, i, x2, j)).abs();
    let seed = seed_pairs(&tree, &heads, exact);
    let seed_value = seed.map_or(0.0, |s| s.0);
    if survival(&tree, &bound, &projected, seed_value) > knobs.give_up_above {
        return Ok(None);
    }
    let mut by_head: Vec<usize> = (0..nb).collect();
    by_head.sort_by(|&a, &b| heads[b].0.total_cmp(&heads[a].0).then(a.cmp(&b)));
    let best = SharedBest(AtomicU64::new(seed_value.to_bits()));
    let next = AtomicUsize::new(0);
    let scan = RowScan {
        x1,
        x2,
        tree: &tree,
        bound: &bound,
        projected: &projected,
        best: &best,
        scanned: AtomicU64::new(0),
    };
    // Rows of blocks are handed out by their best estimate, so the shared
    // best rises early; each worker keeps its own best pair.
    let workers = rayon::current_num_threads();
    let found: Vec<Option<Found>> = (0..workers)
        .into_par_iter()
        .panic_fuse()
        .map(|_| -> Result<Option<Found>> {
            let mut mine = None;
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= nb {
                    return Ok(mine);
                }
                mine = better(mine, scan.row::<MR, NR>(by_head[k])?);
            }
        })
        .collect::<Result<_>>()?;
    let (value, (i, j)) = found
        .into_iter()
        .fold(seed, better)
        .expect("the pair attaining the maximum is never pruned");
    let stats = PruneStats {
        block_pairs: (nb as u64) * (nb as u64 + 1) / 2,
        scanned: scan.scanned.load(Ordering::Relaxed),
    };
    record_pairs(stats.block_pairs, stats.block_pairs - stats.scanned);
    Ok(Some((Attained { value, i, j }, stats)))
}

/// Exact discrepancies of one pair per block (its first row and the first
/// row of its most promising partner block): the starting lower bound.
fn seed_pairs(
    tree: &BlockTree,
    heads: &[(f64, usize)],
    exact: impl Fn(usize, usize) -> f64 + Sync,
) -> Option<Found> {
    let first = |b: usize, k: usize| {
        let p = tree.starts[b] + k;
        (p < tree.starts[b + 1]).then(|| tree.order[p] as usize)
    };
    let found: Vec<Found> = heads
        .par_iter()
        .enumerate()
        .filter_map(|(i, &(_, j))| {
            let (a, b) = (first(i, 0)?, first(j, usize::from(i == j))?);
            let (a, b) = (a.min(b), a.max(b));
            Some((exact(a, b), (a, b)))
        })
        .collect();
    settle_best(found.into_iter(), Extreme::Greatest)
}

/// The share of pairs, over a sample of block rows, whose block bound
/// reaches `lower`.
fn survival<T: Real>(
    tree: &BlockTree,
    bound: &BallBound,
    projected: &ProjectedBound<T>,
    lower: f64,
) -> f64 {
    let nb = tree.starts.len() - 1;
    let size = |b: usize| (tree.starts[b + 1] - tree.starts[b]) as f64;
    let pairs = |i: usize, j: usize| {
        if i == j {
            size(i) * (size(i) - 1.0) / 2.0
        } else {
            size(i) * size(j)
        }
    };
    let (kept, total) = (0..nb)
        .step_by(nb.div_ceil(SAMPLE_BLOCKS).max(1))
        .collect::<Vec<_>>()
        .par_iter()
        .map(|&i| {
            (i..nb).fold((0.0, 0.0), |(k, t), j| {
                let p = pairs(i, j);
                let kept =
                    bound.ub(i, j) >= lower && (i == j || refined(bound, projected, i, j) >= lower);
                (k + if kept { p } else { 0.0 }, t + p)
            })
        })
        .reduce(|| (0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1));
    if total > 0.0 {
        kept / total
    } else {
        0.0
    }
}

/// The projected bound of blocks `i != j`.
fn refined<T: Real>(bound: &BallBound, projected: &ProjectedBound<T>, i: usize, j: usize) -> f64 {
    let spans = (bound.b1.span(i, bound.b1, j), bound.b2.span(i, bound.b2, j));
    projected.ub(i, j, spans)
}

/// One block row I against its surviving partners J >= I.
struct RowScan<'a, T> {
    x1: &'a Matrix<'a, T>,
    x2: &'a Matrix<'a, T>,
    tree: &'a BlockTree,
    bound: &'a BallBound<'a>,
    projected: &'a ProjectedBound<'a, T>,
    best: &'a SharedBest,
    /// Block pairs screened so far.
    scanned: AtomicU64,
}

impl<T: Real> RowScan<'_, T> {
    fn rows(&self, b: usize) -> &[u32] {
        self.tree.rows(b)
    }

    /// The best pair of block row `i` among the partners whose bounds
    /// reach the shared best, visited by estimate, most promising first.
    fn row<const MR: usize, const NR: usize>(&self, i: usize) -> Result<Option<Found>> {
        checkpoint();
        let nb = self.tree.starts.len() - 1;
        let lower = self.best.get();
        let mut partners: Vec<(f64, f64, usize)> = (i..nb)
            .map(|j| (self.bound.ub(i, j), self.bound.estimate(i, j), j))
            .filter(|c| c.0 >= lower)
            .collect();
        partners.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.2.cmp(&b.2)));
        let (mut mine, mut scanned, mut k) = (None, 0, 0);
        while k < partners.len() {
            checkpoint();
            let (mut cols, mut diagonal) = (Vec::with_capacity(CHUNK_ROWS), false);
            let lower = self.best.get();
            while k < partners.len() {
                let (ub, _, j) = partners[k];
                if !cols.is_empty() && cols.len() + self.rows(j).len() > CHUNK_ROWS {
                    break;
                }
                k += 1;
                if ub < lower {
                    continue;
                }
                if j == i {
                    diagonal = true;
                    scanned += 1;
                } else if self.refined(i, j) >= lower {
                    cols.extend_from_slice(self.rows(j));
                    scanned += 1;
                }
            }
            let mut found = None;
            if diagonal {
                found = self.chunk::<MR, NR>(i, None)?;
            }
            if !cols.is_empty() {
                found = better(found, self.chunk::<MR, NR>(i, Some(&cols))?);
            }
            if let Some((v, _)) = found {
                self.best.raise(v);
            }
            mine = better(mine, found);
        }
        self.scanned.fetch_add(scanned, Ordering::Relaxed);
        Ok(mine)
    }

    fn refined(&self, i: usize, j: usize) -> f64 {
        refined(self.bound, self.projected, i, j)
    }

    /// Block `i` against the rows `cols` (or against itself): screened on
    /// distance blocks, survivors settled exactly.
    fn chunk<const MR: usize, const NR: usize>(
        &self,
        i: usize,
        cols: Option<&[u32]>,
    ) -> Result<Option<Found>> {
        let rows = self.rows(i);
        let d1 = distances::<T, MR, NR>(self.x1, rows, cols)?;
        let d2 = distances::<T, MR, NR>(self.x2, rows, cols)?;
        let cols = cols.unwrap_or(rows);
        let m = cols.len();
        let (k1, k2) = (
            difference_bound_coef::<T>(self.x1.cols),
            difference_bound_coef::<T>(self.x2.cols),
        );
        let tiny = difference_bound_floor::<T>();
        let same = std::ptr::eq(cols, rows);
        let pair = |a: u32, b: u32| (a.min(b), a.max(b));
        let mut blk = IsoBlock::new();
        blk.share_bound(self.best.get());
        for (r, &a) in rows.iter().enumerate() {
            let start = if same { r + 1 } else { 0 };
            for (c, &b) in cols.iter().enumerate().skip(start) {
                let (u, v) = (d1[r * m + c].to_f64(), d2[r * m + c].to_f64());
                blk.offer((u - v).abs(), k1 * u + k2 * v + tiny, pair(a, b));
            }
        }
        let exact = |(a, b): (u32, u32)| {
            let (a, b) = (a as usize, b as usize);
            let e = (dist(self.x1, a, self.x1, b) - dist(self.x2, a, self.x2, b)).abs();
            (e, (a, b))
        };
        let found = match blk.survivors() {
            Some(it) => settle_best(it.map(exact), Extreme::Greatest),
            // Flooded with ties: every pair of the chunk, exactly.
            None => settle_best(
                rows.iter().enumerate().flat_map(|(r, &a)| {
                    let start = if same { r + 1 } else { 0 };
                    cols[start..].iter().map(move |&b| exact(pair(a, b)))
                }),
                Extreme::Greatest,
            ),
        };
        Ok(found)
    }
}

/// Distances (in `T`, from coordinate differences) from the rows `rows` of
/// `x` to the rows `cols` (or to `rows` themselves), row-major.
fn distances<T: Real, const MR: usize, const NR: usize>(
    x: &Matrix<T>,
    rows: &[u32],
    cols: Option<&[u32]>,
) -> Result<Vec<T>> {
    let gather = |idx: &[u32]| -> Vec<T> {
        let mut out = Vec::with_capacity(idx.len() * x.cols);
        for &r in idx {
            out.extend_from_slice(x.row(r as usize));
        }
        out
    };
    let a = gather(rows);
    let ma = Matrix::new(&a, rows.len(), x.cols, "X")?;
    let c = cols.map(gather);
    let mc = match (&c, cols) {
        (Some(c), Some(cols)) => Some(Matrix::new(c, cols.len(), x.cols, "X")?),
        _ => None,
    };
    let blocks =
        DistanceBlocks::<T, MR, NR>::new(&ma, mc.as_ref(), Metric::Euclidean, widest::ISOMETRIC)?;
    let m = cols.map_or(rows.len(), <[u32]>::len);
    let mut out = vec![T::ZERO; rows.len() * m];
    blocks.fill(0, &mut out);
    Ok(out)
}
