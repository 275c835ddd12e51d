//! Input views, validation, and the transformed copies the tiled kernels
//! read (centred or unit-normalised rows, packed column panels).

use rayon::prelude::*;

use crate::error::{CoreError, Result};
use crate::metric::Metric;
use crate::real::{all_finite, Real};
use crate::tile::{has_avx2_fma, is_f32};

/// Passes over at most this many values run on the calling thread: handing
/// them to the pool (a wake-up per worker) costs more than the pass.
pub(crate) const SERIAL_LIMIT: usize = 1 << 16;
/// The same for the bit scans (finite check, max |x|), which take well under
/// a nanosecond per value: from a thread outside the pool the hand-off
/// alone costs tens of microseconds.
pub(crate) const SCAN_SERIAL_LIMIT: usize = 1 << 19;

/// A borrowed row-major matrix.
#[derive(Debug, Clone, Copy)]
pub struct Matrix<'a, T> {
    pub data: &'a [T],
    pub rows: usize,
    pub cols: usize,
}

impl<'a, T: Real> Matrix<'a, T> {
    /// Checks the shape and that every value is finite.
    pub fn new(data: &'a [T], rows: usize, cols: usize, arg: &'static str) -> Result<Self> {
        if rows == 0 || cols == 0 {
            return Err(CoreError::Empty { arg });
        }
        if data.len() != rows * cols {
            return Err(CoreError::Shape {
                arg,
                detail: format!("buffer of {} values is not {rows} x {cols}", data.len()),
            });
        }
        if !finite(data) {
            return Err(CoreError::NonFinite { arg });
        }
        Ok(Matrix { data, rows, cols })
    }

    #[inline(always)]
    pub fn row(&self, i: usize) -> &'a [T] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }
}

/// Whether every value is finite (neither NaN nor infinite).
pub fn finite<T: Real>(data: &[T]) -> bool {
    if data.len() <= SCAN_SERIAL_LIMIT {
        all_finite(data)
    } else {
        data.par_chunks(1 << 14).all(all_finite)
    }
}

/// Checks that `labels` has one entry per row of the matrix named `of`.
pub fn check_labels(labels: &[i64], rows: usize, arg: &'static str, of: &str) -> Result<()> {
    if labels.len() != rows {
        return Err(CoreError::Shape {
            arg,
            detail: format!("has {} entries but {of} has {rows} rows", labels.len()),
        });
    }
    Ok(())
}

/// Checks that two matrices have the same number of columns.
pub fn check_same_dim<T>(x: &Matrix<T>, y: &Matrix<T>) -> Result<()> {
    if x.cols != y.cols {
        return Err(CoreError::Shape {
            arg: "Y",
            detail: format!("has {} features but X has {}", y.cols, x.cols),
        });
    }
    Ok(())
}

/// Maps labels of both sets to dense codes `0..k` (equal labels, equal codes).
pub fn encode_labels(a: &[i64], b: Option<&[i64]>) -> (Vec<u32>, Vec<u32>) {
    let mut uniq: Vec<i64> = a.iter().chain(b.unwrap_or(&[]).iter()).copied().collect();
    let serial = uniq.len() <= SERIAL_LIMIT / 8;
    if serial {
        uniq.sort_unstable();
    } else {
        uniq.par_sort_unstable();
    }
    uniq.dedup();
    let code = |v: &i64| uniq.binary_search(v).expect("label present") as u32;
    let map = |v: &[i64]| -> Vec<u32> {
        if serial {
            v.iter().map(code).collect()
        } else {
            v.par_iter().map(code).collect()
        }
    };
    (map(a), b.map_or_else(Vec::new, map))
}

/// Euclidean norm of `values`, scaled by the largest magnitude so that
/// no square overflows or underflows.
pub(crate) fn safe_norm(values: impl Iterator<Item = f64> + Clone) -> f64 {
    let amax = values.clone().map(f64::abs).fold(0.0, f64::max);
    if amax == 0.0 {
        return 0.0;
    }
    let n2: f64 = values.map(|v| (v / amax).powi(2)).sum();
    amax * n2.sqrt()
}

/// Row norms, for the metrics that normalise rows (cosine), else `None`.
/// Rows are later divided by them (not multiplied by a reciprocal), so a
/// row that is a multiple of another maps to exactly the same unit vector
/// far more often.
pub fn row_norms<T: Real>(
    m: &Matrix<T>,
    metric: Metric,
    arg: &'static str,
) -> Result<Option<Vec<f64>>> {
    if !metric.normalizes() {
        return Ok(None);
    }
    let norm = |i: usize| safe_norm(m.row(i).iter().map(|v| v.to_f64()));
    let scales: Vec<f64> = if m.data.len() <= SERIAL_LIMIT {
        (0..m.rows).map(norm).collect()
    } else {
        (0..m.rows).into_par_iter().map(norm).collect()
    };
    if let Some(row) = scales.iter().position(|s| !(*s > 0.0 && s.is_finite())) {
        return Err(CoreError::ZeroNorm { arg, row });
    }
    Ok(Some(scales))
}

/// The affine map applied before the fast (approximate) kernels: rows are
/// shifted by `center` (Euclidean metrics: the common mean, which keeps the
/// expansion `|x|^2 + |y|^2 - 2 x.y` from cancelling) or scaled to unit norm.
pub struct Transform<'s> {
    center: Vec<f64>,
    norms_x: Option<&'s [f64]>,
    norms_y: Option<&'s [f64]>,
}

impl<'s> Transform<'s> {
    /// No shift: rows are only scaled (used where distances are taken
    /// directly from coordinate differences).
    pub fn scaling_only(d: usize, norms_x: Option<&'s [f64]>, norms_y: Option<&'s [f64]>) -> Self {
        Transform {
            center: vec![0.0; d],
            norms_x,
            norms_y,
        }
    }

    pub fn new<T: Real>(
        x: &Matrix<T>,
        y: Option<&Matrix<T>>,
        norms_x: Option<&'s [f64]>,
        norms_y: Option<&'s [f64]>,
    ) -> Self {
        let d = x.cols;
        let center = if norms_x.is_some() {
            vec![0.0; d]
        } else {
            let mut sum = column_sums(x);
            let mut count = x.rows;
            if let Some(y) = y {
                for (s, v) in sum.iter_mut().zip(column_sums(y)) {
                    *s += v;
                }
                count += y.rows;
            }
            sum.iter().map(|s| s / count as f64).collect()
        };
        Transform {
            center,
            norms_x,
            norms_y,
        }
    }
}

impl Transform<'_> {
    /// The centre rounded to `T` (the shift of unscaled rows).
    fn center_in<T: Real>(&self) -> Vec<T> {
        self.center.iter().map(|&c| T::from_f64(c)).collect()
    }
}

fn column_sums<T: Real>(m: &Matrix<T>) -> Vec<f64> {
    if m.data.len() <= SERIAL_LIMIT {
        let mut acc = vec![0.0f64; m.cols];
        for i in 0..m.rows {
            for (a, v) in acc.iter_mut().zip(m.row(i)) {
                *a += v.to_f64();
            }
        }
        return acc;
    }
    (0..m.rows)
        .into_par_iter()
        .fold(
            || vec![0.0f64; m.cols],
            |mut acc, i| {
                for (a, v) in acc.iter_mut().zip(m.row(i)) {
                    *a += v.to_f64();
                }
                acc
            },
        )
        .reduce(
            || vec![0.0f64; m.cols],
            |mut a, b| {
                for (x, y) in a.iter_mut().zip(b) {
                    *x += y;
                }
                a
            },
        )
}

/// Transformed anchor rows, padded with zero rows to a multiple of `mr`
/// and packed by groups of `mr` rows, k-major inside a group
/// (`rows[g * mr * d + k * mr + r]`), so the micro-kernel's broadcasts for
/// one k read one contiguous run.
pub struct Anchors<T> {
    pub rows: Vec<T>,
    pub norms: Vec<T>,
    pub n: usize,
    pub d: usize,
}

/// Transformed reference rows packed in panels of `nr` columns, each panel
/// stored k-major (`panel[k * nr + c]`) so the micro-kernel loads a row of
/// `nr` values per k. Padding columns have norm +inf and label `u32::MAX`.
pub struct Panels<T> {
    pub data: Vec<T>,
    pub norms: Vec<T>,
    pub labels: Vec<u32>,
    pub max_norm: Vec<T>,
    pub n: usize,
    pub d: usize,
    pub nr: usize,
}

impl<T: Real> Panels<T> {
    pub fn count(&self) -> usize {
        self.max_norm.len()
    }
    #[inline(always)]
    pub fn panel(&self, p: usize) -> &[T] {
        &self.data[p * self.d * self.nr..(p + 1) * self.d * self.nr]
    }
}

/// Largest squared norm the expansion may see before `T` overflows.
fn check_magnitude<T: Real>(max_norm2: f64, arg: &'static str) -> Result<()> {
    if max_norm2 > T::MAX_FINITE / 64.0 {
        return Err(CoreError::TooLarge { arg });
    }
    Ok(())
}

/// Transforms one row into `out` (`(v - c)`, divided by `scale` if given),
/// returning its squared norm summed in eight interleaved lanes: a fixed
/// order (the same bits on every call), without a serial chain of adds.
/// Without a scale the shift is taken in `T` (`center_t`, the centre
/// rounded once): a common shift does not change distances, and each value
/// is rounded once either way.
#[inline(always)]
fn transform_row<T: Real>(
    row: &[T],
    center: &[f64],
    center_t: &[T],
    scale: Option<f64>,
    out: &mut [T],
) -> f64 {
    // Simple loops (map, then sum of squares) so that each vectorises.
    let out = &mut out[..row.len()];
    match scale {
        Some(s) => {
            for ((o, v), c) in out.iter_mut().zip(row).zip(center) {
                *o = T::from_f64((v.to_f64() - c) / s);
            }
        }
        None => {
            for ((o, &v), &c) in out.iter_mut().zip(row).zip(center_t) {
                *o = v - c;
            }
        }
    }
    let mut acc = [0.0f64; 8];
    let mut lanes = out.chunks_exact(8);
    #[cfg(target_arch = "x86_64")]
    if is_f32::<T>() && has_avx2_fma() {
        let full = out.len() / 8 * 8;
        // SAFETY: T is f32 (checked); the CPU has AVX2 (checked at run time).
        acc = unsafe { wide::lane_squares_f32(out.as_ptr().cast(), full) };
        lanes = out[full..].chunks_exact(8);
    }
    for t in &mut lanes {
        for l in 0..8 {
            acc[l] += t[l].to_f64() * t[l].to_f64();
        }
    }
    for (a, t) in acc.iter_mut().zip(lanes.remainder()) {
        *a += t.to_f64() * t.to_f64();
    }
    ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]))
}

/// Transforms rows `first..first + width` of `m` (fewer at the end) into the
/// k-major group `out[k * width + r]`, their squared norms into `norms`;
/// returns the largest. `scratch` holds `width * d` values.
#[allow(clippy::too_many_arguments)]
fn pack_group<T: Real>(
    m: &Matrix<T>,
    center: &[f64],
    center_t: &[T],
    scales: Option<&[f64]>,
    first: usize,
    width: usize,
    out: &mut [T],
    norms: &mut [T],
    scratch: &mut [T],
) -> f64 {
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU supports AVX2 and FMA (checked at run time).
        return unsafe {
            pack_group_avx2(
                m, center, center_t, scales, first, width, out, norms, scratch,
            )
        };
    }
    pack_group_impl(
        m, center, center_t, scales, first, width, out, norms, scratch,
    )
}

/// The same operations compiled for AVX2 (no contraction: the same bits).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn pack_group_avx2<T: Real>(
    m: &Matrix<T>,
    center: &[f64],
    center_t: &[T],
    scales: Option<&[f64]>,
    first: usize,
    width: usize,
    out: &mut [T],
    norms: &mut [T],
    scratch: &mut [T],
) -> f64 {
    pack_group_impl(
        m, center, center_t, scales, first, width, out, norms, scratch,
    )
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn pack_group_impl<T: Real>(
    m: &Matrix<T>,
    center: &[f64],
    center_t: &[T],
    scales: Option<&[f64]>,
    first: usize,
    width: usize,
    out: &mut [T],
    norms: &mut [T],
    scratch: &mut [T],
) -> f64 {
    let d = m.cols;
    let rows = width.min(m.rows.saturating_sub(first));
    let mut max = 0.0f64;
    // Row-major into the scratch block, then transposed in 4 x 4 blocks
    // (for f32 four contiguous loads and stores and eight shuffles each).
    for (r, (nrm, buf)) in norms
        .iter_mut()
        .zip(scratch.chunks_exact_mut(d))
        .enumerate()
    {
        if r == rows {
            break;
        }
        let i = first + r;
        let n2 = transform_row(m.row(i), center, center_t, scales.map(|s| s[i]), buf);
        *nrm = T::from_f64(n2);
        max = max.max(n2);
    }
    let (rb, kb) = (rows - rows % 4, d - d % 4);
    assert!(scratch.len() >= rows * d && out.len() >= d * width);
    for r0 in (0..rb).step_by(4) {
        for k0 in (0..kb).step_by(4) {
            #[cfg(target_arch = "x86_64")]
            if is_f32::<T>() {
                let src = scratch[r0 * d + k0..].as_ptr().cast();
                let dst = out[k0 * width + r0..].as_mut_ptr().cast();
                // SAFETY: T is f32 (checked); rows r0..r0 + 4 of the scratch
                // and k0..k0 + 4 of the group are in bounds (asserted above).
                unsafe { wide::transpose4_f32(src, d, dst, width) };
                continue;
            }
            for (kk, dst) in out[k0 * width..].chunks_mut(width).take(4).enumerate() {
                for (q, o) in dst[r0..r0 + 4].iter_mut().enumerate() {
                    *o = scratch[(r0 + q) * d + k0 + kk];
                }
            }
        }
    }
    // The edges (rows past the last full block, columns past the last 4).
    for r in 0..rows {
        let ks = if r < rb { kb } else { 0 };
        for k in ks..d {
            out[k * width + r] = scratch[r * d + k];
        }
    }
    max
}

/// Largest group (tile height or panel width) [`pack_group`] handles.
const MAX_GROUP: usize = 64;

/// Runs `pack(g, group_out, group_norms, scratch)` over the groups, in
/// parallel when large (`scratch`: `group * d` values per worker).
fn pack_all<T: Real>(
    out: &mut [T],
    norms: &mut [T],
    group: usize,
    d: usize,
    pack: impl Fn(usize, &mut [T], &mut [T], &mut [T]) -> f64 + Sync,
) -> f64 {
    assert!(group <= MAX_GROUP);
    if out.len() <= SERIAL_LIMIT {
        let mut scratch = vec![T::ZERO; group * d];
        return out
            .chunks_mut(group * d)
            .zip(norms.chunks_mut(group))
            .enumerate()
            .map(|(g, (o, nrm))| pack(g, o, nrm, &mut scratch))
            .fold(0.0, f64::max);
    }
    out.par_chunks_mut(group * d)
        .zip(norms.par_chunks_mut(group))
        .enumerate()
        .map_init(
            || vec![T::ZERO; group * d],
            |scratch, (g, (o, nrm))| pack(g, o, nrm, scratch),
        )
        .reduce(|| 0.0, f64::max)
}

pub fn prepare_anchors<T: Real>(
    x: &Matrix<T>,
    tf: &Transform,
    mr: usize,
    arg: &'static str,
) -> Result<Anchors<T>> {
    let (n, d) = (x.rows, x.cols);
    let padded = n.div_ceil(mr) * mr;
    // Transformed straight into the packed layout (one pass, one buffer).
    let mut packed = vec![T::ZERO; padded * d];
    let mut norms = vec![T::ZERO; padded];
    let center_t = tf.center_in::<T>();
    let max = pack_all(&mut packed, &mut norms, mr, d, |g, out, nrm, scratch| {
        pack_group(
            x,
            &tf.center,
            &center_t,
            tf.norms_x,
            g * mr,
            mr,
            out,
            nrm,
            scratch,
        )
    });
    check_magnitude::<T>(max, arg)?;
    Ok(Anchors {
        rows: packed,
        norms,
        n,
        d,
    })
}

/// Packs `y` (already validated) into panels; `use_x_norms` selects which
/// scale vector of the transform applies (the symmetric case reuses X's).
pub fn prepare_panels<T: Real>(
    y: &Matrix<T>,
    labels: &[u32],
    tf: &Transform,
    use_x_norms: bool,
    nr: usize,
    arg: &'static str,
) -> Result<Panels<T>> {
    let (n, d) = (y.rows, y.cols);
    let np = n.div_ceil(nr);
    let scales = if use_x_norms { tf.norms_x } else { tf.norms_y };
    let mut data = vec![T::ZERO; np * d * nr];
    let mut norms = vec![T::INFINITY; np * nr];
    let center_t = tf.center_in::<T>();
    let max = pack_all(&mut data, &mut norms, nr, d, |p, panel, pn, scratch| {
        pack_group(
            y,
            &tf.center,
            &center_t,
            scales,
            p * nr,
            nr,
            panel,
            pn,
            scratch,
        )
    });
    // Padding columns keep norm +inf (never a candidate) and a label no row has.
    let plabels: Vec<u32> = (0..np * nr)
        .map(|j| {
            if j < n {
                labels.get(j).copied().unwrap_or(0)
            } else {
                u32::MAX
            }
        })
        .collect();
    let max_norm: Vec<T> = (0..np)
        .map(|p| {
            let real = &norms[p * nr..((p + 1) * nr).min(n)];
            T::from_f64(real.iter().fold(0.0f64, |m, v| m.max(v.to_f64())))
        })
        .collect();
    check_magnitude::<T>(max, arg)?;
    Ok(Panels {
        data,
        norms,
        labels: plabels,
        max_norm,
        n,
        d,
        nr,
    })
}

#[cfg(target_arch = "x86_64")]
mod wide {
    use std::arch::x86_64::*;

    /// Lane `l` of the result: the sum of `v[8 c + l]^2` over the `n / 8`
    /// chunks, in f64, multiply then add, as the portable loop does.
    ///
    /// # Safety
    /// `v` holds `n` values, `n` a multiple of 8; the CPU has AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn lane_squares_f32(v: *const f32, n: usize) -> [f64; 8] {
        let (mut lo, mut hi) = (_mm256_setzero_pd(), _mm256_setzero_pd());
        for c in (0..n).step_by(8) {
            let x = _mm256_loadu_ps(v.add(c));
            let a = _mm256_cvtps_pd(_mm256_castps256_ps128(x));
            let b = _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(x));
            lo = _mm256_add_pd(lo, _mm256_mul_pd(a, a));
            hi = _mm256_add_pd(hi, _mm256_mul_pd(b, b));
        }
        let mut out = [0.0f64; 8];
        _mm256_storeu_pd(out.as_mut_ptr(), lo);
        _mm256_storeu_pd(out.as_mut_ptr().add(4), hi);
        out
    }

    /// `dst[k * dst_stride + r] = src[r * src_stride + k]` for r, k in 0..4.
    ///
    /// # Safety
    /// Both 4 x 4 blocks are in bounds.
    #[inline(always)]
    pub(super) unsafe fn transpose4_f32(
        src: *const f32,
        src_stride: usize,
        dst: *mut f32,
        dst_stride: usize,
    ) {
        let r0 = _mm_loadu_ps(src);
        let r1 = _mm_loadu_ps(src.add(src_stride));
        let r2 = _mm_loadu_ps(src.add(2 * src_stride));
        let r3 = _mm_loadu_ps(src.add(3 * src_stride));
        let (t0, t1) = (_mm_unpacklo_ps(r0, r1), _mm_unpacklo_ps(r2, r3));
        let (t2, t3) = (_mm_unpackhi_ps(r0, r1), _mm_unpackhi_ps(r2, r3));
        _mm_storeu_ps(dst, _mm_movelh_ps(t0, t1));
        _mm_storeu_ps(dst.add(dst_stride), _mm_movehl_ps(t1, t0));
        _mm_storeu_ps(dst.add(2 * dst_stride), _mm_movelh_ps(t2, t3));
        _mm_storeu_ps(dst.add(3 * dst_stride), _mm_movehl_ps(t3, t2));
    }
}
