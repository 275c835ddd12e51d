//! Errors of the kernels. Each names the argument at fault; the bindings
//! map them to Python exceptions in one place.

use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub enum CoreError {
    /// An array has a NaN or an infinite value.
    NonFinite { arg: &'static str },
    /// An array has no rows or no columns.
    Empty { arg: &'static str },
    /// Lengths or shapes that must agree do not.
    Shape { arg: &'static str, detail: String },
    /// A row of norm zero where the cosine distance needs a direction.
    ZeroNorm { arg: &'static str, row: usize },
    /// Values so large that squared distances would overflow the dtype.
    TooLarge { arg: &'static str },
    /// A scalar option out of its domain.
    InvalidValue { arg: &'static str, detail: String },
}

impl fmt::Display for CoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CoreError::NonFinite { arg } => write!(f, "{arg} contains NaN or infinite values"),
            CoreError::Empty { arg } => write!(f, "{arg} is empty: it needs at least one row and one column"),
            CoreError::Shape { arg, detail } => write!(f, "{arg}: {detail}"),
            CoreError::ZeroNorm { arg, row } => write!(
                f,
                "{arg} row {row} has norm 0; the cosine distance is undefined for it"
            ),
            CoreError::TooLarge { arg } => write!(
                f,
                "{arg} has values so large that squared distances overflow this dtype; rescale it or use float64"
            ),
            CoreError::InvalidValue { arg, detail } => write!(f, "{arg}: {detail}"),
        }
    }
}

impl std::error::Error for CoreError {}

impl CoreError {
    /// The name of the argument at fault (every message begins with it).
    pub fn arg(&self) -> &'static str {
        match self {
            CoreError::NonFinite { arg }
            | CoreError::Empty { arg }
            | CoreError::Shape { arg, .. }
            | CoreError::ZeroNorm { arg, .. }
            | CoreError::TooLarge { arg }
            | CoreError::InvalidValue { arg, .. } => arg,
        }
    }

    /// A short name of what is wrong, one per variant; the Python layer
    /// documents these names as `InputError.kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            CoreError::NonFinite { .. } => "nonfinite",
            CoreError::Empty { .. } => "empty",
            CoreError::Shape { .. } => "shape",
            CoreError::ZeroNorm { .. } => "zero_norm",
            CoreError::TooLarge { .. } => "too_large",
            CoreError::InvalidValue { .. } => "range",
        }
    }
}

pub type Result<T> = std::result::Result<T, CoreError>;
