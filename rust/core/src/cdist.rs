//! The full distance matrix, for callers who ask for it. Entries come from
//! coordinate differences (no expansion), so duplicates give exactly 0.

use rayon::prelude::*;

use crate::error::Result;
use crate::metric::Metric;
use crate::prep::{
    check_same_dim, prepare_anchors, prepare_panels, row_scales, Anchors, Matrix, Panels, Transform,
};
use crate::real::Real;
use crate::tile::{for_each_tile, has_avx2_fma, is_f32};

/// Row-major `x.rows x y.rows` distances (`y = x` when `None`).
pub fn cdist<T: Real>(x: &Matrix<T>, y: Option<&Matrix<T>>, metric: Metric) -> Result<Vec<T>> {
    if let Some(y) = y {
        check_same_dim(x, y)?;
    }
    if is_f32::<T>() {
        run::<T, 6, 16>(x, y, metric)
    } else {
        run::<T, 6, 8>(x, y, metric)
    }
}

fn run<T: Real, const MR: usize, const NR: usize>(
    x: &Matrix<T>,
    y: Option<&Matrix<T>>,
    metric: Metric,
) -> Result<Vec<T>> {
    let sx = row_scales(x, metric, "X")?;
    let sy = match y {
        Some(y) => row_scales(y, metric, "Y")?,
        None => None,
    };
    let tf = Transform::scaling_only(x.cols, sx.as_deref(), sy.as_deref());
    let anchors = prepare_anchors(x, &tf, MR, "X")?;
    let yy = y.copied().unwrap_or(*x);
    let panels = prepare_panels(
        &yy,
        &[],
        &tf,
        y.is_none(),
        NR,
        if y.is_some() { "Y" } else { "X" },
    )?;
    let (n, m) = (x.rows, yy.rows);
    let mut out = vec![T::ZERO; n * m];
    let avx2 = has_avx2_fma();
    out.par_chunks_mut(MR * m)
        .enumerate()
        .for_each(|(g, block)| {
            fill_rows::<T, MR, NR>(&anchors, &panels, g * MR, block, metric, avx2);
        });
    Ok(out)
}

fn fill_rows<T: Real, const MR: usize, const NR: usize>(
    anchors: &Anchors<T>,
    panels: &Panels<T>,
    r0: usize,
    block: &mut [T],
    metric: Metric,
    avx2: bool,
) {
    #[cfg(target_arch = "x86_64")]
    if avx2 {
        // SAFETY: the CPU supports AVX2 and FMA (checked at run time).
        return unsafe { fill_rows_avx2::<T, MR, NR>(anchors, panels, r0, block, metric) };
    }
    let _ = avx2;
    fill_rows_impl::<T, MR, NR, false>(anchors, panels, r0, block, metric)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fill_rows_avx2<T: Real, const MR: usize, const NR: usize>(
    anchors: &Anchors<T>,
    panels: &Panels<T>,
    r0: usize,
    block: &mut [T],
    metric: Metric,
) {
    fill_rows_impl::<T, MR, NR, true>(anchors, panels, r0, block, metric)
}

#[inline(always)]
fn fill_rows_impl<T: Real, const MR: usize, const NR: usize, const FMA: bool>(
    anchors: &Anchors<T>,
    panels: &Panels<T>,
    r0: usize,
    block: &mut [T],
    metric: Metric,
) {
    let m = panels.n;
    let rows_here = block.len() / m;
    let half = T::from_f64(0.5);
    for_each_tile::<T, MR, NR, FMA, true, _>(anchors, panels, r0..r0 + MR, |_, p, acc| {
        let c0 = p * NR;
        let width = NR.min(m - c0);
        for (rr, d2row) in acc.iter().enumerate().take(rows_here) {
            let out = &mut block[rr * m + c0..rr * m + c0 + width];
            for (o, &v) in out.iter_mut().zip(d2row) {
                *o = match metric {
                    Metric::Euclidean => T::from_f64(v.to_f64().sqrt()),
                    Metric::SqEuclidean => v,
                    Metric::Cosine => half * v,
                };
            }
        }
    });
}
