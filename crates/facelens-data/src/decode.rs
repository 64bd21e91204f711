//! Image decoding into the one pixel format the pipeline uses: 8-bit RGB.
//!
//! Grayscale, grey+alpha, RGBA and 16-bit inputs are all converted with [`to_rgb8`]; alpha is dropped
//! (what OpenCV's `imread(IMREAD_COLOR)` does, so crops match the reference pipeline). The EXIF
//! orientation of JPEG/WebP files is applied so that a phone photo is upright before alignment.

use std::io::Cursor;
use std::path::Path;

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, RgbImage};

use crate::error::{DataError, Result};

/// Smallest width and height accepted as a face image; anything smaller is a placeholder or a bug.
pub const MIN_IMAGE_SIDE: u32 = 2;

/// Reads and decodes an image file into 8-bit RGB, applying its EXIF orientation.
pub fn decode_image(path: &Path) -> Result<RgbImage> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, "cannot read image", e))?;
    decode_bytes(&bytes, path)
}

/// Decodes in-memory image bytes; `path` is only used to name the source in errors and, when the
/// content has no recognisable signature, to guess the format from the extension.
pub fn decode_bytes(bytes: &[u8], path: &Path) -> Result<RgbImage> {
    let decode_err = |reason: String| DataError::Decode {
        path: path.to_path_buf(),
        reason,
    };
    if bytes.is_empty() {
        return Err(decode_err("the file is empty".into()));
    }
    let format = image::guess_format(bytes)
        .ok()
        .or_else(|| ImageFormat::from_path(path).ok())
        .ok_or_else(|| {
            decode_err("unrecognised image format (expected JPEG, PNG, BMP or WebP)".into())
        })?;
    let reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| decode_err(e.to_string()))?;
    // A broken EXIF block must not make an otherwise fine image unreadable.
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(decoder).map_err(|e| decode_err(e.to_string()))?;
    img.apply_orientation(orientation);
    let (width, height) = (img.width(), img.height());
    if width < MIN_IMAGE_SIDE || height < MIN_IMAGE_SIDE {
        return Err(DataError::TooSmall {
            path: path.to_path_buf(),
            width,
            height,
            min: MIN_IMAGE_SIDE,
        });
    }
    Ok(to_rgb8(img))
}

/// Converts any decoded image to 8-bit RGB: grey is replicated, alpha dropped, 16-bit and float
/// samples rescaled to 0..=255 with rounding.
pub fn to_rgb8(img: DynamicImage) -> RgbImage {
    match img {
        DynamicImage::ImageRgb8(rgb) => rgb,
        other => other.to_rgb8(),
    }
}
