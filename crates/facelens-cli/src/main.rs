//! `facelens`: explainable face recognition from the command line.

mod cmd;
mod faces;
mod output;
mod overview;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "facelens", version, about = "Explainable face recognition: embed, verify, explain, evaluate")]
struct Cli {
    /// Compute device: auto, cpu, cuda or cuda:N.
    #[arg(long, global = true, default_value = "auto")]
    device: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Import a model file into a facelens safetensors checkpoint.
    #[command(subcommand)]
    Import(cmd::import::ImportCommand),
    /// Embed faces and write the raw embeddings to a safetensors file.
    Embed(cmd::embed::EmbedArgs),
    /// Compare two faces: cosine score, threshold, decision.
    Verify(cmd::verify::VerifyArgs),
    /// Explain a verification decision with similarity and dissimilarity maps.
    Explain(cmd::explain::ExplainArgs),
    /// Align faces onto the 112x112 ArcFace template.
    Align(cmd::align::AlignArgs),
    /// Evaluate a model on a benchmark.
    #[command(subcommand)]
    Eval(cmd::eval::EvalCommand),
    /// List and inspect experiment run directories (runs/<experiment>/<run id>/).
    #[command(subcommand)]
    Runs(cmd::runs::RunsCommand),
    /// Train the feature-to-face decoder (configs: experiments/decoder-train/*.toml).
    TrainDecoder(cmd::decoder::TrainDecoderArgs),
    /// Reconstruct faces from their embeddings with a trained decoder (PNG panel + scores).
    Reconstruct(cmd::decoder::ReconstructArgs),
    /// Map embedding dimensions to facial regions with a trained decoder (PNG panel + CSV/JSON).
    ProbeRegions(cmd::decoder::ProbeRegionsArgs),
    /// Check a compute device against the CPU: embeddings, FGGB maps, speed (JSON lines).
    CheckDevice(cmd::check_device::CheckDeviceArgs),
}

fn main() {
    let cli = Cli::parse();
    facelens_core::alloc::keep_freed_memory();
    let result = open_device(&cli.device).and_then(|device| match cli.command {
        Command::Import(c) => cmd::import::run(c),
        Command::Embed(a) => cmd::embed::run(a, &device),
        Command::Verify(a) => cmd::verify::run(a, &device),
        Command::Explain(a) => cmd::explain::run(a, &device),
        Command::Align(a) => cmd::align::run(a),
        Command::Eval(c) => cmd::eval::run(c, &device),
        Command::Runs(c) => cmd::runs::run(c),
        Command::TrainDecoder(a) => cmd::decoder::train(a, &cli.device),
        Command::Reconstruct(a) => cmd::decoder::reconstruct_cmd(a, &device),
        Command::ProbeRegions(a) => cmd::decoder::probe_regions(a, &device),
        Command::CheckDevice(a) => cmd::check_device::run(a, &device),
    });
    if let Err(e) = result {
        eprintln!("error: {}", report(&e));
        std::process::exit(1);
    }
}

/// The error and its causes joined by ": ", skipping a cause whose text is already in the line:
/// library errors often include their source's message (an OS error, a TOML parse error), and
/// printing it again as a cause would say everything twice.
fn report(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.contains(text.trim()) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// `--device`, parsed by [`facelens_core::parse_device`]; says so when `auto` wanted a GPU that
/// this CUDA build could not open.
pub(crate) fn open_device(spec: &str) -> anyhow::Result<candle_core::Device> {
    let device = facelens_core::parse_device(spec)?;
    if spec == "auto" && device.is_cpu() && cfg!(feature = "cuda") {
        eprintln!("note: no usable CUDA device found, running on CPU");
    }
    Ok(device)
}
