//! `decoder-train`: trains the feature-to-face decoder, evaluates it on held-out LFW faces and
//! probes which embedding dimensions encode which facial regions (DESIGN §9, §10).
//!
//! ```text
//! decoder-train --config experiments/decoder-train/ci.toml [--set key=value]... [--device cpu]
//! decoder-train --resume runs/decoder-train/<run>          # continue exactly where it stopped
//! decoder-train probe --run runs/decoder-train/<run> [--faces 50] [--out DIR]
//! decoder-train eval --run runs/decoder-train/<run> [--faces 50]   # e.g. after Ctrl-C
//! ```

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};
use decoder_train::{evaluate, probe, train};

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
    match cli.command {
        Some(Command::Probe {
            run,
            checkpoint,
            faces,
            out,
            device,
        }) => probe::run(
            &run,
            checkpoint.as_deref(),
            faces,
            out.as_deref(),
            device.as_deref(),
        ),
        Some(Command::Eval {
            run,
            checkpoint,
            faces,
            device,
        }) => evaluate::run(&run, checkpoint.as_deref(), faces, device.as_deref()),
        None => {
            let start = match (cli.resume, cli.config) {
                (Some(dir), _) => train::Start::Resume(dir),
                (None, Some(config)) => train::Start::Fresh {
                    config,
                    overrides: cli.set,
                },
                (None, None) => anyhow::bail!(
                    "--config FILE or --resume RUN_DIR is required (or use the `probe` subcommand)"
                ),
            };
            train::run(start, cli.device.as_deref()).map(|_| ())
        }
    }
}
