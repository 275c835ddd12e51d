//! Helpers shared by the kernel tests: a small deterministic generator,
//! the data rounded to the kernel's type, and the f64 distance oracle.
#![allow(dead_code)] // each test crate uses its own subset

use tripletcore_core::{Metric, Real};

pub const METRICS: [Metric; 3] = [Metric::Euclidean, Metric::SqEuclidean, Metric::Cosine];
/// For data with zero rows or near-parallel rows, where cosine is undefined
/// or its f64 value is dominated by rounding.
pub const EUCLIDEAN: [Metric; 2] = [Metric::Euclidean, Metric::SqEuclidean];

/// Small deterministic generator (splitmix64), so the tests need no crates.
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn uniform(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Roughly standard normal (sum of twelve uniforms).
    pub fn normal(&mut self) -> f64 {
        (0..12).map(|_| self.uniform()).sum::<f64>() - 6.0
    }
    pub fn below(&mut self, k: u64) -> u64 {
        self.next() % k
    }
    pub fn gaussian(&mut self, len: usize, offset: f64, spread: f64) -> Vec<f64> {
        (0..len).map(|_| offset + spread * self.normal()).collect()
    }
    pub fn grid(&mut self, len: usize, levels: u64) -> Vec<f64> {
        (0..len).map(|_| self.below(levels) as f64).collect()
    }
}

/// The data rounded to `T`: what the kernel sees and what the oracle uses.
pub fn rounded<T: Real>(v: &[f64]) -> (Vec<T>, Vec<f64>) {
    let t: Vec<T> = v.iter().map(|&x| T::from_f64(x)).collect();
    let back = t.iter().map(|x| x.to_f64()).collect();
    (t, back)
}

pub fn is_f32<T: Real>() -> bool {
    std::mem::size_of::<T>() == 4
}

/// Euclidean norm, scaled by the largest magnitude so no square overflows.
pub fn norm(row: &[f64]) -> f64 {
    let amax = row.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    amax * row.iter().map(|v| (v / amax).powi(2)).sum::<f64>().sqrt()
}

/// Squared distances from coordinate differences, row-major n x m; cosine
/// divides each row by its norm first (`1 - cos = |x/|x| - y/|y||^2 / 2`).
pub fn oracle_d2(x: &[f64], y: &[f64], d: usize, metric: Metric) -> Vec<f64> {
    let norms = |v: &[f64]| -> Vec<f64> {
        v.chunks(d)
            .map(|r| match metric {
                Metric::Cosine => norm(r),
                _ => 1.0,
            })
            .collect()
    };
    let (nx, ny) = (norms(x), norms(y));
    let mut out = Vec::with_capacity(nx.len() * ny.len());
    for (a, s) in x.chunks(d).zip(&nx) {
        for (b, t) in y.chunks(d).zip(&ny) {
            out.push(a.iter().zip(b).map(|(u, v)| (u / s - v / t).powi(2)).sum());
        }
    }
    out
}

pub fn oracle_dist(d2: f64, metric: Metric) -> f64 {
    match metric {
        Metric::Euclidean => d2.sqrt(),
        Metric::SqEuclidean => d2,
        Metric::Cosine => 0.5 * d2,
    }
}

/// `rows` rows of dimension `d`, each 2^e (e in -3..=3) times one of `dirs`
/// random directions: equal unit vectors bit for bit, so cosine distances
/// tie exactly (and only there: rounding could split a tie between distinct
/// directions).
pub fn pow2_multiples(rng: &mut Rng, rows: usize, dirs: usize, d: usize) -> Vec<f64> {
    let base = rng.gaussian(dirs * d, 0.0, 1.0);
    let mut out = Vec::with_capacity(rows * d);
    for i in 0..rows {
        let scale = 2f64.powi(rng.below(7) as i32 - 3);
        out.extend(base[(i % dirs) * d..][..d].iter().map(|v| v * scale));
    }
    out
}
