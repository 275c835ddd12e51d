//! Thickness (minimum width, Definition 3 of seed paper 001) of a planar
//! point set: convex hull by the monotone chain, then rotating calipers.
//! The minimum width of a convex polygon is attained with one side flush
//! against a hull edge, so the O(h) sweep over edges is exact.

use crate::error::{CoreError, Result};
use crate::matrix::Matrix;
use crate::real::Real;
use crate::scale::Pow2;

/// The minimum width, the unit direction along which it is measured, the
/// hull edge `(i, j)` (rows of the input) lying on one supporting line and
/// the row `k` touching the other.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Width {
    pub value: f64,
    pub direction: [f64; 2],
    pub edge: (usize, usize),
    pub vertex: usize,
}

type P = [f64; 2];

#[inline]
fn cross(o: P, a: P, b: P) -> f64 {
    (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])
}

/// Indices of the hull vertices in counter-clockwise order, collinear points
/// dropped; starts at the lowest (x, y) row, lowest index among duplicates.
fn hull(pts: &[P]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..pts.len()).collect();
    order.sort_by(|&a, &b| {
        pts[a][0]
            .total_cmp(&pts[b][0])
            .then(pts[a][1].total_cmp(&pts[b][1]))
            .then(a.cmp(&b))
    });
    order.dedup_by(|b, a| pts[*a] == pts[*b]);
    if order.len() < 3 {
        return order;
    }
    let mut h: Vec<usize> = Vec::with_capacity(2 * order.len());
    for pass in 0..2 {
        let start = h.len();
        let seq: Box<dyn Iterator<Item = &usize>> = if pass == 0 {
            Box::new(order.iter())
        } else {
            Box::new(order.iter().rev())
        };
        for &i in seq {
            while h.len() >= start + 2
                && cross(pts[h[h.len() - 2]], pts[h[h.len() - 1]], pts[i]) <= 0.0
            {
                h.pop();
            }
            h.push(i);
        }
        h.pop(); // the last point of each chain starts the other
    }
    h
}

/// Exact minimum width of the rows of an N x 2 matrix (0 for fewer than
/// three non-collinear rows, with the direction normal to their line).
pub fn min_width_2d<T: Real>(a: &Matrix<T>) -> Result<Width> {
    if a.cols != 2 {
        return Err(CoreError::Shape {
            arg: "A",
            detail: format!(
                "the exact thickness is for 2-D points, got {} columns",
                a.cols
            ),
        });
    }
    let mut pts: Vec<P> = (0..a.rows)
        .map(|i| [a.row(i)[0].to_f64(), a.row(i)[1].to_f64()])
        .collect();
    // Cross products are quadratic: divide by an exact power of two when
    // they could overflow or underflow, and scale the width back.
    let amax = pts.iter().flatten().fold(0.0f64, |m, v| m.max(v.abs()));
    // An exact power of two even for subnormal data (`2f64.powi(-1030)` is 0).
    let s = if amax > 0.0 && !(2f64.powi(-200)..2f64.powi(200)).contains(&amax) {
        Pow2(amax.log2().floor() as i32)
    } else {
        Pow2::ONE
    };
    if !s.is_one() {
        pts.iter_mut().flatten().for_each(|v| *v = *v / s);
    }
    let h = hull(&pts);
    let m = h.len();
    if m < 3 {
        let (i, j) = (h[0], *h.last().expect("at least one row"));
        let (dx, dy) = (pts[j][0] - pts[i][0], pts[j][1] - pts[i][1]);
        let len = dx.hypot(dy);
        let direction = if len > 0.0 {
            [-dy / len, dx / len]
        } else {
            [1.0, 0.0]
        };
        return Ok(Width {
            value: 0.0,
            direction,
            edge: (i, j),
            vertex: i,
        });
    }
    let mut best: Option<Width> = None;
    let mut k = 1;
    for e in 0..m {
        let (p, q) = (pts[h[e]], pts[h[(e + 1) % m]]);
        // Farthest vertex from the edge's line: the area q-p-x is unimodal
        // around a convex polygon, so the caliper only moves forward.
        while cross(p, q, pts[h[(k + 1) % m]]) > cross(p, q, pts[h[k % m]]) {
            k += 1;
        }
        let (dx, dy) = (q[0] - p[0], q[1] - p[1]);
        let len = dx.hypot(dy);
        let value = cross(p, q, pts[h[k % m]]) / len;
        if best.is_none_or(|b| value < b.value) {
            best = Some(Width {
                value,
                direction: [-dy / len, dx / len],
                edge: (h[e], h[(e + 1) % m]),
                vertex: h[k % m],
            });
        }
    }
    let w = best.expect("a polygon has edges");
    Ok(Width {
        value: w.value * s,
        ..w
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnormal_points_have_their_exact_width() {
        // A 3 x 1 rectangle and a point inside, times 2^-1070 (exact).
        let t = 2f64.powi(-535) * 2f64.powi(-535);
        let pts = [0.0, 0.0, 3.0, 0.0, 3.0, 1.0, 0.0, 1.0, 1.0, 0.5].map(|v| v * t);
        let w = min_width_2d(&Matrix::new(&pts, 5, 2, "A").unwrap()).unwrap();
        assert_eq!(w.value, t);
    }
}
