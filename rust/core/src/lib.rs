//! tripletcore-core: exact, tiled, parallel kernels for triplet-based
//! metric learning. Knows nothing of Python; `tripletcore-python` binds it.
//!
//! Every kernel takes row-major matrices ([`Matrix`]) in f32 or f64 and
//! integer labels, and returns indices that are exact (checked in f64,
//! ties broken by the lowest index) and identical for any thread count.

pub mod batch_hard;
pub mod cdist;
pub mod error;
pub mod exact;
pub mod geometry;
pub mod kcenter;
mod kdtree;
pub mod knn;
pub mod loss;
pub mod metric;
mod parallel;
pub mod prep;
pub mod real;
mod scale;
pub mod semi_hard;
pub mod tile;
pub mod width;

pub use batch_hard::{batch_hard, BatchHard};
pub use cdist::{cdist, pair_distances};
pub use error::{CoreError, Result};
pub use geometry::{
    class_hausdorff, diameter, directed_hausdorff, hardest_triplet, hausdorff, isometric_error,
    sup_displacement, Attained, ClassHausdorff, HardestTriplet,
};
pub use kcenter::{covering_radius, kcenter, CoveringRadius, KCenter};
pub use knn::{knn, Knn};
pub use loss::{triplet_margin_loss, LossOptions, LossOutput, Mining, Reduction};
pub use metric::Metric;
pub use prep::{finite, Matrix};
pub use real::Real;
pub use semi_hard::{semi_hard, Fallback, Triplets};
pub use width::{min_width_2d, Width};
