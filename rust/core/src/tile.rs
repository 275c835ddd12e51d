//! The register-blocked micro-kernel and the cache-blocked loop around it.
//!
//! A tile is `MR` anchor rows against one panel of `NR` reference columns;
//! its `MR x NR` accumulators stay in registers and are handed to an
//! epilogue closure, so the distance matrix is never written out. The tile
//! shape comes from [`crate::engine::with_tile_shape`].

use crate::engine::product_tile_x32;
use crate::pack::{Anchors, Panels};
use crate::real::Real;

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
    if FMA && !SQDIFF && product_tile_x32::<T, MR, NR>(a, d, panel, acc) {
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
                // Fused on every path, so the portable path (TRIPLETCORE_DISABLE_SIMD,
                // CPUs without AVX2) gives the SIMD paths' bits: there it is
                // libm's fma (hardware where present, else exact in software).
                row[c] = x.fused_mul_add(y, row[c]);
            }
        }
    }
}

/// Visits every tile of anchor rows `rows` (a range whose start is a
/// multiple of `MR`) against the panels `cols`, calling `epilogue(first_row,
/// panel, acc)`.
#[inline(always)]
pub(crate) fn for_each_tile<
    T,
    const MR: usize,
    const NR: usize,
    const FMA: bool,
    const SQDIFF: bool,
    F,
>(
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
