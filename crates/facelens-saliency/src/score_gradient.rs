//! Score gradient: `mean_c |d cos / dI|` for each image (one backward per image).
//!
//! The naive baseline FGGB improves on. It has no notion of which evidence supports
//! Accept and which Reject, so the same map is returned as similarity and dissimilarity map.

use std::time::Instant;

use crate::engine::{normalised, pull_back_normalisation, GradientEngine};
use crate::reduce::{reduce_channels, ChannelReduction};
use crate::{Decision, Explainer, Explanation, FacePair, Result, SaliencyMaps};

pub struct ScoreGradient;

/// `mean_c |d (F . partner) / dI|` for one image, partner fixed.
pub(crate) fn gradient_map(engine: &dyn GradientEngine, lin: &dyn crate::Linearised, seed_on_f: &[f32]) -> Result<Vec<f32>> {
    let (c, h, w) = engine.input_shape();
    let seed = pull_back_normalisation(lin.embedding(), seed_on_f);
    let grad = lin.vjp(&seed, 1)?;
    let mut map = vec![0f32; h * w];
    reduce_channels(&grad, c, ChannelReduction::MeanAbs, &mut map);
    Ok(map)
}

impl Explainer for ScoreGradient {
    fn name(&self) -> &'static str {
        "score-gradient"
    }

    fn explain(&self, engine: &dyn GradientEngine, pair: FacePair<'_>, threshold: f32) -> Result<Explanation> {
        let t0 = Instant::now();
        let (_, h, w) = engine.input_shape();
        let (lin_a, lin_b) = (engine.linearise(pair.a)?, engine.linearise(pair.b)?);
        let (fa, fb) = (normalised(lin_a.embedding()), normalised(lin_b.embedding()));
        let score: f32 = fa.iter().zip(&fb).map(|(a, b)| a * b).sum();
        let ma = gradient_map(engine, lin_a.as_ref(), &fb)?;
        let mb = gradient_map(engine, lin_b.as_ref(), &fa)?;
        let maps = SaliencyMaps { height: h, width: w, sa_pos: ma.clone(), sa_neg: ma, sb_pos: mb.clone(), sb_neg: mb };
        let mut timings = std::collections::BTreeMap::new();
        timings.insert("total_s".into(), t0.elapsed().as_secs_f64());
        Ok(Explanation { maps, score, threshold, decision: Decision::at(score, threshold), method: self.name().into(), timings })
    }
}
