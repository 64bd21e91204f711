//! Decoder files and training checkpoints: safetensors header, decoder metadata (sizes bounded
//! before anything is built), tensors.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let p = common::scratch("decoder.safetensors", data);
    let _ = facelens_recon::load_decoder(&p, &candle_core::Device::Cpu);
    let _ = facelens_recon::Checkpoint::load(&p, &candle_core::Device::Cpu);
});
