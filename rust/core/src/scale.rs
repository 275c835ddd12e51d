//! Exact power-of-two rescaling, so that inputs whose distances are
//! representable but whose squares are not (|x| ~ 2^±600 in f64, 2^±70 in
//! f32) still give exact answers: the kernels run on `x / s` with `s` a
//! power of two, and results are mapped back.

use rayon::prelude::*;

use crate::matrix::Matrix;
use crate::metric::Metric;
use crate::real::Real;

/// An exact power of two `2^e`, for any `e`: multiplying or dividing an
/// f64 by it rounds once (only where the result leaves the normal range),
/// so a product that overflows is inf and one that underflows is 0 or the
/// correctly rounded subnormal, never NaN (`2f64.powi(-1024)` is 0, and a
/// squared scale can overflow where the scale does not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pow2(pub(crate) i32);

impl Pow2 {
    pub(crate) const ONE: Pow2 = Pow2(0);

    pub(crate) fn is_one(self) -> bool {
        self.0 == 0
    }
}

/// `2^e` as an f64 for `e` in -1074..=1023.
fn pow2_f64(e: i32) -> f64 {
    debug_assert!((-1074..=1023).contains(&e));
    if e >= -1022 {
        f64::from_bits(((e + 1023) as u64) << 52)
    } else {
        f64::from_bits(1u64 << (e + 1074))
    }
}

/// The binary exponent of a normal f64 (`floor(log2 |v|)`), -1023 for 0
/// and subnormals.
fn exponent(v: f64) -> i32 {
    ((v.to_bits() >> 52) & 0x7ff) as i32 - 1023
}

/// `v * 2^e`, rounded once: every step but the last is exact.
pub(crate) fn mul_pow2(mut v: f64, mut e: i32) -> f64 {
    while e != 0 && v != 0.0 && v.is_finite() {
        let step = if e > 0 {
            e.min(1023)
        } else {
            // Down as far as v stays normal (exact); then one rounding step.
            let room = exponent(v) + 1022;
            if room > 0 {
                e.max(-room).max(-1022)
            } else {
                e.max(-1074)
            }
        };
        // After a rounding step e is 0, or v is 0 (it was below 2^-1021).
        v *= pow2_f64(step);
        e -= step;
    }
    v
}

impl std::ops::Mul<Pow2> for f64 {
    type Output = f64;
    #[inline]
    fn mul(self, p: Pow2) -> f64 {
        if p.is_one() {
            self
        } else {
            mul_pow2(self, p.0)
        }
    }
}

impl std::ops::Div<Pow2> for f64 {
    type Output = f64;
    #[inline]
    fn div(self, p: Pow2) -> f64 {
        self * Pow2(-p.0)
    }
}

impl std::ops::MulAssign<Pow2> for f64 {
    #[inline]
    fn mul_assign(&mut self, p: Pow2) {
        *self = *self * p;
    }
}

impl std::ops::Div for Pow2 {
    type Output = Pow2;
    // Dividing powers of two subtracts their exponents.
    #[allow(clippy::suspicious_arithmetic_impl)]
    fn div(self, p: Pow2) -> Pow2 {
        Pow2(self.0 - p.0)
    }
}

/// The power of two to divide by (1 when the data is in the safe range:
/// max |x| within 2^±(emax/4), where squares and their sums stay normal).
pub(crate) fn pow2_scale<T: Real>(ms: &[&Matrix<T>]) -> Pow2 {
    // Recorded by `Matrix::new` (finite, as it checked).
    let amax = ms.iter().map(|m| m.max_abs()).fold(0.0, f64::max);
    let limit = T::MAX_FINITE.log2().floor() / 4.0;
    if amax == 0.0 || (amax.log2() > -limit && amax.log2() < limit) {
        return Pow2::ONE;
    }
    // log2 of a subnormal is exact enough: only the power's choice depends on it.
    Pow2(amax.log2().floor() as i32)
}

/// `m / s` (exact but for values that fall below the smallest normal).
pub(crate) fn divided<T: Real>(m: &Matrix<T>, s: Pow2) -> Vec<T> {
    m.data()
        .par_iter()
        .map(|v| T::from_f64(v.to_f64() / s))
        .collect()
}

/// How a metric's distances scale when points are multiplied by `s`.
pub(crate) fn distance_factor(metric: Metric, s: Pow2) -> Pow2 {
    match metric {
        Metric::Euclidean => s,
        Metric::SqEuclidean => Pow2(2 * s.0),
        Metric::Cosine => Pow2::ONE,
    }
}

/// Runs `f` on `x` (and `y`) divided by a safe power of two `s`, passing
/// `s` along so the caller can map its results back.
pub(crate) fn with_safe_scale<T: Real, R>(
    x: &Matrix<T>,
    y: Option<&Matrix<T>>,
    f: impl FnOnce(&Matrix<T>, Option<&Matrix<T>>, Pow2) -> R,
) -> R {
    let mut all = vec![x];
    all.extend(y);
    let s = pow2_scale(&all);
    if s.is_one() {
        return f(x, y, s);
    }
    let xd = divided(x, s);
    let yd = y.map(|y| divided(y, s));
    // A finite matrix divided by a power of two is finite and of the same shape.
    fn scaled<'d, T: Real>(m: &Matrix<T>, d: &'d [T]) -> Matrix<'d, T> {
        Matrix::new(d, m.rows, m.cols, "scaled").expect("a checked matrix, rescaled")
    }
    let xs = scaled(x, &xd);
    let ys = y.zip(yd.as_deref()).map(|(y, d)| scaled(y, d));
    f(&xs, ys.as_ref(), s)
}
