//! The `eval` subcommand: scores a saved decoder on held-out LFW faces (e.g. an interrupted
//! run's last checkpoint) without training.

use std::path::Path;

use anyhow::{Context, Result};
use facelens_models::FaceModel;
use facelens_recon::eval::pair_grid;
use facelens_recon::{evaluate, load_decoder};

use crate::setup::{describe_device, lfw_faces, load_config, parse_device};

pub fn run(
    run_dir: &Path,
    checkpoint: Option<&Path>,
    faces: Option<usize>,
    device: Option<&str>,
) -> Result<()> {
    let (cfg, _) = load_config(&run_dir.join("config.toml"), &[])?;
    let device = parse_device(device.unwrap_or(&cfg.device))?;
    let weights = checkpoint
        .map(Path::to_path_buf)
        .unwrap_or_else(|| run_dir.join(crate::train::CHECKPOINT_FILE));
    let decoder = load_decoder(&weights, &device)
        .with_context(|| format!("loading decoder {}", weights.display()))?;
    let model = FaceModel::load(&cfg.model, &device)
        .with_context(|| format!("loading model `{}`", cfg.model))?;
    let n = faces.unwrap_or(cfg.eval.faces).max(1);
    let faces = lfw_faces(&cfg, n)?;
    let thresholds = cfg.eval.named_thresholds();
    eprintln!(
        "evaluating {} on {} LFW faces ({})",
        weights.display(),
        faces.len(),
        describe_device(&device)
    );
    let ev = evaluate(&decoder, &model, &faces, &thresholds, cfg.eval.batch)?;
    let m = &ev.metrics;
    let json = serde_json::json!({ "weights": weights, "eval": m, "eval_faces": ev.scores });
    let out = run_dir.join(format!("eval_{}.json", faces.len()));
    facelens_recon::checkpoint::write_atomic(&out, &serde_json::to_vec_pretty(&json)?)?;
    let grid = pair_grid(
        &faces.iter().map(|f| f.source.clone()).collect::<Vec<_>>(),
        &ev.reconstructions,
        5,
    );
    let mut png = Vec::new();
    grid.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)?;
    facelens_recon::checkpoint::write_atomic(
        &run_dir.join(format!("eval_{}.png", faces.len())),
        &png,
    )?;
    println!(
        "identity cos {:.4} ± {:.4} | PSNR {:.2} dB | SSIM {:.4} | type I {:?} | type II {:?} ({} LFW faces)",
        m.identity_cos_mean, m.identity_cos_std, m.psnr_mean, m.ssim_mean, m.type1_success, m.type2_success, m.faces
    );
    eprintln!("wrote {}", out.display());
    Ok(())
}
