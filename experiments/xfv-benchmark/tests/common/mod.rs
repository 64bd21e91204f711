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

/// What TensorBoard's own `EventAccumulator` reads from a log directory (`scripts/tb_readback.py`,
/// run with the venv `scripts/check-tensorboard.sh` makes, or `FACELENS_PYTHON`); fails naming the
/// interpreter when it cannot import TensorBoard.
pub fn read_with_tensorboard(logdir: &Path) -> serde_json::Value {
    let python = std::env::var_os("FACELENS_PYTHON").map(PathBuf::from).unwrap_or_else(|| {
        let venv = std::env::var_os("FACELENS_PY_VENV")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(&std::env::var_os("HOME").expect("HOME")).join(".cache/facelens-venv"));
        venv.join("bin/python")
    });
    let out = std::process::Command::new(&python)
        .arg(repo_root().join("scripts/tb_readback.py"))
        .arg(logdir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} (scripts/check-tensorboard.sh --venv-only makes it): {e}", python.display()));
    assert!(
        out.status.success(),
        "{} scripts/tb_readback.py failed (scripts/check-tensorboard.sh --venv-only makes the venv):\n{}",
        python.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("tb_readback.py prints JSON")
}
