//! The training run: data, loop, logging, checkpoints, final evaluation and probing.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use facelens_board::{RunDir, SummaryWriter};
use facelens_data::LandmarkTable;
use facelens_models::preprocess::l2_normalise;
use facelens_models::FaceModel;
use facelens_recon::eval::{pair_grid, reconstruct};
use facelens_recon::{
    evaluate, AlignedFiles, BatchLoader, BatchPlan, CropSource, EmbeddingTable, EvalFace,
    FrozenBackbone, StepOutcome, TrainData, Trainer,
};

use crate::config::Config;
use crate::setup::{describe_device, lfw_faces, load_config, parse_device, progress_bar};

pub const CHECKPOINT_FILE: &str = "checkpoint.safetensors";
pub const DECODER_FILE: &str = "decoder.safetensors";
pub const EMBEDDINGS_FILE: &str = "embeddings.safetensors";
pub const LOSSES_CSV: &str = "losses.csv";
const EXPERIMENT: &str = "decoder-train";

/// How a run ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub run_dir: PathBuf,
    /// False when Ctrl-C stopped it (a checkpoint was written; `--resume` continues).
    pub completed: bool,
}

/// The process-wide Ctrl-C flag (a handler can be installed only once per process, and one
/// process may train several decoders, e.g. an ablation).
fn interrupt_flag() -> Result<Arc<AtomicBool>> {
    static FLAG: std::sync::OnceLock<Arc<AtomicBool>> = std::sync::OnceLock::new();
    if let Some(f) = FLAG.get() {
        return Ok(f.clone());
    }
    let flag = Arc::new(AtomicBool::new(false));
    let f = flag.clone();
    ctrlc::set_handler(move || f.store(true, Ordering::SeqCst))
        .context("installing the Ctrl-C handler")?;
    Ok(FLAG.get_or_init(|| flag).clone())
}

pub enum Start {
    Fresh {
        config: PathBuf,
        overrides: Vec<String>,
    },
    Resume(PathBuf),
}

/// Embeddings of the training crops: reused from the run directory when present (resume).
fn embeddings(
    cfg: &Config,
    run: &Path,
    source: &dyn CropSource,
    model: &FaceModel,
) -> Result<EmbeddingTable> {
    let path = run.join(EMBEDDINGS_FILE);
    if path.is_file() {
        let t = EmbeddingTable::load(&path)?;
        let same =
            t.len() == source.len() && (0..source.len()).all(|i| t.names[i] == source.name(i));
        if same && (cfg.data.grey_fraction == 0.0 || t.grey.is_some()) {
            return Ok(t);
        }
        eprintln!(
            "note: {} does not match the data set; recomputing",
            path.display()
        );
    }
    let bar = progress_bar(
        source.len() as u64,
        "embed {bar:30} {pos}/{len} crops (eta {eta})",
    );
    let t0 = Instant::now();
    let table = EmbeddingTable::compute(
        source,
        model,
        cfg.data.grey_fraction > 0.0,
        cfg.data.embed_batch,
        &mut |done, _| bar.set_position(done as u64),
    )?;
    bar.finish_and_clear();
    eprintln!(
        "embedded {} training crops in {:.1} s",
        source.len(),
        t0.elapsed().as_secs_f64()
    );
    table.save(&path)?;
    Ok(table)
}

/// Appends one line per step to `losses.csv`; on resume, rows of steps that the checkpoint does
/// not cover are dropped first (they will be recomputed identically).
struct LossLog {
    file: std::fs::File,
}

impl LossLog {
    fn open(path: &Path, resume_step: u64) -> Result<Self> {
        let header = "step,loss,pixel,identity,ssim,lr,grad_norm,outcome\n";
        let kept = match std::fs::read_to_string(path) {
            Ok(text) => {
                let rows = text.lines().skip(1).filter(|l| {
                    l.split(',')
                        .next()
                        .and_then(|s| s.parse::<u64>().ok())
                        .is_some_and(|s| s < resume_step)
                });
                let mut out = header.to_string();
                rows.for_each(|r| {
                    out.push_str(r);
                    out.push('\n')
                });
                out
            }
            Err(_) => header.to_string(),
        };
        facelens_recon::checkpoint::write_atomic(path, kept.as_bytes())?;
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        Ok(Self { file })
    }

    fn write(&mut self, r: &facelens_recon::StepReport) -> Result<()> {
        let opt = |v: Option<f64>| v.map(|x| format!("{x:.9e}")).unwrap_or_default();
        let outcome = match &r.outcome {
            StepOutcome::Updated => "updated".to_string(),
            StepOutcome::Skipped { .. } => "skipped".to_string(),
            StepOutcome::Recovered { lr_scale, .. } => format!("recovered(lr_scale={lr_scale})"),
        };
        writeln!(
            self.file,
            "{},{:.9e},{},{},{},{:.9e},{},{}",
            r.step,
            r.loss,
            opt(r.pixel),
            opt(r.identity),
            opt(r.ssim),
            r.lr,
            opt(r.grad_norm),
            outcome
        )?;
        Ok(())
    }
}

fn save_png(path: &Path, img: &image::RgbImage) -> Result<()> {
    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)?;
    facelens_recon::checkpoint::write_atomic(path, &png)?;
    Ok(())
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

pub fn run(start: Start, device_override: Option<&str>) -> Result<Outcome> {
    let t_start = Instant::now();
    let (cfg, text, run_path, resuming) = match &start {
        Start::Fresh { config, overrides } => {
            let (cfg, text) = load_config(config, overrides)?;
            (cfg, text, None, false)
        }
        Start::Resume(dir) => {
            if !dir.join(CHECKPOINT_FILE).is_file() {
                bail!("{} has no {CHECKPOINT_FILE} to resume from", dir.display());
            }
            // Refuse a damaged checkpoint before loading models and data.
            facelens_recon::Checkpoint::load(
                &dir.join(CHECKPOINT_FILE),
                &candle_core::Device::Cpu,
            )?;
            let (cfg, text) = load_config(&dir.join("config.toml"), &[])?;
            (cfg, text, Some(dir.clone()), true)
        }
    };
    let device = parse_device(device_override.unwrap_or(&cfg.device))?;
    let run_path = match run_path {
        Some(p) => p,
        None => {
            let run = RunDir::create_with_device(
                Path::new(&cfg.runs_root),
                EXPERIMENT,
                &text,
                &describe_device(&device),
            )?;
            run.path().to_path_buf()
        }
    };
    eprintln!("run directory: {}", run_path.display());

    let model = FaceModel::load(&cfg.model, &device)
        .with_context(|| format!("loading model `{}`", cfg.model))?;
    let backbone = FrozenBackbone::from_model(&model);
    let table = LandmarkTable::load(Path::new(&cfg.data.landmarks))?;
    let source = Arc::new(AlignedFiles::from_landmarks(
        Path::new(&cfg.data.images),
        &table,
        cfg.data.limit,
    )?);
    let emb = embeddings(&cfg, &run_path, source.as_ref(), &model)?;
    let plan = BatchPlan {
        seed: cfg.train.seed,
        batch_size: cfg.train.batch_size,
        len: source.len(),
        grey_fraction: cfg.data.grey_fraction,
    };
    let data = Arc::new(TrainData::new(source.clone(), emb, plan)?);

    let mut trainer = if resuming {
        Trainer::resume(&run_path.join(CHECKPOINT_FILE), Some(backbone), &device)?
    } else {
        let mut dcfg = cfg.decoder.clone();
        dcfg.embedding_dim = model.spec.embedding_dim;
        Trainer::new(dcfg, cfg.train.clone(), Some(backbone), &device)?
    };
    let first = trainer.step_index();
    let total = trainer.config().steps;
    let faces = lfw_faces(&cfg, cfg.eval.faces.max(cfg.log.panel_faces))?;
    let panel_faces = &faces[..cfg.log.panel_faces.min(faces.len())];

    let mut tb = SummaryWriter::create(&run_path)?;
    if !resuming {
        tb.add_text("config", &format!("```toml\n{text}\n```"), 0)?;
    } else {
        tb.add_text("resume", &format!("resumed at step {first}"), first as i64)?;
    }
    let mut losses = LossLog::open(&run_path.join(LOSSES_CSV), first)?;
    let interrupted = interrupt_flag()?;
    let ckpt = run_path.join(CHECKPOINT_FILE);
    let panels = run_path.join("panels");
    std::fs::create_dir_all(&panels)?;

    eprintln!(
        "training steps {first}..{total} on {} ({} crops, batch {}, decoder width {})",
        describe_device(&device),
        source.len(),
        cfg.train.batch_size,
        trainer.decoder_config().width
    );
    let bar = progress_bar(
        total,
        "{elapsed_precise} [{bar:30}] {pos}/{len} {msg} (eta {eta})",
    );
    bar.set_position(first);
    let loader = BatchLoader::spawn(
        data.clone(),
        first,
        total,
        cfg.data.workers,
        cfg.data.prefetch,
    );
    let (mut images_seen, t_loop) = (0usize, Instant::now());
    let mut stopped_early = false;
    for batch in loader {
        let batch = batch?;
        let step = batch.step;
        let t0 = Instant::now();
        let want_hist = cfg.log.histograms_every > 0 && step % cfg.log.histograms_every == 0;
        let report = trainer.step(&batch, want_hist)?;
        let dt = t0.elapsed().as_secs_f64();
        let img_s = batch.len() as f64 / dt.max(1e-9);
        images_seen += batch.len();
        losses.write(&report)?;
        let s = step as i64;
        tb.add_scalar("train/loss", report.loss, s)?;
        for (tag, v) in [
            ("train/pixel_l1", report.pixel),
            ("train/identity", report.identity),
            ("train/ssim", report.ssim),
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
                bar.println(format!("step {step}: {reason}; update skipped"));
                tb.add_text("train/nan", &format!("step {step}: {reason}; skipped"), s)?;
            }
            StepOutcome::Recovered { reason, lr_scale } => {
                bar.println(format!("step {step}: {reason}; restored the last good checkpoint, lr scale now {lr_scale}"));
                tb.add_text(
                    "train/nan",
                    &format!("step {step}: {reason}; restored, lr scale {lr_scale}"),
                    s,
                )?;
                tb.add_scalar("train/lr_scale", *lr_scale, s)?;
            }
        }
        if let Some(g) = &report.grad_sample {
            tb.add_histogram("grad/decoder", g, s)?;
            tb.add_histogram("embedding/batch", &batch.embeddings, s)?;
        }
        let done = step + 1;
        if cfg.log.images_every > 0 && done % cfg.log.images_every == 0 && !panel_faces.is_empty() {
            let grid = panel(&trainer, &model, panel_faces)?;
            tb.add_image("recon/lfw_input_vs_reconstruction", &grid, done as i64)?;
            save_png(&panels.join(format!("step_{done:06}.png")), &grid)?;
        }
        if cfg.log.checkpoint_every > 0 && done % cfg.log.checkpoint_every == 0 {
            trainer.save_checkpoint(&ckpt)?;
            if cfg.log.keep_checkpoints {
                let bytes = std::fs::read(&ckpt)?;
                let keep = run_path
                    .join("checkpoints")
                    .join(format!("step_{done:06}.safetensors"));
                facelens_recon::checkpoint::write_atomic(&keep, &bytes)?;
            }
        }
        bar.set_position(done);
        bar.set_message(format!("loss {:.4} {:.1} img/s", report.loss, img_s));
        if interrupted.load(Ordering::SeqCst) {
            trainer.save_checkpoint(&ckpt)?;
            bar.abandon();
            eprintln!(
                "interrupted after step {done}; checkpoint written. Continue with --resume {}",
                run_path.display()
            );
            stopped_early = true;
            break;
        }
    }
    bar.finish_and_clear();
    tb.flush()?;
    if stopped_early {
        return Ok(Outcome { run_dir: run_path, completed: false });
    }
    trainer.save_checkpoint(&ckpt)?;
    facelens_recon::checkpoint::save_decoder(
        &run_path.join(DECODER_FILE),
        trainer.decoder_config(),
        &trainer.decoder_tensors()?,
    )?;
    let train_s = t_loop.elapsed().as_secs_f64();

    // Final evaluation on held-out LFW faces.
    let thresholds = cfg.eval.named_thresholds();
    let eval_faces = &faces[..cfg.eval.faces.min(faces.len())];
    let evaluation = evaluate(
        trainer.decoder(),
        &model,
        eval_faces,
        &thresholds,
        cfg.eval.batch,
    )?;
    let m = &evaluation.metrics;
    tb.add_scalar("eval/identity_cos", m.identity_cos_mean, total as i64)?;
    tb.add_scalar("eval/psnr", m.psnr_mean, total as i64)?;
    tb.add_scalar("eval/ssim", m.ssim_mean, total as i64)?;
    for (name, rate) in &m.type1_success {
        tb.add_scalar(&format!("eval/type1_success/{name}"), *rate, total as i64)?;
    }
    for (name, rate) in &m.type2_success {
        tb.add_scalar(&format!("eval/type2_success/{name}"), *rate, total as i64)?;
    }
    let inputs: Vec<_> = eval_faces.iter().map(|f| f.source.clone()).collect();
    let grid = pair_grid(&inputs, &evaluation.reconstructions, 5);
    save_png(&run_path.join("reconstructions.png"), &grid)?;
    tb.add_image("eval/lfw_input_vs_reconstruction", &grid, total as i64)?;

    // Region probing of the first faces.
    let probe_stats = if cfg.probe.faces > 0 {
        let n = cfg.probe.faces.min(faces.len());
        let (names, crops) = crate::probe::split_faces(&faces[..n]);
        let stats = crate::probe::probe_faces(
            trainer.decoder(),
            &model,
            &names,
            &crops,
            cfg.probe.top_k,
            cfg.probe.batch,
            &run_path.join("probe"),
        )?;
        Some(serde_json::json!({
            "faces": n,
            "top_dimensions": stats.regions.iter().map(|r| (r.region, r.top.iter().map(|d| d.dim).collect::<Vec<_>>())).collect::<std::collections::BTreeMap<_, _>>(),
        }))
    } else {
        None
    };
    tb.close()?;

    let results = serde_json::json!({
        "experiment": EXPERIMENT,
        "steps": total,
        "resumed_from_step": if resuming { Some(first) } else { None },
        "train_images": source.len(),
        "device": describe_device(&device),
        "train_seconds_this_process": train_s,
        "images_per_second_this_process": images_seen as f64 / train_s.max(1e-9),
        "wall_seconds_this_process": t_start.elapsed().as_secs_f64(),
        "lr_scale": trainer.lr_scale(),
        "eval": m,
        "eval_faces": evaluation.scores,
        "probe": probe_stats,
    });
    let path = run_path.join("results.json");
    facelens_recon::checkpoint::write_atomic(&path, &serde_json::to_vec_pretty(&results)?)?;
    println!(
        "identity cos {:.4} ± {:.4} | PSNR {:.2} dB | SSIM {:.4} | type I {:?} | type II {:?} ({} LFW faces)",
        m.identity_cos_mean, m.identity_cos_std, m.psnr_mean, m.ssim_mean, m.type1_success, m.type2_success, m.faces
    );
    eprintln!("results: {}", path.display());
    Ok(Outcome { run_dir: run_path, completed: true })
}
