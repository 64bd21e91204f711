//! `xfv-benchmark`: the Deletion/Insertion benchmark of face-verification explanations
//! (`facelens-protocol`) driven by a TOML config, or the merge of a sharded run's directories.
//!
//! ```text
//! xfv-benchmark --config experiments/xfv-benchmark/ci.toml [--set key=value]... [--shard i/n] [--out runs] [--cache DIR | --no-cache] [--device auto]
//! xfv-benchmark merge <SHARD_DIR or FOLDER>... [--out runs]
//! ```

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};
use facelens_protocol::{shards, CurveCache, Shard};

#[derive(Parser)]
#[command(version, about = "Deletion/Insertion benchmark of face-verification explanations")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Experiment config (TOML), e.g. experiments/xfv-benchmark/ci.toml.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Override a config key, e.g. `--set protocol.step=10` (repeatable; keys must exist).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Evaluate only shard i of n (1-based); combine the shards with `merge`.
    #[arg(long, value_name = "I/N")]
    shard: Option<String>,
    /// Root folder for run directories (`<out>/xfv-benchmark/<timestamp>-<hash>/`).
    #[arg(long, default_value = "runs")]
    out: PathBuf,
    /// Curve cache: curves measured by any earlier run with the same models, method settings,
    /// protocol and pair are taken from here instead of measured again (default `<out>/cache`).
    #[arg(long, value_name = "DIR", conflicts_with = "no_cache")]
    cache: Option<PathBuf>,
    /// Measure every curve, reading and writing no cache.
    #[arg(long)]
    no_cache: bool,
    /// auto | cpu | cuda | cuda:N
    #[arg(long, default_value = "auto")]
    device: String,
}

#[derive(Subcommand)]
enum Command {
    /// Merge shard run directories into one run with the full tables.
    Merge {
        /// Shard run directories, or folders whose subfolders are shard run directories.
        #[arg(required = true)]
        shards: Vec<PathBuf>,
        /// Root folder for the merged run directory.
        #[arg(long, default_value = "runs")]
        out: PathBuf,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    facelens_core::alloc::keep_freed_memory();
    if let Some(Command::Merge { shards, out }) = cli.command {
        let (run, results) = shards::merge(&shards, &out)?;
        println!("{}", results.markdown());
        eprintln!("merged {} shard folder(s) into {}", shards.len(), run.path().display());
        return Ok(());
    }
    let Some(config) = cli.config else {
        anyhow::bail!("--config FILE is required (or use the `merge` subcommand)");
    };
    let shard = match &cli.shard {
        Some(s) => Shard::parse(s)?,
        None => Shard::WHOLE,
    };
    let cache = (!cli.no_cache).then(|| CurveCache::new(cli.cache.clone().unwrap_or_else(|| cli.out.join("cache"))));
    let device = facelens_core::device::parse_device(&cli.device)?;
    let device_name = facelens_core::device::describe_device(&device);
    let bar = facelens_board::progress::bar(0);
    let progress = |done: usize, total: usize, msg: &str| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
        bar.set_message(msg.to_string());
    };
    let finished = facelens_protocol::run(&config, &cli.set, shard, &cli.out, (&device, &device_name), cache, &progress)?;
    bar.finish_and_clear();
    match &finished.results {
        Some(r) => println!("{}", r.markdown()),
        None => println!("shard {shard} done; merge all shards with `xfv-benchmark merge`"),
    }
    let cached: u64 = finished.timings.cached.values().sum();
    let measured: u64 = finished.timings.explanations.values().sum();
    eprintln!(
        "run directory: {} ({:.1} s; {measured} explanations measured, {cached} taken from the curve cache)",
        finished.run.path().display(),
        finished.timings.total_s,
    );
    Ok(())
}
