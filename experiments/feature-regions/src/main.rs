//! `feature-regions`: which facial regions do the embedding's dimensions encode (docs/design.md §9)?
//!
//! For each held-out LFW face and each dimension k, `R^k = mean_c |D(z) - D(renorm(z, z_k = 0))|`
//! (normalised) is split over the template regions (eyes, nose, mouth, forehead, cheeks/jaw,
//! other). Over many faces this gives, per dimension, the share of its effect in each region; a
//! dimension whose share is well above the region's share of the crop (concentration > 1)
//! encodes that region. The run writes the probe's statistics and panels, a per-dimension
//! "dominant region" table, a markdown summary, and logs panels and scalars to TensorBoard.
//!
//! ```text
//! feature-regions --config experiments/feature-regions/lfw.toml [--set probe.faces=50]
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Parser;
use facelens_board::RunDir;
use facelens_recon::run::{dominant_regions, probe_faces, regions_summary, split_faces, PANEL_PNG};
use serde::{Deserialize, Serialize};

const EXPERIMENT: &str = "feature-regions";

#[derive(Parser)]
#[command(version, about = "Map embedding dimensions to facial regions with a trained decoder")]
struct Cli {
    #[arg(long)]
    config: PathBuf,
    /// Override a config key (repeatable), e.g. `--set probe.faces=50`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Decoder weights (decoder-train's `decoder.safetensors` or a checkpoint).
    decoder: PathBuf,
    model: String,
    device: String,
    runs_root: PathBuf,
    lfw: LfwConfig,
    probe: ProbeConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LfwConfig {
    images: PathBuf,
    landmarks: PathBuf,
    pairs: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProbeConfig {
    faces: usize,
    top_k: usize,
    batch: usize,
}

/// The run's `results.json`.
#[derive(Serialize)]
struct Results<'a> {
    experiment: &'a str,
    decoder: &'a PathBuf,
    faces: usize,
    seconds: f64,
    seconds_per_face: f64,
    dominant_counts: &'a BTreeMap<&'a str, usize>,
    regions: &'a [facelens_recon::probe::RegionStats],
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    facelens_core::alloc::keep_freed_memory();
    let resolved = facelens_board::config::load::<Config, _, _>(&cli.config, cli.set.iter().map(String::as_str))
        .with_context(|| format!("reading config {}", cli.config.display()))?;
    let cfg = resolved.value;
    if cfg.probe.faces == 0 {
        bail!("{}: probe.faces must be at least 1", cli.config.display());
    }
    if !cfg.decoder.is_file() {
        bail!("decoder {} not found (train one with `facelens train-decoder`)", cfg.decoder.display());
    }
    let device = facelens_core::parse_device(&cfg.device)?;
    let decoder = facelens_recon::load_decoder(&cfg.decoder, &device)
        .with_context(|| format!("loading decoder {}", cfg.decoder.display()))?;
    let model = facelens_models::FaceModel::load(&cfg.model, &device).with_context(|| format!("loading model `{}`", cfg.model))?;
    let table = facelens_data::LandmarkTable::load(&cfg.lfw.landmarks)?;
    let pairs = facelens_data::load_pairs(&cfg.lfw.pairs)?;
    let faces = facelens_recon::data::lfw_genuine_faces(&cfg.lfw.images, &table, &pairs, cfg.probe.faces)?;
    let run = RunDir::create_with_device(&cfg.runs_root, EXPERIMENT, &resolved.text, &facelens_core::describe_device(&device))?;
    eprintln!("run directory: {} ({} faces)", run.path().display(), faces.len());

    let t0 = std::time::Instant::now();
    let (names, crops) = split_faces(&faces);
    let stats = probe_faces(&decoder, &model, &names, &crops, cfg.probe.top_k, cfg.probe.batch, run.path(), &mut |_, _| {})?;
    let seconds = t0.elapsed().as_secs_f64();
    let dominant = dominant_regions(&stats);
    let text = regions_summary(&stats, &dominant, cfg.probe.top_k);
    facelens_board::run_dir::write_atomic(&run.path().join("summary.md"), text.as_bytes())?;
    run.write_json("dominant_regions.json", &dominant)?;

    let mut tb = run.summary_writer()?;
    tb.add_text("feature_regions/summary", &text, 0)?;
    let panel = image::open(run.path().join(PANEL_PNG)).with_context(|| format!("reading {}", PANEL_PNG))?.to_rgb8();
    tb.add_image("feature_regions/region_panel", &panel, 0)?;
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for d in &dominant {
        *counts.entry(d.region).or_default() += 1;
    }
    for reg in &stats.regions {
        tb.add_scalar(&format!("dominant_dims/{}", reg.region), *counts.get(reg.region).unwrap_or(&0) as f64, 0)?;
        if let Some(top) = reg.top.first() {
            tb.add_scalar(&format!("top_concentration/{}", reg.region), top.concentration, 0)?;
        }
    }
    let conc: Vec<f32> = dominant.iter().map(|d| d.concentration as f32).collect();
    tb.add_histogram("dominant_concentration", &conc, 0)?;
    tb.close()?;
    run.write_results(&Results {
        experiment: EXPERIMENT,
        decoder: &cfg.decoder,
        faces: stats.faces,
        seconds,
        seconds_per_face: seconds / stats.faces.max(1) as f64,
        dominant_counts: &counts,
        regions: &stats.regions,
    })?;
    println!("{text}");
    eprintln!("wrote {}", run.path().display());
    Ok(())
}

