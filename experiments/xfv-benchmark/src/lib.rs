//! xfv-benchmark: the Deletion/Insertion benchmark of face-verification explanations (FGGB paper,
//! Tables I-III; DESIGN §8) as one entry point driven by small TOML configs (`ci.toml`,
//! `lfw-full.toml`).
//!
//! * [`config`]: the typed config.
//! * [`bench`]: loading, explaining, per-pair Deletion/Insertion scores, sharding.
//! * [`select`]: which pairs are scored (first / random balanced subsets).
//! * [`report`]: per-pair records -> tables (pure, so merged shards equal an unsharded run).
//! * [`output`]: run-directory files, TensorBoard events, `merge`.
//! * [`reuse`]: curves earlier runs of a compatible config measured (`--reuse`).
//! * [`draw`]: curve plots and saliency panels.

pub mod bench;
pub mod config;
pub mod draw;
pub mod output;
pub mod report;
pub mod reuse;
pub mod select;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use facelens_board::{config as board_config, RunDir};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub use bench::{Bench, Progress, Shard};
pub use config::{Config, EXPERIMENT};
pub use report::Results;

/// What [`run`] produced.
pub struct Finished {
    pub run: RunDir,
    /// `None` for one shard of a sharded run (tables come from `merge`).
    pub results: Option<Results>,
    pub timings: bench::Timings,
}

/// Loads `config_path` with `overrides`, runs shard `shard` on `device` (taking the curves that
/// the run directories in `reuse` already measured), and writes a run directory under `out`.
pub fn run(
    config_path: &Path,
    overrides: &[String],
    shard: Shard,
    reuse: &[PathBuf],
    out: &Path,
    device: &str,
    progress: Progress<'_>,
) -> Result<Finished> {
    let resolved = board_config::load::<Config, _, _>(config_path, overrides)?;
    resolved.value.validate()?;
    let dev = bench::parse_device(device)?;
    let bench = Bench::load(resolved.value, resolved.hash.clone(), &dev)?;
    let reuse = reuse::Reuse::load(reuse, bench.config(), &bench.header(shard, 0))?;
    let output = bench.run(shard, &reuse, progress)?;
    let device_text = bench::describe_device(&dev);
    let run = RunDir::create_with_device(out, EXPERIMENT, &resolved.text, &device_text)?;
    let results = if shard.count == 1 {
        Some(output::write_run(
            &run,
            &resolved.text,
            &output.records,
            &output.panels,
            &output.timings,
        )?)
    } else {
        output::write_shard(&run, &output.records, &output.panels, &output.timings)?;
        None
    };
    Ok(Finished {
        run,
        results,
        timings: output.timings,
    })
}

/// The experiment binaries' progress bar (length 0 until the first [`Progress`] call): drawn on
/// interactive terminals only, so CI logs and Slurm output files get no carriage-return noise.
pub fn progress_bar() -> ProgressBar {
    if std::env::var_os("CI").is_some() || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    if let Ok(style) =
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg} (eta {eta})")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.enable_steady_tick(Duration::from_millis(500));
    bar
}
