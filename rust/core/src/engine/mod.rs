//! The kernel engine: which SIMD code path runs, how a kernel body is
//! compiled for it, and the tile shape each kernel uses.
//!
//! Every `unsafe` and `#[target_feature]` item of the crate lives under this
//! module, one file per instruction set ([`avx2`], [`avx512`]). Kernels stay
//! safe code: they implement [`Kernel`] and call [`dispatch`], and use the
//! safe wrappers here, which run the hand-written lanes only where the CPU
//! has them. Each wrapper computes the same IEEE operations in the same order
//! as the portable loop it stands in for, so every path gives the same bits.

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;

use crate::real::Real;

/// The widest SIMD code path the kernels may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Simd {
    Portable,
    Avx2,
    Avx512,
}

/// The code path: AVX-512 where the CPU has it (AVX-512F and VL with AVX2
/// and FMA), else AVX2 + FMA, else portable. `TRIPLETCORE_DISABLE_SIMD` set
/// (and not `0`) selects the portable path, `TRIPLETCORE_DISABLE_AVX512`
/// caps it at AVX2 (to test each path). Read once per process.
pub(crate) fn simd_level() -> Simd {
    static LEVEL: std::sync::OnceLock<Simd> = std::sync::OnceLock::new();
    *LEVEL.get_or_init(|| {
        let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "0");
        if set("TRIPLETCORE_DISABLE_SIMD") {
            Simd::Portable
        } else {
            cpu_level().min(if set("TRIPLETCORE_DISABLE_AVX512") {
                Simd::Avx2
            } else {
                Simd::Avx512
            })
        }
    })
}

fn cpu_level() -> Simd {
    #[cfg(target_arch = "x86_64")]
    {
        use std::is_x86_feature_detected as has;
        if !(has!("avx2") && has!("fma")) {
            Simd::Portable
        } else if has!("avx512f") && has!("avx512vl") {
            Simd::Avx512
        } else {
            Simd::Avx2
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        Simd::Portable
    }
}

/// The widest path each kernel takes; its tile shape follows (see
/// [`with_tile_shape`]). AVX-512 only where a same-build A/B on an AVX-512
/// Xeon measured a gain: the product tiles (batch-hard, Hausdorff, k-NN)
/// have hand-written 16-lane code; the difference tiles (cdist, batch-all,
/// d_iso) do not, and at 12 x 32 the compiler's version was several times
/// slower than 6 x 16 on AVX2, so they stay there.
pub(crate) mod widest {
    use super::Simd;
    /// Batch-hard mining (and the loss's batch-hard picks).
    pub(crate) const BATCH_HARD: Simd = Simd::Avx512;
    /// The directed Hausdorff scan.
    pub(crate) const HAUSDORFF: Simd = Simd::Avx512;
    /// k nearest neighbours (12 x 32: about 0.7x the time at N = 8,192).
    pub(crate) const KNN: Simd = Simd::Avx512;
    /// The full distance matrix (`cdist`).
    pub(crate) const CDIST: Simd = Simd::Avx2;
    /// The batch-all loss's distance blocks.
    pub(crate) const BATCH_ALL: Simd = Simd::Avx2;
    /// The isometric error's distance blocks.
    pub(crate) const ISOMETRIC: Simd = Simd::Avx2;
    /// Packing, the exact distances and gradients (no tiles).
    pub(crate) const SUPPORT: Simd = Simd::Avx2;
    /// The bit scans of the finite check and the largest magnitude.
    pub(crate) const SCAN: Simd = Simd::Avx512;
}

/// The path a kernel capped at `widest` takes on this CPU.
#[inline(always)]
pub(crate) fn level_for(widest: Simd) -> Simd {
    simd_level().min(widest)
}

/// A kernel body, compiled once per code path. `run::<true>` is inlined
/// into a function with the path's target features and may use fused
/// multiply-adds; `run::<false>` is the portable path. Implementations mark
/// `run` `#[inline(always)]`, or it is not compiled with the features.
pub(crate) trait Kernel {
    type Output;
    fn run<const FMA: bool>(self) -> Self::Output;
}

/// Runs `kernel` on the widest path of this CPU, at most `widest`.
#[inline(always)]
pub(crate) fn dispatch<K: Kernel>(widest: Simd, kernel: K) -> K::Output {
    #[cfg(target_arch = "x86_64")]
    match level_for(widest) {
        // SAFETY: the CPU has the path's features (checked at run time).
        Simd::Avx512 => return unsafe { avx512::run(kernel) },
        Simd::Avx2 => return unsafe { avx2::run(kernel) },
        Simd::Portable => {}
    }
    kernel.run::<false>()
}

/// A [`Kernel`] that writes an output slice, passed on its own so the
/// compiler knows it aliases nothing else (it keeps the tile's accumulators
/// in registers where a slice inside the kernel struct does not).
pub(crate) trait KernelInto {
    type Item;
    fn run<const FMA: bool>(self, out: &mut [Self::Item]);
}

/// [`dispatch`] for a [`KernelInto`].
#[inline(always)]
pub(crate) fn dispatch_into<K: KernelInto>(widest: Simd, kernel: K, out: &mut [K::Item]) {
    #[cfg(target_arch = "x86_64")]
    match level_for(widest) {
        // SAFETY: the CPU has the path's features (checked at run time).
        Simd::Avx512 => return unsafe { avx512::run_into(kernel, out) },
        Simd::Avx2 => return unsafe { avx2::run_into(kernel, out) },
        Simd::Portable => {}
    }
    kernel.run::<false>(out)
}

/// Whether `T` is `f32` (the hand-written lanes are for f32, or f32 and f64).
#[inline(always)]
pub(crate) fn is_f32<T: 'static>() -> bool {
    std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>()
}

/// Calls `f::<T, MR, NR>(args)` with the tile shape of `T` on the path a
/// kernel capped at `widest` takes: `(MR, NR)` is 6 x 16 for f32 and 6 x 8
/// for f64 on AVX2 (twelve 256-bit accumulators), 12 x 32 and 12 x 16 on
/// AVX-512 (24 of 32 512-bit registers).
macro_rules! with_tile_shape {
    ($widest:expr, $t:ty, $f:ident($($arg:expr),* $(,)?)) => {
        match (
            $crate::engine::is_f32::<$t>(),
            $crate::engine::level_for($widest) == $crate::engine::Simd::Avx512,
        ) {
            (true, true) => $f::<$t, 12, 32>($($arg),*),
            (true, false) => $f::<$t, 6, 16>($($arg),*),
            (false, true) => $f::<$t, 12, 16>($($arg),*),
            (false, false) => $f::<$t, 6, 8>($($arg),*),
        }
    };
}
pub(crate) use with_tile_shape;

/// Reinterprets a slice of `T` as `f32` (`None` unless `T` is f32).
#[inline(always)]
fn as_f32<T: Real>(v: &[T]) -> Option<&[f32]> {
    // SAFETY: T is f32 (checked), so the layout is the same.
    is_f32::<T>().then(|| unsafe { std::slice::from_raw_parts(v.as_ptr().cast(), v.len()) })
}

/// [`as_f32`] for a mutable slice.
#[inline(always)]
fn as_f32_mut<T: Real>(v: &mut [T]) -> Option<&mut [f32]> {
    // SAFETY: T is f32 (checked), so the layout is the same.
    is_f32::<T>().then(|| unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr().cast(), v.len()) })
}

/// The `MR x 32` f32 product tile `acc[r][c] = sum_k a[k][r] * b[k][c]` by
/// fused multiply-adds in k order, on AVX-512 (`a`, `panel` packed k-major).
/// Returns `false`, doing nothing, where that path is not available.
#[inline(always)]
pub(crate) fn product_tile_x32<T: Real, const MR: usize, const NR: usize>(
    a: &[T],
    d: usize,
    panel: &[T],
    acc: &mut [[T; NR]; MR],
) -> bool {
    #[cfg(target_arch = "x86_64")]
    if NR == 32 && simd_level() == Simd::Avx512 {
        if let (Some(a), Some(b), Some(out)) =
            (as_f32(a), as_f32(panel), as_f32_mut(acc.as_flattened_mut()))
        {
            assert!(a.len() >= MR * d && b.len() >= 32 * d && out.len() == MR * 32);
            // SAFETY: the lengths are asserted above; the CPU has AVX-512F.
            unsafe { avx512::tile_f32_x32::<MR>(a.as_ptr(), d, b.as_ptr(), out.as_mut_ptr()) };
            return true;
        }
    }
    let _ = (a, d, panel, acc);
    false
}

/// The 32 f32 columns of one batch-hard tile row: the row and column pass
/// masks of `pass_bits` (same operations per lane), or `None` where that
/// path is not available.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn pass_bits_x32<T: Real, const NR: usize, const SYM: bool>(
    dots: &[T; NR],
    na: T,
    nb: &[T; NR],
    lab: &[u32; NR],
    li: u32,
    thr_pos: T,
    thr_neg: T,
    col_pos: &[T; NR],
    col_neg: &[T; NR],
) -> Option<(u64, u64)> {
    #[cfg(target_arch = "x86_64")]
    if NR == 32 && is_f32::<T>() && simd_level() == Simd::Avx512 {
        let f = |v: &[T; NR]| v.as_ptr().cast::<f32>();
        let one = |v: T| -> f32 { v.to_f64() as f32 };
        // SAFETY: T is f32 and NR is 32 (checked): every array holds 32
        // values; the CPU has AVX-512F (checked at run time).
        return Some(unsafe {
            avx512::pass_bits_f32x32::<SYM>(
                f(dots),
                one(na),
                f(nb),
                lab.as_ptr(),
                li,
                one(thr_pos),
                one(thr_neg),
                f(col_pos),
                f(col_neg),
            )
        });
    }
    let _ = (dots, na, nb, lab, li, thr_pos, thr_neg, col_pos, col_neg);
    None
}

/// The least `(na + nb) - 2 dot` over 32 f32 columns of another label
/// (`tile_min_neg`, same operations per lane), or `None` where that path is
/// not available.
#[inline(always)]
pub(crate) fn min_neg_x32<T: Real, const NR: usize>(
    dots: &[T; NR],
    na: T,
    nb: &[T; NR],
    lab: &[u32; NR],
    li: u32,
) -> Option<T> {
    #[cfg(target_arch = "x86_64")]
    if NR == 32 && is_f32::<T>() && simd_level() == Simd::Avx512 {
        let f = |v: &[T; NR]| v.as_ptr().cast::<f32>();
        // SAFETY: T is f32 and NR is 32 (checked); the CPU has AVX-512F.
        let m =
            unsafe { avx512::min_neg_f32x32(f(dots), na.to_f64() as f32, f(nb), lab.as_ptr(), li) };
        return Some(T::from_f64(f64::from(m)));
    }
    let _ = (dots, na, nb, lab, li);
    None
}

/// Asks the CPU to bring the cache line holding `p` into L1 (a hint: no
/// effect on any result).
#[inline(always)]
pub(crate) fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch never faults, whatever the address, and changes
    // nothing the program can observe; SSE is baseline on x86_64.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// The 32 f32 columns of one k-NN tile row: bit c of the first mask is set
/// where `v = (na + nb) - 2 dot` is at most `thr`, of the second (with
/// `SYM`) where it is at most `col_thr[c]` (the portable loop's operations
/// per lane), or `None` where that path is not available.
#[inline(always)]
pub(crate) fn knn_bits_x32<T: Real, const NR: usize, const SYM: bool>(
    dots: &[T; NR],
    na: T,
    nb: &[T; NR],
    thr: T,
    col_thr: &[T; NR],
) -> Option<(u64, u64)> {
    #[cfg(target_arch = "x86_64")]
    if NR == 32 && is_f32::<T>() && simd_level() == Simd::Avx512 {
        let f = |v: &[T; NR]| v.as_ptr().cast::<f32>();
        let one = |v: T| -> f32 { v.to_f64() as f32 };
        // SAFETY: T is f32 and NR is 32 (checked): every array holds 32
        // values; the CPU has AVX-512F (checked at run time).
        return Some(unsafe {
            avx512::knn_bits_f32x32::<SYM>(f(dots), one(na), f(nb), one(thr), f(col_thr))
        });
    }
    let _ = (dots, na, nb, thr, col_thr);
    None
}

/// Per lane `l` of 8, the f64 sum of `v[8 c + l]^2` over the whole chunks
/// (multiply then add, as the portable loop), and how many values that
/// covered; `None` where that path is not available.
#[inline(always)]
pub(crate) fn lane_squares<T: Real>(v: &[T]) -> Option<([f64; 8], usize)> {
    #[cfg(target_arch = "x86_64")]
    if simd_level() >= Simd::Avx2 {
        if let Some(v) = as_f32(v) {
            let full = v.len() / 8 * 8;
            // SAFETY: `v` holds `full` values; the CPU has AVX2.
            return Some((unsafe { avx2::lane_squares_f32(v.as_ptr(), full) }, full));
        }
    }
    let _ = v;
    None
}

/// `dst[k * dst_stride + r] = src[r * src_stride + k]` for r, k in 0..4,
/// both blocks starting at offset 0; `false` (nothing done) unless `T` is f32.
#[inline(always)]
pub(crate) fn transpose4<T: Real>(
    src: &[T],
    src_stride: usize,
    dst: &mut [T],
    dst_stride: usize,
) -> bool {
    #[cfg(target_arch = "x86_64")]
    if let (Some(s), Some(d)) = (as_f32(src), as_f32_mut(dst)) {
        assert!(s.len() >= 3 * src_stride + 4 && d.len() >= 3 * dst_stride + 4);
        // SAFETY: both 4 x 4 blocks are in bounds (asserted); SSE is baseline.
        unsafe { avx2::transpose4_f32(s.as_ptr(), src_stride, d.as_mut_ptr(), dst_stride) };
        return true;
    }
    let _ = (src, src_stride, dst, dst_stride);
    false
}

/// Lanes of the exact squared difference sums: `LANES` partial sums.
pub(crate) const LANES: usize = 16;

/// Per lane `l` of [`LANES`], the f64 sum of `(a - b)^2` at `LANES c + l`
/// over the whole chunks (multiply then add), and how many values that
/// covered; `None` where that path is not available.
#[inline(always)]
pub(crate) fn lane_diff_squares<T: Real>(a: &[T], b: &[T]) -> Option<([f64; LANES], usize)> {
    #[cfg(target_arch = "x86_64")]
    if simd_level() == Simd::Avx512 && a.len() == b.len() {
        let full = a.len() / LANES * LANES;
        // SAFETY: both slices hold `full` values; T is f32 or f64; the CPU
        // has AVX-512F (checked at run time).
        return Some((
            unsafe { avx512::lane_sums(a.as_ptr(), b.as_ptr(), full) },
            full,
        ));
    }
    let _ = (a, b);
    None
}

/// `out[k] += c * (a[k] - b[k])` in f64 (multiply then add) over the whole
/// chunks of [`LANES`]; returns how many values that covered (0 where that
/// path is not available).
#[inline(always)]
pub(crate) fn add_scaled_diff_lanes<T: Real>(out: &mut [f64], a: &[T], b: &[T], c: f64) -> usize {
    #[cfg(target_arch = "x86_64")]
    if simd_level() == Simd::Avx512 && a.len() == b.len() && out.len() >= a.len() {
        let done = a.len() / LANES * LANES;
        // SAFETY: the three slices hold `done` values; T is f32 or f64; the
        // CPU has AVX-512F (checked at run time).
        unsafe { avx512::add_scaled_diff(out.as_mut_ptr(), a.as_ptr(), b.as_ptr(), c, done) };
        return done;
    }
    let _ = (out, a, b, c);
    0
}
