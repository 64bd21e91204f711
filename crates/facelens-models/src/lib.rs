//! Face-recognition backbones for facelens.
//!
//! * [`mobilefacenet`], [`iresnet`] and [`sface`]: candle modules with the original parameter names.
//! * [`zoo`]: named models with their preprocessing, so it is never guessed.
//! * [`onnx`]: ONNX protobuf import into safetensors.
//! * [`weights`]: strict checkpoint loading and atomic saving.
//! * [`hub`]: `hf:` references resolved through the Hugging Face cache.
//! * [`im2col`]: the CPU convolution kernels (im2col, col2im, GEMM) shared by the engine, the
//!   detector and the decoder.
//! * [`reverse`]: a frozen-network engine (fast forward and input-only vector-Jacobian
//!   products) used by the saliency methods.

pub mod backbone;
pub mod detect;
pub mod error;
pub mod hub;
pub mod im2col;
pub mod iresnet;
pub mod mobilefacenet;
pub mod onnx;
pub mod preprocess;
pub mod reverse;
pub mod scrfd;
pub mod sface;
pub mod weights;
pub mod zoo;

pub use backbone::{Backbone, FaceModel};
pub use error::{ModelError, Result};
pub use zoo::{ModelSpec, ModelSource};
