//! Distances and their gradients computed directly in f64 from the
//! caller's data: the reference values every fast path is checked against.

use crate::metric::Metric;
use crate::prep::Matrix;
use crate::real::Real;
use crate::tile::{has_avx2_fma, simd_level, Simd};

/// Exact distances between rows of `x` and rows of `y` (possibly the same).
pub struct Exact<'a, T> {
    pub x: Matrix<'a, T>,
    pub y: Matrix<'a, T>,
    /// Row norms of x (cosine only), by which rows are divided.
    pub nx: Option<&'a [f64]>,
    pub ny: Option<&'a [f64]>,
    pub metric: Metric,
}

impl<'a, T: Real> Exact<'a, T> {
    /// Squared distance of the transformed rows. Symmetric bit for bit:
    /// `d2(i, j)` on (X, X) equals `d2(j, i)`.
    #[inline]
    pub fn d2(&self, i: usize, j: usize) -> f64 {
        #[cfg(target_arch = "x86_64")]
        if simd_level() == Simd::Avx512 {
            // SAFETY: the CPU supports AVX-512F (checked at run time).
            return unsafe { self.d2_avx512(i, j) };
        }
        #[cfg(target_arch = "x86_64")]
        if has_avx2_fma() {
            // SAFETY: the CPU supports AVX2 (checked at run time).
            return unsafe { self.d2_avx2(i, j) };
        }
        self.d2_impl(i, j)
    }

    /// The same operations in the same order on wider registers: same bits.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn d2_avx2(&self, i: usize, j: usize) -> f64 {
        self.d2_impl(i, j)
    }

    /// As `d2_avx2`, on 512-bit registers.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx2")]
    unsafe fn d2_avx512(&self, i: usize, j: usize) -> f64 {
        self.d2_impl(i, j)
    }

    #[inline(always)]
    fn d2_impl(&self, i: usize, j: usize) -> f64 {
        let (a, b) = (self.x.row(i), self.y.row(j));
        let mut acc = [0.0f64; 4];
        match (self.nx, self.ny) {
            (Some(nx), Some(ny)) => {
                let (s, t) = (nx[i], ny[j]);
                sq_diff_sum(a, b, &mut acc, |u, v| u.to_f64() / s - v.to_f64() / t)
            }
            _ => return diff_sq_sum(a, b),
        }
        (acc[0] + acc[2]) + (acc[1] + acc[3])
    }

    #[inline]
    pub fn dist(&self, i: usize, j: usize) -> f64 {
        self.metric.from_d2(self.d2(i, j))
    }

    /// Adds `coef * d dist(i, j) / d x_i` to `out` (length d). The
    /// Euclidean derivative at distance 0 is taken as 0.
    pub fn add_grad(&self, i: usize, j: usize, coef: f64, out: &mut [f64]) {
        let d2 = (self.metric == Metric::Euclidean).then(|| self.d2(i, j));
        self.add_grad_d2(i, j, coef, d2, out)
    }

    /// `add_grad` given `d2(i, j)` (needed for Euclidean only; callers reuse
    /// the value of `d2(j, i)`, the same bits).
    #[inline]
    pub fn add_grad_d2(&self, i: usize, j: usize, coef: f64, d2: Option<f64>, out: &mut [f64]) {
        #[cfg(target_arch = "x86_64")]
        if simd_level() == Simd::Avx512 {
            // SAFETY: the CPU supports AVX-512F (checked at run time).
            return unsafe { self.add_grad_d2_avx512(i, j, coef, d2, out) };
        }
        #[cfg(target_arch = "x86_64")]
        if has_avx2_fma() {
            // SAFETY: the CPU supports AVX2 (checked at run time).
            return unsafe { self.add_grad_d2_avx2(i, j, coef, d2, out) };
        }
        self.add_grad_d2_impl(i, j, coef, d2, out)
    }

    /// The same operations on wider registers (no FMA contraction): same bits.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn add_grad_d2_avx2(
        &self,
        i: usize,
        j: usize,
        coef: f64,
        d2: Option<f64>,
        out: &mut [f64],
    ) {
        self.add_grad_d2_impl(i, j, coef, d2, out)
    }

    /// As `add_grad_d2_avx2`, on 512-bit registers.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx2")]
    unsafe fn add_grad_d2_avx512(
        &self,
        i: usize,
        j: usize,
        coef: f64,
        d2: Option<f64>,
        out: &mut [f64],
    ) {
        self.add_grad_d2_impl(i, j, coef, d2, out)
    }

    #[inline(always)]
    fn add_grad_d2_impl(&self, i: usize, j: usize, coef: f64, d2: Option<f64>, out: &mut [f64]) {
        let (a, b) = (self.x.row(i), self.y.row(j));
        match self.metric {
            Metric::Euclidean => {
                let dist = d2.unwrap_or_else(|| self.d2(i, j)).sqrt();
                if dist > 0.0 {
                    let c = coef / dist;
                    for ((o, u), v) in out.iter_mut().zip(a).zip(b) {
                        *o += c * (u.to_f64() - v.to_f64());
                    }
                }
            }
            Metric::SqEuclidean => {
                let c = 2.0 * coef;
                for ((o, u), v) in out.iter_mut().zip(a).zip(b) {
                    *o += c * (u.to_f64() - v.to_f64());
                }
            }
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

/// `sum (a_k - b_k)^2` in f64, in the fixed order every exact distance
/// of the crate uses (so equal sums are equal bits everywhere).
#[inline(always)]
pub(crate) fn diff_sq_sum<T: Real>(a: &[T], b: &[T]) -> f64 {
    let mut acc = [0.0f64; 4];
    sq_diff_sum(a, b, &mut acc, |u, v| u.to_f64() - v.to_f64());
    (acc[0] + acc[2]) + (acc[1] + acc[3])
}

#[inline(always)]
fn sq_diff_sum<T: Real>(a: &[T], b: &[T], acc: &mut [f64; 4], diff: impl Fn(T, T) -> f64) {
    let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (u, v) in ca.zip(cb) {
        for l in 0..4 {
            let t = diff(u[l], v[l]);
            acc[l] += t * t;
        }
    }
    for (l, (u, v)) in ra.iter().zip(rb).enumerate() {
        let t = diff(*u, *v);
        acc[l] += t * t;
    }
}
