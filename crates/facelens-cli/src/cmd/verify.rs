//! `facelens verify A B`

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Result;
use candle_core::Device;
use clap::Args;

use crate::faces::{FaceArgs, FaceLoader, FaceReport};

#[derive(Args)]
pub struct VerifyArgs {
    pub a: PathBuf,
    pub b: PathBuf,
    #[arg(long, default_value = facelens_models::zoo::DEFAULT_MODEL)]
    pub model: String,
    /// Cosine threshold (default: the model's calibrated threshold).
    #[arg(long)]
    pub threshold: Option<f32>,
    /// Print `{"score","threshold","decision","model"}` (and `faces` for photos) as JSON.
    #[arg(long)]
    pub json: bool,
    /// Which face of A to use when it is a photo of several (1-based, left to right; default:
    /// --face, else the largest, most central).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub face_a: Option<u32>,
    /// As --face-a, for B.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub face_b: Option<u32>,
    #[command(flatten)]
    pub faces: FaceArgs,
}

#[derive(serde::Serialize)]
struct Verdict {
    score: f32,
    threshold: f32,
    decision: &'static str,
    model: String,
    /// What the detector saw in each input that was a photo.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    faces: BTreeMap<&'static str, FaceReport>,
}

pub fn run(a: VerifyArgs, device: &Device) -> Result<()> {
    let model = super::load_model(&a.model, device)?;
    let threshold = super::threshold(&model, a.threshold)?;
    let loader = FaceLoader::new(&a.faces)?;
    let fa = loader.load_choice(&a.a, a.face_a, "--face-a")?;
    let fb = loader.load_choice(&a.b, a.face_b, "--face-b")?;
    for (face, path, flag) in [(&fa, &a.a, "--face-a"), (&fb, &a.b, "--face-b")] {
        if let Some(note) = face.note(path, flag) {
            eprintln!("{note}");
        }
    }
    let emb = model.embed_crops(&[fa.image.as_raw().as_slice(), fb.image.as_raw().as_slice()], 2)?;
    let score = facelens_models::preprocess::cosine(&emb[0], &emb[1]);
    let decision = if score >= threshold { "accept" } else { "reject" };
    let faces = [("a", fa), ("b", fb)].into_iter().filter_map(|(k, f)| Some((k, f.detection?.report))).collect();
    let v = Verdict { score, threshold, decision, model: model.spec.name.clone(), faces };
    if a.json {
        println!("{}", serde_json::to_string(&v)?);
    } else {
        println!("score {:.4}  threshold {:.4}  {}  ({})", v.score, v.threshold, v.decision, v.model);
    }
    Ok(())
}
