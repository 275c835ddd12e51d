//! The tiled scan behind the directed Hausdorff distance in high
//! dimension: the batch-hard scan with every reference row a negative,
//! visiting chunks of panels with an early exit.

use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;

use crate::engine::{widest, with_tile_shape};
use crate::error::Result;
use crate::exact::Exact;
use crate::hard_scan::{finish_row, scan_block, Ctx, RowState, ROW_BLOCK};
use crate::matrix::{check_same_dim, Matrix};
use crate::metric::Metric;
use crate::pack::{prepare_anchors, prepare_panels, Transform};
use crate::parallel::{checkpoint, scattered_stride};
use crate::real::Real;
use crate::screen::ExpansionBound;

/// Panels per step of the early-exit scan.
const NN_CHUNK: usize = 8;

/// For `max_i min_j d(x_i, y_j)` (directed Hausdorff): the nearest row of
/// `y` for every row of `x` that can still attain the maximum, `None` for
/// the rows proved unable to. Chunks of `y` are visited in a fixed
/// scattered order; a shared lower bound on the answer (exact nearest
/// distances of finished rows) retires a row as soon as its rigorous upper
/// bound is strictly below it, so a retired row cannot even tie. This is
/// the early break of scipy's algorithm, applied per tile.
/// `lower` is a lower bound on the answer to start from (squared, as
/// kept below: 0, or a settled row's bound).
pub(crate) fn nearest_for_max<T: Real>(
    x: &Matrix<T>,
    y: &Matrix<T>,
    lower: f64,
) -> Result<Vec<Option<usize>>> {
    with_tile_shape!(widest::HAUSDORFF, T, nearest_for_max_impl(x, y, lower))
}

/// What every block of the scan shares.
struct Shared<'c, 'a, T> {
    ctx: &'c Ctx<'a, T>,
    exact: &'c Exact<'a, T>,
    /// The chunks of panels in visiting order.
    order: &'c [usize],
    /// Lower bound on the answer, squared; non-negative f64 bits order like the values.
    lower: &'c AtomicU64,
    /// Rows of `y`.
    m: usize,
}

fn nearest_for_max_impl<T: Real, const MR: usize, const NR: usize>(
    x: &Matrix<T>,
    y: &Matrix<T>,
    lower0: f64,
) -> Result<Vec<Option<usize>>> {
    check_same_dim(x, y)?;
    // Every row of y is a "negative" of every row of x.
    let (xlab, ylab) = (vec![0u32; x.rows], vec![1u32; y.rows]);
    let tf = Transform::new(x, Some(y), None, None);
    let anchors = prepare_anchors(x, &tf, MR, "A")?;
    let panels = prepare_panels(y, &ylab, &tf, false, NR, "B")?;
    let exact = Exact {
        x: *x,
        y: *y,
        nx: None,
        ny: None,
        metric: Metric::Euclidean,
    };
    let ctx = Ctx {
        anchors: &anchors,
        panels: &panels,
        xlab: &xlab,
        ylab: &ylab,
        self_excluded: false,
        bound: ExpansionBound::new::<T>(x.cols),
        widest: widest::HAUSDORFF,
    };
    let nchunks = panels.count().div_ceil(NN_CHUNK);
    // A fixed scattered visiting order: a stride coprime with the count.
    let stride = scattered_stride(nchunks);
    let order: Vec<usize> = (0..nchunks).map(|k| (k * stride) % nchunks).collect();
    let lower = AtomicU64::new(lower0.to_bits());
    let shared = Shared {
        ctx: &ctx,
        exact: &exact,
        order: &order,
        lower: &lower,
        m: y.rows,
    };
    let n = x.rows;
    Ok((0..n.div_ceil(ROW_BLOCK))
        .into_par_iter()
        .panic_fuse()
        .flat_map_iter(|b| {
            checkpoint();
            scan_rows::<T, MR, NR>(&shared, b * ROW_BLOCK, ((b + 1) * ROW_BLOCK).min(n))
        })
        .collect())
}

/// The nearest row of `y` for rows `r0..r1` of `x`, `None` for the rows retired.
fn scan_rows<T: Real, const MR: usize, const NR: usize>(
    sh: &Shared<T>,
    r0: usize,
    r1: usize,
) -> Vec<Option<usize>> {
    let (ctx, exact) = (sh.ctx, sh.exact);
    let (n, np, nchunks) = (ctx.anchors.n, ctx.panels.count(), sh.order.len());
    let len = r1 - r0;
    let mut states: Vec<RowState<T>> = (0..len).map(|_| RowState::new()).collect();
    let mut active = vec![true; len];
    // The chunks at the block's own relative position go first: for two
    // embeddings of the same points in the same order (a noisy copy) the
    // nearest row is there, so the rows' bounds are tight from the start
    // and most rows retire after one chunk. Only the order changes.
    let home0 = (r0 * sh.m / n) / (NR * NN_CHUNK);
    let home1 = ((r1 * sh.m).div_ceil(n))
        .div_ceil(NR * NN_CHUNK)
        .min(nchunks);
    let home = home0..home1.max(home0 + 1).min(nchunks);
    let visits = home
        .clone()
        .chain(sh.order.iter().copied().filter(|c| !home.contains(c)));
    // Exact distance to a candidate found in the home chunks: a tight
    // upper bound where the tile bound is widened by rounding (tiny
    // noise against large norms). A row is retired only when strictly
    // below `lower`, computed by the same f64 formula, so it cannot tie.
    let mut exact_ub = vec![f64::INFINITY; len];
    for (step, c) in visits.enumerate() {
        if step == home.len() {
            for (k, st) in states.iter().enumerate() {
                let nearest = st
                    .neg
                    .cands
                    .iter()
                    .min_by(|p, q| p.0.to_f64().total_cmp(&q.0.to_f64()));
                if let (false, Some(&(_, j))) = (st.neg.overflow, nearest) {
                    exact_ub[k] = exact.d2(r0 + k, j as usize);
                }
            }
        }
        let lo = f64::from_bits(sh.lower.load(Ordering::Relaxed));
        for ((a, st), ub) in active.iter_mut().zip(&states).zip(&exact_ub) {
            *a &= st.neg.best.to_f64() >= lo && *ub >= lo;
        }
        if !active.iter().any(|&a| a) {
            break;
        }
        let prange = c * NN_CHUNK..((c + 1) * NN_CHUNK).min(np);
        for g in (0..len).step_by(MR) {
            let ge = (g + MR).min(len);
            if active[g..ge].iter().any(|&a| a) {
                scan_block::<T, MR, NR>(
                    ctx,
                    r0 + g..r0 + ge,
                    prange.clone(),
                    &mut states[g..ge],
                    None,
                );
            }
        }
    }
    let mut out = Vec::with_capacity(len);
    for (k, st) in states.iter().enumerate() {
        if !active[k] {
            out.push(None);
            continue;
        }
        let i = r0 + k;
        let j = finish_row(ctx, exact, i, st).2 as usize;
        // A rigorous lower bound on this row's exact nearest distance, squared.
        let d2 = exact.d2(i, j) * (1.0 - 1e-12);
        sh.lower.fetch_max(d2.to_bits(), Ordering::Relaxed);
        out.push(Some(j));
    }
    out
}
