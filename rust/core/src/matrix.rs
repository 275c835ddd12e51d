//! The validated input view every kernel takes, and the checks of the
//! arguments that come with it (labels, shapes).

use rayon::prelude::*;

use crate::engine::{dispatch, widest, Kernel};
use crate::error::{CoreError, Result};
use crate::real::Real;

/// Passes over at most this many values run on the calling thread: handing
/// them to the pool (a wake-up per worker) costs more than the pass.
pub(crate) const SERIAL_LIMIT: usize = 1 << 16;
/// The same for the bit scans (finite check, max |x|), which take well under
/// a nanosecond per value: from a thread outside the pool the hand-off
/// alone costs tens of microseconds.
pub(crate) const SCAN_SERIAL_LIMIT: usize = 1 << 19;

/// One more than the most rows a matrix may have.
pub const MAX_ROWS: usize = u32::MAX as usize;

/// A borrowed row-major matrix, checked once: not empty, of the stated
/// shape, every value finite. It records its largest magnitude, which the
/// power-of-two rescale needs, from the same scan.
///
/// Every field is private (read through `rows()`, `cols()`, `data()`), so
/// a `Matrix` exists only through [`Matrix::new`].
#[derive(Debug, Clone, Copy)]
pub struct Matrix<'a, T> {
    data: &'a [T],
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    max_abs: f64,
}

impl<'a, T: Real> Matrix<'a, T> {
    /// Checks the shape and that every value is finite.
    pub fn new(data: &'a [T], rows: usize, cols: usize, arg: &'static str) -> Result<Self> {
        if rows == 0 || cols == 0 {
            return Err(CoreError::Empty { arg });
        }
        // Row indices are u32 in the kernels, u32::MAX their padding.
        if rows >= MAX_ROWS {
            return Err(CoreError::InvalidValue {
                arg,
                detail: format!(
                    "has {rows} rows; at most {} are supported (indices are 32-bit)",
                    MAX_ROWS - 1
                ),
            });
        }
        if data.len() != rows * cols {
            return Err(CoreError::Shape {
                arg,
                detail: format!("buffer of {} values is not {rows} x {cols}", data.len()),
            });
        }
        let bits = max_magnitude_bits(data);
        if bits >= T::INFINITY_BITS {
            return Err(CoreError::NonFinite { arg });
        }
        Ok(Matrix {
            data,
            rows,
            cols,
            max_abs: T::from_magnitude_bits(bits),
        })
    }

    #[inline(always)]
    pub fn row(&self, i: usize) -> &'a [T] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }

    /// The number of rows.
    #[inline(always)]
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The number of columns (the dimension).
    #[inline(always)]
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The values, row-major.
    #[inline(always)]
    pub fn data(&self) -> &'a [T] {
        self.data
    }

    /// The largest |value|.
    #[inline(always)]
    pub(crate) fn max_abs(&self) -> f64 {
        self.max_abs
    }
}

/// Whether every value is finite (neither NaN nor infinite).
pub fn finite<T: Real>(data: &[T]) -> bool {
    let all_finite = |v: &[T]| scan_bits(v) < T::INFINITY_BITS;
    if data.len() <= SCAN_SERIAL_LIMIT {
        all_finite(data)
    } else {
        data.par_chunks(1 << 14).all(all_finite)
    }
}

/// The largest magnitude bit pattern of `data` ([`Real::max_magnitude_bits`]),
/// in parallel when large.
fn max_magnitude_bits<T: Real>(data: &[T]) -> u64 {
    if data.len() <= SCAN_SERIAL_LIMIT {
        scan_bits(data)
    } else {
        data.par_chunks(1 << 14)
            .map(scan_bits)
            .reduce(|| 0, u64::max)
    }
}

/// [`Real::max_magnitude_bits`] compiled for the widest SIMD path (x86-64's
/// baseline has no unsigned 32-bit maximum).
fn scan_bits<T: Real>(values: &[T]) -> u64 {
    struct Scan<'a, T>(&'a [T]);
    impl<T: Real> Kernel for Scan<'_, T> {
        type Output = u64;
        #[inline(always)]
        fn run<const FMA: bool>(self) -> u64 {
            T::max_magnitude_bits(self.0)
        }
    }
    dispatch(widest::SCAN, Scan(values))
}

/// Checks that `labels` has one entry per row of the matrix named `of`.
pub(crate) fn check_labels(labels: &[i64], rows: usize, arg: &'static str, of: &str) -> Result<()> {
    if labels.len() != rows {
        return Err(CoreError::Shape {
            arg,
            detail: format!("has {} entries but {of} has {rows} rows", labels.len()),
        });
    }
    Ok(())
}

/// Checks that two matrices have the same number of columns.
pub(crate) fn check_same_dim<T>(x: &Matrix<T>, y: &Matrix<T>) -> Result<()> {
    if x.cols != y.cols {
        return Err(CoreError::Shape {
            arg: "Y",
            detail: format!("has {} features but X has {}", y.cols, x.cols),
        });
    }
    Ok(())
}

/// Maps labels of both sets to dense codes `0..k` (equal labels, equal codes).
pub(crate) fn encode_labels(a: &[i64], b: Option<&[i64]>) -> (Vec<u32>, Vec<u32>) {
    let mut uniq: Vec<i64> = a.iter().chain(b.unwrap_or(&[]).iter()).copied().collect();
    let serial = uniq.len() <= SERIAL_LIMIT / 8;
    if serial {
        uniq.sort_unstable();
    } else {
        uniq.par_sort_unstable();
    }
    uniq.dedup();
    let code = |v: &i64| uniq.binary_search(v).expect("label present") as u32;
    let map = |v: &[i64]| -> Vec<u32> {
        if serial {
            v.iter().map(code).collect()
        } else {
            v.par_iter().map(code).collect()
        }
    };
    (map(a), b.map_or_else(Vec::new, map))
}
