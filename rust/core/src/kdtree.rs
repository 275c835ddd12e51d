//! A k-d tree for the directed Hausdorff distance in low dimension, where
//! a tree query costs O(log M) and beats any O(N M) scan, tiled or not.
//!
//! Distances are the exact f64 squared distances of [`Exact::d2`]; box
//! distances are summed in the same order from clamped coordinates, so a
//! box's value never exceeds that of a point inside it and pruning with a
//! strict `>` keeps every tie (the nearest row is the lowest index among
//! equals, as in the tiled kernels).

use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;

use crate::exact::Exact;
use crate::matrix::Matrix;
use crate::metric::Metric;
use crate::parallel::{checkpoint, scattered_stride};
use crate::real::Real;

/// Below this dimension the tree wins over the tiled scan (measured in
/// benches/bench_geometry.py; see docs/performance.md).
pub(crate) const KD_MAX_DIM: usize = 8;
const LEAF: usize = 24;
const LEAF_MARK: u8 = u8::MAX;

/// A point padded to four coordinates with zeros (adding +0.0 to a sum of
/// squares changes no bit) and its row.
#[derive(Clone, Copy)]
struct Pt<const D: usize> {
    c: [f64; D],
    j: usize,
}

/// A balanced k-d tree in heap layout: node `v` has children `2v+1` and
/// `2v+2` and covers the point range obtained by halving from the root, so
/// a descent reads one split value per level from a compact array.
struct Tree<const D: usize> {
    pts: Vec<Pt<D>>,
    /// Split dimension per node, `LEAF_MARK` for a leaf.
    dim: Vec<u8>,
    /// Split value: left child <= value <= right child.
    value: Vec<f64>,
    lo: Vec<[f64; D]>,
    hi: Vec<[f64; D]>,
}

/// Sum of squares in the order of `Exact::d2` (four interleaved
/// accumulators), so that equal terms give equal bits.
#[inline(always)]
fn ordered_sq_sum<const D: usize>(t: [f64; D]) -> f64 {
    let mut acc = [0.0f64; 4];
    for (k, v) in t.iter().enumerate() {
        acc[k % 4] += v * v;
    }
    (acc[0] + acc[2]) + (acc[1] + acc[3])
}

#[inline(always)]
fn halves(start: usize, end: usize) -> usize {
    start + (end - start) / 2
}

impl<const D: usize> Tree<D> {
    fn build<T: Real>(y: &Matrix<T>) -> Tree<D> {
        let pts: Vec<Pt<D>> = (0..y.rows)
            .map(|j| {
                let mut c = [0.0; D];
                for (o, v) in c.iter_mut().zip(y.row(j)) {
                    *o = v.to_f64();
                }
                Pt { c, j }
            })
            .collect();
        let mut levels = 1;
        while (y.rows >> levels) > LEAF {
            levels += 1;
        }
        let size = (1usize << (levels + 1)) - 1;
        let mut tree = Tree {
            pts,
            dim: vec![LEAF_MARK; size],
            value: vec![0.0; size],
            lo: vec![[0.0; D]; size],
            hi: vec![[0.0; D]; size],
        };
        tree.split(0, 0, y.rows, y.cols);
        tree
    }

    fn split(&mut self, node: usize, start: usize, end: usize, d: usize) {
        let (mut lo, mut hi) = ([f64::INFINITY; D], [f64::NEG_INFINITY; D]);
        for p in &self.pts[start..end] {
            for k in 0..D {
                lo[k] = lo[k].min(p.c[k]);
                hi[k] = hi[k].max(p.c[k]);
            }
        }
        self.lo[node] = lo;
        self.hi[node] = hi;
        let k = (0..d)
            .max_by(|&a, &b| (hi[a] - lo[a]).total_cmp(&(hi[b] - lo[b])))
            .expect("d >= 1");
        if end - start <= LEAF || hi[k] <= lo[k] || 2 * node + 2 >= self.dim.len() {
            return;
        }
        let mid = halves(start, end);
        self.pts[start..end].select_nth_unstable_by(mid - start, |a, b| a.c[k].total_cmp(&b.c[k]));
        self.dim[node] = k as u8;
        self.value[node] = self.pts[mid].c[k];
        self.split(2 * node + 1, start, mid, d);
        self.split(2 * node + 2, mid, end, d);
    }

    /// Squared distance from `a` to the node's box, never above that of a
    /// point inside the box (clamping is monotone, as is each rounding).
    #[inline(always)]
    fn box_d2(&self, node: usize, a: &[f64; D]) -> f64 {
        let (lo, hi) = (&self.lo[node], &self.hi[node]);
        ordered_sq_sum::<D>(std::array::from_fn(|k| a[k] - a[k].clamp(lo[k], hi[k])))
    }

    #[inline(always)]
    fn point_d2(p: &Pt<D>, a: &[f64; D]) -> f64 {
        ordered_sq_sum::<D>(std::array::from_fn(|k| a[k] - p.c[k]))
    }

    /// Whether some point is nearer to `a` than `sqrt(retire)`, looking
    /// only in the leaf `a` falls into: the cheap test that retires most
    /// rows, like scipy's early break but with the likeliest points first.
    fn leaf_has_nearer(&self, a: &[f64; D], retire: f64) -> bool {
        let (mut node, mut start, mut end) = (0, 0, self.pts.len());
        while self.dim[node] != LEAF_MARK {
            let mid = halves(start, end);
            if a[self.dim[node] as usize] < self.value[node] {
                (node, end) = (2 * node + 1, mid);
            } else {
                (node, start) = (2 * node + 2, mid);
            }
        }
        self.pts[start..end]
            .iter()
            .any(|p| Self::point_d2(p, a) < retire)
    }

    /// The nearest point to `a` (squared distance, row of `y`; lowest row
    /// on ties), or `None` as soon as some point is nearer than `retire`.
    fn nearest(
        &self,
        a: &[f64; D],
        retire: f64,
        stack: &mut Vec<(usize, usize, usize, f64)>,
    ) -> Option<(f64, usize)> {
        if retire > 0.0 && self.leaf_has_nearer(a, retire) {
            return None;
        }
        let mut best = (f64::INFINITY, usize::MAX);
        stack.clear();
        stack.push((0, 0, self.pts.len(), self.box_d2(0, a)));
        while let Some((node, start, end, bd)) = stack.pop() {
            if bd > best.0 {
                continue;
            }
            if self.dim[node] == LEAF_MARK {
                for p in &self.pts[start..end] {
                    let v = Self::point_d2(p, a);
                    if v < best.0 || (v == best.0 && p.j < best.1) {
                        best = (v, p.j);
                    }
                }
                if best.0 < retire {
                    return None;
                }
                continue;
            }
            let mid = halves(start, end);
            let (l, r) = (2 * node + 1, 2 * node + 2);
            let (dl, dr) = (self.box_d2(l, a), self.box_d2(r, a));
            // Nearer child last, so it is searched first.
            if dl <= dr {
                stack.extend([(r, mid, end, dr), (l, start, mid, dl)]);
            } else {
                stack.extend([(l, start, mid, dl), (r, mid, end, dr)]);
            }
        }
        Some(best)
    }
}

/// Same contract as the tiled `nearest_for_max`: for every row of `x`,
/// its exact nearest row of `y`, or `None` when the row is proved nearer to
/// `y` than some other row is (so it cannot attain, nor tie, the maximum).
pub(crate) fn nearest_for_max_tree<T: Real>(x: &Matrix<T>, y: &Matrix<T>) -> Vec<Option<usize>> {
    if x.cols <= 4 {
        nearest_with::<T, 4>(x, y)
    } else {
        nearest_with::<T, KD_MAX_DIM>(x, y)
    }
}

fn nearest_with<T: Real, const D: usize>(x: &Matrix<T>, y: &Matrix<T>) -> Vec<Option<usize>> {
    let tree = Tree::<D>::build(y);
    let exact = Exact {
        x: *x,
        y: *y,
        nx: None,
        ny: None,
        metric: Metric::Euclidean,
    };
    // A rigorous lower bound on the answer, squared (f64 bits of
    // non-negative values order like the values).
    let lower = AtomicU64::new(0f64.to_bits());
    let n = x.rows;
    // Rows visited in a scattered fixed order, so the bound rises early.
    let stride = scattered_stride(n);
    let mut out: Vec<Option<usize>> = vec![None; n];
    out.par_chunks_mut(256)
        .enumerate()
        .panic_fuse()
        .for_each_init(Vec::new, |stack, (c, chunk)| {
            checkpoint();
            for (k, slot) in chunk.iter_mut().enumerate() {
                let i = ((c * 256 + k) * stride) % n;
                let mut a = [0.0; D];
                for (o, v) in a.iter_mut().zip(x.row(i)) {
                    *o = v.to_f64();
                }
                let retire = f64::from_bits(lower.load(Ordering::Relaxed));
                if let Some((_, j)) = tree.nearest(&a, retire, stack) {
                    let d2 = exact.d2(i, j) * (1.0 - 1e-12);
                    lower.fetch_max(d2.to_bits(), Ordering::Relaxed);
                    *slot = Some(j);
                }
            }
        });
    // `out` is in visiting order; put it back in row order.
    let mut rows = vec![None; n];
    for (p, v) in out.into_iter().enumerate() {
        rows[(p * stride) % n] = v;
    }
    rows
}
