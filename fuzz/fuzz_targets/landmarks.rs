//! Landmark CSVs.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(t) = facelens_data::LandmarkTable::parse(text, Path::new("fuzz.csv")) {
        for r in t.iter() {
            let _ = t.get(&r.file);
        }
    }
});
