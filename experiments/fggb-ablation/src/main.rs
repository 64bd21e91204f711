//! `fggb-ablation`: FGGB's switches on the Deletion/Insertion protocol.
//!
//! ```text
//! fggb-ablation --config experiments/fggb-ablation/ci.toml [--set key=value]... [--out runs] [--device auto]
//! ```

use std::path::PathBuf;

use anyhow::Result;
use clap::Parser;
use xfv_benchmark::progress_bar;

#[derive(Parser)]
#[command(
    version,
    about = "FGGB ablation (embedding, channel reduction, blur, tau, per-dimension norm) on Deletion/Insertion"
)]
struct Cli {
    /// Experiment config (TOML), e.g. experiments/fggb-ablation/ci.toml.
    #[arg(long)]
    config: PathBuf,
    /// Override a config key, e.g. `--set subset.first=5` (repeatable; keys must exist).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Root folder for run directories (`<out>/fggb-ablation/<timestamp>-<hash>/`).
    #[arg(long, default_value = "runs")]
    out: PathBuf,
    /// auto | cpu | cuda:N
    #[arg(long, default_value = "auto")]
    device: String,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let bar = progress_bar();
    let progress = |done: usize, total: usize, msg: &str| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
        bar.set_message(msg.to_string());
    };
    let finished = fggb_ablation::run(&cli.config, &cli.set, &cli.out, &cli.device, &progress)?;
    bar.finish_and_clear();
    println!("{}", finished.table.markdown());
    eprintln!(
        "run directory: {} ({:.1} s; maps {:.2} s per scored pair for all variants)",
        finished.run.path().display(),
        finished.timings.total_s,
        finished.timings.maps_s_per_pair()
    );
    Ok(())
}
