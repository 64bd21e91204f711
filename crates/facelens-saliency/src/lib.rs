//! Explaining face-verification decisions.
//!
//! Every method implements [`Explainer`]: given a gradient engine over a frozen backbone,
//! an aligned pair and a cosine threshold, it returns similarity maps (what supports
//! *Accept*) and dissimilarity maps (what supports *Reject*) for both faces. Methods share
//! the Jacobian machinery in [`engine`]; each lives in its own file.

pub mod blur;
pub mod corrrise;
pub mod engine;
pub mod fggb;
pub mod gradcam;
pub mod lime;
pub mod perturb;
pub mod random;
pub mod reduce;
pub mod render;
pub mod rise;
pub mod score_gradient;
pub mod xssab;

use std::collections::BTreeMap;

use serde::Serialize;

pub use engine::{engine_for, engine_for_net, engine_of, AutogradEngine, EngineKind, GradientEngine, Linearised, NetEngine, TensorEngine};
pub use fggb::{Fggb, FggbConfig, FggbVariant};

#[derive(Debug, thiserror::Error)]
pub enum SaliencyError {
    #[error(transparent)]
    Model(#[from] facelens_models::ModelError),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error("image has {got} values, the model expects {expected} (3 x {size} x {size})")]
    BadImage { expected: usize, got: usize, size: usize },
    #[error("unknown explainer `{0}`; known: {1}")]
    UnknownMethod(String, String),
    #[error("rows per pass = {rows} (--rows): must be in 1..={max}")]
    RowsOutOfRange { rows: usize, max: usize },
}

pub type Result<T> = std::result::Result<T, SaliencyError>;

/// The verification decision at threshold τ: accept when `cos >= τ`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Accept,
    Reject,
}

impl Decision {
    pub fn at(score: f32, threshold: f32) -> Self {
        if score >= threshold {
            Decision::Accept
        } else {
            Decision::Reject
        }
    }
}

/// Four non-negative maps at input resolution, row-major `height * width`.
#[derive(Debug, Clone, PartialEq)]
pub struct SaliencyMaps {
    pub height: usize,
    pub width: usize,
    /// Similarity map of image A (supports Accept).
    pub sa_pos: Vec<f32>,
    /// Dissimilarity map of image A (supports Reject).
    pub sa_neg: Vec<f32>,
    pub sb_pos: Vec<f32>,
    pub sb_neg: Vec<f32>,
}

impl SaliencyMaps {
    /// Splits signed maps into their positive and negative parts.
    pub fn from_signed(height: usize, width: usize, sa: &[f32], sb: &[f32]) -> Self {
        let pos = |s: &[f32]| s.iter().map(|v| v.max(0.0)).collect();
        let neg = |s: &[f32]| s.iter().map(|v| (-v).max(0.0)).collect();
        Self { height, width, sa_pos: pos(sa), sa_neg: neg(sa), sb_pos: pos(sb), sb_neg: neg(sb) }
    }

    pub fn named(&self) -> [(&'static str, &Vec<f32>); 4] {
        [("sa_pos", &self.sa_pos), ("sa_neg", &self.sa_neg), ("sb_pos", &self.sb_pos), ("sb_neg", &self.sb_neg)]
    }
}

/// What an explainer returns.
#[derive(Debug, Clone)]
pub struct Explanation {
    pub maps: SaliencyMaps,
    /// Cosine similarity of the two embeddings.
    pub score: f32,
    pub threshold: f32,
    pub decision: Decision,
    pub method: String,
    /// Wall-clock seconds per phase.
    pub timings: BTreeMap<String, f64>,
}

/// An aligned pair, each image normalised CHW as the backbone expects.
#[derive(Debug, Clone, Copy)]
pub struct FacePair<'a> {
    pub a: &'a [f32],
    pub b: &'a [f32],
}

pub trait Explainer {
    fn name(&self) -> &'static str;
    fn explain(&self, engine: &dyn GradientEngine, pair: FacePair<'_>, threshold: f32) -> Result<Explanation>;
}

/// Explainers by name, for the CLI and experiments.
pub fn by_name(name: &str) -> Result<Box<dyn Explainer>> {
    Ok(match name {
        "fggb" => Box::new(Fggb::default()),
        "score-gradient" => Box::new(score_gradient::ScoreGradient),
        "xssab" => Box::new(xssab::XSsab),
        "random" => Box::new(random::RandomMaps::default()),
        "corrrise" => Box::new(corrrise::CorrRise::default()),
        "rise" => Box::new(rise::Rise::default()),
        "lime" => Box::new(lime::Lime::default()),
        "gradcam" => Box::new(gradcam::GradCam::default()),
        other => {
            return Err(SaliencyError::UnknownMethod(other.into(), METHODS.join(", ")));
        }
    })
}

pub const METHODS: &[&str] = &["fggb", "score-gradient", "xssab", "random", "corrrise", "rise", "lime", "gradcam"];
