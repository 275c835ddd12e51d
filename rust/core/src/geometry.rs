//! Geometry of embeddings from the isometric-approximation view of
//! hard-negative mining (seed paper 001): Hausdorff distances, diameter,
//! displacement and the hardest triplet. All Euclidean, all exact: the
//! per-row extremes come from the exact batch-hard engine and the final
//! maximum is taken over float64 distances (ties: lowest indices).

use rayon::prelude::*;

use crate::batch_hard::batch_hard;
use crate::error::{CoreError, Result};
use crate::exact::{diff_sq_sum, scaled_diff_norm};
use crate::hausdorff_prune::{nearest_for_max_pruned, plan, Plan, Pruning};
use crate::hausdorff_scan::nearest_for_max;
use crate::kdtree::{nearest_for_max_tree, KD_MAX_DIM};
use crate::matrix::{check_labels, check_same_dim, Matrix};
use crate::metric::Metric;
use crate::real::Real;
use crate::scale::with_safe_scale;

/// A distance and the pair of rows that attains it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Attained {
    pub value: f64,
    pub i: usize,
    pub j: usize,
}

/// `sup d(a,p) - d(a,n)` over triplets and the triplet attaining it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HardestTriplet {
    pub value: f64,
    pub anchor: usize,
    pub positive: usize,
    pub negative: usize,
}

/// Exact Euclidean distance between row `i` of `a` and row `j` of `b`:
/// the square root of the same f64 sum the kernels rank candidates by, so
/// equal sums stay tied; scaled (`scaled_diff_norm`) only where that sum overflows
/// or underflows.
pub(crate) fn dist<T: Real>(a: &Matrix<T>, i: usize, b: &Matrix<T>, j: usize) -> f64 {
    let d2 = diff_sq_sum(a.row(i), b.row(j));
    if d2.is_finite() && d2 >= f64::MIN_POSITIVE {
        return d2.sqrt();
    }
    scaled_diff_norm(a.row(i), b.row(j))
}

/// The first item of largest `value` in iteration (index) order.
fn first_max<X: Copy>(items: impl Iterator<Item = X>, value: impl Fn(&X) -> f64) -> Option<X> {
    items.fold(None, |best, c| match best {
        Some(b) if value(&b) >= value(&c) => Some(b),
        _ => Some(c),
    })
}

/// `max_i min_j d(a_i, b_j)`: every row of `a` against its nearest row of
/// `b`, skipping rows proved unable to attain the maximum.
pub fn directed_hausdorff<T: Real>(a: &Matrix<T>, b: &Matrix<T>) -> Result<Attained> {
    directed_hausdorff_with(a, b, Pruning::Auto)
}

/// [`directed_hausdorff`] with the block pruning chosen (tests compare
/// the pruned and unpruned scans; the answers are identical).
pub fn directed_hausdorff_with<T: Real>(
    a: &Matrix<T>,
    b: &Matrix<T>,
    pruning: Pruning,
) -> Result<Attained> {
    check_same_dim(a, b)?;
    with_safe_scale(a, Some(b), |a, b, s| {
        let b = b.expect("second set");
        let nn = if a.cols <= KD_MAX_DIM {
            check_same_dim(a, b)?;
            nearest_for_max_tree(a, b)
        } else {
            match plan(pruning, a, b) {
                Plan::Pruned {
                    leaf,
                    gap_scale,
                    lower,
                } => nearest_for_max_pruned(a, b, leaf, gap_scale, lower)?,
                Plan::Unpruned { lower } => nearest_for_max(a, b, lower)?,
            }
        };
        let rows = nn.iter().enumerate().filter_map(|(i, j)| {
            j.map(|j| Attained {
                value: dist(a, i, b, j),
                i,
                j,
            })
        });
        let best = first_max(rows, |r| r.value).expect("some row is never retired");
        Ok(Attained {
            value: best.value * s,
            ..best
        })
    })
}

/// `max(h(a, b), h(b, a))`; the pair is always (row of `a`, row of `b`).
pub fn hausdorff<T: Real>(a: &Matrix<T>, b: &Matrix<T>) -> Result<Attained> {
    hausdorff_with(a, b, Pruning::Auto)
}

/// [`hausdorff`] with the block pruning chosen.
pub fn hausdorff_with<T: Real>(a: &Matrix<T>, b: &Matrix<T>, pruning: Pruning) -> Result<Attained> {
    // Both directions at once: the tree path's builds are sequential, so
    // running them side by side keeps both cores busy.
    let (ab, ba) = rayon::join(
        || directed_hausdorff_with(a, b, pruning),
        || directed_hausdorff_with(b, a, pruning),
    );
    let (ab, ba) = (ab?, ba?);
    Ok(if ab.value >= ba.value {
        ab
    } else {
        Attained {
            value: ba.value,
            i: ba.j,
            j: ba.i,
        }
    })
}

/// Per class, the Hausdorff distance between the class's rows in two
/// embeddings of the same points (equation 11 takes the maximum).
pub struct ClassHausdorff {
    /// Distinct labels, ascending.
    pub classes: Vec<i64>,
    /// Hausdorff distance of each class, with the attaining rows (indices
    /// into the full X1 and X2).
    pub per_class: Vec<Attained>,
}

pub fn class_hausdorff<T: Real>(
    x1: &Matrix<T>,
    x2: &Matrix<T>,
    labels: &[i64],
) -> Result<ClassHausdorff> {
    class_hausdorff_with(x1, x2, labels, Pruning::Auto)
}

/// [`class_hausdorff`] with the block pruning chosen.
pub fn class_hausdorff_with<T: Real>(
    x1: &Matrix<T>,
    x2: &Matrix<T>,
    labels: &[i64],
    pruning: Pruning,
) -> Result<ClassHausdorff> {
    check_two_embeddings(x1, x2)?;
    check_labels(labels, x1.rows, "labels", "X1")?;
    let mut order: Vec<usize> = (0..labels.len()).collect();
    order.sort_by_key(|&i| (labels[i], i));
    let mut classes = Vec::new();
    let mut groups: Vec<&[usize]> = Vec::new();
    let mut start = 0;
    while start < order.len() {
        let c = labels[order[start]];
        let end = start + order[start..].partition_point(|&i| labels[i] == c);
        classes.push(c);
        groups.push(&order[start..end]);
        start = end;
    }
    let gather = |m: &Matrix<T>, rows: &[usize]| -> Vec<T> {
        rows.iter()
            .flat_map(|&i| m.row(i).iter().copied())
            .collect()
    };
    let per_class = groups
        .par_iter()
        .map(|rows| {
            let (a, b) = (gather(x1, rows), gather(x2, rows));
            let ma = Matrix::new(&a, rows.len(), x1.cols, "X1")?;
            let mb = Matrix::new(&b, rows.len(), x2.cols, "X2")?;
            let h = hausdorff_with(&ma, &mb, pruning)?;
            Ok(Attained {
                value: h.value,
                i: rows[h.i],
                j: rows[h.j],
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(ClassHausdorff { classes, per_class })
}

pub(crate) fn check_two_embeddings<T: Real>(x1: &Matrix<T>, x2: &Matrix<T>) -> Result<()> {
    if x1.rows != x2.rows {
        return Err(CoreError::Shape {
            arg: "X2",
            detail: format!(
                "has {} rows but X1 has {}: both must embed the same points",
                x2.rows, x1.rows
            ),
        });
    }
    Ok(())
}

/// `sup_i |x1_i - x2_i|` (the two embeddings may differ in dimension only
/// if padded by the caller; here they must agree).
pub fn sup_displacement<T: Real>(x1: &Matrix<T>, x2: &Matrix<T>) -> Result<Attained> {
    check_two_embeddings(x1, x2)?;
    check_same_dim(x1, x2).map_err(|_| CoreError::Shape {
        arg: "X2",
        detail: format!("has {} features but X1 has {}", x2.cols, x1.cols),
    })?;
    let rows: Vec<Attained> = (0..x1.rows)
        .into_par_iter()
        .map(|i| Attained {
            value: dist(x1, i, x2, i),
            i,
            j: i,
        })
        .collect();
    Ok(first_max(rows.into_iter(), |r| r.value).expect("x1 has rows"))
}

/// The largest distance between two rows (0 for a single row, pair (0, 0)).
pub fn diameter<T: Real>(a: &Matrix<T>) -> Result<Attained> {
    if a.rows == 1 {
        return Ok(Attained {
            value: 0.0,
            i: 0,
            j: 0,
        });
    }
    let far = batch_hard(a, &vec![0i64; a.rows], None, Metric::Euclidean)?;
    let rows: Vec<Attained> = (0..a.rows)
        .into_par_iter()
        .map(|i| {
            let j = far.pos_idx[i] as usize;
            Attained {
                value: dist(a, i, a, j),
                i,
                j,
            }
        })
        .collect();
    Ok(first_max(rows.into_iter(), |r| r.value).expect("a has rows"))
}

/// `sup_{a,p,n} d(a,p) - d(a,n)` (equation 38): per anchor the batch-hard
/// pair, then the largest exact difference. Errors when no triplet exists.
pub fn hardest_triplet<T: Real>(x: &Matrix<T>, labels: &[i64]) -> Result<HardestTriplet> {
    check_labels(labels, x.rows, "labels", "X")?;
    let bh = batch_hard(x, labels, None, Metric::Euclidean)?;
    let rows: Vec<Option<HardestTriplet>> = (0..x.rows)
        .into_par_iter()
        .map(|a| {
            let (p, n) = (bh.pos_idx[a], bh.neg_idx[a]);
            (p >= 0 && n >= 0).then(|| {
                let (p, n) = (p as usize, n as usize);
                HardestTriplet {
                    value: dist(x, a, x, p) - dist(x, a, x, n),
                    anchor: a,
                    positive: p,
                    negative: n,
                }
            })
        })
        .collect();
    first_max(rows.into_iter().flatten(), |t| t.value).ok_or_else(|| CoreError::InvalidValue {
        arg: "labels",
        detail: "no triplet exists: it needs a class with at least two points and a second class"
            .into(),
    })
}
