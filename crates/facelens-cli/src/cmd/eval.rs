//! `facelens eval verify`: the LFW View-2 10-fold protocol. The explanation views live in their own
//! files: `facelens eval xfv` (Deletion/Insertion, and ROAD with `--fill road`) in [`super::xfv`],
//! `eval sanity` (model randomisation) in [`super::sanity`], `eval patch` (ground-truth patches) in
//! [`super::patch`], and `eval views` (their table) in [`super::views`].

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use candle_core::Device;
use clap::{Args, Subcommand};
use facelens_data::FaceSource;
use rayon::prelude::*;


#[derive(Subcommand)]
pub enum EvalCommand {
    /// 10-fold verification accuracy, EER and TAR@FAR on a pair list (LFW View-2 format).
    Verify(VerifyEvalArgs),
    /// Deletion/Insertion AUCs of an explainer's similarity maps (accepted genuine pairs) and
    /// dissimilarity maps (rejected impostor pairs) on a pair list.
    Xfv(super::xfv::XfvEvalArgs),
    /// Model-parameter randomisation (Adebayo et al. 2018): how much an explainer's maps change as
    /// the backbone's layers are re-drawn at random, cascading from the output and one at a time.
    Sanity(super::sanity::SanityEvalArgs),
    /// Ground-truth patches: a facial region of the probe of accepted genuine pairs replaced by an
    /// impostor's; does each explainer's dissimilarity map find the patch?
    Patch(super::patch::PatchEvalArgs),
    /// One table per backbone over Deletion/Insertion, ROAD, patches and randomisation, from the
    /// per-pair files of `eval xfv`, `eval patch` and `eval sanity`, with paired bootstrap intervals.
    Views(super::views::ViewsEvalArgs),
}

#[derive(Args)]
pub struct VerifyEvalArgs {
    #[command(flatten)]
    pub list: super::pairs::PairListArgs,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
    /// Per-pair scores (fold, genuine, a, b, score) as CSV (not written unless asked for).
    #[arg(long)]
    pub scores: Option<PathBuf>,
    /// Full report (folds, ROC points) as JSON.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Images embedded per forward pass.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Cache folder for embeddings, keyed by model weights, alignment inputs and file bytes:
    /// a second evaluation of the same images skips decoding, alignment and the network.
    #[arg(long)]
    pub cache: Option<PathBuf>,
}

pub fn run(cmd: EvalCommand, device: &Device) -> Result<()> {
    let a = match cmd {
        EvalCommand::Verify(a) => a,
        EvalCommand::Xfv(a) => return super::xfv::run(a, device),
        EvalCommand::Sanity(a) => return super::sanity::run(a, device),
        EvalCommand::Patch(a) => return super::patch::run(a, device),
        EvalCommand::Views(a) => return super::views::run(a),
    };
    for out in a.scores.iter().chain(&a.report) {
        crate::output::check_target(out)?;
    }
    let t0 = Instant::now();
    let (pairs, model, mut loader) = a.list.open(device)?;
    loader.black_for_nodet = true;
    let images = &a.list.images;

    let files: Vec<PathBuf> = pairs.iter().flat_map(|p| [p.a.clone(), p.b.clone()]).collect::<BTreeSet<_>>().into_iter().collect();
    let cache = a.cache.as_ref().map(facelens_data::Cache::new).transpose()?;
    // Weights and the landmark table both decide the embedding, so both are in the key.
    let model_key = format!(
        "{}:{}:{}",
        model.spec.name,
        facelens_models::backbone::sha256_file(&model.weights_path)?,
        match &a.list.faces.landmarks {
            Some(p) => facelens_models::backbone::sha256_file(p)?,
            None => "no-landmarks".into(),
        }
    );
    let mut cached = 0usize;
    let bar = facelens_board::progress::bar(files.len() as u64).with_message("embedding");
    let mut embeddings: HashMap<PathBuf, Vec<f32>> = HashMap::with_capacity(files.len());
    let mut black = Vec::new();
    let d = model.spec.embedding_dim;
    // Decode and align one batch in parallel, embed it, drop the crops: bounded memory.
    for all in files.chunks(a.batch.max(1)) {
        let keys: Vec<Option<String>> = all
            .par_iter()
            .map(|rel| -> Result<Option<String>> {
                let Some(_) = &cache else { return Ok(None) };
                let path = images.join(rel);
                let bytes = facelens_core::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
                Ok(Some(facelens_data::cache_key(&format!("{model_key}:{}", rel.display()), &bytes)))
            })
            .collect::<Result<_>>()?;
        let mut chunk = Vec::with_capacity(all.len());
        let mut chunk_keys = Vec::with_capacity(all.len());
        for (rel, key) in all.iter().zip(keys) {
            let hit = match (&cache, &key) {
                (Some(c), Some(k)) => c.load_embedding(k)?,
                _ => None,
            };
            match hit {
                Some(e) if e.len() == d => {
                    embeddings.insert(rel.clone(), e);
                    cached += 1;
                }
                _ => {
                    chunk.push(rel.clone());
                    chunk_keys.push(key);
                }
            }
        }
        let faces: Vec<_> = chunk
            .par_iter()
            .map(|rel| loader.load_face(&images.join(rel)).with_context(|| format!("loading {}", rel.display())))
            .collect::<Result<_>>()?;
        for (rel, f) in chunk.iter().zip(&faces) {
            if f.source == FaceSource::BlackNoDetection {
                black.push(rel.display().to_string());
            }
        }
        let raws: Vec<&[u8]> = faces.iter().map(|f| f.image.as_raw().as_slice()).collect();
        let emb = if raws.is_empty() { Vec::new() } else { model.embed_crops(&raws, raws.len())? };
        for ((rel, e), key) in chunk.iter().zip(emb).zip(&chunk_keys) {
            if let (Some(c), Some(k)) = (&cache, key) {
                c.store_embedding(k, &e)?;
            }
            embeddings.insert(rel.clone(), e);
        }
        bar.inc(all.len() as u64);
    }
    bar.finish_and_clear();
    let embed_s = t0.elapsed().as_secs_f64();

    let scores: Vec<f32> =
        pairs.iter().map(|p| facelens_models::preprocess::cosine(&embeddings[&p.a], &embeddings[&p.b])).collect();
    let genuine: Vec<bool> = pairs.iter().map(|p| p.genuine).collect();
    let folds: Vec<usize> = pairs.iter().map(|p| p.fold).collect();
    let report = facelens_eval::evaluate(&scores, &genuine, &folds)?;

    if let Some(path) = &a.scores {
        let mut csv = String::from("fold,genuine,a,b,score\n");
        for (p, s) in pairs.iter().zip(&scores) {
            csv.push_str(&format!("{},{},{},{},{s:.6}\n", p.fold, p.genuine as u8, p.a.display(), p.b.display()));
        }
        crate::output::write_atomic(path, csv.as_bytes())?;
    }
    if let Some(path) = &a.report {
        crate::output::write_json(path, &report)?;
    }
    let summary = serde_json::json!({
        "accuracy_mean": report.accuracy_mean,
        "accuracy_std": report.accuracy_std,
        "eer": report.eer,
        "eer_threshold": report.eer_threshold,
        "best_threshold": report.best_threshold,
        "tar_at_far": report.tar_at_far,
        "pairs": report.pairs,
    });
    let wall = t0.elapsed().as_secs_f64();
    eprintln!(
        "{} images ({cached} from the cache) in {embed_s:.1} s ({:.1} images/s, decode+align+embed), {} black (no detection): {}",
        files.len(),
        files.len() as f64 / embed_s,
        black.len(),
        black.join(", ")
    );
    if a.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        println!(
            "{}: accuracy {:.2} ± {:.2} %  EER {:.2} % (t={:.4})  best threshold {:.4}  TAR@FAR1e-3 {:.4}  TAR@FAR1e-2 {:.4}  [{} pairs, {wall:.1} s]",
            model.spec.name,
            100.0 * report.accuracy_mean,
            100.0 * report.accuracy_std,
            100.0 * report.eer,
            report.eer_threshold,
            report.best_threshold,
            report.tar_at_far.get("0.001").copied().unwrap_or(f64::NAN),
            report.tar_at_far.get("0.01").copied().unwrap_or(f64::NAN),
            report.pairs
        );
    }
    Ok(())
}
