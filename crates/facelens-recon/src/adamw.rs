//! AdamW (Loshchilov & Hutter, "Decoupled weight decay regularization", ICLR 2019) with state
//! that can be saved and restored.
//!
//! `candle_nn::AdamW` keeps its moments and step counter private, so a run resumed from a
//! checkpoint would restart the optimizer from zero and diverge from the uninterrupted run.
//! This copy performs exactly the same tensor operations in the same order (its updates are
//! bit-identical to candle's, see `tests/adamw.rs`) and exposes the state as named tensors.

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::error::{ReconError, Result};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// Apply weight decay to 1-D parameters too (biases, norm scales, PReLU slopes). Off by
    /// default, as usual for AdamW; on reproduces `candle_nn::AdamW`, which decays everything.
    pub decay_1d: bool,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
            decay_1d: false,
        }
    }
}

impl AdamWConfig {
    /// `beta1`, `beta2` in [0, 1), `eps` > 0, `weight_decay` >= 0, all finite.
    pub fn validate(&self) -> Result<()> {
        use crate::bounds::{non_negative, real};
        real("train.adamw.beta1", self.beta1, 0.0, false, 1.0, true)?;
        real("train.adamw.beta2", self.beta2, 0.0, false, 1.0, true)?;
        real("train.adamw.eps", self.eps, 0.0, true, 1.0, false)?;
        non_negative("train.adamw.weight_decay", self.weight_decay)
    }
}

#[derive(Debug)]
struct Slot {
    name: String,
    var: Var,
    m: Var,
    v: Var,
    decay: bool,
}

#[derive(Debug)]
pub struct AdamW {
    slots: Vec<Slot>,
    step_t: u64,
    config: AdamWConfig,
}

/// Prefixes of the optimizer's tensors in a checkpoint.
pub const FIRST_MOMENT_PREFIX: &str = "adamw.m.";
pub const SECOND_MOMENT_PREFIX: &str = "adamw.v.";

impl AdamW {
    /// `params`: the trainable variables by name (never BatchNorm running statistics).
    pub fn new(params: Vec<(String, Var)>, config: AdamWConfig) -> Result<Self> {
        let slots = params
            .into_iter()
            .map(|(name, var)| {
                let m = Var::zeros(var.shape(), var.dtype(), var.device())?;
                let v = Var::zeros(var.shape(), var.dtype(), var.device())?;
                let decay = config.decay_1d || var.rank() > 1;
                Ok(Slot {
                    name,
                    var,
                    m,
                    v,
                    decay,
                })
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self {
            slots,
            step_t: 0,
            config,
        })
    }

    pub fn config(&self) -> &AdamWConfig {
        &self.config
    }

    /// Number of updates applied so far (drives the bias correction).
    pub fn step_count(&self) -> u64 {
        self.step_t
    }

    /// The variables being optimised, by name.
    pub fn params(&self) -> impl Iterator<Item = (&str, &Var)> {
        self.slots.iter().map(|s| (s.name.as_str(), &s.var))
    }

    /// One update with learning rate `lr`; every gradient is multiplied by `grad_scale` first
    /// (global-norm clipping). `grad_scale == 1` performs exactly candle's operations.
    pub fn step(&mut self, grads: &GradStore, lr: f64, grad_scale: f64) -> Result<()> {
        self.step_t += 1;
        let (beta1, beta2) = (self.config.beta1, self.config.beta2);
        let scale_m = 1f64 / (1f64 - beta1.powi(self.step_t as i32));
        let scale_v = 1f64 / (1f64 - beta2.powi(self.step_t as i32));
        for slot in &self.slots {
            let Some(g) = grads.get(&slot.var) else {
                continue;
            };
            let g = if grad_scale != 1.0 {
                (g * grad_scale)?
            } else {
                g.clone()
            };
            let lr_lambda = if slot.decay {
                lr * self.config.weight_decay
            } else {
                0.0
            };
            let next_m = ((slot.m.as_tensor() * beta1)? + (&g * (1.0 - beta1))?)?;
            let next_v = ((slot.v.as_tensor() * beta2)? + (g.sqr()? * (1.0 - beta2))?)?;
            let m_hat = (&next_m * scale_m)?;
            let v_hat = (&next_v * scale_v)?;
            let next_theta = (slot.var.as_tensor() * (1f64 - lr_lambda))?;
            let adjusted = (m_hat / (v_hat.sqrt()? + self.config.eps)?)?;
            let next_theta = (next_theta - (adjusted * lr)?)?;
            slot.m.set(&next_m)?;
            slot.v.set(&next_v)?;
            slot.var.set(&next_theta)?;
        }
        Ok(())
    }

    /// The moments as named tensors (`adamw.m.<param>`, `adamw.v.<param>`), deep copies.
    pub fn state_tensors(&self) -> Result<Vec<(String, Tensor)>> {
        let mut out = Vec::with_capacity(2 * self.slots.len());
        for s in &self.slots {
            out.push((
                format!("{FIRST_MOMENT_PREFIX}{}", s.name),
                s.m.as_tensor().copy()?,
            ));
            out.push((
                format!("{SECOND_MOMENT_PREFIX}{}", s.name),
                s.v.as_tensor().copy()?,
            ));
        }
        Ok(out)
    }

    /// Restores the moments and the step counter; every parameter's moments must be present
    /// with the parameter's shape.
    pub fn load_state(&mut self, tensors: &HashMap<String, Tensor>, step_t: u64) -> Result<()> {
        for s in &self.slots {
            for (prefix, var) in [(FIRST_MOMENT_PREFIX, &s.m), (SECOND_MOMENT_PREFIX, &s.v)] {
                let key = format!("{prefix}{}", s.name);
                let t = tensors
                    .get(&key)
                    .ok_or_else(|| ReconError::Config(format!("optimizer state lacks `{key}`")))?;
                if t.dims() != var.dims() {
                    return Err(ReconError::UnexpectedShape {
                        what: "optimizer moment",
                        expected: var.dims().to_vec(),
                        got: t.dims().to_vec(),
                    });
                }
                var.set(&t.to_device(var.device())?.to_dtype(var.dtype())?)?;
            }
        }
        self.step_t = step_t;
        Ok(())
    }
}

/// `sqrt(sum over params of ||g||^2)` of the gradients present in `grads`.
pub fn global_grad_norm<'a>(
    grads: &GradStore,
    params: impl Iterator<Item = &'a Var>,
) -> Result<f64> {
    let mut total = 0f64;
    for p in params {
        if let Some(g) = grads.get(p) {
            total += crate::losses::scalar(&g.sqr()?.sum_all()?);
        }
    }
    Ok(total.sqrt())
}
