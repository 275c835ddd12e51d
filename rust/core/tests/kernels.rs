//! Kernels against plain brute-force f64 oracles, on random and adversarial data.

use tripletcore_core::*;

/// Small deterministic generator (xorshift64*), so tests need no crates.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545F4914F6CDD1D)
    }
    fn normal(&mut self) -> f64 {
        // Sum of uniforms: plenty for test data.
        (0..12)
            .map(|_| (self.next() >> 11) as f64 / (1u64 << 53) as f64)
            .sum::<f64>()
            - 6.0
    }
    fn below(&mut self, k: u64) -> i64 {
        (self.next() % k) as i64
    }
}

fn data<T: Real>(rng: &mut Rng, n: usize, d: usize, offset: f64) -> Vec<T> {
    (0..n * d)
        .map(|_| T::from_f64(rng.normal() + offset))
        .collect()
}

fn d2<T: Real>(a: &[T], b: &[T]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(u, v)| (u.to_f64() - v.to_f64()).powi(2))
        .sum()
}

fn oracle_batch_hard<T: Real>(
    x: &[T],
    y: &[T],
    d: usize,
    lx: &[i64],
    ly: &[i64],
    self_ex: bool,
) -> (Vec<i64>, Vec<i64>) {
    let (n, m) = (lx.len(), ly.len());
    let mut pos = vec![-1; n];
    let mut neg = vec![-1; n];
    for i in 0..n {
        let (mut bp, mut bn) = (f64::NEG_INFINITY, f64::INFINITY);
        for j in 0..m {
            let v = d2(&x[i * d..(i + 1) * d], &y[j * d..(j + 1) * d]);
            if lx[i] == ly[j] {
                if !(self_ex && i == j) && v > bp {
                    bp = v;
                    pos[i] = j as i64;
                }
            } else if v < bn {
                bn = v;
                neg[i] = j as i64;
            }
        }
    }
    (pos, neg)
}

fn check_batch_hard<T: Real>(x: &[T], n: usize, d: usize, labels: &[i64]) {
    let m = Matrix::new(x, n, d, "X").unwrap();
    let r = batch_hard(&m, labels, None, Metric::Euclidean).unwrap();
    let (p, q) = oracle_batch_hard(x, x, d, labels, labels, true);
    assert_eq!(r.pos_idx, p);
    assert_eq!(r.neg_idx, q);
    for i in 0..n {
        if p[i] >= 0 {
            let e = d2(
                &x[i * d..(i + 1) * d],
                &x[p[i] as usize * d..(p[i] as usize + 1) * d],
            )
            .sqrt();
            assert!((r.pos_dist[i].to_f64() - e).abs() <= 1e-6 * e.max(1e-30));
        } else {
            assert!(r.pos_dist[i].to_f64().is_nan());
        }
    }
}

#[test]
fn batch_hard_random_f32_f64() {
    let mut rng = Rng(7);
    for &(n, d, k) in &[
        (1usize, 1usize, 1u64),
        (5, 3, 2),
        (97, 17, 5),
        (500, 64, 40),
        (301, 129, 3),
    ] {
        let labels: Vec<i64> = (0..n).map(|_| rng.below(k)).collect();
        check_batch_hard(&data::<f32>(&mut rng, n, d, 0.0), n, d, &labels);
        check_batch_hard(&data::<f64>(&mut rng, n, d, 0.0), n, d, &labels);
    }
}

#[test]
fn batch_hard_far_from_origin_and_duplicates() {
    let mut rng = Rng(11);
    let (n, d) = (240, 9);
    let labels: Vec<i64> = (0..n).map(|_| rng.below(6)).collect();
    let mut x = data::<f32>(&mut rng, n, d, 1e4);
    // Exact duplicates of row 0 across classes: ties everywhere.
    for i in (0..n).step_by(4) {
        let row: Vec<f32> = x[..d].to_vec();
        x[i * d..(i + 1) * d].copy_from_slice(&row);
    }
    check_batch_hard(&x, n, d, &labels);
    // Everything identical: every candidate ties; lowest index must win.
    let same = vec![3.5f64; n * d];
    check_batch_hard(&same, n, d, &labels);
    // Integer grid: many exactly equal distances.
    let grid: Vec<f32> = (0..n * 2).map(|_| rng.below(4) as f32).collect();
    check_batch_hard(&grid, n, 2, &labels);
}

#[test]
fn batch_hard_reference_set() {
    let mut rng = Rng(3);
    let (n, m, d) = (50, 77, 6);
    let x = data::<f64>(&mut rng, n, d, 0.0);
    let mut y = data::<f64>(&mut rng, m, d, 0.0);
    y[..d].copy_from_slice(&x[..d]); // an anchor's copy in the bank is a valid positive
    let lx: Vec<i64> = (0..n).map(|_| rng.below(4)).collect();
    let mut ly: Vec<i64> = (0..m).map(|_| rng.below(4)).collect();
    ly[0] = lx[0];
    let (xm, ym) = (
        Matrix::new(&x, n, d, "X").unwrap(),
        Matrix::new(&y, m, d, "Y").unwrap(),
    );
    let r = batch_hard(&xm, &lx, Some((&ym, &ly)), Metric::SqEuclidean).unwrap();
    let (p, q) = oracle_batch_hard(&x, &y, d, &lx, &ly, false);
    assert_eq!((r.pos_idx, r.neg_idx), (p, q));
}

#[test]
fn same_result_for_any_thread_count() {
    let mut rng = Rng(5);
    let (n, d) = (700, 33);
    let x = data::<f32>(&mut rng, n, d, 0.0);
    let labels: Vec<i64> = (0..n).map(|_| rng.below(30)).collect();
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let m = Matrix::new(&x, n, d, "X").unwrap();
            let bh = batch_hard(&m, &labels, None, Metric::Cosine).unwrap();
            let opts = |mining| LossOptions {
                margin: 0.3,
                mining,
                soft: false,
                reduction: Reduction::Mean,
                fallback: Fallback::Hardest,
            };
            let l1 = triplet_margin_loss(&m, &labels, Metric::Euclidean, opts(Mining::BatchAll))
                .unwrap();
            let l2 = triplet_margin_loss(&m, &labels, Metric::Euclidean, opts(Mining::SemiHard))
                .unwrap();
            (bh, l1.loss, l1.grad, l2.loss, l2.grad)
        })
    };
    assert_eq!(run(1), run(3));
}

#[test]
fn cdist_matches_direct_computation() {
    let mut rng = Rng(9);
    let (n, m, d) = (23, 41, 13);
    let x = data::<f64>(&mut rng, n, d, 100.0);
    let y = data::<f64>(&mut rng, m, d, 100.0);
    let (xm, ym) = (
        Matrix::new(&x, n, d, "X").unwrap(),
        Matrix::new(&y, m, d, "Y").unwrap(),
    );
    let out = cdist(&xm, Some(&ym), Metric::Euclidean).unwrap();
    for i in 0..n {
        for j in 0..m {
            let e = d2(&x[i * d..(i + 1) * d], &y[j * d..(j + 1) * d]).sqrt();
            assert!((out[i * m + j] - e).abs() <= 1e-12 * e);
        }
    }
    let own = cdist(&xm, None, Metric::Euclidean).unwrap();
    assert!((0..n).all(|i| own[i * n + i] == 0.0));
}

/// Enumerates every triplet: the batch-all oracle.
fn batch_all_oracle(x: &[f64], d: usize, labels: &[i64], margin: f64) -> (f64, Vec<f64>) {
    let n = labels.len();
    let dist = |i: usize, j: usize| d2(&x[i * d..(i + 1) * d], &x[j * d..(j + 1) * d]).sqrt();
    let (mut sum, mut count) = (0.0, 0.0);
    let mut grad = vec![0.0; n * d];
    let add = |g: &mut [f64], i: usize, j: usize, w: f64| {
        let dij = dist(i, j);
        if dij > 0.0 {
            for k in 0..d {
                let t = w * (x[i * d + k] - x[j * d + k]) / dij;
                g[i * d + k] += t;
                g[j * d + k] -= t;
            }
        }
    };
    for a in 0..n {
        for p in 0..n {
            if p == a || labels[p] != labels[a] {
                continue;
            }
            for q in 0..n {
                if labels[q] == labels[a] {
                    continue;
                }
                count += 1.0;
                let h = dist(a, p) - dist(a, q) + margin;
                if h > 0.0 {
                    sum += h;
                    add(&mut grad, a, p, 1.0);
                    add(&mut grad, a, q, -1.0);
                }
            }
        }
    }
    (sum / count, grad.iter().map(|g| g / count).collect())
}

#[test]
fn batch_all_matches_enumeration() {
    let mut rng = Rng(13);
    let (n, d) = (40, 5);
    let x = data::<f64>(&mut rng, n, d, 0.0);
    let labels: Vec<i64> = (0..n).map(|_| rng.below(4)).collect();
    let m = Matrix::new(&x, n, d, "X").unwrap();
    let opts = LossOptions {
        margin: 1.0,
        mining: Mining::BatchAll,
        soft: false,
        reduction: Reduction::Mean,
        fallback: Fallback::Hardest,
    };
    let out = triplet_margin_loss(&m, &labels, Metric::Euclidean, opts).unwrap();
    let (l, g) = batch_all_oracle(&x, d, &labels, 1.0);
    assert!((out.loss - l).abs() < 1e-12 * l.abs().max(1.0));
    for (u, v) in out.grad.iter().zip(&g) {
        assert!((u - v).abs() < 1e-12, "{u} vs {v}");
    }
}

#[test]
fn loss_gradient_matches_finite_differences() {
    let mut rng = Rng(17);
    let (n, d) = (24, 4);
    let x = data::<f64>(&mut rng, n, d, 0.0);
    let labels: Vec<i64> = (0..n).map(|_| rng.below(3)).collect();
    for metric in [Metric::Euclidean, Metric::SqEuclidean, Metric::Cosine] {
        for mining in [Mining::BatchHard, Mining::SemiHard, Mining::BatchAll] {
            let opts = LossOptions {
                margin: 0.5,
                mining,
                soft: true,
                reduction: Reduction::Mean,
                fallback: Fallback::Hardest,
            };
            let f = |x: &[f64]| {
                triplet_margin_loss(&Matrix::new(x, n, d, "X").unwrap(), &labels, metric, opts)
                    .unwrap()
            };
            let base = f(&x);
            let h = 1e-6;
            for idx in [0, 7, 33, n * d - 1] {
                let (mut xp, mut xm) = (x.clone(), x.clone());
                xp[idx] += h;
                xm[idx] -= h;
                let (lp, lm) = (f(&xp), f(&xm));
                // Held-fixed triplets: only compare where mining did not change.
                let fd = (lp.loss - lm.loss) / (2.0 * h);
                assert!(
                    (fd - base.grad[idx]).abs() < 1e-5,
                    "{metric:?} {mining:?} {idx}: fd {fd} vs {}",
                    base.grad[idx]
                );
            }
        }
    }
}

#[test]
fn no_positive_pair_gives_zero_loss_and_gradient() {
    let x = [0.0f64, 1.0, 2.0, 3.0];
    let m = Matrix::new(&x, 4, 1, "X").unwrap();
    for mining in [Mining::BatchHard, Mining::SemiHard, Mining::BatchAll] {
        for reduction in [Reduction::Mean, Reduction::MeanNonzero, Reduction::Sum] {
            let opts = LossOptions {
                margin: 0.2,
                mining,
                soft: false,
                reduction,
                fallback: Fallback::Hardest,
            };
            let out = triplet_margin_loss(&m, &[0, 1, 2, 3], Metric::Euclidean, opts).unwrap();
            assert_eq!(out.loss, 0.0);
            assert!(out.grad.iter().all(|g| *g == 0.0));
        }
    }
}

#[test]
fn bad_input_is_an_error_naming_the_argument() {
    let x = [0.0f32, f32::NAN];
    assert_eq!(
        Matrix::new(&x, 1, 2, "X").unwrap_err(),
        CoreError::NonFinite { arg: "X" }
    );
    assert!(matches!(
        Matrix::<f32>::new(&[], 0, 3, "X"),
        Err(CoreError::Empty { arg: "X" })
    ));
    let z = [0.0f64, 0.0, 1.0, 0.0];
    let m = Matrix::new(&z, 2, 2, "X").unwrap();
    assert!(matches!(
        batch_hard(&m, &[0, 1], None, Metric::Cosine),
        Err(CoreError::ZeroNorm { arg: "X", row: 0 })
    ));
    assert!(matches!(
        batch_hard(&m, &[0], None, Metric::Euclidean),
        Err(CoreError::Shape { arg: "labels", .. })
    ));
}

#[test]
fn huge_and_tiny_coordinates_are_exact() {
    // Squares of these overflow / underflow the dtype; distances do not.
    for scale in [2f64.powi(100), 2f64.powi(-100)] {
        let v: Vec<f32> = [0.0, 0.0, 1.0, 0.0, 3.0, 0.0, 0.5, 0.0]
            .iter()
            .map(|u| (u * scale) as f32)
            .collect();
        let m = Matrix::new(&v, 4, 2, "X").unwrap();
        let r = batch_hard(&m, &[0, 0, 1, 1], None, Metric::Euclidean).unwrap();
        assert_eq!(r.neg_idx, vec![3, 3, 1, 0]);
        assert_eq!(r.pos_idx, vec![1, 0, 3, 2]);
        assert_eq!(r.neg_dist[0] as f64, 0.5 * scale);
        let c = cdist(&m, None, Metric::Euclidean).unwrap();
        assert_eq!(c[2] as f64, 3.0 * scale);
    }
}

#[test]
fn hausdorff_diameter_and_hardest_triplet_match_brute_force() {
    let mut rng = Rng(23);
    let (n, m, d) = (60, 45, 4);
    let a = data::<f64>(&mut rng, n, d, 0.0);
    let mut b = data::<f64>(&mut rng, m, d, 0.5);
    b[..d].copy_from_slice(&a[..d]); // an exact overlap
    let (am, bm) = (
        Matrix::new(&a, n, d, "A").unwrap(),
        Matrix::new(&b, m, d, "B").unwrap(),
    );
    let dist = |x: &[f64], i: usize, y: &[f64], j: usize| {
        d2(&x[i * d..(i + 1) * d], &y[j * d..(j + 1) * d]).sqrt()
    };
    // Directed: first maximum over rows of the first nearest neighbour.
    let mut want = (f64::NEG_INFINITY, 0, 0);
    for i in 0..n {
        let (mut best, mut bj) = (f64::INFINITY, 0);
        for j in 0..m {
            if dist(&a, i, &b, j) < best {
                best = dist(&a, i, &b, j);
                bj = j;
            }
        }
        if best > want.0 {
            want = (best, i, bj);
        }
    }
    let got = directed_hausdorff(&am, &bm).unwrap();
    assert_eq!((got.i, got.j), (want.1, want.2));
    assert!((got.value - want.0).abs() < 1e-12);
    assert!(hausdorff(&am, &bm).unwrap().value >= got.value);

    let diam = diameter(&am).unwrap();
    let brute = (0..n)
        .flat_map(|i| (0..n).map(move |j| (i, j)))
        .map(|(i, j)| dist(&a, i, &a, j))
        .fold(0.0, f64::max);
    assert!((diam.value - brute).abs() < 1e-12);

    let labels: Vec<i64> = (0..n).map(|_| rng.below(3)).collect();
    let h = hardest_triplet(&am, &labels).unwrap();
    let mut best = f64::NEG_INFINITY;
    for x in 0..n {
        for p in (0..n).filter(|&p| p != x && labels[p] == labels[x]) {
            for q in (0..n).filter(|&q| labels[q] != labels[x]) {
                best = best.max(dist(&a, x, &a, p) - dist(&a, x, &a, q));
            }
        }
    }
    assert!((h.value - best).abs() < 1e-12);
    assert!(hardest_triplet(&am, &vec![7; n]).is_err());
}

#[test]
fn isometric_error_matches_brute_force() {
    let mut rng = Rng(29);
    let n = 130;
    let (d1, d2) = (5, 3);
    let x1 = data::<f32>(&mut rng, n, d1, 0.0);
    let x2 = data::<f32>(&mut rng, n, d2, 0.0);
    let (m1, m2) = (
        Matrix::new(&x1, n, d1, "X1").unwrap(),
        Matrix::new(&x2, n, d2, "X2").unwrap(),
    );
    let mut want = (f64::NEG_INFINITY, 0, 0);
    for i in 0..n {
        for j in i + 1..n {
            let e = (d2_of(&x1, d1, i, j).sqrt() - d2_of(&x2, d2, i, j).sqrt()).abs();
            if e > want.0 {
                want = (e, i, j);
            }
        }
    }
    let got = isometric_error(&m1, &m2).unwrap();
    assert_eq!((got.i, got.j), (want.1, want.2));
    assert!((got.value - want.0).abs() < 1e-12);
    // Identical embeddings: every pair ties at 0; the lowest pair wins.
    let same = isometric_error(&m1, &m1).unwrap();
    assert_eq!((same.value, same.i, same.j), (0.0, 0, 1));
}

fn d2_of<T: Real>(x: &[T], d: usize, i: usize, j: usize) -> f64 {
    d2(&x[i * d..(i + 1) * d], &x[j * d..(j + 1) * d])
}

/// Brute-force directed Hausdorff on squared sums: first row of largest
/// nearest distance, lowest nearest index.
fn brute_directed(a: &[f64], b: &[f64], d: usize) -> (f64, usize, usize) {
    let (n, m) = (a.len() / d, b.len() / d);
    let mut want = (f64::NEG_INFINITY, 0, 0);
    for i in 0..n {
        let (mut best, mut bj) = (f64::INFINITY, 0);
        for j in 0..m {
            let v = d2(&a[i * d..(i + 1) * d], &b[j * d..(j + 1) * d]);
            if v < best {
                (best, bj) = (v, j);
            }
        }
        if best > want.0 {
            want = (best, i, bj);
        }
    }
    (want.0.sqrt(), want.1, want.2)
}

#[test]
fn low_dimensional_hausdorff_ties_and_overlaps() {
    // The k-d tree path (d <= 8): integer grids give many exact ties, a
    // shuffled copy gives nearest distance 0 for every row.
    let mut rng = Rng(41);
    for d in 1..=9 {
        for case in 0..3 {
            let (n, m) = (700 + 37 * d, 500 + 11 * d);
            let a: Vec<f64> = (0..n * d).map(|_| rng.below(7) as f64 - 3.0).collect();
            let b: Vec<f64> = match case {
                0 => (0..m * d).map(|_| rng.below(7) as f64 - 3.0).collect(),
                1 => (0..m * d).map(|_| rng.normal()).collect(),
                _ => {
                    let mut rows: Vec<usize> = (0..n).collect();
                    rows.sort_by_key(|&r| (r * 7919) % n);
                    rows.iter()
                        .flat_map(|&r| a[r * d..(r + 1) * d].to_vec())
                        .collect()
                }
            };
            let mb = b.len() / d;
            let (am, bm) = (
                Matrix::new(&a, n, d, "A").unwrap(),
                Matrix::new(&b, mb, d, "B").unwrap(),
            );
            let want = brute_directed(&a, &b, d);
            let got = directed_hausdorff(&am, &bm).unwrap();
            assert_eq!((got.i, got.j), (want.1, want.2), "d = {d}, case {case}");
            assert!(
                (got.value - want.0).abs() <= 1e-14 * want.0,
                "d = {d}, case {case}"
            );
        }
    }
}

#[test]
fn min_width_2d_matches_brute_force() {
    let mut rng = Rng(43);
    for case in 0..200 {
        let n = 1 + (case % 25);
        let p: Vec<f64> = (0..2 * n)
            .map(|_| {
                if case % 2 == 0 {
                    rng.below(5) as f64
                } else {
                    rng.normal()
                }
            })
            .collect();
        // Minimum over all pair directions of the width normal to them.
        let mut want = f64::INFINITY;
        for i in 0..n {
            for j in 0..n {
                let (dx, dy) = (p[2 * j] - p[2 * i], p[2 * j + 1] - p[2 * i + 1]);
                let len = dx.hypot(dy);
                if len == 0.0 {
                    continue;
                }
                let proj: Vec<f64> = (0..n)
                    .map(|k| (-dy * p[2 * k] + dx * p[2 * k + 1]) / len)
                    .collect();
                let w = proj.iter().cloned().fold(f64::NEG_INFINITY, f64::max)
                    - proj.iter().cloned().fold(f64::INFINITY, f64::min);
                want = want.min(w);
            }
        }
        if !want.is_finite() {
            want = 0.0; // all points equal
        }
        let got = min_width_2d(&Matrix::new(&p, n, 2, "A").unwrap()).unwrap();
        assert!(
            (got.value - want).abs() <= 1e-12 * want.max(1.0),
            "case {case}"
        );
        let [ex, ey] = got.direction;
        assert!((ex.hypot(ey) - 1.0).abs() < 1e-12);
    }
    let three = [0.0, 0.0, 1.0, 0.0, 0.0, 1.0];
    assert!(min_width_2d(&Matrix::new(&three, 2, 3, "A").unwrap()).is_err());
}
