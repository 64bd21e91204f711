//! FGGB: Feature-Guided Gradient Backpropagation.
//!
//! Lu, Xu & Ebrahimi, "Explainable Face Verification via Feature-Guided Gradient
//! Backpropagation" (FG 2024, arXiv:2403.04549).
//! Each embedding dimension k gets its own input-gradient map `G^k` (normalised to unit
//! L2 norm, so strong and weak dimensions speak equally), and the maps are combined with
//! the dimension's contribution to the cosine, shifted by the threshold:
//! `v_k = F_A[k] F_B[k] - τ/N`, so `Σ v_k = cos - τ`. The positive part of
//! `S = Σ_k v_k G^k` explains Accept, the negative part explains Reject.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::engine::{jacobian_passes, normalised, GradientEngine};
use crate::reduce::{l2_normalise_map, reduce_channels, ChannelReduction};
use crate::{blur, Decision, Explainer, Explanation, FacePair, Result, SaliencyMaps};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FggbConfig {
    /// Differentiate the L2-normalised embedding (as specified) or the raw one.
    pub normalised_embedding: bool,
    pub channel_reduction: ChannelReduction,
    /// Normalise each dimension's map to unit L2 norm before weighting.
    pub per_dimension_norm: bool,
    /// Smooth the returned maps (kernel 25, sigma 5).
    pub blur: bool,
}

impl Default for FggbConfig {
    fn default() -> Self {
        Self {
            normalised_embedding: true,
            channel_reduction: ChannelReduction::MeanAbs,
            per_dimension_norm: true,
            blur: false,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Fggb {
    pub config: FggbConfig,
}

impl Fggb {
    pub fn new(config: FggbConfig) -> Self {
        Self { config }
    }

    /// Signed map `S = Σ_k v_k G^k` of one image.
    pub fn signed_map(&self, engine: &dyn GradientEngine, image: &[f32], v: &[f32]) -> Result<Vec<f32>> {
        let lin = engine.linearise(image)?;
        self.signed_map_linearised(engine, lin.as_ref(), v)
    }

    fn signed_map_linearised(
        &self,
        engine: &dyn GradientEngine,
        lin: &dyn crate::Linearised,
        v: &[f32],
    ) -> Result<Vec<f32>> {
        let (c, h, w) = engine.input_shape();
        let p = h * w;
        let mut s = vec![0f32; p];
        let mut g = vec![0f32; p];
        let cfg = &self.config;
        jacobian_passes(lin, cfg.normalised_embedding, engine.rows_per_pass(), |k0, rows, grads| {
            for r in 0..rows {
                reduce_channels(&grads[r * c * p..(r + 1) * c * p], c, cfg.channel_reduction, &mut g);
                if cfg.per_dimension_norm {
                    l2_normalise_map(&mut g);
                }
                let vk = v[k0 + r];
                s.iter_mut().zip(&g).for_each(|(acc, gv)| *acc += vk * gv);
            }
        })?;
        Ok(s)
    }
}

/// `w_k = F_A[k] F_B[k]`: the per-dimension terms of the cosine.
pub fn dimension_weights(fa: &[f32], fb: &[f32]) -> Vec<f32> {
    fa.iter().zip(fb).map(|(a, b)| a * b).collect()
}

/// `v_k = w_k - τ/N`.
pub fn shifted_weights(w: &[f32], threshold: f32) -> Vec<f32> {
    let shift = threshold / w.len() as f32;
    w.iter().map(|x| x - shift).collect()
}

impl Explainer for Fggb {
    fn name(&self) -> &'static str {
        "fggb"
    }

    fn explain(&self, engine: &dyn GradientEngine, pair: FacePair<'_>, threshold: f32) -> Result<Explanation> {
        let (_, h, w) = engine.input_shape();
        let mut timings = std::collections::BTreeMap::new();
        let t0 = Instant::now();
        let lin_a = engine.linearise(pair.a)?;
        let lin_b = engine.linearise(pair.b)?;
        let (fa, fb) = (normalised(lin_a.embedding()), normalised(lin_b.embedding()));
        let weights = dimension_weights(&fa, &fb);
        let score: f32 = weights.iter().sum();
        let v = shifted_weights(&weights, threshold);
        timings.insert("forward_s".into(), t0.elapsed().as_secs_f64());
        let t1 = Instant::now();
        let sa = self.signed_map_linearised(engine, lin_a.as_ref(), &v)?;
        timings.insert("jacobian_a_s".into(), t1.elapsed().as_secs_f64());
        let t2 = Instant::now();
        let sb = self.signed_map_linearised(engine, lin_b.as_ref(), &v)?;
        timings.insert("jacobian_b_s".into(), t2.elapsed().as_secs_f64());
        let mut maps = SaliencyMaps::from_signed(h, w, &sa, &sb);
        if self.config.blur {
            for m in [&mut maps.sa_pos, &mut maps.sa_neg, &mut maps.sb_pos, &mut maps.sb_neg] {
                *m = blur::display_blur(m, h, w);
            }
        }
        timings.insert("total_s".into(), t0.elapsed().as_secs_f64());
        Ok(Explanation {
            maps,
            score,
            threshold,
            decision: Decision::at(score, threshold),
            method: self.name().into(),
            timings,
        })
    }
}
