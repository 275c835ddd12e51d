//! Greedy k-center (farthest-point) selection and the per-class covering
//! radius of a set of proxies (seed paper 003, "chance constraints").
//!
//! Distances are Euclidean, squared sums computed directly from coordinate
//! differences in f64 (`diff_sq_sum`, the crate's one exact formula), so
//! the greedy choices are those of a float64 brute force, ties going to the
//! lowest index, for any number of threads.

use rayon::prelude::*;

use crate::error::{CoreError, Result};
use crate::exact::diff_sq_sum;
use crate::geometry::{directed_hausdorff_with, Attained};
use crate::hausdorff_prune::Pruning;
use crate::knn::knn;
use crate::matrix::{check_labels, Matrix};
use crate::metric::Metric;
use crate::parallel::checkpoint;
use crate::real::Real;
use crate::scale::with_safe_scale;

/// The chosen rows (in the order chosen) and the covering radius they reach
/// together with the seeds: `max_i min_c ||x_i - c||` and the row attaining it.
#[derive(Debug, Clone, PartialEq)]
pub struct KCenter {
    pub indices: Vec<i64>,
    pub radius: f64,
    pub farthest: usize,
}

/// Rows per parallel task of a round.
const CHUNK: usize = 1024;
/// Above this many seeds, their nearest one is found by the tiled k-NN kernel.
const SEEDS_DIRECT: usize = 32;

/// Largest value (ties: lowest index) among `(value, index)` pairs; the
/// order is total, so any reduction tree gives the same answer.
#[inline]
fn better(a: (f64, usize), b: (f64, usize)) -> (f64, usize) {
    if b.0 > a.0 || (b.0 == a.0 && b.1 < a.1) {
        b
    } else {
        a
    }
}

const NONE: (f64, usize) = (f64::NEG_INFINITY, usize::MAX);

/// Greedy farthest-point selection of `k` rows of `x`.
///
/// Without seeds the first centre is row `first`; with seeds (points that
/// count as already chosen, e.g. the current proxies, not rows of `x`) every
/// centre is the row farthest from all seeds and centres so far. Each round
/// is one parallel pass over the rows: O(N) memory, O(N (k + S) d) time.
pub fn kcenter<T: Real>(
    x: &Matrix<T>,
    k: usize,
    seeds: Option<&Matrix<T>>,
    first: usize,
) -> Result<KCenter> {
    let n = x.rows;
    if k == 0 || k > n {
        return Err(CoreError::InvalidValue {
            arg: "k",
            detail: format!("k must be between 1 and {n} (the rows of X), got {k}"),
        });
    }
    if let Some(s) = seeds {
        if s.cols != x.cols {
            return Err(CoreError::Shape {
                arg: "seeds",
                detail: format!("has {} features but X has {}", s.cols, x.cols),
            });
        }
    } else if first >= n {
        return Err(CoreError::InvalidValue {
            arg: "first",
            detail: format!("first must be a row of X (0..{n}), got {first}"),
        });
    }
    with_safe_scale(x, seeds, |x, seeds, s| {
        let mut out = run(x, k, seeds, first)?;
        out.radius *= s;
        Ok(out)
    })
}

fn run<T: Real>(
    x: &Matrix<T>,
    k: usize,
    seeds: Option<&Matrix<T>>,
    first: usize,
) -> Result<KCenter> {
    let n = x.rows;
    // Squared distance of every row to its nearest centre (or seed).
    let mut near = match seeds {
        Some(s) => seed_distances(x, s)?,
        None => vec![f64::INFINITY; n],
    };
    let mut chosen = vec![false; n];
    let mut indices = Vec::with_capacity(k);
    let mut next = match seeds {
        Some(_) => farthest_unchosen(&near, &chosen),
        None => first,
    };
    loop {
        checkpoint();
        chosen[next] = true;
        indices.push(next as i64);
        let c = x.row(next);
        let last = indices.len() == k;
        let best = near
            .par_chunks_mut(CHUNK)
            .zip(chosen.par_chunks(CHUNK))
            .enumerate()
            .map(|(b, (dist, done))| {
                let mut best = NONE;
                for (o, (d, &taken)) in dist.iter_mut().zip(done).enumerate() {
                    let i = b * CHUNK + o;
                    let v = diff_sq_sum(x.row(i), c);
                    if v < *d {
                        *d = v;
                    }
                    // The last pass measures the radius over every row (a
                    // chosen row is at distance 0 from itself).
                    if last || !taken {
                        best = better(best, (if taken { 0.0 } else { *d }, i));
                    }
                }
                best
            })
            .reduce(|| NONE, better);
        if last {
            return Ok(KCenter {
                indices,
                radius: best.0.sqrt(),
                farthest: best.1,
            });
        }
        next = best.1;
    }
}

/// The unchosen row farthest from its nearest centre (ties: lowest index).
fn farthest_unchosen(near: &[f64], chosen: &[bool]) -> usize {
    near.par_chunks(CHUNK)
        .zip(chosen.par_chunks(CHUNK))
        .enumerate()
        .map(|(b, (dist, done))| {
            dist.iter()
                .zip(done)
                .enumerate()
                .filter(|(_, (_, &t))| !t)
                .fold(NONE, |best, (o, (&d, _))| better(best, (d, b * CHUNK + o)))
        })
        .reduce(|| NONE, better)
        .1
}

/// Squared distance of each row of `x` to its nearest seed: directly for a
/// few seeds, else the exact tiled k-NN picks the seed and the distance is
/// recomputed by the same formula (so both paths agree bit for bit).
fn seed_distances<T: Real>(x: &Matrix<T>, seeds: &Matrix<T>) -> Result<Vec<f64>> {
    if seeds.rows <= SEEDS_DIRECT {
        return Ok((0..x.rows)
            .into_par_iter()
            .map(|i| {
                (0..seeds.rows)
                    .map(|j| diff_sq_sum(x.row(i), seeds.row(j)))
                    .fold(f64::INFINITY, f64::min)
            })
            .collect());
    }
    let nn = knn(x, 1, Some(seeds), Metric::Euclidean, false)?;
    Ok(nn
        .indices
        .par_iter()
        .enumerate()
        .map(|(i, &j)| diff_sq_sum(x.row(i), seeds.row(j as usize)))
        .collect())
}

/// Per class, the largest distance from a sample to its nearest proxy of
/// the same class (the directed Hausdorff distance from the class's samples
/// to its proxies).
pub struct CoveringRadius {
    /// Distinct sample labels, ascending.
    pub classes: Vec<i64>,
    /// Per class the radius, with `i` the sample row (in `x`) and `j` the
    /// proxy row (in `proxies`) attaining it; ties: lowest indices.
    pub per_class: Vec<Attained>,
}

/// Row indices grouped by label, labels ascending, rows ascending in a group.
fn groups(labels: &[i64]) -> Vec<(i64, Vec<usize>)> {
    let mut order: Vec<usize> = (0..labels.len()).collect();
    order.sort_by_key(|&i| (labels[i], i));
    let mut out: Vec<(i64, Vec<usize>)> = Vec::new();
    for i in order {
        match out.last_mut() {
            Some((c, rows)) if *c == labels[i] => rows.push(i),
            _ => out.push((labels[i], vec![i])),
        }
    }
    out
}

pub fn covering_radius<T: Real>(
    x: &Matrix<T>,
    labels: &[i64],
    proxies: &Matrix<T>,
    proxy_labels: &[i64],
) -> Result<CoveringRadius> {
    covering_radius_with(x, labels, proxies, proxy_labels, Pruning::Auto)
}

/// [`covering_radius`] with the block pruning of the per-class directed
/// Hausdorff scans chosen (it pays only for classes with many proxies).
pub fn covering_radius_with<T: Real>(
    x: &Matrix<T>,
    labels: &[i64],
    proxies: &Matrix<T>,
    proxy_labels: &[i64],
    pruning: Pruning,
) -> Result<CoveringRadius> {
    check_labels(labels, x.rows, "labels", "X")?;
    check_labels(proxy_labels, proxies.rows, "proxy_labels", "proxies")?;
    if proxies.cols != x.cols {
        return Err(CoreError::Shape {
            arg: "proxies",
            detail: format!("has {} features but X has {}", proxies.cols, x.cols),
        });
    }
    let samples = groups(labels);
    let owners = groups(proxy_labels);
    let mut pairs = Vec::with_capacity(samples.len());
    for (c, rows) in &samples {
        match owners.binary_search_by_key(c, |g| g.0) {
            Ok(g) => pairs.push((rows, &owners[g].1)),
            Err(_) => {
                return Err(CoreError::InvalidValue {
                    arg: "proxy_labels",
                    detail: format!("class {c} of labels has no proxy"),
                })
            }
        }
    }
    let gather = |m: &Matrix<T>, rows: &[usize]| -> Vec<T> {
        rows.iter()
            .flat_map(|&i| m.row(i).iter().copied())
            .collect()
    };
    let per_class = pairs
        .par_iter()
        .map(|(rows, prows)| {
            let (a, b) = (gather(x, rows), gather(proxies, prows));
            let ma = Matrix::new(&a, rows.len(), x.cols, "X")?;
            let mb = Matrix::new(&b, prows.len(), x.cols, "proxies")?;
            let h = directed_hausdorff_with(&ma, &mb, pruning)?;
            Ok(Attained {
                value: h.value,
                i: rows[h.i],
                j: prows[h.j],
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(CoveringRadius {
        classes: samples.iter().map(|g| g.0).collect(),
        per_class,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brute(x: &[f64], d: usize, k: usize, seeds: &[f64], first: usize) -> (Vec<i64>, f64) {
        let n = x.len() / d;
        let d2 = |i: usize, c: &[f64]| diff_sq_sum(&x[i * d..(i + 1) * d], c);
        let mut near: Vec<f64> = (0..n)
            .map(|i| {
                seeds
                    .chunks(d)
                    .map(|s| d2(i, s))
                    .fold(f64::INFINITY, f64::min)
            })
            .collect();
        let mut chosen = vec![false; n];
        let mut out = Vec::new();
        for t in 0..k {
            let next = if t == 0 && seeds.is_empty() {
                first
            } else {
                let mut best = (f64::NEG_INFINITY, 0);
                for i in 0..n {
                    if !chosen[i] && near[i] > best.0 {
                        best = (near[i], i);
                    }
                }
                best.1
            };
            chosen[next] = true;
            out.push(next as i64);
            for (i, v) in near.iter_mut().enumerate() {
                *v = v.min(d2(i, &x[next * d..(next + 1) * d]));
            }
        }
        let r = (0..n)
            .map(|i| if chosen[i] { 0.0 } else { near[i] })
            .fold(0.0, f64::max);
        (out, r.sqrt())
    }

    fn pseudo(n: usize, seed: u64) -> Vec<f64> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 33) % 7) as f64 - 3.0 // small integers: many exact ties
            })
            .collect()
    }

    #[test]
    fn matches_brute_force_with_ties() {
        for (n, d, k, ns) in [
            (50, 2, 7, 0),
            (3000, 3, 20, 0),
            (2500, 2, 9, 3),
            (300, 4, 5, 40),
        ] {
            let x = pseudo(n * d, n as u64);
            let s = pseudo(ns * d, 7);
            let m = Matrix::new(&x, n, d, "X").unwrap();
            let sm = (ns > 0).then(|| Matrix::new(&s, ns, d, "seeds").unwrap());
            let r = kcenter(&m, k, sm.as_ref(), 0).unwrap();
            let (idx, rad) = brute(&x, d, k, &s, 0);
            assert_eq!(r.indices, idx, "n={n} d={d} k={k} seeds={ns}");
            assert_eq!(r.radius, rad);
        }
    }

    #[test]
    fn duplicates_are_never_chosen_twice() {
        let x = [1.0, 1.0, 1.0, 2.0];
        let m = Matrix::new(&x, 4, 1, "X").unwrap();
        let r = kcenter(&m, 4, None, 0).unwrap();
        assert_eq!(r.indices, vec![0, 3, 1, 2]);
        assert_eq!((r.radius, r.farthest), (0.0, 0));
    }

    #[test]
    fn bad_k_and_first() {
        let x = [0.0, 1.0];
        let m = Matrix::new(&x, 2, 1, "X").unwrap();
        assert!(kcenter(&m, 0, None, 0).is_err());
        assert!(kcenter(&m, 3, None, 0).is_err());
        assert!(kcenter(&m, 1, None, 2).is_err());
    }

    #[test]
    fn covering_radius_needs_a_proxy_per_class() {
        let x = [0.0, 1.0, 5.0];
        let m = Matrix::new(&x, 3, 1, "X").unwrap();
        let p = [0.5, 4.0];
        let pm = Matrix::new(&p, 2, 1, "proxies").unwrap();
        let r = covering_radius(&m, &[0, 0, 1], &pm, &[0, 1]).unwrap();
        assert_eq!(r.classes, vec![0, 1]);
        assert_eq!(
            r.per_class[0],
            Attained {
                value: 0.5,
                i: 0,
                j: 0
            }
        );
        assert_eq!(
            r.per_class[1],
            Attained {
                value: 1.0,
                i: 2,
                j: 1
            }
        );
        assert!(covering_radius(&m, &[0, 0, 2], &pm, &[0, 1]).is_err());
    }
}
