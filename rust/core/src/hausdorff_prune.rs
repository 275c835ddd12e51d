//! The pruned scan behind the directed Hausdorff distance in high
//! dimension: the rows of `y` in blocks of nearby points (a
//! [`BlockTree`]), each bounded by a ball; the rows of `x` routed down the
//! same tree and ordered by the block they land in.
//!
//! 1. **Home.** Every row is screened against its own block and the block
//!    across its nearest split: for a noisy copy or a second sample of the
//!    same distribution the nearest row is almost always there.
//! 2. **Seed.** The rows with the largest candidate distances are settled
//!    exactly first; the largest settled distance is a lower bound on the
//!    answer that retires every row whose candidate is already closer.
//! 3. **Finish.** Each block of the remaining rows visits the other blocks
//!    nearest ball first, skips a block whose ball is provably farther than
//!    every active row's candidate, and retires rows as the bound rises.
//!
//! The rows that survive are settled exactly as in the unpruned scan, with
//! ties to the lowest original index of `y`. Every skip and retirement is
//! by a strict inequality, so a row or block that could tie is kept.

use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;

use crate::blocks::{pruning_enabled, record_pairs, Balls, BlockTree, Slabs};
use crate::engine::{widest, with_tile_shape};
use crate::error::Result;
use crate::exact::{diff_sq_sum, Exact};
use crate::hard_scan::{scan_block, Ctx, RowState, ROW_BLOCK};
use crate::matrix::{check_same_dim, Matrix};
use crate::metric::Metric;
use crate::pack::{prepare_anchors_in_order, prepare_panels_in_order, Anchors, Transform};
use crate::parallel::checkpoint;
use crate::real::Real;
use crate::screen::{settle_best, CandidateSet, ExpansionBound, Extreme};

/// How the directed Hausdorff scan prunes; a knob for the tests, which
/// compare the pruned and unpruned scans and check that a wrong bound is caught.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pruning {
    /// Prune where the sets are large enough to pay for the tree.
    Auto,
    /// The unpruned scan.
    Off,
    /// Prune always, with small blocks (so small inputs have many).
    On,
    /// [`Pruning::On`] with every ball gap taken 1% too large: a bound that
    /// is wrong, which the tests must catch.
    TooTight,
}

/// Rows of `y` per block in production (a multiple of every panel width).
const LEAF: usize = 128;
/// Rows of `y` per block under [`Pruning::On`].
const TEST_LEAF: usize = 32;
/// Below this many rows of `y` (or `x`) the unpruned scan is used by `Auto`.
const MIN_ROWS: usize = 4 * LEAF;
/// Relative slack between a bound on the true squared distance and the
/// f64 sum of squared differences (`(d + 4) u` is far smaller).
const SLACK: f64 = 1e-9;

/// The scan chosen for one direction, with a lower bound on the answer
/// (squared, as the scans keep it) to start from.
pub(crate) enum Plan {
    Unpruned {
        lower: f64,
    },
    Pruned {
        leaf: usize,
        gap_scale: f64,
        lower: f64,
    },
}

/// Rows of `x` the probe of [`plan`] samples.
const PROBE: usize = 8;

/// The scan for `h(x, y)` under `pruning`. `Auto` prunes where the tree
/// pays: not for copies in the same row order (the unpruned scan visits
/// each row's own position first) nor where the nearest rows are about as
/// far as the others (random sets: the shared lower bound retires rows
/// early without a tree). A probe of a few rows tells which; their exact
/// nearest distances seed the lower bound of either scan.
pub(crate) fn plan<T: Real>(pruning: Pruning, x: &Matrix<T>, y: &Matrix<T>) -> Plan {
    let pruned = |leaf, gap_scale| Plan::Pruned {
        leaf,
        gap_scale,
        lower: 0.0,
    };
    match pruning {
        Pruning::Off => Plan::Unpruned { lower: 0.0 },
        Pruning::On => pruned(TEST_LEAF, 1.0),
        Pruning::TooTight => pruned(TEST_LEAF, 1.01),
        // The process-wide switch (blocks::set_pruning) turns Auto off too.
        Pruning::Auto if !pruning_enabled() => Plan::Unpruned { lower: 0.0 },
        Pruning::Auto if x.rows < MIN_ROWS || y.rows < MIN_ROWS => Plan::Unpruned { lower: 0.0 },
        Pruning::Auto => probe(x, y),
    }
}

fn probe<T: Real>(x: &Matrix<T>, y: &Matrix<T>) -> Plan {
    let (n, m) = (x.rows, y.rows);
    let d2 = |i: usize, j: usize| diff_sq_sum(x.row(i), y.row(j));
    let rows: Vec<usize> = (0..PROBE).map(|k| (2 * k + 1) * n / (2 * PROBE)).collect();
    let aligned = rows
        .iter()
        .filter(|&&i| {
            let home = i * m / n;
            d2(i, home) * 16.0 < d2(i, (home + m / 2) % m)
        })
        .count();
    if aligned * 4 >= PROBE * 3 {
        return Plan::Unpruned { lower: 0.0 };
    }
    // Per sampled row: its exact nearest squared distance, and the mean.
    let stats: Vec<(f64, f64)> = rows
        .par_iter()
        .map(|&i| {
            checkpoint();
            let (mut nn, mut sum) = (f64::INFINITY, 0.0);
            for j in 0..m {
                let v = d2(i, j);
                nn = nn.min(v);
                sum += v;
            }
            (nn, sum / m as f64)
        })
        .collect();
    // As the scans raise it: a rigorous lower bound on a settled row's nearest.
    let lower = stats.iter().map(|s| s.0).fold(0.0, f64::max) * (1.0 - 1e-12);
    let mut ratios: Vec<f64> = stats.iter().map(|s| s.0 / s.1).collect();
    ratios.sort_unstable_by(f64::total_cmp);
    if ratios[PROBE / 2] * 16.0 < 1.0 {
        Plan::Pruned {
            leaf: LEAF,
            gap_scale: 1.0,
            lower,
        }
    } else {
        Plan::Unpruned { lower }
    }
}

/// For `max_i min_j d(x_i, y_j)`: the nearest row of `y` for every row of
/// `x` that can still attain the maximum, `None` for the rows proved
/// unable to (the contract of `hausdorff_scan::nearest_for_max`).
pub(crate) fn nearest_for_max_pruned<T: Real>(
    x: &Matrix<T>,
    y: &Matrix<T>,
    leaf: usize,
    gap_scale: f64,
    lower: f64,
) -> Result<Vec<Option<usize>>> {
    with_tile_shape!(
        widest::HAUSDORFF,
        T,
        pruned_impl(x, y, leaf, gap_scale, lower)
    )
}

/// What every task of the scan reads.
struct Shared<'c, 'a, T> {
    ctx: &'c Ctx<'a, T>,
    /// Exact distances between original rows.
    exact: &'c Exact<'a, T>,
    x: &'c Matrix<'a, T>,
    /// Position -> original row, for the anchors and for `y`.
    xorder: &'c [u32],
    yorder: &'c [u32],
    /// Block `b` of `y` is positions `ystarts[b]..ystarts[b + 1]`.
    ystarts: &'c [usize],
    yballs: &'c Balls,
    tree: &'c BlockTree,
    slabs: &'c Slabs,
    /// Lower bound on the answer, squared (f64 bits order like the values).
    lower: &'c AtomicU64,
    gap_scale: f64,
}

/// One task's rows (a range of anchor positions) and their evidence.
struct Rows<T> {
    start: usize,
    states: Vec<RowState<T>>,
    /// The exact squared distance to the best candidate seen (an upper
    /// bound on the row's nearest), +inf before any.
    ub: Vec<f64>,
    /// Per tile-height group, the blocks scanned by the first stage.
    visited: Vec<Vec<u32>>,
    /// Blocks scanned (by any group) after the first stage.
    scanned: usize,
}

impl<T: Real> Rows<T> {
    fn new(start: usize, len: usize, mr: usize) -> Self {
        Rows {
            start,
            states: (0..len).map(|_| RowState::new()).collect(),
            ub: vec![f64::INFINITY; len],
            visited: vec![Vec::new(); len.div_ceil(mr)],
            scanned: 0,
        }
    }
}

fn pruned_impl<T: Real, const MR: usize, const NR: usize>(
    x: &Matrix<T>,
    y: &Matrix<T>,
    leaf: usize,
    gap_scale: f64,
    lower0: f64,
) -> Result<Vec<Option<usize>>> {
    check_same_dim(x, y)?;
    assert!(leaf.is_multiple_of(NR), "blocks start on panel boundaries");
    let tree = BlockTree::build(&[y], leaf);
    let yballs = tree.balls(y);
    let slabs = tree.slabs(y, &yballs);
    // Rows of x by the block they land in (then by row), with the block
    // across their nearest split.
    let routes: Vec<(u32, u32)> = (0..x.rows)
        .into_par_iter()
        .map(|i| tree.route(x.row(i)))
        .collect();
    let mut xorder: Vec<u32> = (0..x.rows as u32).collect();
    xorder.sort_by_key(|&i| (routes[i as usize].0, i));
    let (n, m) = (x.rows, y.rows);
    let (xlab, ylab) = (vec![0u32; n], vec![1u32; m]);
    let tf = Transform::new(x, Some(y), None, None);
    let anchors = prepare_anchors_in_order(x, Some(&xorder), &tf, MR, "A")?;
    let panels = prepare_panels_in_order(y, Some(&tree.order), &ylab, &tf, false, NR, "B")?;
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
    let lower = AtomicU64::new(lower0.to_bits());
    let sh = Shared {
        ctx: &ctx,
        exact: &exact,
        x,
        xorder: &xorder,
        yorder: &tree.order,
        ystarts: &tree.starts,
        yballs: &yballs,
        tree: &tree,
        slabs: &slabs,
        lower: &lower,
        gap_scale,
    };
    let mut tasks: Vec<Rows<T>> = (0..n.div_ceil(ROW_BLOCK))
        .map(|t| Rows::new(t * ROW_BLOCK, ROW_BLOCK.min(n - t * ROW_BLOCK), MR))
        .collect();
    tasks.par_iter_mut().panic_fuse().for_each(|rows| {
        checkpoint();
        scan_home::<T, MR, NR>(&sh, rows, &routes);
    });
    seed_lower::<T, MR, NR>(&sh, &tasks, &tf)?;
    let nearest: Vec<Vec<Option<usize>>> = tasks
        .par_iter_mut()
        .panic_fuse()
        .map(|rows| search::<T, MR, NR>(&sh, &ctx, rows))
        .collect();
    // Block pairs (task, block) that no stage scanned, for the benchmarks.
    let nb = yballs.blocks() as u64;
    let scanned: u64 = tasks
        .iter()
        .map(|r| {
            let mut first: Vec<u32> = r.visited.concat();
            first.sort_unstable();
            first.dedup();
            (first.len() + r.scanned) as u64
        })
        .sum();
    let pairs = tasks.len() as u64 * nb;
    record_pairs(pairs, pairs.saturating_sub(scanned));
    let mut out = vec![None; n];
    for (p, j) in nearest.into_iter().flatten().enumerate() {
        out[xorder[p] as usize] = j;
    }
    Ok(out)
}

/// Positions of block `b` of `y` as a range of panels.
fn panel_range(sh: &Shared<impl Real>, b: usize, nr: usize) -> std::ops::Range<usize> {
    sh.ystarts[b] / nr..sh.ystarts[b + 1].div_ceil(nr)
}

/// Stage 1: each tile-height group against its rows' home blocks, then
/// against the blocks across their nearest splits for the rows whose
/// candidate stands out (farther than [`OUTLIER`] times the task's
/// median: their nearest row is likely across a split).
fn scan_home<T: Real, const MR: usize, const NR: usize>(
    sh: &Shared<T>,
    rows: &mut Rows<T>,
    routes: &[(u32, u32)],
) {
    let len = rows.states.len();
    let start = rows.start;
    let route = |k: usize| routes[sh.xorder[start + k] as usize];
    for g in 0..rows.visited.len() {
        let blocks: Vec<u32> = (g * MR..((g + 1) * MR).min(len))
            .map(|k| route(k).0)
            .collect();
        scan_group::<T, MR, NR>(sh, rows, g, blocks);
    }
    for k in 0..len {
        refresh_ub(sh, rows, k);
    }
    let mut ubs = rows.ub.clone();
    let mid = ubs.len() / 2;
    let median = *ubs.select_nth_unstable_by(mid, |a, b| a.total_cmp(b)).1;
    for g in 0..rows.visited.len() {
        let blocks: Vec<u32> = (g * MR..((g + 1) * MR).min(len))
            .filter(|&k| rows.ub[k] > OUTLIER * median)
            .map(|k| route(k).1)
            .collect();
        scan_group::<T, MR, NR>(sh, rows, g, blocks);
    }
    for k in 0..len {
        refresh_ub(sh, rows, k);
    }
}

/// A row whose candidate is farther than this times its task's median
/// (squared) also visits the block across its nearest split.
const OUTLIER: f64 = 4.0;

/// Scans group `g` of `rows` against the `blocks` it has not visited.
fn scan_group<T: Real, const MR: usize, const NR: usize>(
    sh: &Shared<T>,
    rows: &mut Rows<T>,
    g: usize,
    mut blocks: Vec<u32>,
) {
    let (g0, g1) = (g * MR, ((g + 1) * MR).min(rows.states.len()));
    blocks.sort_unstable();
    blocks.dedup();
    for b in blocks {
        if rows.visited[g].contains(&b) {
            continue;
        }
        rows.visited[g].push(b);
        scan_block::<T, MR, NR>(
            sh.ctx,
            rows.start + g0..rows.start + g1,
            panel_range(sh, b as usize, NR),
            &mut rows.states[g0..g1],
            None,
        );
    }
}

/// Tightens row `k`'s upper bound by the exact distance to its best
/// candidate by key.
fn refresh_ub<T: Real>(sh: &Shared<T>, rows: &mut Rows<T>, k: usize) {
    let st = &rows.states[k].neg;
    if st.overflow {
        return;
    }
    let best = st
        .cands
        .iter()
        .min_by(|p, q| p.0.to_f64().total_cmp(&q.0.to_f64()));
    if let Some(&(_, j)) = best {
        let i = sh.xorder[rows.start + k] as usize;
        let d2 = sh.exact.d2(i, sh.yorder[j as usize] as usize);
        if d2 < rows.ub[k] {
            rows.ub[k] = d2;
        }
    }
}

/// Stage 2: settles the rows with the largest upper bounds (one tile
/// height of them, gathered), raising the shared lower bound. Only speed
/// depends on the choice.
fn seed_lower<T: Real, const MR: usize, const NR: usize>(
    sh: &Shared<T>,
    tasks: &[Rows<T>],
    tf: &Transform,
) -> Result<()> {
    // Rows whose candidate stands out in their task are likely ones whose
    // nearest row is elsewhere, not rows near the maximum.
    let mut all: Vec<(f64, u32)> = tasks
        .iter()
        .flat_map(|r| {
            let mut ubs = r.ub.clone();
            let mid = ubs.len() / 2;
            let median = *ubs.select_nth_unstable_by(mid, |a, b| a.total_cmp(b)).1;
            (0..r.ub.len())
                .filter(move |&k| r.ub[k] <= OUTLIER * median)
                .map(move |k| (r.ub[k], (r.start + k) as u32))
        })
        .collect();
    let k = MR.min(all.len());
    if k == 0 {
        return Ok(());
    }
    all.select_nth_unstable_by(k - 1, |a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let seeds: Vec<u32> = all[..k].iter().map(|s| sh.xorder[s.1 as usize]).collect();
    let anchors: Anchors<T> = prepare_anchors_in_order(sh.x, Some(&seeds), tf, MR, "A")?;
    let ctx = Ctx {
        anchors: &anchors,
        xlab: &sh.ctx.xlab[..seeds.len()],
        ..*sh.ctx
    };
    let seeded = Shared {
        xorder: &seeds,
        ..*sh
    };
    let mut rows = Rows::new(0, seeds.len(), MR);
    search::<T, MR, NR>(&seeded, &ctx, &mut rows);
    Ok(())
}

/// Stage 3 for one task: the rows that can still attain the maximum visit
/// the blocks they have not seen, nearest ball first; returns each row's
/// nearest (original index of `y`), `None` for the rows retired.
fn search<T: Real, const MR: usize, const NR: usize>(
    sh: &Shared<T>,
    ctx: &Ctx<T>,
    rows: &mut Rows<T>,
) -> Vec<Option<usize>> {
    checkpoint();
    let len = rows.states.len();
    let mut active = vec![true; len];
    let retire = |active: &mut [bool], rows: &Rows<T>| {
        let lo = f64::from_bits(sh.lower.load(Ordering::Relaxed));
        for (k, a) in active.iter_mut().enumerate() {
            *a &= rows.states[k].neg.best.to_f64() >= lo && rows.ub[k] >= lo;
        }
        active.iter().any(|&a| a)
    };
    if !retire(&mut active, rows) {
        return vec![None; len];
    }
    let nb = sh.yballs.blocks();
    let live: Vec<usize> = (0..len).filter(|&k| active[k]).collect();
    let origs: Vec<u32> = live.iter().map(|&k| sh.xorder[rows.start + k]).collect();
    let ball = Balls::of_rows(sh.x, &origs);
    // Per live row, lower bounds on its distance to every block (slabs).
    let mut gaps = vec![0.0f64; live.len() * nb];
    for (t, (&i, &k)) in origs.iter().zip(&live).enumerate() {
        // Bounds past the row's candidate skip the block whatever their size.
        let enough = 2.0 * rows.ub[k].sqrt();
        let out = &mut gaps[t * nb..(t + 1) * nb];
        sh.slabs
            .point_gaps(sh.tree, sh.x.row(i as usize), sh.gap_scale, enough, out);
    }
    let mut slot = vec![usize::MAX; len];
    for (t, &k) in live.iter().enumerate() {
        slot[k] = t;
    }
    // Nearest first: by the least slab gap of a live row, then by the balls.
    let mut visits: Vec<(f64, f64, usize)> = (0..nb)
        .map(|b| {
            let g = (0..live.len())
                .map(|t| gaps[t * nb + b])
                .fold(f64::INFINITY, f64::min);
            (g, ball.approach(0, sh.yballs, b), b)
        })
        .collect();
    visits.sort_unstable_by(|a, b| {
        a.0.total_cmp(&b.0)
            .then(a.1.total_cmp(&b.1))
            .then(a.2.cmp(&b.2))
    });
    for &(_, _, b) in &visits {
        checkpoint();
        if !retire(&mut active, rows) {
            break;
        }
        // Row k needs block b unless every point of the block is strictly
        // farther (in the f64 sums the settle compares) than its candidate:
        // then none can be its nearest or tie it.
        let ball_gap = ball.gap(0, sh.yballs, b) * sh.gap_scale;
        let needs = |k: usize| {
            active[k] && {
                let g = gaps[slot[k] * nb + b].max(ball_gap);
                g * g * (1.0 - SLACK) <= rows.ub[k]
            }
        };
        let mut scanned = false;
        for g in 0..rows.visited.len() {
            let (g0, g1) = (g * MR, ((g + 1) * MR).min(len));
            if !(g0..g1).any(needs) || rows.visited[g].contains(&(b as u32)) {
                continue;
            }
            scanned = true;
            scan_block::<T, MR, NR>(
                ctx,
                rows.start + g0..rows.start + g1,
                panel_range(sh, b, NR),
                &mut rows.states[g0..g1],
                None,
            );
        }
        if scanned {
            rows.scanned += 1;
            for (k, _) in active.iter().enumerate().filter(|a| *a.1) {
                refresh_ub(sh, rows, k);
            }
        }
    }
    (0..len)
        .map(|k| active[k].then(|| settle_row(sh, rows, k)))
        .collect()
}

/// The exact nearest row of `y` (original index, ties to the lowest) of
/// row `k`, from its candidates or, after an overflow, by a full scan;
/// raises the shared lower bound by its distance.
fn settle_row<T: Real>(sh: &Shared<T>, rows: &Rows<T>, k: usize) -> usize {
    let i = sh.xorder[rows.start + k] as usize;
    let keyed = |j: usize| (sh.exact.d2(i, j), j);
    let best = match rows.states[k].neg.survivors() {
        Some(it) => settle_best(
            it.map(|p| keyed(sh.yorder[p as usize] as usize)),
            Extreme::Least,
        ),
        None => settle_best((0..sh.yorder.len()).map(keyed), Extreme::Least),
    };
    let (d2, j) = best.expect("every row has a candidate");
    // A rigorous lower bound on this row's exact nearest distance, squared.
    sh.lower
        .fetch_max((d2 * (1.0 - 1e-12)).to_bits(), Ordering::Relaxed);
    j
}
