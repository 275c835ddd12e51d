//! The one place where errors become Python exceptions.
//!
//! Bad input raises `tripletcore.InputError`, a `ValueError` subclass
//! with `.arg` (the argument's name) and `.kind` (what is wrong). The class
//! is defined in Python (`tripletcore/_errors.py`) and imported here, so
//! the kernels and the Python layer raise the very same class, it pickles
//! by its import path, and `except ValueError` keeps catching it. A wrong
//! type stays a `TypeError`.

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use tripletcore_core::CoreError;

pyo3::import_exception!(tripletcore._errors, InputError);

/// `InputError(message, arg, kind)`; `kind` is one of `_errors.KINDS`.
pub(crate) fn input_error(message: String, arg: &str, kind: &'static str) -> PyErr {
    InputError::new_err((message, arg.to_owned(), kind))
}

/// A kernel's error, with the kernel's message, argument and kind.
pub(crate) fn core_error(e: CoreError) -> PyErr {
    input_error(e.to_string(), e.arg(), e.kind())
}

/// A string option the core could not parse (`Metric::parse`, ...): kind "option".
pub(crate) fn option<T>(parsed: Result<T, CoreError>) -> PyResult<T> {
    parsed.map_err(|e| input_error(e.to_string(), e.arg(), "option"))
}

/// An array that must be C-contiguous and is not.
pub(crate) fn not_contiguous(arg: &str) -> PyErr {
    input_error(format!("{arg} must be C-contiguous"), arg, "layout")
}

/// Arguments that must be given together, or must agree, and do not.
pub(crate) fn conflict(message: &str, arg: &str) -> PyErr {
    input_error(message.to_owned(), arg, "conflict")
}

/// A wrong type (not a NumPy array, or not float32/float64): a `TypeError`.
pub(crate) fn wrong_type(message: String) -> PyErr {
    PyTypeError::new_err(message)
}
