//! Batch-hard mining: per anchor the farthest positive and the nearest
//! negative, fused into the tiled distance kernel.
//!
//! The fast pass uses the expansion `|a|^2 + |b|^2 - 2 a.b`, whose error is
//! bounded by `w = (d + 16) u (|a|^2 + |b|^2)`. Every reference point whose
//! approximate distance could still be the extreme one (within `w` of the
//! best bound so far) is kept as a candidate; the candidates are then
//! compared by exact f64 distances, so the index returned is the true
//! arg-max / arg-min (lowest index on ties). A row with too many
//! candidates (massive ties) is rescanned exactly.

use std::ops::Range;

use rayon::prelude::*;
use smallvec::SmallVec;

use crate::error::Result;
use crate::exact::Exact;
use crate::metric::Metric;
use crate::parallel::{map_range, on_pool, worth_parallel};
use crate::prep::{
    check_labels, check_same_dim, encode_labels, prepare_anchors, prepare_panels, row_norms,
    Anchors, Matrix, Panels, Transform,
};
use crate::real::Real;
use crate::scale::{distance_factor, with_safe_scale};
use crate::tile::{for_each_tile, is_f32, simd_level, with_tile_shape, Simd};

/// Per-anchor result; `-1` / NaN where an anchor has no positive or negative.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchHard<T> {
    pub pos_idx: Vec<i64>,
    pub pos_dist: Vec<T>,
    pub neg_idx: Vec<i64>,
    pub neg_dist: Vec<T>,
}

/// Candidate capacity per row before it is pruned, then declared overflowed.
const CAP: usize = 64;
/// Candidates held without a heap allocation (most rows end with one or two).
const INLINE: usize = 4;
/// Anchor rows per parallel task (a multiple of the tile height).
const ROW_BLOCK: usize = 96;

/// Tracks the minimum of values known to within `+-w`: a rigorous upper
/// bound `best` on the minimum and every index whose lower bound is below it.
struct MinTrack<T> {
    best: T,
    cands: SmallVec<[(T, u32); INLINE]>,
    overflow: bool,
}

impl<T: Real> MinTrack<T> {
    fn new() -> Self {
        MinTrack {
            best: T::from_f64(T::MAX_FINITE / 4.0),
            cands: SmallVec::new(),
            overflow: false,
        }
    }

    #[inline]
    fn offer(&mut self, v: T, w: T, j: u32) {
        let lb = v - w;
        if lb > self.best {
            return;
        }
        let ub = v + w;
        if ub < self.best {
            self.best = ub;
            // Pruning as the bound tightens keeps the list at the few
            // genuinely tied candidates (memory O(1) per row).
            let best = self.best;
            self.cands.retain(|c| c.0 <= best);
        }
        if self.overflow {
            return;
        }
        self.cands.push((lb, j));
        if self.cands.len() >= CAP {
            let best = self.best;
            self.cands.retain(|c| c.0 <= best);
            if self.cands.len() >= CAP / 2 {
                self.overflow = true;
                self.cands = SmallVec::new();
            }
        }
    }

    /// Joins the evidence of two scans of disjoint column sets.
    fn merge(&mut self, other: MinTrack<T>) {
        if other.best < self.best {
            self.best = other.best;
        }
        self.overflow |= other.overflow;
        if self.overflow {
            self.cands = SmallVec::new();
        } else {
            self.cands.extend(other.cands);
        }
    }

    /// The surviving candidates, or `None` when the row must be rescanned.
    fn survivors(&self) -> Option<impl Iterator<Item = usize> + '_> {
        (!self.overflow).then(|| {
            self.cands
                .iter()
                .filter(|c| c.0 <= self.best)
                .map(|c| c.1 as usize)
        })
    }
}

struct RowState<T> {
    pos: MinTrack<T>, // tracks -d2
    neg: MinTrack<T>,
}

impl<T: Real> RowState<T> {
    fn new() -> Self {
        RowState {
            pos: MinTrack::new(),
            neg: MinTrack::new(),
        }
    }

    fn merge(&mut self, other: RowState<T>) {
        self.pos.merge(other.pos);
        self.neg.merge(other.neg);
    }
}

/// Row states of the blocks a worker scanned, by block index.
type OwnedRows<T> = Vec<(usize, Vec<RowState<T>>)>;

/// Reductions of rows reached through the transpose of a tile (symmetric
/// case), one per row of X, kept per worker and merged at the end. The
/// bounds are mirrored in flat arrays (padded to whole panels) so a tile
/// loads its columns' thresholds as vectors.
struct ColumnStates<T> {
    states: Vec<RowState<T>>,
    best_neg: Vec<T>,
    best_pos: Vec<T>,
}

impl<T: Real> ColumnStates<T> {
    fn new() -> Self {
        ColumnStates {
            states: Vec::new(),
            best_neg: Vec::new(),
            best_pos: Vec::new(),
        }
    }

    fn ensure(&mut self, n: usize, nr: usize) {
        if self.states.is_empty() {
            self.states = (0..n).map(|_| RowState::new()).collect();
            let padded = n.div_ceil(nr) * nr;
            // Padding columns get bounds no value can pass.
            let never = T::ZERO - T::from_f64(T::MAX_FINITE / 4.0);
            self.best_neg = vec![never; padded];
            self.best_pos = vec![never; padded];
            for j in 0..n {
                self.best_neg[j] = self.states[j].neg.best;
                self.best_pos[j] = self.states[j].pos.best;
            }
        }
    }

    fn merge(mut self, other: Self) -> Self {
        if self.states.is_empty() {
            return other;
        }
        for (a, b) in self.states.iter_mut().zip(other.states) {
            a.merge(b);
        }
        self
    }
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
            let mined = with_tile_shape!(T, run(x, labels, reference, metric, parallel))?;
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
    with_tile_shape!(T, run(x, labels, None, metric, parallel))
}

/// Per anchor the hardest positive and negative (-1 where none) and their
/// exact squared distances (f64, on the scaled data; NaN where none).
pub(crate) struct Picks {
    pub pos_idx: Vec<i64>,
    pub pos_d2: Vec<f64>,
    pub neg_idx: Vec<i64>,
    pub neg_d2: Vec<f64>,
}

impl Picks {
    /// The distances in the caller's units (`f`: the safe scale's factor).
    fn distances<T: Real>(self, metric: Metric, f: f64) -> BatchHard<T> {
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
        kcoef: (x.cols as f64 + 16.0) * T::UNIT_ROUNDOFF,
        tiny: (x.cols as f64 + 16.0) * T::MIN_NORMAL,
    };
    let simd = simd_level();
    let n = x.rows;
    let nblocks = n.div_ceil(ROW_BLOCK);
    let block_rows = |b: usize| (b * ROW_BLOCK)..((b + 1) * ROW_BLOCK).min(n);
    let np = panels.count();
    let rows: Vec<(i64, f64, i64, f64)> = if reference.is_some() {
        let blocks = map_range(parallel, nblocks, |b| {
            let rows = block_rows(b);
            let mut states: Vec<RowState<T>> = rows.clone().map(|_| RowState::new()).collect();
            scan_block::<T, MR, NR>(&ctx, rows.clone(), 0..np, &mut states, None, simd);
            let r0 = rows.start;
            states
                .iter()
                .enumerate()
                .map(|(k, st)| finish_row(&ctx, &exact, r0 + k, st))
                .collect::<Vec<_>>()
        });
        blocks.into_iter().flatten().collect()
    } else {
        // Symmetric: block pairs (I, J) with J >= I only. Diagonal blocks
        // update their own rows; the others also update the rows of J
        // through the transpose. Blocks are aligned to whole panels.
        let per_block = ROW_BLOCK / NR;
        // One group of blocks per thread, with one set of column states:
        // fresh column states accept every value until their bounds tighten,
        // so each extra group costs a scan's worth of offers. Blocks (work
        // nblocks - b) go largest first to the least loaded group.
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
        let scanned = map_range(parallel, groups, |g| {
            let mut owned: OwnedRows<T> = Vec::new();
            let mut cols = ColumnStates::new();
            for &b in &members[g] {
                let rows = block_rows(b);
                let mut states: Vec<RowState<T>> = rows.clone().map(|_| RowState::new()).collect();
                let diag = b * per_block..(b + 1) * per_block;
                scan_block::<T, MR, NR>(&ctx, rows.clone(), diag.clone(), &mut states, None, simd);
                if diag.end < np {
                    cols.ensure(n, NR);
                    scan_block::<T, MR, NR>(
                        &ctx,
                        rows,
                        diag.end..np,
                        &mut states,
                        Some(&mut cols),
                        simd,
                    );
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
            finish_row(&ctx, &exact, i, st)
        })
    };
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

struct Ctx<'a, T> {
    anchors: &'a Anchors<T>,
    panels: &'a Panels<T>,
    xlab: &'a [u32],
    ylab: &'a [u32],
    self_excluded: bool,
    kcoef: f64,
    tiny: f64,
}

fn scan_block<T: Real, const MR: usize, const NR: usize>(
    ctx: &Ctx<T>,
    rows: Range<usize>,
    panels: Range<usize>,
    states: &mut [RowState<T>],
    cols: Option<&mut ColumnStates<T>>,
    simd: Simd,
) {
    #[cfg(target_arch = "x86_64")]
    if simd == Simd::Avx512 {
        // SAFETY: the CPU supports AVX-512F/VL, AVX2 and FMA (checked at run time).
        return unsafe {
            match cols {
                Some(cs) => {
                    scan_block_avx512::<T, MR, NR, true>(ctx, rows, panels, states, Some(cs))
                }
                None => scan_block_avx512::<T, MR, NR, false>(ctx, rows, panels, states, None),
            }
        };
    }
    #[cfg(target_arch = "x86_64")]
    if simd == Simd::Avx2 {
        // SAFETY: the CPU supports AVX2 and FMA (checked at run time).
        return unsafe {
            match cols {
                Some(cs) => scan_block_avx2::<T, MR, NR, true>(ctx, rows, panels, states, Some(cs)),
                None => scan_block_avx2::<T, MR, NR, false>(ctx, rows, panels, states, None),
            }
        };
    }
    let _ = simd;
    match cols {
        Some(cs) => scan_block_impl::<T, MR, NR, false, true>(ctx, rows, panels, states, Some(cs)),
        None => scan_block_impl::<T, MR, NR, false, false>(ctx, rows, panels, states, None),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn scan_block_avx2<T: Real, const MR: usize, const NR: usize, const SYM: bool>(
    ctx: &Ctx<T>,
    rows: Range<usize>,
    panels: Range<usize>,
    states: &mut [RowState<T>],
    cols: Option<&mut ColumnStates<T>>,
) {
    scan_block_impl::<T, MR, NR, true, SYM>(ctx, rows, panels, states, cols)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
unsafe fn scan_block_avx512<T: Real, const MR: usize, const NR: usize, const SYM: bool>(
    ctx: &Ctx<T>,
    rows: Range<usize>,
    panels: Range<usize>,
    states: &mut [RowState<T>],
    cols: Option<&mut ColumnStates<T>>,
) {
    scan_block_impl::<T, MR, NR, true, SYM>(ctx, rows, panels, states, cols)
}

/// Offers reference point `j` at approximate squared distance `v` to a row.
#[inline(always)]
fn offer<T: Real>(st: &mut RowState<T>, same: bool, v: T, w: T, j: usize) {
    if same {
        st.pos.offer(T::ZERO - v, w, j as u32);
    } else {
        st.neg.offer(v, w, j as u32);
    }
}

/// Scans anchor rows `rows` against the panels `panel_range`, updating the
/// rows' reductions in `states` and, with `SYM` (symmetric off-diagonal
/// blocks), the reductions in `cols` of the panels' own rows.
#[inline(always)]
fn scan_block_impl<T: Real, const MR: usize, const NR: usize, const FMA: bool, const SYM: bool>(
    ctx: &Ctx<T>,
    rows: Range<usize>,
    panel_range: Range<usize>,
    states: &mut [RowState<T>],
    mut cols: Option<&mut ColumnStates<T>>,
) {
    const { assert!(NR <= 64, "column bit masks are u64") };
    let (r0, r1) = (rows.start, rows.end);
    let padded_end = r0 + (r1 - r0).div_ceil(MR) * MR;
    let panels = ctx.panels;
    let fresh = MinTrack::<T>::new().best;
    for_each_tile::<T, MR, NR, FMA, false, _>(
        ctx.anchors,
        panels,
        r0..padded_end,
        panel_range,
        // Inlined so that it is compiled with the caller's target features.
        #[inline(always)]
        |r, p, acc| {
            let nb: &[T; NR] = panels.norms[p * NR..(p + 1) * NR].try_into().unwrap();
            let lab: &[u32; NR] = panels.labels[p * NR..(p + 1) * NR].try_into().unwrap();
            let wmax = panels.max_norm[p].to_f64();
            let c0 = p * NR;
            let width = NR.min(panels.n - c0);
            // Padding columns never pass (norm +inf, a label no row has); the mask
            // makes it explicit.
            let valid: u64 = if width == 64 { !0 } else { (1u64 << width) - 1 };
            // Column thresholds, from the flat bounds (padding never passes).
            let mut col_neg = [T::ZERO; NR];
            let mut col_pos = [T::ZERO; NR];
            let mut wcol = T::ZERO;
            if SYM {
                let cs = cols
                    .as_deref()
                    .expect("column states in the symmetric scan");
                let na_max = (r..(r + MR).min(r1))
                    .map(|i| ctx.anchors.norms[i])
                    .fold(T::ZERO, |a, b| if b > a { b } else { a });
                wcol = T::from_f64(ctx.kcoef * (na_max.to_f64() + wmax) + ctx.tiny);
                let bn: &[T; NR] = cs.best_neg[c0..c0 + NR].try_into().unwrap();
                let bp: &[T; NR] = cs.best_pos[c0..c0 + NR].try_into().unwrap();
                for c in 0..NR {
                    col_neg[c] = bn[c] + wcol;
                    col_pos[c] = T::ZERO - bp[c] - wcol;
                }
            }
            // Bit c: column c passed a threshold. Only those are offered: a
            // value that fails a bound cannot pass it after the bound tightens.
            let mut col_hit: u64 = 0;
            for (rr, dots) in acc.iter().enumerate() {
                let i = r + rr;
                if i >= r1 {
                    break;
                }
                let st = &mut states[i - r0];
                let na = ctx.anchors.norms[i];
                let li = ctx.xlab[i];
                let w = T::from_f64(ctx.kcoef * (na.to_f64() + wmax) + ctx.tiny);
                let mut thr_neg = st.neg.best + w;
                if st.neg.best >= fresh {
                    // A fresh row would take every negative of the tile; the
                    // tile's nearest, v, bounds the minimum by v + w, so values
                    // above v + 3w (one w of slack) could only be pruned later.
                    let v = tile_min_neg::<T, NR>(dots, na, nb, lab, li);
                    let thr = v + (w + w + w);
                    if thr < thr_neg {
                        thr_neg = thr;
                    }
                }
                let thr_pos = T::ZERO - st.pos.best - w;
                let (mut hit, col) = pass_bits::<T, NR, SYM>(
                    dots, na, nb, lab, li, thr_pos, thr_neg, &col_pos, &col_neg,
                );
                col_hit |= col;
                hit &= valid;
                while hit != 0 {
                    let c = hit.trailing_zeros() as usize;
                    hit &= hit - 1;
                    let j = c0 + c;
                    if !(ctx.self_excluded && j == i && lab[c] == li) {
                        offer(st, lab[c] == li, squared_key(na, nb[c], dots[c]), w, j);
                    }
                }
            }
            col_hit &= valid;
            if SYM && col_hit != 0 {
                let cs = cols
                    .as_deref_mut()
                    .expect("column states in the symmetric scan");
                while col_hit != 0 {
                    let c = col_hit.trailing_zeros() as usize;
                    col_hit &= col_hit - 1;
                    let st = &mut cs.states[c0 + c];
                    for (rr, dots) in acc.iter().enumerate() {
                        let i = r + rr;
                        if i >= r1 {
                            break;
                        }
                        let (na, li) = (ctx.anchors.norms[i], ctx.xlab[i]);
                        let (same, v) = (lab[c] == li, squared_key(na, nb[c], dots[c]));
                        if (same & (v >= col_pos[c])) | (!same & (v <= col_neg[c])) {
                            offer(st, same, v, wcol, i);
                        }
                    }
                    cs.best_neg[c0 + c] = st.neg.best;
                    cs.best_pos[c0 + c] = st.pos.best;
                }
            }
        },
    );
}

/// The scan's approximate squared distance `(na + nb) - 2 dot`: every test
/// and offer uses these operations (the SIMD paths too), so the same bits.
#[inline(always)]
fn squared_key<T: Real>(na: T, nb: T, dot: T) -> T {
    na + nb - T::TWO * dot
}

/// For one tile row, the least `v = na + nb - 2 dot` over the columns of
/// another label (+inf where there are none; padding columns are +inf).
#[inline(always)]
fn tile_min_neg<T: Real, const NR: usize>(
    dots: &[T; NR],
    na: T,
    nb: &[T; NR],
    lab: &[u32; NR],
    li: u32,
) -> T {
    #[cfg(target_arch = "x86_64")]
    if NR == 32 && is_f32::<T>() && simd_level() == Simd::Avx512 {
        let f = |v: &[T; NR]| v.as_ptr().cast::<f32>();
        // SAFETY: T is f32 and NR is 32 (checked); the CPU has AVX-512F (checked at run time).
        let m =
            unsafe { wide::min_neg_f32x32(f(dots), na.to_f64() as f32, f(nb), lab.as_ptr(), li) };
        return T::from_f64(f64::from(m));
    }
    let mut m = T::INFINITY;
    for c in 0..NR {
        let v = squared_key(na, nb[c], dots[c]);
        if lab[c] != li && v < m {
            m = v;
        }
    }
    m
}

/// For one tile row: bit c of the first mask is set where column c passes
/// the row's thresholds (`v >= thr_pos` for a same-label column, `v <=
/// thr_neg` otherwise, `v = na + nb - 2 dot`), of the second (with `SYM`)
/// where it passes the column's own thresholds.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn pass_bits<T: Real, const NR: usize, const SYM: bool>(
    dots: &[T; NR],
    na: T,
    nb: &[T; NR],
    lab: &[u32; NR],
    li: u32,
    thr_pos: T,
    thr_neg: T,
    col_pos: &[T; NR],
    col_neg: &[T; NR],
) -> (u64, u64) {
    #[cfg(target_arch = "x86_64")]
    if NR == 32 && is_f32::<T>() && simd_level() == Simd::Avx512 {
        let f = |v: &[T; NR]| v.as_ptr().cast::<f32>();
        let one = |v: T| -> f32 { v.to_f64() as f32 };
        // SAFETY: T is f32 and NR is 32 (checked); the CPU has AVX-512F (checked at run time).
        return unsafe {
            wide::pass_bits_f32x32::<SYM>(
                f(dots),
                one(na),
                f(nb),
                lab.as_ptr(),
                li,
                one(thr_pos),
                one(thr_neg),
                f(col_pos),
                f(col_neg),
            )
        };
    }
    let (mut row, mut col) = (0u64, 0u64);
    for c in 0..NR {
        let v = squared_key(na, nb[c], dots[c]);
        let same = lab[c] == li;
        let pass = (same & (v >= thr_pos)) | (!same & (v <= thr_neg));
        row |= (pass as u64) << c;
        if SYM {
            let pass = (same & (v >= col_pos[c])) | (!same & (v <= col_neg[c]));
            col |= (pass as u64) << c;
        }
    }
    (row, col)
}

#[cfg(target_arch = "x86_64")]
mod wide {
    use std::arch::x86_64::*;

    /// [`super::pass_bits`] for 32 f32 columns in two 16-lane registers: the
    /// same IEEE operations per lane (`(na + nb) - 2 dot`), so the same bits.
    ///
    /// # Safety
    /// Every pointer holds 32 values; the CPU has AVX-512F.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn pass_bits_f32x32<const SYM: bool>(
        dots: *const f32,
        na: f32,
        nb: *const f32,
        lab: *const u32,
        li: u32,
        thr_pos: f32,
        thr_neg: f32,
        col_pos: *const f32,
        col_neg: *const f32,
    ) -> (u64, u64) {
        let na = _mm512_set1_ps(na);
        let (tp, tn) = (_mm512_set1_ps(thr_pos), _mm512_set1_ps(thr_neg));
        let li = _mm512_set1_epi32(li as i32);
        let (mut row, mut col) = (0u64, 0u64);
        for h in 0..2 {
            let o = 16 * h;
            let v = squared_keys(na, nb.add(o), dots.add(o));
            let same = _mm512_cmpeq_epi32_mask(_mm512_loadu_si512(lab.add(o).cast()), li);
            let ge = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(v, tp);
            let le = _mm512_cmp_ps_mask::<_CMP_LE_OQ>(v, tn);
            row |= u64::from((same & ge) | (!same & le)) << o;
            if SYM {
                let ge = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(v, _mm512_loadu_ps(col_pos.add(o)));
                let le = _mm512_cmp_ps_mask::<_CMP_LE_OQ>(v, _mm512_loadu_ps(col_neg.add(o)));
                col |= u64::from((same & ge) | (!same & le)) << o;
            }
        }
        (row, col)
    }

    /// [`super::squared_key`] for 16 columns.
    ///
    /// # Safety
    /// `nb` and `dots` hold 16 values; the CPU has AVX-512F.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn squared_keys(na: __m512, nb: *const f32, dots: *const f32) -> __m512 {
        _mm512_sub_ps(
            _mm512_add_ps(na, _mm512_loadu_ps(nb)),
            _mm512_mul_ps(_mm512_set1_ps(2.0), _mm512_loadu_ps(dots)),
        )
    }

    /// [`super::tile_min_neg`] for 32 f32 columns, with the same per-lane operations.
    ///
    /// # Safety
    /// Every pointer holds 32 values; the CPU has AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn min_neg_f32x32(
        dots: *const f32,
        na: f32,
        nb: *const f32,
        lab: *const u32,
        li: u32,
    ) -> f32 {
        let na = _mm512_set1_ps(na);
        let li = _mm512_set1_epi32(li as i32);
        let mut m = _mm512_set1_ps(f32::INFINITY);
        for h in 0..2 {
            let o = 16 * h;
            let v = squared_keys(na, nb.add(o), dots.add(o));
            let other = _mm512_cmpneq_epi32_mask(_mm512_loadu_si512(lab.add(o).cast()), li);
            m = _mm512_mask_min_ps(m, other, m, v);
        }
        _mm512_reduce_min_ps(m)
    }
}

/// Picks the exact extreme among a row's candidates (or by a full exact
/// scan): `(pos_idx, pos_d2, neg_idx, neg_d2)`.
fn finish_row<T: Real>(
    ctx: &Ctx<T>,
    exact: &Exact<T>,
    i: usize,
    st: &RowState<T>,
) -> (i64, f64, i64, f64) {
    let li = ctx.xlab[i];
    let n_ref = ctx.ylab.len();
    let is_pos = |j: usize| ctx.ylab[j] == li && !(ctx.self_excluded && j == i);
    let is_neg = |j: usize| ctx.ylab[j] != li;
    // (d2, j) ordered so that `better` picks the wanted extreme, lowest j on ties.
    let pick = |cands: &mut dyn Iterator<Item = usize>, farthest: bool| -> Option<(f64, usize)> {
        let mut best: Option<(f64, usize)> = None;
        for j in cands {
            let v = exact.d2(i, j);
            let better = match best {
                None => true,
                Some((bv, bj)) => {
                    if farthest {
                        v > bv || (v == bv && j < bj)
                    } else {
                        v < bv || (v == bv && j < bj)
                    }
                }
            };
            if better {
                best = Some((v, j));
            }
        }
        best
    };
    let pos = match st.pos.survivors() {
        Some(mut it) => pick(&mut it, true),
        None => pick(&mut (0..n_ref).filter(|&j| is_pos(j)), true),
    };
    let neg = match st.neg.survivors() {
        Some(mut it) => pick(&mut it, false),
        None => pick(&mut (0..n_ref).filter(|&j| is_neg(j)), false),
    };
    let fmt = |b: Option<(f64, usize)>| match b {
        Some((d2, j)) => (j as i64, d2),
        None => (-1, f64::NAN),
    };
    let (pi, pd) = fmt(pos);
    let (ni, nd) = fmt(neg);
    (pi, pd, ni, nd)
}

/// Panels per step of the early-exit scan.
const NN_CHUNK: usize = 8;

/// For `max_i min_j d(x_i, y_j)` (directed Hausdorff): the nearest row of
/// `y` for every row of `x` that can still attain the maximum, `None` for
/// the rows proved unable to. Chunks of `y` are visited in a fixed
/// scattered order; a shared lower bound on the answer (exact nearest
/// distances of finished rows) retires a row as soon as its rigorous upper
/// bound is strictly below it, so a retired row cannot even tie. This is
/// the early break of scipy's algorithm, applied per tile.
pub(crate) fn nearest_for_max<T: Real>(x: &Matrix<T>, y: &Matrix<T>) -> Result<Vec<Option<usize>>> {
    with_tile_shape!(T, nearest_for_max_impl(x, y))
}

fn nearest_for_max_impl<T: Real, const MR: usize, const NR: usize>(
    x: &Matrix<T>,
    y: &Matrix<T>,
) -> Result<Vec<Option<usize>>> {
    use std::sync::atomic::{AtomicU64, Ordering};
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
        kcoef: (x.cols as f64 + 16.0) * T::UNIT_ROUNDOFF,
        tiny: (x.cols as f64 + 16.0) * T::MIN_NORMAL,
    };
    let simd = simd_level();
    let np = panels.count();
    let nchunks = np.div_ceil(NN_CHUNK);
    // A fixed scattered visiting order: a stride coprime with the count.
    let stride = (1..=nchunks)
        .rev()
        .find(|s| gcd(*s, nchunks) == 1 && *s * 5 <= nchunks * 3)
        .unwrap_or(1);
    let order: Vec<usize> = (0..nchunks).map(|k| (k * stride) % nchunks).collect();
    // Lower bound on the answer, squared; non-negative f64 bits order like the values.
    let lower = AtomicU64::new(0f64.to_bits());
    let n = x.rows;
    let rows: Vec<Option<usize>> = (0..n.div_ceil(ROW_BLOCK))
        .into_par_iter()
        .flat_map_iter(|b| {
            let (r0, r1) = (b * ROW_BLOCK, ((b + 1) * ROW_BLOCK).min(n));
            let len = r1 - r0;
            let mut states: Vec<RowState<T>> = (0..len).map(|_| RowState::new()).collect();
            let mut active = vec![true; len];
            // The chunks at the block's own relative position go first: for two
            // embeddings of the same points in the same order (a noisy copy) the
            // nearest row is there, so the rows' bounds are tight from the start
            // and most rows retire after one chunk. Only the order changes.
            let home0 = (r0 * y.rows / n) / (NR * NN_CHUNK);
            let home1 = ((r1 * y.rows).div_ceil(n))
                .div_ceil(NR * NN_CHUNK)
                .min(nchunks);
            let home = home0..home1.max(home0 + 1).min(nchunks);
            let visits = home
                .clone()
                .chain(order.iter().copied().filter(|c| !home.contains(c)));
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
                let lo = f64::from_bits(lower.load(Ordering::Relaxed));
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
                            &ctx,
                            r0 + g..r0 + ge,
                            prange.clone(),
                            &mut states[g..ge],
                            None,
                            simd,
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
                let j = finish_row(&ctx, &exact, i, st).2 as usize;
                // A rigorous lower bound on this row's exact nearest distance, squared.
                let d2 = exact.d2(i, j) * (1.0 - 1e-12);
                lower.fetch_max(d2.to_bits(), Ordering::Relaxed);
                out.push(Some(j));
            }
            out
        })
        .collect();
    Ok(rows)
}

pub(crate) fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}
