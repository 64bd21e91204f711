//! Turning aligned 8-bit RGB crops into the tensor a backbone expects.
//!
//! Each model records its colour order and normalisation in its [`ModelSpec`]; nothing
//! here guesses. Images are HWC `u8` RGB, as decoded by `facelens-data`.

use candle_core::{Device, Tensor};

use crate::error::{ModelError, Result};
use crate::zoo::{ColourOrder, ModelSpec};

/// Normalises one HWC RGB `u8` crop into CHW `f32` values in the model's input range.
pub fn normalise_chw(rgb: &[u8], spec: &ModelSpec) -> Result<Vec<f32>> {
    let s = spec.input_size;
    if rgb.len() != s * s * 3 {
        return Err(ModelError::BadInput { expected: vec![s, s, 3], got: vec![rgb.len() / 3, 3] });
    }
    let plane = s * s;
    let mut out = vec![0f32; 3 * plane];
    for p in 0..plane {
        for c in 0..3 {
            let src_c = match spec.colour {
                ColourOrder::Rgb => c,
                ColourOrder::Bgr => 2 - c,
            };
            out[c * plane + p] = (rgb[p * 3 + src_c] as f32 - spec.mean[c]) / spec.std[c];
        }
    }
    Ok(out)
}

/// Stacks crops into an (N, 3, S, S) tensor on `device`.
pub fn batch_tensor(crops: &[&[u8]], spec: &ModelSpec, device: &Device) -> Result<Tensor> {
    let s = spec.input_size;
    let mut data = Vec::with_capacity(crops.len() * 3 * s * s);
    for crop in crops {
        data.extend(normalise_chw(crop, spec)?);
    }
    Ok(Tensor::from_vec(data, (crops.len(), 3, s, s), device)?)
}

/// Maps a value of the model's input range back to 0..255 (for pictures of inputs).
pub fn denormalise(v: f32, channel: usize, spec: &ModelSpec) -> f32 {
    v * spec.std[channel] + spec.mean[channel]
}

/// L2-normalises a vector (returns zeros for a zero vector instead of NaN).
pub fn l2_normalise(v: &[f32]) -> Vec<f32> {
    let n = v.iter().map(|x| (*x as f64) * (*x as f64)).sum::<f64>().sqrt();
    if n == 0.0 {
        return vec![0.0; v.len()];
    }
    v.iter().map(|x| (*x as f64 / n) as f32).collect()
}

/// Cosine similarity of two raw embeddings.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        ab += *x as f64 * *y as f64;
        aa += *x as f64 * *x as f64;
        bb += *y as f64 * *y as f64;
    }
    if aa == 0.0 || bb == 0.0 {
        return 0.0;
    }
    (ab / (aa.sqrt() * bb.sqrt())) as f32
}
