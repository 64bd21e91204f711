//! The protocol's typed error: every variant names the file, setting or pair it is about.

use std::path::PathBuf;

/// Errors of the benchmark protocol.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Data(#[from] facelens_data::DataError),
    #[error(transparent)]
    Model(#[from] facelens_models::ModelError),
    #[error(transparent)]
    Saliency(#[from] facelens_saliency::SaliencyError),
    #[error(transparent)]
    Eval(#[from] facelens_eval::EvalError),
    #[error(transparent)]
    Board(#[from] facelens_board::Error),
    #[error(transparent)]
    Recon(#[from] facelens_recon::ReconError),
    /// A config value out of range or inconsistent; `key` is its dotted path.
    #[error("config `{key}`: {reason}")]
    Config { key: String, reason: String },
    #[error("{}: {action}: {source}", path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        source: std::io::Error,
    },
    #[error("{}: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
    /// Shards that do not form one complete run.
    #[error("cannot merge: {0}")]
    Merge(String),
    #[error("`--shard {0}`: expected i/n with 1 <= i <= n (e.g. 2/8)")]
    Shard(String),
    /// What was being done when `source` happened (a pair, a method, a model).
    #[error("{what}: {source}")]
    Context {
        what: String,
        source: Box<Error>,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn config(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Config {
            key: key.into(),
            reason: reason.into(),
        }
    }

    pub fn io(path: impl Into<PathBuf>, action: &'static str, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            action,
            source,
        }
    }

    pub fn invalid(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::Invalid {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

/// Adds what was being done to an error, keeping the typed cause.
pub trait Context<T> {
    fn context_with(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T, E: Into<Error>> Context<T> for std::result::Result<T, E> {
    fn context_with(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::Context {
            what: what(),
            source: Box::new(e.into()),
        })
    }
}
