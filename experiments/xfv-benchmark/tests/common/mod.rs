//! Helpers for the experiments' end-to-end tests on real LFW pairs (xfv-benchmark's, and
//! fggb-ablation's through `#[path]`): one place that decides when such a test can run.

use std::path::{Path, PathBuf};

/// The repository root; every experiment crate sits two levels below it.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Whether `../shared/data/lfw` and the imported w600k_mbf checkpoint are present; when they are
/// not, says what is missing so that the test can pass as skipped.
pub fn real_data_present() -> bool {
    let pairs = repo_root().join("../shared/data/lfw/pairs.txt");
    let checkpoint = facelens_models::zoo::setup_checkpoint(&facelens_models::zoo::w600k_mbf())
        .expect("setup model");
    if pairs.is_file() && checkpoint.is_file() {
        return true;
    }
    eprintln!(
        "SKIPPED: needs {} and {} (run scripts/setup.sh)",
        pairs.display(),
        checkpoint.display()
    );
    false
}

/// The single run directory under `<out>/<experiment>/`.
pub fn only_run(out: &Path, experiment: &str) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(out.join(experiment))
        .expect("experiment folder")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs.pop().expect("one run")
}
