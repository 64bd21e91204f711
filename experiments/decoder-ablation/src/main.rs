//! `decoder-ablation`: which parts of the decoder's recipe matter (docs/design.md §9)?
//!
//! Each variant is one `decoder-train` run — the base config plus the variant's overrides — so a
//! variant is exactly what `facelens train-decoder --config BASE --set ...` would train. The runs
//! live under this ablation's run directory; their held-out LFW results are gathered into one
//! table (markdown, CSV, JSON) and logged to TensorBoard next to each variant's own event file.
//!
//! ```text
//! decoder-ablation --config experiments/decoder-ablation/cpu.toml [--only NAME]... [--device cpu]
//! ```

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::Parser;
use facelens_board::RunDir;
use facelens_recon::run::{self, AblationConfig, AblationRow, Phase, RunMessage, Start, TrainObserver, TrainResults, RESULTS_FILE};
use facelens_recon::{ReconMetrics, StepReport};
use indicatif::ProgressBar;
use serde::Serialize;

const EXPERIMENT: &str = "decoder-ablation";

#[derive(Parser)]
#[command(version, about = "Decoder ablation: one decoder-train run per variant, one table")]
struct Cli {
    /// Ablation config (TOML), e.g. experiments/decoder-ablation/ci.toml.
    #[arg(long)]
    config: PathBuf,
    /// Override a key of the ablation config (repeatable), e.g. `--set 'set=["train.steps=10"]'`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Run only the named variants (repeatable).
    #[arg(long)]
    only: Vec<String>,
    /// Override every variant's device: auto | cpu | cuda | cuda:N.
    #[arg(long)]
    device: Option<String>,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    facelens_core::alloc::keep_freed_memory();
    let resolved = facelens_board::config::load::<AblationConfig, _, _>(&cli.config, cli.set.iter().map(String::as_str))
        .with_context(|| format!("reading config {}", cli.config.display()))?;
    let cfg = resolved.value;
    let variants = cfg.selected(&cli.only).with_context(|| cli.config.display().to_string())?;
    let run = RunDir::create(&cfg.runs_root, EXPERIMENT, &resolved.text)?;
    eprintln!("ablation run directory: {}", run.path().display());
    let mut tb = run.summary_writer()?;
    let mut console = Console::new()?;
    let mut rows = Vec::new();
    for (variant, overrides) in variants {
        // Variant runs are nested in this ablation's run directory.
        let mut all = overrides.clone();
        all.push(format!("runs_root={}", toml::Value::String(run.path().display().to_string())));
        eprintln!("== variant `{}`: {}", variant.name, overrides.join(" "));
        let prepared = Start::Fresh { config: cfg.train_config.clone(), overrides: all }.prepare()?;
        let device = facelens_core::parse_device(cli.device.as_deref().unwrap_or(&prepared.config().device))?;
        let outcome = run::train(prepared, &device, &facelens_core::describe_device(&device), &mut console)?;
        if !outcome.completed {
            bail!("interrupted during variant `{}` ({}); resume it with `decoder-train --resume`", variant.name, outcome.run_dir.display());
        }
        let results = TrainResults::read(&outcome.run_dir.join(RESULTS_FILE))?;
        rows.push(AblationRow::new(&variant.name, overrides, outcome.run_dir, &results));
    }
    let table = run::ablation_markdown(&rows);
    run.write_json("table.json", &rows)?;
    facelens_board::run_dir::write_atomic(&run.path().join("table.md"), table.as_bytes())?;
    facelens_board::run_dir::write_atomic(&run.path().join("table.csv"), run::ablation_csv(&rows).as_bytes())?;
    run::log_ablation(&mut tb, &rows, &table)?;
    tb.close()?;
    run.write_results(&AblationResults { experiment: EXPERIMENT, rows: &rows })?;
    println!("{table}");
    eprintln!("table: {}", run.path().join("table.md").display());
    Ok(())
}

/// The ablation's `results.json`.
#[derive(Serialize)]
struct AblationResults<'a> {
    experiment: &'a str,
    rows: &'a [AblationRow],
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

