//! `knn` against a brute-force f64 oracle: every query's neighbours sorted by
//! exact distance, ties by the lowest index. Indices must be equal, distances
//! equal to rounding; random and adversarial data, f32 and f64, every metric.

use tripletcore_core::{knn, Matrix, Metric, Real};

mod common;
use common::{is_f32, oracle_d2, oracle_dist, pow2_multiples, rounded, Rng, EUCLIDEAN, METRICS};

/// For every row of `x`, all rows of `y` as (squared distance, index),
/// nearest first, ties by the lowest index.
fn oracle_ranking(
    x: &[f64],
    y: &[f64],
    d: usize,
    metric: Metric,
    skip_self: bool,
) -> Vec<Vec<(f64, usize)>> {
    let m = y.len() / d;
    let all = oracle_d2(x, y, d, metric);
    all.chunks(m.max(1))
        .take(x.len() / d)
        .enumerate()
        .map(|(i, row)| {
            let mut r: Vec<(f64, usize)> = row
                .iter()
                .enumerate()
                .filter(|&(j, _)| !(skip_self && j == i))
                .map(|(j, &v)| (v, j))
                .collect();
            r.sort_by(|p, q| p.0.total_cmp(&q.0).then(p.1.cmp(&q.1)));
            r
        })
        .collect()
}

/// `got` equals `want` rounded to `T`, to a few units in the last place.
fn assert_close<T: Real>(got: T, want: f64, what: &str) {
    let (g, w) = (got.to_f64(), T::from_f64(want).to_f64());
    if g == w {
        return;
    }
    let (rel, tiny) = if is_f32::<T>() {
        (4.0 * f32::EPSILON as f64, 1e-44)
    } else {
        (1e-13, 1e-300)
    };
    assert!(
        (g - w).abs() <= rel * g.abs().max(w.abs()) || (g - w).abs() <= tiny,
        "{what}: distance {g} vs oracle {w}"
    );
}

/// Runs `knn` on `x` (and `y`) rounded to `T` for each k and compares.
fn check<T: Real>(
    x: &[f64],
    y: Option<&[f64]>,
    d: usize,
    metric: Metric,
    exclude_self: bool,
    ks: &[usize],
    case: &str,
) {
    let (xt, xo) = rounded::<T>(x);
    let (yt, yo) = rounded::<T>(y.unwrap_or(&[]));
    let xm = Matrix::new(&xt, xo.len() / d, d, "X").unwrap();
    let ym = y.map(|_| Matrix::new(&yt, yo.len() / d, d, "Y").unwrap());
    let reference = if y.is_some() { &yo } else { &xo };
    let skip_self = y.is_none() && exclude_self;
    let ranking = oracle_ranking(&xo, reference, d, metric, skip_self);
    for &k in ks {
        let what = format!(
            "{case}: {metric:?} f{} k={k} exclude_self={exclude_self}",
            8 * std::mem::size_of::<T>()
        );
        let out = knn(&xm, k, ym.as_ref(), metric, exclude_self).unwrap();
        let nearest = ranking.iter().flat_map(|r| &r[..k]);
        let idx: Vec<i64> = nearest.clone().map(|&(_, j)| j as i64).collect();
        let dist: Vec<f64> = nearest.map(|&(v, _)| oracle_dist(v, metric)).collect();
        assert_eq!(out.k, k, "{what}");
        assert_eq!(out.indices, idx, "{what}: indices");
        assert_eq!(out.distances.len(), dist.len(), "{what}");
        for (g, w) in out.distances.iter().zip(&dist) {
            assert_close(*g, *w, &what);
        }
    }
}

/// Every metric, f32 and f64, with and without self-exclusion; k from 1 to
/// the most neighbours available.
fn check_all(x: &[f64], d: usize, ks: &[usize], metrics: &[Metric], case: &str) {
    let n = x.len() / d;
    for &metric in metrics {
        for exclude_self in [true, false] {
            let avail = n - usize::from(exclude_self);
            let mut ks: Vec<usize> = ks.iter().map(|&k| k.min(avail)).collect();
            ks.push(avail);
            ks.dedup();
            check::<f32>(x, None, d, metric, exclude_self, &ks, case);
            check::<f64>(x, None, d, metric, exclude_self, &ks, case);
        }
    }
}

#[test]
fn random_data_every_metric_and_dtype() {
    let mut rng = Rng(1);
    for &(n, d) in &[(2usize, 3usize), (7, 1), (40, 5), (131, 17), (300, 130)] {
        let x = rng.gaussian(n * d, 0.0, 1.0);
        check_all(&x, d, &[1, 2, 7], &METRICS, "random");
    }
}

#[test]
fn separate_reference_set_with_copies_of_queries() {
    let mut rng = Rng(2);
    let (n, m, d) = (60, 150, 9);
    let x = rng.gaussian(n * d, 0.0, 1.0);
    let mut y = rng.gaussian(m * d, 0.0, 1.0);
    // Copies of queries (distance 0, still neighbours) and duplicates in the bank.
    for (q, r) in [(0, 5), (0, 77), (13, 0), (59, 149), (59, 148)] {
        y[r * d..][..d].copy_from_slice(&x[q * d..][..d]);
    }
    for metric in METRICS {
        // exclude_self only applies without a reference set.
        for exclude_self in [true, false] {
            let ks = [1, 4, m];
            check::<f32>(&x, Some(&y), d, metric, exclude_self, &ks, "reference");
            check::<f64>(&x, Some(&y), d, metric, exclude_self, &ks, "reference");
        }
    }
}

#[test]
fn integer_grid_ties_and_duplicates() {
    let mut rng = Rng(3);
    // 300 points on a 4 x 4 grid: every distance tied many times over, and
    // far more tied candidates per row than the screen keeps.
    let x = rng.grid(300 * 2, 4);
    check_all(&x, 2, &[1, 3, 20], &EUCLIDEAN, "grid");
    // A wider grid in 19 dimensions (a partial SIMD chunk).
    let x = rng.grid(150 * 19, 3);
    check_all(&x, 19, &[1, 5], &EUCLIDEAN, "grid19");
}

#[test]
fn cosine_ties_from_power_of_two_multiples() {
    let mut rng = Rng(4);
    let d = 6;
    let x = pow2_multiples(&mut rng, 250, 12, d);
    check_all(&x, d, &[1, 4, 30], &METRICS, "pow2 multiples");
}

#[test]
fn all_rows_identical() {
    let x = vec![-2.5; 200 * 7];
    check_all(&x, 7, &[1, 7, 100], &METRICS, "identical");
}

#[test]
fn far_from_the_origin() {
    let mut rng = Rng(5);
    // Offset 1e4 with a spread of a few f32 ulps: heavy ties in f32.
    let x = rng.gaussian(220 * 8, 1e4, 0.01);
    check_all(&x, 8, &[1, 10], &EUCLIDEAN, "far, narrow");
    let x = rng.gaussian(220 * 8, 1e4, 1.0);
    check_all(&x, 8, &[1, 10], &METRICS, "far");
}

#[test]
fn tiny_and_huge_magnitudes() {
    let mut rng = Rng(6);
    let (n, d) = (120, 11);
    let mut base = rng.gaussian(n * d, 0.0, 1.0);
    for r in [10, 20, 30, 119] {
        base.copy_within(0..d, r * d); // duplicates: exact ties
    }
    // Outside each dtype's safe range for squares: the kernel rescales.
    for (scale, f32_too) in [(1e30, true), (1e-30, true), (1e100, false), (1e-100, false)] {
        let x: Vec<f64> = base.iter().map(|v| v * scale).collect();
        for metric in METRICS {
            for exclude_self in [true, false] {
                let case = format!("scale {scale:e}");
                if f32_too {
                    check::<f32>(&x, None, d, metric, exclude_self, &[1, 5], &case);
                }
                check::<f64>(&x, None, d, metric, exclude_self, &[1, 5], &case);
            }
        }
    }
}

#[test]
fn k_out_of_range_is_an_error() {
    let x = [0.0f64, 1.0, 2.0, 3.0];
    let m = Matrix::new(&x, 4, 1, "X").unwrap();
    assert!(knn(&m, 0, None, Metric::Euclidean, true).is_err());
    assert!(knn(&m, 4, None, Metric::Euclidean, true).is_err());
    assert!(knn(&m, 4, None, Metric::Euclidean, false).is_ok());
    assert!(knn(&m, 5, None, Metric::Euclidean, false).is_err());
    let one = Matrix::new(&x[..1], 1, 1, "X").unwrap();
    assert!(knn(&one, 1, None, Metric::Euclidean, true).is_err());
    assert!(knn(&m, 1, Some(&one), Metric::Euclidean, true).is_ok());
    assert!(knn(&m, 2, Some(&one), Metric::Euclidean, true).is_err());
}
