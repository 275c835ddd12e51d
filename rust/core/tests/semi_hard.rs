//! `semi_hard` against a brute-force f64 oracle written from the documented
//! semantics (docs/api.md): per ordered positive pair (a, p), in order of a
//! then p, the nearest negative n with d(a,p) < d(a,n) < d(a,p) + margin,
//! ties by the lowest index, else the fallback. Indices must be equal,
//! distances equal to rounding; random and adversarial data, every metric,
//! f32 and f64, every fallback.

use tripletcore_core::{semi_hard, Fallback, Matrix, Metric, Real};

mod common;
use common::{is_f32, oracle_d2, oracle_dist, pow2_multiples, rounded, Rng, EUCLIDEAN, METRICS};

const FALLBACKS: [Fallback; 3] = [Fallback::Hardest, Fallback::Easiest, Fallback::Drop];

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

/// One triplet: anchor, positive, negative, d(a,p), d(a,n).
type Triplet = (i64, i64, i64, f64, f64);

/// The documented semantics, scanning every negative of every pair.
fn oracle_semi_hard(
    d2: &[f64],
    labels: &[i64],
    margin: f64,
    metric: Metric,
    fallback: Fallback,
) -> Vec<Triplet> {
    let n = labels.len();
    let dist = |v: f64| oracle_dist(v, metric);
    let mut out = Vec::new();
    for a in 0..n {
        let row = &d2[a * n..][..n];
        let negatives: Vec<usize> = (0..n).filter(|&j| labels[j] != labels[a]).collect();
        // Nearest (or farthest) negative among `cands`: strict comparisons
        // over ascending indices keep the lowest index of a tie.
        let nearest = |cands: &mut dyn Iterator<Item = usize>| {
            cands.fold(None, |best: Option<usize>, j| match best {
                Some(b) if row[b] <= row[j] => Some(b),
                _ => Some(j),
            })
        };
        if negatives.is_empty() {
            continue;
        }
        for p in (0..n).filter(|&p| p != a && labels[p] == labels[a]) {
            let dap = dist(row[p]);
            let window = negatives
                .iter()
                .copied()
                .filter(|&j| row[j] > row[p] && dist(row[j]) < dap + margin);
            let pick = nearest(&mut window.into_iter()).or_else(|| match fallback {
                Fallback::Hardest => nearest(&mut negatives.iter().copied()),
                Fallback::Easiest => negatives.iter().copied().fold(None, |best, j| match best {
                    Some(b) if row[b] >= row[j] => Some(b),
                    _ => Some(j),
                }),
                Fallback::Drop => None,
            });
            if let Some(j) = pick {
                out.push((a as i64, p as i64, j as i64, dap, dist(row[j])));
            }
        }
    }
    out
}

/// Runs `semi_hard` on `x` rounded to `T` and compares with the oracle.
fn check<T: Real>(
    x: &[f64],
    d: usize,
    labels: &[i64],
    metric: Metric,
    margins: &[f64],
    case: &str,
) -> Vec<usize> {
    let (xt, xo) = rounded::<T>(x);
    let m = Matrix::new(&xt, labels.len(), d, "X").unwrap();
    let d2 = oracle_d2(&xo, &xo, d, metric);
    let mut counts = Vec::new();
    for &margin in margins {
        for fallback in FALLBACKS {
            let what = format!(
                "{case}: {metric:?} f{} margin={margin} {fallback:?}",
                8 * std::mem::size_of::<T>()
            );
            let got = semi_hard(&m, labels, margin, metric, fallback).unwrap();
            let want = oracle_semi_hard(&d2, labels, margin, metric, fallback);
            let column = |f: fn(&Triplet) -> i64| want.iter().map(f).collect::<Vec<_>>();
            assert_eq!(got.anchor, column(|t| t.0), "{what}: anchors");
            assert_eq!(got.positive, column(|t| t.1), "{what}: positives");
            assert_eq!(got.negative, column(|t| t.2), "{what}: negatives");
            assert_eq!(got.pos_dist.len(), want.len(), "{what}");
            assert_eq!(got.neg_dist.len(), want.len(), "{what}");
            for (i, t) in want.iter().enumerate() {
                assert_close(got.pos_dist[i], t.3, &what);
                assert_close(got.neg_dist[i], t.4, &what);
            }
            counts.push(want.len());
        }
    }
    counts
}

/// Every given metric in f32 and f64; `scale` is a typical distance, by
/// which the margins are multiplied (squared for sqeuclidean, 1 for cosine).
fn check_all(x: &[f64], d: usize, labels: &[i64], metrics: &[Metric], scale: f64, case: &str) {
    for &metric in metrics {
        let unit = match metric {
            Metric::Euclidean => scale,
            Metric::SqEuclidean => scale * scale,
            Metric::Cosine => 1.0,
        };
        let margins: Vec<f64> = [0.0, 0.05, 0.3, 1.0, f64::INFINITY]
            .iter()
            .map(|m| m * unit)
            .collect();
        check::<f32>(x, d, labels, metric, &margins, case);
        check::<f64>(x, d, labels, metric, &margins, case);
    }
}

fn labels(rng: &mut Rng, n: usize, classes: u64) -> Vec<i64> {
    (0..n).map(|_| rng.below(classes) as i64).collect()
}

#[test]
fn random_data_every_metric_dtype_and_fallback() {
    let mut rng = Rng(11);
    for &(n, d, classes) in &[(2usize, 3usize, 2u64), (9, 1, 3), (60, 5, 4), (160, 33, 8)] {
        let x = rng.gaussian(n * d, 0.0, 1.0);
        let l = labels(&mut rng, n, classes);
        check_all(&x, d, &l, &METRICS, (2.0 * d as f64).sqrt(), "random");
    }
}

#[test]
fn every_branch_is_exercised() {
    // Guards the tests above against vacuity: on this data some pairs find
    // a semi-hard negative and some fall back, so the three fallbacks give
    // different triplet counts.
    let mut rng = Rng(12);
    let (n, d) = (80, 4);
    let x = rng.gaussian(n * d, 0.0, 1.0);
    let l = labels(&mut rng, n, 4);
    let counts = check::<f64>(&x, d, &l, Metric::Euclidean, &[0.3], "branches");
    let (hardest, easiest, drop) = (counts[0], counts[1], counts[2]);
    assert_eq!(hardest, easiest);
    assert!(0 < drop && drop < hardest, "{counts:?}");
}

#[test]
fn integer_grid_ties_and_duplicates() {
    let mut rng = Rng(13);
    let x = rng.grid(150 * 2, 4);
    let l = labels(&mut rng, 150, 3);
    check_all(&x, 2, &l, &EUCLIDEAN, 1.0, "grid");
    let x = rng.grid(90 * 17, 3);
    let l = labels(&mut rng, 90, 5);
    check_all(&x, 17, &l, &EUCLIDEAN, 2.0, "grid17");
}

#[test]
fn cosine_ties_from_power_of_two_multiples() {
    let mut rng = Rng(14);
    let d = 5;
    let x = pow2_multiples(&mut rng, 120, 9, d);
    let l = labels(&mut rng, 120, 4);
    check_all(&x, d, &l, &METRICS, 1.0, "pow2 multiples");
}

#[test]
fn all_rows_identical() {
    // Every distance is 0: no negative is ever farther than a positive.
    let x = vec![1.25; 40 * 3];
    let mut rng = Rng(15);
    let l = labels(&mut rng, 40, 3);
    check_all(&x, 3, &l, &METRICS, 1.0, "identical");
}

#[test]
fn singleton_classes_and_a_class_alone() {
    let mut rng = Rng(16);
    let (n, d) = (50, 6);
    let x = rng.gaussian(n * d, 0.0, 1.0);
    // Classes 100.. have one member each (no positive, no triplet).
    let mut l = labels(&mut rng, n, 3);
    for (i, v) in l.iter_mut().enumerate().step_by(5) {
        *v = 100 + i as i64;
    }
    check_all(&x, d, &l, &METRICS, 3.0, "singletons");
    // One class: no anchor has a negative, so no triplets at all.
    let one = vec![7i64; n];
    for fallback in FALLBACKS {
        let m = Matrix::new(&x, n, d, "X").unwrap();
        let r = semi_hard(&m, &one, 0.5, Metric::Euclidean, fallback).unwrap();
        assert!(r.anchor.is_empty() && r.neg_dist.is_empty(), "{fallback:?}");
    }
    check_all(&x, d, &one, &METRICS, 3.0, "one class");
    // Every point its own class: no positives.
    let own: Vec<i64> = (0..n as i64).collect();
    check_all(&x, d, &own, &METRICS, 3.0, "all singletons");
}

#[test]
fn far_from_the_origin() {
    let mut rng = Rng(17);
    let l = labels(&mut rng, 120, 5);
    // Offset 1e4 with a spread of a few f32 ulps: heavy ties in f32.
    let x = rng.gaussian(120 * 8, 1e4, 0.01);
    check_all(&x, 8, &l, &EUCLIDEAN, 0.04, "far, narrow");
    let x = rng.gaussian(120 * 8, 1e4, 1.0);
    check_all(&x, 8, &l, &METRICS, 4.0, "far");
}

#[test]
fn tiny_and_huge_magnitudes() {
    let mut rng = Rng(18);
    let (n, d) = (70, 9);
    let mut base = rng.gaussian(n * d, 0.0, 1.0);
    for r in [10, 20, 69] {
        base.copy_within(0..d, r * d); // duplicates: exact ties
    }
    let l = labels(&mut rng, n, 4);
    for (scale, f32_too) in [(1e30, true), (1e-30, true), (1e100, false), (1e-100, false)] {
        let x: Vec<f64> = base.iter().map(|v| v * scale).collect();
        let case = format!("scale {scale:e}");
        for metric in METRICS {
            let unit = match metric {
                Metric::Euclidean => 4.0 * scale,
                Metric::SqEuclidean => 16.0 * scale * scale,
                Metric::Cosine => 1.0,
            };
            let margins = [0.0, 0.3 * unit, f64::INFINITY];
            if f32_too {
                check::<f32>(&x, d, &l, metric, &margins, &case);
            }
            check::<f64>(&x, d, &l, metric, &margins, &case);
        }
    }
}

#[test]
fn bad_margin_or_labels_are_errors() {
    let x = [0.0f64, 1.0, 2.0, 3.0];
    let m = Matrix::new(&x, 4, 1, "X").unwrap();
    let l = [0, 0, 1, 1];
    let run = |labels: &[i64], margin: f64| {
        semi_hard(&m, labels, margin, Metric::Euclidean, Fallback::Hardest)
    };
    assert!(run(&l, f64::NAN).is_err());
    assert!(run(&l, -0.1).is_err());
    assert!(run(&l, f64::INFINITY).is_ok());
    assert!(run(&l[..3], 0.2).is_err());
}
