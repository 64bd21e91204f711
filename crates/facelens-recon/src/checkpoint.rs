//! Checkpoint files: one safetensors file with the decoder's variables (BatchNorm running
//! statistics included) under `model.`, the AdamW moments under `adamw.`, and a JSON header
//! (`facelens.recon.checkpoint` metadata) with step, optimizer step, RNG state, learning-rate
//! scale and both configs. Written atomically: temp file in the target folder, fsync, rename,
//! fsync of the folder — a crash leaves the previous checkpoint intact, never half a file.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use crate::decoder::{Decoder, DecoderConfig};
use crate::error::{ReconError, Result};

pub const CHECKPOINT_META: &str = "facelens.recon.checkpoint";
pub const DECODER_META: &str = "facelens.recon.decoder";
pub const MODEL_PREFIX: &str = "model.";
pub const FORMAT_VERSION: u32 = 1;

/// Writes `bytes` to `path` atomically ([`facelens_core::write_atomic`]), creating its folder.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| ReconError::io(dir, "cannot create folder", e))?;
    }
    facelens_core::write_atomic(path, bytes).map_err(|e| ReconError::io(path, "cannot write", e))
}

/// Everything besides tensors that a resumed run needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    pub format: u32,
    /// Steps completed (the next step to run).
    pub step: u64,
    /// Updates AdamW has applied (differs from `step` after skipped or rolled-back steps).
    pub optimizer_step: u64,
    pub rng: [u64; 4],
    /// Multiplier on the scheduled learning rate (halved by each NaN recovery).
    pub lr_scale: f64,
    pub nan_streak: u32,
    pub decoder: DecoderConfig,
    /// The trainer's configuration ([`crate::trainer::TrainConfig`]) as JSON.
    pub train: serde_json::Value,
}

#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub meta: CheckpointMeta,
    pub tensors: HashMap<String, Tensor>,
}

fn serialise(
    tensors: &[(String, Tensor)],
    key: &str,
    meta_json: String,
    path: &Path,
) -> Result<Vec<u8>> {
    let mut info = HashMap::new();
    info.insert(key.to_string(), meta_json);
    // Tensors go through the CPU; safetensors wants contiguous data.
    let cpu: Vec<(String, Tensor)> = tensors
        .iter()
        .map(|(k, t)| Ok((k.clone(), t.to_device(&Device::Cpu)?.contiguous()?)))
        .collect::<candle_core::Result<_>>()?;
    safetensors::serialize(cpu.iter().map(|(k, v)| (k.as_str(), v)), Some(info)).map_err(|e| {
        ReconError::Encode {
            path: path.into(),
            reason: e.to_string(),
        }
    })
}

impl Checkpoint {
    pub fn save(path: &Path, meta: &CheckpointMeta, tensors: &[(String, Tensor)]) -> Result<()> {
        let json = serde_json::to_string(meta).map_err(|e| ReconError::Encode {
            path: path.into(),
            reason: e.to_string(),
        })?;
        write_atomic(path, &serialise(tensors, CHECKPOINT_META, json, path)?)
    }

    /// Reads and checks a checkpoint: header present and parseable, every tensor finite.
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        let bytes =
            facelens_core::fs::read(path).map_err(|e| ReconError::io(path, "cannot read checkpoint", e))?;
        let corrupt = |reason: String| ReconError::CorruptCheckpoint {
            path: path.into(),
            reason,
        };
        let (_, header) =
            safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| corrupt(e.to_string()))?;
        let text = header
            .metadata()
            .as_ref()
            .and_then(|m| m.get(CHECKPOINT_META).cloned())
            .ok_or_else(|| {
                corrupt(format!(
                    "no `{CHECKPOINT_META}` header (is this a decoder checkpoint?)"
                ))
            })?;
        let meta: CheckpointMeta =
            serde_json::from_str(&text).map_err(|e| corrupt(format!("bad header: {e}")))?;
        if meta.format != FORMAT_VERSION {
            return Err(corrupt(format!(
                "format {} is not the supported {FORMAT_VERSION}",
                meta.format
            )));
        }
        meta.decoder.validate().map_err(|e| corrupt(e.to_string()))?;
        let tensors = candle_core::safetensors::load_buffer(&bytes, device)
            .map_err(|e| corrupt(e.to_string()))?;
        check_finite(path, &tensors)?;
        Ok(Self { meta, tensors })
    }

    /// The decoder's variables, names without the `model.` prefix.
    pub fn model_tensors(&self) -> HashMap<String, Tensor> {
        self.tensors
            .iter()
            .filter_map(|(k, v)| {
                k.strip_prefix(MODEL_PREFIX)
                    .map(|n| (n.to_string(), v.clone()))
            })
            .collect()
    }
}

fn check_finite(path: &Path, tensors: &HashMap<String, Tensor>) -> Result<()> {
    for (name, t) in tensors {
        let v: Vec<f32> = t
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_device(&Device::Cpu)?
            .to_vec1()?;
        let bad = v.iter().filter(|x| !x.is_finite()).count();
        if bad > 0 {
            return Err(ReconError::NonFinite {
                path: path.into(),
                name: name.clone(),
                count: bad,
            });
        }
    }
    Ok(())
}

/// Saves decoder weights alone (inference export) with the config in the header.
pub fn save_decoder(
    path: &Path,
    config: &DecoderConfig,
    tensors: &[(String, Tensor)],
) -> Result<()> {
    let json = serde_json::to_string(config).map_err(|e| ReconError::Encode {
        path: path.into(),
        reason: e.to_string(),
    })?;
    write_atomic(path, &serialise(tensors, DECODER_META, json, path)?)
}

/// Builds a decoder from weights and checks that every expected tensor is present with the
/// right shape (and nothing unexpected is left over).
pub fn decoder_from_tensors(
    path: &Path,
    config: &DecoderConfig,
    tensors: HashMap<String, Tensor>,
    device: &Device,
) -> Result<Decoder> {
    let layout = candle_nn::VarMap::new();
    Decoder::new(config, VarBuilder::from_varmap(&layout, DType::F32, device))?;
    let expected: HashMap<String, Vec<usize>> = layout
        .data()
        .lock()
        .map_err(|_| ReconError::Config("variable map lock poisoned".into()))?
        .iter()
        .map(|(k, v)| (k.clone(), v.dims().to_vec()))
        .collect();
    check_layout(path, &expected, &tensors)?;
    Decoder::new(
        config,
        VarBuilder::from_tensors(tensors, DType::F32, device),
    )
}

/// Checks that `tensors` (read from `path`) holds every name of `expected` with its shape, and
/// nothing else.
pub(crate) fn check_layout(path: &Path, expected: &HashMap<String, Vec<usize>>, tensors: &HashMap<String, Tensor>) -> Result<()> {
    let mut names: Vec<&String> = expected.keys().collect();
    names.sort();
    for name in names {
        let t = tensors.get(name).ok_or_else(|| ReconError::MissingTensor {
            path: path.into(),
            name: name.clone(),
        })?;
        if t.dims() != expected[name].as_slice() {
            return Err(ReconError::WrongShape {
                path: path.into(),
                name: name.clone(),
                expected: expected[name].clone(),
                got: t.dims().to_vec(),
            });
        }
    }
    if let Some(extra) = tensors.keys().find(|k| !expected.contains_key(*k)) {
        return Err(ReconError::CorruptCheckpoint {
            path: path.into(),
            reason: format!("unexpected tensor `{extra}` for this decoder config"),
        });
    }
    Ok(())
}

/// Loads a decoder for inference from a training checkpoint or an exported decoder file.
pub fn load_decoder(path: &Path, device: &Device) -> Result<Decoder> {
    let (config, tensors) = decoder_weights(path, device)?;
    decoder_from_tensors(path, &config, tensors, device)
}

/// The decoder config and variables (names without the `model.` prefix) of a training
/// checkpoint or an exported decoder file, checked to be finite but not against a layout.
pub fn decoder_weights(path: &Path, device: &Device) -> Result<(DecoderConfig, HashMap<String, Tensor>)> {
    let bytes = facelens_core::fs::read(path).map_err(|e| ReconError::io(path, "cannot read decoder", e))?;
    let corrupt = |reason: String| ReconError::CorruptCheckpoint {
        path: path.into(),
        reason,
    };
    let (_, header) =
        safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| corrupt(e.to_string()))?;
    let meta = header.metadata().clone().unwrap_or_default();
    if meta.contains_key(CHECKPOINT_META) {
        let ck = Checkpoint::load(path, device)?;
        return Ok((ck.meta.decoder.clone(), ck.model_tensors()));
    }
    let text = meta.get(DECODER_META).ok_or_else(|| {
        corrupt(format!(
            "neither `{CHECKPOINT_META}` nor `{DECODER_META}` in the header"
        ))
    })?;
    let config: DecoderConfig =
        serde_json::from_str(text).map_err(|e| corrupt(format!("bad decoder config: {e}")))?;
    config.validate().map_err(|e| corrupt(e.to_string()))?;
    let tensors = candle_core::safetensors::load_buffer(&bytes, device)
        .map_err(|e| corrupt(e.to_string()))?;
    check_finite(path, &tensors)?;
    Ok((config, tensors))
}
