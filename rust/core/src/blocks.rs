//! Orders points so that nearby points share a block, and bounds each
//! block by a ball. The geometry kernels (Hausdorff, the isometric error)
//! skip whole block pairs whose balls prove they cannot hold the answer;
//! the pairs that survive go through the usual screen and exact settle.
//!
//! Every bound here is rigorous: a ball's radius is rounded up from the
//! f64 distances to its centre, a gap rounded down, a span rounded up. The
//! order is a pure function of the data (no randomness, no thread
//! dependence), so results stay identical for any thread count.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use rayon::prelude::*;

use crate::matrix::Matrix;
use crate::parallel::checkpoint;
use crate::real::Real;

mod slabs;
pub(crate) use slabs::Slabs;

/// Unit roundoff of f64.
const U: f64 = f64::EPSILON / 2.0;
/// Absolute slack for squares that underflow (|diff| below about 1e-154):
/// each loses at most 2^-1074, so a sum of up to 2^20 of them is off by
/// less than 2^-1054, whose square root is below this.
const TINY: f64 = 1e-150;
/// Ranges at most this long are split on the calling thread.
const SERIAL_SPLIT: usize = 1 << 12;

static PRUNING: AtomicBool = AtomicBool::new(true);
/// Bits of the factor the test knob [`set_bound_tightening`] applies.
static TIGHTEN_BITS: AtomicU64 = AtomicU64::new(0);

/// Whether the geometry kernels prune (the default). With `false` they run
/// their unpruned path, which the tests and benchmarks compare against.
/// Returns the previous setting. Process-wide.
pub fn set_pruning(on: bool) -> bool {
    PRUNING.swap(on, Ordering::Relaxed)
}

pub(crate) fn pruning_enabled() -> bool {
    PRUNING.load(Ordering::Relaxed)
}

/// TEST ONLY: makes every gap `1 + t` times larger and every span `1 - t`
/// times smaller (a bound too tight by `t`), so that the tests can show
/// they catch a wrong bound. `0` (the default) restores the rigorous ones.
pub fn set_bound_tightening(t: f64) {
    TIGHTEN_BITS.store(t.to_bits(), Ordering::Relaxed);
}

#[inline]
pub(crate) fn tightening() -> f64 {
    f64::from_bits(TIGHTEN_BITS.load(Ordering::Relaxed))
}

static PAIRS_CONSIDERED: AtomicU64 = AtomicU64::new(0);
static PAIRS_SKIPPED: AtomicU64 = AtomicU64::new(0);

/// Counts block pairs a pruned kernel looked at and skipped by their bounds
/// (process-wide; read by the benchmarks through [`take_pruning_counts`]).
pub(crate) fn record_pairs(considered: u64, skipped: u64) {
    PAIRS_CONSIDERED.fetch_add(considered, Ordering::Relaxed);
    PAIRS_SKIPPED.fetch_add(skipped, Ordering::Relaxed);
}

/// Block pairs considered and skipped since the last call, and resets them.
pub fn take_pruning_counts() -> (u64, u64) {
    (
        PAIRS_CONSIDERED.swap(0, Ordering::Relaxed),
        PAIRS_SKIPPED.swap(0, Ordering::Relaxed),
    )
}

/// A permutation of the rows in blocks of nearby points.
pub(crate) struct BlockTree {
    /// Position -> original row.
    pub(crate) order: Vec<u32>,
    /// Block `b` holds positions `starts[b]..starts[b + 1]`.
    pub(crate) starts: Vec<usize>,
    leaf: usize,
    /// The splits, for routing new points ([`BlockTree::route`]).
    root: Node,
}

/// A node of the tree: a block, or a split of its positions.
enum Node {
    Leaf,
    Split(Box<Split>),
}

/// Rows whose projection on `dir` is below `threshold` take the first
/// `left` positions (`lo`), the others the rest (`hi`).
struct Split {
    dir: Vec<f64>,
    threshold: f64,
    /// `|dir|`, so that projections compare as distances.
    norm: f64,
    /// The greatest projection in `lo`, the least in `hi` (as computed).
    lo_max: f64,
    hi_min: f64,
    left: usize,
    /// Rows under the split.
    size: usize,
    lo: Node,
    hi: Node,
}

/// Rigorous bounding balls of the blocks of one embedding.
pub(crate) struct Balls {
    d: usize,
    /// Row-major block x d centres.
    centres: Vec<f64>,
    /// Upper bounds on the distance from each centre to its block's rows.
    radii: Vec<f64>,
}

impl BlockTree {
    /// Orders the rows of `xs` (equal row counts; the order is computed on
    /// their concatenated coordinates) into blocks of `leaf` rows (the last
    /// block may be shorter): halve recursively at the median of the
    /// projection onto a far pair's direction, with the halves' sizes
    /// multiples of `leaf`.
    pub(crate) fn build<T: Real>(xs: &[&Matrix<T>], leaf: usize) -> BlockTree {
        assert!(!xs.is_empty() && leaf > 0);
        let n = xs[0].rows;
        assert!(xs.iter().all(|x| x.rows == n));
        let mut order: Vec<u32> = (0..n as u32).collect();
        let root = split(xs, &mut order, leaf);
        let starts = (0..n.div_ceil(leaf))
            .map(|b| b * leaf)
            .chain(std::iter::once(n))
            .collect();
        BlockTree {
            order,
            starts,
            leaf,
            root,
        }
    }

    /// A tree of given blocks (another ordering's), without splits: it
    /// serves balls and rows; `route` sends every point to block 0.
    pub(crate) fn from_blocks(order: Vec<u32>, starts: Vec<usize>) -> BlockTree {
        let leaf = starts.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(1);
        BlockTree {
            order,
            starts,
            leaf,
            root: Node::Leaf,
        }
    }

    /// The block a new point `p` lands in (following the splits), and the
    /// block it lands in when it crosses the split it is nearest to (the
    /// same block for a tree of one). `p` has the coordinates of a tree
    /// built on one matrix. Only speed depends on the answer.
    pub(crate) fn route<T: Real>(&self, p: &[T]) -> (u32, u32) {
        let side = |s: &Split| {
            let v = dot_row(p, &s.dir);
            (v < s.threshold, (v - s.threshold).abs() / s.norm)
        };
        let descend = |mut node: &Node, mut offset: usize| {
            while let Node::Split(s) = node {
                if side(s).0 {
                    node = &s.lo;
                } else {
                    offset += s.left;
                    node = &s.hi;
                }
            }
            (offset / self.leaf) as u32
        };
        let (mut node, mut offset) = (&self.root, 0);
        let mut nearest: Option<(f64, &Split, usize, bool)> = None;
        while let Node::Split(s) = node {
            let (below, margin) = side(s);
            if nearest.is_none_or(|n| margin < n.0) {
                nearest = Some((margin, s, offset, below));
            }
            if below {
                node = &s.lo;
            } else {
                offset += s.left;
                node = &s.hi;
            }
        }
        let home = (offset / self.leaf) as u32;
        let across = match nearest {
            Some((_, s, at, true)) => descend(&s.hi, at + s.left),
            Some((_, s, at, false)) => descend(&s.lo, at),
            None => home,
        };
        (home, across)
    }

    pub(crate) fn blocks(&self) -> usize {
        self.starts.len() - 1
    }

    /// The original rows of block `b`, in block order.
    pub(crate) fn rows(&self, b: usize) -> &[u32] {
        &self.order[self.starts[b]..self.starts[b + 1]]
    }

    /// The bounding balls of the blocks in `x` (any matrix with the tree's rows).
    pub(crate) fn balls<T: Real>(&self, x: &Matrix<T>) -> Balls {
        let d = x.cols;
        let per_block: Vec<(Vec<f64>, f64)> = (0..self.blocks())
            .into_par_iter()
            .panic_fuse()
            .map(|b| {
                checkpoint();
                ball(x, self.rows(b))
            })
            .collect();
        let mut centres = Vec::with_capacity(per_block.len() * d);
        let mut radii = Vec::with_capacity(per_block.len());
        for (c, r) in per_block {
            centres.extend_from_slice(&c);
            radii.push(r);
        }
        Balls { d, centres, radii }
    }
}

impl Balls {
    /// One ball (block 0) around `rows` of `x`.
    pub(crate) fn of_rows<T: Real>(x: &Matrix<T>, rows: &[u32]) -> Balls {
        let (centres, r) = ball(x, rows);
        Balls {
            d: x.cols,
            centres,
            radii: vec![r],
        }
    }

    pub(crate) fn blocks(&self) -> usize {
        self.radii.len()
    }

    /// How near block `c` of `other` comes to block `b`'s centre (the
    /// centres' distance less `c`'s radius): an order for visiting blocks
    /// nearest first, not a bound.
    pub(crate) fn approach(&self, b: usize, other: &Balls, c: usize) -> f64 {
        sq_dist(self.centre(b), other.centre(c).iter().copied()).sqrt() - other.radii[c]
    }

    pub(crate) fn centre(&self, b: usize) -> &[f64] {
        &self.centres[b * self.d..(b + 1) * self.d]
    }

    pub(crate) fn radius(&self, b: usize) -> f64 {
        self.radii[b]
    }

    /// A lower bound on the distance between any row of block `b` here and
    /// any row of block `c` of `other` (the same dimension).
    pub(crate) fn gap(&self, b: usize, other: &Balls, c: usize) -> f64 {
        let centres = centre_distance_down(self.centre(b), other.centre(c));
        gap_down(centres, self.radii[b], other.radii[c]) * (1.0 + tightening())
    }

    /// An upper bound on the distance between any row of block `b` here
    /// and any row of block `c` of `other`.
    pub(crate) fn span(&self, b: usize, other: &Balls, c: usize) -> f64 {
        let centres = centre_distance_up(self.centre(b), other.centre(c));
        up(up(centres + self.radii[b]) + other.radii[c]) * (1.0 - tightening())
    }
}

/// `x` rounded up by a few ulps: covers one rounding of each operation
/// that produced it (with room).
#[inline]
fn up(x: f64) -> f64 {
    x * (1.0 + 4.0 * U)
}

/// `(d + 4)` roundings of a d-term sum of rounded squares, with room.
#[inline]
fn sum_rel_error(d: usize) -> f64 {
    2.0 * (d as f64 + 4.0) * U
}

fn sq_dist(c: &[f64], p: impl Iterator<Item = f64>) -> f64 {
    c.iter().zip(p).map(|(a, b)| (a - b) * (a - b)).sum()
}

fn sqrt_up(s: f64, d: usize) -> f64 {
    s.sqrt() * (1.0 + sum_rel_error(d)) + TINY
}

fn sqrt_down(s: f64, d: usize) -> f64 {
    (s.sqrt() * (1.0 - sum_rel_error(d)) - TINY).max(0.0)
}

fn centre_distance_down(a: &[f64], b: &[f64]) -> f64 {
    sqrt_down(sq_dist(a, b.iter().copied()), a.len())
}

fn centre_distance_up(a: &[f64], b: &[f64]) -> f64 {
    sqrt_up(sq_dist(a, b.iter().copied()), a.len())
}

/// `max(0, centres - r1 - r2)` rounded down.
#[inline]
fn gap_down(centres: f64, r1: f64, r2: f64) -> f64 {
    let g = centres - up(up(r1 + r2));
    if g > 0.0 {
        g * (1.0 - 4.0 * U)
    } else {
        0.0
    }
}

/// The mean of `rows` of `x` as the centre, and a rounded-up radius.
fn ball<T: Real>(x: &Matrix<T>, rows: &[u32]) -> (Vec<f64>, f64) {
    let d = x.cols;
    let mut c = vec![0.0f64; d];
    for &i in rows {
        for (s, v) in c.iter_mut().zip(x.row(i as usize)) {
            *s += v.to_f64();
        }
    }
    let inv = 1.0 / rows.len() as f64;
    c.iter_mut().for_each(|s| *s *= inv);
    let r2 = rows
        .iter()
        .map(|&i| sq_dist(&c, x.row(i as usize).iter().map(|v| v.to_f64())))
        .fold(0.0f64, f64::max);
    (c, sqrt_up(r2, d))
}

/// Orders `order` in place, recursively (see [`BlockTree::build`]);
/// returns the splits made.
fn split<T: Real>(xs: &[&Matrix<T>], order: &mut [u32], leaf: usize) -> Node {
    let n = order.len();
    if n <= leaf {
        return Node::Leaf;
    }
    checkpoint();
    let left = n.div_ceil(leaf) / 2 * leaf;
    let dir = far_pair_direction(xs, order);
    let mut keyed: Vec<(f64, u32)> = order
        .iter()
        .map(|&i| (project(xs, i as usize, &dir), i))
        .collect();
    // Ties in the projection go by row, so the order is a function of the data.
    keyed.select_nth_unstable_by(left, |a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    for (o, k) in order.iter_mut().zip(&keyed) {
        *o = k.1;
    }
    let below = keyed[..left].iter().map(|k| k.0).fold(f64::MIN, f64::max);
    let threshold = below + (keyed[left].0 - below) / 2.0;
    let norm = dir
        .iter()
        .map(|v| v * v)
        .sum::<f64>()
        .sqrt()
        .max(f64::MIN_POSITIVE);
    let (lo, hi) = order.split_at_mut(left);
    let (lo, hi) = if n > SERIAL_SPLIT {
        rayon::join(|| split(xs, lo, leaf), || split(xs, hi, leaf))
    } else {
        (split(xs, lo, leaf), split(xs, hi, leaf))
    };
    Node::Split(Box::new(Split {
        dir,
        threshold,
        norm,
        lo_max: below,
        hi_min: keyed[left].0,
        left,
        size: n,
        lo,
        hi,
    }))
}

/// At most this many rows of a range (evenly spaced) are searched for its far pair.
const FAR_SAMPLE: usize = 256;

/// The direction from `p` to `q`, where `p` is the row farthest from the
/// range's first row and `q` the row farthest from `p` (a cheap stand-in
/// for the principal axis), over the concatenated coordinates, both
/// searched among a sample of the range.
fn far_pair_direction<T: Real>(xs: &[&Matrix<T>], order: &[u32]) -> Vec<f64> {
    let sample: Vec<u32> = order
        .iter()
        .step_by(order.len().div_ceil(FAR_SAMPLE))
        .copied()
        .collect();
    let point = |i: u32| -> Vec<f64> {
        xs.iter()
            .flat_map(|x| x.row(i as usize).iter().map(|v| v.to_f64()))
            .collect()
    };
    let farthest = |from: &[f64]| -> u32 {
        let mut best = (f64::NEG_INFINITY, sample[0]);
        for &i in &sample {
            let mut s = 0.0;
            let mut at = 0;
            for x in xs {
                s += sq_dist_row(&from[at..at + x.cols], x.row(i as usize));
                at += x.cols;
            }
            if s > best.0 {
                best = (s, i);
            }
        }
        best.1
    };
    let p = point(farthest(&point(sample[0])));
    let q = point(farthest(&p));
    q.iter().zip(&p).map(|(a, b)| a - b).collect()
}

/// `sum (c_k - r_k)^2` in four interleaved lanes (so it vectorises).
fn sq_dist_row<T: Real>(c: &[f64], r: &[T]) -> f64 {
    let mut acc = [0.0f64; 4];
    let (cc, rc) = (c.chunks_exact(4), r.chunks_exact(4));
    let tail: f64 = cc
        .remainder()
        .iter()
        .zip(rc.remainder())
        .map(|(a, b)| (a - b.to_f64()) * (a - b.to_f64()))
        .sum();
    for (a, b) in cc.zip(rc) {
        for l in 0..4 {
            let t = a[l] - b[l].to_f64();
            acc[l] += t * t;
        }
    }
    (acc[0] + acc[2]) + (acc[1] + acc[3]) + tail
}

/// `sum r_k d_k` in four interleaved lanes.
fn dot_row<T: Real>(r: &[T], d: &[f64]) -> f64 {
    let mut acc = [0.0f64; 4];
    let (rc, dc) = (r.chunks_exact(4), d.chunks_exact(4));
    let tail: f64 = rc
        .remainder()
        .iter()
        .zip(dc.remainder())
        .map(|(a, b)| a.to_f64() * b)
        .sum();
    for (a, b) in rc.zip(dc) {
        for l in 0..4 {
            acc[l] += a[l].to_f64() * b[l];
        }
    }
    (acc[0] + acc[2]) + (acc[1] + acc[3]) + tail
}

fn project<T: Real>(xs: &[&Matrix<T>], i: usize, dir: &[f64]) -> f64 {
    let mut at = 0;
    let mut s = 0.0;
    for x in xs {
        s += dot_row(x.row(i), &dir[at..at + x.cols]);
        at += x.cols;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: &mut u64) -> f64 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*seed >> 11) as f64) / ((1u64 << 53) as f64) - 0.5
    }

    fn data(n: usize, d: usize, offset: f64, seed: u64) -> Vec<f64> {
        let mut s = seed;
        (0..n * d).map(|_| offset + lcg(&mut s)).collect()
    }

    fn exact_dist(a: &[f64], b: &[f64]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y) * (x - y))
            .sum::<f64>()
            .sqrt()
    }

    #[test]
    fn order_is_a_permutation_in_leaf_blocks() {
        let v = data(1000, 7, 0.0, 1);
        let x = Matrix::new(&v, 1000, 7, "x").unwrap();
        let t = BlockTree::build(&[&x], 64);
        let mut seen = t.order.clone();
        seen.sort();
        assert_eq!(seen, (0..1000).collect::<Vec<u32>>());
        assert_eq!(t.blocks(), 16);
        assert!((0..15).all(|b| t.rows(b).len() == 64));
        assert_eq!(t.rows(15).len(), 1000 - 15 * 64);
    }

    #[test]
    fn balls_bound_every_pair() {
        for offset in [0.0, 1e8] {
            let (va, vb) = (data(300, 5, offset, 2), data(200, 5, offset, 3));
            let a = Matrix::new(&va, 300, 5, "a").unwrap();
            let b = Matrix::new(&vb, 200, 5, "b").unwrap();
            let (ta, tb) = (BlockTree::build(&[&a], 16), BlockTree::build(&[&b], 16));
            let (ba, bb) = (ta.balls(&a), tb.balls(&b));
            for p in 0..ta.blocks() {
                for q in 0..tb.blocks() {
                    let (g, s) = (ba.gap(p, &bb, q), bb.span(q, &ba, p));
                    for &i in ta.rows(p) {
                        for &j in tb.rows(q) {
                            let e = exact_dist(a.row(i as usize), b.row(j as usize));
                            assert!(g <= e && e <= s, "{g} <= {e} <= {s}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn nearby_points_share_blocks() {
        // Two far clusters interleaved by row: the order must separate them.
        let n = 256;
        let mut v = data(n, 3, 0.0, 4);
        for i in (1..n).step_by(2) {
            v[i * 3] += 100.0;
        }
        let x = Matrix::new(&v, n, 3, "x").unwrap();
        let t = BlockTree::build(&[&x], 32);
        let balls = t.balls(&x);
        assert!((0..t.blocks()).all(|b| balls.radius(b) < 2.0));
    }
}
