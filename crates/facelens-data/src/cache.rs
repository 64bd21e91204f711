//! On-disk cache of aligned crops (PNG) and embeddings (little-endian `f32`), keyed by content.
//!
//! Keys hash the model name with the source file's bytes, so a renamed file still hits and an
//! edited file misses. Every write goes to a temporary file in the cache folder that is synced
//! and then renamed over the target, so a crash never leaves a half-written entry (docs/design.md §12).

use std::path::{Path, PathBuf};

use image::RgbImage;
use sha2::{Digest, Sha256};

use crate::decode::decode_image;
use crate::error::{DataError, Result};

/// Hex SHA-256 of `model_name`, a NUL separator, and `file_bytes`.
pub fn cache_key(model_name: &str, file_bytes: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(model_name.as_bytes());
    h.update([0u8]);
    h.update(file_bytes);
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// A cache folder holding `<key>.png` crops and `<key>.f32` embeddings.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    /// Opens (creating if needed) a cache folder.
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)
            .map_err(|e| DataError::io(&dir, "cannot create cache folder", e))?;
        Ok(Self { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of the crop entry for `key`.
    pub fn crop_path(&self, key: &str) -> Result<PathBuf> {
        Ok(self.dir.join(format!("{}.png", check_key(key)?)))
    }

    /// Path of the embedding entry for `key`.
    pub fn embedding_path(&self, key: &str) -> Result<PathBuf> {
        Ok(self.dir.join(format!("{}.f32", check_key(key)?)))
    }

    /// Stores an aligned crop as PNG.
    pub fn store_crop(&self, key: &str, crop: &RgbImage) -> Result<()> {
        let path = self.crop_path(key)?;
        let mut png = Vec::new();
        crop.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .map_err(|e| DataError::Encode {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        write_atomic(&path, &png)
    }

    /// Loads a crop, or `None` when it is not cached.
    pub fn load_crop(&self, key: &str) -> Result<Option<RgbImage>> {
        let path = self.crop_path(key)?;
        if !path.is_file() {
            return Ok(None);
        }
        decode_image(&path)
            .map(Some)
            .map_err(|e| DataError::CorruptCache {
                path,
                reason: e.to_string(),
            })
    }

    /// Stores an embedding as raw little-endian `f32`s.
    pub fn store_embedding(&self, key: &str, embedding: &[f32]) -> Result<()> {
        let path = self.embedding_path(key)?;
        let bytes: Vec<u8> = embedding.iter().flat_map(|v| v.to_le_bytes()).collect();
        write_atomic(&path, &bytes)
    }

    /// Loads an embedding, or `None` when it is not cached.
    pub fn load_embedding(&self, key: &str) -> Result<Option<Vec<f32>>> {
        let path = self.embedding_path(key)?;
        let bytes = match facelens_core::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(DataError::io(path, "cannot read cache entry", e)),
        };
        if bytes.is_empty() || bytes.len() % 4 != 0 {
            return Err(DataError::CorruptCache {
                path,
                reason: format!(
                    "{} bytes is not a whole, non-empty number of f32 values",
                    bytes.len()
                ),
            });
        }
        Ok(Some(
            bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ))
    }
}

/// Keys become file names: accept only what [`cache_key`] produces (lower-case hex).
fn check_key(key: &str) -> Result<&str> {
    if key.is_empty()
        || key.len() > 128
        || !key
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(DataError::InvalidArgument(format!(
            "cache key `{key}` is not a lower-case hex digest"
        )));
    }
    Ok(key)
}

/// Writes `bytes` to `path` atomically ([`facelens_core::write_atomic`]).
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    facelens_core::write_atomic(path, bytes).map_err(|e| DataError::io(path, "cannot write", e))
}
