//! The crate's single error type.
//!
//! Every variant that touches the file system carries the path involved, so a
//! failure deep inside a training run says *which* file could not be written
//! instead of a bare "permission denied".

use std::path::PathBuf;

/// Convenience alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while logging a run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O operation on `path` failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// File or directory the operation was about.
        path: PathBuf,
        /// Underlying OS error.
        #[source]
        source: std::io::Error,
    },

    /// A TFRecord stream is malformed (truncated or failing its CRC).
    #[error("corrupt TFRecord in {path} at byte {offset}: {reason}")]
    CorruptRecord {
        /// Event file being read (`"<memory>"` for in-memory buffers).
        path: PathBuf,
        /// Byte offset of the record header.
        offset: u64,
        /// What exactly was wrong.
        reason: String,
    },

    /// A record's payload is not a valid `Event` protobuf.
    #[error("undecodable Event in {path} at byte {offset}: {source}")]
    DecodeEvent {
        /// Event file being read.
        path: PathBuf,
        /// Byte offset of the record header.
        offset: u64,
        /// Protobuf decoder error.
        #[source]
        source: prost::DecodeError,
    },

    /// Pixel buffer length does not match `width * height * 3`.
    #[error("image '{tag}': buffer has {len} bytes, expected {width}x{height}x3 = {expected}")]
    ImageShape {
        /// Summary tag.
        tag: String,
        /// Declared width in pixels.
        width: u32,
        /// Declared height in pixels.
        height: u32,
        /// Actual buffer length.
        len: usize,
        /// `width * height * 3`.
        expected: usize,
    },

    /// PNG encoding failed.
    #[error("image '{tag}': PNG encoding failed: {source}")]
    ImageEncode {
        /// Summary tag.
        tag: String,
        /// Encoder error.
        #[source]
        source: image::ImageError,
    },

    /// A histogram could not be built from the given values.
    #[error("histogram '{tag}': {reason}")]
    Histogram {
        /// Summary tag.
        tag: String,
        /// Why (empty input, NaN/inf values, ...).
        reason: String,
    },

    /// A name that becomes a path component is unusable.
    #[error("invalid {what} name {name:?}: {reason}")]
    InvalidName {
        /// What the name is for ("experiment", ...).
        what: &'static str,
        /// The offending name.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },

    /// JSON serialization of `path` failed.
    #[error("cannot serialize JSON for {path}: {source}")]
    Json {
        /// File that was going to be written.
        path: PathBuf,
        /// Serializer error.
        #[source]
        source: serde_json::Error,
    },

    /// A JSON file (e.g. `meta.json`, `results.json`) could not be parsed.
    #[error("cannot parse JSON file {path}: {source}")]
    ParseJson {
        /// File that was read.
        path: PathBuf,
        /// Parser error (includes line and column).
        #[source]
        source: serde_json::Error,
    },

    /// No run directory matches a run id or path.
    #[error(
        "no run '{query}' under {root} (give a run directory, or a run id or its unique prefix)"
    )]
    RunNotFound {
        /// What the user asked for.
        query: String,
        /// Root folder that was searched.
        root: PathBuf,
    },

    /// A run id prefix matches several runs.
    #[error("'{query}' matches {} runs: {}", matches.len(), matches.join(", "))]
    AmbiguousRun {
        /// What the user asked for.
        query: String,
        /// `experiment/run_id` of every match.
        matches: Vec<String>,
    },

    /// An experiment folder does not exist under the runs root.
    #[error("no experiment '{experiment}' under {root} (found: {})", if available.is_empty() { "none".to_owned() } else { available.join(", ") })]
    UnknownExperiment {
        /// The experiment asked for.
        experiment: String,
        /// Root folder that was searched.
        root: PathBuf,
        /// Experiments that do exist there.
        available: Vec<String>,
    },

    /// A TOML config file could not be parsed.
    #[error("cannot parse TOML config {path}: {source}")]
    ConfigParse {
        /// Config file (`"<string>"` when parsed from memory).
        path: PathBuf,
        /// Parser error (includes line and column).
        #[source]
        source: toml::de::Error,
    },

    /// A config's `base = "..."` cannot be followed.
    #[error("config {path}: `base`: {reason}")]
    ConfigBase {
        /// The config naming the base.
        path: PathBuf,
        /// What is wrong (not a string, a cycle, too deep).
        reason: String,
    },

    /// The resolved config could not be rendered back to TOML.
    #[error("cannot render resolved config as TOML: {source}")]
    ConfigRender {
        /// Serializer error.
        #[source]
        source: toml::ser::Error,
    },

    /// An override is not of the form `key.sub=value`.
    #[error("malformed config override {arg:?}: {reason}")]
    OverrideSyntax {
        /// The raw override argument.
        arg: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// An override names a key the base config does not have (usually a typo).
    #[error(
        "config override sets unknown key '{key}': '{missing}' does not exist in the base config"
    )]
    UnknownKey {
        /// The full dotted key of the override.
        key: String,
        /// The dotted prefix that could not be resolved.
        missing: String,
    },

    /// The resolved config does not fit the caller's config struct.
    #[error("invalid config value at '{key}': {message}")]
    ConfigDeserialize {
        /// Dotted path of the offending key (`"."` for the root).
        key: String,
        /// Deserializer message (expected type, unknown field, ...).
        message: String,
    },
}

impl Error {
    /// Wraps an I/O error with the path it happened on.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
