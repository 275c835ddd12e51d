//! The register-blocked micro-kernel and the cache-blocked loop around it.
//!
//! A tile is `MR` anchor rows against one panel of `NR` reference columns;
//! its `MR x NR` accumulators stay in registers and are handed to an
//! epilogue closure, so the distance matrix is never written out.

use crate::prep::{Anchors, Panels};
use crate::real::Real;

/// The widest SIMD code path the kernels may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Simd {
    Portable,
    Avx2,
    Avx512,
}

/// The code path: AVX-512 where the CPU has it (AVX-512F and VL with AVX2
/// and FMA), else AVX2 + FMA, else portable. `TRIPLETCORE_DISABLE_SIMD` set
/// (and not `0`) selects the portable path, `TRIPLETCORE_DISABLE_AVX512`
/// caps it at AVX2 (to test each path). Read once per process.
pub fn simd_level() -> Simd {
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

/// Whether the AVX2 + FMA code path (or a wider one) runs.
pub fn has_avx2_fma() -> bool {
    simd_level() >= Simd::Avx2
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

/// `acc[r][c] = sum_k a[k][r] * b[k][c]`, or with `SQDIFF`
/// `sum_k (a[k][r] - b[k][c])^2` (`a` and `b` both packed k-major).
#[inline(always)]
fn micro_tile<T: Real, const MR: usize, const NR: usize, const FMA: bool, const SQDIFF: bool>(
    a: &[T],
    d: usize,
    panel: &[T],
    acc: &mut [[T; NR]; MR],
) {
    assert!(a.len() >= MR * d && panel.len() >= NR * d);
    // The compiler does not vectorise the wide f32 tile by itself.
    #[cfg(target_arch = "x86_64")]
    if FMA && !SQDIFF && NR == 32 && is_f32::<T>() && simd_level() == Simd::Avx512 {
        // SAFETY: T is f32 (checked), the lengths are asserted above, and
        // the CPU has AVX-512F (checked at run time).
        unsafe {
            avx512::tile_f32_x32::<MR>(
                a.as_ptr().cast(),
                d,
                panel.as_ptr().cast(),
                acc.as_mut_ptr().cast(),
            )
        };
        return;
    }
    *acc = [[T::ZERO; NR]; MR];
    for (ak, b) in a.chunks_exact(MR).zip(panel.chunks_exact(NR)).take(d) {
        let (ak, b): (&[T; MR], &[T; NR]) = (ak.try_into().unwrap(), b.try_into().unwrap());
        for (row, &ar) in acc.iter_mut().zip(ak) {
            for c in 0..NR {
                let (x, y) = if SQDIFF {
                    (ar - b[c], ar - b[c])
                } else {
                    (ar, b[c])
                };
                row[c] = if FMA {
                    x.fused_mul_add(y, row[c])
                } else {
                    row[c] + x * y
                };
            }
        }
    }
}

/// Visits every tile of anchor rows `rows` (a range whose start is a
/// multiple of `MR`) against the panels `cols`, calling `epilogue(first_row,
/// panel, acc)`.
#[inline(always)]
pub fn for_each_tile<T, const MR: usize, const NR: usize, const FMA: bool, const SQDIFF: bool, F>(
    anchors: &Anchors<T>,
    panels: &Panels<T>,
    rows: std::ops::Range<usize>,
    cols: std::ops::Range<usize>,
    mut epilogue: F,
) where
    T: Real,
    F: FnMut(usize, usize, &[[T; NR]; MR]),
{
    debug_assert_eq!(panels.nr, NR);
    let d = anchors.d;
    let np = cols.end.min(panels.count());
    let mut acc = [[T::ZERO; NR]; MR];
    // As in BLIS: one panel (NR x d) stays in L1 while the row block's
    // packed groups stream from L2 (MR values per k instead of NR).
    for p in cols.start..np {
        let panel = panels.panel(p);
        let mut r = rows.start;
        while r < rows.end {
            micro_tile::<T, MR, NR, FMA, SQDIFF>(
                &anchors.rows[r * d..(r + MR) * d],
                d,
                panel,
                &mut acc,
            );
            epilogue(r, p, &acc);
            r += MR;
        }
    }
}

/// Tile shapes: `(MR, NR)` is 6 x 16 for f32 and 6 x 8 for f64 on AVX2
/// (twelve 256-bit accumulators), 12 x 32 and 12 x 16 on AVX-512 (24 of 32
/// 512-bit registers).
pub fn is_f32<T: 'static>() -> bool {
    std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>()
}

/// Calls `f::<T, MR, NR>(args)` with the tile shape of `T` on this CPU's
/// widest path (the AVX-512 shapes where [`simd_level`] is AVX-512).
macro_rules! with_tile_shape {
    ($t:ty, $f:ident($($arg:expr),* $(,)?)) => {
        match (
            $crate::tile::is_f32::<$t>(),
            $crate::tile::simd_level() == $crate::tile::Simd::Avx512,
        ) {
            (true, true) => $f::<$t, 12, 32>($($arg),*),
            (true, false) => $f::<$t, 6, 16>($($arg),*),
            (false, true) => $f::<$t, 12, 16>($($arg),*),
            (false, false) => $f::<$t, 6, 8>($($arg),*),
        }
    };
}
pub(crate) use with_tile_shape;

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    /// The `MR x 32` f32 tile of [`super::micro_tile`] (`FMA`, not
    /// `SQDIFF`): the same fused multiply-adds in the same order over k, so
    /// the same bits, in two 16-lane registers per row.
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
}
