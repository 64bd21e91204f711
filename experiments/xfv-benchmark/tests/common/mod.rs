//! Helpers for the benchmark's end-to-end tests on real LFW pairs.

use std::path::{Path, PathBuf};

/// The repository root; every experiment crate sits two levels below it.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Fails with what is missing unless `../shared/data/lfw` and the imported w600k_mbf checkpoint
/// are present (the tests that call this are `#[ignore]`d, so a run without them reports them as
/// ignored rather than passed).
pub fn require_real_data() {
    let root = repo_root();
    for need in [root.join("../shared/data/lfw/pairs.txt"), root.join("checkpoints/w600k_mbf.safetensors")] {
        assert!(need.is_file(), "needs {} (../shared beside the repository; scripts/setup.sh)", need.display());
    }
}

/// The single run directory under `<out>/<experiment>/`.
pub fn only_run(out: &Path, experiment: &str) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(out.join(experiment))
        .expect("experiment folder")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs.pop().expect("one run")
}
