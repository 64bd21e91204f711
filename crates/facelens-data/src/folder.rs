//! Listing the images of a folder, in a stable order so that runs are reproducible.

use std::path::{Path, PathBuf};

use crate::error::{DataError, Result};

/// File extensions (lower case) that [`crate::decode_image`] can read.
pub const IMAGE_EXTENSIONS: [&str; 5] = ["jpg", "jpeg", "png", "bmp", "webp"];

/// True if the path has one of [`IMAGE_EXTENSIONS`] (case-insensitive).
pub fn is_image_path(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

/// Image files in `dir` (and its subfolders when `recursive`), sorted by path.
///
/// Hidden entries (starting with `.`) are skipped; symlinked folders are not followed, so a link
/// loop cannot hang the listing.
pub fn list_images(dir: &Path, recursive: bool) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    collect(dir, recursive, &mut out)?;
    out.sort();
    Ok(out)
}

fn collect(dir: &Path, recursive: bool, out: &mut Vec<PathBuf>) -> Result<()> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| DataError::io(dir, "cannot list folder", e))?;
    for entry in entries {
        let entry = entry.map_err(|e| DataError::io(dir, "cannot list folder", e))?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        let file_type = entry
            .file_type()
            .map_err(|e| DataError::io(&path, "cannot stat", e))?;
        if file_type.is_dir() {
            if recursive {
                collect(&path, recursive, out)?;
            }
        } else if is_image_path(&path) && path.is_file() {
            out.push(path);
        }
    }
    Ok(())
}
