//! Experiment bookkeeping for facelens: TensorBoard logging, run directories
//! and configs.
//!
//! * [`SummaryWriter`] writes TensorBoard event files directly (TFRecord
//!   framing + hand-written `prost` messages). We do not use `tensorboard-rs`:
//!   it is unmaintained, swaps image width/height and panics in most methods.
//! * [`RunDir`] creates one never-overwritten folder per run with the
//!   resolved config, provenance (`meta.json`) and results.
//! * [`config`] loads TOML configs with `--set key.sub=value` overrides into a
//!   typed struct, naming the offending key on every error.
//! * [`runs`] finds and summarises existing run directories (for
//!   `facelens runs list|show`).
//!
//! The library never prints and never panics on I/O; all failures are
//! [`Error`]s naming the file involved.
//!
//! ```no_run
//! # fn main() -> facelens_board::Result<()> {
//! use facelens_board::{config, RunDir};
//! # #[derive(serde::Deserialize)] struct Cfg { lr: f64 }
//! let cfg = config::load::<Cfg, _, _>("exp.toml".as_ref(), ["lr=0.01"])?;
//! let run = RunDir::create_with_device("runs".as_ref(), "arcface", &cfg.text, "cpu")?;
//! let mut tb = run.summary_writer()?;
//! tb.add_scalar("train/loss", 0.7, 1)?;
//! tb.close()?;
//! run.write_results(&serde_json::json!({ "acc": 0.99 }))?;
//! # Ok(()) }
//! ```

pub mod config;
mod error;
pub mod histogram;
mod hparams;
pub mod machine;
pub mod progress;
pub mod proto;
pub mod reader;
pub mod record;
pub mod run_dir;
pub mod runs;
pub mod utc;
mod writer;

pub use error::{Error, Result};
pub use hparams::{
    HParamValue, EXPERIMENT_TAG, PLUGIN_NAME as HPARAMS_PLUGIN_NAME, SESSION_START_INFO_TAG,
};
pub use run_dir::{GitInfo, MachineInfo, RunDir, RunMeta};
pub use writer::{SummaryWriter, FILE_VERSION};

/// Re-exported so callers can build images without naming `image` themselves.
pub use image::RgbImage;
