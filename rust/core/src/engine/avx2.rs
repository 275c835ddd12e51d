//! The AVX2 + FMA path (and the SSE shuffles every x86-64 CPU has).

use std::arch::x86_64::*;

use super::{Kernel, KernelInto};

/// Compiles `kernel` with AVX2 and FMA.
///
/// # Safety
/// The CPU has AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn run<K: Kernel>(kernel: K) -> K::Output {
    kernel.run::<true>()
}

/// [`run`] for a kernel with an output slice.
///
/// # Safety
/// As for [`run`].
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn run_into<K: KernelInto>(kernel: K, out: &mut [K::Item]) {
    kernel.run::<true>(out)
}

/// Lane `l` of the result: the sum of `v[8 c + l]^2` over the `n / 8`
/// chunks, in f64, multiply then add, as the portable loop does.
///
/// # Safety
/// `v` holds `n` values, `n` a multiple of 8; the CPU has AVX2.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn lane_squares_f32(v: *const f32, n: usize) -> [f64; 8] {
    let (mut lo, mut hi) = (_mm256_setzero_pd(), _mm256_setzero_pd());
    for c in (0..n).step_by(8) {
        let x = _mm256_loadu_ps(v.add(c));
        let a = _mm256_cvtps_pd(_mm256_castps256_ps128(x));
        let b = _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(x));
        lo = _mm256_add_pd(lo, _mm256_mul_pd(a, a));
        hi = _mm256_add_pd(hi, _mm256_mul_pd(b, b));
    }
    let mut out = [0.0f64; 8];
    _mm256_storeu_pd(out.as_mut_ptr(), lo);
    _mm256_storeu_pd(out.as_mut_ptr().add(4), hi);
    out
}

/// `dst[k * dst_stride + r] = src[r * src_stride + k]` for r, k in 0..4.
///
/// # Safety
/// Both 4 x 4 blocks are in bounds.
#[inline(always)]
pub(super) unsafe fn transpose4_f32(
    src: *const f32,
    src_stride: usize,
    dst: *mut f32,
    dst_stride: usize,
) {
    let r0 = _mm_loadu_ps(src);
    let r1 = _mm_loadu_ps(src.add(src_stride));
    let r2 = _mm_loadu_ps(src.add(2 * src_stride));
    let r3 = _mm_loadu_ps(src.add(3 * src_stride));
    let (t0, t1) = (_mm_unpacklo_ps(r0, r1), _mm_unpacklo_ps(r2, r3));
    let (t2, t3) = (_mm_unpackhi_ps(r0, r1), _mm_unpackhi_ps(r2, r3));
    _mm_storeu_ps(dst, _mm_movelh_ps(t0, t1));
    _mm_storeu_ps(dst.add(dst_stride), _mm_movehl_ps(t1, t0));
    _mm_storeu_ps(dst.add(2 * dst_stride), _mm_movelh_ps(t2, t3));
    _mm_storeu_ps(dst.add(3 * dst_stride), _mm_movehl_ps(t3, t2));
}
