//! The binary end to end on real LFW pairs with w600k_mbf: `ci.toml` cut to one genuine and one
//! impostor pair and 25 % steps (about half a CPU-minute, nearly all of it the shared Jacobian of
//! the four images), checking the run directory, the table and the per-variant TensorBoard runs.
//!
//! Needs `../shared/data/lfw` beside the repository and `checkpoints/w600k_mbf.safetensors`
//! (`scripts/setup.sh`); without them the test says so and passes.

#[path = "../../xfv-benchmark/tests/common/mod.rs"]
mod common;

use std::process::Command;

use common::{only_run, real_data_present, repo_root};

#[test]
fn ci_config_on_two_pairs_writes_the_table_and_a_run_per_variant() {
    if !real_data_present() {
        return;
    }
    let root = repo_root();
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_fggb-ablation"))
        .args([
            "--config",
            "experiments/fggb-ablation/ci.toml",
            "--device",
            "cpu",
            "--set",
            "subset.first=1",
            "--set",
            "protocol.step=25",
            "--out",
        ])
        .arg(tmp.path())
        .current_dir(&root)
        .env("CI", "1")
        .output()
        .expect("binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "fggb-ablation failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("| spec | normalised |"), "{stdout}");
    assert!(stdout.contains("| raw-embedding | raw |"), "{stdout}");

    let run = &only_run(tmp.path(), "fggb-ablation");
    for f in [
        "config.toml",
        "meta.json",
        "results.json",
        "records.json",
        "timings.json",
        "table.md",
        "table.csv",
    ] {
        assert!(run.join(f).is_file(), "{f} missing in {}", run.display());
    }
    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("results.json")).expect("results"))
            .expect("json");
    assert_eq!(
        results["steps"],
        serde_json::json!([0.0, 25.0, 50.0, 75.0, 100.0])
    );
    let rows = results["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 2);
    for row in rows {
        for kind in ["similarity", "dissimilarity"] {
            assert_eq!(row[kind]["pairs"], 1, "{row}");
            for mode in ["deletion_auc", "insertion_auc"] {
                let auc = row[kind][mode].as_f64().expect("auc");
                assert!((0.0..=100.0).contains(&auc), "{kind} {mode}: {auc}");
            }
            // p = 0 Deletion is the clean pair, classified correctly by construction.
            assert_eq!(row[kind]["deletion"][0], 1.0);
        }
        assert!(row["seconds_per_pair"].as_f64().expect("seconds") > 0.0);
    }
    assert_eq!(
        std::fs::read_to_string(run.join("table.csv"))
            .expect("csv")
            .lines()
            .count(),
        3
    );
    for v in ["spec", "raw-embedding"] {
        let events = facelens_board::reader::event_files(&run.join("variants").join(v)).expect(v);
        assert_eq!(events.len(), 1, "one TensorBoard run for {v}");
    }
}
