//! The floating-point element types the kernels run on.

use std::fmt::Debug;
use std::ops::{Add, Mul, Sub};

/// An element type of the embeddings: `f32` or `f64`.
pub trait Real:
    Copy
    + Send
    + Sync
    + Debug
    + PartialOrd
    + Default
    + 'static
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
{
    const ZERO: Self;
    const TWO: Self;
    const INFINITY: Self;
    const NAN: Self;
    /// Unit roundoff (half the machine epsilon).
    const UNIT_ROUNDOFF: f64;
    /// Smallest positive normal value, as f64.
    const MIN_NORMAL: f64;
    /// Largest finite value, as f64.
    const MAX_FINITE: f64;
    fn from_f64(v: f64) -> Self;
    fn to_f64(self) -> f64;
    /// Fused multiply-add `self * a + b`, rounded once on every path.
    fn fused_mul_add(self, a: Self, b: Self) -> Self;
    /// The largest magnitude bit pattern (sign cleared) of `values`, 0 when
    /// empty: such patterns order like the magnitudes, with the non-finite
    /// ones above every finite one, and an integer maximum vectorises.
    fn max_magnitude_bits(values: &[Self]) -> u64;
    /// Bit pattern of +infinity.
    const INFINITY_BITS: u64;
    /// The value of a magnitude bit pattern, as f64.
    fn from_magnitude_bits(bits: u64) -> f64;
}

impl Real for f32 {
    const ZERO: Self = 0.0;
    const TWO: Self = 2.0;
    const INFINITY: Self = f32::INFINITY;
    const NAN: Self = f32::NAN;
    const UNIT_ROUNDOFF: f64 = f32::EPSILON as f64 / 2.0;
    const MIN_NORMAL: f64 = f32::MIN_POSITIVE as f64;
    const MAX_FINITE: f64 = f32::MAX as f64;
    #[inline(always)]
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn fused_mul_add(self, a: Self, b: Self) -> Self {
        self.mul_add(a, b)
    }
    const INFINITY_BITS: u64 = f32::INFINITY.to_bits() as u64;
    #[inline(always)]
    fn max_magnitude_bits(values: &[Self]) -> u64 {
        let m = values
            .iter()
            .map(|v| v.to_bits() & !(1 << 31))
            .fold(0, u32::max);
        m as u64
    }
    #[inline(always)]
    fn from_magnitude_bits(bits: u64) -> f64 {
        f32::from_bits(bits as u32) as f64
    }
}

impl Real for f64 {
    const ZERO: Self = 0.0;
    const TWO: Self = 2.0;
    const INFINITY: Self = f64::INFINITY;
    const NAN: Self = f64::NAN;
    const UNIT_ROUNDOFF: f64 = f64::EPSILON / 2.0;
    const MIN_NORMAL: f64 = f64::MIN_POSITIVE;
    const MAX_FINITE: f64 = f64::MAX;
    #[inline(always)]
    fn from_f64(v: f64) -> Self {
        v
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self
    }
    #[inline(always)]
    fn fused_mul_add(self, a: Self, b: Self) -> Self {
        self.mul_add(a, b)
    }
    const INFINITY_BITS: u64 = f64::INFINITY.to_bits();
    #[inline(always)]
    fn max_magnitude_bits(values: &[Self]) -> u64 {
        values
            .iter()
            .map(|v| v.to_bits() & !(1 << 63))
            .fold(0, u64::max)
    }
    #[inline(always)]
    fn from_magnitude_bits(bits: u64) -> f64 {
        f64::from_bits(bits)
    }
}
