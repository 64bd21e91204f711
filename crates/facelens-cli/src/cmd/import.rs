//! `facelens import onnx MODEL.onnx --out X.safetensors`

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use facelens_models::zoo;

#[derive(Subcommand)]
pub enum ImportCommand {
    /// Import an ONNX graph (parsed in Rust) into a safetensors checkpoint.
    Onnx(OnnxArgs),
}

#[derive(Args)]
pub struct OnnxArgs {
    /// The .onnx file.
    pub model: PathBuf,
    /// Output .safetensors path (written atomically).
    #[arg(long)]
    pub out: PathBuf,
    /// Architecture the graph holds: a zoo name (w600k_mbf, sface) or `scrfd` (the face detector).
    #[arg(long, default_value = zoo::DEFAULT_MODEL)]
    pub arch: String,
    /// Refuse the file unless its sha256 equals this.
    #[arg(long)]
    pub sha256: Option<String>,
}

pub fn run(cmd: ImportCommand) -> Result<()> {
    let ImportCommand::Onnx(a) = cmd;
    crate::output::check_target(&a.out)?;
    if let Some(expected) = &a.sha256 {
        let got = facelens_models::backbone::sha256_file(&a.model)?;
        if &got != expected {
            anyhow::bail!(facelens_models::ModelError::Checksum { path: a.model.clone(), expected: expected.clone(), got });
        }
    }
    if a.arch == "scrfd" {
        super::detector::import(&a.model, &a.out)?;
        eprintln!("imported detector {} -> {}", a.model.display(), a.out.display());
        return Ok(());
    }
    let spec = zoo::find(&a.arch)?;
    let report = facelens_models::backbone::import_onnx(&a.model, &spec.arch, &a.out)
        .with_context(|| format!("importing {} as {}", a.model.display(), a.arch))?;
    eprintln!(
        "imported {} -> {} ({} tensors, {} parameters, source sha256 {})",
        a.model.display(),
        report.output.display(),
        report.tensors,
        report.parameters,
        report.source_sha256
    );
    Ok(())
}
