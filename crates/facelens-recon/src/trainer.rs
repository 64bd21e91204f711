//! The decoder's training loop, one step at a time.
//!
//! The [`Trainer`] owns the decoder, its AdamW state, the RNG and the step counter, and can
//! write all of it to a [`Checkpoint`] and continue from one so that the resumed run's losses
//! equal the uninterrupted run's bit for bit (the data order is a pure function of seed and step,
//! see [`crate::data::BatchPlan`]). The loop around it (data loading, logging, when to
//! checkpoint, Ctrl-C) belongs to the caller; the trainer never prints.
//!
//! A step whose loss or gradient norm is NaN/Inf changes nothing (BatchNorm statistics updated
//! by its forward pass are put back) and is reported as skipped; after `nan_patience`
//! consecutive failures the trainer restores the last good state — the last checkpoint it wrote,
//! or its initial state — and halves the learning rate. The step counter keeps advancing, so the
//! run moves past the batches that failed.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor, Var};
use candle_nn::VarMap;
use serde::{Deserialize, Serialize};

use crate::adamw::{global_grad_norm, AdamW, AdamWConfig};
use crate::checkpoint::{Checkpoint, CheckpointMeta, FORMAT_VERSION, MODEL_PREFIX};
use crate::data::Batch;
use crate::decoder::{build_seeded, is_buffer, Decoder, DecoderConfig, OUTPUT_SIDE};
use crate::error::{ReconError, Result};
use crate::losses::{decoder_loss, FrozenBackbone, LossConfig};
use facelens_core::rng::Xoshiro256;
use crate::schedule::CosineSchedule;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Total optimisation steps (also the length of the cosine schedule).
    pub steps: u64,
    pub batch_size: usize,
    pub lr: f64,
    pub min_lr: f64,
    pub warmup_steps: u64,
    pub adamw: AdamWConfig,
    /// Clip the global gradient norm to this value (0 = off).
    pub clip_grad_norm: f64,
    /// Seeds weight init, the data order and the trainer's RNG.
    pub seed: u64,
    /// Std of Gaussian noise added to the (unit) input embedding; 0 = off. A mild regulariser.
    pub embedding_noise: f64,
    /// Consecutive NaN/Inf steps tolerated before restoring the last good state.
    pub nan_patience: u32,
    /// Testing knob: steps whose loss is replaced by NaN.
    pub debug_nan_steps: Vec<u64>,
    /// A decoder file or training checkpoint whose weights start a fresh run (the optimizer
    /// and schedule start afresh); its layers must be this run's. "" = seeded initialisation.
    pub init_from: String,
    pub loss: LossConfig,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            steps: 20_000,
            batch_size: 64,
            lr: 1e-3,
            min_lr: 1e-5,
            warmup_steps: 500,
            adamw: AdamWConfig::default(),
            clip_grad_norm: 5.0,
            seed: 0,
            embedding_noise: 0.0,
            nan_patience: 3,
            debug_nan_steps: Vec::new(),
            init_from: String::new(),
            loss: LossConfig::default(),
        }
    }
}

/// Largest `train.batch_size`.
pub const MAX_BATCH_SIZE: usize = 4096;
/// Largest `train.steps`.
pub const MAX_STEPS: u64 = 100_000_000;

impl TrainConfig {
    /// Checks every value against its bound (key and bound in the message).
    pub fn validate(&self) -> Result<()> {
        use crate::bounds::{count, non_negative, real};
        count("train.steps", self.steps, 1, MAX_STEPS)?;
        count("train.batch_size", self.batch_size, 1, MAX_BATCH_SIZE)?;
        count("train.warmup_steps", self.warmup_steps, 0, MAX_STEPS)?;
        real("train.lr", self.lr, 0.0, true, 1.0, false)?;
        real("train.min_lr", self.min_lr, 0.0, false, self.lr, false)?;
        non_negative("train.clip_grad_norm", self.clip_grad_norm)?;
        non_negative("train.embedding_noise", self.embedding_noise)?;
        count("train.nan_patience", self.nan_patience, 1, 1000)?;
        self.adamw.validate()?;
        let l = &self.loss;
        for (key, v) in [
            ("train.loss.pixel", l.pixel),
            ("train.loss.identity", l.identity),
            ("train.loss.ssim", l.ssim),
            ("train.loss.perceptual", l.perceptual),
            ("train.loss.tv", l.tv),
        ] {
            non_negative(key, v)?;
        }
        if l.pixel + l.identity + l.ssim + l.perceptual == 0.0 {
            return Err(ReconError::Config(
                "train.loss.pixel, train.loss.identity, train.loss.ssim and train.loss.perceptual are all 0: nothing to train".into(),
            ));
        }
        Ok(())
    }

    pub fn schedule(&self) -> CosineSchedule {
        CosineSchedule {
            base_lr: self.lr,
            min_lr: self.min_lr,
            warmup_steps: self.warmup_steps,
            total_steps: self.steps,
        }
    }
}

/// What happened to the parameters in a step.
#[derive(Debug, Clone, PartialEq)]
pub enum StepOutcome {
    Updated,
    /// Nothing changed; `reason` says which value was not finite.
    Skipped {
        reason: String,
    },
    /// This step failed too and the last good state was restored with the learning rate scaled.
    Recovered {
        reason: String,
        lr_scale: f64,
    },
}

#[derive(Debug, Clone)]
pub struct StepReport {
    pub step: u64,
    pub lr: f64,
    pub loss: f64,
    pub pixel: Option<f64>,
    pub identity: Option<f64>,
    pub ssim: Option<f64>,
    pub perceptual: Option<f64>,
    pub tv: Option<f64>,
    pub grad_norm: Option<f64>,
    pub clipped: bool,
    pub outcome: StepOutcome,
    /// At most ~1M gradient values (evenly strided), when asked for (histograms).
    pub grad_sample: Option<Vec<f32>>,
}

/// A deep copy of the model and optimizer state.
#[derive(Debug, Clone)]
struct Snapshot {
    tensors: HashMap<String, Tensor>,
    optimizer_step: u64,
}

pub struct Trainer {
    config: TrainConfig,
    decoder_config: DecoderConfig,
    decoder: Decoder,
    varmap: VarMap,
    /// Every decoder variable by name (parameters and BatchNorm buffers), sorted.
    vars: Vec<(String, Var)>,
    opt: AdamW,
    backbone: Option<FrozenBackbone>,
    rng: Xoshiro256,
    step: u64,
    lr_scale: f64,
    nan_streak: u32,
    good: Snapshot,
    device: Device,
}

fn sorted_vars(varmap: &VarMap) -> Result<Vec<(String, Var)>> {
    let data = varmap
        .data()
        .lock()
        .map_err(|_| ReconError::Config("variable map lock poisoned".into()))?;
    let mut vars: Vec<(String, Var)> = data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(vars)
}

impl Trainer {
    /// A fresh run. `backbone` is required when the identity loss is on.
    pub fn new(
        decoder_config: DecoderConfig,
        config: TrainConfig,
        backbone: Option<FrozenBackbone>,
        device: &Device,
    ) -> Result<Self> {
        decoder_config.validate()?;
        config.validate()?;
        if (config.loss.identity != 0.0 || config.loss.perceptual != 0.0) && backbone.is_none() {
            return Err(ReconError::Config(
                "train.loss.identity > 0 and train.loss.perceptual > 0 need a backbone".into(),
            ));
        }
        if let Some(bb) = &backbone {
            if bb.embedding_dim() != decoder_config.embedding_dim {
                return Err(ReconError::Config(format!(
                    "the backbone embeds into {} dimensions, the decoder expects {}",
                    bb.embedding_dim(),
                    decoder_config.embedding_dim
                )));
            }
        }
        let (decoder, varmap) = build_seeded(&decoder_config, config.seed, device)?;
        let vars = sorted_vars(&varmap)?;
        let params = vars
            .iter()
            .filter(|(n, _)| !is_buffer(n))
            .cloned()
            .collect();
        let opt = AdamW::new(params, config.adamw.clone())?;
        let mut t = Self {
            rng: Xoshiro256::stream(config.seed, 0xE4B),
            config,
            decoder_config,
            decoder,
            varmap,
            vars,
            opt,
            backbone,
            step: 0,
            lr_scale: 1.0,
            nan_streak: 0,
            good: Snapshot {
                tensors: HashMap::new(),
                optimizer_step: 0,
            },
            device: device.clone(),
        };
        t.good = t.snapshot()?;
        Ok(t)
    }

    /// Continues the run saved in `path` (configs come from the checkpoint).
    pub fn resume(path: &Path, backbone: Option<FrozenBackbone>, device: &Device) -> Result<Self> {
        let ck = Checkpoint::load(path, device)?;
        let config: TrainConfig = serde_json::from_value(ck.meta.train.clone()).map_err(|e| {
            ReconError::CorruptCheckpoint {
                path: path.into(),
                reason: format!("bad train config: {e}"),
            }
        })?;
        let mut t = Self::new(ck.meta.decoder.clone(), config, backbone, device)?;
        let snap = Snapshot {
            tensors: ck.tensors,
            optimizer_step: ck.meta.optimizer_step,
        };
        t.restore(&snap)
            .map_err(|e| ReconError::CorruptCheckpoint {
                path: path.into(),
                reason: e.to_string(),
            })?;
        t.step = ck.meta.step;
        t.rng = Xoshiro256::from_state(ck.meta.rng);
        t.lr_scale = ck.meta.lr_scale;
        t.nan_streak = ck.meta.nan_streak;
        t.good = snap;
        Ok(t)
    }

    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    pub fn decoder_config(&self) -> &DecoderConfig {
        &self.decoder_config
    }

    /// The decoder being trained (shares its variables with the trainer).
    pub fn decoder(&self) -> &Decoder {
        &self.decoder
    }

    pub fn varmap(&self) -> &VarMap {
        &self.varmap
    }

    /// Steps completed; the batch passed to the next [`step`](Self::step) must be for this step.
    pub fn step_index(&self) -> u64 {
        self.step
    }

    pub fn lr_scale(&self) -> f64 {
        self.lr_scale
    }

    pub fn optimizer(&self) -> &AdamW {
        &self.opt
    }

    /// Learning rate of the next step.
    pub fn current_lr(&self) -> f64 {
        self.config.schedule().lr(self.step) * self.lr_scale
    }

    fn snapshot(&self) -> Result<Snapshot> {
        let mut tensors = HashMap::new();
        for (name, var) in &self.vars {
            tensors.insert(format!("{MODEL_PREFIX}{name}"), var.as_tensor().copy()?);
        }
        tensors.extend(self.opt.state_tensors()?);
        Ok(Snapshot {
            tensors,
            optimizer_step: self.opt.step_count(),
        })
    }

    fn restore(&mut self, snap: &Snapshot) -> Result<()> {
        for (name, var) in &self.vars {
            let key = format!("{MODEL_PREFIX}{name}");
            let t = snap
                .tensors
                .get(&key)
                .ok_or_else(|| ReconError::Config(format!("state lacks `{key}`")))?;
            if t.dims() != var.dims() {
                return Err(ReconError::UnexpectedShape {
                    what: "decoder variable",
                    expected: var.dims().to_vec(),
                    got: t.dims().to_vec(),
                });
            }
            var.set(&t.to_device(&self.device)?)?;
        }
        self.opt.load_state(&snap.tensors, snap.optimizer_step)
    }

    /// Replaces the decoder's weights and BatchNorm statistics by those saved in `path` (see
    /// [`TrainConfig::init_from`]); the optimizer state is untouched. Every variable must be
    /// present with its shape, and nothing else.
    pub fn load_weights(&mut self, path: &Path) -> Result<()> {
        let (_, tensors) = crate::checkpoint::decoder_weights(path, &self.device)?;
        let layout: HashMap<String, Vec<usize>> = self.vars.iter().map(|(n, v)| (n.clone(), v.dims().to_vec())).collect();
        crate::checkpoint::check_layout(path, &layout, &tensors)?;
        for (name, var) in &self.vars {
            var.set(&tensors[name].to_dtype(var.dtype())?.to_device(&self.device)?)?;
        }
        self.good = self.snapshot()?;
        Ok(())
    }

    /// Writes a checkpoint atomically; it becomes the state NaN recovery returns to.
    pub fn save_checkpoint(&mut self, path: &Path) -> Result<()> {
        let snap = self.snapshot()?;
        let meta = CheckpointMeta {
            format: FORMAT_VERSION,
            step: self.step,
            optimizer_step: snap.optimizer_step,
            rng: self.rng.state(),
            lr_scale: self.lr_scale,
            nan_streak: self.nan_streak,
            decoder: self.decoder_config.clone(),
            train: serde_json::to_value(&self.config).map_err(|e| ReconError::Encode {
                path: path.into(),
                reason: e.to_string(),
            })?,
        };
        let mut tensors: Vec<(String, Tensor)> = snap
            .tensors
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        tensors.sort_by(|a, b| a.0.cmp(&b.0));
        Checkpoint::save(path, &meta, &tensors)?;
        self.good = snap;
        Ok(())
    }

    /// The decoder's variables (parameters and buffers) by name, deep copies.
    pub fn decoder_tensors(&self) -> Result<Vec<(String, Tensor)>> {
        self.vars
            .iter()
            .map(|(n, v)| Ok((n.clone(), v.as_tensor().copy()?)))
            .collect()
    }

    /// One optimisation step on `batch`, which must be the batch of step [`step_index`](Self::step_index).
    pub fn step(&mut self, batch: &Batch, collect_grads: bool) -> Result<StepReport> {
        if batch.step != self.step {
            return Err(ReconError::StepMismatch {
                expected: self.step,
                got: batch.step,
            });
        }
        let n = batch.len();
        let s = OUTPUT_SIDE;
        let dev = &self.device;
        let x = Tensor::from_slice(&batch.images, (n, 3, s, s), dev)?;
        let mask = Tensor::from_slice(&batch.masks, (n, 1, s, s), dev)?;
        let z = Tensor::from_slice(&batch.embeddings, (n, batch.dim), dev)?;
        let z_in = if self.config.embedding_noise > 0.0 {
            let noise: Vec<f32> = (0..n * batch.dim)
                .map(|_| (self.rng.normal() * self.config.embedding_noise) as f32)
                .collect();
            (&z + Tensor::from_vec(noise, (n, batch.dim), dev)?)?
        } else {
            z.clone()
        };
        let lr = self.current_lr();
        let buffers: Vec<(Var, Tensor)> = self
            .vars
            .iter()
            .filter(|(name, _)| is_buffer(name))
            .map(|(_, v)| Ok((v.clone(), v.as_tensor().copy()?)))
            .collect::<Result<_>>()?;
        let x_hat = self.decoder.forward_t(&z_in, true)?;
        let terms = decoder_loss(
            &self.config.loss,
            &x_hat,
            &x,
            &mask,
            &z,
            self.backbone.as_ref(),
        )?;
        let mut report = StepReport {
            step: self.step,
            lr,
            loss: terms.total,
            pixel: terms.pixel,
            identity: terms.identity,
            ssim: terms.ssim,
            perceptual: terms.perceptual,
            tv: terms.tv,
            grad_norm: None,
            clipped: false,
            outcome: StepOutcome::Updated,
            grad_sample: None,
        };
        if self.config.debug_nan_steps.contains(&self.step) {
            report.loss = f64::NAN;
        }
        if !report.loss.is_finite() {
            report.outcome = self.fail(&buffers, format!("loss is {}", report.loss))?;
            return Ok(report);
        }
        let grads = terms.objective.backward()?;
        let norm = global_grad_norm(&grads, self.opt.params().map(|(_, v)| v))?;
        report.grad_norm = Some(norm);
        if !norm.is_finite() {
            report.outcome = self.fail(&buffers, format!("gradient norm is {norm}"))?;
            return Ok(report);
        }
        let clip = self.config.clip_grad_norm;
        let coef = if clip > 0.0 && norm > clip {
            clip / (norm + 1e-6)
        } else {
            1.0
        };
        report.clipped = coef < 1.0;
        if collect_grads {
            report.grad_sample = Some(self.grad_sample(&grads)?);
        }
        self.opt.step(&grads, lr, coef)?;
        self.nan_streak = 0;
        self.step += 1;
        Ok(report)
    }

    fn fail(&mut self, buffers: &[(Var, Tensor)], reason: String) -> Result<StepOutcome> {
        for (var, saved) in buffers {
            var.set(saved)?;
        }
        self.step += 1;
        self.nan_streak += 1;
        if self.nan_streak >= self.config.nan_patience.max(1) {
            let good = self.good.clone();
            self.restore(&good)?;
            self.lr_scale *= 0.5;
            self.nan_streak = 0;
            return Ok(StepOutcome::Recovered {
                reason,
                lr_scale: self.lr_scale,
            });
        }
        Ok(StepOutcome::Skipped { reason })
    }

    fn grad_sample(&self, grads: &candle_core::backprop::GradStore) -> Result<Vec<f32>> {
        let total: usize = self.opt.params().map(|(_, v)| v.elem_count()).sum();
        let stride = total.div_ceil(1 << 20).max(1);
        let mut out = Vec::new();
        for (_, v) in self.opt.params() {
            if let Some(g) = grads.get(v) {
                let vals: Vec<f32> = g.flatten_all()?.to_device(&Device::Cpu)?.to_vec1()?;
                out.extend(vals.into_iter().step_by(stride));
            }
        }
        Ok(out)
    }
}
