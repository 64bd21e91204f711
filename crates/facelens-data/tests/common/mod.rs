//! Where the integration tests find `../shared`, the data and models beside the repository.
//!
//! Tests that read it are `#[ignore = "needs ../shared"]`, so a plain `cargo test` reports them
//! as ignored; run on purpose (`-- --include-ignored`), a missing file fails the test by name
//! instead of letting it pass without checking anything.

use std::path::{Path, PathBuf};

/// `rel` inside `../shared`; panics naming the path when it is not there.
pub fn shared(rel: &str) -> PathBuf {
    let beside_repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../..");
    let p = beside_repo.canonicalize().unwrap_or(beside_repo).join("shared").join(rel);
    assert!(p.exists(), "{} is missing: this test needs ../shared beside the repository", p.display());
    p
}
