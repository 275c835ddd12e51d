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
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if simd_level() == Simd::Avx512 && a.len() == b.len() && out.len() >= a.len() {
        done = a.len() / LANES * LANES;
        // SAFETY: the three slices hold `done` values; the CPU has AVX-512F
        // (checked at run time); T is f32 or f64.
        unsafe { wide::add_scaled_diff(out.as_mut_ptr(), a.as_ptr(), b.as_ptr(), c, done) };
    }
    for ((o, u), v) in out[done..].iter_mut().zip(&a[done..]).zip(&b[done..]) {
        *o += c * (u.to_f64() - v.to_f64());
    }
}

/// `sum (a_k - b_k)^2` in f64, in the fixed order every exact distance
/// of the crate uses (so equal sums are equal bits everywhere).
#[inline(always)]
pub(crate) fn diff_sq_sum<T: Real>(a: &[T], b: &[T]) -> f64 {
    #[cfg(target_arch = "x86_64")]
    if simd_level() == Simd::Avx512 && a.len() == b.len() {
        // The compiler vectorises the f32 -> f64 lanes poorly by itself.
        let full = a.len() / LANES * LANES;
        // SAFETY: both slices hold `full` values; the CPU has AVX-512F
        // (checked at run time); T is f32 or f64.
        let acc = unsafe { wide::lane_sums(a.as_ptr(), b.as_ptr(), full) };
        return finish_lanes(acc, &a[full..], &b[full..], |u, v| u.to_f64() - v.to_f64());
    }
    sq_diff_sum(a, b, |u, v| u.to_f64() - v.to_f64())
}

/// Partial sums: the adds form `LANES` independent chains, not one.
const LANES: usize = 16;

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

#[cfg(target_arch = "x86_64")]
mod wide {
    use std::arch::x86_64::*;

    use super::LANES;
    use crate::real::Real;
    use crate::tile::is_f32;

    /// Values `p[0..16]` (f32 or f64) as two registers of 8 f64.
    ///
    /// # Safety
    /// `p` holds 16 values of `T`, f32 or f64; the CPU has AVX-512F.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn load16<T: Real>(p: *const T) -> (__m512d, __m512d) {
        if is_f32::<T>() {
            let bits = _mm512_castps_si512(_mm512_loadu_ps(p.cast()));
            let lo = _mm256_castsi256_ps(_mm512_castsi512_si256(bits));
            let hi = _mm256_castsi256_ps(_mm512_extracti64x4_epi64::<1>(bits));
            (_mm512_cvtps_pd(lo), _mm512_cvtps_pd(hi))
        } else {
            let p = p.cast::<f64>();
            (_mm512_loadu_pd(p), _mm512_loadu_pd(p.add(8)))
        }
    }

    /// `out[k] += c * (a[k] - b[k])` in f64 for k < n (multiply then add).
    ///
    /// # Safety
    /// The three pointers hold `n` values, `n` a multiple of `LANES`, `T` is
    /// f32 or f64; the CPU has AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn add_scaled_diff<T: Real>(
        out: *mut f64,
        a: *const T,
        b: *const T,
        c: f64,
        n: usize,
    ) {
        let c = _mm512_set1_pd(c);
        for k in (0..n).step_by(LANES) {
            let ((u0, u1), (v0, v1)) = (load16(a.add(k)), load16(b.add(k)));
            for (o, t) in [
                (out.add(k), _mm512_sub_pd(u0, v0)),
                (out.add(k + 8), _mm512_sub_pd(u1, v1)),
            ] {
                _mm512_storeu_pd(o, _mm512_add_pd(_mm512_loadu_pd(o), _mm512_mul_pd(c, t)));
            }
        }
    }

    /// Lane l: the sum over the chunks c of `(a - b)^2` at `LANES c + l`, in
    /// f64, multiply then add (the portable loop's operations, so its bits).
    ///
    /// # Safety
    /// `a` and `b` hold `n` values, `n` a multiple of `LANES`, `T` is f32 or
    /// f64; the CPU has AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn lane_sums<T: Real>(a: *const T, b: *const T, n: usize) -> [f64; LANES] {
        let (mut lo, mut hi) = (_mm512_setzero_pd(), _mm512_setzero_pd());
        for c in (0..n).step_by(LANES) {
            let ((u0, u1), (v0, v1)) = (load16(a.add(c)), load16(b.add(c)));
            let (t0, t1) = (_mm512_sub_pd(u0, v0), _mm512_sub_pd(u1, v1));
            lo = _mm512_add_pd(lo, _mm512_mul_pd(t0, t0));
            hi = _mm512_add_pd(hi, _mm512_mul_pd(t1, t1));
        }
        let mut out = [0.0f64; LANES];
        _mm512_storeu_pd(out.as_mut_ptr(), lo);
        _mm512_storeu_pd(out.as_mut_ptr().add(8), hi);
        out
    }
}
