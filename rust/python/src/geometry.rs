//! Bindings of the geometry kernels (Hausdorff, d_iso, diameter, the
//! hardest triplet) and the private switches of their block pruning.

use numpy::{PyArray1, PyReadonlyArray1};
use pyo3::prelude::*;
use tripletcore_core as core;

use crate::errors::core_error;
use crate::guard::run;
use crate::input::{floats, labels_slice, matrix, other, snapshot, Floats};
use crate::work;

/// The block pruning of the Hausdorff scans, from the private `pruning`
/// argument (tests only): "auto", "off", "on" or "too_tight" (a wrong bound).
pub(crate) fn pruning_arg(pruning: &str) -> PyResult<core::Pruning> {
    match pruning {
        "auto" => Ok(core::Pruning::Auto),
        "off" => Ok(core::Pruning::Off),
        "on" => Ok(core::Pruning::On),
        "too_tight" => Ok(core::Pruning::TooTight),
        other => Err(pyo3::exceptions::PyValueError::new_err(format!(
            "pruning must be 'auto', 'off', 'on' or 'too_tight', got {other:?}"
        ))),
    }
}

#[pyfunction]
#[pyo3(signature = (a, b, directed, pruning="auto"))]
pub(crate) fn hausdorff(
    py: Python<'_>,
    a: &Bound<'_, PyAny>,
    b: &Bound<'_, PyAny>,
    directed: bool,
    pruning: &str,
) -> PyResult<(f64, usize, usize)> {
    let pruning = pruning_arg(pruning)?;
    two_matrices!(a, "A", b, "B", |x, y| {
        let h = run(py, "hausdorff", work(x.rows(), y.rows(), x.cols()), || {
            if directed {
                core::directed_hausdorff_with(&x, &y, pruning)
            } else {
                core::hausdorff_with(&x, &y, pruning)
            }
        })?
        .map_err(core_error)?;
        Ok((h.value, h.i, h.j))
    })
}

pub(crate) type ClassArrays<'py> = (
    Bound<'py, PyAny>,
    Bound<'py, PyAny>,
    Bound<'py, PyAny>,
    Bound<'py, PyAny>,
);

/// Per-class results as (classes, values, i, j) arrays.
pub(crate) fn class_arrays<'py>(
    py: Python<'py>,
    classes: Vec<i64>,
    per_class: &[core::Attained],
) -> ClassArrays<'py> {
    let values: Vec<f64> = per_class.iter().map(|h| h.value).collect();
    let is: Vec<i64> = per_class.iter().map(|h| h.i as i64).collect();
    let js: Vec<i64> = per_class.iter().map(|h| h.j as i64).collect();
    (
        PyArray1::from_vec(py, classes).into_any(),
        PyArray1::from_vec(py, values).into_any(),
        PyArray1::from_vec(py, is).into_any(),
        PyArray1::from_vec(py, js).into_any(),
    )
}

#[pyfunction]
#[pyo3(signature = (x1, x2, labels, pruning="auto"))]
pub(crate) fn class_hausdorff<'py>(
    py: Python<'py>,
    x1: &Bound<'py, PyAny>,
    x2: &Bound<'py, PyAny>,
    labels: PyReadonlyArray1<'py, i64>,
    pruning: &str,
) -> PyResult<ClassArrays<'py>> {
    let pruning = pruning_arg(pruning)?;
    let lab = labels_slice(&labels, "labels")?;
    two_matrices!(x1, "X1", x2, "X2", |x, y| {
        let r = run(
            py,
            "class_hausdorff",
            work(x.rows(), x.rows(), x.cols()),
            || core::class_hausdorff_with(&x, &y, &lab, pruning),
        )?
        .map_err(core_error)?;
        Ok(class_arrays(py, r.classes, &r.per_class))
    })
}

#[pyfunction]
#[pyo3(signature = (x1, x2))]
pub(crate) fn sup_displacement(
    py: Python<'_>,
    x1: &Bound<'_, PyAny>,
    x2: &Bound<'_, PyAny>,
) -> PyResult<(f64, usize)> {
    two_matrices!(x1, "X1", x2, "X2", |x, y| {
        let h = run(py, "sup_displacement", work(x.rows(), x.cols(), 1), || {
            core::sup_displacement(&x, &y)
        })?
        .map_err(core_error)?;
        Ok((h.value, h.i))
    })
}

#[pyfunction]
#[pyo3(signature = (x1, x2))]
pub(crate) fn isometric_error(
    py: Python<'_>,
    x1: &Bound<'_, PyAny>,
    x2: &Bound<'_, PyAny>,
) -> PyResult<(f64, usize, usize)> {
    two_matrices!(x1, "X1", x2, "X2", |x, y| {
        let n = x.rows();
        let h = run(
            py,
            "isometric_error",
            work(n, n, x.cols() + y.cols()),
            || core::isometric_error(&x, &y),
        )?
        .map_err(core_error)?;
        Ok((h.value, h.i, h.j))
    })
}

/// TEST ONLY (tests/test_isometric_pruning.py): `isometric_error` with the
/// scan forced ("auto", "unpruned" or "pruned") and the tree's rows per
/// block; returns the value, the pair, and
/// the block pairs scanned and in all (0, 0 for the brute scan). Not part
/// of the public API.
#[pyfunction]
#[pyo3(signature = (x1, x2, mode, leaf))]
pub(crate) fn _isometric_error_mode(
    py: Python<'_>,
    x1: &Bound<'_, PyAny>,
    x2: &Bound<'_, PyAny>,
    mode: &str,
    leaf: usize,
) -> PyResult<(f64, usize, usize, u64, u64)> {
    let mode = match mode {
        "auto" => core::IsoMode::Auto,
        "unpruned" => core::IsoMode::Unpruned,
        "pruned" => core::IsoMode::Pruned,
        _ => {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "mode must be auto, unpruned or pruned, not {mode:?}"
            )))
        }
    };
    let opts = core::IsoOptions { mode, leaf };
    two_matrices!(x1, "X1", x2, "X2", |x, y| {
        let n = x.rows();
        let h = run(
            py,
            "isometric_error",
            work(n, n, x.cols() + y.cols()),
            || core::isometric_error_with(&x, &y, opts),
        )?
        .map_err(core_error)?;
        let (h, st) = h;
        Ok((h.value, h.i, h.j, st.scanned, st.block_pairs))
    })
}

#[pyfunction]
#[pyo3(signature = (a,))]
pub(crate) fn diameter(py: Python<'_>, a: &Bound<'_, PyAny>) -> PyResult<(f64, usize, usize)> {
    by_dtype!(a, "A", |aa: F| {
        view!(m = aa, "A");
        let h = run(py, "diameter", work(m.rows(), m.rows(), m.cols()), || {
            core::diameter::<F>(&m)
        })?
        .map_err(core_error)?;
        Ok((h.value, h.i, h.j))
    })
}

#[pyfunction]
#[pyo3(signature = (x, labels))]
pub(crate) fn hardest_triplet(
    py: Python<'_>,
    x: &Bound<'_, PyAny>,
    labels: PyReadonlyArray1<'_, i64>,
) -> PyResult<(f64, usize, usize, usize)> {
    let lab = labels_slice(&labels, "labels")?;
    by_dtype!(x, "X", |xa: F| {
        view!(m = xa, "X");
        let t = run(
            py,
            "hardest_triplet",
            work(m.rows(), m.rows(), m.cols()),
            || core::hardest_triplet::<F>(&m, &lab),
        )?
        .map_err(core_error)?;
        Ok((t.value, t.anchor, t.positive, t.negative))
    })
}

/// Block pairs the pruned geometry kernels considered and skipped since
/// the last call (process-wide counters, reset by the call; for benchmarks).
#[pyfunction]
pub(crate) fn _pruning_counts() -> (u64, u64) {
    tripletcore_core::take_pruning_counts()
}

/// Turns the geometry kernels' block pruning on (default) or off; returns
/// the previous setting (tests and benchmarks compare the two paths).
#[pyfunction]
pub(crate) fn _set_pruning(on: bool) -> bool {
    tripletcore_core::set_pruning(on)
}

/// TEST ONLY: tightens every pruning bound by the factor `t` (0 restores).
#[pyfunction]
pub(crate) fn _set_bound_tightening(t: f64) {
    tripletcore_core::set_bound_tightening(t)
}
