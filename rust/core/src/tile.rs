//! The register-blocked micro-kernel and the cache-blocked loop around it.
//!
//! A tile is `MR` anchor rows against one panel of `NR` reference columns;
//! its `MR x NR` accumulators stay in registers and are handed to an
//! epilogue closure, so the distance matrix is never written out.

use crate::prep::{Anchors, Panels};
use crate::real::Real;

/// Whether the AVX2 + FMA code path runs: the CPU has both, and the
/// environment variable `TRIPLETCORE_DISABLE_SIMD` is unset or `0` (set it
/// to test the portable path). Read once per process.
pub fn has_avx2_fma() -> bool {
    static USE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *USE.get_or_init(|| {
        let disabled =
            std::env::var("TRIPLETCORE_DISABLE_SIMD").is_ok_and(|v| !v.is_empty() && v != "0");
        !disabled && cpu_has_avx2_fma()
    })
}

fn cpu_has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
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

/// Tile shape for an element type: `(MR, NR)` is 6 x 16 for f32 and 6 x 8
/// for f64, twelve 256-bit accumulators either way.
pub fn is_f32<T: 'static>() -> bool {
    std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>()
}
