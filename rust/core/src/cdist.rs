//! The full distance matrix, for callers who ask for it. Entries come from
//! coordinate differences (no expansion), so duplicates give exactly 0.

use rayon::prelude::*;

use crate::error::Result;
use crate::exact::Exact;
use crate::metric::Metric;
use crate::prep::{
    check_same_dim, prepare_anchors, prepare_panels, row_norms, Anchors, Matrix, Panels, Transform,
};
use crate::real::Real;
use crate::scale::{distance_factor, with_safe_scale};
use crate::tile::{for_each_tile, has_avx2_fma, is_f32};

/// Row-major `x.rows x y.rows` distances (`y = x` when `None`).
pub fn cdist<T: Real>(x: &Matrix<T>, y: Option<&Matrix<T>>, metric: Metric) -> Result<Vec<T>> {
    if let Some(y) = y {
        check_same_dim(x, y)?;
    }
    with_safe_scale(x, y, |x, y, s| {
        let mut out = if is_f32::<T>() {
            run::<T, 6, 16>(x, y, metric)
        } else {
            run::<T, 6, 8>(x, y, metric)
        }?;
        let f = distance_factor(metric, s);
        if f != 1.0 {
            out.par_iter_mut()
                .for_each(|v| *v = T::from_f64(v.to_f64() * f));
        }
        Ok(out)
    })
}

/// Exact f64 distances between the rows `x[i]` and `y[j]` of each pair
/// `(i, j)`, by the formula every kernel ranks with: callers that merge
/// kernel results (block-wise or distributed) break ties on the same values.
pub fn pair_distances<T: Real>(
    x: &Matrix<T>,
    y: &Matrix<T>,
    pairs: &[(usize, usize)],
    metric: Metric,
) -> Result<Vec<f64>> {
    check_same_dim(x, y)?;
    if let Some(&(i, j)) = pairs.iter().find(|&&(i, j)| i >= x.rows || j >= y.rows) {
        return Err(crate::error::CoreError::InvalidValue {
            arg: "pairs",
            detail: format!(
                "pair ({i}, {j}) is out of range for {} x {} rows",
                x.rows, y.rows
            ),
        });
    }
    with_safe_scale(x, Some(y), |x, y, s| {
        let y = y.expect("second set");
        let nx = row_norms(x, metric, "X")?;
        let ny = row_norms(y, metric, "Y")?;
        let exact = Exact {
            x: *x,
            y: *y,
            nx: nx.as_deref(),
            ny: ny.as_deref(),
            metric,
        };
        let f = distance_factor(metric, s);
        Ok(pairs
            .par_iter()
            .map(|&(i, j)| exact.dist(i, j) * f)
            .collect())
    })
}

fn run<T: Real, const MR: usize, const NR: usize>(
    x: &Matrix<T>,
    y: Option<&Matrix<T>>,
    metric: Metric,
) -> Result<Vec<T>> {
    let blocks = DistanceBlocks::<T, MR, NR>::new(x, y, metric)?;
    let m = blocks.panels.n;
    let mut out = vec![T::ZERO; x.rows * m];
    out.par_chunks_mut(MR * m)
        .enumerate()
        .for_each(|(g, block)| blocks.fill(g * MR, block));
    Ok(out)
}

/// Distances from blocks of rows of X to every row of Y (or X), computed by
/// the tiled kernel from coordinate differences in the input precision.
/// On (X, X) the value for (i, j) equals the value for (j, i) bit for bit.
pub(crate) struct DistanceBlocks<T, const MR: usize, const NR: usize> {
    anchors: Anchors<T>,
    pub(crate) panels: Panels<T>,
    metric: Metric,
    avx2: bool,
}

impl<T: Real, const MR: usize, const NR: usize> DistanceBlocks<T, MR, NR> {
    pub(crate) fn new(x: &Matrix<T>, y: Option<&Matrix<T>>, metric: Metric) -> Result<Self> {
        let nx = row_norms(x, metric, "X")?;
        let ny = match y {
            Some(y) => row_norms(y, metric, "Y")?,
            None => None,
        };
        let tf = Transform::scaling_only(x.cols, nx.as_deref(), ny.as_deref());
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
        Ok(DistanceBlocks {
            anchors,
            panels,
            metric,
            avx2: has_avx2_fma(),
        })
    }

    /// Fills `block` (rows `r0..` of the output, `block.len() / m` of them,
    /// `r0` a multiple of `MR`) with distances in the metric's units.
    pub(crate) fn fill(&self, r0: usize, block: &mut [T]) {
        #[cfg(target_arch = "x86_64")]
        if self.avx2 {
            // SAFETY: the CPU supports AVX2 and FMA (checked at run time).
            return unsafe {
                fill_rows_avx2::<T, MR, NR>(&self.anchors, &self.panels, r0, block, self.metric)
            };
        }
        fill_rows_impl::<T, MR, NR, false>(&self.anchors, &self.panels, r0, block, self.metric)
    }
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
    let end = r0 + rows_here.div_ceil(MR) * MR;
    for_each_tile::<T, MR, NR, FMA, true, _>(
        anchors,
        panels,
        r0..end,
        0..panels.count(),
        |r, p, acc| {
            let c0 = p * NR;
            let width = NR.min(m - c0);
            for (rr, d2row) in acc.iter().enumerate() {
                let row = r - r0 + rr;
                if row >= rows_here {
                    break;
                }
                let out = &mut block[row * m + c0..row * m + c0 + width];
                for (o, &v) in out.iter_mut().zip(d2row) {
                    *o = match metric {
                        Metric::Euclidean => T::from_f64(v.to_f64().sqrt()),
                        Metric::SqEuclidean => v,
                        Metric::Cosine => half * v,
                    };
                }
            }
        },
    );
}
