//! `facelens embed IMG... --out emb.safetensors`

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Result;
use candle_core::Device;
use clap::Args;

use crate::faces::{FaceArgs, FaceLoader};

#[derive(Args)]
pub struct EmbedArgs {
    /// Face images: aligned 112x112 crops, photos with --landmarks, or raw photos (detector).
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// Output safetensors: `embeddings` [N, D] raw, `embeddings_l2` [N, D] L2-normalised.
    #[arg(long)]
    pub out: PathBuf,
    /// Model: zoo name, path to .safetensors, or hf:<org>/<repo>[@rev]/<file>.
    #[arg(long, default_value = facelens_models::zoo::DEFAULT_MODEL)]
    pub model: String,
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    #[command(flatten)]
    pub faces: FaceArgs,
}

pub fn run(a: EmbedArgs, device: &Device) -> Result<()> {
    crate::output::check_target(&a.out)?;
    let model = super::load_model(&a.model, device)?;
    let loader = FaceLoader::new(&a.faces)?;
    let crops = a.images.iter().map(|p| loader.load(p)).collect::<Result<Vec<_>>>()?;
    let raws: Vec<&[u8]> = crops.iter().map(|c| c.as_raw().as_slice()).collect();
    let emb = model.embed_crops(&raws, a.batch)?;
    let d = model.spec.embedding_dim;
    let n = emb.len();
    let flat: Vec<f32> = emb.iter().flatten().copied().collect();
    let l2: Vec<f32> = emb.iter().flat_map(|e| facelens_models::preprocess::l2_normalise(e)).collect();
    let mut meta = BTreeMap::new();
    meta.insert("model".into(), model.spec.name.clone());
    let files: Vec<String> = a.images.iter().map(|p| p.display().to_string()).collect();
    meta.insert("files".into(), serde_json::to_string(&files)?);
    crate::output::write_safetensors(
        &a.out,
        &[("embeddings".into(), vec![n, d], flat), ("embeddings_l2".into(), vec![n, d], l2)],
        &meta,
    )?;
    eprintln!("wrote {n} embeddings of dimension {d} to {}", a.out.display());
    Ok(())
}
