//! Loading a backbone by name, path or `hf:` reference, and embedding faces with it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Module, Tensor};
use candle_nn::VarBuilder;
use sha2::{Digest, Sha256};

use crate::error::{ModelError, Result};
use crate::hub::HubRef;
use crate::iresnet::{self, IResNet};
use crate::mobilefacenet::{self, MobileFaceNet};
use crate::onnx::{self, OnnxGraph};
use crate::preprocess;
use crate::sface::{self, SFace};
use crate::weights::{self, Checkpoint, ParamLayout};
use crate::zoo::{self, Arch, ModelSource, ModelSpec};

/// Metadata keys written into imported checkpoints.
pub const META_ARCH: &str = "facelens.arch";
pub const META_CONFIG: &str = "facelens.config";
pub const META_SOURCE: &str = "facelens.source";
pub const META_SOURCE_SHA256: &str = "facelens.source_sha256";

#[derive(Debug, Clone)]
pub enum Backbone {
    MobileFaceNet(MobileFaceNet),
    IResNet(IResNet),
    SFace(SFace),
}

impl Backbone {
    pub fn new(arch: &Arch, vb: VarBuilder) -> candle_core::Result<Self> {
        match arch {
            Arch::MobileFaceNet(cfg) => Ok(Backbone::MobileFaceNet(MobileFaceNet::new(cfg, vb)?)),
            Arch::IResNet(cfg) => Ok(Backbone::IResNet(IResNet::new(cfg, vb)?)),
            Arch::SFace(cfg) => Ok(Backbone::SFace(SFace::new(cfg, vb)?)),
        }
    }

    /// Every parameter the architecture expects, in forward order.
    pub fn layout(arch: &Arch) -> Result<ParamLayout> {
        ParamLayout::record(|vb| Backbone::new(arch, vb))
    }
}

impl Module for Backbone {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Backbone::MobileFaceNet(m) => m.forward(xs),
            Backbone::IResNet(m) => m.forward(xs),
            Backbone::SFace(m) => m.forward(xs),
        }
    }
}

/// A backbone together with its spec and the checked weights it was built from.
pub struct FaceModel {
    pub spec: ModelSpec,
    pub backbone: Backbone,
    pub checkpoint: Checkpoint,
    pub weights_path: PathBuf,
    pub device: Device,
    /// The lowered inference graph, built on first use (CPU fast path).
    net: std::sync::OnceLock<crate::reverse::Net>,
}

impl FaceModel {
    /// Loads `reference`: a zoo name (`w600k_mbf`), a `.safetensors` path, or
    /// `hf:<org>/<repo>[@rev]/<file>`.
    pub fn load(reference: &str, device: &Device) -> Result<Self> {
        if reference.starts_with("hf:") {
            let path = HubRef::parse(reference)?.resolve()?;
            return Self::from_file(&path, ModelSource::Hub(reference.into()), reference, device);
        }
        let as_path = Path::new(reference);
        if reference.ends_with(".safetensors") || as_path.is_file() {
            return Self::from_file(as_path, ModelSource::File(as_path.into()), reference, device);
        }
        let spec = zoo::find(reference)?;
        let path = zoo::setup_checkpoint(&spec)
            .ok_or_else(|| ModelError::WeightsNotFetched { name: spec.name.clone(), path: PathBuf::new() })?;
        if !path.is_file() {
            return Err(ModelError::WeightsNotFetched { name: spec.name.clone(), path });
        }
        Self::with_spec(spec, &path, device)
    }

    /// Loads a checkpoint whose architecture is recorded in its metadata (or is the default's).
    fn from_file(path: &Path, source: ModelSource, name: &str, device: &Device) -> Result<Self> {
        let meta = weights::read_metadata(path)?;
        let arch = arch_from_metadata(path, &meta)?;
        // A checkpoint imported from a zoo model keeps that model's preprocessing and calibration.
        let source_sha = meta.get(META_SOURCE_SHA256).map(String::as_str);
        let spec = match zoo::zoo().into_iter().find(|m| m.sha256.is_some() && m.sha256.as_deref() == source_sha) {
            Some(known) => ModelSpec { source, ..known },
            None => zoo::custom_spec(name.into(), arch, source),
        };
        Self::with_spec(spec, path, device)
    }

    pub fn with_spec(spec: ModelSpec, path: &Path, device: &Device) -> Result<Self> {
        let layout = Backbone::layout(&spec.arch)?;
        let checkpoint = weights::load_checked(path, &layout, spec.arch.name())?;
        let backbone = Backbone::new(&spec.arch, checkpoint.var_builder(device)?)?;
        Ok(Self {
            spec,
            backbone,
            checkpoint,
            weights_path: path.to_path_buf(),
            device: device.clone(),
            net: std::sync::OnceLock::new(),
        })
    }

    /// Raw embeddings of a normalised (N, 3, S, S) batch.
    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        Ok(self.backbone.forward(xs)?)
    }

    /// The backbone lowered to the frozen-network engine (built once).
    pub fn net(&self) -> Result<&crate::reverse::Net> {
        if let Some(n) = self.net.get() {
            return Ok(n);
        }
        let net = crate::reverse::Net::from_backbone(&self.backbone)?;
        Ok(self.net.get_or_init(|| net))
    }

    /// Raw embeddings `[n][D]` of `n` normalised NCHW images. On CPU this runs the
    /// lowered graph (GEMM-based, several times faster than candle's grouped convolutions);
    /// elsewhere the candle module.
    pub fn embed_normalised(&self, images: &[f32], n: usize) -> Result<Vec<f32>> {
        if self.device.is_cpu() {
            return Ok(self.net()?.forward(images, n));
        }
        let s = self.spec.input_size;
        let xs = Tensor::from_vec(images.to_vec(), (n, 3, s, s), &self.device)?;
        Ok(self.forward(&xs)?.flatten_all()?.to_device(&Device::Cpu)?.to_vec1()?)
    }

    /// Raw embeddings of aligned HWC RGB u8 crops, `batch` at a time.
    pub fn embed_crops(&self, crops: &[&[u8]], batch: usize) -> Result<Vec<Vec<f32>>> {
        let d = self.spec.embedding_dim;
        let mut out = Vec::with_capacity(crops.len());
        for chunk in crops.chunks(batch.max(1)) {
            let mut xs = Vec::with_capacity(chunk.len() * 3 * self.spec.input_size.pow(2));
            for crop in chunk {
                xs.extend(preprocess::normalise_chw(crop, &self.spec)?);
            }
            out.extend(self.embed_normalised(&xs, chunk.len())?.chunks(d).map(|c| c.to_vec()));
        }
        Ok(out)
    }

    /// Raw embeddings through the candle module, whatever the device (reference path).
    pub fn embed_crops_candle(&self, crops: &[&[u8]], batch: usize) -> Result<Vec<Vec<f32>>> {
        let mut out = Vec::with_capacity(crops.len());
        for chunk in crops.chunks(batch.max(1)) {
            let xs = preprocess::batch_tensor(chunk, &self.spec, &self.device)?;
            out.extend(self.forward(&xs)?.to_device(&Device::Cpu)?.to_vec2::<f32>()?);
        }
        Ok(out)
    }
}

fn arch_from_metadata(path: &Path, meta: &BTreeMap<String, String>) -> Result<Arch> {
    let unknown = |reason: &str| ModelError::UnknownArchitecture { path: path.into(), reason: reason.into() };
    match (meta.get(META_ARCH).map(String::as_str), meta.get(META_CONFIG)) {
        (Some("mobilefacenet"), Some(cfg)) => serde_json::from_str::<mobilefacenet::Config>(cfg)
            .map(Arch::MobileFaceNet)
            .map_err(|e| unknown(&format!("bad `{META_CONFIG}` metadata: {e}"))),
        (Some("iresnet"), Some(cfg)) => serde_json::from_str::<iresnet::Config>(cfg)
            .map(Arch::IResNet)
            .map_err(|e| unknown(&format!("bad `{META_CONFIG}` metadata: {e}"))),
        (Some("sface"), Some(cfg)) => serde_json::from_str::<sface::Config>(cfg)
            .map(Arch::SFace)
            .map_err(|e| unknown(&format!("bad `{META_CONFIG}` metadata: {e}"))),
        (Some(other), _) => Err(unknown(&format!("unsupported architecture `{other}` in metadata"))),
        // A plain arcface_torch / AdaFace state dict saved as safetensors: infer from its names.
        (None, _) => iresnet::detect_config_file(path).map(Arch::IResNet).map_err(|_| {
            unknown("no `facelens.arch` metadata and the tensor names match no known IResNet; import ONNX models with `facelens import onnx`")
        }),
    }
}

/// What an ONNX import did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ImportReport {
    pub tensors: usize,
    pub parameters: usize,
    pub source_sha256: String,
    pub output: PathBuf,
}

/// Imports an ONNX backbone of architecture `arch` into a safetensors checkpoint at `out`.
pub fn import_onnx(onnx_path: &Path, arch: &Arch, out: &Path) -> Result<ImportReport> {
    let bytes = facelens_core::fs::read(onnx_path).map_err(|e| ModelError::io(onnx_path, e))?;
    let sha = hex(&Sha256::digest(&bytes));
    let graph = OnnxGraph::from_bytes(onnx_path, &bytes)?;
    let layout = Backbone::layout(arch)?;
    let order = match Backbone::new(arch, VarBuilder::zeros(candle_core::DType::F32, &Device::Cpu))? {
        Backbone::MobileFaceNet(m) => m.onnx_order(),
        Backbone::SFace(m) => m.onnx_order(),
        Backbone::IResNet(_) => {
            return Err(ModelError::GraphMismatch {
                path: onnx_path.into(),
                arch: arch.name().into(),
                reason: "ONNX import supports MobileFaceNet and SFace graphs; load IResNet state dicts saved as safetensors".into(),
            })
        }
    };
    let tensors = onnx::map_by_order(&graph, arch.name(), &order, &layout.shapes())?;
    let mut missing: Vec<String> =
        layout.params.iter().map(|(n, _)| n.clone()).filter(|n| !tensors.iter().any(|(t, _, _)| t == n)).collect();
    if !missing.is_empty() {
        missing.sort();
        return Err(ModelError::MissingKeys { path: onnx_path.into(), names: missing });
    }
    for (name, _, data) in &tensors {
        let bad = data.iter().filter(|v| !v.is_finite()).count();
        if bad > 0 {
            return Err(ModelError::NonFinite { path: onnx_path.into(), name: name.clone(), count: bad });
        }
    }
    let config = match arch {
        Arch::MobileFaceNet(c) => serde_json::to_string(c).unwrap_or_default(),
        Arch::IResNet(c) => serde_json::to_string(c).unwrap_or_default(),
        Arch::SFace(c) => serde_json::to_string(c).unwrap_or_default(),
    };
    write_import(onnx_path, out, arch.name(), config, sha, &tensors, layout.num_parameters())
}

/// Writes imported tensors with the metadata that lets `FaceModel::load` (or the detector)
/// rebuild the architecture: arch name, config JSON, source file name and its sha256.
pub(crate) fn write_import(
    onnx_path: &Path,
    out: &Path,
    arch: &str,
    config_json: String,
    source_sha256: String,
    tensors: &[(String, Vec<usize>, Vec<f32>)],
    parameters: usize,
) -> Result<ImportReport> {
    let mut meta = BTreeMap::new();
    meta.insert(META_ARCH.to_string(), arch.to_string());
    meta.insert(META_CONFIG.to_string(), config_json);
    meta.insert(
        META_SOURCE.to_string(),
        onnx_path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default(),
    );
    meta.insert(META_SOURCE_SHA256.to_string(), source_sha256.clone());
    weights::save_atomic(out, tensors, &meta)?;
    Ok(ImportReport { tensors: tensors.len(), parameters, source_sha256, output: out.to_path_buf() })
}

/// sha256 of a file, hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let bytes = facelens_core::fs::read(path).map_err(|e| ModelError::io(path, e))?;
    Ok(hex(&Sha256::digest(&bytes)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
