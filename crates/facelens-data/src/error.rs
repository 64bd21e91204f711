//! The one error type of this crate.
//!
//! Every variant names the file (and the line, for text inputs) and says what is wrong, so that a
//! CLI can print it as is (docs/design.md §12).

use std::path::PathBuf;

/// Result alias used throughout `facelens-data`.
pub type Result<T, E = DataError> = std::result::Result<T, E>;

/// Everything that can go wrong while reading, aligning or caching face data.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file could not be read or written at all.
    #[error("{}: {action}: {source}", path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },

    /// The bytes are not a decodable image (corrupt, truncated, empty, unknown format).
    #[error("{}: cannot decode image: {reason}", path.display())]
    Decode { path: PathBuf, reason: String },

    /// An image could not be encoded for writing.
    #[error("{}: cannot encode image: {reason}", path.display())]
    Encode { path: PathBuf, reason: String },

    /// The image decoded but is too small to hold a face (e.g. a 1x1 placeholder).
    #[error("{}: image is {width}x{height} pixels; a face image needs at least {min}x{min}", path.display())]
    TooSmall {
        path: PathBuf,
        width: u32,
        height: u32,
        min: u32,
    },

    /// An image of the wrong size with no landmarks and no permission to resize.
    #[error(
        "{}: image is {width}x{height}, not an aligned {size}x{size} face, and no landmarks are known for it; \
         pass a landmarks CSV (--landmarks) to align it, or --resize to accept a plain resize",
        path.display()
    )]
    NotAligned {
        path: PathBuf,
        width: u32,
        height: u32,
        size: u32,
    },

    /// The landmark table says the detector found no face in this image (status `nodet`).
    ///
    /// Callers following the reference protocol substitute a black image (see
    /// [`DataError::is_no_detection`] and [`crate::black_face`]).
    #[error("{}: the face detector found no face in this image (landmark status `nodet`)", path.display())]
    NoDetection { path: PathBuf },

    /// A required CSV column is absent from the header.
    #[error("{}:{line}: missing column `{column}`", path.display())]
    MissingColumn {
        path: PathBuf,
        line: usize,
        column: String,
    },

    /// A malformed CSV row (wrong field count, bad number, unknown status, duplicate file).
    #[error("{}:{line}: {message}", path.display())]
    Csv {
        path: PathBuf,
        line: usize,
        message: String,
    },

    /// A malformed pair list (bad header, bad line, wrong number of lines).
    #[error("{}:{line}: {message}", path.display())]
    Pairs {
        path: PathBuf,
        line: usize,
        message: String,
    },

    /// A pair list names a person that has no folder under the images directory.
    #[error("{}:{line}: unknown name `{name}`: there is no folder {}", path.display(), dir.display())]
    UnknownName {
        path: PathBuf,
        line: usize,
        name: String,
        dir: PathBuf,
    },

    /// A pair list references an image number that does not exist for a known person.
    #[error("{}:{line}: image {} does not exist", path.display(), image.display())]
    MissingImage {
        path: PathBuf,
        line: usize,
        image: PathBuf,
    },

    /// Keypoints from which no similarity transform can be estimated.
    #[error("cannot align face: {reason}")]
    DegenerateLandmarks { reason: String },

    /// Parameters that make no sense (zero output size, bad cache key, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// A cache entry exists but cannot be used.
    #[error("{}: corrupt cache entry: {reason}", path.display())]
    CorruptCache { path: PathBuf, reason: String },
}

impl DataError {
    /// True when the error only means "no face was detected", which the reference protocol answers
    /// with a black image instead of failing.
    pub fn is_no_detection(&self) -> bool {
        matches!(self, DataError::NoDetection { .. })
    }

    pub(crate) fn io(
        path: impl Into<PathBuf>,
        action: &'static str,
        source: std::io::Error,
    ) -> Self {
        DataError::Io {
            path: path.into(),
            action,
            source,
        }
    }
}
