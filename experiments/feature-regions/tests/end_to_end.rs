//! feature-regions on its CI config with the committed decoder. Needs the shared data and the
//! fetched weights, so it is ignored by default (`-- --include-ignored` runs it).

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

#[test]
#[ignore = "needs ../shared and fetched weights (scripts/setup.sh)"]
fn ci_config_writes_the_summary_and_one_dominant_region_per_dimension() {
    let root = repo_root();
    for need in ["checkpoints/w600k_mbf.safetensors", "checkpoints/decoder-w600k_mbf.safetensors", "../shared/data/lfw/pairs.txt"] {
        assert!(root.join(need).is_file(), "{need} is missing (fetch weights with scripts/setup.sh; ../shared holds the data)");
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_feature-regions"))
        .current_dir(&root)
        .env("CI", "1")
        .env("RAYON_NUM_THREADS", "1")
        .args(["--config", "experiments/feature-regions/ci.toml", "--set"])
        .arg(format!("runs_root={}", tmp.path().display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let run = std::fs::read_dir(tmp.path().join("feature-regions")).unwrap().next().unwrap().unwrap().path();
    for f in ["summary.md", "dominant_regions.json", "region_stats.json", "region_mass.csv", "region_panel.png", "results.json"] {
        assert!(run.join(f).is_file(), "missing {f}");
    }
    let dominant: serde_json::Value = serde_json::from_slice(&std::fs::read(run.join("dominant_regions.json")).unwrap()).unwrap();
    let dominant = dominant.as_array().unwrap();
    assert_eq!(dominant.len(), 512);
    // The dominant region is the most concentrated one, so its concentration is at least 1.
    assert!(dominant.iter().all(|d| d["concentration"].as_f64().unwrap() >= 1.0 - 1e-9));
    let results: serde_json::Value = serde_json::from_slice(&std::fs::read(run.join("results.json")).unwrap()).unwrap();
    let counts: u64 = results["dominant_counts"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(counts, 512);
    assert_eq!(results["faces"], 2);
}
