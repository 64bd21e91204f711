pub mod align;
pub mod check_device;
pub mod decoder;
pub mod detector;
pub mod embed;
pub mod eval;
pub mod explain;
pub mod import;
pub mod pairs;
pub mod patch;
pub mod runs;
pub mod sanity;
pub mod verify;
pub mod views;
pub mod xfv;

use anyhow::{Context, Result};
use candle_core::Device;
use facelens_models::FaceModel;

/// Loads `--model` with a message that says where the weights were looked for.
pub fn load_model(reference: &str, device: &Device) -> Result<FaceModel> {
    FaceModel::load(reference, device).with_context(|| format!("cannot load model `{reference}`"))
}

/// `--threshold`, else the model's calibrated one. A threshold is a cosine: NaN, infinities and
/// values outside [-1, 1] would silently reject every pair, so they are refused.
pub fn threshold(model: &FaceModel, given: Option<f32>) -> Result<f32> {
    if let Some(t) = given.filter(|t| !(-1.0..=1.0).contains(t)) {
        anyhow::bail!("--threshold {t}: expected a cosine in [-1, 1]");
    }
    match (given, model.spec.threshold) {
        (Some(t), _) | (None, Some(t)) => Ok(t),
        (None, None) => anyhow::bail!(
            "model `{}` has no calibrated threshold; pass --threshold (e.g. from `facelens eval verify`)",
            model.spec.name
        ),
    }
}
