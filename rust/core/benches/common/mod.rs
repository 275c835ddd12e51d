//! Shared benchmark inputs: f32 points in d = 128.

/// The sizes the issue asks for: N = 1,024 and 8,192 rows of d = 128.
pub const SIZES: [usize; 2] = [1024, 8192];
pub const DIM: usize = 128;

/// Deterministic roughly-normal f32 data (xorshift64, sum of four uniforms),
/// so the benchmarks need no random-number crate.
pub fn points(n: usize, d: usize, seed: u64) -> Vec<f32> {
    let mut s = seed | 1;
    let mut uniform = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 40) as f32 / (1u64 << 24) as f32
    };
    (0..n * d)
        .map(|_| (0..4).map(|_| uniform()).sum::<f32>() - 2.0)
        .collect()
}
