//! fggb-ablation: FGGB's switches (DESIGN §6: raw vs normalised embedding, mean-abs vs max-abs
//! channel reduction, blur, per-dimension normalisation, plus the threshold τ its weights are
//! shifted by) on the Deletion/Insertion protocol (DESIGN §8), all on the same pairs.
//!
//! * [`config`]: the typed config (the benchmark's data, subset and protocol sections + variants).
//! * [`maps`]: every variant's maps from one Jacobian per image.
//! * [`ablation`]: the loop over pairs, in `xfv-benchmark`'s record format.
//! * [`table`]: records -> one table (a row per variant).
//! * [`output`]: run-directory files and TensorBoard runs.
//!
//! Data loading, pair selection, curves and AUCs are `xfv-benchmark`'s, so the numbers are
//! comparable with its Tables I and II on the same subset.

pub mod ablation;
pub mod config;
pub mod maps;
pub mod output;
pub mod table;

use std::path::Path;

use anyhow::Result;
use facelens_board::{config as board_config, RunDir};
use xfv_benchmark::bench::{describe_device, parse_device};
use xfv_benchmark::Progress;

pub use ablation::{Ablation, Timings};
pub use config::{Config, EXPERIMENT};
pub use table::Table;

/// What [`run`] produced.
pub struct Finished {
    pub run: RunDir,
    pub table: Table,
    pub timings: Timings,
}

/// Loads `config_path` with `overrides`, runs every variant on `device`, and writes a run
/// directory under `out`.
pub fn run(
    config_path: &Path,
    overrides: &[String],
    out: &Path,
    device: &str,
    progress: Progress<'_>,
) -> Result<Finished> {
    let resolved = board_config::load::<Config, _, _>(config_path, overrides)?;
    let dev = parse_device(device)?;
    let config = resolved.value;
    let ablation = Ablation::load(config.clone(), resolved.hash.clone(), &dev)?;
    let measured = ablation.run(progress)?;
    let table = table::build(
        &measured.records,
        &config.variants,
        ablation.thresholds(),
        &measured.timings,
    )?;
    let run = RunDir::create_with_device(out, EXPERIMENT, &resolved.text, &describe_device(&dev))?;
    output::write_run(
        &run,
        &resolved.text,
        &measured.records,
        &measured.timings,
        &table,
    )?;
    Ok(Finished {
        run,
        table,
        timings: measured.timings,
    })
}
