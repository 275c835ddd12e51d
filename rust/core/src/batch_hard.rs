//! Batch-hard mining: per anchor the farthest positive and the nearest
//! negative, fused into the tiled distance kernel.
//!
//! The fast pass screens with the expansion and its error bound
//! ([`crate::screen`]); every reference point whose approximate distance
//! could still be the extreme one is kept as a candidate, and the
//! candidates are settled by exact f64 distances, so the index returned is
//! the true arg-max / arg-min (lowest index on ties). The tile epilogue is
//! in [`crate::hard_scan`].

use std::ops::Range;

use crate::engine::{widest, with_tile_shape};
use crate::error::Result;
use crate::exact::Exact;
use crate::hard_scan::{finish_row, scan_block, ColumnStates, Ctx, OwnedRows, RowState, ROW_BLOCK};
use crate::matrix::{check_labels, check_same_dim, encode_labels, Matrix};
use crate::metric::Metric;
use crate::pack::{prepare_anchors, prepare_panels, row_norms, Transform};
use crate::parallel::{map_range, on_pool, worth_parallel};
use crate::real::Real;
use crate::scale::Pow2;
use crate::scale::{distance_factor, with_safe_scale};
use crate::screen::ExpansionBound;

/// Per-anchor result; `-1` / NaN where an anchor has no positive or negative.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchHard<T> {
    pub pos_idx: Vec<i64>,
    pub pos_dist: Vec<T>,
    pub neg_idx: Vec<i64>,
    pub neg_dist: Vec<T>,
}

pub fn batch_hard<T: Real>(
    x: &Matrix<T>,
    labels: &[i64],
    reference: Option<(&Matrix<T>, &[i64])>,
    metric: Metric,
) -> Result<BatchHard<T>> {
    check_labels(labels, x.rows, "labels", "X")?;
    if let Some((y, ref_labels)) = reference {
        check_same_dim(x, y)?;
        check_labels(ref_labels, y.rows, "ref_labels", "Y")?;
    }
    let n_ref = reference.map_or(x.rows, |r| r.0.rows);
    let parallel = worth_parallel(x.rows * n_ref * x.cols);
    on_pool(parallel, || {
        with_safe_scale(x, reference.map(|r| r.0), |x, y, s| {
            let reference = y.zip(reference.map(|r| r.1));
            let mined = with_tile_shape!(
                widest::BATCH_HARD,
                T,
                run(x, labels, reference, metric, parallel)
            )?;
            let f = distance_factor(metric, s);
            Ok(mined.distances(metric, f))
        })
    })
}

/// Batch-hard picks of `x` (already in the safe range) against itself with
/// the picks' exact squared distances, for the loss.
pub(crate) fn batch_hard_picks<T: Real>(
    x: &Matrix<T>,
    labels: &[i64],
    metric: Metric,
    parallel: bool,
) -> Result<Picks> {
    with_tile_shape!(
        widest::BATCH_HARD,
        T,
        run(x, labels, None, metric, parallel)
    )
}

/// Per anchor the hardest positive and negative (-1 where none) and their
/// exact squared distances (f64, on the scaled data; NaN where none).
pub(crate) struct Picks {
    pub(crate) pos_idx: Vec<i64>,
    pub(crate) pos_d2: Vec<f64>,
    pub(crate) neg_idx: Vec<i64>,
    pub(crate) neg_d2: Vec<f64>,
}

impl Picks {
    /// The distances in the caller's units (`f`: the safe scale's factor).
    fn distances<T: Real>(self, metric: Metric, f: Pow2) -> BatchHard<T> {
        // NaN (no pick) stays NaN.
        let dist = |d2: &[f64]| -> Vec<T> {
            d2.iter()
                .map(|&v| T::from_f64(metric.from_d2(v) * f))
                .collect()
        };
        BatchHard {
            pos_dist: dist(&self.pos_d2),
            neg_dist: dist(&self.neg_d2),
            pos_idx: self.pos_idx,
            neg_idx: self.neg_idx,
        }
    }
}

fn run<T: Real, const MR: usize, const NR: usize>(
    x: &Matrix<T>,
    labels: &[i64],
    reference: Option<(&Matrix<T>, &[i64])>,
    metric: Metric,
    parallel: bool,
) -> Result<Picks> {
    let (cx, cy) = encode_labels(labels, reference.map(|r| r.1));
    let y = reference.map_or(*x, |r| *r.0);
    let nx = row_norms(x, metric, "X")?;
    let ny = match reference {
        Some((y, _)) => row_norms(y, metric, "Y")?,
        None => None,
    };
    let tf = Transform::new(x, reference.map(|r| r.0), nx.as_deref(), ny.as_deref());
    let (ylabels, yname) = if reference.is_some() {
        (&cy, "Y")
    } else {
        (&cx, "X")
    };
    // The two packings are independent: side by side, each fills a core.
    let pack_x = || prepare_anchors(x, &tf, MR, "X");
    let pack_y = || prepare_panels(&y, ylabels, &tf, reference.is_none(), NR, yname);
    let (anchors, panels) = if parallel {
        rayon::join(pack_x, pack_y)
    } else {
        (pack_x(), pack_y())
    };
    let (anchors, panels) = (anchors?, panels?);
    let exact = Exact {
        x: *x,
        y,
        nx: nx.as_deref(),
        ny: if reference.is_some() {
            ny.as_deref()
        } else {
            nx.as_deref()
        },
        metric,
    };
    let ctx = Ctx {
        anchors: &anchors,
        panels: &panels,
        xlab: &cx,
        ylab: ylabels,
        self_excluded: reference.is_none(),
        bound: ExpansionBound::for_metric::<T>(x.cols, metric),
        widest: widest::BATCH_HARD,
    };
    let rows = if reference.is_some() {
        scan_reference::<T, MR, NR>(&ctx, &exact, parallel)
    } else {
        scan_symmetric::<T, MR, NR>(&ctx, &exact, parallel)
    };
    let n = x.rows;
    let mut out = Picks {
        pos_idx: Vec::with_capacity(n),
        pos_d2: Vec::with_capacity(n),
        neg_idx: Vec::with_capacity(n),
        neg_d2: Vec::with_capacity(n),
    };
    for (pi, pd, ni, nd) in rows {
        out.pos_idx.push(pi);
        out.pos_d2.push(pd);
        out.neg_idx.push(ni);
        out.neg_d2.push(nd);
    }
    Ok(out)
}

/// Block `b` of the anchor rows `0..n`, blocks of [`ROW_BLOCK`].
fn block_rows(b: usize, n: usize) -> Range<usize> {
    (b * ROW_BLOCK)..((b + 1) * ROW_BLOCK).min(n)
}

/// Every block of anchors against every panel of a separate reference set.
fn scan_reference<T: Real, const MR: usize, const NR: usize>(
    ctx: &Ctx<T>,
    exact: &Exact<T>,
    parallel: bool,
) -> Vec<(i64, f64, i64, f64)> {
    let n = ctx.anchors.n;
    let np = ctx.panels.count();
    let blocks = map_range(parallel, n.div_ceil(ROW_BLOCK), |b| {
        let rows = block_rows(b, n);
        let mut states: Vec<RowState<T>> = rows.clone().map(|_| RowState::new()).collect();
        scan_block::<T, MR, NR>(ctx, rows.clone(), 0..np, &mut states, None);
        let r0 = rows.start;
        states
            .iter()
            .enumerate()
            .map(|(k, st)| finish_row(ctx, exact, r0 + k, st))
            .collect::<Vec<_>>()
    });
    blocks.into_iter().flatten().collect()
}

/// Symmetric: block pairs (I, J) with J >= I only. Diagonal blocks update
/// their own rows; the others also update the rows of J through the
/// transpose. Blocks are aligned to whole panels.
fn scan_symmetric<T: Real, const MR: usize, const NR: usize>(
    ctx: &Ctx<T>,
    exact: &Exact<T>,
    parallel: bool,
) -> Vec<(i64, f64, i64, f64)> {
    let n = ctx.anchors.n;
    let np = ctx.panels.count();
    let per_block = ROW_BLOCK / NR;
    let members = block_groups(n.div_ceil(ROW_BLOCK), parallel);
    let scanned = map_range(parallel, members.len(), |g| {
        let mut owned: OwnedRows<T> = Vec::new();
        let mut cols = ColumnStates::new();
        for &b in &members[g] {
            let rows = block_rows(b, n);
            let mut states: Vec<RowState<T>> = rows.clone().map(|_| RowState::new()).collect();
            let diag = b * per_block..(b + 1) * per_block;
            scan_block::<T, MR, NR>(ctx, rows.clone(), diag.clone(), &mut states, None);
            if diag.end < np {
                cols.ensure(n, NR);
                scan_block::<T, MR, NR>(ctx, rows, diag.end..np, &mut states, Some(&mut cols));
            }
            owned.push((b, states));
        }
        (owned, cols)
    });
    let (owned, cols) = scanned.into_iter().fold(
        (Vec::new(), ColumnStates::new()),
        |(mut oa, ca), (ob, cb)| {
            oa.extend(ob);
            (oa, ca.merge(cb))
        },
    );
    let mut states: Vec<Option<RowState<T>>> = (0..n).map(|_| None).collect();
    for (b, sts) in owned {
        for (k, st) in sts.into_iter().enumerate() {
            states[b * ROW_BLOCK + k] = Some(st);
        }
    }
    let mut cols = cols.states;
    if !cols.is_empty() {
        for (st, c) in states.iter_mut().zip(cols.drain(..)) {
            st.as_mut().expect("every row scanned").merge(c);
        }
    }
    map_range(parallel, n, |i| {
        let st = states[i].as_ref().expect("every row scanned");
        finish_row(ctx, exact, i, st)
    })
}

/// One group of blocks per thread, with one set of column states: fresh
/// column states accept every value until their bounds tighten, so each
/// extra group costs a scan's worth of offers. Blocks (work nblocks - b) go
/// largest first to the least loaded group.
fn block_groups(nblocks: usize, parallel: bool) -> Vec<Vec<usize>> {
    let threads = if parallel {
        rayon::current_num_threads()
    } else {
        1
    };
    let groups = threads.clamp(1, nblocks);
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); groups];
    let mut load = vec![0usize; groups];
    for b in 0..nblocks {
        let g = (0..groups).min_by_key(|&g| (load[g], g)).expect("a group");
        members[g].push(b);
        load[g] += nblocks - b;
    }
    members
}
