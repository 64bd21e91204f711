//! Evaluation for facelens: the LFW-style verification protocol (10-fold accuracy, EER, TAR@FAR,
//! ROC; docs/design.md §5) and the Deletion/Insertion benchmark of explanations (docs/design.md §8).
//!
//! Inputs are plain slices of scores, labels, images and maps, so the crate is independent of any
//! model code; where a model is needed (Deletion/Insertion) the caller passes a scorer closure.

pub mod deletion;
pub mod error;
pub mod metrics;
pub mod patch;
pub mod rank;
pub mod road;
pub mod ssim;
pub mod verification;

pub use error::{EvalError, Result};
pub use metrics::trapezoid_auc;
pub use verification::{
    accuracy_at, best_threshold, candidate_thresholds, eer, evaluate, kfold_accuracy, roc_curve,
    tar_at_far, Eer, KFoldAccuracy, RocPoint, TarAtFar, VerificationReport, REPORTED_FARS,
};
