//! Exact power-of-two rescaling, so that inputs whose distances are
//! representable but whose squares are not (|x| ~ 2^±600 in f64, 2^±70 in
//! f32) still give exact answers: the kernels run on `x / s` with `s` a
//! power of two, and results are mapped back.

use rayon::prelude::*;

use crate::matrix::Matrix;
use crate::metric::Metric;
use crate::real::Real;

/// The power of two to divide by (1 when the data is in the safe range:
/// max |x| within 2^±(emax/4), where squares and their sums stay normal).
pub(crate) fn pow2_scale<T: Real>(ms: &[&Matrix<T>]) -> f64 {
    // Recorded by `Matrix::new` (finite, as it checked).
    let amax = ms.iter().map(|m| m.max_abs()).fold(0.0, f64::max);
    let limit = T::MAX_FINITE.log2().floor() / 4.0;
    if amax == 0.0 || (amax.log2() > -limit && amax.log2() < limit) {
        return 1.0;
    }
    2f64.powi(amax.log2().floor() as i32)
}

/// `m / s` (exact but for values that fall below the smallest normal).
pub(crate) fn divided<T: Real>(m: &Matrix<T>, s: f64) -> Vec<T> {
    m.data()
        .par_iter()
        .map(|v| T::from_f64(v.to_f64() / s))
        .collect()
}

/// How a metric's distances scale when points are multiplied by `s`.
pub(crate) fn distance_factor(metric: Metric, s: f64) -> f64 {
    match metric {
        Metric::Euclidean => s,
        Metric::SqEuclidean => s * s,
        Metric::Cosine => 1.0,
    }
}

/// Runs `f` on `x` (and `y`) divided by a safe power of two `s`, passing
/// `s` along so the caller can map its results back.
pub(crate) fn with_safe_scale<T: Real, R>(
    x: &Matrix<T>,
    y: Option<&Matrix<T>>,
    f: impl FnOnce(&Matrix<T>, Option<&Matrix<T>>, f64) -> R,
) -> R {
    let mut all = vec![x];
    all.extend(y);
    let s = pow2_scale(&all);
    if s == 1.0 {
        return f(x, y, 1.0);
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
