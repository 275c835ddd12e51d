//! The full distance matrix, for callers who ask for it. Entries come from
//! coordinate differences (no expansion), so duplicates give exactly 0.

use rayon::prelude::*;

use crate::engine::{dispatch_into, widest, with_tile_shape, KernelInto, Simd};
use crate::error::Result;
use crate::exact::Exact;
use crate::matrix::{check_same_dim, Matrix};
use crate::metric::Metric;
use crate::pack::{prepare_anchors, prepare_panels, row_norms, Anchors, Panels, Transform};
use crate::parallel::checkpoint;
use crate::real::Real;
use crate::scale::{distance_factor, with_safe_scale};
use crate::tile::for_each_tile;

/// Row-major `x.rows x y.rows` distances (`y = x` when `None`).
pub fn cdist<T: Real>(x: &Matrix<T>, y: Option<&Matrix<T>>, metric: Metric) -> Result<Vec<T>> {
    if let Some(y) = y {
        check_same_dim(x, y)?;
    }
    with_safe_scale(x, y, |x, y, s| {
        let mut out = with_tile_shape!(widest::CDIST, T, run(x, y, metric))?;
        let f = distance_factor(metric, s);
        if !f.is_one() {
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
    let blocks = DistanceBlocks::<T, MR, NR>::new(x, y, metric, widest::CDIST)?;
    let m = blocks.panels.n;
    let mut out = vec![T::ZERO; x.rows * m];
    out.par_chunks_mut(MR * m)
        .enumerate()
        .panic_fuse()
        .for_each(|(g, block)| {
            checkpoint();
            blocks.fill(g * MR, block)
        });
    Ok(out)
}

/// Distances from blocks of rows of X to every row of Y (or X), computed by
/// the tiled kernel from coordinate differences in the input precision.
/// On (X, X) the value for (i, j) equals the value for (j, i) bit for bit.
/// `MR x NR` is the tile shape of the path `widest` (the caller's kernel's).
pub(crate) struct DistanceBlocks<T, const MR: usize, const NR: usize> {
    anchors: Anchors<T>,
    pub(crate) panels: Panels<T>,
    metric: Metric,
    widest: Simd,
}

impl<T: Real, const MR: usize, const NR: usize> DistanceBlocks<T, MR, NR> {
    pub(crate) fn new(
        x: &Matrix<T>,
        y: Option<&Matrix<T>>,
        metric: Metric,
        widest: Simd,
    ) -> Result<Self> {
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
            widest,
        })
    }

    /// Fills `block` (rows `r0..` of the output, `block.len() / m` of them,
    /// `r0` a multiple of `MR`) with distances in the metric's units.
    pub(crate) fn fill(&self, r0: usize, block: &mut [T]) {
        dispatch_into(self.widest, Fill { blocks: self, r0 }, block)
    }
}

/// [`DistanceBlocks::fill`]'s arguments but the output, as a kernel body.
struct Fill<'b, T, const MR: usize, const NR: usize> {
    blocks: &'b DistanceBlocks<T, MR, NR>,
    r0: usize,
}

impl<T: Real, const MR: usize, const NR: usize> KernelInto for Fill<'_, T, MR, NR> {
    type Item = T;
    #[inline(always)]
    fn run<const FMA: bool>(self, block: &mut [T]) {
        let b = self.blocks;
        fill_rows_impl::<T, MR, NR, FMA>(&b.anchors, &b.panels, self.r0, block, b.metric)
    }
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
        // Inlined so that it is compiled with the caller's target features.
        #[inline(always)]
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
