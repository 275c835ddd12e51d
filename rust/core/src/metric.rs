//! Distance metrics and how each maps to a squared Euclidean distance
//! between transformed points (so every kernel works on `d2`).

use crate::error::{CoreError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// `||x - y||`.
    Euclidean,
    /// `||x - y||^2`.
    SqEuclidean,
    /// `1 - cos(x, y)`, computed as `||x/|x| - y/|y|||^2 / 2`.
    Cosine,
}

impl Metric {
    pub fn parse(name: &str) -> Result<Metric> {
        match name {
            "euclidean" => Ok(Metric::Euclidean),
            "sqeuclidean" => Ok(Metric::SqEuclidean),
            "cosine" => Ok(Metric::Cosine),
            other => Err(CoreError::InvalidValue {
                arg: "metric",
                detail: format!(
                    "unknown metric {other:?}; expected 'euclidean', 'sqeuclidean' or 'cosine'"
                ),
            }),
        }
    }

    /// Whether rows are scaled to unit norm before distances are taken.
    pub fn normalizes(self) -> bool {
        self == Metric::Cosine
    }

    /// The metric's value from the squared distance of transformed points.
    #[inline]
    pub fn from_d2(self, d2: f64) -> f64 {
        match self {
            Metric::Euclidean => d2.sqrt(),
            Metric::SqEuclidean => d2,
            Metric::Cosine => 0.5 * d2,
        }
    }
}
