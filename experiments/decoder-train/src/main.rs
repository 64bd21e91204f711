//! `decoder-train`: trains the feature-to-face decoder, evaluates it on held-out LFW faces and
//! probes which embedding dimensions encode which facial regions (docs/design.md §9, §10). The run itself
//! is `facelens_recon::run`; this binary parses flags, turns Ctrl-C into a checkpointed stop and
//! draws progress.
//!
//! ```text
//! decoder-train --config experiments/decoder-train/ci.toml [--set key=value]... [--device cpu]
//! decoder-train --resume runs/decoder-train/<run>          # continue exactly where it stopped
//! decoder-train probe --run runs/decoder-train/<run> [--faces 50] [--out DIR]
//! decoder-train eval --run runs/decoder-train/<run> [--faces 50]   # e.g. after Ctrl-C
//! ```

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use candle_core::Device;
use clap::{Parser, Subcommand};
use facelens_recon::run::{self, ExperimentConfig, Phase, RunMessage, Start, TrainObserver};
use facelens_recon::{EvalFace, ReconMetrics, StepReport};
use indicatif::ProgressBar;

#[derive(Parser)]
#[command(
    version,
    about = "Train the feature-to-face decoder and probe feature-to-region maps"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Experiment config (TOML), e.g. experiments/decoder-train/ci.toml.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Override a config key, e.g. `--set train.steps=100` (repeatable; keys must exist).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Continue the run in this run directory from its last checkpoint (uses its config.toml).
    #[arg(long, value_name = "RUN_DIR", conflicts_with_all = ["config", "set"])]
    resume: Option<PathBuf>,
    /// Override the config's device: auto | cpu | cuda | cuda:N.
    #[arg(long)]
    device: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Region maps and per-region statistics of a trained decoder on LFW faces.
    Probe {
        /// A decoder-train run directory (its config gives the model and LFW paths).
        #[arg(long)]
        run: PathBuf,
        /// Decoder weights; default `<run>/decoder.safetensors`, else `<run>/checkpoint.safetensors`.
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        /// Number of LFW faces; default: the config's `probe.faces`.
        #[arg(long)]
        faces: Option<usize>,
        /// Output folder; default `<run>/probe`.
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long)]
        device: Option<String>,
    },
    /// Scores a saved decoder on held-out LFW faces (writes `<run>/eval_<N>.json` and `.png`).
    Eval {
        #[arg(long)]
        run: PathBuf,
        /// Decoder weights; default `<run>/checkpoint.safetensors`.
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        /// Number of LFW faces; default: the config's `eval.faces`.
        #[arg(long)]
        faces: Option<usize>,
        #[arg(long)]
        device: Option<String>,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    facelens_core::alloc::keep_freed_memory();
    match cli.command {
        Some(Command::Probe { run, checkpoint, faces, out, device }) => {
            probe(&run, checkpoint.as_deref(), faces, out.as_deref(), device.as_deref())
        }
        Some(Command::Eval { run, checkpoint, faces, device }) => eval(&run, checkpoint.as_deref(), faces, device.as_deref()),
        None => {
            let start = match (cli.resume, cli.config) {
                (Some(dir), _) => Start::Resume(dir),
                (None, Some(config)) => Start::Fresh { config, overrides: cli.set },
                (None, None) => bail!("--config FILE or --resume RUN_DIR is required (or use the `probe` subcommand)"),
            };
            let prepared = start.prepare()?;
            let device = facelens_core::parse_device(cli.device.as_deref().unwrap_or(&prepared.config().device))?;
            run::train(prepared, &device, &facelens_core::describe_device(&device), &mut Console::new()?)?;
            Ok(())
        }
    }
}

/// An existing run's config, the device it asks for (or `device`), and `n(config)` LFW faces.
fn open_run(run_dir: &Path, device: Option<&str>, n: impl Fn(&ExperimentConfig) -> usize) -> Result<(ExperimentConfig, Device, Vec<EvalFace>)> {
    let cfg = ExperimentConfig::load(&run_dir.join("config.toml"), &[])?.config;
    let device = facelens_core::parse_device(device.unwrap_or(&cfg.device))?;
    let n = n(&cfg).max(1);
    let faces = run::lfw_faces(&cfg.lfw, n)?;
    if faces.len() < n {
        eprintln!("note: only {} usable LFW genuine pairs (asked for {n})", faces.len());
    }
    Ok((cfg, device, faces))
}

fn eval(run_dir: &Path, checkpoint: Option<&Path>, faces: Option<usize>, device: Option<&str>) -> Result<()> {
    let weights = run::eval_weights(run_dir, checkpoint);
    let (cfg, device, faces) = open_run(run_dir, device, |c| faces.unwrap_or(c.eval.faces))?;
    eprintln!("evaluating {} on {} LFW faces ({})", weights.display(), faces.len(), facelens_core::describe_device(&device));
    let saved = run::evaluate_saved(&cfg, run_dir, &weights, &faces, &device)?;
    println!("{}", run::metrics_line(&saved.report.eval));
    eprintln!("wrote {}", saved.json.display());
    Ok(())
}

fn probe(run_dir: &Path, checkpoint: Option<&Path>, faces: Option<usize>, out: Option<&Path>, device: Option<&str>) -> Result<()> {
    let weights = run::probe_weights(run_dir, checkpoint);
    let (cfg, device, faces) = open_run(run_dir, device, |c| faces.unwrap_or(c.probe.faces))?;
    let out = out.map(Path::to_path_buf).unwrap_or_else(|| run_dir.join("probe"));
    eprintln!("probing {} LFW faces with {} on {}", faces.len(), weights.display(), facelens_core::describe_device(&device));
    let bar = facelens_board::progress::bar(faces.len() as u64).with_message("probe");
    let stats = run::probe_saved(&cfg, &weights, &faces, &out, &device, &mut |done, _| bar.set_position(done as u64))?;
    bar.finish_and_clear();
    for r in &stats.regions {
        let dims: Vec<String> = r.top.iter().take(5).map(|d| format!("{} ({:.1}%)", d.dim, 100.0 * d.mean_mass)).collect();
        println!("{:<11} area {:>5.1}%  top: {}", r.region, 100.0 * r.area_fraction, dims.join(", "));
    }
    eprintln!("wrote {}", out.display());
    Ok(())
}

/// Progress bars and messages on stderr, the final metrics on stdout. Ctrl-C sets `stop`: the
/// run writes a checkpoint after the current step and ends.
struct Console {
    bar: ProgressBar,
    phase: Option<Phase>,
    stop: Arc<AtomicBool>,
}

impl Console {
    /// Installs the Ctrl-C handler (once per process).
    fn new() -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst)).context("installing the Ctrl-C handler")?;
        Ok(Self { bar: ProgressBar::hidden(), phase: None, stop })
    }
}

impl TrainObserver for Console {
    fn on_message(&mut self, message: &RunMessage) {
        self.bar.suspend(|| eprintln!("{message}"));
    }
    fn on_progress(&mut self, phase: Phase, done: u64, total: u64) {
        if self.phase != Some(phase) {
            self.bar.finish_and_clear();
            self.bar = facelens_board::progress::bar(total).with_message(match phase {
                Phase::Embed => "embed",
                Phase::Train => "train",
                Phase::Probe => "probe",
            });
            self.phase = Some(phase);
        }
        self.bar.set_position(done);
    }
    fn on_step(&mut self, r: &StepReport, images_per_second: f64) {
        self.bar.set_message(format!("loss {:.4} {:.1} img/s", r.loss, images_per_second));
    }
    fn on_eval(&mut self, metrics: &ReconMetrics) {
        self.bar.finish_and_clear();
        self.phase = None;
        println!("{}", run::metrics_line(metrics));
    }
    fn should_stop(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

