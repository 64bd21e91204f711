//! How good a decoder is on held-out faces (docs/design.md §9).
//!
//! For a source face with normalised embedding `z = l2(f(x))` and reconstruction `x_hat = D(z)`
//! (quantised to 8 bits, as a saved image would be):
//! * identity cosine `cos(l2(f(x_hat)), z)`;
//! * type-I success: `x_hat` verifies against `x` itself, `cos >= tau`;
//! * type-II success: `x_hat` verifies against another image of the same person;
//! * PSNR and SSIM of `x_hat` against `x` (whole 112x112 crop, RGB, data range 255);
//! * face-region luminance PSNR and SSIM and the checkerboard ratio ([`crate::metrics`]);
//! * the same identity scores under a second model that the decoder never saw (the *judge*,
//!   e.g. SFace for a decoder trained against w600k_mbf) at that model's own thresholds: the
//!   white-box numbers above are inflated by the identity loss, the judge's are not.
//!
//! Thresholds are given by name (e.g. the LFW thresholds at FAR 0.1 % and 1 %), measured
//! elsewhere (`facelens eval verify`) and passed in.

use std::collections::BTreeMap;

use candle_core::Tensor;
use facelens_data::RgbImage;
use facelens_models::preprocess::{cosine, l2_normalise};
use facelens_models::FaceModel;
use serde::{Deserialize, Serialize};

use crate::data::EvalFace;
use crate::decoder::{to_crops, Decoder};
use crate::error::Result;
use crate::metrics::{checkerboard_ratio, face_psnr_luma, face_ssim_luma, psnr, ssim_rgb};

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
    /// Luminance PSNR inside the face ellipse.
    #[serde(default)]
    pub face_psnr_luma: f64,
    /// Luminance SSIM of the windows centred in the face ellipse.
    #[serde(default)]
    pub face_ssim_luma: f64,
    /// Period-2 spectral share of the reconstruction over the source's.
    #[serde(default)]
    pub checkerboard_ratio: f64,
    /// The judge's `cos(g(x_hat), g(x))`, `cos(g(x_hat), g(x_other))`, `cos(g(x), g(x_other))`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge: Option<JudgeScore>,
}

/// One face's cosines under the judge model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct JudgeScore {
    pub identity_cos: f32,
    pub other_cos: f32,
    pub pair_cos: f32,
}

/// A second model that scores the reconstructions, with its own thresholds.
pub struct Judge<'a> {
    pub model: &'a FaceModel,
    pub thresholds: Vec<NamedThreshold>,
}

/// Identity scores under the judge model (see the module doc).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CrossModelMetrics {
    pub model: String,
    pub identity_cos_mean: f64,
    pub identity_cos_std: f64,
    pub other_cos_mean: f64,
    pub type1_success: BTreeMap<String, f64>,
    pub type2_success: BTreeMap<String, f64>,
    pub pair_success: BTreeMap<String, f64>,
    pub thresholds: BTreeMap<String, f32>,
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
    #[serde(default)]
    pub face_psnr_luma_mean: f64,
    #[serde(default)]
    pub face_ssim_luma_mean: f64,
    /// Mean of the per-face checkerboard ratios (1 = as much period-2 pattern as the photos).
    #[serde(default)]
    pub checkerboard_ratio_mean: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cross_model: Option<CrossModelMetrics>,
}

fn mean_std(v: impl Iterator<Item = f64> + Clone) -> (f64, f64) {
    let n = v.clone().count().max(1) as f64;
    let m = v.clone().sum::<f64>() / n;
    let var = v.map(|x| (x - m).powi(2)).sum::<f64>() / n;
    (m, var.sqrt())
}

/// Success rates of `(identity, other, pair)` cosines at each threshold: type I, type II and
/// the original pairs.
type Rates = (BTreeMap<String, f64>, BTreeMap<String, f64>, BTreeMap<String, f64>);

fn rates(cosines: &[(f32, f32, f32)], thresholds: &[NamedThreshold]) -> Rates {
    let n = cosines.len().max(1) as f64;
    let rate = |f: &dyn Fn(&(f32, f32, f32)) -> f32, tau: f32| cosines.iter().filter(|c| f(c) >= tau).count() as f64 / n;
    let mut out = (BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
    for t in thresholds {
        out.0.insert(t.name.clone(), rate(&|c| c.0, t.value));
        out.1.insert(t.name.clone(), rate(&|c| c.1, t.value));
        out.2.insert(t.name.clone(), rate(&|c| c.2, t.value));
    }
    out
}

fn threshold_map(thresholds: &[NamedThreshold]) -> BTreeMap<String, f32> {
    thresholds.iter().map(|t| (t.name.clone(), t.value)).collect()
}

/// Aggregates per-face scores; `judge` names the judge model and its thresholds when the
/// scores carry judge cosines.
pub fn summarise(scores: &[FaceScore], thresholds: &[NamedThreshold], judge: Option<(&str, &[NamedThreshold])>) -> ReconMetrics {
    let (cm, cs) = mean_std(scores.iter().map(|s| s.identity_cos as f64));
    let own: Vec<_> = scores.iter().map(|s| (s.identity_cos, s.other_cos, s.pair_cos)).collect();
    let (type1, type2, pair) = rates(&own, thresholds);
    let judged: Vec<JudgeScore> = scores.iter().filter_map(|s| s.judge).collect();
    let cross_model = judge.filter(|_| !judged.is_empty() && judged.len() == scores.len()).map(|(name, th)| {
        let c: Vec<_> = judged.iter().map(|j| (j.identity_cos, j.other_cos, j.pair_cos)).collect();
        let (t1, t2, p) = rates(&c, th);
        let (m, sd) = mean_std(judged.iter().map(|j| j.identity_cos as f64));
        CrossModelMetrics {
            model: name.to_string(),
            identity_cos_mean: m,
            identity_cos_std: sd,
            other_cos_mean: mean_std(judged.iter().map(|j| j.other_cos as f64)).0,
            type1_success: t1,
            type2_success: t2,
            pair_success: p,
            thresholds: threshold_map(th),
        }
    });
    ReconMetrics {
        faces: scores.len(),
        identity_cos_mean: cm,
        identity_cos_std: cs,
        other_cos_mean: mean_std(scores.iter().map(|s| s.other_cos as f64)).0,
        type1_success: type1,
        type2_success: type2,
        pair_success: pair,
        thresholds: threshold_map(thresholds),
        psnr_mean: mean_std(scores.iter().map(|s| s.psnr)).0,
        ssim_mean: mean_std(scores.iter().map(|s| s.ssim)).0,
        face_psnr_luma_mean: mean_std(scores.iter().map(|s| s.face_psnr_luma)).0,
        face_ssim_luma_mean: mean_std(scores.iter().map(|s| s.face_ssim_luma)).0,
        checkerboard_ratio_mean: mean_std(scores.iter().map(|s| s.checkerboard_ratio)).0,
        cross_model,
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

/// L2-normalised embeddings of crops under `model`, `batch` per pass.
pub fn embed_normalised(model: &FaceModel, imgs: &[&RgbImage], batch: usize) -> Result<Vec<Vec<f32>>> {
    let refs: Vec<&[u8]> = imgs.iter().map(|c| c.as_raw().as_slice()).collect();
    Ok(model.embed_crops(&refs, batch.max(1))?.iter().map(|e| l2_normalise(e)).collect())
}

/// Image-quality scores of one reconstruction against its source (no model involved).
pub fn picture_scores(reconstruction: &RgbImage, source: &RgbImage) -> (f64, f64, f64, f64, f64) {
    (
        psnr(reconstruction.as_raw(), source.as_raw()),
        ssim_rgb(reconstruction, source),
        face_psnr_luma(reconstruction, source),
        face_ssim_luma(reconstruction, source),
        checkerboard_ratio(reconstruction, source),
    )
}

/// Reconstructs every face from its embedding and scores it (see the module doc); with a
/// `judge`, also under that model.
pub fn evaluate(
    decoder: &Decoder,
    model: &FaceModel,
    faces: &[EvalFace],
    thresholds: &[NamedThreshold],
    batch: usize,
    judge: Option<&Judge>,
) -> Result<Evaluation> {
    let sources: Vec<&RgbImage> = faces.iter().map(|f| &f.source).collect();
    let others: Vec<&RgbImage> = faces.iter().map(|f| &f.other).collect();
    let z = embed_normalised(model, &sources, batch)?;
    let z_other = embed_normalised(model, &others, batch)?;
    let device = model.device.clone();
    let reconstructions = reconstruct(decoder, &z, batch, &device)?;
    let recon_refs: Vec<&RgbImage> = reconstructions.iter().collect();
    let z_hat = embed_normalised(model, &recon_refs, batch)?;
    let judged = match judge {
        Some(j) => {
            let g = embed_normalised(j.model, &sources, batch)?;
            let g_other = embed_normalised(j.model, &others, batch)?;
            let g_hat = embed_normalised(j.model, &recon_refs, batch)?;
            (0..faces.len())
                .map(|i| {
                    Some(JudgeScore {
                        identity_cos: cosine(&g_hat[i], &g[i]),
                        other_cos: cosine(&g_hat[i], &g_other[i]),
                        pair_cos: cosine(&g[i], &g_other[i]),
                    })
                })
                .collect()
        }
        None => vec![None; faces.len()],
    };
    let scores = faces
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let (psnr, ssim, face_psnr_luma, face_ssim_luma, checkerboard_ratio) = picture_scores(&reconstructions[i], &f.source);
            FaceScore {
                name: f.name.clone(),
                identity_cos: cosine(&z_hat[i], &z[i]),
                other_cos: cosine(&z_hat[i], &z_other[i]),
                pair_cos: cosine(&z[i], &z_other[i]),
                psnr,
                ssim,
                face_psnr_luma,
                face_ssim_luma,
                checkerboard_ratio,
                judge: judged[i],
            }
        })
        .collect::<Vec<_>>();
    Ok(Evaluation {
        metrics: summarise(&scores, thresholds, judge.map(|j| (j.model.spec.name.as_str(), j.thresholds.as_slice()))),
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
