//! Typed errors for model loading, import and inference.
//!
//! Every variant names the file (or model) it concerns so that a user who passed
//! several paths knows which one is wrong without a backtrace.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a valid safetensors file: {reason}")]
    CorruptSafetensors { path: PathBuf, reason: String },
    #[error("{path}: not a valid ONNX model: {reason}")]
    CorruptOnnx { path: PathBuf, reason: String },
    #[error("{path}: missing tensors: {}", names.join(", "))]
    MissingKeys { path: PathBuf, names: Vec<String> },
    #[error("{path}: unexpected tensors (not part of {arch}): {}", names.join(", "))]
    UnexpectedKeys { path: PathBuf, arch: String, names: Vec<String> },
    #[error("{path}: tensor `{name}` has shape {got:?}, expected {expected:?}")]
    WrongShape { path: PathBuf, name: String, expected: Vec<usize>, got: Vec<usize> },
    #[error("{path}: tensor `{name}` has dtype {got}, expected f32 (or f16/bf16/f64, converted)")]
    WrongDtype { path: PathBuf, name: String, got: String },
    #[error("{path}: tensor `{name}` contains {count} non-finite values (NaN or Inf)")]
    NonFinite { path: PathBuf, name: String, count: usize },
    #[error("{path}: ONNX graph does not match {arch}: {reason}")]
    GraphMismatch { path: PathBuf, arch: String, reason: String },
    #[error("unknown model `{name}`; known models: {}", known.join(", "))]
    UnknownModel { name: String, known: Vec<String> },
    #[error("model `{name}` has no weights at {path}; run scripts/setup.sh or pass --model path/to/file.safetensors")]
    WeightsNotFetched { name: String, path: PathBuf },
    #[error("bad hub reference `{spec}`: {reason} (expected hf:<org>/<repo>[@rev]/<file>)")]
    BadHubSpec { spec: String, reason: String },
    #[error("hub file `{spec}` is not available: {reason}")]
    Hub { spec: String, reason: String },
    #[error("cannot infer the architecture of {path}: {reason}")]
    UnknownArchitecture { path: PathBuf, reason: String },
    #[error("input image has shape {got:?}, the model expects {expected:?}")]
    BadInput { expected: Vec<usize>, got: Vec<usize> },
    #[error("{path}: checksum mismatch: expected sha256 {expected}, got {got}")]
    Checksum { path: PathBuf, expected: String, got: String },
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

pub type Result<T> = std::result::Result<T, ModelError>;

impl ModelError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ModelError::Io { path: path.into(), source }
    }
}
