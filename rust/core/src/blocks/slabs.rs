//! Slab bounds: per block, the range of its rows' projections on the
//! direction of every split above it. In high dimension a block's ball
//! holds nearly every point near it, but a point on the far side of a
//! split is provably as far as its projection is from the block's range,
//! which is what skips blocks for near-duplicate rows.

use rayon::prelude::*;

use super::{dot_row, up, Balls, BlockTree, Node, Split, TINY, U};
use crate::matrix::Matrix;
use crate::parallel::checkpoint;
use crate::real::Real;

/// The projection ranges of the blocks of one matrix (a tree built on it alone).
pub(crate) struct Slabs {
    /// Per block, per split above it (root first): the least and greatest
    /// projection of its rows, and the direction's norm.
    ranges: Vec<Vec<(f64, f64, f64)>>,
    /// Per block, an upper bound on its rows' norms.
    norms: Vec<f64>,
    d: usize,
}

impl BlockTree {
    /// The splits above each block, root first.
    fn paths(&self) -> Vec<Vec<&Split>> {
        fn walk<'t>(
            node: &'t Node,
            offset: usize,
            leaf: usize,
            path: &mut Vec<&'t Split>,
            out: &mut [Vec<&'t Split>],
        ) {
            match node {
                Node::Leaf => out[offset / leaf] = path.clone(),
                Node::Split(s) => {
                    path.push(s);
                    walk(&s.lo, offset, leaf, path, out);
                    walk(&s.hi, offset + s.left, leaf, path, out);
                    path.pop();
                }
            }
        }
        let mut out = vec![Vec::new(); self.blocks()];
        walk(&self.root, 0, self.leaf, &mut Vec::new(), &mut out);
        out
    }

    /// The slabs of the blocks in `x` (the matrix the tree was built on;
    /// `balls` its balls, which bound the rows' norms).
    pub(crate) fn slabs<T: Real>(&self, x: &Matrix<T>, balls: &Balls) -> Slabs {
        let paths = self.paths();
        let ranges = (0..self.blocks())
            .into_par_iter()
            .panic_fuse()
            .map(|b| {
                checkpoint();
                let rows = self.rows(b);
                paths[b]
                    .iter()
                    .map(|s| {
                        let (lo, hi) = rows.iter().fold((f64::MAX, f64::MIN), |(lo, hi), &i| {
                            let v = dot_row(x.row(i as usize), &s.dir);
                            (lo.min(v), hi.max(v))
                        });
                        (lo, hi, s.norm)
                    })
                    .collect()
            })
            .collect();
        let norms = (0..self.blocks())
            .map(|b| {
                let c = balls.centre(b).iter().map(|v| v * v).sum::<f64>().sqrt();
                up(up(c) + balls.radius(b)) * (1.0 + 4.0 * (x.cols as f64 + 4.0) * U)
            })
            .collect();
        Slabs {
            ranges,
            norms,
            d: x.cols,
        }
    }
}

impl Slabs {
    /// Lower bounds on the distance from `p` to every row of each block
    /// (`out[b]`, scaled by `scale`, which is 1 except for the tests' wrong
    /// bound): the largest distance from `p`'s projection to the block's
    /// range over the splits above it, less the rounding of both projections.
    pub(crate) fn point_gaps<T: Real>(
        &self,
        tree: &BlockTree,
        p: &[T],
        scale: f64,
        out: &mut [f64],
    ) {
        let d = self.d as f64;
        let pn = p
            .iter()
            .map(|v| v.to_f64() * v.to_f64())
            .sum::<f64>()
            .sqrt();
        let pn = pn * (1.0 + 4.0 * (d + 4.0) * U);
        // Each projection is within 2 (d + 4) u |row| |dir| of the exact one.
        let coef = 2.0 * (d + 4.0) * U;
        let shrink = 1.0 - 8.0 * (d + 4.0) * U;
        let mut projs = Vec::new();
        self.walk(&tree.root, 0, tree.leaf, p, &mut projs, &mut |b, projs| {
            let mut g = 0.0f64;
            for (&v, &(lo, hi, norm)) in projs.iter().zip(&self.ranges[b]) {
                let off = if v < lo {
                    lo - v
                } else if v > hi {
                    v - hi
                } else {
                    0.0
                };
                g = g.max(off / norm);
            }
            let slack = coef * (pn + self.norms[b]) + TINY;
            out[b] = ((g * shrink - slack) * scale).max(0.0);
        });
    }

    /// Calls `leaf(block, projections of p on the splits above it)` for
    /// every block, each projection computed once.
    fn walk<T: Real>(
        &self,
        node: &Node,
        offset: usize,
        leaf_rows: usize,
        p: &[T],
        projs: &mut Vec<f64>,
        leaf: &mut dyn FnMut(usize, &[f64]),
    ) {
        match node {
            Node::Leaf => leaf(offset / leaf_rows, projs),
            Node::Split(s) => {
                projs.push(dot_row(p, &s.dir));
                self.walk(&s.lo, offset, leaf_rows, p, projs, leaf);
                self.walk(&s.hi, offset + s.left, leaf_rows, p, projs, leaf);
                projs.pop();
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
                slabs.point_gaps(&tree, p, 1.0, &mut gaps);
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
