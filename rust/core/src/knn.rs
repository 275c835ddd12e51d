//! Exact k nearest neighbours, fused into the tiled distance kernel: the
//! N x M matrix is never stored, each row keeps O(k) state.
//!
//! As in batch-hard mining, the fast pass only screens: a row keeps the k
//! smallest upper bounds `v + w` of its approximate squared distances (their
//! largest, `tau`, bounds the true k-th distance from above) and every point
//! whose lower bound `v - w` is at most `tau`. The survivors are ranked by
//! exact f64 distances, ties by the lowest index; a row flooded with ties is
//! ranked by a full exact scan instead.
//!
//! A self-query keeps every row's screen alive (O(N k) state) and computes
//! each pair of row blocks once, offering every distance to both of its
//! rows ([`crate::knn_scan::scan_symmetric`]): half the multiply-adds. Any
//! screen that keeps every point that can reach the answer gives the same
//! settle, so the answer is bit for bit that of the plain scan.

use rayon::prelude::*;

use crate::cosine_exact::repair_keys;
use crate::engine::{prefetch, widest, with_tile_shape};
use crate::error::{CoreError, Result};
use crate::exact::Exact;
use crate::knn_scan::{scan, scan_symmetric, Ctx, RowStates};
use crate::matrix::{check_same_dim, Matrix};
use crate::metric::Metric;
use crate::pack::{prepare_anchors, prepare_panels, row_norms, Transform};
use crate::parallel::{checkpoint, map_range, on_pool, worth_parallel};
use crate::real::Real;
use crate::scale::{distance_factor, with_safe_scale};
use crate::screen::{settle_top_k, CandidateSet, ExpansionBound};

/// Row-major `n x k` neighbours of each query row, nearest first.
#[derive(Debug, Clone, PartialEq)]
pub struct Knn<T> {
    pub k: usize,
    pub indices: Vec<i64>,
    pub distances: Vec<T>,
}

/// Query rows per parallel task of the plain scan (a multiple of the tile
/// height and panel width).
const ROW_BLOCK: usize = 96;

/// The screen of one query row: the k smallest upper bounds seen (their
/// largest, `tau`, bounds the true k-th distance from above) and every
/// point whose lower bound is at most `tau`.
pub(crate) struct TopK<T> {
    k: usize,
    /// The k smallest upper bounds seen, ascending.
    ubs: Vec<T>,
    pub(crate) tau: T,
    cands: Vec<(T, u32)>,
    cap: usize,
    overflow: bool,
}

impl<T: Real> TopK<T> {
    pub(crate) fn new(k: usize) -> Self {
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

impl<T: Real> TopK<T> {
    /// Prefetches what an offer touches: the bounds and the next free slot.
    #[inline]
    pub(crate) fn prefetch(&self) {
        prefetch(self.ubs.as_ptr());
        prefetch(self.cands.as_ptr().wrapping_add(self.cands.len()));
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
    knn_with(x, k, reference, metric, exclude_self, true)
}

/// [`knn`], choosing the scan of a self-query: `symmetric` computes each
/// pair of row blocks once and offers it to both blocks' rows; without it
/// every row block scans every panel (the plain path, kept to test the
/// symmetric one against). The answer is the same, bit for bit.
#[doc(hidden)]
pub fn knn_with<T: Real>(
    x: &Matrix<T>,
    k: usize,
    reference: Option<&Matrix<T>>,
    metric: Metric,
    exclude_self: bool,
    symmetric: bool,
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
        let mut out = with_tile_shape!(
            widest::KNN,
            T,
            run(x, k, y, metric, self_excluded, symmetric)
        )?;
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
    symmetric: bool,
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
    let finish = |b: &RowStates<T>| -> Vec<(f64, usize)> {
        (b.first..)
            .zip(&b.states)
            .flat_map(|(i, st)| finish_row(&exact, i, k, st, self_excluded))
            .collect()
    };
    let rows: Vec<Vec<(f64, usize)>> = if reference.is_none() && symmetric {
        let parallel = worth_parallel(n * n / 2 * x.cols);
        on_pool(parallel, || {
            let blocks = scan_symmetric::<T, MR, NR>(&ctx, k, parallel);
            map_range(parallel, blocks.len(), |b| finish(&blocks[b]))
        })
    } else {
        (0..n.div_ceil(ROW_BLOCK))
            .into_par_iter()
            .panic_fuse()
            .map(|b| {
                checkpoint();
                let rows = (b * ROW_BLOCK)..((b + 1) * ROW_BLOCK).min(n);
                let mut block = RowStates::new(rows, k, NR);
                scan::<T, MR, NR>(&ctx, &mut block, 0..panels.count(), None);
                finish(&block)
            })
            .collect()
    };
    let mut out = Knn {
        k,
        indices: Vec::with_capacity(n * k),
        distances: Vec::with_capacity(n * k),
    };
    for (d2, j) in rows.into_iter().flatten() {
        out.indices.push(j as i64);
        out.distances.push(T::from_f64(metric.from_d2(d2)));
    }
    Ok(out)
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
