//! Errors for malformed evaluation inputs; each says what was expected and what was found.

/// Result alias used throughout `facelens-eval`.
pub type Result<T, E = EvalError> = std::result::Result<T, E>;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EvalError {
    #[error("no pairs to evaluate")]
    Empty,

    #[error("`{what}` has {got} entries but there are {expected} scores")]
    LengthMismatch {
        what: &'static str,
        expected: usize,
        got: usize,
    },

    #[error("score #{index} is {value}, not a finite number")]
    NonFiniteScore { index: usize, value: f32 },

    #[error(
        "need both genuine and impostor pairs, found {genuine} genuine and {impostor} impostor"
    )]
    MissingClass { genuine: usize, impostor: usize },

    #[error("k-fold evaluation needs at least 2 folds, found {0}")]
    TooFewFolds(usize),

    #[error("target FAR {0} is not within [0, 1]")]
    InvalidFar(f64),

    #[error("curve: {0}")]
    InvalidCurve(String),
}
