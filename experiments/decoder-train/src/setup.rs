//! Shared plumbing: devices, progress bars, configs, LFW faces.

use std::io::IsTerminal;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use candle_core::{Device, DeviceLocation};
use facelens_data::{load_pairs, LandmarkTable};
use facelens_recon::data::lfw_genuine_faces;
use facelens_recon::EvalFace;
use indicatif::{ProgressBar, ProgressStyle};

use crate::config::Config;

/// `auto` (CUDA when this build and machine have it), `cpu`, `cuda` or `cuda:N`.
pub fn parse_device(spec: &str) -> Result<Device> {
    match spec {
        "cpu" => Ok(Device::Cpu),
        "auto" => Ok(Device::cuda_if_available(0)?),
        s if s == "cuda" || s.starts_with("cuda:") => {
            if !candle_core::utils::cuda_is_available() {
                bail!("device `{s}`: this binary was built without CUDA; rebuild with `--features cuda` or use --device cpu");
            }
            let n = match s.strip_prefix("cuda:") {
                Some(n) => n
                    .parse::<usize>()
                    .with_context(|| format!("device `{s}`: `{n}` is not a GPU index"))?,
                None => 0,
            };
            Device::new_cuda(n).with_context(|| format!("cannot open CUDA device {n}"))
        }
        other => bail!("device must be auto, cpu, cuda or cuda:N, got `{other}`"),
    }
}

pub fn describe_device(d: &Device) -> String {
    match d.location() {
        DeviceLocation::Cpu => "cpu".into(),
        DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

/// A progress bar on interactive terminals only (hidden when `CI` is set or stderr is piped).
pub fn progress_bar(len: u64, template: &str) -> ProgressBar {
    if std::env::var_os("CI").is_some() || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.enable_steady_tick(Duration::from_millis(500));
    bar
}

/// Reads a config with overrides; returns it with its resolved TOML text.
pub fn load_config(path: &Path, overrides: &[String]) -> Result<(Config, String)> {
    let resolved =
        facelens_board::config::load::<Config, _, _>(path, overrides.iter().map(String::as_str))
            .with_context(|| format!("reading config {}", path.display()))?;
    Ok((resolved.value, resolved.text))
}

/// The first `n` LFW genuine pairs (one per person) as held-out evaluation faces.
pub fn lfw_faces(cfg: &Config, n: usize) -> Result<Vec<EvalFace>> {
    if n == 0 {
        return Ok(Vec::new());
    }
    let table = LandmarkTable::load(Path::new(&cfg.lfw.landmarks))?;
    let pairs = load_pairs(Path::new(&cfg.lfw.pairs))?;
    let faces = lfw_genuine_faces(Path::new(&cfg.lfw.images), &table, &pairs, n)?;
    if faces.len() < n {
        eprintln!(
            "note: only {} usable LFW genuine pairs (asked for {n})",
            faces.len()
        );
    }
    Ok(faces)
}
