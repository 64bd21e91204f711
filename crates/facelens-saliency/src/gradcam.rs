//! Grad-CAM with the cosine to the partner as the target.
//!
//! Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
//! Localization" (ICCV 2017); reference implementation pytorch-grad-cam. On the last
//! spatial feature map `A` (7x7 for a 112-px backbone), channel weights are the spatial
//! mean of `d cos(F_A, F_B) / dA_c` (partner fixed), the map is `Σ_c w_c A_c`, upsampled
//! bilinearly to the input. The paper's final ReLU keeps only evidence *for* the target;
//! here the signed map is split instead: the positive part supports Accept (S+), the
//! negative part Reject (S-).
//!
//! Needs intermediate activations, so it runs on the lowered network ([`NetEngine`](crate::NetEngine)) only.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::engine::{pull_back_normalisation, GradientEngine};
use crate::perturb::{dot, explanation, upsample_bilinear};
use crate::{Explainer, Explanation, FacePair, Result, SaliencyError, SaliencyMaps};

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GradCamConfig {
    /// Buffer of the lowered network to explain; `None`: the last one at 1/16 of the input
    /// size (the last 7x7 block for 112-px faces).
    pub layer: Option<usize>,
}

#[derive(Debug, Clone, Default)]
pub struct GradCam {
    pub config: GradCamConfig,
}

impl GradCam {
    pub fn new(config: GradCamConfig) -> Self {
        Self { config }
    }
}

impl Explainer for GradCam {
    fn name(&self) -> &'static str {
        "gradcam"
    }

    fn explain(&self, engine: &dyn GradientEngine, pair: FacePair<'_>, threshold: f32) -> Result<Explanation> {
        let start = Instant::now();
        let net = engine.as_net().ok_or_else(|| {
            SaliencyError::Candle(candle_core::Error::Msg(
                "grad-cam needs intermediate activations, which only the lowered CPU engine (NetEngine) provides; \
                 run it on the CPU"
                    .into(),
            ))
        })?;
        engine.check_image(pair.a)?;
        engine.check_image(pair.b)?;
        let (_, h, w) = engine.input_shape();
        let layer = match self.config.layer {
            Some(l) if l < net.shapes.len() => Some(l),
            Some(_) => None,
            None => net.last_buffer_with_spatial(h / 16, w / 16),
        }
        .filter(|&l| net.shapes[l].plane() > 1)
        .ok_or_else(|| {
            SaliencyError::Candle(candle_core::Error::Msg(format!(
                "grad-cam: no spatial feature map {:?} in the network (buffers: 0..{})",
                self.config.layer.map_or(format!("at {}x{}", h / 16, w / 16), |l| format!("#{l}")),
                net.shapes.len()
            )))
        })?;
        let shape = net.shapes[layer];
        let (tape_a, tape_b) = (net.tape(pair.a), net.tape(pair.b));
        let (fa, fb) = (crate::engine::normalised(tape_a.output()), crate::engine::normalised(tape_b.output()));
        let score = dot(&fa, &fb);
        let cam = |tape: &facelens_models::reverse::Tape, partner: &[f32]| -> Vec<f32> {
            // d cos / d e_raw = pull-back of the partner through the normalisation.
            let seed = pull_back_normalisation(tape.output(), partner);
            let grad = net.vjp_to(tape, &seed, 1, layer);
            let act = net.activation(tape, layer);
            let p = shape.plane();
            let mut map = vec![0f32; p];
            for (g, a) in grad.chunks(p).zip(act.chunks(p)) {
                let weight = g.iter().sum::<f32>() / p as f32;
                map.iter_mut().zip(a).for_each(|(m, v)| *m += weight * v);
            }
            upsample_bilinear(&map, shape.h, shape.w, h, w)
        };
        let sa = cam(&tape_a, &fb);
        let sb = cam(&tape_b, &fa);
        let maps = SaliencyMaps::from_signed(h, w, &sa, &sb);
        Ok(explanation(self.name(), maps, score, threshold, Default::default(), start))
    }
}
