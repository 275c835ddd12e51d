//! The batch-hard scan: the tile epilogue that screens every reference
//! point of a tile against a row's two [`MinTrack`]s (farthest positive,
//! nearest negative), and the exact settle of a row. The Hausdorff scan
//! reuses it with every reference point a negative.

use std::ops::Range;

use crate::cosine_exact::repair_keys;
use crate::engine::{dispatch, min_neg_x32, pass_bits_x32, Kernel, Simd};
use crate::exact::Exact;
use crate::metric::Metric;
use crate::pack::{Anchors, Panels};
use crate::real::Real;
use crate::screen::{settle_best, CandidateSet, ExpansionBound, Extreme, MinTrack};
use crate::tile::for_each_tile;

/// Anchor rows per parallel task (a multiple of every tile height).
pub(crate) const ROW_BLOCK: usize = 96;

/// One row's two screens: the farthest positive (as the minimum of `-d2`)
/// and the nearest negative.
pub(crate) struct RowState<T> {
    pub(crate) pos: MinTrack<T>, // tracks -d2
    pub(crate) neg: MinTrack<T>,
}

impl<T: Real> RowState<T> {
    pub(crate) fn new() -> Self {
        RowState {
            pos: MinTrack::new(),
            neg: MinTrack::new(),
        }
    }

    pub(crate) fn merge(&mut self, other: RowState<T>) {
        self.pos.merge(other.pos);
        self.neg.merge(other.neg);
    }
}

/// Row states of the blocks a worker scanned, by block index.
pub(crate) type OwnedRows<T> = Vec<(usize, Vec<RowState<T>>)>;

/// Reductions of rows reached through the transpose of a tile (symmetric
/// case), one per row of X, kept per worker and merged at the end. The
/// bounds are mirrored in flat arrays (padded to whole panels) so a tile
/// loads its columns' thresholds as vectors.
pub(crate) struct ColumnStates<T> {
    pub(crate) states: Vec<RowState<T>>,
    best_neg: Vec<T>,
    best_pos: Vec<T>,
}

impl<T: Real> ColumnStates<T> {
    pub(crate) fn new() -> Self {
        ColumnStates {
            states: Vec::new(),
            best_neg: Vec::new(),
            best_pos: Vec::new(),
        }
    }

    pub(crate) fn ensure(&mut self, n: usize, nr: usize) {
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

    pub(crate) fn merge(mut self, other: Self) -> Self {
        if self.states.is_empty() {
            return other;
        }
        for (a, b) in self.states.iter_mut().zip(other.states) {
            a.merge(b);
        }
        self
    }
}

/// What a scan reads: the packed anchors and panels, the label codes and
/// the expansion's error bound.
pub(crate) struct Ctx<'a, T> {
    pub(crate) anchors: &'a Anchors<T>,
    pub(crate) panels: &'a Panels<T>,
    pub(crate) xlab: &'a [u32],
    pub(crate) ylab: &'a [u32],
    pub(crate) self_excluded: bool,
    pub(crate) bound: ExpansionBound,
    /// The widest path of the calling kernel (its tile shape's).
    pub(crate) widest: Simd,
}

/// Scans anchor rows `rows` against the panels `panels` on the widest
/// path `ctx.widest` (the tile shape `MR x NR` is that path's).
pub(crate) fn scan_block<T: Real, const MR: usize, const NR: usize>(
    ctx: &Ctx<T>,
    rows: Range<usize>,
    panels: Range<usize>,
    states: &mut [RowState<T>],
    cols: Option<&mut ColumnStates<T>>,
) {
    let scan = Scan::<T, MR, NR> {
        ctx,
        rows,
        panels,
        states,
        cols,
    };
    dispatch(ctx.widest, scan);
}

/// [`scan_block`]'s arguments, as a kernel body.
struct Scan<'c, 'a, 's, T, const MR: usize, const NR: usize> {
    ctx: &'c Ctx<'a, T>,
    rows: Range<usize>,
    panels: Range<usize>,
    states: &'s mut [RowState<T>],
    cols: Option<&'s mut ColumnStates<T>>,
}

impl<T: Real, const MR: usize, const NR: usize> Kernel for Scan<'_, '_, '_, T, MR, NR> {
    type Output = ();
    #[inline(always)]
    fn run<const FMA: bool>(self) {
        let Scan {
            ctx,
            rows,
            panels,
            states,
            cols,
        } = self;
        match cols {
            Some(cs) => {
                scan_block_impl::<T, MR, NR, FMA, true>(ctx, rows, panels, states, Some(cs))
            }
            None => scan_block_impl::<T, MR, NR, FMA, false>(ctx, rows, panels, states, None),
        }
    }
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
                wcol = ctx.bound.at(na_max, wmax);
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
                let w = ctx.bound.at(na, wmax);
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
                offer_columns::<T, MR, NR>(
                    ctx,
                    cs,
                    col_hit,
                    acc,
                    r..r1,
                    c0,
                    (nb, lab),
                    (&col_pos, &col_neg),
                    wcol,
                );
            }
        },
    );
}

/// The symmetric scan's transpose: offers the tile rows `rows` (from `r`,
/// ending before `r1`) to the reductions of the columns `c0 + c` whose bit
/// is set in `col_hit`, and mirrors those columns' bounds.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn offer_columns<T: Real, const MR: usize, const NR: usize>(
    ctx: &Ctx<T>,
    cs: &mut ColumnStates<T>,
    mut col_hit: u64,
    acc: &[[T; NR]; MR],
    rows: Range<usize>,
    c0: usize,
    (nb, lab): (&[T; NR], &[u32; NR]),
    (col_pos, col_neg): (&[T; NR], &[T; NR]),
    wcol: T,
) {
    while col_hit != 0 {
        let c = col_hit.trailing_zeros() as usize;
        col_hit &= col_hit - 1;
        let st = &mut cs.states[c0 + c];
        for (rr, dots) in acc.iter().enumerate() {
            let i = rows.start + rr;
            if i >= rows.end {
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
    if let Some(m) = min_neg_x32(dots, na, nb, lab, li) {
        return m;
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
    if let Some(masks) =
        pass_bits_x32::<T, NR, SYM>(dots, na, nb, lab, li, thr_pos, thr_neg, col_pos, col_neg)
    {
        return masks;
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

/// The extreme of query row `i`'s `(key, index)` candidates; under cosine
/// by the exact order of the distances ([`repair_keys`]).
fn settle_exact<T: Real>(
    exact: &Exact<T>,
    i: usize,
    mut cands: Vec<(f64, usize)>,
    extreme: Extreme,
) -> Option<(f64, usize)> {
    if exact.metric == Metric::Cosine && cands.len() > 1 {
        repair_keys(exact, i, &mut cands);
    }
    settle_best(cands.into_iter(), extreme)
}

/// Picks the exact extreme among a row's candidates (or by a full exact
/// scan): `(pos_idx, pos_d2, neg_idx, neg_d2)`.
pub(crate) fn finish_row<T: Real>(
    ctx: &Ctx<T>,
    exact: &Exact<T>,
    i: usize,
    st: &RowState<T>,
) -> (i64, f64, i64, f64) {
    let li = ctx.xlab[i];
    let n_ref = ctx.ylab.len();
    let is_pos = |j: usize| ctx.ylab[j] == li && !(ctx.self_excluded && j == i);
    let is_neg = |j: usize| ctx.ylab[j] != li;
    let keyed = |j: usize| (exact.d2(i, j), j);
    let pos: Vec<(f64, usize)> = match st.pos.survivors() {
        Some(it) => it.map(|j| keyed(j as usize)).collect(),
        None => (0..n_ref).filter(|&j| is_pos(j)).map(keyed).collect(),
    };
    let neg: Vec<(f64, usize)> = match st.neg.survivors() {
        Some(it) => it.map(|j| keyed(j as usize)).collect(),
        None => (0..n_ref).filter(|&j| is_neg(j)).map(keyed).collect(),
    };
    let pos = settle_exact(exact, i, pos, Extreme::Greatest);
    let neg = settle_exact(exact, i, neg, Extreme::Least);
    let fmt = |b: Option<(f64, usize)>| match b {
        Some((d2, j)) => (j as i64, d2),
        None => (-1, f64::NAN),
    };
    let (pi, pd) = fmt(pos);
    let (ni, nd) = fmt(neg);
    (pi, pd, ni, nd)
}
