//! The ablation on its CI config: one decoder-train run per variant and a table whose rows
//! really differ in the ablated switch. Needs the shared data and the w600k_mbf checkpoint, so it
//! is ignored by default (`-- --include-ignored` runs it).

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

#[test]
#[ignore = "needs ../shared and fetched weights (scripts/setup.sh)"]
fn ci_config_trains_every_variant_and_writes_the_table() {
    let root = repo_root();
    for need in ["checkpoints/w600k_mbf.safetensors", "../shared/data/utkface/landmarks.csv", "../shared/data/lfw/pairs.txt"] {
        assert!(root.join(need).is_file(), "{need} is missing (fetch weights with scripts/setup.sh; ../shared holds the data)");
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_decoder-ablation"))
        .current_dir(&root)
        .env("CI", "1")
        .env("RAYON_NUM_THREADS", "1")
        .args(["--config", "experiments/decoder-ablation/ci.toml", "--set"])
        .arg(format!("runs_root={}", tmp.path().display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let run = std::fs::read_dir(tmp.path().join("decoder-ablation")).unwrap().next().unwrap().unwrap().path();
    for f in ["table.md", "table.csv", "table.json", "results.json", "config.toml"] {
        assert!(run.join(f).is_file(), "missing {f}");
    }
    let rows: serde_json::Value = serde_json::from_slice(&std::fs::read(run.join("table.json")).unwrap()).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["variant"], "pixel");
    for r in rows {
        assert!(r["identity_cos"].as_f64().unwrap().is_finite());
        assert!(r["psnr_db"].as_f64().unwrap() > 0.0);
        let variant_run = PathBuf::from(r["run_dir"].as_str().unwrap());
        assert!(variant_run.starts_with(&run), "variant runs live inside the ablation run");
        // The pixel-only variant never computes the identity term; the other one does.
        let losses = std::fs::read_to_string(variant_run.join("losses.csv")).unwrap();
        let identity: Vec<&str> = losses.lines().skip(1).map(|l| l.split(',').nth(3).unwrap()).collect();
        let has_identity = identity.iter().all(|v| !v.is_empty() && v.parse::<f64>().unwrap() > 0.0);
        assert_eq!(has_identity, r["variant"] != "pixel", "{losses}");
    }
    assert_eq!(std::fs::read_to_string(run.join("table.md")).unwrap().lines().count(), 4);
    // A misspelt variant is refused before anything is trained.
    let bad = Command::new(env!("CARGO_BIN_EXE_decoder-ablation"))
        .current_dir(&root)
        .args(["--config", "experiments/decoder-ablation/ci.toml", "--only", "nope"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("nope"));
}
