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

/// Largest width or height accepted. Far above any photo a face is aligned from, far below what
/// a crafted header can claim (65535).
pub const MAX_IMAGE_SIDE: u32 = 16_384;

/// Most bytes one decoded image may take, in the decoder's own pixel format or as 8-bit RGB,
/// whichever is larger. Checked from the header before any pixel is decoded.
pub const MAX_DECODED_BYTES: u64 = 256 << 20;

/// Reads and decodes an image file into 8-bit RGB, applying its EXIF orientation.
pub fn decode_image(path: &Path) -> Result<RgbImage> {
    let bytes = facelens_core::fs::read(path).map_err(|e| DataError::io(path, "cannot read image", e))?;
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
    if format == ImageFormat::Jpeg {
        check_jpeg_complete(bytes).map_err(|r| decode_err(r.into()))?;
    }
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    limits.max_alloc = Some(MAX_DECODED_BYTES);
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(|e| match e {
        // Some decoders check `Limits` themselves while reading the header; say which limits.
        image::ImageError::Limits(_) => decode_err(format!(
            "{e}: the header claims more than {MAX_IMAGE_SIDE}x{MAX_IMAGE_SIDE} pixels or {MAX_DECODED_BYTES} bytes decoded"
        )),
        e => decode_err(e.to_string()),
    })?;
    // Not every decoder enforces `Limits` (JPEG ignores `max_alloc`), so the header's claim is
    // checked here, for every format, before anything is allocated for the pixels.
    let (w, h) = decoder.dimensions();
    if w > MAX_IMAGE_SIDE || h > MAX_IMAGE_SIDE {
        return Err(decode_err(format!(
            "the header says {w}x{h} pixels; at most {MAX_IMAGE_SIDE}x{MAX_IMAGE_SIDE} is accepted"
        )));
    }
    let needed = decoder.total_bytes().max(u64::from(w) * u64::from(h) * 3);
    if needed > MAX_DECODED_BYTES {
        return Err(decode_err(format!(
            "the header says {w}x{h} pixels, {needed} bytes decoded; at most {MAX_DECODED_BYTES} bytes are accepted"
        )));
    }
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

/// Refuses a JPEG whose entropy-coded data does not end with an end-of-image marker: the JPEG
/// decoder fills a truncated scan with grey and reports success, and a half-grey face would embed
/// without a word. Walks the marker segments up to the first start-of-scan (skipping APPn
/// segments, which may hold a thumbnail with markers of its own), then looks for EOI after it.
fn check_jpeg_complete(bytes: &[u8]) -> std::result::Result<(), &'static str> {
    const TRUNCATED: &str = "the JPEG data is truncated (no end-of-image marker after the scan)";
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return Err("not a JPEG file (no start-of-image marker), although its name says so");
    }
    let mut i = 2; // after SOI
    loop {
        // Fill bytes (0xFF) may precede a marker.
        while bytes.get(i) == Some(&0xFF) && bytes.get(i + 1) == Some(&0xFF) {
            i += 1;
        }
        let (Some(&0xFF), Some(&marker)) = (bytes.get(i), bytes.get(i + 1)) else {
            return Err(TRUNCATED);
        };
        i += 2;
        match marker {
            0xD8 | 0x01 | 0xD0..=0xD7 => continue,
            0xD9 => return Err("the JPEG ends before its first scan"),
            _ => {}
        }
        let (Some(&hi), Some(&lo)) = (bytes.get(i), bytes.get(i + 1)) else { return Err(TRUNCATED) };
        let len = usize::from(hi) << 8 | usize::from(lo);
        if len < 2 || i + len > bytes.len() {
            return Err(TRUNCATED);
        }
        i += len;
        if marker == 0xDA {
            break;
        }
    }
    // Entropy-coded data stuffs every 0xFF data byte as FF 00, so FF D9 after the scan header is
    // the real EOI (progressive files have several scans before it). Bytes after it are ignored.
    if bytes[i..].windows(2).any(|w| w == [0xFF, 0xD9]) {
        Ok(())
    } else {
        Err(TRUNCATED)
    }
}

/// Converts any decoded image to 8-bit RGB: grey is replicated, alpha dropped, 16-bit and float
/// samples rescaled to 0..=255 with rounding.
pub fn to_rgb8(img: DynamicImage) -> RgbImage {
    match img {
        DynamicImage::ImageRgb8(rgb) => rgb,
        other => other.to_rgb8(),
    }
}
