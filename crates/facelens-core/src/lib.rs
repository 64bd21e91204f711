//! The bottom crate of facelens: jobs that several crates need and that must behave the same
//! everywhere.
//!
//! * [`fs`]: atomic file writes (temp file, fsync, rename, fsync of the folder).
//! * [`rng`]: the seeded generators whose streams results depend on.
//! * [`device`]: `--device auto|cpu|cuda|cuda:N`.
//! * [`alloc`]: allocator settings the binaries apply at start.

pub mod alloc;
pub mod device;
pub mod fs;
pub mod rng;

pub use device::{describe_device, parse_device, DeviceSpec};
pub use fs::{check_target, open_regular, write_atomic, write_atomic_with};

/// Errors of this crate that are not plain I/O.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("device `{spec}`: expected auto, cpu, cuda or cuda:N")]
    UnknownDevice { spec: String },
    #[error("device `{spec}`: this build has no CUDA support (rebuild with `--features cuda`, or use `cpu`)")]
    NoCuda { spec: String },
    #[error("device `{spec}`: cannot open CUDA device {ordinal}")]
    OpenCuda {
        spec: String,
        ordinal: usize,
        #[source]
        source: candle_core::Error,
    },
}

pub type Result<T> = std::result::Result<T, Error>;
