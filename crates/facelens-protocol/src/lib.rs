//! facelens-protocol: the Deletion/Insertion benchmark of face-verification explanations
//! (docs/design.md §8) as a library, so the `xfv-benchmark` experiment and `facelens eval xfv`
//! share one implementation of pair selection, curves, tables and shard assembly.
//!
//! Data flows one way through the modules: [`config`] → [`select`] / [`pair`] / [`explain`] /
//! [`cache`] → [`bench`] (records, see [`records`]) → [`report`] (tables) → [`output`] (run
//! directories, TensorBoard) and [`shards`] (`merge`), with [`draw`] for figures. The views beyond
//! Deletion/Insertion share its pairs and engines: ROAD is a fill of the same curves
//! (`protocol.fill = "road"`), [`sanity`] randomises the backbone, [`patch`] plants known evidence,
//! and [`views`] joins their per-pair results into one table per backbone.

pub mod bench;
pub mod cache;
pub mod config;
pub mod draw;
pub mod error;
pub mod explain;
pub mod output;
pub mod pair;
pub mod patch;
pub mod records;
pub mod report;
pub mod sanity;
pub mod select;
pub mod shards;
pub mod views;

use std::path::Path;

use candle_core::Device;
use facelens_board::{config as board_config, RunDir};

pub use bench::{Bench, Progress};
pub use cache::{CurveCache, MapCache};
pub use config::{Config, EXPERIMENT};
pub use error::{Error, Result};
pub use records::{Records, Shard, Timings};
pub use report::Results;

/// What [`run`] produced.
pub struct Finished {
    pub run: RunDir,
    /// `None` for one shard of a sharded run (tables come from `merge`).
    pub results: Option<Results>,
    pub timings: Timings,
}

/// Loads `config_path` with `overrides`, runs shard `shard` on `device` (`device_name` is what
/// `meta.json` records), with `cache` serving and storing curves, and writes a run directory
/// under `out`.
pub fn run(
    config_path: &Path,
    overrides: &[String],
    shard: Shard,
    out: &Path,
    (device, device_name): (&Device, &str),
    cache: Option<CurveCache>,
    progress: Progress<'_>,
) -> Result<Finished> {
    let resolved = board_config::load::<Config, _, _>(config_path, overrides)?;
    resolved.value.validate()?;
    let bench = Bench::load(resolved.value, resolved.hash.clone(), device, cache)?;
    let output = bench.run(shard, progress)?;
    let run = RunDir::create_with_device(out, EXPERIMENT, &resolved.text, device_name)?;
    let results = if shard.count == 1 {
        Some(output::write_run(&run, &resolved.text, &output.records, &output.panels, &output.timings)?)
    } else {
        output::write_shard(&run, &output.records, &output.panels, &output.timings)?;
        None
    };
    Ok(Finished { run, results, timings: output.timings })
}
