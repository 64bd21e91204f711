//! The decoder training entry point (DESIGN §9, §10): train the feature-to-face decoder on
//! UTKFace, evaluate it on held-out LFW faces, probe which embedding dimensions encode which
//! facial regions. `decoder-train` and `facelens train-decoder` are thin shells over [`train::run`];
//! the `decoder-ablation` and `feature-regions` experiments reuse it with their own configs.

pub mod config;
pub mod evaluate;
pub mod probe;
pub mod setup;
pub mod train;
