//! Paths shared by the end-to-end tests: the repository and `../shared` beside it.
//!
//! Tests that read `../shared` or fetched weights are `#[ignore = "needs ..."]`, so a plain
//! `cargo test` reports them as ignored; run on purpose (`-- --include-ignored`), a missing file
//! fails the test by name instead of letting it pass without checking anything.
#![allow(dead_code)]

use std::path::PathBuf;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// `rel` inside `../shared`, the data and models beside the repository; panics naming the path
/// when it is not there.
pub fn shared(rel: &str) -> PathBuf {
    let p = repo().parent().expect("the repository has a parent folder").join("shared").join(rel);
    assert!(p.exists(), "{} is missing: this test needs ../shared beside the repository", p.display());
    p
}

/// An LFW photo, as a command-line argument.
pub fn lfw(rel: &str) -> String {
    shared("data/lfw/images").join(rel).display().to_string()
}

/// LFW's landmark table, as a command-line argument.
pub fn landmarks() -> String {
    shared("data/lfw/landmarks.csv").display().to_string()
}
