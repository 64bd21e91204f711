//! Random maps: the floor every explainer must beat in Deletion/Insertion.
//!
//! The four maps are independent uniform noise in `(0, 1]` from a fixed seed. Every pixel
//! is strictly positive, so a map ranks all pixels (no ties that a stable sort would break
//! by pixel index, which would turn "random" into "top rows first").

use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::engine::GradientEngine;
use crate::perturb::{explanation, pair_embeddings, Rng};
use crate::{Explainer, Explanation, FacePair, Result, SaliencyMaps};

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RandomConfig {
    pub seed: u64,
}

#[derive(Debug, Clone, Default)]
pub struct RandomMaps {
    pub config: RandomConfig,
}

impl RandomMaps {
    pub fn new(config: RandomConfig) -> Self {
        Self { config }
    }
}

impl Explainer for RandomMaps {
    fn name(&self) -> &'static str {
        "random"
    }

    fn explain(&self, engine: &dyn GradientEngine, pair: FacePair<'_>, threshold: f32) -> Result<Explanation> {
        let start = Instant::now();
        let (_, h, w) = engine.input_shape();
        // The score is still real: the panel and the evaluation need the decision.
        let (_, _, score) = pair_embeddings(engine, pair)?;
        let mut rng = Rng::new(self.config.seed);
        let mut noise = || (0..h * w).map(|_| 1.0 - rng.uniform()).collect::<Vec<f32>>();
        let maps =
            SaliencyMaps { height: h, width: w, sa_pos: noise(), sa_neg: noise(), sb_pos: noise(), sb_neg: noise() };
        Ok(explanation(self.name(), maps, score, threshold, Default::default(), start))
    }
}
