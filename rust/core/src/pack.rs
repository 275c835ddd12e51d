//! The transformed copies the tiled kernels read: centred or
//! unit-normalised rows, anchors packed by tile height, references packed
//! in column panels.

use rayon::prelude::*;

use crate::engine::{dispatch, lane_squares, transpose4, widest, Kernel};
use crate::error::{CoreError, Result};
use crate::exact::safe_norm;
use crate::matrix::{Matrix, SERIAL_LIMIT};
use crate::metric::Metric;
use crate::real::Real;

/// Row norms, for the metrics that normalise rows (cosine), else `None`.
/// Rows are later divided by them (not multiplied by a reciprocal), so a
/// row that is a multiple of another maps to exactly the same unit vector
/// far more often.
pub(crate) fn row_norms<T: Real>(
    m: &Matrix<T>,
    metric: Metric,
    arg: &'static str,
) -> Result<Option<Vec<f64>>> {
    if !metric.normalizes() {
        return Ok(None);
    }
    let norm = |i: usize| safe_norm(m.row(i).iter().map(|v| v.to_f64()));
    let scales: Vec<f64> = if m.data().len() <= SERIAL_LIMIT {
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
pub(crate) struct Transform<'s> {
    center: Vec<f64>,
    norms_x: Option<&'s [f64]>,
    norms_y: Option<&'s [f64]>,
}

impl<'s> Transform<'s> {
    /// No shift: rows are only scaled (used where distances are taken
    /// directly from coordinate differences).
    pub(crate) fn scaling_only(
        d: usize,
        norms_x: Option<&'s [f64]>,
        norms_y: Option<&'s [f64]>,
    ) -> Self {
        Transform {
            center: vec![0.0; d],
            norms_x,
            norms_y,
        }
    }

    pub(crate) fn new<T: Real>(
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
    if m.data().len() <= SERIAL_LIMIT {
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
pub(crate) struct Anchors<T> {
    pub(crate) rows: Vec<T>,
    pub(crate) norms: Vec<T>,
    pub(crate) n: usize,
    pub(crate) d: usize,
}

/// Transformed reference rows packed in panels of `nr` columns, each panel
/// stored k-major (`panel[k * nr + c]`) so the micro-kernel loads a row of
/// `nr` values per k. Padding columns have norm +inf and label `u32::MAX`.
pub(crate) struct Panels<T> {
    pub(crate) data: Vec<T>,
    pub(crate) norms: Vec<T>,
    pub(crate) labels: Vec<u32>,
    pub(crate) max_norm: Vec<T>,
    pub(crate) n: usize,
    pub(crate) d: usize,
    pub(crate) nr: usize,
}

impl<T: Real> Panels<T> {
    pub(crate) fn count(&self) -> usize {
        self.max_norm.len()
    }
    #[inline(always)]
    pub(crate) fn panel(&self, p: usize) -> &[T] {
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
    if let Some((sums, full)) = lane_squares(out) {
        acc = sums;
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
struct PackGroup<'a, 'm, T> {
    m: &'a Matrix<'m, T>,
    /// Packed position -> row of `m` (`None`: the identity).
    order: Option<&'a [u32]>,
    center: &'a [f64],
    center_t: &'a [T],
    scales: Option<&'a [f64]>,
    first: usize,
    width: usize,
    out: &'a mut [T],
    norms: &'a mut [T],
    scratch: &'a mut [T],
}

impl<T: Real> Kernel for PackGroup<'_, '_, T> {
    type Output = f64;
    /// The same operations on every path (no contraction: the same bits).
    #[inline(always)]
    fn run<const FMA: bool>(self) -> f64 {
        pack_group_impl(self)
    }
}

#[inline(always)]
fn pack_group_impl<T: Real>(g: PackGroup<'_, '_, T>) -> f64 {
    let PackGroup {
        m,
        order,
        center,
        center_t,
        scales,
        first,
        width,
        out,
        norms,
        scratch,
    } = g;
    let d = m.cols;
    let len = order.map_or(m.rows, |o| o.len());
    let rows = width.min(len.saturating_sub(first));
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
        let i = order.map_or(first + r, |o| o[first + r] as usize);
        let n2 = transform_row(m.row(i), center, center_t, scales.map(|s| s[i]), buf);
        *nrm = T::from_f64(n2);
        max = max.max(n2);
    }
    let (rb, kb) = (rows - rows % 4, d - d % 4);
    assert!(scratch.len() >= rows * d && out.len() >= d * width);
    for r0 in (0..rb).step_by(4) {
        for k0 in (0..kb).step_by(4) {
            if transpose4(
                &scratch[r0 * d + k0..],
                d,
                &mut out[k0 * width + r0..],
                width,
            ) {
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

/// Largest group (tile height or panel width) [`PackGroup`] handles.
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

pub(crate) fn prepare_anchors<T: Real>(
    x: &Matrix<T>,
    tf: &Transform,
    mr: usize,
    arg: &'static str,
) -> Result<Anchors<T>> {
    prepare_anchors_in_order(x, None, tf, mr, arg)
}

/// [`prepare_anchors`] of the rows `order` of `x` (anchor `p` is row
/// `order[p]`), or of every row in order.
pub(crate) fn prepare_anchors_in_order<T: Real>(
    x: &Matrix<T>,
    order: Option<&[u32]>,
    tf: &Transform,
    mr: usize,
    arg: &'static str,
) -> Result<Anchors<T>> {
    let (n, d) = (order.map_or(x.rows, |o| o.len()), x.cols);
    let padded = n.div_ceil(mr) * mr;
    // Transformed straight into the packed layout (one pass, one buffer).
    let mut packed = vec![T::ZERO; padded * d];
    let mut norms = vec![T::ZERO; padded];
    let center_t = tf.center_in::<T>();
    let max = pack_all(&mut packed, &mut norms, mr, d, |g, out, nrm, scratch| {
        let group = PackGroup {
            m: x,
            order,
            center: &tf.center,
            center_t: &center_t,
            scales: tf.norms_x,
            first: g * mr,
            width: mr,
            out,
            norms: nrm,
            scratch,
        };
        dispatch(widest::SUPPORT, group)
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
pub(crate) fn prepare_panels<T: Real>(
    y: &Matrix<T>,
    labels: &[u32],
    tf: &Transform,
    use_x_norms: bool,
    nr: usize,
    arg: &'static str,
) -> Result<Panels<T>> {
    prepare_panels_in_order(y, None, labels, tf, use_x_norms, nr, arg)
}

/// [`prepare_panels`] of the rows `order` of `y` (column `p` is row
/// `order[p]`, with label `labels[p]`), or of every row in order.
pub(crate) fn prepare_panels_in_order<T: Real>(
    y: &Matrix<T>,
    order: Option<&[u32]>,
    labels: &[u32],
    tf: &Transform,
    use_x_norms: bool,
    nr: usize,
    arg: &'static str,
) -> Result<Panels<T>> {
    let (n, d) = (order.map_or(y.rows, |o| o.len()), y.cols);
    let np = n.div_ceil(nr);
    let scales = if use_x_norms { tf.norms_x } else { tf.norms_y };
    let mut data = vec![T::ZERO; np * d * nr];
    let mut norms = vec![T::INFINITY; np * nr];
    let center_t = tf.center_in::<T>();
    let max = pack_all(&mut data, &mut norms, nr, d, |p, panel, pn, scratch| {
        let group = PackGroup {
            m: y,
            order,
            center: &tf.center,
            center_t: &center_t,
            scales,
            first: p * nr,
            width: nr,
            out: panel,
            norms: pn,
            scratch,
        };
        dispatch(widest::SUPPORT, group)
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
