//! `facelens verify A B`

use std::path::PathBuf;

use anyhow::Result;
use candle_core::Device;
use clap::Args;

use crate::faces::{FaceArgs, FaceLoader};

#[derive(Args)]
pub struct VerifyArgs {
    pub a: PathBuf,
    pub b: PathBuf,
    #[arg(long, default_value = facelens_models::zoo::DEFAULT_MODEL)]
    pub model: String,
    /// Cosine threshold (default: the model's calibrated threshold).
    #[arg(long)]
    pub threshold: Option<f32>,
    /// Print `{"score","threshold","decision","model"}` as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub faces: FaceArgs,
}

#[derive(serde::Serialize)]
struct Verdict {
    score: f32,
    threshold: f32,
    decision: &'static str,
    model: String,
}

pub fn run(a: VerifyArgs, device: &Device) -> Result<()> {
    let model = super::load_model(&a.model, device)?;
    let threshold = super::threshold(&model, a.threshold)?;
    let loader = FaceLoader::new(&a.faces)?;
    let (fa, fb) = (loader.load(&a.a)?, loader.load(&a.b)?);
    let emb = model.embed_crops(&[fa.as_raw().as_slice(), fb.as_raw().as_slice()], 2)?;
    let score = facelens_models::preprocess::cosine(&emb[0], &emb[1]);
    let decision = if score >= threshold { "accept" } else { "reject" };
    let v = Verdict { score, threshold, decision, model: model.spec.name.clone() };
    if a.json {
        println!("{}", serde_json::to_string(&v)?);
    } else {
        println!("score {:.4}  threshold {:.4}  {}  ({})", v.score, v.threshold, v.decision, v.model);
    }
    Ok(())
}
