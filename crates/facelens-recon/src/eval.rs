//! How good a decoder is on held-out faces (docs/design.md §9).
//!
//! For a source face with normalised embedding `z = l2(f(x))` and reconstruction `x_hat = D(z)`
//! (quantised to 8 bits, as a saved image would be):
//! * identity cosine `cos(l2(f(x_hat)), z)`;
//! * type-I success: `x_hat` verifies against `x` itself, `cos >= tau`;
//! * type-II success: `x_hat` verifies against another image of the same person;
//! * PSNR and SSIM of `x_hat` against `x` (whole 112x112 crop, RGB, data range 255).
//!
//! Thresholds are given by name (e.g. the LFW thresholds at FAR 0.1 % and 1 %), measured
//! elsewhere and passed in from the experiment config.

use std::collections::BTreeMap;

use candle_core::Tensor;
use facelens_data::RgbImage;
use facelens_models::preprocess::{cosine, l2_normalise};
use facelens_models::FaceModel;
use serde::{Deserialize, Serialize};

use crate::data::EvalFace;
use crate::decoder::{to_crops, Decoder};
use crate::error::Result;
use crate::metrics::{psnr, ssim_rgb};

/// A named verification threshold (cosine).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamedThreshold {
    pub name: String,
    pub value: f32,
}

/// Per-face outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaceScore {
    pub name: String,
    /// `cos(f(x_hat), f(x))`.
    pub identity_cos: f32,
    /// `cos(f(x_hat), f(x_other))`.
    pub other_cos: f32,
    /// `cos(f(x), f(x_other))`: how hard the pair is to begin with.
    pub pair_cos: f32,
    pub psnr: f64,
    pub ssim: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReconMetrics {
    pub faces: usize,
    pub identity_cos_mean: f64,
    pub identity_cos_std: f64,
    pub other_cos_mean: f64,
    /// Threshold name -> fraction of reconstructions that verify against their source.
    pub type1_success: BTreeMap<String, f64>,
    /// Threshold name -> fraction that verify against another image of the person.
    pub type2_success: BTreeMap<String, f64>,
    /// Threshold name -> fraction of original pairs that verify (the ceiling for type II).
    pub pair_success: BTreeMap<String, f64>,
    pub thresholds: BTreeMap<String, f32>,
    pub psnr_mean: f64,
    pub ssim_mean: f64,
}

fn mean_std(v: impl Iterator<Item = f64> + Clone) -> (f64, f64) {
    let n = v.clone().count().max(1) as f64;
    let m = v.clone().sum::<f64>() / n;
    let var = v.map(|x| (x - m).powi(2)).sum::<f64>() / n;
    (m, var.sqrt())
}

/// Aggregates per-face scores.
pub fn summarise(scores: &[FaceScore], thresholds: &[NamedThreshold]) -> ReconMetrics {
    let n = scores.len().max(1) as f64;
    let (cm, cs) = mean_std(scores.iter().map(|s| s.identity_cos as f64));
    let rate = |f: &dyn Fn(&FaceScore) -> f32, tau: f32| {
        scores.iter().filter(|s| f(s) >= tau).count() as f64 / n
    };
    let mut type1 = BTreeMap::new();
    let mut type2 = BTreeMap::new();
    let mut pair = BTreeMap::new();
    for t in thresholds {
        type1.insert(t.name.clone(), rate(&|s| s.identity_cos, t.value));
        type2.insert(t.name.clone(), rate(&|s| s.other_cos, t.value));
        pair.insert(t.name.clone(), rate(&|s| s.pair_cos, t.value));
    }
    ReconMetrics {
        faces: scores.len(),
        identity_cos_mean: cm,
        identity_cos_std: cs,
        other_cos_mean: mean_std(scores.iter().map(|s| s.other_cos as f64)).0,
        type1_success: type1,
        type2_success: type2,
        pair_success: pair,
        thresholds: thresholds
            .iter()
            .map(|t| (t.name.clone(), t.value))
            .collect(),
        psnr_mean: mean_std(scores.iter().map(|s| s.psnr)).0,
        ssim_mean: mean_std(scores.iter().map(|s| s.ssim)).0,
    }
}

/// Decodes normalised embeddings `[n][D]` in batches (inference mode) into 8-bit crops.
pub fn reconstruct(
    decoder: &Decoder,
    embeddings: &[Vec<f32>],
    batch: usize,
    device: &candle_core::Device,
) -> Result<Vec<RgbImage>> {
    let d = decoder.config().embedding_dim;
    let mut out = Vec::with_capacity(embeddings.len());
    for chunk in embeddings.chunks(batch.max(1)) {
        let flat: Vec<f32> = chunk.iter().flatten().copied().collect();
        let z = Tensor::from_vec(flat, (chunk.len(), d), device)?;
        out.extend(to_crops(&decoder.decode(&z)?)?);
    }
    Ok(out)
}

/// Result of [`evaluate`]: the aggregate, each face's scores and the reconstructions.
pub struct Evaluation {
    pub metrics: ReconMetrics,
    pub scores: Vec<FaceScore>,
    pub reconstructions: Vec<RgbImage>,
}

/// Reconstructs every face from its embedding and scores it (see the module doc).
pub fn evaluate(
    decoder: &Decoder,
    model: &FaceModel,
    faces: &[EvalFace],
    thresholds: &[NamedThreshold],
    batch: usize,
) -> Result<Evaluation> {
    let embed = |imgs: Vec<&RgbImage>| -> Result<Vec<Vec<f32>>> {
        let refs: Vec<&[u8]> = imgs.iter().map(|c| c.as_raw().as_slice()).collect();
        Ok(model
            .embed_crops(&refs, batch.max(1))?
            .iter()
            .map(|e| l2_normalise(e))
            .collect())
    };
    let z = embed(faces.iter().map(|f| &f.source).collect())?;
    let z_other = embed(faces.iter().map(|f| &f.other).collect())?;
    let device = model.device.clone();
    let reconstructions = reconstruct(decoder, &z, batch, &device)?;
    let z_hat = embed(reconstructions.iter().collect())?;
    let scores = faces
        .iter()
        .enumerate()
        .map(|(i, f)| FaceScore {
            name: f.name.clone(),
            identity_cos: cosine(&z_hat[i], &z[i]),
            other_cos: cosine(&z_hat[i], &z_other[i]),
            pair_cos: cosine(&z[i], &z_other[i]),
            psnr: psnr(reconstructions[i].as_raw(), f.source.as_raw()),
            ssim: ssim_rgb(&reconstructions[i], &f.source),
        })
        .collect::<Vec<_>>();
    Ok(Evaluation {
        metrics: summarise(&scores, thresholds),
        scores,
        reconstructions,
    })
}

/// A grid of `(input | reconstruction)` pairs, `cols` pairs per row, 2 px gaps.
pub fn pair_grid(inputs: &[RgbImage], recons: &[RgbImage], cols: usize) -> RgbImage {
    let n = inputs.len().min(recons.len());
    let (w, h) = inputs.first().map(|i| i.dimensions()).unwrap_or((1, 1));
    let cols = cols.clamp(1, n.max(1)) as u32;
    let rows = (n as u32).div_ceil(cols).max(1);
    let gap = 2;
    let cell_w = 2 * w + gap;
    let mut out = RgbImage::from_pixel(
        cols * (cell_w + gap) + gap,
        rows * (h + gap) + gap,
        image::Rgb([255, 255, 255]),
    );
    for i in 0..n {
        let (c, r) = (i as u32 % cols, i as u32 / cols);
        let (x0, y0) = (gap + c * (cell_w + gap), gap + r * (h + gap));
        image::imageops::replace(&mut out, &inputs[i], x0 as i64, y0 as i64);
        image::imageops::replace(&mut out, &recons[i], (x0 + w + gap) as i64, y0 as i64);
    }
    out
}
