//! `xfv-benchmark`: run the Deletion/Insertion benchmark from a config, or merge shards.
//!
//! ```text
//! xfv-benchmark --config experiments/xfv-benchmark/ci.toml [--set key=value]... [--shard i/n] [--reuse RUN_DIR]... [--out runs] [--device auto]
//! xfv-benchmark merge <SHARD_DIR or FOLDER>... [--out runs]
//! ```

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};
use xfv_benchmark::{output, progress_bar, Shard};

#[derive(Parser)]
#[command(
    version,
    about = "Deletion/Insertion benchmark of face-verification explanations (FGGB Tables I-III)"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Experiment config (TOML), e.g. experiments/xfv-benchmark/ci.toml.
    #[arg(long, required = false)]
    config: Option<PathBuf>,
    /// Override a config key, e.g. `--set protocol.step=10` (repeatable; keys must exist).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Evaluate only shard i of n (1-based); combine the shards with `merge`.
    #[arg(long, value_name = "I/N")]
    shard: Option<String>,
    /// Earlier run or shard directories (or folders of them) of a compatible config (other
    /// subset, output, methods or perturbation): the curves they measured are taken, pair by pair
    /// and method by method, not measured again.
    #[arg(long, value_name = "RUN_DIR")]
    reuse: Vec<PathBuf>,
    /// Root folder for run directories (`<out>/xfv-benchmark/<timestamp>-<hash>/`).
    #[arg(long, default_value = "runs")]
    out: PathBuf,
    /// auto | cpu | cuda:N
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
    match cli.command {
        Some(Command::Merge { shards, out }) => {
            let (run, results) = output::merge(&shards, &out)?;
            println!("{}", results.markdown());
            eprintln!(
                "merged {} into {}",
                shards
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" "),
                run.path().display()
            );
        }
        None => {
            let Some(config) = cli.config else {
                anyhow::bail!("--config FILE is required (or use the `merge` subcommand)");
            };
            let shard = match &cli.shard {
                Some(s) => Shard::parse(s)?,
                None => Shard::WHOLE,
            };
            let bar = progress_bar();
            let progress = |done: usize, total: usize, msg: &str| {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
                bar.set_message(msg.to_string());
            };
            let finished =
                xfv_benchmark::run(&config, &cli.set, shard, &cli.reuse, &cli.out, &cli.device, &progress)?;
            bar.finish_and_clear();
            match &finished.results {
                Some(r) => println!("{}", r.markdown()),
                None => println!("shard {shard} done; merge all shards with `xfv-benchmark merge`"),
            }
            eprintln!(
                "run directory: {} ({:.1} s; {} pairs reused)",
                finished.run.path().display(),
                finished.timings.total_s,
                finished.timings.reused_pairs
            );
        }
    }
    Ok(())
}
