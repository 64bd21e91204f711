//! ONNX protobuf decoding and the pairing of parameter-bearing nodes with their initialisers.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = facelens_models::onnx::OnnxGraph::from_bytes(Path::new("fuzz.onnx"), data) {
        let _ = m.parameter_nodes();
    }
});
