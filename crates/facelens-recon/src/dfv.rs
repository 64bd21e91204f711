//! DFV: decoder feature visualisation as a verification explainer (docs/design.md §7).
//!
//! FGGB weights per-dimension input-gradient maps; DFV weights per-dimension *decoder* maps
//! instead: `S_A = sum_k v_k R_A^k` with FGGB's `v_k = F_A[k] F_B[k] - tau/N` and `R_A^k` the
//! region map of dimension `k` for A's embedding ([`crate::probe`]); the positive part explains
//! Accept, the negative part Reject. It needs no input gradients, only `N + 1` decoder passes
//! per image, and lives here (not in facelens-saliency) because it needs the decoder, while
//! implementing [`facelens_saliency::Explainer`] so the Deletion/Insertion protocol treats it like
//! any other method.

use std::collections::BTreeMap;
use std::time::Instant;

use candle_core::Device;
use facelens_saliency::engine::normalised;
use facelens_saliency::fggb::{dimension_weights, shifted_weights};
use facelens_saliency::{
    Decision, Explainer, Explanation, FacePair, GradientEngine, SaliencyError, SaliencyMaps,
};

use crate::decoder::{Decoder, OUTPUT_SIDE};
use crate::error::ReconError;
use crate::probe::region_maps;

pub struct Dfv {
    decoder: Decoder,
    device: Device,
    /// Perturbed embeddings decoded per forward pass.
    pub batch: usize,
}

impl Dfv {
    /// `device` is where the decoder's weights live.
    pub fn new(decoder: Decoder, device: Device) -> Self {
        Self {
            decoder,
            device,
            batch: 64,
        }
    }

    /// The signed map `S = sum_k v_k R^k` of the face with normalised embedding `f`.
    pub fn signed_map(&self, f: &[f32], v: &[f32]) -> Result<Vec<f32>, ReconError> {
        let maps = region_maps(&self.decoder, f, self.batch, &self.device)?;
        let mut s = vec![0f32; OUTPUT_SIDE * OUTPUT_SIDE];
        for (m, vk) in maps.iter().zip(v) {
            s.iter_mut().zip(m).for_each(|(acc, r)| *acc += vk * r);
        }
        Ok(s)
    }
}

fn to_saliency(e: ReconError) -> SaliencyError {
    match e {
        ReconError::Candle(c) => SaliencyError::Candle(c),
        ReconError::Model(m) => SaliencyError::Model(m),
        other => SaliencyError::Candle(candle_core::Error::Msg(format!("dfv: {other}"))),
    }
}

impl Explainer for Dfv {
    fn name(&self) -> &'static str {
        "dfv"
    }

    fn explain(
        &self,
        engine: &dyn GradientEngine,
        pair: FacePair<'_>,
        threshold: f32,
    ) -> facelens_saliency::Result<Explanation> {
        let (_, h, w) = engine.input_shape();
        let n = engine.embedding_dim();
        if n != self.decoder.config().embedding_dim || h != OUTPUT_SIDE || w != OUTPUT_SIDE {
            return Err(to_saliency(ReconError::Config(format!(
                "the decoder maps {} dimensions to {OUTPUT_SIDE}x{OUTPUT_SIDE}; the model has {n} dimensions and {h}x{w} inputs",
                self.decoder.config().embedding_dim
            ))));
        }
        engine.check_image(pair.a)?;
        engine.check_image(pair.b)?;
        let mut timings = BTreeMap::new();
        let t0 = Instant::now();
        let fa = normalised(&engine.embed(pair.a, 1)?);
        let fb = normalised(&engine.embed(pair.b, 1)?);
        let weights = dimension_weights(&fa, &fb);
        let score: f32 = weights.iter().sum();
        let v = shifted_weights(&weights, threshold);
        timings.insert("forward_s".into(), t0.elapsed().as_secs_f64());
        let t1 = Instant::now();
        let sa = self.signed_map(&fa, &v).map_err(to_saliency)?;
        let sb = self.signed_map(&fb, &v).map_err(to_saliency)?;
        timings.insert("decoder_s".into(), t1.elapsed().as_secs_f64());
        timings.insert("total_s".into(), t0.elapsed().as_secs_f64());
        Ok(Explanation {
            maps: SaliencyMaps::from_signed(h, w, &sa, &sb),
            score,
            threshold,
            decision: Decision::at(score, threshold),
            method: self.name().into(),
            timings,
        })
    }
}
