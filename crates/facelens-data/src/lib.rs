//! Face data for facelens: decoding any common image into 8-bit RGB, 5-point alignment onto the
//! ArcFace 112x112 template (OpenCV-exact warp), landmark CSVs, LFW pair lists, folder listings,
//! parallel loading and an on-disk cache.
//!
//! The crate is deliberately free of tensors: it hands `image::RgbImage` crops to the model crate.
//! It never prints; every failure is a [`DataError`] naming the file (and line) at fault.

pub mod align;
pub mod cache;
pub mod decode;
pub mod error;
pub mod folder;
pub mod landmarks;
pub mod pairs;
pub mod source;

pub use align::{
    align_face, alignment_matrix, alignment_transform, arcface_template, invert_affine, resize_to,
    umeyama, warp_affine, Affine, Similarity, ARCFACE_SIZE, ARCFACE_TEMPLATE,
};
pub use cache::{cache_key, Cache};
pub use decode::{decode_bytes, decode_image, to_rgb8, MIN_IMAGE_SIDE};
pub use error::{DataError, Result};
pub use folder::{is_image_path, list_images, IMAGE_EXTENSIONS};
pub use landmarks::{LandmarkRecord, LandmarkStatus, LandmarkTable};
pub use pairs::{check_pair_images, lfw_image_path, load_pairs, parse_pairs, Pair};
pub use source::{
    align_many, black_face, load_aligned, load_face, FaceSource, LoadOptions, LoadedFace,
};

/// Re-exported so callers can name the image type without depending on `image` themselves.
pub use image::RgbImage;
