//! The AVX-512 path (AVX-512F and VL, with AVX2 and FMA).

use std::arch::x86_64::*;

use super::{is_f32, Kernel, KernelInto, LANES};
use crate::real::Real;

/// Compiles `kernel` with AVX-512F/VL, AVX2 and FMA.
///
/// # Safety
/// The CPU has those features.
#[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
pub(super) unsafe fn run<K: Kernel>(kernel: K) -> K::Output {
    kernel.run::<true>()
}

/// [`run`] for a kernel with an output slice.
///
/// # Safety
/// As for [`run`].
#[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
pub(super) unsafe fn run_into<K: KernelInto>(kernel: K, out: &mut [K::Item]) {
    kernel.run::<true>(out)
}

/// The `MR x 32` f32 product tile (fused multiply-adds in k order, as the
/// portable tile with FMA), in two 16-lane registers per row.
///
/// # Safety
/// `a` holds `MR * d` values, `b` `32 * d`, `out` `MR * 32`; the CPU has AVX-512F.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn tile_f32_x32<const MR: usize>(
    a: *const f32,
    d: usize,
    b: *const f32,
    out: *mut f32,
) {
    let mut lo = [_mm512_setzero_ps(); MR];
    let mut hi = [_mm512_setzero_ps(); MR];
    for k in 0..d {
        let b0 = _mm512_loadu_ps(b.add(k * 32));
        let b1 = _mm512_loadu_ps(b.add(k * 32 + 16));
        for r in 0..MR {
            let ar = _mm512_set1_ps(*a.add(k * MR + r));
            lo[r] = _mm512_fmadd_ps(ar, b0, lo[r]);
            hi[r] = _mm512_fmadd_ps(ar, b1, hi[r]);
        }
    }
    for r in 0..MR {
        _mm512_storeu_ps(out.add(r * 32), lo[r]);
        _mm512_storeu_ps(out.add(r * 32 + 16), hi[r]);
    }
}

/// Batch-hard's pass masks for 32 f32 columns: the same IEEE operations per
/// lane (`(na + nb) - 2 dot`, then the compares), so the same bits.
///
/// # Safety
/// Every pointer holds 32 values; the CPU has AVX-512F.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn pass_bits_f32x32<const SYM: bool>(
    dots: *const f32,
    na: f32,
    nb: *const f32,
    lab: *const u32,
    li: u32,
    thr_pos: f32,
    thr_neg: f32,
    col_pos: *const f32,
    col_neg: *const f32,
) -> (u64, u64) {
    let na = _mm512_set1_ps(na);
    let (tp, tn) = (_mm512_set1_ps(thr_pos), _mm512_set1_ps(thr_neg));
    let li = _mm512_set1_epi32(li as i32);
    let (mut row, mut col) = (0u64, 0u64);
    for h in 0..2 {
        let o = 16 * h;
        let v = squared_keys(na, nb.add(o), dots.add(o));
        let same = _mm512_cmpeq_epi32_mask(_mm512_loadu_si512(lab.add(o).cast()), li);
        let ge = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(v, tp);
        let le = _mm512_cmp_ps_mask::<_CMP_LE_OQ>(v, tn);
        row |= u64::from((same & ge) | (!same & le)) << o;
        if SYM {
            let ge = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(v, _mm512_loadu_ps(col_pos.add(o)));
            let le = _mm512_cmp_ps_mask::<_CMP_LE_OQ>(v, _mm512_loadu_ps(col_neg.add(o)));
            col |= u64::from((same & ge) | (!same & le)) << o;
        }
    }
    (row, col)
}

/// k-NN's pass masks for 32 f32 columns: `v <= thr` (row) and, with `SYM`,
/// `v <= col_thr` (columns), `v` as [`squared_keys`] (the portable loop's
/// operations per lane, so the same bits).
///
/// # Safety
/// Every pointer holds 32 values; the CPU has AVX-512F.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn knn_bits_f32x32<const SYM: bool>(
    dots: *const f32,
    na: f32,
    nb: *const f32,
    thr: f32,
    col_thr: *const f32,
) -> (u64, u64) {
    let na = _mm512_set1_ps(na);
    let thr = _mm512_set1_ps(thr);
    let (mut row, mut col) = (0u64, 0u64);
    for h in 0..2 {
        let o = 16 * h;
        let v = squared_keys(na, nb.add(o), dots.add(o));
        row |= u64::from(_mm512_cmp_ps_mask::<_CMP_LE_OQ>(v, thr)) << o;
        if SYM {
            let ct = _mm512_loadu_ps(col_thr.add(o));
            col |= u64::from(_mm512_cmp_ps_mask::<_CMP_LE_OQ>(v, ct)) << o;
        }
    }
    (row, col)
}

/// Batch-hard's squared key `(na + nb) - 2 dot` for 16 columns.
///
/// # Safety
/// `nb` and `dots` hold 16 values; the CPU has AVX-512F.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn squared_keys(na: __m512, nb: *const f32, dots: *const f32) -> __m512 {
    _mm512_sub_ps(
        _mm512_add_ps(na, _mm512_loadu_ps(nb)),
        _mm512_mul_ps(_mm512_set1_ps(2.0), _mm512_loadu_ps(dots)),
    )
}

/// The least squared key over 32 f32 columns of another label, with the
/// same per-lane operations as the portable loop.
///
/// # Safety
/// Every pointer holds 32 values; the CPU has AVX-512F.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn min_neg_f32x32(
    dots: *const f32,
    na: f32,
    nb: *const f32,
    lab: *const u32,
    li: u32,
) -> f32 {
    let na = _mm512_set1_ps(na);
    let li = _mm512_set1_epi32(li as i32);
    let mut m = _mm512_set1_ps(f32::INFINITY);
    for h in 0..2 {
        let o = 16 * h;
        let v = squared_keys(na, nb.add(o), dots.add(o));
        let other = _mm512_cmpneq_epi32_mask(_mm512_loadu_si512(lab.add(o).cast()), li);
        m = _mm512_mask_min_ps(m, other, m, v);
    }
    _mm512_reduce_min_ps(m)
}

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
