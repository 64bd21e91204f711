//! A saved decoder of a run directory, evaluated or probed again without training (e.g. the last
//! checkpoint of an interrupted run): `decoder-train eval` and `decoder-train probe`.

use std::path::{Path, PathBuf};

use candle_core::Device;
use facelens_models::FaceModel;

use crate::checkpoint::load_decoder;
use crate::data::EvalFace;
use crate::error::Result;
use crate::eval::{evaluate, pair_grid};
use crate::probe::ProbeStats;

use super::config::ExperimentConfig;
use super::probe::{probe_faces, split_faces};
use super::results::{write_png, EvalReport};
use super::{CHECKPOINT_FILE, DECODER_FILE};

/// Weights to evaluate: `given`, else the run's last checkpoint.
pub fn eval_weights(run_dir: &Path, given: Option<&Path>) -> PathBuf {
    given
        .map(Path::to_path_buf)
        .unwrap_or_else(|| run_dir.join(CHECKPOINT_FILE))
}

/// Weights to probe: `given`, else the run's exported decoder, else its last checkpoint.
pub fn probe_weights(run_dir: &Path, given: Option<&Path>) -> PathBuf {
    match given {
        Some(p) => p.to_path_buf(),
        None if run_dir.join(DECODER_FILE).is_file() => run_dir.join(DECODER_FILE),
        None => run_dir.join(CHECKPOINT_FILE),
    }
}

/// What [`evaluate_saved`] wrote.
#[derive(Debug, Clone)]
pub struct SavedEval {
    pub report: EvalReport,
    /// `<run>/eval_<N>.json` and its `(input | reconstruction)` grid `<run>/eval_<N>.png`.
    pub json: PathBuf,
    pub png: PathBuf,
}

/// Scores `weights` on `faces` with the run's model and thresholds; writes `eval_<N>.json` and
/// `eval_<N>.png` into `run_dir`.
pub fn evaluate_saved(
    cfg: &ExperimentConfig,
    run_dir: &Path,
    weights: &Path,
    faces: &[EvalFace],
    device: &Device,
) -> Result<SavedEval> {
    let decoder = load_decoder(weights, device)?;
    let model = FaceModel::load(&cfg.model, device)?;
    let judge_model = super::finish::open_judge(&cfg.eval, device.clone())?;
    let judge = judge_model.as_ref().map(|(model, thresholds)| crate::eval::Judge { model, thresholds: thresholds.clone() });
    let ev = evaluate(
        &decoder,
        &model,
        faces,
        &cfg.eval.named_thresholds(),
        cfg.eval.batch,
        judge.as_ref(),
    )?;
    let report = EvalReport {
        weights: weights.to_path_buf(),
        eval: ev.metrics,
        eval_faces: ev.scores,
    };
    let json = run_dir.join(format!("eval_{}.json", faces.len()));
    report.write(&json)?;
    let sources: Vec<_> = faces.iter().map(|f| f.source.clone()).collect();
    let png = run_dir.join(format!("eval_{}.png", faces.len()));
    write_png(&png, &pair_grid(&sources, &ev.reconstructions, 5))?;
    Ok(SavedEval { report, json, png })
}

/// Probes `weights` on `faces` with the run's model and probe settings, writing into `out`.
pub fn probe_saved(
    cfg: &ExperimentConfig,
    weights: &Path,
    faces: &[EvalFace],
    out: &Path,
    device: &Device,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<ProbeStats> {
    let decoder = load_decoder(weights, device)?;
    let model = FaceModel::load(&cfg.model, device)?;
    let (names, crops) = split_faces(faces);
    probe_faces(
        &decoder,
        &model,
        &names,
        &crops,
        cfg.probe.top_k,
        cfg.probe.batch,
        out,
        progress,
    )
}
