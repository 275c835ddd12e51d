//! tripletcore-core: exact, tiled, parallel kernels for triplet-based
//! metric learning. Knows nothing of Python; `tripletcore-python` binds it.
//!
//! Every kernel takes row-major matrices ([`Matrix`]) in f32 or f64 and
//! integer labels, and returns indices that are exact (checked in f64,
//! ties broken by the lowest index) and identical for any thread count.
//!
//! Layout: [`engine`] picks the SIMD path, compiles kernel bodies for it and
//! fixes each kernel's tile shape (all `unsafe` code lives there);
//! `matrix` validates inputs; `pack` and `tile` are the packed operands and
//! the tile loop; `screen` is the exactness contract (screen with the
//! expansion and a rigorous bound, settle exactly in f64, ties to the
//! lowest index) that the kernels share; `exact` is the f64 reference.

mod batch_all;
mod batch_hard;
mod blocks;
mod cdist;
mod cosine_exact;
mod engine;
pub mod error;
mod exact;
mod geometry;
mod hard_scan;
mod hausdorff_prune;
mod hausdorff_scan;
mod iso_bound;
mod iso_prune;
mod iso_tree;
mod isometric;
mod kcenter;
mod kdtree;
mod knn;
mod knn_scan;
mod loss;
mod matrix;
mod metric;
mod pack;
mod parallel;
mod real;
mod scale;
mod screen;
mod semi_hard;
mod tile;
mod width;

pub use batch_hard::{batch_hard, BatchHard};
pub use blocks::{set_bound_tightening, set_pruning, take_pruning_counts};
pub use cdist::{cdist, pair_distances};
pub use error::{CoreError, Result};
pub use geometry::{
    class_hausdorff, class_hausdorff_with, diameter, directed_hausdorff, directed_hausdorff_with,
    hardest_triplet, hausdorff, hausdorff_with, sup_displacement, Attained, ClassHausdorff,
    HardestTriplet,
};
pub use hausdorff_prune::Pruning;
pub use iso_prune::PruneStats;
pub use isometric::{isometric_error, isometric_error_with, IsoMode, IsoOptions};
pub use kcenter::{covering_radius, covering_radius_with, kcenter, CoveringRadius, KCenter};
pub use knn::{knn, knn_with, Knn};
pub use loss::{triplet_margin_loss, LossOptions, LossOutput, Mining, Reduction};
pub use matrix::{finite, Matrix};
pub use metric::Metric;
pub use parallel::{Cancellation, Cancelled};
pub use real::Real;
pub use semi_hard::{semi_hard, Fallback, Triplets};
pub use width::{min_width_2d, Width};
