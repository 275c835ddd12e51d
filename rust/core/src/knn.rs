//! Exact k nearest neighbours, fused into the tiled distance kernel: the
//! N x M matrix is never stored, each row keeps O(k) state.
//!
//! As in batch-hard mining, the fast pass only screens: a row keeps the k
//! smallest upper bounds `v + w` of its approximate squared distances (their
//! largest, `tau`, bounds the true k-th distance from above) and every point
//! whose lower bound `v - w` is at most `tau`. The survivors are ranked by
//! exact f64 distances, ties by the lowest index; a row flooded with ties is
//! ranked by a full exact scan instead.

use std::ops::Range;

use rayon::prelude::*;

use crate::cosine_exact::repair_keys;
use crate::engine::{dispatch, widest, with_tile_shape, Kernel};
use crate::error::{CoreError, Result};
use crate::exact::Exact;
use crate::matrix::{check_same_dim, Matrix};
use crate::metric::Metric;
use crate::pack::{prepare_anchors, prepare_panels, row_norms, Anchors, Panels, Transform};
use crate::parallel::checkpoint;
use crate::real::Real;
use crate::scale::{distance_factor, with_safe_scale};
use crate::screen::{settle_top_k, CandidateSet, ExpansionBound};
use crate::tile::for_each_tile;

/// Row-major `n x k` neighbours of each query row, nearest first.
#[derive(Debug, Clone, PartialEq)]
pub struct Knn<T> {
    pub k: usize,
    pub indices: Vec<i64>,
    pub distances: Vec<T>,
}

/// Query rows per parallel task (a multiple of the tile height).
const ROW_BLOCK: usize = 96;

/// The screen of one query row: the k smallest upper bounds seen (their
/// largest, `tau`, bounds the true k-th distance from above) and every
/// point whose lower bound is at most `tau`.
struct TopK<T> {
    k: usize,
    /// The k smallest upper bounds seen, ascending.
    ubs: Vec<T>,
    tau: T,
    cands: Vec<(T, u32)>,
    cap: usize,
    overflow: bool,
}

impl<T: Real> TopK<T> {
    fn new(k: usize) -> Self {
        TopK {
            k,
            ubs: Vec::with_capacity(k + 1),
            tau: T::from_f64(T::MAX_FINITE / 4.0),
            cands: Vec::new(),
            cap: (4 * k).max(64),
            overflow: false,
        }
    }
}

impl<T: Real> CandidateSet for TopK<T> {
    type Key = T;
    type Index = u32;

    #[inline]
    fn offer(&mut self, v: T, w: T, j: u32) {
        let k = self.k;
        let lb = v - w;
        if lb > self.tau {
            return;
        }
        let ub = v + w;
        if self.ubs.len() < k || ub < self.ubs[k - 1] {
            let at = self.ubs.partition_point(|&u| u <= ub);
            self.ubs.insert(at, ub);
            self.ubs.truncate(k);
            if self.ubs.len() == k {
                self.tau = self.ubs[k - 1];
            }
        }
        if self.overflow {
            return;
        }
        self.cands.push((lb, j));
        if self.cands.len() >= self.cap {
            let tau = self.tau;
            self.cands.retain(|c| c.0 <= tau);
            if self.cands.len() >= self.cap / 2 {
                self.overflow = true;
                self.cands = Vec::new();
            }
        }
    }

    fn survivors(&self) -> Option<impl Iterator<Item = u32> + '_> {
        (!self.overflow).then(|| self.cands.iter().filter(|c| c.0 <= self.tau).map(|c| c.1))
    }
}

/// The `k` nearest rows of `reference` (or of `x` itself) for every row of
/// `x`. With `exclude_self` and no reference, a row is not its own
/// neighbour (other rows equal to it still are).
pub fn knn<T: Real>(
    x: &Matrix<T>,
    k: usize,
    reference: Option<&Matrix<T>>,
    metric: Metric,
    exclude_self: bool,
) -> Result<Knn<T>> {
    let y = reference.copied().unwrap_or(*x);
    check_same_dim(x, &y)?;
    let self_excluded = reference.is_none() && exclude_self;
    let available = y.rows - usize::from(self_excluded);
    if k == 0 || k > available {
        return Err(CoreError::InvalidValue {
            arg: "k",
            detail: format!(
                "k must be between 1 and {available} (the neighbours available), got {k}"
            ),
        });
    }
    with_safe_scale(x, reference, |x, y, s| {
        let mut out = with_tile_shape!(widest::KNN, T, run(x, k, y, metric, self_excluded))?;
        let f = distance_factor(metric, s);
        if !f.is_one() {
            for v in out.distances.iter_mut() {
                *v = T::from_f64(v.to_f64() * f);
            }
        }
        Ok(out)
    })
}

fn run<T: Real, const MR: usize, const NR: usize>(
    x: &Matrix<T>,
    k: usize,
    reference: Option<&Matrix<T>>,
    metric: Metric,
    self_excluded: bool,
) -> Result<Knn<T>> {
    let y = reference.copied().unwrap_or(*x);
    let nx = row_norms(x, metric, "X")?;
    let ny = match reference {
        Some(y) => row_norms(y, metric, "Y")?,
        None => None,
    };
    let tf = Transform::new(x, reference, nx.as_deref(), ny.as_deref());
    let anchors = prepare_anchors(x, &tf, MR, "X")?;
    let panels = prepare_panels(
        &y,
        &vec![0u32; y.rows],
        &tf,
        reference.is_none(),
        NR,
        if reference.is_some() { "Y" } else { "X" },
    )?;
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
        bound: ExpansionBound::for_metric::<T>(x.cols, metric),
        self_excluded,
    };
    let n = x.rows;
    let rows: Vec<Vec<(f64, usize)>> = (0..n.div_ceil(ROW_BLOCK))
        .into_par_iter()
        .panic_fuse()
        .flat_map_iter(|b| {
            checkpoint();
            let (r0, r1) = (b * ROW_BLOCK, ((b + 1) * ROW_BLOCK).min(n));
            let mut states: Vec<TopK<T>> = (r0..r1).map(|_| TopK::new(k)).collect();
            scan_block::<T, MR, NR>(&ctx, r0..r1, &mut states);
            states
                .into_iter()
                .enumerate()
                .map(|(o, st)| finish_row(&exact, r0 + o, k, &st, self_excluded))
                .collect::<Vec<_>>()
        })
        .collect();
    let mut out = Knn {
        k,
        indices: Vec::with_capacity(n * k),
        distances: Vec::with_capacity(n * k),
    };
    for row in rows {
        for (d2, j) in row {
            out.indices.push(j as i64);
            out.distances.push(T::from_f64(metric.from_d2(d2)));
        }
    }
    Ok(out)
}

struct Ctx<'a, T> {
    anchors: &'a Anchors<T>,
    panels: &'a Panels<T>,
    bound: ExpansionBound,
    self_excluded: bool,
}

/// Screens query rows `rows` against every panel, on the widest path k-NN takes.
fn scan_block<T: Real, const MR: usize, const NR: usize>(
    ctx: &Ctx<T>,
    rows: Range<usize>,
    states: &mut [TopK<T>],
) {
    struct Scan<'c, 'a, 's, T, const MR: usize, const NR: usize>(
        &'c Ctx<'a, T>,
        Range<usize>,
        &'s mut [TopK<T>],
    );
    impl<T: Real, const MR: usize, const NR: usize> Kernel for Scan<'_, '_, '_, T, MR, NR> {
        type Output = ();
        #[inline(always)]
        fn run<const FMA: bool>(self) {
            scan_block_impl::<T, MR, NR, FMA>(self.0, self.1, self.2)
        }
    }
    dispatch(widest::KNN, Scan::<T, MR, NR>(ctx, rows, states));
}

/// Query rows `rows` against every panel; the epilogue screens a tile row
/// with one vector compare before offering its points.
#[inline(always)]
fn scan_block_impl<T: Real, const MR: usize, const NR: usize, const FMA: bool>(
    ctx: &Ctx<T>,
    rows: Range<usize>,
    states: &mut [TopK<T>],
) {
    let (r0, r1) = (rows.start, rows.end);
    let padded_end = r0 + (r1 - r0).div_ceil(MR) * MR;
    let panels = ctx.panels;
    for_each_tile::<T, MR, NR, FMA, false, _>(
        ctx.anchors,
        panels,
        r0..padded_end,
        0..panels.count(),
        // Inlined so that it is compiled with the caller's target features.
        #[inline(always)]
        |r, p, acc| {
            let nb: &[T; NR] = panels.norms[p * NR..(p + 1) * NR].try_into().unwrap();
            let wmax = panels.max_norm[p].to_f64();
            let c0 = p * NR;
            let width = NR.min(panels.n - c0);
            for (rr, dots) in acc.iter().enumerate() {
                let i = r + rr;
                if i >= r1 {
                    break;
                }
                let st = &mut states[i - r0];
                let na = ctx.anchors.norms[i];
                let w = ctx.bound.at(na, wmax);
                let thr = st.tau + w;
                let mut hit = false;
                for c in 0..NR {
                    hit |= na + nb[c] - T::TWO * dots[c] <= thr;
                }
                if !hit {
                    continue;
                }
                for c in 0..width {
                    let j = c0 + c;
                    if !(ctx.self_excluded && j == i) {
                        st.offer(na + nb[c] - T::TWO * dots[c], w, j as u32);
                    }
                }
            }
        },
    );
}

/// Ranks a row's survivors (or, after an overflow, every point) by exact
/// squared distance, ties by index, and keeps the first `k`.
fn finish_row<T: Real>(
    exact: &Exact<T>,
    i: usize,
    k: usize,
    st: &TopK<T>,
    self_excluded: bool,
) -> Vec<(f64, usize)> {
    let mut ranked: Vec<(f64, usize)> = match st.survivors() {
        Some(it) => it.map(|j| (exact.d2(i, j as usize), j as usize)).collect(),
        None => (0..exact.y.rows)
            .filter(|&j| !(self_excluded && j == i))
            .map(|j| (exact.d2(i, j), j))
            .collect(),
    };
    if exact.metric == Metric::Cosine {
        repair_keys(exact, i, &mut ranked);
    }
    let ranked = settle_top_k(ranked, k);
    debug_assert_eq!(ranked.len(), k);
    ranked
}
