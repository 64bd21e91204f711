//! `facelens train-decoder`, `facelens reconstruct`, `facelens probe-regions`: the
//! feature-to-face decoder (docs/design.md §9) from the command line.
//!
//! Training is `facelens_recon::run`, as in the `decoder-train` experiment (configs in
//! `experiments/decoder-*`); the other two commands take any face photos, align them like
//! `facelens explain` does, and write PNG panels.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use candle_core::Device;
use clap::Args;
use facelens_models::preprocess::cosine;
use facelens_recon::eval::{embed_normalised, pair_grid, reconstruct};
use facelens_recon::run::{self, Phase, RunMessage, Start, TrainObserver};
use indicatif::ProgressBar;

use crate::faces::{FaceArgs, FaceLoader};
use crate::output::{write_json, write_png};

/// The decoder trained for the default model, committed under `checkpoints/`.
pub const DEFAULT_DECODER: &str = "decoder-w600k_mbf.safetensors";

#[derive(Args)]
pub struct TrainDecoderArgs {
    /// Experiment config (TOML), e.g. experiments/decoder-train/cpu.toml.
    #[arg(long, required_unless_present = "resume")]
    pub config: Option<PathBuf>,
    /// Override a config key, e.g. `--set train.steps=100` (repeatable; keys must exist).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Continue the run in this run directory from its last checkpoint.
    #[arg(long, value_name = "RUN_DIR", conflicts_with_all = ["config", "set"])]
    pub resume: Option<PathBuf>,
}

#[derive(Args)]
pub struct DecoderIoArgs {
    /// Face images (photos are detected and aligned; 112x112 crops are used as they are).
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// Decoder weights (a decoder-train `decoder.safetensors` or checkpoint); default:
    /// `checkpoints/decoder-w600k_mbf.safetensors`.
    #[arg(long)]
    pub decoder: Option<PathBuf>,
    /// Output folder.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value = facelens_models::zoo::DEFAULT_MODEL)]
    pub model: String,
    /// Decoder forward passes per batch.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    #[command(flatten)]
    pub faces: FaceArgs,
}

#[derive(Args)]
pub struct ReconstructArgs {
    #[command(flatten)]
    pub io: DecoderIoArgs,
    /// A second zoo model that judges whether each reconstruction still shows its source's
    /// identity, at its own LFW thresholds for FAR 0.1 % and 1 % (`none` to skip). The decoder
    /// was trained against `--model`, whose own score is therefore optimistic.
    #[arg(long, default_value = "sface")]
    pub judge: String,
}

#[derive(Args)]
pub struct ProbeRegionsArgs {
    #[command(flatten)]
    pub io: DecoderIoArgs,
    /// Dimensions listed per region.
    #[arg(long, default_value_t = 8)]
    pub top_k: usize,
}

/// `device` is the global `--device` flag: `auto` defers to the config's `device`.
pub fn train(a: TrainDecoderArgs, device: &str) -> Result<()> {
    let start = match (a.resume, a.config) {
        (Some(dir), _) => Start::Resume(dir),
        (None, Some(config)) => Start::Fresh { config, overrides: a.set },
        (None, None) => bail!("--config FILE or --resume RUN_DIR is required"),
    };
    let prepared = start.prepare()?;
    let device = crate::open_device(if device == "auto" { prepared.config().device.as_str() } else { device })?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst)).context("installing the Ctrl-C handler")?;
    let mut console = Console { bar: ProgressBar::hidden(), phase: None, stop };
    let outcome = run::train(prepared, &device, &facelens_core::describe_device(&device), &mut console)?;
    if !outcome.completed {
        eprintln!("continue with: facelens train-decoder --resume {}", outcome.run_dir.display());
    }
    Ok(())
}

/// Progress bars and messages of a training run on stderr, its metrics on stdout; Ctrl-C
/// stops it after the current step with a checkpoint.
struct Console {
    bar: ProgressBar,
    phase: Option<Phase>,
    stop: Arc<AtomicBool>,
}

impl TrainObserver for Console {
    fn on_message(&mut self, message: &RunMessage) {
        self.bar.suspend(|| eprintln!("{message}"));
    }
    fn on_progress(&mut self, phase: Phase, done: u64, total: u64) {
        if self.phase != Some(phase) {
            self.bar.finish_and_clear();
            let what = match phase {
                Phase::Embed => "embedding",
                Phase::Train => "training",
                Phase::Probe => "probing",
            };
            self.bar = facelens_board::progress::bar(total).with_message(what);
            self.phase = Some(phase);
        }
        self.bar.set_position(done);
    }
    fn on_eval(&mut self, metrics: &facelens_recon::ReconMetrics) {
        self.bar.finish_and_clear();
        println!("{}", run::metrics_line(metrics));
    }
    fn should_stop(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

struct Loaded {
    decoder: facelens_recon::Decoder,
    decoder_path: PathBuf,
    model: facelens_models::FaceModel,
    names: Vec<String>,
    crops: Vec<image::RgbImage>,
}

/// `--decoder`: a file, an `hf:` reference resolved through the Hugging Face cache like
/// `--model`, or (not given) the committed default.
pub(crate) fn decoder_path(given: Option<&Path>) -> Result<PathBuf> {
    let Some(given) = given else {
        let path = facelens_models::zoo::checkpoints_dir().join(DEFAULT_DECODER);
        if !path.exists() {
            bail!("decoder {} not found (train one with `facelens train-decoder`, or pass --decoder)", path.display());
        }
        return Ok(path);
    };
    match given.to_str().filter(|s| s.starts_with("hf:")) {
        Some(spec) => Ok(facelens_models::hub::HubRef::parse(spec)?.resolve()?),
        None => Ok(given.to_path_buf()),
    }
}

fn load_decoder(given: Option<&Path>, device: &Device) -> Result<(facelens_recon::Decoder, PathBuf)> {
    let path = decoder_path(given)?;
    let decoder = facelens_recon::load_decoder(&path, device).with_context(|| format!("loading decoder {}", path.display()))?;
    Ok((decoder, path))
}

/// The DFV explainer over the decoder at `given` (or the committed default), which must take the
/// `embedding_dim`-D embeddings of the model being explained.
pub fn dfv(given: Option<&Path>, device: &Device, embedding_dim: usize) -> Result<facelens_recon::Dfv> {
    let (decoder, path) = load_decoder(given, device)?;
    if decoder.config().embedding_dim != embedding_dim {
        bail!(
            "decoder {} expects {}-D embeddings, the model gives {embedding_dim}-D (pass --decoder trained for this model)",
            path.display(),
            decoder.config().embedding_dim
        );
    }
    Ok(facelens_recon::Dfv::new(decoder, device.clone()))
}

fn load(a: &DecoderIoArgs, device: &Device) -> Result<Loaded> {
    let (decoder, path) = load_decoder(a.decoder.as_deref(), device)?;
    let model = super::load_model(&a.model, device)?;
    if decoder.config().embedding_dim != model.spec.embedding_dim {
        bail!(
            "decoder {} expects {}-D embeddings, model `{}` gives {}",
            path.display(),
            decoder.config().embedding_dim,
            model.spec.name,
            model.spec.embedding_dim
        );
    }
    let loader = FaceLoader::new(&a.faces)?;
    let crops = a.images.iter().map(|p| loader.load(p)).collect::<Result<Vec<_>>>()?;
    let names = a.images.iter().map(|p| p.display().to_string()).collect();
    std::fs::create_dir_all(&a.out).with_context(|| format!("cannot create {}", a.out.display()))?;
    Ok(Loaded { decoder, decoder_path: path, model, names, crops })
}


#[derive(serde::Serialize)]
struct ReconScore {
    image: String,
    /// `cos(f(D(z)), z)`: does the model see the same identity in the reconstruction?
    identity_cos: f32,
    psnr_db: f64,
    ssim: f64,
    /// Luminance PSNR and SSIM inside the face ellipse of the aligned crop.
    face_psnr_luma_db: f64,
    face_ssim_luma: f64,
    /// Period-2 spectral share of the reconstruction over its source's.
    checkerboard_ratio: f64,
    /// The judge model's `cos(g(D(z)), g(x))`.
    #[serde(skip_serializing_if = "Option::is_none")]
    judge_identity_cos: Option<f32>,
    /// Threshold name -> whether the judge verifies the reconstruction against its source.
    #[serde(skip_serializing_if = "Option::is_none")]
    judge_type1: Option<std::collections::BTreeMap<String, bool>>,
}

#[derive(serde::Serialize)]
struct ReconResult {
    model: String,
    decoder: String,
    /// The judge model and its thresholds (absent with `--judge none`).
    #[serde(skip_serializing_if = "Option::is_none")]
    judge: Option<JudgeInfo>,
    faces: Vec<ReconScore>,
}

#[derive(serde::Serialize)]
struct JudgeInfo {
    model: String,
    thresholds: std::collections::BTreeMap<String, f32>,
}

pub fn reconstruct_cmd(a: ReconstructArgs, device: &Device) -> Result<()> {
    let judge_name = a.judge;
    let a = a.io;
    // Inputs and decoder first: a bad decoder or image is reported before the judge is loaded.
    let l = load(&a, device)?;
    let judge = match judge_name.as_str() {
        "none" => None,
        name => {
            let thresholds = facelens_models::zoo::lfw_far_thresholds(name)
                .with_context(|| format!("--judge {name}: no LFW thresholds are known for it (sface, w600k_mbf or none)"))?;
            let model = super::load_model(name, device).with_context(|| format!("--judge {name} (pass --judge none to skip the cross-model score)"))?;
            Some((model, thresholds))
        }
    };
    let crop_refs: Vec<&image::RgbImage> = l.crops.iter().collect();
    let z = embed_normalised(&l.model, &crop_refs, a.batch)?;
    let recons = reconstruct(&l.decoder, &z, a.batch, device)?;
    let recon_refs: Vec<&image::RgbImage> = recons.iter().collect();
    let zr = embed_normalised(&l.model, &recon_refs, a.batch)?;
    let judged = match &judge {
        Some((m, _)) => Some((embed_normalised(m, &crop_refs, a.batch)?, embed_normalised(m, &recon_refs, a.batch)?)),
        None => None,
    };
    let mut scores = Vec::with_capacity(recons.len());
    for (i, r) in recons.iter().enumerate() {
        let stem = Path::new(&l.names[i]).file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| format!("face{i}"));
        write_png(&a.out.join(format!("{i:03}_{stem}_reconstruction.png")), r)?;
        let (psnr_db, ssim, face_psnr_luma_db, face_ssim_luma, checkerboard_ratio) = facelens_recon::eval::picture_scores(r, &l.crops[i]);
        let judge_cos = judged.as_ref().map(|(g, gr)| cosine(&g[i], &gr[i]));
        scores.push(ReconScore {
            image: l.names[i].clone(),
            identity_cos: cosine(&z[i], &zr[i]),
            psnr_db,
            ssim,
            face_psnr_luma_db,
            face_ssim_luma,
            checkerboard_ratio,
            judge_identity_cos: judge_cos,
            judge_type1: judge.as_ref().zip(judge_cos).map(|((_, th), c)| th.iter().map(|(n, t)| (n.to_string(), c >= *t)).collect()),
        });
    }
    write_png(&a.out.join("panel.png"), &pair_grid(&l.crops, &recons, 4))?;
    let result = ReconResult {
        model: l.model.spec.name.clone(),
        decoder: l.decoder_path.display().to_string(),
        judge: judge.as_ref().map(|(m, th)| JudgeInfo { model: m.spec.name.clone(), thresholds: th.iter().map(|(n, t)| (n.to_string(), *t)).collect() }),
        faces: scores,
    };
    write_json(&a.out.join("result.json"), &result)?;
    for s in &result.faces {
        let judged = match (&result.judge, s.judge_identity_cos) {
            (Some(j), Some(c)) => format!("  {} cos {c:.4}", j.model),
            _ => String::new(),
        };
        println!(
            "{}  identity cos {:.4}{judged}  PSNR {:.2} dB  SSIM {:.4}  face luma PSNR {:.2} dB  SSIM {:.4}  checkerboard {:.2}",
            s.image, s.identity_cos, s.psnr_db, s.ssim, s.face_psnr_luma_db, s.face_ssim_luma, s.checkerboard_ratio
        );
    }
    eprintln!("wrote {}", a.out.join("panel.png").display());
    Ok(())
}

pub fn probe_regions(a: ProbeRegionsArgs, device: &Device) -> Result<()> {
    let l = load(&a.io, device)?;
    let bar = facelens_board::progress::bar(l.crops.len() as u64).with_message("probing");
    let stats = run::probe_faces(&l.decoder, &l.model, &l.names, &l.crops, a.top_k, a.io.batch, &a.io.out, &mut |done, _| bar.set_position(done as u64))?;
    bar.finish_and_clear();
    for r in &stats.regions {
        let dims: Vec<String> = r.top.iter().take(5).map(|d| format!("{} ({:.1}%)", d.dim, 100.0 * d.mean_mass)).collect();
        println!("{:<11} area {:>5.1}%  top: {}", r.region, 100.0 * r.area_fraction, dims.join(", "));
    }
    eprintln!("wrote {}", a.io.out.join(run::PANEL_PNG).display());
    Ok(())
}
