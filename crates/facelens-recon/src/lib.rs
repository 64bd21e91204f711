//! Feature-to-face reconstruction for facelens (docs/design.md §9).
//!
//! A decoder learns to turn a face-recognition embedding back into a face; perturbing one
//! embedding dimension and watching what changes in the reconstruction maps features to facial
//! regions. The crate is organised by responsibility:
//!
//! * [`decoder`]: the network `D: R^N -> 3x112x112` and its configuration; [`conv3x3`] its
//!   convolutions with a GEMM backward pass on the CPU, [`norm_act`] its BatchNorm, PReLU
//!   and upsampling as single passes on the CPU.
//! * [`losses`]: masked L1, identity loss through the frozen backbone, SSIM ([`ssim_op`] its
//!   single-pass CPU version).
//! * [`adamw`], [`schedule`], [`checkpoint`], [`trainer`]: a training step whose whole
//!   state (weights, BatchNorm buffers, optimizer moments, step, `facelens_core` RNG) is saved atomically, so a
//!   resumed run reproduces the uninterrupted one exactly; NaN steps are skipped and recovered.
//! * [`data`]: UTKFace/LFW crops, cached embeddings, the deterministic batch order and the
//!   worker-thread loader.
//! * [`metrics`], [`eval`]: PSNR, SSIM, identity cosine and verification success rates.
//! * [`probe`]: per-dimension region maps, per-region statistics and panels.
//! * [`dfv`]: the DFV explainer (`facelens_saliency::Explainer`) built on the probe.
//! * [`run`]: a whole training run (config, loop, checkpoints, evaluation, probing, run
//!   directory files), reporting progress through [`run::TrainObserver`].
//!
//! The library never prints; binaries own logging and progress bars through the observer.

pub mod adamw;
mod bounds;
pub mod checkpoint;
pub mod conv3x3;
pub mod data;
pub mod decoder;
pub mod dfv;
pub mod error;
pub mod eval;
pub mod losses;
pub mod metrics;
pub mod net_loss;
pub mod norm_act;
pub mod probe;
pub mod run;
pub mod schedule;
pub mod ssim_op;
pub mod trainer;

pub use adamw::{AdamW, AdamWConfig};
pub use checkpoint::{load_decoder, Checkpoint, CheckpointMeta};
pub use data::{
    AlignedFiles, Batch, BatchLoader, BatchPlan, CropSource, EmbeddingTable, EvalFace, TrainData,
};
pub use decoder::{ActivationKind, Decoder, DecoderConfig, NormKind, UpsampleKind};
pub use dfv::Dfv;
pub use error::{ReconError, Result};
pub use eval::{evaluate, NamedThreshold, ReconMetrics};
pub use losses::{FrozenBackbone, IdentityBackend, LossConfig, ModelInput};
pub use run::{TrainObserver, TrainResults};
pub use trainer::{StepOutcome, StepReport, TrainConfig, Trainer};
