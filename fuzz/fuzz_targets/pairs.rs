//! LFW pair lists (pairs.txt).
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = facelens_data::parse_pairs(text, Path::new("pairs.txt"));
});
