pub mod align;
pub mod decoder;
pub mod detector;
pub mod embed;
pub mod eval;
pub mod explain;
pub mod import;
pub mod pairs;
pub mod runs;
pub mod verify;
pub mod xfv;

use anyhow::{Context, Result};
use candle_core::Device;
use facelens_models::FaceModel;

/// Loads `--model` with a message that says where the weights were looked for.
pub fn load_model(reference: &str, device: &Device) -> Result<FaceModel> {
    FaceModel::load(reference, device).with_context(|| format!("cannot load model `{reference}`"))
}

/// `--threshold`, else the model's calibrated one.
pub fn threshold(model: &FaceModel, given: Option<f32>) -> Result<f32> {
    match (given, model.spec.threshold) {
        (Some(t), _) | (None, Some(t)) => Ok(t),
        (None, None) => anyhow::bail!(
            "model `{}` has no calibrated threshold; pass --threshold (e.g. from `facelens eval verify`)",
            model.spec.name
        ),
    }
}
