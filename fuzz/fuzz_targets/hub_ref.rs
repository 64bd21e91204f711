//! `hf:` references: whatever parses must be plain names, and resolving it in an empty cache
//! must not leave that cache.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(spec) = std::str::from_utf8(data) else { return };
    let Ok(r) = facelens_models::hub::HubRef::parse(spec) else { return };
    for part in r.repo.split('/').chain(r.revision.split('/')).chain(r.file.split('/')) {
        assert!(!part.is_empty() && part != "." && part != ".." && !part.contains('\\'), "{spec:?} parsed into {r:?}");
    }
    std::env::set_var("HF_HUB_CACHE", "/nonexistent-facelens-fuzz-cache");
    assert!(!matches!(r.resolve_cached(), Ok(Some(_))), "{spec:?} resolved in an empty cache");
});
