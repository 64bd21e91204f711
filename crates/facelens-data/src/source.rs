//! From an image path to the aligned crop a backbone sees, with the rules of docs/design.md §4:
//! landmarks known → align; already `size` x `size` → use as is; otherwise resize only when the user
//! asked for it, else refuse with a message that says how to fix the call.

use std::path::{Path, PathBuf};

use image::RgbImage;
use rayon::prelude::*;

use crate::align::{align_face, resize_to, ARCFACE_SIZE};
use crate::decode::decode_image;
use crate::error::{DataError, Result};
use crate::landmarks::{LandmarkStatus, LandmarkTable};

/// How a crop was obtained; lets a CLI report e.g. how many faces were substituted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaceSource {
    /// Warped from the image's 5 keypoints.
    Landmarks,
    /// The image already had the crop size and was used unchanged.
    AlreadyAligned,
    /// Plainly resized (the user allowed it).
    Resized,
    /// The detector found no face and a black image stands in (reference protocol).
    BlackNoDetection,
}

/// A crop and how it was made.
#[derive(Debug, Clone)]
pub struct LoadedFace {
    pub image: RgbImage,
    pub source: FaceSource,
}

/// Settings shared by every image of a run.
#[derive(Debug, Clone, Copy)]
pub struct LoadOptions<'a> {
    /// Landmark rows, keyed by path relative to `images_root`.
    pub landmarks: Option<&'a LandmarkTable>,
    /// Folder the landmark keys are relative to.
    pub images_root: &'a Path,
    /// Accept a plain resize for unaligned images without landmarks.
    pub allow_resize: bool,
    /// Answer `nodet` rows with a black image instead of [`DataError::NoDetection`].
    pub black_for_nodet: bool,
    /// Crop side.
    pub size: u32,
}

impl<'a> LoadOptions<'a> {
    /// Strict defaults: 112x112, no resize, `nodet` is an error.
    pub fn new(images_root: &'a Path, landmarks: Option<&'a LandmarkTable>) -> Self {
        Self {
            landmarks,
            images_root,
            allow_resize: false,
            black_for_nodet: false,
            size: ARCFACE_SIZE,
        }
    }
}

/// An all-black crop, the stand-in for undetected faces in the reference protocol.
pub fn black_face(size: u32) -> RgbImage {
    RgbImage::new(size, size)
}

/// Loads one face as a 112x112 crop (see the module doc for the rules).
///
/// A `nodet` landmark row gives [`DataError::NoDetection`]; match it with
/// [`DataError::is_no_detection`] to substitute [`black_face`].
pub fn load_aligned(
    path: &Path,
    landmarks: Option<&LandmarkTable>,
    images_root: &Path,
    allow_resize: bool,
) -> Result<RgbImage> {
    let opts = LoadOptions {
        allow_resize,
        ..LoadOptions::new(images_root, landmarks)
    };
    load_face(path, &opts).map(|f| f.image)
}

/// Loads one face with explicit options, reporting how the crop was made.
///
/// A relative `path` that does not exist as given is looked up under `images_root`.
pub fn load_face(path: &Path, opts: &LoadOptions) -> Result<LoadedFace> {
    if opts.size == 0 {
        return Err(DataError::InvalidArgument("crop size must be > 0".into()));
    }
    let resolved = resolve(path, opts.images_root);
    let record = opts.landmarks.and_then(|table| {
        let rel = resolved
            .strip_prefix(opts.images_root)
            .ok()
            .or_else(|| path.is_relative().then_some(path))?;
        table.get_path(rel)
    });
    if let Some(rec) = record {
        if rec.status == LandmarkStatus::NoDet || rec.keypoints.is_none() {
            if !resolved.is_file() {
                // Still say when the file itself is missing: that is a different mistake.
                decode_image(&resolved)?;
            }
            return if opts.black_for_nodet {
                Ok(LoadedFace {
                    image: black_face(opts.size),
                    source: FaceSource::BlackNoDetection,
                })
            } else {
                Err(DataError::NoDetection { path: resolved })
            };
        }
    }
    let img = decode_image(&resolved)?;
    if let Some(kps) = record.and_then(|r| r.keypoints) {
        let image = align_face(&img, &kps, opts.size).map_err(|e| match e {
            DataError::DegenerateLandmarks { reason } => DataError::DegenerateLandmarks {
                reason: format!("{}: {reason}", resolved.display()),
            },
            other => other,
        })?;
        return Ok(LoadedFace {
            image,
            source: FaceSource::Landmarks,
        });
    }
    let (width, height) = img.dimensions();
    if width == opts.size && height == opts.size {
        Ok(LoadedFace {
            image: img,
            source: FaceSource::AlreadyAligned,
        })
    } else if opts.allow_resize {
        Ok(LoadedFace {
            image: resize_to(&img, opts.size),
            source: FaceSource::Resized,
        })
    } else {
        Err(DataError::NotAligned {
            path: resolved,
            width,
            height,
            size: opts.size,
        })
    }
}

/// Decodes and aligns many files in parallel (rayon); the result has the order of `paths`.
///
/// Each file keeps its own `Result`, so one bad file does not hide the others.
pub fn align_many<P: AsRef<Path> + Sync>(
    paths: &[P],
    opts: &LoadOptions,
) -> Vec<Result<LoadedFace>> {
    paths
        .par_iter()
        .map(|p| load_face(p.as_ref(), opts))
        .collect()
}

fn resolve(path: &Path, images_root: &Path) -> PathBuf {
    if path.is_relative() && !path.exists() {
        images_root.join(path)
    } else {
        path.to_path_buf()
    }
}
