//! Distances and their gradients computed directly in f64 from the
//! caller's data: the reference values every fast path is checked against.

use crate::engine::{add_scaled_diff_lanes, dispatch, lane_diff_squares, widest, Kernel, LANES};
use crate::matrix::Matrix;
use crate::metric::Metric;
use crate::real::Real;
use crate::scale::Pow2;

/// Exact distances between rows of `x` and rows of `y` (possibly the same).
pub(crate) struct Exact<'a, T> {
    pub(crate) x: Matrix<'a, T>,
    pub(crate) y: Matrix<'a, T>,
    /// Row norms of x (cosine only), by which rows are divided.
    pub(crate) nx: Option<&'a [f64]>,
    pub(crate) ny: Option<&'a [f64]>,
    pub(crate) metric: Metric,
}

impl<'a, T: Real> Exact<'a, T> {
    /// Squared distance of the transformed rows. Symmetric bit for bit:
    /// `d2(i, j)` on (X, X) equals `d2(j, i)`.
    /// The same operations in the same order on every path: same bits.
    #[inline]
    pub(crate) fn d2(&self, i: usize, j: usize) -> f64 {
        struct D2<'e, 'a, T>(&'e Exact<'a, T>, usize, usize);
        impl<T: Real> Kernel for D2<'_, '_, T> {
            type Output = f64;
            #[inline(always)]
            fn run<const FMA: bool>(self) -> f64 {
                self.0.d2_impl(self.1, self.2)
            }
        }
        dispatch(widest::SUPPORT, D2(self, i, j))
    }

    #[inline(always)]
    fn d2_impl(&self, i: usize, j: usize) -> f64 {
        let (a, b) = (self.x.row(i), self.y.row(j));
        match (self.nx, self.ny) {
            (Some(nx), Some(ny)) => {
                let (s, t) = (nx[i], ny[j]);
                sq_diff_sum(a, b, |u, v| u.to_f64() / s - v.to_f64() / t)
            }
            _ => diff_sq_sum(a, b),
        }
    }

    #[inline]
    pub(crate) fn dist(&self, i: usize, j: usize) -> f64 {
        self.metric.from_d2(self.d2(i, j))
    }

    /// Adds `coef * d dist(i, j) / d x_i` to `out` (length d), given
    /// `d2(i, j)` (needed for Euclidean only; callers reuse the value of
    /// `d2(j, i)`, the same bits). The Euclidean derivative at distance 0 is
    /// taken as 0.
    /// The same operations on every path (no contraction): same bits.
    #[inline]
    pub(crate) fn add_grad_d2(
        &self,
        i: usize,
        j: usize,
        coef: f64,
        d2: Option<f64>,
        out: &mut [f64],
    ) {
        struct Grad<'e, 'a, 'o, T>(
            &'e Exact<'a, T>,
            usize,
            usize,
            f64,
            Option<f64>,
            &'o mut [f64],
        );
        impl<T: Real> Kernel for Grad<'_, '_, '_, T> {
            type Output = ();
            #[inline(always)]
            fn run<const FMA: bool>(self) {
                let Grad(e, i, j, coef, d2, out) = self;
                e.add_grad_d2_impl(i, j, coef, d2, out)
            }
        }
        dispatch(widest::SUPPORT, Grad(self, i, j, coef, d2, out))
    }

    #[inline(always)]
    fn add_grad_d2_impl(&self, i: usize, j: usize, coef: f64, d2: Option<f64>, out: &mut [f64]) {
        let (a, b) = (self.x.row(i), self.y.row(j));
        match self.metric {
            Metric::Euclidean => {
                let dist = d2.unwrap_or_else(|| self.d2(i, j)).sqrt();
                if dist > 0.0 {
                    add_scaled_diff(out, a, b, coef / dist);
                }
            }
            Metric::SqEuclidean => add_scaled_diff(out, a, b, 2.0 * coef),
            Metric::Cosine => {
                // With sa = |a|, sb = |b|: d = 1 - <a^, b^>;  d d / d a = -(b^ - <a^, b^> a^) / |a|.
                let (sa, sb) = (self.nx.unwrap()[i], self.ny.unwrap()[j]);
                let cos: f64 = a
                    .iter()
                    .zip(b)
                    .map(|(u, v)| (u.to_f64() / sa) * (v.to_f64() / sb))
                    .sum();
                let c = coef / sa;
                for ((o, u), v) in out.iter_mut().zip(a).zip(b) {
                    *o -= c * (v.to_f64() / sb - cos * (u.to_f64() / sa));
                }
            }
        }
    }
}

/// `out[k] += c * (a_k - b_k)` in f64.
#[inline(always)]
fn add_scaled_diff<T: Real>(out: &mut [f64], a: &[T], b: &[T], c: f64) {
    let done = add_scaled_diff_lanes(out, a, b, c);
    for ((o, u), v) in out[done..].iter_mut().zip(&a[done..]).zip(&b[done..]) {
        *o += c * (u.to_f64() - v.to_f64());
    }
}

/// `sum (a_k - b_k)^2` in f64, in the fixed order every exact distance
/// of the crate uses (so equal sums are equal bits everywhere).
#[inline(always)]
pub(crate) fn diff_sq_sum<T: Real>(a: &[T], b: &[T]) -> f64 {
    // The compiler vectorises the f32 -> f64 lanes poorly by itself.
    if let Some((acc, full)) = lane_diff_squares(a, b) {
        return finish_lanes(acc, &a[full..], &b[full..], |u, v| u.to_f64() - v.to_f64());
    }
    sq_diff_sum(a, b, |u, v| u.to_f64() - v.to_f64())
}

/// `sum diff(a_k, b_k)^2`: term k goes to partial sum `k % LANES`, and the
/// partial sums are added pairwise (lane l with lane l + 8, then + 4, ...).
#[inline(always)]
fn sq_diff_sum<T: Real>(a: &[T], b: &[T], diff: impl Fn(T, T) -> f64) -> f64 {
    let mut acc = [0.0f64; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (u, v) in ca.zip(cb) {
        for l in 0..LANES {
            let t = diff(u[l], v[l]);
            acc[l] += t * t;
        }
    }
    finish_lanes(acc, ra, rb, diff)
}

/// Adds the terms past the last full chunk (`ra`, `rb`) to the first
/// lanes, then the lanes pairwise.
#[inline(always)]
fn finish_lanes<T: Real>(
    mut acc: [f64; LANES],
    ra: &[T],
    rb: &[T],
    diff: impl Fn(T, T) -> f64,
) -> f64 {
    for (l, (u, v)) in ra.iter().zip(rb).enumerate() {
        let t = diff(*u, *v);
        acc[l] += t * t;
    }
    let mut half = LANES / 2;
    while half > 0 {
        for l in 0..half {
            acc[l] += acc[l + half];
        }
        half /= 2;
    }
    acc[0]
}

/// `|a - b|` where the plain sum of squares overflows or underflows: the
/// same sum on the rows divided by an exact power of two near their
/// largest magnitude, so differences cannot overflow either (near the f64
/// maximum the result is inf only when the distance itself is).
pub(crate) fn scaled_diff_norm<T: Real>(a: &[T], b: &[T]) -> f64 {
    let amax = a
        .iter()
        .chain(b)
        .map(|v| v.to_f64().abs())
        .fold(0.0, f64::max);
    if amax == 0.0 {
        return 0.0;
    }
    let s = Pow2(amax.log2().floor() as i32);
    sq_diff_sum(a, b, |u, v| u.to_f64() / s - v.to_f64() / s).sqrt() * s
}

/// Euclidean norm of `values`, scaled by the largest magnitude so that
/// no square overflows or underflows.
pub(crate) fn safe_norm(values: impl Iterator<Item = f64> + Clone) -> f64 {
    let amax = values.clone().map(f64::abs).fold(0.0, f64::max);
    if amax == 0.0 {
        return 0.0;
    }
    let n2: f64 = values.map(|v| (v / amax).powi(2)).sum();
    amax * n2.sqrt()
}
