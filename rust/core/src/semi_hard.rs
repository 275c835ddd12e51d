//! Semi-hard mining: one triplet per ordered positive pair, with the
//! nearest negative inside FaceNet's window `d(a,p) < d(a,n) < d(a,p) + margin`.

use rayon::prelude::*;

use crate::error::{CoreError, Result};
use crate::exact::Exact;
use crate::metric::Metric;
use crate::prep::{check_labels, encode_labels, row_scales, Matrix};
use crate::real::Real;

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
    let scales = row_scales(x, metric, "X")?;
    let exact = Exact {
        x: *x,
        y: *x,
        sx: scales.as_deref(),
        sy: scales.as_deref(),
        metric,
    };
    let ts = mine(&exact, &codes, margin, fallback);
    let t = T::from_f64;
    Ok(Triplets {
        anchor: ts.iter().map(|t| t.a as i64).collect(),
        positive: ts.iter().map(|t| t.p as i64).collect(),
        negative: ts.iter().map(|t| t.n as i64).collect(),
        pos_dist: ts.iter().map(|x| t(x.dap)).collect(),
        neg_dist: ts.iter().map(|x| t(x.dan)).collect(),
    })
}

/// Mines on exact f64 distances; triplets in order of anchor, then positive.
pub(crate) fn mine<T: Real>(
    exact: &Exact<T>,
    codes: &[u32],
    margin: f64,
    fallback: Fallback,
) -> Vec<Triplet> {
    let n = codes.len();
    let metric = exact.metric;
    let per_anchor: Vec<Vec<Triplet>> = (0..n)
        .into_par_iter()
        .map_init(
            || (vec![0.0f64; n], Vec::<(f64, u32)>::with_capacity(n)),
            |(row, negs), a| {
                let la = codes[a];
                negs.clear();
                for j in 0..n {
                    row[j] = exact.d2(a, j);
                    if codes[j] != la {
                        negs.push((row[j], j as u32));
                    }
                }
                let mut out = Vec::new();
                if negs.is_empty() {
                    return out;
                }
                negs.sort_unstable_by(|u, v| u.0.total_cmp(&v.0).then(u.1.cmp(&v.1)));
                let hardest = negs[0];
                let max = negs[negs.len() - 1].0;
                let easiest = negs[negs.partition_point(|v| v.0 < max)];
                for p in (0..n).filter(|&p| p != a && codes[p] == la) {
                    let dp2 = row[p];
                    let dap = metric.from_d2(dp2);
                    let k = negs.partition_point(|v| v.0 <= dp2);
                    let chosen = match negs.get(k) {
                        Some(&c) if metric.from_d2(c.0) < dap + margin => Some(c),
                        _ => match fallback {
                            Fallback::Hardest => Some(hardest),
                            Fallback::Easiest => Some(easiest),
                            Fallback::Drop => None,
                        },
                    };
                    if let Some((dn2, j)) = chosen {
                        out.push(Triplet {
                            a: a as u32,
                            p: p as u32,
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
