//! `facelens explain A B`: the main job.
//!
//! Writes `panel.png` (faces with similarity and dissimilarity overlays, score, τ and
//! decision), `maps.safetensors` (raw, unblurred maps) and `result.json`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use candle_core::Device;
use clap::Args;
use facelens_saliency::fggb::FggbConfig;
use facelens_saliency::reduce::ChannelReduction;
use facelens_saliency::render::{render_panel, PanelInfo};
use facelens_saliency::{Explainer, FacePair, Fggb};
use serde::Serialize;

use crate::faces::{FaceArgs, FaceLoader};

#[derive(Args)]
pub struct ExplainArgs {
    pub a: PathBuf,
    pub b: PathBuf,
    /// Explainer: fggb, score-gradient, xssab, corrrise, rise, lime, gradcam, random, or dfv
    /// (decoder feature visualisation; needs a trained decoder, see --decoder).
    #[arg(long, default_value = "fggb")]
    pub method: String,
    /// DFV: decoder weights (default: checkpoints/decoder-w600k_mbf.safetensors).
    #[arg(long)]
    pub decoder: Option<PathBuf>,
    #[arg(long, default_value = facelens_models::zoo::DEFAULT_MODEL)]
    pub model: String,
    /// Cosine threshold τ (default: the model's calibrated threshold).
    #[arg(long)]
    pub threshold: Option<f32>,
    /// Output folder for panel.png, maps.safetensors and result.json.
    #[arg(long, default_value = "explain-out")]
    pub out: PathBuf,
    /// Print result.json to stdout.
    #[arg(long)]
    pub json: bool,
    /// FGGB: differentiate the raw embedding instead of the L2-normalised one.
    #[arg(long)]
    pub raw_embedding: bool,
    /// FGGB: channel reduction of |grad|.
    #[arg(long, value_enum, default_value = "mean-abs")]
    pub channel_reduction: Reduction,
    /// FGGB: skip the per-dimension L2 normalisation of gradient maps.
    #[arg(long)]
    pub no_per_dim_norm: bool,
    /// Show the maps unsmoothed in the panel (saved maps are always raw).
    #[arg(long)]
    pub no_blur: bool,
    /// Jacobian rows per backward pass (default: chosen from available memory).
    #[arg(long)]
    pub rows: Option<usize>,
    #[command(flatten)]
    pub faces: FaceArgs,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum Reduction {
    MeanAbs,
    MaxAbs,
}

#[derive(Serialize)]
struct ExplainResult {
    score: f32,
    threshold: f32,
    threshold_source: String,
    decision: facelens_saliency::Decision,
    method: String,
    model: String,
    images: [String; 2],
    fggb: Option<FggbConfig>,
    /// Sum of each map (how much evidence each side carries).
    map_mass: BTreeMap<String, f64>,
    timings: BTreeMap<String, f64>,
}

pub fn run(a: ExplainArgs, device: &Device) -> Result<()> {
    let t0 = Instant::now();
    let model = super::load_model(&a.model, device)?;
    let threshold = super::threshold(&model, a.threshold)?;
    let threshold_source = match a.threshold {
        Some(_) => "--threshold".to_string(),
        None => model.spec.threshold_source.clone().unwrap_or_default(),
    };
    let loader = FaceLoader::new(&a.faces)?;
    let (face_a, face_b) = (loader.load(&a.a)?, loader.load(&a.b)?);
    let xa = facelens_models::preprocess::normalise_chw(face_a.as_raw(), &model.spec)?;
    let xb = facelens_models::preprocess::normalise_chw(face_b.as_raw(), &model.spec)?;
    let load_s = t0.elapsed().as_secs_f64();

    let fggb_cfg = FggbConfig {
        normalised_embedding: !a.raw_embedding,
        channel_reduction: match a.channel_reduction {
            Reduction::MeanAbs => ChannelReduction::MeanAbs,
            Reduction::MaxAbs => ChannelReduction::MaxAbs,
        },
        per_dimension_norm: !a.no_per_dim_norm,
        blur: false,
    };
    let explainer: Box<dyn Explainer> = match a.method.as_str() {
        "fggb" => Box::new(Fggb::new(fggb_cfg.clone())),
        "dfv" => Box::new(super::decoder::dfv(a.decoder.as_deref(), device)?),
        other => facelens_saliency::by_name(other)?,
    };
    let engine = facelens_saliency::engine_for(&model, a.rows)?;
    let explanation = explainer.explain(engine.as_ref(), FacePair { a: &xa, b: &xb }, threshold)?;

    std::fs::create_dir_all(&a.out).with_context(|| format!("cannot create {}", a.out.display()))?;
    let maps = &explanation.maps;
    let (h, w) = (maps.height, maps.width);
    let tensors: Vec<(String, Vec<usize>, Vec<f32>)> =
        maps.named().iter().map(|(n, m)| (n.to_string(), vec![h, w], (*m).clone())).collect();
    let mut meta = BTreeMap::new();
    meta.insert("score".into(), explanation.score.to_string());
    meta.insert("threshold".into(), threshold.to_string());
    meta.insert("method".into(), explanation.method.clone());
    meta.insert("model".into(), model.spec.name.clone());
    crate::output::write_safetensors(&a.out.join("maps.safetensors"), &tensors, &meta)?;

    let info = PanelInfo {
        score: explanation.score,
        threshold,
        decision: explanation.decision,
        method: explanation.method.clone(),
        model: model.spec.name.clone(),
    };
    let panel = render_panel(&face_a, &face_b, maps, &info, !a.no_blur);
    crate::output::write_png(&a.out.join("panel.png"), &panel)?;

    let mut timings = explanation.timings.clone();
    timings.insert("load_s".into(), load_s);
    timings.insert("wall_s".into(), t0.elapsed().as_secs_f64());
    let result = ExplainResult {
        score: explanation.score,
        threshold,
        threshold_source,
        decision: explanation.decision,
        method: explanation.method.clone(),
        model: model.spec.name.clone(),
        images: [a.a.display().to_string(), a.b.display().to_string()],
        fggb: (a.method == "fggb").then_some(fggb_cfg),
        map_mass: maps.named().iter().map(|(n, m)| (n.to_string(), m.iter().map(|v| *v as f64).sum())).collect(),
        timings,
    };
    crate::output::write_json(&a.out.join("result.json"), &result)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        println!(
            "score {:.4}  threshold {:.4}  {}  ({}, {})  -> {}/panel.png  [{:.1} s]",
            result.score,
            threshold,
            match result.decision {
                facelens_saliency::Decision::Accept => "accept",
                facelens_saliency::Decision::Reject => "reject",
            },
            result.method,
            result.model,
            a.out.display(),
            t0.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
