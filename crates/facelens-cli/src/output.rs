//! Writing result files: atomically, so an interrupted run never leaves a partial file.

use std::path::Path;

use anyhow::{Context, Result};

pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    facelens_core::write_atomic(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

/// Refuses an output path that [`write_atomic`] would refuse, before any work is done.
pub fn check_target(path: &Path) -> Result<()> {
    facelens_core::check_target(path).with_context(|| format!("cannot write {}", path.display()))
}

pub fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    write_atomic(path, text.as_bytes())
}

/// Encodes an RGB image as PNG and writes it atomically.
pub fn write_png(path: &Path, img: &image::RgbImage) -> Result<()> {
    write_atomic(path, &png_bytes(img).with_context(|| format!("cannot encode {}", path.display()))?)
}

/// An RGB image as PNG bytes.
pub fn png_bytes(img: &image::RgbImage) -> Result<Vec<u8>> {
    let mut buf = std::io::Cursor::new(Vec::new());
    img.write_to(&mut buf, image::ImageFormat::Png)?;
    Ok(buf.into_inner())
}

/// Named f32 tensors (with shapes) plus string metadata, as safetensors, atomically.
pub fn write_safetensors(
    path: &Path,
    tensors: &[(String, Vec<usize>, Vec<f32>)],
    metadata: &std::collections::BTreeMap<String, String>,
) -> Result<()> {
    facelens_models::weights::save_atomic(path, tensors, metadata).with_context(|| format!("cannot write {}", path.display()))
}
