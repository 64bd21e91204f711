//! decoder-train TOML configs with `--set` overrides: the text up to the first NUL byte is the
//! file, each further NUL-separated part one override. Whatever loads has passed validation.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.split(|b| *b == 0);
    let file = parts.next().unwrap_or_default();
    let Ok(overrides) = parts.map(|p| std::str::from_utf8(p).map(str::to_string)).collect::<Result<Vec<_>, _>>() else { return };
    let p = common::scratch("config.toml", file);
    if let Ok(loaded) = facelens_recon::run::ExperimentConfig::load(&p, &overrides) {
        loaded.config.validate().expect("a loaded config is valid");
    }
});
