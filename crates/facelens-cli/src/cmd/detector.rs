//! The SCRFD face detector as the CLI uses it: every face of a photo, numbered left to right.

use std::path::Path;

use anyhow::{Context, Result};
use facelens_data::RgbImage;
use facelens_models::detect::Detection;

pub const DETECTOR_CHECKPOINT: &str = "scrfd_500m_bnkps.safetensors";

pub struct FaceDetector {
    detector: facelens_models::detect::Detector,
    /// The same network at 320x320: tightly cropped faces (e.g. UTKFace chips) fill too
    /// much of a 640 letterbox to be found there.
    close_up: facelens_models::detect::Detector,
}

impl FaceDetector {
    /// The setup-fetched detector, if `scripts/setup.sh` imported it.
    pub fn load_default() -> Result<Option<Self>> {
        let path = facelens_models::zoo::checkpoints_dir().join(DETECTOR_CHECKPOINT);
        if !path.is_file() {
            return Ok(None);
        }
        use facelens_models::detect::{Detector, DetectorConfig};
        let load = || {
            Detector::load(&path, &candle_core::Device::Cpu)
                .with_context(|| format!("cannot load the face detector {}", path.display()))
        };
        let detector = load()?;
        let close_up = load()?.with_config(DetectorConfig { input_size: 320, ..Default::default() });
        Ok(Some(Self { detector, close_up }))
    }

    /// Every face of `img` (score >= 0.5), numbered left to right by box centre; an error naming
    /// `path` when there is none.
    pub fn detect_all(&self, img: &RgbImage, path: &Path) -> Result<Vec<Detection>> {
        let failed = || format!("face detection failed on {}", path.display());
        let mut dets = self.detector.detect(img).with_context(failed)?;
        if dets.is_empty() {
            dets = self.close_up.detect(img).with_context(failed)?;
        }
        if dets.is_empty() {
            anyhow::bail!("{}: no face found (SCRFD-500M at 640 and 320 px, score >= 0.5)", path.display());
        }
        let centre = |d: &Detection| d.bbox[0] + d.bbox[2];
        dets.sort_by(|a, b| centre(a).total_cmp(&centre(b)));
        Ok(dets)
    }
}

pub fn import(onnx: &Path, out: &Path) -> Result<()> {
    facelens_models::scrfd::import_onnx(onnx, out).with_context(|| format!("importing detector {}", onnx.display()))?;
    Ok(())
}
