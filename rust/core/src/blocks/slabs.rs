//! Split bounds: a point on one side of a split is at least as far from
//! every row on the other side as its projection is from theirs. In high
//! dimension a block's ball holds nearly every point near it, but these
//! bounds (a k-d tree's, on the tree's far-pair directions) still skip the
//! blocks across the splits for near-duplicate rows.

use super::{dot_row, up, Balls, BlockTree, Node, TINY, U};
use crate::matrix::Matrix;
use crate::real::Real;

/// What the split bounds of one matrix's blocks need beyond the tree (built
/// on that matrix alone): an upper bound on each block's row norms, for the
/// rounding of the projections.
pub(crate) struct Slabs {
    norms: Vec<f64>,
    d: usize,
}

/// One walk of [`Slabs::point_gaps`].
struct Walk<'w, T> {
    slabs: &'w Slabs,
    leaf: usize,
    p: &'w [T],
    /// Bounds at least this large need no deeper split.
    enough: f64,
    /// Rounding of `p`'s projections, and the final shrink and scale.
    coef: f64,
    pn: f64,
    shrink: f64,
    scale: f64,
    out: &'w mut [f64],
}

impl BlockTree {
    /// The split bounds' data for the blocks of `x` (the matrix the tree
    /// was built on; `balls` its balls, which bound the rows' norms).
    pub(crate) fn slabs<T: Real>(&self, x: &Matrix<T>, balls: &Balls) -> Slabs {
        let norms = (0..self.blocks())
            .map(|b| {
                let c = balls.centre(b).iter().map(|v| v * v).sum::<f64>().sqrt();
                up(up(c) + balls.radius(b)) * (1.0 + 4.0 * (x.cols as f64 + 4.0) * U)
            })
            .collect();
        Slabs { norms, d: x.cols }
    }
}

impl Slabs {
    /// Lower bounds on the distance from `p` to every row of each block
    /// (`out[b]`; multiplied by `scale`, which is 1 except for the tests'
    /// wrong bound): the largest distance from `p`'s projection to the
    /// other side over the splits above the block, less the rounding of
    /// both projections. Splits below a bound of `enough` are not visited
    /// (their blocks get the bound reached so far, still a lower bound).
    pub(crate) fn point_gaps<T: Real>(
        &self,
        tree: &BlockTree,
        p: &[T],
        scale: f64,
        enough: f64,
        out: &mut [f64],
    ) {
        let d = self.d as f64;
        let pn = p
            .iter()
            .map(|v| v.to_f64() * v.to_f64())
            .sum::<f64>()
            .sqrt();
        let mut walk = Walk {
            slabs: self,
            leaf: tree.leaf,
            p,
            enough,
            // Each projection is within 2 (d + 4) u |row| |dir| of the exact one.
            coef: 2.0 * (d + 4.0) * U,
            pn: pn * (1.0 + 4.0 * (d + 4.0) * U),
            shrink: 1.0 - 8.0 * (d + 4.0) * U,
            scale,
            out,
        };
        let n = tree.order.len();
        walk.node(&tree.root, 0, n, 0.0);
    }
}

impl<T: Real> Walk<'_, T> {
    /// The blocks of positions `offset..offset + size` under `node`, whose
    /// splits above give the bound `acc` (in distance units).
    fn node(&mut self, node: &Node, offset: usize, size: usize, acc: f64) {
        match node {
            Node::Split(s) if acc <= self.enough => {
                let v = dot_row(self.p, &s.dir);
                let lo = acc.max((v - s.lo_max) / s.norm);
                let hi = acc.max((s.hi_min - v) / s.norm);
                self.node(&s.lo, offset, s.left, lo);
                self.node(&s.hi, offset + s.left, s.size - s.left, hi);
            }
            _ => {
                for b in offset / self.leaf..(offset + size).div_ceil(self.leaf) {
                    let slack = self.coef * (self.pn + self.slabs.norms[b]) + TINY;
                    self.out[b] = ((acc * self.shrink - slack) * self.scale).max(0.0);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize, d: usize, scale: f64, offset: f64, seed: u64) -> Vec<f64> {
        let mut s = seed;
        (0..n * d)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                offset + scale * (((s >> 11) as f64) / ((1u64 << 53) as f64) - 0.5)
            })
            .collect()
    }

    fn exact_dist(a: &[f64], b: &[f64]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y) * (x - y))
            .sum::<f64>()
            .sqrt()
    }

    #[test]
    fn slab_gaps_bound_every_distance() {
        for (scale, offset) in [(1.0, 0.0), (1.0, 1e8), (1e-140, 0.0), (1e140, 0.0)] {
            let (n, d) = (500, 11);
            let vy = data(n, d, scale, offset, 5);
            let vp = data(40, d, scale * 1.5, offset, 6);
            let y = Matrix::new(&vy, n, d, "y").unwrap();
            let tree = BlockTree::build(&[&y], 32);
            let slabs = tree.slabs(&y, &tree.balls(&y));
            let mut gaps = vec![0.0; tree.blocks()];
            let mut positive = 0;
            for p in vp.chunks(d) {
                slabs.point_gaps(&tree, p, 1.0, f64::INFINITY, &mut gaps);
                for (b, &g) in gaps.iter().enumerate() {
                    positive += (g > 0.0) as usize;
                    for &j in tree.rows(b) {
                        let e = exact_dist(p, y.row(j as usize));
                        assert!(g <= e, "scale {scale} offset {offset}: gap {g} > {e}");
                    }
                }
            }
            // The bounds are not vacuous (the far offset's rounding aside).
            if offset == 0.0 {
                assert!(positive > 40 * tree.blocks() / 4, "{positive}");
            }
        }
    }

    #[test]
    fn rows_route_to_their_own_block() {
        let (n, d) = (700, 9);
        let v = data(n, d, 1.0, 0.0, 8);
        let x = Matrix::new(&v, n, d, "x").unwrap();
        let tree = BlockTree::build(&[&x], 32);
        for b in 0..tree.blocks() {
            for &i in tree.rows(b) {
                let (home, across) = tree.route(x.row(i as usize));
                assert_eq!(home as usize, b);
                assert!((across as usize) < tree.blocks() && across != home);
            }
        }
    }
}
