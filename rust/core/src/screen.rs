//! Screen and settle: the exactness contract of the tiled kernels.
//!
//! 1. **Screen.** The tile computes an approximate key (the expansion
//!    `|a|^2 + |b|^2 - 2 a.b` in the input precision), whose error is at
//!    most [`ExpansionBound::at`]. A [`CandidateSet`] keeps a rigorous bound
//!    on the answer and every point whose key, widened by that error, can
//!    still reach it.
//! 2. **Settle.** The survivors are ranked by exact f64 keys taken from
//!    coordinate differences ([`crate::exact::Exact::d2`]); ties go to the
//!    lowest index ([`settle_best`], [`settle_top_k`]). A set flooded with
//!    ties overflows and its row is settled by a full exact scan instead.
//!
//! So every index returned is the exact arg-min / arg-max / top-k of the
//! f64 distances, for any tile shape, code path or thread count.

use smallvec::SmallVec;

use crate::cosine_exact::key_error;
use crate::metric::Metric;
use crate::real::Real;

/// The rigorous error bound of the expansion `|a|^2 + |b|^2 - 2 a.b` in
/// `T` over `d` coordinates: `w = (d + 16) u (|a|^2 + |b|^2) + (d + 16)
/// min_normal`, with the anchor's squared norm and the largest squared norm
/// of the panel (one bound per tile row).
#[derive(Clone, Copy)]
pub(crate) struct ExpansionBound {
    coef: f64,
    tiny: f64,
}

impl ExpansionBound {
    pub(crate) fn new<T: Real>(d: usize) -> Self {
        ExpansionBound {
            coef: (d as f64 + 16.0) * T::UNIT_ROUNDOFF,
            tiny: (d as f64 + 16.0) * T::MIN_NORMAL,
        }
    }

    /// [`ExpansionBound::new`], widened under cosine by twice the error of
    /// the settle's f64 keys, so that every candidate whose true distance
    /// ties the answer survives to the exact settle.
    pub(crate) fn for_metric<T: Real>(d: usize, metric: Metric) -> Self {
        let mut bound = Self::new::<T>(d);
        if metric == Metric::Cosine {
            bound.tiny += 2.0 * key_error(d);
        }
        bound
    }

    /// The bound for anchor squared norm `na` against a panel whose largest
    /// squared norm is `nb_max`.
    #[inline(always)]
    pub(crate) fn at<T: Real>(&self, na: T, nb_max: f64) -> T {
        T::from_f64(self.coef * (na.to_f64() + nb_max) + self.tiny)
    }
}

/// The error bound of a distance computed from coordinate differences in
/// `T` (the `cdist` tiles): within `(dim + 8) u` of itself, plus a floor
/// for the square root of subnormal sums.
pub(crate) fn difference_bound_coef<T: Real>(dim: usize) -> f64 {
    (dim as f64 + 8.0) * T::UNIT_ROUNDOFF
}

/// The floor of [`difference_bound_coef`]'s bound.
pub(crate) fn difference_bound_floor<T: Real>() -> f64 {
    16.0 * T::MIN_NORMAL.sqrt()
}

/// The screen's state for one result (a row's minimum, its k nearest, a
/// block's maximum): a rigorous bound on the answer and the candidates that
/// can still reach it.
pub(crate) trait CandidateSet {
    /// The screened key (approximate, with its error bound).
    type Key: Copy;
    /// What identifies a candidate (a column, or a pair of rows).
    type Index: Copy;
    /// Offers candidate `j` whose key is `v`, known to within `+-w`.
    fn offer(&mut self, v: Self::Key, w: Self::Key, j: Self::Index);
    /// The candidates that survive the set's own bound, or `None` after an
    /// overflow (then the result is settled by a full exact scan).
    fn survivors(&self) -> Option<impl Iterator<Item = Self::Index> + '_>;
}

/// Which extreme [`settle_best`] picks.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Extreme {
    Least,
    Greatest,
}

/// The exact settle of one extreme: of the `(exact key, index)` pairs, the
/// least or greatest key, the lowest index among equal keys; `None` if
/// there are none.
#[inline]
pub(crate) fn settle_best<I: Copy + Ord>(
    cands: impl Iterator<Item = (f64, I)>,
    extreme: Extreme,
) -> Option<(f64, I)> {
    let mut best: Option<(f64, I)> = None;
    for (v, j) in cands {
        let better = match best {
            None => true,
            Some((bv, bj)) => match extreme {
                Extreme::Greatest => v > bv || (v == bv && j < bj),
                Extreme::Least => v < bv || (v == bv && j < bj),
            },
        };
        if better {
            best = Some((v, j));
        }
    }
    best
}

/// The exact settle of the k nearest: `(exact key, index)` pairs ranked by
/// key, ties by index, the first `k` kept.
pub(crate) fn settle_top_k(mut ranked: Vec<(f64, usize)>, k: usize) -> Vec<(f64, usize)> {
    let by = |a: &(f64, usize), b: &(f64, usize)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1));
    if ranked.len() > k {
        ranked.select_nth_unstable_by(k - 1, by);
        ranked.truncate(k);
    }
    ranked.sort_unstable_by(by);
    ranked
}

/// Candidate capacity per row before it is pruned, then declared overflowed.
const CAP: usize = 64;
/// Candidates held without a heap allocation (most rows end with one or two).
const INLINE: usize = 4;
/// Tracks the minimum of values known to within `+-w`: a rigorous upper
/// bound `best` on the minimum and every index whose lower bound is below it.
pub(crate) struct MinTrack<T> {
    pub(crate) best: T,
    pub(crate) cands: SmallVec<[(T, u32); INLINE]>,
    pub(crate) overflow: bool,
}

impl<T: Real> MinTrack<T> {
    pub(crate) fn new() -> Self {
        MinTrack {
            best: T::from_f64(T::MAX_FINITE / 4.0),
            cands: SmallVec::new(),
            overflow: false,
        }
    }

    #[inline]
    fn offer_impl(&mut self, v: T, w: T, j: u32) {
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
    pub(crate) fn merge(&mut self, other: MinTrack<T>) {
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
}

impl<T: Real> CandidateSet for MinTrack<T> {
    type Key = T;
    type Index = u32;

    #[inline(always)]
    fn offer(&mut self, v: T, w: T, j: u32) {
        self.offer_impl(v, w, j)
    }

    fn survivors(&self) -> Option<impl Iterator<Item = u32> + '_> {
        (!self.overflow).then(|| self.cands.iter().filter(|c| c.0 <= self.best).map(|c| c.1))
    }
}
