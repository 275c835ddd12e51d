//! Semi-hard mining: one triplet per ordered positive pair, with the
//! nearest negative inside FaceNet's window `d(a,p) < d(a,n) < d(a,p) + margin`.

use rayon::prelude::*;

use crate::cosine_exact::repair_keys;
use crate::error::{CoreError, Result};
use crate::exact::Exact;
use crate::matrix::{check_labels, encode_labels, Matrix};
use crate::metric::Metric;
use crate::pack::row_norms;
use crate::parallel::checkpoint;
use crate::real::Real;
use crate::scale::{distance_factor, with_safe_scale};

/// What to take when an (anchor, positive) pair has no semi-hard negative.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// The nearest negative.
    Hardest,
    /// The farthest negative (TensorFlow Addons).
    Easiest,
    /// No triplet for the pair.
    Drop,
}

impl Fallback {
    pub fn parse(name: &str) -> Result<Fallback> {
        match name {
            "hardest" => Ok(Fallback::Hardest),
            "easiest" => Ok(Fallback::Easiest),
            "drop" => Ok(Fallback::Drop),
            other => Err(CoreError::InvalidValue {
                arg: "fallback",
                detail: format!(
                    "unknown fallback {other:?}; expected 'hardest', 'easiest' or 'drop'"
                ),
            }),
        }
    }
}

/// Triplets as parallel arrays (indices into X), with their distances.
#[derive(Debug, Clone, PartialEq)]
pub struct Triplets<T> {
    pub anchor: Vec<i64>,
    pub positive: Vec<i64>,
    pub negative: Vec<i64>,
    pub pos_dist: Vec<T>,
    pub neg_dist: Vec<T>,
}

/// One mined triplet with exact distances.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Triplet {
    pub a: u32,
    pub p: u32,
    pub n: u32,
    pub dap: f64,
    pub dan: f64,
}

pub(crate) fn check_margin(margin: f64, allow_inf: bool) -> Result<()> {
    if margin.is_nan() || margin < 0.0 || (!allow_inf && margin.is_infinite()) {
        let what = if allow_inf {
            "a number >= 0 (or inf)"
        } else {
            "a finite number >= 0"
        };
        return Err(CoreError::InvalidValue {
            arg: "margin",
            detail: format!("must be {what}, got {margin}"),
        });
    }
    Ok(())
}

pub fn semi_hard<T: Real>(
    x: &Matrix<T>,
    labels: &[i64],
    margin: f64,
    metric: Metric,
    fallback: Fallback,
) -> Result<Triplets<T>> {
    check_labels(labels, x.rows, "labels", "X")?;
    check_margin(margin, true)?;
    let (codes, _) = encode_labels(labels, None);
    with_safe_scale(x, None, |x, _, s| {
        let f = distance_factor(metric, s);
        let norms = row_norms(x, metric, "X")?;
        let exact = Exact {
            x: *x,
            y: *x,
            nx: norms.as_deref(),
            ny: norms.as_deref(),
            metric,
        };
        let ts = mine(&exact, &codes, margin / f, fallback);
        let t = |v: f64| T::from_f64(v * f);
        Ok(Triplets {
            anchor: ts.iter().map(|t| t.a as i64).collect(),
            positive: ts.iter().map(|t| t.p as i64).collect(),
            negative: ts.iter().map(|t| t.n as i64).collect(),
            pos_dist: ts.iter().map(|x| t(x.dap)).collect(),
            neg_dist: ts.iter().map(|x| t(x.dan)).collect(),
        })
    })
}

/// A negative candidate: squared distance and index.
type Cand = (f64, u32);

/// Mines on exact f64 distances; triplets in order of anchor, then positive.
///
/// Per anchor, positives are sorted by distance (K of them) and each
/// negative falls in the bucket of how many positive distances lie strictly
/// below its own; a suffix minimum over buckets then gives every positive
/// its nearest farther negative in O(N log K) instead of a sort of N.
pub(crate) fn mine<T: Real>(
    exact: &Exact<T>,
    codes: &[u32],
    margin: f64,
    fallback: Fallback,
) -> Vec<Triplet> {
    let n = codes.len();
    let metric = exact.metric;
    // (d2, j) ordered by distance, then index.
    let less = |u: Cand, v: Cand| u.0 < v.0 || (u.0 == v.0 && u.1 < v.1);
    let per_anchor: Vec<Vec<Triplet>> = (0..n)
        .into_par_iter()
        .panic_fuse()
        .map_init(
            || {
                (
                    vec![0.0f64; n],
                    Vec::<(f64, u32)>::new(),
                    Vec::<Option<(f64, u32)>>::new(),
                )
            },
            |(row, pos, bucket), a| {
                checkpoint();
                let la = codes[a];
                exact_row(exact, a, row);
                pos.clear();
                for (j, &r) in row.iter().enumerate() {
                    if j != a && codes[j] == la {
                        pos.push((r, j as u32));
                    }
                }
                let mut out = Vec::new();
                if pos.is_empty() {
                    return out;
                }
                pos.sort_unstable_by(|u, v| u.0.total_cmp(&v.0).then(u.1.cmp(&v.1)));
                bucket.clear();
                bucket.resize(pos.len() + 1, None);
                let (mut hardest, mut easiest): (Option<Cand>, Option<Cand>) = (None, None);
                for (j, &v) in row.iter().enumerate() {
                    if codes[j] == la {
                        continue;
                    }
                    let c = (v, j as u32);
                    let b = pos.partition_point(|p| p.0 < v);
                    if bucket[b].is_none_or(|cur| less(c, cur)) {
                        bucket[b] = Some(c);
                    }
                    if hardest.is_none_or(|h| less(c, h)) {
                        hardest = Some(c);
                    }
                    if easiest.is_none_or(|e| v > e.0) {
                        easiest = Some(c);
                    }
                }
                if hardest.is_none() {
                    return out;
                }
                // Suffix minima: bucket[b] = nearest negative above b positives.
                for b in (0..pos.len()).rev() {
                    if let Some(next) = bucket[b + 1] {
                        if bucket[b].is_none_or(|cur| less(next, cur)) {
                            bucket[b] = Some(next);
                        }
                    }
                }
                let mut chosen: Vec<(u32, f64, Option<Cand>)> = Vec::with_capacity(pos.len());
                for (k, &(dp2, p)) in pos.iter().enumerate() {
                    // Positives tied with this one share its threshold: skip to
                    // the bucket above the last of them.
                    let above = pos.partition_point(|q| q.0 <= dp2);
                    let dap = metric.from_d2(dp2);
                    let pick = match bucket[above.max(k + 1)] {
                        Some(c) if metric.from_d2(c.0) < dap + margin => Some(c),
                        _ => match fallback {
                            Fallback::Hardest => hardest,
                            Fallback::Easiest => easiest,
                            Fallback::Drop => None,
                        },
                    };
                    chosen.push((p, dap, pick));
                }
                chosen.sort_unstable_by_key(|c| c.0);
                for (p, dap, pick) in chosen {
                    if let Some((dn2, j)) = pick {
                        out.push(Triplet {
                            a: a as u32,
                            p,
                            n: j,
                            dap,
                            dan: metric.from_d2(dn2),
                        });
                    }
                }
                out
            },
        )
        .collect();
    per_anchor.into_iter().flatten().collect()
}

/// The f64 keys of anchor `a` against every row; under cosine adjusted so
/// that their order is the exact order of the distances ([`repair_keys`]).
fn exact_row<T: Real>(exact: &Exact<T>, a: usize, row: &mut [f64]) {
    for (j, r) in row.iter_mut().enumerate() {
        *r = exact.d2(a, j);
    }
    if exact.metric == Metric::Cosine {
        let mut keyed: Vec<(f64, usize)> = row.iter().copied().zip(0..).collect();
        repair_keys(exact, a, &mut keyed);
        for (v, j) in keyed {
            row[j] = v;
        }
    }
}
