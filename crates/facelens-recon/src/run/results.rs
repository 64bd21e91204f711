//! The typed JSON files of a run directory: `results.json` ([`TrainResults`]) and the `eval`
//! subcommand's `eval_<N>.json` ([`EvalReport`]). Field names are the files' keys, which
//! notebooks and `decoder-ablation` read.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::checkpoint::write_atomic;
use crate::error::{ReconError, Result};
use crate::eval::{FaceScore, ReconMetrics};

/// `results.json` of a finished training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainResults {
    /// Always `decoder-train`.
    pub experiment: String,
    pub steps: u64,
    /// The checkpoint step this process started from; `None` for a fresh run.
    pub resumed_from_step: Option<u64>,
    pub train_images: usize,
    pub device: String,
    pub train_seconds_this_process: f64,
    pub images_per_second_this_process: f64,
    pub wall_seconds_this_process: f64,
    /// Learning-rate scale after NaN recoveries (1 when none happened).
    pub lr_scale: f64,
    /// Held-out LFW metrics of the final decoder.
    pub eval: ReconMetrics,
    pub eval_faces: Vec<FaceScore>,
    /// `None` when `probe.faces = 0`.
    pub probe: Option<ProbeSummary>,
}

/// Which embedding dimensions the end-of-training probe found per region (details in `probe/`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeSummary {
    pub faces: usize,
    /// Region name -> its `top_k` dimensions, most concentrated first.
    pub top_dimensions: BTreeMap<String, Vec<usize>>,
}

/// `eval_<N>.json`: a saved decoder scored on held-out faces without training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    pub weights: PathBuf,
    pub eval: ReconMetrics,
    pub eval_faces: Vec<FaceScore>,
}

impl TrainResults {
    /// Reads a run's `results.json`.
    pub fn read(path: &Path) -> Result<Self> {
        read_json(path)
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        write_json(path, self)
    }
}

impl EvalReport {
    pub fn read(path: &Path) -> Result<Self> {
        read_json(path)
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        write_json(path, self)
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = facelens_core::fs::read(path).map_err(|e| ReconError::io(path, "cannot read", e))?;
    serde_json::from_slice(&bytes).map_err(|source| ReconError::Results {
        path: path.to_path_buf(),
        source,
    })
}

pub(crate) fn write_json<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| ReconError::Encode {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    write_atomic(path, &bytes)
}

/// Writes `img` as a PNG, atomically.
pub(crate) fn write_png(path: &Path, img: &image::RgbImage) -> Result<()> {
    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| ReconError::Encode {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    write_atomic(path, &png)
}
