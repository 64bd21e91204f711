//! The training loop of a run: data, steps, `losses.csv`, TensorBoard scalars, panels and
//! checkpoints. What follows the loop (export, evaluation, probing, `results.json`) is in
//! `finish.rs`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use candle_core::Device;
use facelens_board::{RunDir, SummaryWriter};
use facelens_data::LandmarkTable;
use facelens_models::preprocess::l2_normalise;
use facelens_models::FaceModel;

use crate::checkpoint::{write_atomic, Checkpoint};
use crate::data::{
    AlignedFiles, BatchLoader, BatchPlan, EmbeddingTable, EvalFace, CropSource, TrainData,
};
use crate::error::{ReconError, Result};
use crate::eval::{pair_grid, reconstruct};
use crate::losses::FrozenBackbone;
use crate::trainer::{StepOutcome, Trainer};

use super::config::{ExperimentConfig, LoadedConfig};
use super::observer::{Phase, RunMessage, TrainObserver};
use super::results::write_png;
use super::setup::{cached_embeddings, compute_embeddings, lfw_faces, Cached, LossLog};
use super::{CHECKPOINT_FILE, EMBEDDINGS_FILE, EXPERIMENT, LOSSES_CSV};

/// Where a run starts.
#[derive(Debug, Clone)]
pub enum Start {
    /// A new run directory under the config's `runs_root`.
    Fresh {
        config: PathBuf,
        overrides: Vec<String>,
    },
    /// Continue the run in this directory from its `checkpoint.safetensors`.
    Resume(PathBuf),
}

/// A run whose config is read and whose checkpoint (when resuming) is known to be sound, but
/// that has not started; the caller picks the device from [`Prepared::config`].
#[derive(Debug, Clone)]
pub struct Prepared {
    loaded: LoadedConfig,
    resume: Option<PathBuf>,
}

impl Prepared {
    pub fn config(&self) -> &ExperimentConfig {
        &self.loaded.config
    }
}

impl Start {
    /// Reads the config; when resuming, refuses a missing or damaged checkpoint before any
    /// models or data are loaded.
    pub fn prepare(self) -> Result<Prepared> {
        match self {
            Start::Fresh { config, overrides } => Ok(Prepared {
                loaded: ExperimentConfig::load(&config, &overrides)?,
                resume: None,
            }),
            Start::Resume(dir) => {
                let ckpt = dir.join(CHECKPOINT_FILE);
                if !ckpt.is_file() {
                    return Err(ReconError::NothingToResume {
                        dir,
                        file: CHECKPOINT_FILE,
                    });
                }
                Checkpoint::load(&ckpt, &Device::Cpu)?;
                Ok(Prepared {
                    loaded: ExperimentConfig::load(&dir.join("config.toml"), &[])?,
                    resume: Some(dir),
                })
            }
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub run_dir: PathBuf,
    /// False when [`TrainObserver::should_stop`] ended it (a checkpoint was written; resuming
    /// continues).
    pub completed: bool,
}

/// Everything the loop and the final evaluation share.
pub(super) struct Session {
    pub(super) cfg: ExperimentConfig,
    pub(super) run_path: PathBuf,
    pub(super) device_label: String,
    pub(super) model: FaceModel,
    pub(super) trainer: Trainer,
    /// Held-out LFW faces: the first `log.panel_faces` are drawn during training, the first
    /// `eval.faces` evaluated and the first `probe.faces` probed at the end.
    pub(super) faces: Vec<EvalFace>,
    pub(super) tb: SummaryWriter,
    pub(super) train_images: usize,
    /// The step this process started at; `Some` when resuming.
    pub(super) resumed_from: Option<u64>,
    pub(super) t_start: Instant,
    pub(super) images_seen: usize,
    /// When this process's training loop started (its throughput counts from here).
    pub(super) t_loop: Instant,
}

/// Trains (or continues) a decoder: the whole run, writing every artefact into the run
/// directory. `device_label` names `device` in `meta.json` and `results.json`.
pub fn train(
    prepared: Prepared,
    device: &Device,
    device_label: &str,
    observer: &mut dyn TrainObserver,
) -> Result<Outcome> {
    let t_start = Instant::now();
    let Prepared { loaded, resume } = prepared;
    let LoadedConfig { config: cfg, text } = loaded;
    let resuming = resume.is_some();
    // The model and the data are opened before the run directory exists: a config naming a
    // missing model or data set leaves nothing behind.
    let model = FaceModel::load(&cfg.model, device)?;
    let backbone = FrozenBackbone::from_model(&model);
    let table = LandmarkTable::load(Path::new(&cfg.data.landmarks))?;
    let source = Arc::new(AlignedFiles::from_landmarks(
        Path::new(&cfg.data.images),
        &table,
        cfg.data.limit,
    )?);
    let run_path = match resume {
        Some(p) => p,
        None => {
            RunDir::create_with_device(Path::new(&cfg.runs_root), EXPERIMENT, &text, device_label)?
                .path()
                .to_path_buf()
        }
    };
    observer.on_message(&RunMessage::RunDir(run_path.clone()));
    let emb = embeddings(&cfg, &run_path, source.as_ref(), &model, observer)?;
    let plan = BatchPlan {
        seed: cfg.train.seed,
        batch_size: cfg.train.batch_size,
        len: source.len(),
        grey_fraction: cfg.data.grey_fraction,
    };
    let data = Arc::new(TrainData::new(source.clone(), emb, plan)?);

    let trainer = if resuming {
        Trainer::resume(&run_path.join(CHECKPOINT_FILE), Some(backbone), device)?
    } else {
        let mut dcfg = cfg.decoder.clone();
        dcfg.embedding_dim = model.spec.embedding_dim;
        let mut t = Trainer::new(dcfg, cfg.train.clone(), Some(backbone), device)?;
        if !cfg.train.init_from.is_empty() {
            let path = PathBuf::from(&cfg.train.init_from);
            t.load_weights(&path)?;
            observer.on_message(&RunMessage::Note(format!("decoder weights from {}", path.display())));
        }
        t
    };
    let first = trainer.step_index();
    let wanted = cfg.eval.faces.max(cfg.log.panel_faces);
    let faces = lfw_faces(&cfg.lfw, wanted)?;
    if faces.len() < wanted {
        observer.on_message(&RunMessage::Note(format!(
            "only {} usable LFW genuine pairs (asked for {wanted})",
            faces.len()
        )));
    }
    let mut tb = SummaryWriter::create(&run_path)?;
    if resuming {
        tb.add_text("resume", &format!("resumed at step {first}"), first as i64)?;
    } else {
        tb.add_text("config", &format!("```toml\n{text}\n```"), 0)?;
    }
    let mut session = Session {
        cfg,
        run_path,
        device_label: device_label.to_string(),
        model,
        trainer,
        faces,
        tb,
        train_images: source.len(),
        resumed_from: resuming.then_some(first),
        t_start,
        images_seen: 0,
        t_loop: Instant::now(),
    };
    let completed = session.run_loop(data, observer)?;
    let run_dir = session.run_path.clone();
    if completed {
        session.finish(observer)?;
    }
    Ok(Outcome { run_dir, completed })
}

/// Embeddings of the training crops: reused from the run directory when present (resume), or
/// from `data.embeddings_from` (another run of the same crops and model, e.g. the other
/// variants of an ablation), else computed.
fn embeddings(
    cfg: &ExperimentConfig,
    run: &Path,
    source: &AlignedFiles,
    model: &FaceModel,
    observer: &mut dyn TrainObserver,
) -> Result<EmbeddingTable> {
    let path = run.join(EMBEDDINGS_FILE);
    let need_grey = cfg.data.grey_fraction > 0.0;
    let model_name = model.spec.name.as_str();
    let mut candidates = vec![path.clone()];
    if !cfg.data.embeddings_from.is_empty() {
        let from = Path::new(&cfg.data.embeddings_from);
        candidates.push(if from.is_dir() { from.join(EMBEDDINGS_FILE) } else { from.to_path_buf() });
    }
    for (i, candidate) in candidates.iter().enumerate() {
        match cached_embeddings(candidate, source, need_grey, model_name)? {
            Cached::Hit(t) => {
                if i > 0 {
                    t.save(&path)?;
                }
                return Ok(t);
            }
            Cached::Stale => observer.on_message(&RunMessage::Note(format!(
                "{} does not match the data set and model; {}",
                candidate.display(),
                if i + 1 < candidates.len() { "trying data.embeddings_from" } else { "recomputing" }
            ))),
            Cached::Missing if i > 0 => {
                return Err(ReconError::Config(format!(
                    "data.embeddings_from: {} not found",
                    candidate.display()
                )))
            }
            Cached::Missing => {}
        }
    }
    let t0 = Instant::now();
    let table = compute_embeddings(
        &path,
        source,
        model,
        need_grey,
        cfg.data.embed_batch,
        &mut |done, total| observer.on_progress(Phase::Embed, done as u64, total as u64),
    )?;
    observer.on_message(&RunMessage::Embedded {
        crops: source.len(),
        seconds: t0.elapsed().as_secs_f64(),
    });
    Ok(table)
}

impl Session {
    /// Runs the remaining steps; false when the observer stopped it (checkpoint written).
    fn run_loop(&mut self, data: Arc<TrainData>, obs: &mut dyn TrainObserver) -> Result<bool> {
        let cfg = &self.cfg;
        let first = self.trainer.step_index();
        let total = self.trainer.config().steps;
        let mut losses = LossLog::open(&self.run_path.join(LOSSES_CSV), first)?;
        let ckpt = self.run_path.join(CHECKPOINT_FILE);
        let panels = self.run_path.join("panels");
        std::fs::create_dir_all(&panels)
            .map_err(|e| ReconError::io(&panels, "cannot create folder", e))?;
        let panel_faces = &self.faces[..cfg.log.panel_faces.min(self.faces.len())];
        obs.on_message(&RunMessage::Training {
            first,
            total,
            device: self.device_label.clone(),
            crops: self.train_images,
            batch: cfg.train.batch_size,
            width: self.trainer.decoder_config().width,
        });
        obs.on_progress(Phase::Train, first, total);
        let loader = BatchLoader::spawn(data, first, total, cfg.data.workers, cfg.data.prefetch);
        self.t_loop = Instant::now();
        for batch in loader {
            let batch = batch?;
            let step = batch.step;
            let t0 = Instant::now();
            let want_hist = cfg.log.histograms_every > 0 && step % cfg.log.histograms_every == 0;
            let report = self.trainer.step(&batch, want_hist)?;
            let img_s = batch.len() as f64 / t0.elapsed().as_secs_f64().max(1e-9);
            self.images_seen += batch.len();
            losses.write(&report)?;
            let s = step as i64;
            let tb = &mut self.tb;
            tb.add_scalar("train/loss", report.loss, s)?;
            for (tag, v) in [
                ("train/pixel_l1", report.pixel),
                ("train/identity", report.identity),
                ("train/ssim", report.ssim),
                ("train/perceptual", report.perceptual),
                ("train/tv", report.tv),
            ] {
                if let Some(v) = v {
                    tb.add_scalar(tag, v, s)?;
                }
            }
            tb.add_scalar("train/lr", report.lr, s)?;
            if let Some(g) = report.grad_norm {
                tb.add_scalar("train/grad_norm", g, s)?;
            }
            tb.add_scalar("train/img_per_s", img_s, s)?;
            match &report.outcome {
                StepOutcome::Updated => {}
                StepOutcome::Skipped { reason } => {
                    tb.add_text("train/nan", &format!("step {step}: {reason}; skipped"), s)?;
                }
                StepOutcome::Recovered { reason, lr_scale } => {
                    let text = format!("step {step}: {reason}; restored, lr scale {lr_scale}");
                    tb.add_text("train/nan", &text, s)?;
                    tb.add_scalar("train/lr_scale", *lr_scale, s)?;
                }
            }
            if report.outcome != StepOutcome::Updated {
                obs.on_message(&RunMessage::NonFinite {
                    step,
                    outcome: report.outcome.clone(),
                });
            }
            if let Some(g) = &report.grad_sample {
                tb.add_histogram("grad/decoder", g, s)?;
                tb.add_histogram("embedding/batch", &batch.embeddings, s)?;
            }
            let done = step + 1;
            if cfg.log.images_every > 0
                && done % cfg.log.images_every == 0
                && !panel_faces.is_empty()
            {
                let grid = panel(&self.trainer, &self.model, panel_faces)?;
                tb.add_image("recon/lfw_input_vs_reconstruction", &grid, done as i64)?;
                write_png(&panels.join(format!("step_{done:06}.png")), &grid)?;
            }
            if cfg.log.checkpoint_every > 0 && done % cfg.log.checkpoint_every == 0 {
                self.trainer.save_checkpoint(&ckpt)?;
                if cfg.log.keep_checkpoints {
                    let bytes = std::fs::read(&ckpt)
                        .map_err(|e| ReconError::io(&ckpt, "cannot read", e))?;
                    let keep = self
                        .run_path
                        .join("checkpoints")
                        .join(format!("step_{done:06}.safetensors"));
                    write_atomic(&keep, &bytes)?;
                }
                obs.on_checkpoint(done, &ckpt);
            }
            obs.on_step(&report, img_s);
            obs.on_progress(Phase::Train, done, total);
            if obs.should_stop() {
                self.trainer.save_checkpoint(&ckpt)?;
                self.tb.flush()?;
                obs.on_message(&RunMessage::Interrupted {
                    step: done,
                    run_dir: self.run_path.clone(),
                });
                return Ok(false);
            }
        }
        self.tb.flush()?;
        Ok(true)
    }
}

/// Reconstructions of the fixed held-out faces as an `(input | reconstruction)` grid.
fn panel(trainer: &Trainer, model: &FaceModel, faces: &[EvalFace]) -> Result<image::RgbImage> {
    let refs: Vec<&[u8]> = faces.iter().map(|f| f.source.as_raw().as_slice()).collect();
    let z: Vec<Vec<f32>> = model
        .embed_crops(&refs, refs.len().max(1))?
        .iter()
        .map(|e| l2_normalise(e))
        .collect();
    let recons = reconstruct(trainer.decoder(), &z, 16, &model.device)?;
    let inputs: Vec<_> = faces.iter().map(|f| f.source.clone()).collect();
    Ok(pair_grid(&inputs, &recons, 4))
}
