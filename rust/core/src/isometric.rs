//! The isometric error `d_iso` of two embeddings of the same points
//! (equation 13 of seed paper 001): the largest discrepancy of their
//! pairwise distances, screened on distance blocks and settled exactly.

use rayon::prelude::*;

use crate::blocks::pruning_enabled;
use crate::cdist::DistanceBlocks;
use crate::engine::{widest, with_tile_shape};
use crate::error::Result;
use crate::geometry::{check_two_embeddings, dist, Attained};
use crate::iso_prune::{iso_pruned, PruneKnobs, PruneStats};
use crate::matrix::Matrix;
use crate::metric::Metric;
use crate::parallel::checkpoint;
use crate::real::Real;
use crate::scale::with_safe_scale;
use crate::screen::{
    difference_bound_coef, difference_bound_floor, settle_best, CandidateSet, Extreme,
};

/// Rows per block of the isometric-error scan (a multiple of the tile height).
const ISO_BLOCK: usize = 48;
/// Candidates a block keeps before it falls back to an exact rescan.
const ISO_CAP: usize = 256;
/// Rows per block of the pruning tree.
const PRUNE_LEAF: usize = 64;
/// Below this many rows the brute scan is too short for pruning to pay:
/// at 8,192 rows of unclustered data the tree and the sample cost about a
/// fifth of the brute scan (bench_geometry.py, 0.37 s against 0.30 s).
const PRUNE_MIN_ROWS: usize = 16_384;
/// The pruned scan gives way to the brute one when a sample shows more
/// than this share of the pairs surviving the block bounds.
const MAX_SURVIVAL: f64 = 0.35;

/// `d_iso(f1, f2) = sup_{i<j} | ||x1_i - x1_j|| - ||x2_i - x2_j|| |`
/// (equation 13) for two embeddings of the same points, possibly of
/// different dimensions, with the attaining pair. O(N) extra memory.
/// Block pairs that provably cannot hold the maximum are skipped where
/// that pays (clustered embeddings); the answer is the brute scan's.
pub fn isometric_error<T: Real>(x1: &Matrix<T>, x2: &Matrix<T>) -> Result<Attained> {
    isometric_error_with(x1, x2, IsoOptions::default()).map(|r| r.0)
}

/// Which scan [`isometric_error_with`] runs. Not part of the public API:
/// the tests compare the scans.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IsoMode {
    /// Pruned where a sample shows that it pays, else brute force.
    Auto,
    /// Every pair, screened on distance blocks (the reference).
    Unpruned,
    /// Pruned, whatever the sample says.
    Pruned,
}

/// The knobs of [`isometric_error_with`] (tests only).
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub struct IsoOptions {
    pub mode: IsoMode,
    /// Rows per block of the pruning tree.
    pub leaf: usize,
}

impl Default for IsoOptions {
    fn default() -> Self {
        IsoOptions {
            mode: IsoMode::Auto,
            leaf: PRUNE_LEAF,
        }
    }
}

/// [`isometric_error`] with the scan chosen by `opts`: every mode gives the
/// same value and pair, bit for bit, and what the pruning did (zeros where
/// the brute scan ran). `Auto` runs the brute scan while pruning is off
/// (`set_pruning(false)`).
#[doc(hidden)]
pub fn isometric_error_with<T: Real>(
    x1: &Matrix<T>,
    x2: &Matrix<T>,
    opts: IsoOptions,
) -> Result<(Attained, PruneStats)> {
    check_two_embeddings(x1, x2)?;
    if x1.rows == 1 {
        let zero = Attained {
            value: 0.0,
            i: 0,
            j: 0,
        };
        return Ok((zero, PruneStats::default()));
    }
    // One common power-of-two scale keeps the two distances comparable.
    with_safe_scale(x1, Some(x2), |a, b, s| {
        let b = b.expect("second embedding");
        let pruned = match opts.mode {
            IsoMode::Unpruned => None,
            IsoMode::Auto if a.rows < PRUNE_MIN_ROWS || !pruning_enabled() => None,
            mode => {
                let knobs = PruneKnobs {
                    leaf: opts.leaf.max(1),
                    give_up_above: if mode == IsoMode::Auto {
                        MAX_SURVIVAL
                    } else {
                        f64::INFINITY
                    },
                };
                with_tile_shape!(widest::ISOMETRIC, T, iso_pruned(a, b, knobs))?
            }
        };
        let (r, stats) = match pruned {
            Some(r) => r,
            None => (
                with_tile_shape!(widest::ISOMETRIC, T, iso_blocks(a, b))?,
                PruneStats::default(),
            ),
        };
        let r = Attained {
            value: r.value * s,
            ..r
        };
        Ok((r, stats))
    })
}

/// What one block of rows learnt: a lower bound on the maximum and every
/// pair whose upper bound reaches it, or `overflow` (massive ties).
pub(crate) struct IsoBlock {
    best_lower: f64,
    cands: Vec<(f64, u32, u32)>,
    overflow: bool,
}

impl IsoBlock {
    pub(crate) fn new() -> Self {
        IsoBlock {
            best_lower: f64::NEG_INFINITY,
            cands: Vec::new(),
            overflow: false,
        }
    }

    /// Takes a lower bound on the maximum learnt elsewhere (other blocks).
    pub(crate) fn share_bound(&mut self, lower: f64) {
        if lower > self.best_lower {
            self.best_lower = lower;
        }
    }
}

impl CandidateSet for IsoBlock {
    type Key = f64;
    type Index = (u32, u32);

    /// Offers the pair `(i, j)` whose discrepancy is `e`, known to within `+-w`.
    #[inline]
    fn offer(&mut self, e: f64, w: f64, (i, j): (u32, u32)) {
        if e + w < self.best_lower {
            return;
        }
        if e - w > self.best_lower {
            self.best_lower = e - w;
        }
        if !self.overflow {
            self.cands.push((e + w, i, j));
            if self.cands.len() >= ISO_CAP {
                let lo = self.best_lower;
                self.cands.retain(|c| c.0 >= lo);
                if self.cands.len() >= ISO_CAP / 2 {
                    self.overflow = true;
                    self.cands = Vec::new();
                }
            }
        }
    }

    fn survivors(&self) -> Option<impl Iterator<Item = (u32, u32)> + '_> {
        (!self.overflow).then(|| {
            self.cands
                .iter()
                .filter(|c| c.0 >= self.best_lower)
                .map(|c| (c.1, c.2))
        })
    }
}

fn iso_blocks<T: Real, const MR: usize, const NR: usize>(
    x1: &Matrix<T>,
    x2: &Matrix<T>,
) -> Result<Attained> {
    let n = x1.rows;
    let b1 = DistanceBlocks::<T, MR, NR>::new(x1, None, Metric::Euclidean, widest::ISOMETRIC)?;
    let b2 = DistanceBlocks::<T, MR, NR>::new(x2, None, Metric::Euclidean, widest::ISOMETRIC)?;
    // Direct differences: each distance is within (dim + 8) u of itself.
    let (k1, k2) = (
        difference_bound_coef::<T>(x1.cols),
        difference_bound_coef::<T>(x2.cols),
    );
    let tiny = difference_bound_floor::<T>();
    let nblocks = n.div_ceil(ISO_BLOCK);
    let mut blocks: Vec<IsoBlock> = (0..nblocks)
        .into_par_iter()
        .panic_fuse()
        .map_init(
            || (vec![T::ZERO; ISO_BLOCK * n], vec![T::ZERO; ISO_BLOCK * n]),
            |(d1, d2), b| {
                checkpoint();
                let r0 = b * ISO_BLOCK;
                let rows = ISO_BLOCK.min(n - r0);
                b1.fill(r0, &mut d1[..rows * n]);
                b2.fill(r0, &mut d2[..rows * n]);
                let mut blk = IsoBlock::new();
                for k in 0..rows {
                    let i = r0 + k;
                    for j in i + 1..n {
                        let (u, v) = (d1[k * n + j].to_f64(), d2[k * n + j].to_f64());
                        blk.offer((u - v).abs(), k1 * u + k2 * v + tiny, (i as u32, j as u32));
                    }
                }
                blk
            },
        )
        .collect();
    let lower = blocks
        .iter()
        .map(|b| b.best_lower)
        .fold(f64::NEG_INFINITY, f64::max);
    for blk in blocks.iter_mut() {
        blk.share_bound(lower);
    }
    let exact = |i: usize, j: usize| (dist(x1, i, x1, j) - dist(x2, i, x2, j)).abs();
    // Exact values of the survivors; overflowed blocks are rescanned exactly.
    let found: Vec<(f64, (usize, usize))> = blocks
        .par_iter()
        .enumerate()
        .flat_map_iter(|(b, blk)| -> Vec<(f64, (usize, usize))> {
            match blk.survivors() {
                Some(it) => it
                    .map(|(i, j)| (i as usize, j as usize))
                    .map(|(i, j)| (exact(i, j), (i, j)))
                    .collect(),
                None => {
                    let r0 = b * ISO_BLOCK;
                    (r0..(r0 + ISO_BLOCK).min(n))
                        .flat_map(|i| (i + 1..n).map(move |j| (i, j)))
                        .map(|(i, j)| (exact(i, j), (i, j)))
                        .collect()
                }
            }
        })
        .collect();
    // Largest value; ties to the lowest (i, j).
    let (value, (i, j)) =
        settle_best(found.into_iter(), Extreme::Greatest).expect("at least one pair");
    Ok(Attained { value, i, j })
}
