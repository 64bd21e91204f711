//! A whole decoder training run as library code (docs/design.md §9, §10): config, data, the training
//! loop with checkpoints and exact resume, TensorBoard logging, the final evaluation on held-out
//! LFW faces, region probing, and the run directory's files. `decoder-train`,
//! `facelens train-decoder` and `decoder-ablation` drive it through [`train()`] with their own
//! [`TrainObserver`]; `feature-regions` and `facelens probe-regions` use [`probe_faces`]. The
//! ablation's table ([`AblationRow`]) and the feature-regions summary ([`dominant_regions`]) live
//! here too, so the experiment binaries stay thin.
//!
//! A run directory holds `config.toml`, `meta.json`, TensorBoard events, [`LOSSES_CSV`],
//! [`EMBEDDINGS_FILE`], [`CHECKPOINT_FILE`] (plus `checkpoints/step_NNNNNN.safetensors` when
//! kept), `panels/step_NNNNNN.png`, and once finished [`DECODER_FILE`], `reconstructions.png`,
//! `probe/` and [`RESULTS_FILE`] ([`TrainResults`]).

mod ablation;
mod config;
mod finish;
mod observer;
mod probe;
mod regions;
mod results;
mod saved;
mod setup;
mod train;

pub use ablation::{
    ablation_csv, ablation_markdown, log_ablation, AblationConfig, AblationRow, AblationVariant,
};
pub use config::{
    DataConfig, EvalConfig, ExperimentConfig, LfwConfig, LoadedConfig, LogConfig, ProbeConfig,
};
pub use observer::{metrics_line, Phase, RunMessage, TrainObserver};
pub use probe::{probe_faces, split_faces, MASS_CSV, PANEL_PNG, STATS_JSON, TOP_CSV};
pub use regions::{dominant_regions, regions_summary, Dominant};
pub use results::{EvalReport, ProbeSummary, TrainResults};
pub use saved::{eval_weights, evaluate_saved, probe_saved, probe_weights, SavedEval};
pub use setup::lfw_faces;
pub use train::{train, Outcome, Prepared, Start};

pub const CHECKPOINT_FILE: &str = "checkpoint.safetensors";
pub const DECODER_FILE: &str = "decoder.safetensors";
pub const EMBEDDINGS_FILE: &str = "embeddings.safetensors";
pub const LOSSES_CSV: &str = "losses.csv";
pub const RESULTS_FILE: &str = "results.json";
/// The run directories' experiment name: `<runs_root>/decoder-train/<run>`.
pub const EXPERIMENT: &str = "decoder-train";
