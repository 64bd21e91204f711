//! Region probing of a trained decoder on LFW faces: statistics (JSON, CSV) and panels (PNG).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use candle_core::Device;
use facelens_models::preprocess::l2_normalise;
use facelens_models::FaceModel;
use facelens_recon::probe::{
    region_maps, render_region_panel, ProbeAccumulator, ProbeStats, REGIONS,
};
use facelens_recon::{load_decoder, Decoder, EvalFace};
use image::RgbImage;

use crate::setup::{describe_device, lfw_faces, load_config, parse_device, progress_bar};

/// Files written by [`probe_faces`].
pub const STATS_JSON: &str = "region_stats.json";
pub const MASS_CSV: &str = "region_mass.csv";
pub const TOP_CSV: &str = "top_dimensions.csv";
pub const PANEL_PNG: &str = "region_panel.png";

/// Probes every aligned crop (named by `names`) and writes statistics and the panel into `out`.
pub fn probe_faces(
    decoder: &Decoder,
    model: &FaceModel,
    names: &[String],
    crops: &[RgbImage],
    top_k: usize,
    batch: usize,
    out: &Path,
) -> Result<ProbeStats> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let dim = decoder.config().embedding_dim;
    let mut acc = ProbeAccumulator::new(dim);
    let bar = progress_bar(
        crops.len() as u64,
        "probe {bar:30} {pos}/{len} faces (eta {eta})",
    );
    for crop in crops {
        let e = model.embed_crops(&[crop.as_raw().as_slice()], 1)?;
        let z = l2_normalise(&e[0]);
        acc.add(&region_maps(decoder, &z, batch, &model.device)?)?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    let stats = acc.finish(top_k);
    let json = serde_json::json!({
        "faces": names,
        "regions_doc": "see facelens_recon::probe (ellipses around the ArcFace 112x112 template landmarks)",
        "stats": stats,
    });
    write(out.join(STATS_JSON), serde_json::to_vec_pretty(&json)?)?;
    write(out.join(MASS_CSV), stats.to_csv().into_bytes())?;
    let mut top = String::from("region,rank,dim,mean_mass,std_mass,concentration\n");
    for r in &stats.regions {
        for (i, d) in r.top.iter().enumerate() {
            top.push_str(&format!(
                "{},{},{},{:.6},{:.6},{:.4}\n",
                r.region,
                i + 1,
                d.dim,
                d.mean_mass,
                d.std_mass,
                d.concentration
            ));
        }
    }
    write(out.join(TOP_CSV), top.into_bytes())?;
    let panel = render_region_panel(&acc, &stats, top_k);
    let mut png = Vec::new();
    panel.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)?;
    write(out.join(PANEL_PNG), png)?;
    debug_assert_eq!(stats.regions.len(), REGIONS.len());
    Ok(stats)
}

/// Names and source crops of LFW evaluation faces.
pub fn split_faces(faces: &[EvalFace]) -> (Vec<String>, Vec<RgbImage>) {
    faces.iter().map(|f| (f.name.clone(), f.source.clone())).unzip()
}

fn write(path: PathBuf, bytes: Vec<u8>) -> Result<()> {
    facelens_recon::checkpoint::write_atomic(&path, &bytes)
        .with_context(|| format!("writing {}", path.display()))
}

/// The `probe` subcommand.
pub fn run(
    run_dir: &Path,
    checkpoint: Option<&Path>,
    faces: Option<usize>,
    out: Option<&Path>,
    device: Option<&str>,
) -> Result<()> {
    let (cfg, _) = load_config(&run_dir.join("config.toml"), &[])?;
    let device: Device = parse_device(device.unwrap_or(&cfg.device))?;
    let weights = match checkpoint {
        Some(p) => p.to_path_buf(),
        None => {
            let exported = run_dir.join(crate::train::DECODER_FILE);
            if exported.is_file() {
                exported
            } else {
                run_dir.join(crate::train::CHECKPOINT_FILE)
            }
        }
    };
    let decoder = load_decoder(&weights, &device)
        .with_context(|| format!("loading decoder {}", weights.display()))?;
    let model = FaceModel::load(&cfg.model, &device)
        .with_context(|| format!("loading model `{}`", cfg.model))?;
    let n = faces.unwrap_or(cfg.probe.faces).max(1);
    let faces = lfw_faces(&cfg, n)?;
    let out = out
        .map(Path::to_path_buf)
        .unwrap_or_else(|| run_dir.join("probe"));
    eprintln!(
        "probing {} LFW faces with {} on {}",
        faces.len(),
        weights.display(),
        describe_device(&device)
    );
    let (names, crops) = split_faces(&faces);
    let stats = probe_faces(
        &decoder,
        &model,
        &names,
        &crops,
        cfg.probe.top_k,
        cfg.probe.batch,
        &out,
    )?;
    for r in &stats.regions {
        let dims: Vec<String> = r
            .top
            .iter()
            .take(5)
            .map(|d| format!("{} ({:.1}%)", d.dim, 100.0 * d.mean_mass))
            .collect();
        println!(
            "{:<11} area {:>5.1}%  top: {}",
            r.region,
            100.0 * r.area_fraction,
            dims.join(", ")
        );
    }
    eprintln!("wrote {}", out.display());
    Ok(())
}
