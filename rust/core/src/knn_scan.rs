//! The k-NN scan: the tile epilogue that screens a tile against its rows'
//! top-k (and, in a self-query, against its columns' top-k too), and the
//! schedule of the symmetric self-query, which computes each pair of row
//! blocks once and offers every distance to both of its rows.

use std::ops::Range;

use rayon::prelude::*;

use crate::engine::{dispatch, knn_bits_x32, widest, Kernel};
use crate::knn::TopK;
use crate::pack::{Anchors, Panels};
use crate::parallel::checkpoint;
use crate::real::Real;
use crate::screen::{CandidateSet, ExpansionBound};
use crate::tile::for_each_tile;

/// Rows per block of the symmetric scan (a multiple of every tile height
/// and panel width): a pair of blocks is one task, a round has about
/// `N / 768` of them. 384 took about 0.8x the CPU time of 192 at N = 30,000
/// (the screens are fetched once per pair); 768 was within the noise of 384
/// on a loaded 2-core machine, with half the tasks per round to balance.
const SYM_BLOCK: usize = 384;

/// What a scan reads: the packed anchors and panels and the expansion's
/// error bound.
pub(crate) struct Ctx<'a, T> {
    pub(crate) anchors: &'a Anchors<T>,
    pub(crate) panels: &'a Panels<T>,
    pub(crate) bound: ExpansionBound,
    pub(crate) self_excluded: bool,
}

/// The screens of rows `first..first + states.len()` (`first` a multiple
/// of the panel width), with their bounds `tau` mirrored in a flat array
/// padded to whole panels, so that a tile loads its columns' thresholds as
/// vectors.
pub(crate) struct RowStates<T> {
    pub(crate) first: usize,
    pub(crate) states: Vec<TopK<T>>,
    tau: Vec<T>,
}

impl<T: Real> RowStates<T> {
    pub(crate) fn new(rows: Range<usize>, k: usize, nr: usize) -> Self {
        let states: Vec<TopK<T>> = rows.clone().map(|_| TopK::new(k)).collect();
        // Padding columns get a bound no value can pass.
        let never = T::ZERO - T::from_f64(T::MAX_FINITE / 4.0);
        let mut tau = vec![never; rows.len().div_ceil(nr) * nr];
        for (t, st) in tau.iter_mut().zip(&states) {
            *t = st.tau;
        }
        RowStates {
            first: rows.start,
            states,
            tau,
        }
    }

    /// The panels holding these rows as reference points.
    fn panels(&self, nr: usize) -> Range<usize> {
        self.first / nr..(self.first + self.states.len()).div_ceil(nr)
    }
}

/// Screens the rows of `rows` (as anchors) against the panels `panels`;
/// with `cols`, the rows those panels hold (a block of its own, disjoint
/// from `rows`), also screens each distance for the column's row.
pub(crate) fn scan<T: Real, const MR: usize, const NR: usize>(
    ctx: &Ctx<T>,
    rows: &mut RowStates<T>,
    panels: Range<usize>,
    cols: Option<&mut RowStates<T>>,
) {
    struct Scan<'c, 'a, 's, T, const MR: usize, const NR: usize> {
        ctx: &'c Ctx<'a, T>,
        rows: &'s mut RowStates<T>,
        panels: Range<usize>,
        cols: Option<&'s mut RowStates<T>>,
    }
    impl<T: Real, const MR: usize, const NR: usize> Kernel for Scan<'_, '_, '_, T, MR, NR> {
        type Output = ();
        #[inline(always)]
        fn run<const FMA: bool>(self) {
            let Scan {
                ctx,
                rows,
                panels,
                cols,
            } = self;
            match cols {
                Some(cs) => scan_impl::<T, MR, NR, FMA, true>(ctx, rows, panels, Some(cs)),
                None => scan_impl::<T, MR, NR, FMA, false>(ctx, rows, panels, None),
            }
        }
    }
    let scan = Scan::<T, MR, NR> {
        ctx,
        rows,
        panels,
        cols,
    };
    dispatch(widest::KNN, scan);
}

/// [`scan`] on one code path. A tile row is screened with one vector
/// compare per threshold; only the columns that pass are offered (a value
/// that fails a bound cannot pass it after the bound tightens).
#[inline(always)]
fn scan_impl<T: Real, const MR: usize, const NR: usize, const FMA: bool, const SYM: bool>(
    ctx: &Ctx<T>,
    rows: &mut RowStates<T>,
    panel_range: Range<usize>,
    mut cols: Option<&mut RowStates<T>>,
) {
    const { assert!(NR <= 64, "column bit masks are u64") };
    let (r0, r1) = (rows.first, rows.first + rows.states.len());
    let padded_end = r0 + (r1 - r0).div_ceil(MR) * MR;
    let panels = ctx.panels;
    for_each_tile::<T, MR, NR, FMA, false, _>(
        ctx.anchors,
        panels,
        r0..padded_end,
        panel_range,
        // Inlined so that it is compiled with the caller's target features.
        #[inline(always)]
        |r, p, acc| {
            let nb: &[T; NR] = panels.norms[p * NR..(p + 1) * NR].try_into().unwrap();
            let wmax = panels.max_norm[p].to_f64();
            let c0 = p * NR;
            let width = NR.min(panels.n - c0);
            let valid: u64 = if width >= 64 { !0 } else { (1u64 << width) - 1 };
            // The columns' thresholds, with one bound for the tile's rows.
            let mut col_thr = [T::ZERO; NR];
            let mut wcol = T::ZERO;
            if SYM {
                let cs = cols
                    .as_deref()
                    .expect("column states in the symmetric scan");
                let na_max = (r..(r + MR).min(r1))
                    .map(|i| ctx.anchors.norms[i])
                    .fold(T::ZERO, |a, b| if b > a { b } else { a });
                wcol = ctx.bound.at(na_max, wmax);
                let o = c0 - cs.first;
                let tau: &[T; NR] = cs.tau[o..o + NR].try_into().unwrap();
                for c in 0..NR {
                    col_thr[c] = tau[c] + wcol;
                }
            }
            let mut col_hit: u64 = 0;
            for (rr, dots) in acc.iter().enumerate() {
                let i = r + rr;
                if i >= r1 {
                    break;
                }
                let na = ctx.anchors.norms[i];
                let w = ctx.bound.at(na, wmax);
                let thr = rows.tau[i - r0] + w;
                let (hit, col) = pass_bits::<T, NR, SYM>(dots, na, nb, thr, &col_thr);
                col_hit |= col;
                let mut hit = hit & valid;
                if hit == 0 {
                    continue;
                }
                // The screen itself is touched only on a hit (it is cold in
                // the symmetric scan, where each round visits every block).
                let st = &mut rows.states[i - r0];
                while hit != 0 {
                    let c = hit.trailing_zeros() as usize;
                    hit &= hit - 1;
                    let j = c0 + c;
                    if !(ctx.self_excluded && j == i) {
                        st.offer(squared_key(na, nb[c], dots[c]), w, j as u32);
                    }
                }
                rows.tau[i - r0] = st.tau;
            }
            col_hit &= valid;
            if SYM && col_hit != 0 {
                let cs = cols
                    .as_deref_mut()
                    .expect("column states in the symmetric scan");
                offer_columns::<T, MR, NR>(ctx, cs, col_hit, acc, r..r1, c0, nb, &col_thr, wcol);
            }
        },
    );
}

/// The transpose of a tile: offers the tile rows `rows` (from `r`, ending
/// before `r1`) to the screens of the columns `c0 + c` whose bit is set in
/// `col_hit`, and mirrors those columns' bounds.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn offer_columns<T: Real, const MR: usize, const NR: usize>(
    ctx: &Ctx<T>,
    cs: &mut RowStates<T>,
    mut col_hit: u64,
    acc: &[[T; NR]; MR],
    rows: Range<usize>,
    c0: usize,
    nb: &[T; NR],
    col_thr: &[T; NR],
    wcol: T,
) {
    while col_hit != 0 {
        let c = col_hit.trailing_zeros() as usize;
        col_hit &= col_hit - 1;
        let o = c0 + c - cs.first;
        let st = &mut cs.states[o];
        for (rr, dots) in acc.iter().enumerate() {
            let i = rows.start + rr;
            if i >= rows.end {
                break;
            }
            let v = squared_key(ctx.anchors.norms[i], nb[c], dots[c]);
            if v <= col_thr[c] {
                st.offer(v, wcol, i as u32);
            }
        }
        cs.tau[o] = st.tau;
    }
}

/// The scan's approximate squared distance `(na + nb) - 2 dot`: every test
/// and offer uses these operations (the SIMD paths too).
#[inline(always)]
fn squared_key<T: Real>(na: T, nb: T, dot: T) -> T {
    na + nb - T::TWO * dot
}

/// For one tile row: bit c of the first mask is set where `v <= thr`, of
/// the second (with `SYM`) where `v <= col_thr[c]` (`v` as [`squared_key`]).
#[inline(always)]
fn pass_bits<T: Real, const NR: usize, const SYM: bool>(
    dots: &[T; NR],
    na: T,
    nb: &[T; NR],
    thr: T,
    col_thr: &[T; NR],
) -> (u64, u64) {
    if let Some(masks) = knn_bits_x32::<T, NR, SYM>(dots, na, nb, thr, col_thr) {
        return masks;
    }
    let (mut row, mut col) = (0u64, 0u64);
    for c in 0..NR {
        let v = squared_key(na, nb[c], dots[c]);
        row |= u64::from(v <= thr) << c;
        if SYM {
            col |= u64::from(v <= col_thr[c]) << c;
        }
    }
    (row, col)
}

/// The symmetric self-query: each block of [`SYM_BLOCK`] rows against
/// itself, then each pair of distinct blocks once, its distances offered
/// to the rows of both. The pairs go in rounds of disjoint pairs (the
/// circle method of a round-robin tournament), so a task owns both of its
/// blocks' screens and every screen sees its offers in the same order for
/// any thread count. Returns the screens of every block, in row order.
pub(crate) fn scan_symmetric<T: Real, const MR: usize, const NR: usize>(
    ctx: &Ctx<T>,
    k: usize,
    parallel: bool,
) -> Vec<RowStates<T>> {
    const { assert!(SYM_BLOCK.is_multiple_of(MR) && SYM_BLOCK.is_multiple_of(NR)) };
    let n = ctx.anchors.n;
    let nblocks = n.div_ceil(SYM_BLOCK);
    let mut blocks: Vec<RowStates<T>> = (0..nblocks)
        .map(|b| RowStates::new(b * SYM_BLOCK..((b + 1) * SYM_BLOCK).min(n), k, NR))
        .collect();
    for_each_task(parallel, blocks.iter_mut().collect(), |b| {
        let own = b.panels(NR);
        scan::<T, MR, NR>(ctx, b, own, None);
    });
    // An odd count gets a dummy block: its partner sits the round out.
    let m = nblocks + nblocks % 2;
    for round in 0..m.saturating_sub(1) {
        let mut slots: Vec<Option<&mut RowStates<T>>> = blocks.iter_mut().map(Some).collect();
        let mut take = |b: usize| slots[b].take().expect("each block once a round");
        let pairs: Vec<_> = round_pairs(m, round)
            .filter(|&(a, b)| a.max(b) < nblocks)
            .map(|(a, b)| (take(a.min(b)), take(a.max(b))))
            .collect();
        for_each_task(parallel, pairs, |(a, b)| {
            // Each round visits every block: a block's screens are out of
            // cache by its next pair, and an offer would wait for them.
            a.states.iter().chain(&b.states).for_each(TopK::prefetch);
            let theirs = b.panels(NR);
            scan::<T, MR, NR>(ctx, a, theirs, Some(b));
        });
    }
    blocks
}

/// Round `round` of the circle method on `m` (even) players: `m / 2`
/// disjoint pairs; rounds `0..m - 1` pair every two players once.
fn round_pairs(m: usize, round: usize) -> impl Iterator<Item = (usize, usize)> {
    let ring = m - 1;
    std::iter::once((round, ring))
        .chain((1..m / 2).map(move |i| ((round + i) % ring, (round + ring - i) % ring)))
}

/// Runs `f` on every task, in parallel when `parallel`; a cancel stops it
/// at the next task.
fn for_each_task<I: Send>(parallel: bool, tasks: Vec<I>, f: impl Fn(I) + Sync + Send) {
    let f = |t| {
        checkpoint();
        f(t)
    };
    if parallel {
        tasks.into_par_iter().panic_fuse().for_each(f);
    } else {
        tasks.into_iter().for_each(f);
    }
}

#[cfg(test)]
mod tests {
    use super::round_pairs;

    #[test]
    fn rounds_pair_every_two_blocks_once() {
        for m in (2..=12).step_by(2) {
            let mut seen = vec![vec![0; m]; m];
            for round in 0..m - 1 {
                let mut used = vec![false; m];
                for (a, b) in round_pairs(m, round) {
                    assert!(a != b && !used[a] && !used[b]);
                    used[a] = true;
                    used[b] = true;
                    seen[a.min(b)][a.max(b)] += 1;
                }
            }
            for (a, row) in seen.iter().enumerate() {
                for (b, &count) in row.iter().enumerate().skip(a + 1) {
                    assert_eq!(count, 1, "m = {m}, pair ({a}, {b})");
                }
            }
        }
    }
}
