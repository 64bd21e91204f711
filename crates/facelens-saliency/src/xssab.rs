//! xSSAB: similarity and dissimilarity maps from a split of the embedding dimensions.
//!
//! Huber et al., "Efficient Explainable Face Verification based on Similarity Score
//! Argument Backpropagation" (WACV 2024). Dimensions whose cosine term exceeds its share
//! of the threshold (`w_k >= τ/N`) argue for Accept, the rest for Reject;
//! `s+ = Σ_{k∈P} F_A[k] F_B[k]` and `s-` over the rest, with the partner detached, and each
//! map is `mean_c |ds/dI|`.

use std::time::Instant;

use crate::engine::{normalised, GradientEngine};
use crate::fggb::dimension_weights;
use crate::score_gradient::gradient_map;
use crate::{Decision, Explainer, Explanation, FacePair, Result, SaliencyMaps};

pub struct XSsab;

impl Explainer for XSsab {
    fn name(&self) -> &'static str {
        "xssab"
    }

    fn explain(&self, engine: &dyn GradientEngine, pair: FacePair<'_>, threshold: f32) -> Result<Explanation> {
        let t0 = Instant::now();
        let (_, h, w) = engine.input_shape();
        let (lin_a, lin_b) = (engine.linearise(pair.a)?, engine.linearise(pair.b)?);
        let (fa, fb) = (normalised(lin_a.embedding()), normalised(lin_b.embedding()));
        let weights = dimension_weights(&fa, &fb);
        let score: f32 = weights.iter().sum();
        let share = threshold / weights.len() as f32;
        let positive: Vec<bool> = weights.iter().map(|&wk| wk >= share).collect();
        let masked = |f: &[f32], keep: bool| -> Vec<f32> {
            f.iter().zip(&positive).map(|(v, &p)| if p == keep { *v } else { 0.0 }).collect()
        };
        let maps = SaliencyMaps {
            height: h,
            width: w,
            sa_pos: gradient_map(engine, lin_a.as_ref(), &masked(&fb, true))?,
            sa_neg: gradient_map(engine, lin_a.as_ref(), &masked(&fb, false))?,
            sb_pos: gradient_map(engine, lin_b.as_ref(), &masked(&fa, true))?,
            sb_neg: gradient_map(engine, lin_b.as_ref(), &masked(&fa, false))?,
        };
        let mut timings = std::collections::BTreeMap::new();
        timings.insert("total_s".into(), t0.elapsed().as_secs_f64());
        Ok(Explanation { maps, score, threshold, decision: Decision::at(score, threshold), method: self.name().into(), timings })
    }
}
