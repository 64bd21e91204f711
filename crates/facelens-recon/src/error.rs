//! The one error type of `facelens-recon`.
//!
//! Variants name the file or tensor at fault and say what was expected, so a binary can print
//! them as they are (docs/design.md §12).

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ReconError {
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error(transparent)]
    Model(#[from] facelens_models::ModelError),
    #[error(transparent)]
    Data(#[from] facelens_data::DataError),
    #[error("{}: {action}: {source}", path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not a valid decoder checkpoint: {reason}", path.display())]
    CorruptCheckpoint { path: PathBuf, reason: String },
    #[error("{}: tensor `{name}` is missing", path.display())]
    MissingTensor { path: PathBuf, name: String },
    #[error("{}: tensor `{name}` has shape {got:?}, expected {expected:?}", path.display())]
    WrongShape {
        path: PathBuf,
        name: String,
        expected: Vec<usize>,
        got: Vec<usize>,
    },
    #[error("{}: tensor `{name}` contains {count} non-finite values", path.display())]
    NonFinite {
        path: PathBuf,
        name: String,
        count: usize,
    },
    #[error("{what}: expected shape {expected:?}, got {got:?}")]
    UnexpectedShape {
        what: &'static str,
        expected: Vec<usize>,
        got: Vec<usize>,
    },
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A config file whose values are out of bounds (the key and the bound are in `message`).
    #[error("{}: {message}", path.display())]
    InvalidConfig { path: PathBuf, message: String },
    #[error("batch is for step {got}, the trainer is at step {expected} (data order and checkpoint disagree)")]
    StepMismatch { expected: u64, got: u64 },
    #[error("the data loader stopped: {0}")]
    Loader(String),
    #[error("cannot encode {}: {reason}", path.display())]
    Encode { path: PathBuf, reason: String },
    /// Run directories, TensorBoard events and config overrides (the file is in the message).
    /// Boxed: the board's error is large, and every `Result` of this crate carries the variant.
    #[error(transparent)]
    Board(Box<facelens_board::Error>),
    #[error("reading config {}", path.display())]
    ConfigFile {
        path: PathBuf,
        #[source]
        source: Box<facelens_board::Error>,
    },
    #[error("{} has no {file} to resume from", dir.display())]
    NothingToResume { dir: PathBuf, file: &'static str },
    #[error("{}: not a valid results file: {source}", path.display())]
    Results {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

pub type Result<T> = std::result::Result<T, ReconError>;

impl From<facelens_board::Error> for ReconError {
    fn from(e: facelens_board::Error) -> Self {
        ReconError::Board(Box::new(e))
    }
}

impl ReconError {
    pub(crate) fn io(
        path: impl Into<PathBuf>,
        action: &'static str,
        source: std::io::Error,
    ) -> Self {
        ReconError::Io {
            path: path.into(),
            action,
            source,
        }
    }
}
