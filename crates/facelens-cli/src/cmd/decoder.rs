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
use facelens_models::preprocess::{cosine, l2_normalise};
use facelens_recon::eval::{pair_grid, reconstruct};
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
    model: facelens_models::FaceModel,
    names: Vec<String>,
    crops: Vec<image::RgbImage>,
}

/// `--decoder`: a file, an `hf:` reference resolved through the Hugging Face cache like
/// `--model`, or (not given) the committed default.
fn decoder_path(given: Option<&Path>) -> Result<PathBuf> {
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
    Ok(Loaded { decoder, model, names, crops })
}

fn embed_normalised(model: &facelens_models::FaceModel, crops: &[image::RgbImage], batch: usize) -> Result<Vec<Vec<f32>>> {
    let raw: Vec<&[u8]> = crops.iter().map(|c| c.as_raw().as_slice()).collect();
    Ok(model.embed_crops(&raw, batch.max(1))?.iter().map(|e| l2_normalise(e)).collect())
}

#[derive(serde::Serialize)]
struct ReconScore {
    image: String,
    /// `cos(f(D(z)), z)`: does the model see the same identity in the reconstruction?
    identity_cos: f32,
    psnr_db: f64,
    ssim: f64,
}

pub fn reconstruct_cmd(a: DecoderIoArgs, device: &Device) -> Result<()> {
    let l = load(&a, device)?;
    let z = embed_normalised(&l.model, &l.crops, a.batch)?;
    let recons = reconstruct(&l.decoder, &z, a.batch, device)?;
    let zr = embed_normalised(&l.model, &recons, a.batch)?;
    let mut scores = Vec::with_capacity(recons.len());
    for (i, r) in recons.iter().enumerate() {
        let stem = Path::new(&l.names[i]).file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| format!("face{i}"));
        write_png(&a.out.join(format!("{i:03}_{stem}_reconstruction.png")), r)?;
        scores.push(ReconScore {
            image: l.names[i].clone(),
            identity_cos: cosine(&z[i], &zr[i]),
            psnr_db: facelens_recon::metrics::psnr(r.as_raw(), l.crops[i].as_raw()),
            ssim: facelens_recon::metrics::ssim_rgb(r, &l.crops[i]),
        });
    }
    write_png(&a.out.join("panel.png"), &pair_grid(&l.crops, &recons, 4))?;
    write_json(&a.out.join("result.json"), &scores)?;
    for s in &scores {
        println!("{}  identity cos {:.4}  PSNR {:.2} dB  SSIM {:.4}", s.image, s.identity_cos, s.psnr_db, s.ssim);
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
