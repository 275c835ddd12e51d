//! The row order of the pruned isometric error: blocks of at most `leaf`
//! rows that follow the clusters. `BlockTree::build` halves at medians into
//! blocks of exactly `leaf` rows, so a class of 100 rows with leaf 64 always
//! shares a block with another class, and that block's ball spans both:
//! no pair of it can be skipped. Here each range is split between the two
//! ends of a far pair (each row to the nearer end), which cuts between
//! clusters; a median split takes over where that split is lopsided.

use crate::blocks::BlockTree;
use crate::matrix::Matrix;
use crate::parallel::checkpoint;
use crate::real::Real;

/// Ranges at most this long are split on the calling thread.
const SERIAL_SPLIT: usize = 1 << 12;
/// A split leaving fewer than `1 / LOPSIDED` of the rows on one side is
/// replaced by a median split (bounds the depth).
const LOPSIDED: usize = 32;

/// Blocks of at most `leaf` rows of `xs` (equal row counts; their
/// concatenated coordinates), a pure function of the data.
pub(crate) fn cluster_tree<T: Real>(xs: &[&Matrix<T>], leaf: usize) -> BlockTree {
    let n = xs[0].rows;
    let mut order: Vec<u32> = (0..n as u32).collect();
    let sizes = split(xs, &mut order, leaf.max(1));
    let mut starts = Vec::with_capacity(sizes.len() + 1);
    starts.push(0);
    for s in sizes {
        starts.push(starts.last().copied().unwrap_or(0) + s);
    }
    BlockTree::from_blocks(order, starts)
}

/// Orders `order` and returns its block sizes.
fn split<T: Real>(xs: &[&Matrix<T>], order: &mut [u32], leaf: usize) -> Vec<usize> {
    let n = order.len();
    if n <= leaf {
        return vec![n];
    }
    checkpoint();
    let left = partition(xs, order);
    let (lo, hi) = order.split_at_mut(left);
    let (mut a, b) = if n > SERIAL_SPLIT {
        rayon::join(|| split(xs, lo, leaf), || split(xs, hi, leaf))
    } else {
        (split(xs, lo, leaf), split(xs, hi, leaf))
    };
    a.extend(b);
    a
}

fn sq_dist<T: Real>(xs: &[&Matrix<T>], a: usize, b: usize) -> f64 {
    xs.iter()
        .map(|x| {
            x.row(a)
                .iter()
                .zip(x.row(b))
                .map(|(u, v)| (u.to_f64() - v.to_f64()).powi(2))
                .sum::<f64>()
        })
        .sum()
}

/// Moves the rows nearer `p` than `q` (a far pair) first, keeping their
/// order; returns how many. Median of the same key if lopsided.
fn partition<T: Real>(xs: &[&Matrix<T>], order: &mut [u32]) -> usize {
    let n = order.len();
    let farthest = |from: usize| -> usize {
        let mut best = (f64::NEG_INFINITY, from);
        for &r in order.iter() {
            let s = sq_dist(xs, from, r as usize);
            if s > best.0 {
                best = (s, r as usize);
            }
        }
        best.1
    };
    let p = farthest(order[0] as usize);
    let q = farthest(p);
    let mut keyed: Vec<(f64, u32)> = order
        .iter()
        .map(|&r| (sq_dist(xs, r as usize, p) - sq_dist(xs, r as usize, q), r))
        .collect();
    let near = keyed.iter().filter(|k| k.0 < 0.0).count();
    let left = if near.min(n - near) * LOPSIDED >= n {
        near
    } else {
        n / 2
    };
    // Ties in the key go by row, so the order is a function of the data.
    keyed.select_nth_unstable_by(left, |a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    for (o, k) in order.iter_mut().zip(&keyed) {
        *o = k.1;
    }
    left
}
