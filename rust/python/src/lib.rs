//! `tripletcore._core`: converts NumPy arrays to `tripletcore-core` views,
//! releases the GIL around every kernel, and maps core errors to Python
//! exceptions in one place (`errors.rs`). All argument conversion beyond float32/float64
//! and int64 happens in the Python layer.

use numpy::{PyArray1, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::prelude::*;
use pyo3::IntoPyObjectExt;
use tripletcore_core as core;
use tripletcore_core::{Fallback, LossOptions, Metric, Mining, Real, Reduction};

mod errors;
mod guard;
mod input;
mod memory;
use errors::{conflict, core_error, input_error, option, wrong_type};
use guard::run;
use input::{floats, labels_slice, matrix, other, snapshot, Floats};

/// Multiply-adds of an `a` x `b` x `c` kernel, for [`run`]'s choice of thread.
fn work(a: usize, b: usize, c: usize) -> usize {
    a.saturating_mul(b).saturating_mul(c)
}

/// `let $m = ` the core view of a snapshot of the array `$a` (argument `$arg`).
macro_rules! view {
    ($m:ident = $a:expr, $arg:expr) => {
        let data = snapshot(&$a, $arg)?;
        let $m = matrix(&$a, &data, $arg)?;
    };
}

/// The same for an optional array.
macro_rules! view_opt {
    ($m:ident = $a:expr, $arg:expr) => {
        let data = $a.as_ref().map(|a| snapshot(a, $arg)).transpose()?;
        let $m = $a
            .as_ref()
            .zip(data.as_deref())
            .map(|(a, d)| matrix(a, d, $arg))
            .transpose()?;
    };
}

/// Dispatches a generic body over the float dtype of `x`.
macro_rules! by_dtype {
    ($x:expr, $arg:expr, |$a:ident : $t:ident| $body:expr) => {
        match floats($x, $arg)? {
            Floats::F32($a) => {
                type $t = f32;
                $body
            }
            Floats::F64($a) => {
                type $t = f64;
                $body
            }
        }
    };
}

/// Whether every value of a float32/float64 array (any shape, C-contiguous) is finite.
#[pyfunction]
fn all_finite(py: Python<'_>, x: &Bound<'_, PyAny>) -> PyResult<bool> {
    fn check<T: Real + numpy::Element>(
        py: Python<'_>,
        a: &Bound<'_, PyAny>,
    ) -> PyResult<Option<bool>> {
        let Ok(a) = a.extract::<numpy::PyReadonlyArrayDyn<T>>() else {
            return Ok(None);
        };
        let data = a
            .as_slice()
            .map_err(|_| input_error("the array must be C-contiguous".into(), "x", "layout"))?;
        Ok(Some(run(py, "all_finite", 0, || core::finite(data))?))
    }
    if let Some(ok) = check::<f32>(py, x)? {
        return Ok(ok);
    }
    if let Some(ok) = check::<f64>(py, x)? {
        return Ok(ok);
    }
    Err(wrong_type(
        "all_finite needs a float32 or float64 numpy array".into(),
    ))
}

#[pyfunction]
#[pyo3(signature = (x, y, metric))]
fn cdist<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    y: Option<&Bound<'py, PyAny>>,
    metric: &str,
) -> PyResult<Bound<'py, PyAny>> {
    let metric = option(Metric::parse(metric))?;
    by_dtype!(x, "X", |xa: F| {
        let ya = other::<F>(y)?;
        view!(xm = xa, "X");
        view_opt!(ym = ya, "Y");
        let m = ym.as_ref().map_or(xm.rows(), |y| y.rows());
        let cells = xm.rows() as u128 * m as u128;
        memory::check_output("cdist", cells, std::mem::size_of::<F>() as u128)?;
        let out = run(py, "cdist", work(xm.rows(), m, xm.cols()), || {
            core::cdist(&xm, ym.as_ref(), metric)
        })?
        .map_err(core_error)?;
        PyArray1::from_vec(py, out)
            .reshape([xm.rows(), m])?
            .into_bound_py_any(py)
    })
}

type Arrays4<'py> = (
    Bound<'py, PyAny>,
    Bound<'py, PyAny>,
    Bound<'py, PyAny>,
    Bound<'py, PyAny>,
);

#[pyfunction]
#[pyo3(signature = (x, labels, metric, y, ref_labels))]
fn batch_hard<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    labels: PyReadonlyArray1<'py, i64>,
    metric: &str,
    y: Option<&Bound<'py, PyAny>>,
    ref_labels: Option<PyReadonlyArray1<'py, i64>>,
) -> PyResult<Arrays4<'py>> {
    let metric = option(Metric::parse(metric))?;
    let lab = labels_slice(&labels, "labels")?;
    let rlab = ref_labels
        .as_ref()
        .map(|r| labels_slice(r, "ref_labels"))
        .transpose()?;
    let rlab = rlab.as_deref();
    by_dtype!(x, "X", |xa: F| {
        let ya = other::<F>(y)?;
        view!(xm = xa, "X");
        view_opt!(ym = ya, "Y");
        let reference = match (ym.as_ref(), rlab) {
            (Some(y), Some(r)) => Some((y, r)),
            (None, None) => None,
            _ => {
                return Err(conflict(
                    "Y and ref_labels must be given together",
                    "ref_labels",
                ))
            }
        };
        let m = ym.as_ref().map_or(xm.rows(), |y| y.rows());
        let r = run(py, "batch_hard", work(xm.rows(), m, xm.cols()), || {
            core::batch_hard(&xm, &lab, reference, metric)
        })?
        .map_err(core_error)?;
        Ok((
            PyArray1::from_vec(py, r.pos_idx).into_any(),
            PyArray1::from_vec(py, r.pos_dist).into_any(),
            PyArray1::from_vec(py, r.neg_idx).into_any(),
            PyArray1::from_vec(py, r.neg_dist).into_any(),
        ))
    })
}

type Arrays5<'py> = (
    Bound<'py, PyAny>,
    Bound<'py, PyAny>,
    Bound<'py, PyAny>,
    Bound<'py, PyAny>,
    Bound<'py, PyAny>,
);

#[pyfunction]
#[pyo3(signature = (x, labels, margin, metric, fallback))]
fn semi_hard<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    labels: PyReadonlyArray1<'py, i64>,
    margin: f64,
    metric: &str,
    fallback: &str,
) -> PyResult<Arrays5<'py>> {
    let metric = option(Metric::parse(metric))?;
    let fallback = option(Fallback::parse(fallback))?;
    let lab = labels_slice(&labels, "labels")?;
    by_dtype!(x, "X", |xa: F| {
        view!(xm = xa, "X");
        let t = run(
            py,
            "semi_hard",
            work(xm.rows(), xm.rows(), xm.cols()),
            || core::semi_hard::<F>(&xm, &lab, margin, metric, fallback),
        )?
        .map_err(core_error)?;
        Ok((
            PyArray1::from_vec(py, t.anchor).into_any(),
            PyArray1::from_vec(py, t.positive).into_any(),
            PyArray1::from_vec(py, t.negative).into_any(),
            PyArray1::from_vec(py, t.pos_dist).into_any(),
            PyArray1::from_vec(py, t.neg_dist).into_any(),
        ))
    })
}

#[pyfunction]
#[pyo3(signature = (x, labels, margin, mining, metric, soft, reduction, fallback))]
#[allow(clippy::too_many_arguments)]
fn triplet_margin_loss<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    labels: PyReadonlyArray1<'py, i64>,
    margin: f64,
    mining: &str,
    metric: &str,
    soft: bool,
    reduction: &str,
    fallback: &str,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    let opts = LossOptions {
        margin,
        mining: option(Mining::parse(mining))?,
        soft,
        reduction: option(Reduction::parse(reduction))?,
        fallback: option(Fallback::parse(fallback))?,
    };
    let metric = option(Metric::parse(metric))?;
    let lab = labels_slice(&labels, "labels")?;
    by_dtype!(x, "X", |xa: F| {
        view!(xm = xa, "X");
        let n = xm.rows();
        let out = run(py, "triplet_margin_loss", work(n, n, xm.cols()), || {
            core::triplet_margin_loss::<F>(&xm, &lab, metric, opts)
        })?
        .map_err(core_error)?;
        let grad = PyArray1::from_vec(py, out.grad)
            .reshape([xm.rows(), xm.cols()])?
            .into_any();
        let loss = match out.per_anchor {
            Some(v) => PyArray1::from_vec(py, v).into_any(),
            None => out.loss.into_bound_py_any(py)?,
        };
        Ok((loss, grad))
    })
}

/// Two matrices of one float dtype, as (`a`, `b`) views.
macro_rules! two_matrices {
    ($a:expr, $an:expr, $b:expr, $bn:expr, |$x:ident, $y:ident| $body:expr) => {
        by_dtype!($a, $an, |aa: F| {
            let ba = other::<F>(Some($b))?.expect("given");
            view!($x = aa, $an);
            view!($y = ba, $bn);
            $body
        })
    };
}

mod geometry;
use geometry::{class_arrays, pruning_arg, ClassArrays};

#[pyfunction]
#[pyo3(signature = (x, k, y, metric, exclude_self, symmetric=true))]
fn knn<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    k: usize,
    y: Option<&Bound<'py, PyAny>>,
    metric: &str,
    exclude_self: bool,
    symmetric: bool,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    let metric = option(Metric::parse(metric))?;
    by_dtype!(x, "X", |xa: F| {
        let ya = other::<F>(y)?;
        view!(xm = xa, "X");
        view_opt!(ym = ya, "Y");
        let m = ym.as_ref().map_or(xm.rows(), |y| y.rows());
        // indices and distances, and the per-row lists they are made from
        let item = 2 * (8 + std::mem::size_of::<F>()) as u128;
        memory::check_output("knn", xm.rows() as u128 * k as u128, item)?;
        let r = run(py, "knn", work(xm.rows(), m, xm.cols()), || {
            core::knn_with(&xm, k, ym.as_ref(), metric, exclude_self, symmetric)
        })?
        .map_err(core_error)?;
        Ok((
            PyArray1::from_vec(py, r.indices)
                .reshape([xm.rows(), k])?
                .into_any(),
            PyArray1::from_vec(py, r.distances)
                .reshape([xm.rows(), k])?
                .into_any(),
        ))
    })
}

#[pyfunction]
#[pyo3(signature = (x, y, rows, cols, metric))]
fn pair_distances<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    y: &Bound<'py, PyAny>,
    rows: PyReadonlyArray1<'py, i64>,
    cols: PyReadonlyArray1<'py, i64>,
    metric: &str,
) -> PyResult<Bound<'py, PyAny>> {
    let metric = option(Metric::parse(metric))?;
    let (r, c) = (rows.as_slice()?, cols.as_slice()?);
    if r.len() != c.len() {
        return Err(input_error(
            "rows and cols must have the same length".into(),
            "cols",
            "shape",
        ));
    }
    if let Some(arg) = [("rows", r), ("cols", c)]
        .into_iter()
        .find_map(|(arg, v)| v.iter().any(|&i| i < 0).then_some(arg))
    {
        return Err(input_error(
            "rows and cols must be non-negative indices".into(),
            arg,
            "range",
        ));
    }
    let pairs: Vec<(usize, usize)> = r
        .iter()
        .zip(c)
        .map(|(&i, &j)| (i as usize, j as usize))
        .collect();
    two_matrices!(x, "X", y, "Y", |xm, ym| {
        let out = run(
            py,
            "pair_distances",
            work(pairs.len(), xm.cols(), 1),
            || core::pair_distances(&xm, &ym, &pairs, metric),
        )?
        .map_err(core_error)?;
        PyArray1::from_vec(py, out).into_bound_py_any(py)
    })
}

#[pyfunction]
#[pyo3(signature = (x, k, seeds, first))]
fn kcenter<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    k: usize,
    seeds: Option<&Bound<'py, PyAny>>,
    first: usize,
) -> PyResult<(Bound<'py, PyAny>, f64, usize)> {
    by_dtype!(x, "X", |xa: F| {
        let sa = seeds
            .map(|o| {
                o.extract::<PyReadonlyArray2<F>>().map_err(|_| {
                    wrong_type("seeds must be a 2-D numpy array of the same dtype as X".into())
                })
            })
            .transpose()?;
        view!(xm = xa, "X");
        view_opt!(sm = sa, "seeds");
        let r = run(py, "kcenter", work(xm.rows(), k, xm.cols()), || {
            core::kcenter(&xm, k, sm.as_ref(), first)
        })?
        .map_err(core_error)?;
        Ok((
            PyArray1::from_vec(py, r.indices).into_any(),
            r.radius,
            r.farthest,
        ))
    })
}

#[pyfunction]
#[pyo3(signature = (x, labels, proxies, proxy_labels, pruning="auto"))]
fn covering_radius<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    labels: PyReadonlyArray1<'py, i64>,
    proxies: &Bound<'py, PyAny>,
    proxy_labels: PyReadonlyArray1<'py, i64>,
    pruning: &str,
) -> PyResult<ClassArrays<'py>> {
    let pruning = pruning_arg(pruning)?;
    let lab = labels_slice(&labels, "labels")?;
    let plab = labels_slice(&proxy_labels, "proxy_labels")?;
    two_matrices!(x, "X", proxies, "proxies", |xm, pm| {
        let r = run(
            py,
            "covering_radius",
            work(xm.rows(), pm.rows(), xm.cols()),
            || core::covering_radius_with(&xm, &lab, &pm, &plab, pruning),
        )?
        .map_err(core_error)?;
        Ok(class_arrays(py, r.classes, &r.per_class))
    })
}

/// (width, direction, edge row i, edge row j, opposite row k).
type WidthTuple = (f64, (f64, f64), usize, usize, usize);

#[pyfunction]
#[pyo3(signature = (a,))]
fn min_width_2d(py: Python<'_>, a: &Bound<'_, PyAny>) -> PyResult<WidthTuple> {
    by_dtype!(a, "A", |aa: F| {
        view!(m = aa, "A");
        let w = run(py, "min_width_2d", m.rows(), || core::min_width_2d::<F>(&m))?
            .map_err(core_error)?;
        Ok((
            w.value,
            (w.direction[0], w.direction[1]),
            w.edge.0,
            w.edge.1,
            w.vertex,
        ))
    })
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(all_finite, m)?)?;
    m.add_function(wrap_pyfunction!(cdist, m)?)?;
    m.add_function(wrap_pyfunction!(batch_hard, m)?)?;
    m.add_function(wrap_pyfunction!(semi_hard, m)?)?;
    m.add_function(wrap_pyfunction!(triplet_margin_loss, m)?)?;
    m.add_function(wrap_pyfunction!(geometry::hausdorff, m)?)?;
    m.add_function(wrap_pyfunction!(geometry::class_hausdorff, m)?)?;
    m.add_function(wrap_pyfunction!(geometry::sup_displacement, m)?)?;
    m.add_function(wrap_pyfunction!(geometry::diameter, m)?)?;
    m.add_function(wrap_pyfunction!(geometry::isometric_error, m)?)?;
    m.add_function(wrap_pyfunction!(geometry::_isometric_error_mode, m)?)?;
    m.add_function(wrap_pyfunction!(geometry::hardest_triplet, m)?)?;
    m.add_function(wrap_pyfunction!(min_width_2d, m)?)?;
    m.add_function(wrap_pyfunction!(knn, m)?)?;
    m.add_function(wrap_pyfunction!(pair_distances, m)?)?;
    m.add_function(wrap_pyfunction!(kcenter, m)?)?;
    m.add_function(wrap_pyfunction!(covering_radius, m)?)?;
    m.add_function(wrap_pyfunction!(guard::_force_panic, m)?)?;
    m.add_function(wrap_pyfunction!(geometry::_pruning_counts, m)?)?;
    m.add_function(wrap_pyfunction!(geometry::_set_pruning, m)?)?;
    m.add_function(wrap_pyfunction!(geometry::_set_bound_tightening, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
