//! The decoder training run's TOML config (`experiments/decoder-train/*.toml`). Every tunable key
//! is spelled out in `ci.toml` and `gpu.toml`, so `--set key=value` can override any of them
//! (facelens-board refuses keys that are not in the base config, catching typos).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::decoder::DecoderConfig;
use crate::error::{ReconError, Result};
use crate::eval::NamedThreshold;
use crate::trainer::TrainConfig;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentConfig {
    /// `cpu`, `cuda`, `cuda:N` or `auto` (the binary turns it into a device).
    pub device: String,
    /// Backbone: a zoo name (`w600k_mbf`) or a `.safetensors` path.
    pub model: String,
    /// Run directories go to `<runs_root>/decoder-train/<timestamp>-<hash>/`.
    pub runs_root: String,
    pub data: DataConfig,
    pub lfw: LfwConfig,
    /// `embedding_dim` is taken from the model.
    pub decoder: DecoderConfig,
    pub train: TrainConfig,
    pub log: LogConfig,
    pub eval: EvalConfig,
    pub probe: ProbeConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// UTKFace images folder and its landmark CSV (training data, colour).
    pub images: String,
    pub landmarks: String,
    /// Use `limit` images spread evenly over the name-sorted list; 0 = all.
    pub limit: usize,
    /// Fraction of training samples shown in grey, so grey LFW embeddings decode sensibly.
    pub grey_fraction: f64,
    /// Loader threads and batches each may prepare ahead.
    pub workers: usize,
    pub prefetch: usize,
    /// Crops per backbone pass when embedding the training set once.
    pub embed_batch: usize,
    /// A run directory (or its `embeddings.safetensors`) whose cached embeddings are reused when
    /// they come from exactly these crops and this model; "" = compute them.
    #[serde(default)]
    pub embeddings_from: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LfwConfig {
    pub images: String,
    pub landmarks: String,
    pub pairs: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// Reconstruction grid of the fixed held-out faces every this many steps (and at the end).
    pub images_every: u64,
    pub histograms_every: u64,
    pub checkpoint_every: u64,
    /// Also keep a copy of every periodic checkpoint as `checkpoints/step_NNNNNN.safetensors`.
    pub keep_checkpoints: bool,
    /// Held-out LFW faces in the TensorBoard grid.
    pub panel_faces: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalConfig {
    /// Held-out LFW faces (one genuine pair per person, in pairs.txt order).
    pub faces: usize,
    pub batch: usize,
    /// Named cosine thresholds, e.g. the LFW thresholds at FAR 0.1 % and 1 %.
    pub thresholds: BTreeMap<String, f32>,
    /// A second zoo model that judges the reconstructions at its own LFW thresholds for FAR
    /// 0.1 % and 1 % (`facelens_models::zoo::lfw_far_thresholds`); "" = none.
    #[serde(default)]
    pub judge: String,
}

impl EvalConfig {
    /// The thresholds in the form [`crate::evaluate`] takes.
    pub fn named_thresholds(&self) -> Vec<NamedThreshold> {
        self.thresholds
            .iter()
            .map(|(name, value)| NamedThreshold {
                name: name.clone(),
                value: *value,
            })
            .collect()
    }

    /// The judge model's name and thresholds, when one is configured.
    pub fn judge_thresholds(&self) -> Result<Option<(String, Vec<NamedThreshold>)>> {
        if self.judge.is_empty() {
            return Ok(None);
        }
        let known = facelens_models::zoo::lfw_far_thresholds(&self.judge).ok_or_else(|| {
            ReconError::Config(format!(
                "eval.judge = \"{}\": no LFW thresholds are known for it (known: sface, w600k_mbf)",
                self.judge
            ))
        })?;
        let named = known.iter().map(|(name, value)| NamedThreshold { name: name.to_string(), value: *value }).collect();
        Ok(Some((self.judge.clone(), named)))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeConfig {
    /// LFW faces probed at the end of training (0 = skip).
    pub faces: usize,
    /// Dimensions listed and drawn per region.
    pub top_k: usize,
    /// Perturbed embeddings per decoder pass.
    pub batch: usize,
}

/// A config with its overrides applied, and its resolved TOML text (what `config.toml` holds).
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub config: ExperimentConfig,
    pub text: String,
}

/// Largest batch for embedding, evaluation and probing passes; and most loader threads.
const MAX_PASS_BATCH: usize = 4096;
const MAX_WORKERS: usize = 256;

impl ExperimentConfig {
    /// Checks every setting against its bound, before any run directory or model exists.
    pub fn validate(&self) -> Result<()> {
        use crate::bounds::{count, real};
        if self.runs_root.trim().is_empty() {
            return Err(ReconError::Config(
                "runs_root is empty: name the folder run directories go to (e.g. \"runs\")".into(),
            ));
        }
        real("data.grey_fraction", self.data.grey_fraction, 0.0, false, 1.0, false)?;
        count("data.workers", self.data.workers, 1, MAX_WORKERS)?;
        count("data.prefetch", self.data.prefetch, 1, MAX_WORKERS)?;
        count("data.embed_batch", self.data.embed_batch, 1, MAX_PASS_BATCH)?;
        count("eval.batch", self.eval.batch, 1, MAX_PASS_BATCH)?;
        count("probe.batch", self.probe.batch, 1, MAX_PASS_BATCH)?;
        count("log.panel_faces", self.log.panel_faces, 0, 1000)?;
        for (name, t) in &self.eval.thresholds {
            real(&format!("eval.thresholds.{name}"), f64::from(*t), -1.0, false, 1.0, false)?;
        }
        self.decoder.validate()?;
        self.train.validate()
    }

    /// Reads `path` with `--set key=value` overrides and validates the result.
    pub fn load(path: &Path, overrides: &[String]) -> Result<LoadedConfig> {
        let resolved = facelens_board::config::load::<ExperimentConfig, _, _>(
            path,
            overrides.iter().map(String::as_str),
        )
        .map_err(|source| ReconError::ConfigFile {
            path: path.to_path_buf(),
            source: Box::new(source),
        })?;
        resolved.value.validate().map_err(|e| match e {
            ReconError::Config(message) => ReconError::InvalidConfig { path: path.to_path_buf(), message },
            other => other,
        })?;
        Ok(LoadedConfig {
            config: resolved.value,
            text: resolved.text,
        })
    }
}
