//! NumPy arrays to core views, read once into memory that no other thread
//! can change.
//!
//! An array another thread can write to (writeable, or a view of a
//! writeable array or buffer) is copied before the kernel runs: a kernel
//! reads its input many times, and values changing between the finiteness
//! check and the last read could give NaN or out-of-range indices. An
//! array that nothing can write to (read-only all the way down its base
//! chain, e.g. a read-only memmap) is used in place. The copy is O(N d)
//! against the kernels' O(N^2 d) (docs/api.md, "Inputs are snapshots").

use std::borrow::Cow;

use numpy::{PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::prelude::*;
use tripletcore_core::{Matrix, Real};

use crate::errors::{core_error, not_contiguous, wrong_type};

/// A float32 or float64 C-contiguous 2-D array.
pub(crate) enum Floats<'py> {
    F32(PyReadonlyArray2<'py, f32>),
    F64(PyReadonlyArray2<'py, f64>),
}

pub(crate) fn floats<'py>(obj: &Bound<'py, PyAny>, arg: &str) -> PyResult<Floats<'py>> {
    if let Ok(a) = obj.extract::<PyReadonlyArray2<f32>>() {
        return Ok(Floats::F32(a));
    }
    if let Ok(a) = obj.extract::<PyReadonlyArray2<f64>>() {
        return Ok(Floats::F64(a));
    }
    Err(wrong_type(format!(
        "{arg} must be a 2-D float32 or float64 numpy array"
    )))
}

/// Whether some thread could write to the memory of `array`: it or an
/// array in its base chain is writeable, or the chain ends in a buffer
/// that is not read-only (or whose flags cannot be read).
fn mutable(array: &Bound<'_, PyAny>) -> bool {
    let probe = || -> PyResult<bool> {
        let mut obj = array.clone();
        for _ in 0..64 {
            if obj
                .getattr("flags")?
                .getattr("writeable")?
                .extract::<bool>()?
            {
                return Ok(true);
            }
            let base = obj.getattr("base")?;
            if base.is_none() {
                return Ok(false);
            }
            if base.hasattr("flags")? && base.hasattr("base")? {
                obj = base;
                continue;
            }
            let view = base
                .py()
                .import("builtins")?
                .getattr("memoryview")?
                .call1((base,))?;
            return Ok(!view.getattr("readonly")?.extract::<bool>()?);
        }
        Ok(true)
    };
    probe().unwrap_or(true)
}

/// The values of a C-contiguous array, copied when another thread could change them.
pub(crate) fn snapshot<'a, T: numpy::Element + Clone>(
    a: &'a PyReadonlyArray2<'_, T>,
    arg: &str,
) -> PyResult<Cow<'a, [T]>> {
    // as_slice also accepts Fortran order, which would be read transposed
    if !a.is_c_contiguous() {
        return Err(not_contiguous(arg));
    }
    let data = a.as_slice().map_err(|_| not_contiguous(arg))?;
    Ok(if mutable(a.as_any()) {
        Cow::Owned(data.to_vec())
    } else {
        Cow::Borrowed(data)
    })
}

/// The checked core view of a snapshot of `a`.
pub(crate) fn matrix<'d, T: Real + numpy::Element>(
    a: &PyReadonlyArray2<'_, T>,
    data: &'d [T],
    arg: &'static str,
) -> PyResult<Matrix<'d, T>> {
    Matrix::new(data, a.shape()[0], a.shape()[1], arg).map_err(core_error)
}

pub(crate) fn other<'py, T: numpy::Element>(
    obj: Option<&Bound<'py, PyAny>>,
) -> PyResult<Option<PyReadonlyArray2<'py, T>>> {
    obj.map(|o| {
        o.extract::<PyReadonlyArray2<T>>()
            .map_err(|_| wrong_type("Y must be a 2-D numpy array of the same dtype as X".into()))
    })
    .transpose()
}

/// Labels as a slice, copied when another thread could change them.
pub(crate) fn labels_slice<'a>(
    a: &'a PyReadonlyArray1<'_, i64>,
    arg: &str,
) -> PyResult<Cow<'a, [i64]>> {
    let data = a.as_slice().map_err(|_| not_contiguous(arg))?;
    Ok(if mutable(a.as_any()) {
        Cow::Owned(data.to_vec())
    } else {
        Cow::Borrowed(data)
    })
}
