//! Rigorous upper bounds on the isometric discrepancy `|d1 - d2|` of every
//! pair of rows drawn from two blocks I and J, as computed exactly in f64
//! (`geometry::dist`), for the pruned scan.
//!
//! - [`BallBound`]: from the blocks' balls, each embedding on its own. Cheap
//!   (O(d) per block pair) but blind to the correlation of the embeddings.
//! - [`ProjectedBound`]: projects the rows on the line through the two
//!   centres, in both embeddings at once, so that the spread the two
//!   embeddings share (a rotated, rescaled copy keeps it) cancels.
//!   O(leaf d) per block pair.

use crate::blocks::{tightening, Balls, BlockTree};
use crate::engine::{dispatch, widest, Kernel};
use crate::matrix::Matrix;
use crate::real::Real;
use crate::screen::{difference_bound_coef, difference_bound_floor};

const U: f64 = f64::EPSILON / 2.0;

/// What turns a bound on exact distances into one on the f64 ones:
/// `(core + e1 d1_max + e2 d2_max + floor) * factor`.
#[derive(Clone, Copy)]
struct SettleError {
    e1: f64,
    e2: f64,
    floor: f64,
    factor: f64,
}

impl SettleError {
    fn new(d1: usize, d2: usize) -> Self {
        SettleError {
            e1: difference_bound_coef::<f64>(d1),
            e2: difference_bound_coef::<f64>(d2),
            floor: 2.0 * difference_bound_floor::<f64>(),
            // The rounding of this bound's own few operations, with room;
            // the test knob `set_bound_tightening` makes it too tight.
            factor: (1.0 + 16.0 * f64::EPSILON) * (1.0 - tightening()),
        }
    }

    #[inline]
    fn apply(&self, core: f64, s1: f64, s2: f64) -> f64 {
        (core + self.e1 * s1 + self.e2 * s2 + self.floor) * self.factor
    }
}

/// `max(span1 - gap2, span2 - gap1)`: d1 lies in [gap1, span1], d2 in
/// [gap2, span2].
pub(crate) struct BallBound<'a> {
    pub(crate) b1: &'a Balls,
    pub(crate) b2: &'a Balls,
    err: SettleError,
}

impl<'a> BallBound<'a> {
    pub(crate) fn new(b1: &'a Balls, b2: &'a Balls, d1: usize, d2: usize) -> Self {
        BallBound {
            b1,
            b2,
            err: SettleError::new(d1, d2),
        }
    }

    /// `| |c1_i - c1_j| - |c2_i - c2_j| |`: no bound, only an estimate of the
    /// pairs' discrepancy, to visit promising block pairs first.
    pub(crate) fn estimate(&self, i: usize, j: usize) -> f64 {
        let d = |b: &Balls| {
            let (u, v) = (b.centre(i), b.centre(j));
            u.iter()
                .zip(v)
                .map(|(a, c)| (a - c) * (a - c))
                .sum::<f64>()
                .sqrt()
        };
        (d(self.b1) - d(self.b2)).abs()
    }

    #[inline]
    pub(crate) fn ub(&self, i: usize, j: usize) -> f64 {
        let (g1, s1) = (self.b1.gap(i, self.b1, j), self.b1.span(i, self.b1, j));
        let (g2, s2) = (self.b2.gap(i, self.b2, j), self.b2.span(i, self.b2, j));
        self.err.apply((s1 - g2).max(s2 - g1), s1, s2)
    }
}

/// One embedding's view for [`ProjectedBound`].
struct Side<'a, T> {
    x: &'a Matrix<'a, T>,
    balls: &'a Balls,
    /// `|x_i - c|^2` (c: the centre of i's block), by tree position.
    sq: Vec<f64>,
    /// Absolute error allowed for one projection.
    dp: f64,
    /// Absolute error allowed for one `|u|^2 - p^2`.
    dperp: f64,
}

/// The projection of block pair (I, J) in one embedding.
struct Projection {
    /// |c_I - c_J| (to within `dp`).
    norm: f64,
    /// The rows' offsets from their centres along `c_I - c_J`.
    p_i: Vec<f64>,
    p_j: Vec<f64>,
    /// Bounds on the offsets' parts across it (I's largest plus J's).
    across: f64,
}

/// For i in I, j in J, u the offsets from the centres, C = c_I - c_J and
/// n = C / |C|: x_i - x_j = C + u_i - u_j, whose part along n is
/// L = |C| + p_i - p_j (p = u.n) and whose part across is at most
/// W = max_I |u_perp| + max_J |u_perp|. So L <= |x_i - x_j| <=
/// L + W^2 / (2 L_min) when L_min > 0, and with q = p1 - p2:
/// d1 - d2 <= |C1| - |C2| + q_i - q_j + W1^2 / (2 L1_min), and symmetrically.
pub(crate) struct ProjectedBound<'a, T> {
    tree: &'a BlockTree,
    s1: Side<'a, T>,
    s2: Side<'a, T>,
    err: SettleError,
    /// Absolute slack for the sums of projections.
    slack: f64,
}

impl<'a, T: Real> ProjectedBound<'a, T> {
    pub(crate) fn new(
        tree: &'a BlockTree,
        x1: &'a Matrix<'a, T>,
        x2: &'a Matrix<'a, T>,
        b1: &'a Balls,
        b2: &'a Balls,
    ) -> Self {
        let (s1, s2) = (side(tree, x1, b1), side(tree, x2, b2));
        let slack = 8.0 * (s1.dp + s2.dp);
        ProjectedBound {
            tree,
            s1,
            s2,
            err: SettleError::new(x1.cols, x2.cols),
            slack,
        }
    }

    /// The bound for blocks `i != j`, or +inf where the projection proves
    /// nothing (the blocks overlap along the line of their centres).
    pub(crate) fn ub(&self, i: usize, j: usize, spans: (f64, f64)) -> f64 {
        let (Some(a), Some(b)) = (self.project(&self.s1, i, j), self.project(&self.s2, i, j))
        else {
            return f64::INFINITY;
        };
        let q = |k: usize, on_i: bool| {
            if on_i {
                a.p_i[k] - b.p_i[k]
            } else {
                a.p_j[k] - b.p_j[k]
            }
        };
        let range = |n: usize, on_i: bool| {
            (0..n).fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), k| {
                let v = q(k, on_i);
                (lo.min(v), hi.max(v))
            })
        };
        let ((qi_lo, qi_hi), (qj_lo, qj_hi)) =
            (range(a.p_i.len(), true), range(a.p_j.len(), false));
        let curve = |p: &Projection, dp: f64| -> Option<f64> {
            let lo = p.p_i.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = p.p_j.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let l_min = (p.norm - 4.0 * dp) + lo - hi;
            (l_min > 0.0).then(|| p.across * p.across / (2.0 * l_min) * (1.0 + 8.0 * U))
        };
        let (Some(c1), Some(c2)) = (curve(&a, self.s1.dp), curve(&b, self.s2.dp)) else {
            return f64::INFINITY;
        };
        let up1 = a.norm - b.norm + qi_hi - qj_lo + c1;
        let up2 = b.norm - a.norm + qj_hi - qi_lo + c2;
        self.err.apply(
            up1.max(up2) * (1.0 + 8.0 * U) + self.slack,
            spans.0,
            spans.1,
        )
    }

    fn project(&self, s: &Side<T>, i: usize, j: usize) -> Option<Projection> {
        let (ci, cj) = (s.balls.centre(i), s.balls.centre(j));
        let dir: Vec<f64> = ci.iter().zip(cj).map(|(a, b)| a - b).collect();
        let norm = dir.iter().map(|v| v * v).sum::<f64>().sqrt();
        if norm <= 0.0 || norm.is_nan() {
            return None;
        }
        let n: Vec<f64> = dir.iter().map(|v| v / norm).collect();
        let offsets = |b: usize, c: &[f64]| -> (Vec<f64>, f64) {
            let cn = dot(c.iter().copied(), &n);
            let first = self.tree.starts[b];
            let mut across2 = 0.0f64;
            let p: Vec<f64> = self
                .tree
                .rows(b)
                .iter()
                .enumerate()
                .map(|(k, &r)| {
                    let p = dispatch(widest::SUPPORT, RowDot(s.x.row(r as usize), &n)) - cn;
                    across2 = across2.max(s.sq[first + k] - p * p);
                    p
                })
                .collect();
            (p, (across2.max(0.0) + s.dperp).sqrt() * (1.0 + 4.0 * U))
        };
        let (p_i, wi) = offsets(i, ci);
        let (p_j, wj) = offsets(j, cj);
        Some(Projection {
            norm,
            p_i,
            p_j,
            // Plus the part of C across the computed direction.
            across: (wi + wj + 2.0 * s.dp) * (1.0 + 4.0 * U),
        })
    }
}

/// `row . n` in f64 with eight partial sums (vectorised; the error bound
/// `(d + 2) u sum |row_k n_k|` holds for any order of the sum).
struct RowDot<'a, T>(&'a [T], &'a [f64]);

impl<T: Real> Kernel for RowDot<'_, T> {
    type Output = f64;
    #[inline(always)]
    fn run<const FMA: bool>(self) -> f64 {
        let mut acc = [0.0f64; 8];
        let (ca, cn) = (self.0.chunks_exact(8), self.1.chunks_exact(8));
        let (ra, rn) = (ca.remainder(), cn.remainder());
        for (u, v) in ca.zip(cn) {
            for l in 0..8 {
                acc[l] += u[l].to_f64() * v[l];
            }
        }
        let tail: f64 = ra.iter().zip(rn).map(|(u, v)| u.to_f64() * v).sum();
        acc.iter().sum::<f64>() + tail
    }
}

fn dot(a: impl Iterator<Item = f64>, n: &[f64]) -> f64 {
    a.zip(n).map(|(u, v)| u * v).sum()
}

/// The squared offsets of one embedding and its error allowances: with M
/// bounding every |x_i| and |c|, each projection is within
/// `8 (d + 8) u M` of the exact one (the direction's own error included).
fn side<'a, T: Real>(tree: &BlockTree, x: &'a Matrix<'a, T>, balls: &'a Balls) -> Side<'a, T> {
    let d = x.cols;
    let mut sq = vec![0.0; x.rows];
    let mut m = 0.0f64;
    for b in 0..tree.blocks() {
        let c = balls.centre(b);
        m = m.max(c.iter().map(|v| v * v).sum::<f64>().sqrt());
        for (k, &r) in tree.rows(b).iter().enumerate() {
            let row = x.row(r as usize);
            sq[tree.starts[b] + k] = row
                .iter()
                .zip(c)
                .map(|(v, w)| (v.to_f64() - w) * (v.to_f64() - w))
                .sum();
            m = m.max(row.iter().map(|v| v.to_f64().powi(2)).sum::<f64>().sqrt());
        }
    }
    // |x| and |c| at most m (rounded up), |u| at most 2m.
    let m = 2.0 * m * (1.0 + (d as f64 + 8.0) * U) + f64::MIN_POSITIVE;
    let dp = 8.0 * (d as f64 + 8.0) * U * m;
    Side {
        x,
        balls,
        sq,
        dp,
        // |u|^2 (relative error (d + 4) u) minus p^2 (p within dp).
        dperp: 4.0 * (d as f64 + 8.0) * U * m * m + 4.0 * m * dp + dp * dp,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::dist;
    use crate::isometric::{isometric_error_with, IsoMode, IsoOptions};

    fn lcg(seed: &mut u64) -> f64 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*seed >> 11) as f64) / ((1u64 << 53) as f64) - 0.5
    }

    /// `n` rows in `classes` tight clusters, and a rescaled, shifted, noisy
    /// copy with its coordinates reversed (an isometry but for the scale).
    fn clustered(
        n: usize,
        d: usize,
        classes: usize,
        offset: f64,
        seed: u64,
    ) -> (Vec<f64>, Vec<f64>) {
        let mut s = seed;
        let centres: Vec<f64> = (0..classes * d).map(|_| 4.0 * lcg(&mut s)).collect();
        let mut x1 = Vec::with_capacity(n * d);
        for i in 0..n {
            let c = (i * 7919) % classes;
            x1.extend((0..d).map(|k| offset + centres[c * d + k] + 1e-2 * lcg(&mut s)));
        }
        let x2: Vec<f64> = (0..n)
            .flat_map(|i| (0..d).rev().map(move |k| (i, k)))
            .map(|(i, k)| 1.1 * x1[i * d + k] - 3.0 * offset)
            .map(|v| v + 1e-4 * lcg(&mut s))
            .collect();
        (x1, x2)
    }

    fn check_bounds<T: Real>(x1: &Matrix<T>, x2: &Matrix<T>, leaf: usize) {
        let tree = BlockTree::build(&[x1, x2], leaf);
        let (b1, b2) = (tree.balls(x1), tree.balls(x2));
        let ball = BallBound::new(&b1, &b2, x1.cols, x2.cols);
        let proj = ProjectedBound::new(&tree, x1, x2, &b1, &b2);
        let mut refined = 0;
        for i in 0..tree.blocks() {
            for j in i..tree.blocks() {
                let spans = (b1.span(i, &b1, j), b2.span(i, &b2, j));
                let p = if i == j {
                    f64::INFINITY
                } else {
                    proj.ub(i, j, spans)
                };
                refined += usize::from(p < ball.ub(i, j));
                for &a in tree.rows(i) {
                    for &b in tree.rows(j) {
                        let (a, b) = (a as usize, b as usize);
                        let e = (dist(x1, a, x1, b) - dist(x2, a, x2, b)).abs();
                        assert!(e <= ball.ub(i, j), "ball {e} > {}", ball.ub(i, j));
                        assert!(e <= p, "projected {e} > {p} ({i}, {j})");
                    }
                }
            }
        }
        // Tight clusters: the projected bound must be the sharper one.
        assert!(refined > 0);
    }

    #[test]
    fn both_bounds_hold_for_every_pair() {
        for offset in [0.0, 1e6] {
            let (v1, v2) = clustered(256, 5, 6, offset, 1);
            let x1 = Matrix::new(&v1, 256, 5, "x1").unwrap();
            let x2 = Matrix::new(&v2, 256, 5, "x2").unwrap();
            check_bounds(&x1, &x2, 16);
            let (f1, f2): (Vec<f32>, Vec<f32>) = (
                v1.iter().map(|&v| v as f32).collect(),
                v2.iter().map(|&v| v as f32).collect(),
            );
            let y1 = Matrix::new(&f1, 256, 5, "x1").unwrap();
            let y2 = Matrix::new(&f2, 256, 5, "x2").unwrap();
            check_bounds(&y1, &y2, 8);
        }
    }

    #[test]
    fn pruned_scan_equals_the_brute_one() {
        let (v1, v2) = clustered(3000, 8, 10, 0.0, 2);
        let x1 = Matrix::new(&v1, 3000, 8, "x1").unwrap();
        let x2 = Matrix::new(&v2, 3000, 8, "x2").unwrap();
        let run = |mode| isometric_error_with(&x1, &x2, IsoOptions { mode, leaf: 32 }).unwrap();
        let (pruned, stats) = run(IsoMode::Pruned);
        let (brute, none) = run(IsoMode::Unpruned);
        assert_eq!(pruned, brute);
        assert_eq!(none.block_pairs, 0);
        assert!(stats.scanned * 4 < stats.block_pairs, "{stats:?}");
    }
}
