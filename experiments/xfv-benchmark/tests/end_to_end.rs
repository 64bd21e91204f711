//! The binary end to end on real LFW pairs with w600k_mbf: a tiny config (a seeded random draw of
//! 2 + 2 pairs, 1 method, 25 % steps) run whole, then as shards 1/2 and 2/2 merged, which must give
//! identical tables (each shard repeats the draw on its own), and grown from a 1 + 1 draw with
//! `--reuse`, which must give identical records.
//!
//! Needs `../shared/data/lfw` beside the repository and `checkpoints/w600k_mbf.safetensors`
//! (`scripts/setup.sh`); without them the test says so and passes.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{only_run, real_data_present, repo_root};

fn xfv(args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_xfv-benchmark"))
        .args(args)
        .current_dir(repo_root())
        .env("CI", "1")
        .output()
        .expect("binary runs");
    assert!(
        out.status.success(),
        "xfv-benchmark {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn files_with_ext(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == ext))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn tiny_run_is_complete_and_shards_merge_exactly() {
    if !real_data_present() {
        return;
    }
    let root = repo_root();
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = tmp.path().join("tiny.toml");
    let ci =
        std::fs::read_to_string(root.join("experiments/xfv-benchmark/ci.toml")).expect("ci.toml");
    std::fs::write(&config, ci).expect("write config");
    let config = config.to_string_lossy().into_owned();
    let common = [
        "--config",
        &config,
        "--device",
        "cpu",
        "--set",
        "subset.first=2",
        "--set",
        "subset.select=random",
        "--set",
        "subset.seed=7",
        "--set",
        "methods=[\"score-gradient\"]",
        "--set",
        "protocol.step=25",
        "--set",
        "output.panels=1",
        "--set",
        "protocol.also_probe=true",
    ];
    let (whole, shards, merged) = (
        tmp.path().join("whole"),
        tmp.path().join("shards"),
        tmp.path().join("merged"),
    );
    let arg = |p: &Path| p.to_string_lossy().into_owned();

    xfv(&[&common[..], &["--out", &arg(&whole)]].concat());
    let run = only_run(&whole, "xfv-benchmark");
    for f in [
        "config.toml",
        "meta.json",
        "results.json",
        "records.json",
        "tables.md",
        "table1.csv",
        "table2.csv",
        "table3.csv",
        "curves.csv",
        "cost.md",
        "cost.csv",
        "summary.md",
    ] {
        assert!(run.join(f).is_file(), "{f} missing in {}", run.display());
    }
    // Score gradient costs one forward (linearisation) and one backward row per face.
    let timings: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("timings.json")).expect("timings")).expect("json");
    let key = "w600k_mbf/score-gradient";
    let n = timings["explanations"][key].as_u64().expect("explanations");
    assert!(n > 0);
    assert_eq!(timings["forward_images"][key].as_u64(), Some(2 * n));
    assert_eq!(timings["backward_rows"][key].as_u64(), Some(2 * n));
    let events: Vec<_> = std::fs::read_dir(&run)
        .expect("run dir")
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("events.out.tfevents.")
        })
        .collect();
    assert_eq!(events.len(), 1);
    assert!(
        events[0].metadata().expect("stat").len() > 1000,
        "event file holds the logs"
    );
    assert!(!files_with_ext(&run.join("plots"), "png").is_empty());
    assert_eq!(
        files_with_ext(&run.join("panels"), "png").len(),
        2,
        "one genuine and one impostor panel"
    );

    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("results.json")).expect("results"))
            .expect("json");
    assert_eq!(results["pairs"]["selected"], 4);
    assert_eq!(
        results["steps"],
        serde_json::json!([0.0, 25.0, 50.0, 75.0, 100.0])
    );
    for table in ["table1", "table2"] {
        let row = &results[table]["rows"][0];
        assert_eq!(row["method"], "score-gradient");
        assert_eq!(
            row["pairs"], 2,
            "{table}: 2 accepted genuine / rejected impostor pairs"
        );
        let auc = row["deletion_auc"].as_f64().expect("auc");
        assert!((0.0..=100.0).contains(&auc), "{auc}");
        // p = 0 Deletion is the clean pair, which is classified correctly by construction.
        assert_eq!(row["deletion"][0], 1.0);
        assert_eq!(row["insertion"][4], 1.0);
        // protocol.also_probe: the same maps, curves with only the probe perturbed.
        let probe = &results[table]["rows"][1];
        assert_eq!(probe["method"], "score-gradient (probe only)");
        assert_eq!(probe["pairs"], 2);
        assert_eq!(probe["deletion"][0], 1.0);
    }

    xfv(&[&common[..], &["--out", &arg(&shards), "--shard", "1/2"]].concat());
    xfv(&[&common[..], &["--out", &arg(&shards), "--shard", "2/2"]].concat());
    xfv(&[
        "merge",
        &arg(&shards.join("xfv-benchmark")),
        "--out",
        &arg(&merged),
    ]);
    let merged_run = only_run(&merged, "xfv-benchmark");
    for f in [
        "results.json",
        "records.json",
        "tables.md",
        "table1.csv",
        "table2.csv",
        "table3.csv",
        "curves.csv",
        "config.toml",
    ] {
        let (a, b) = (
            std::fs::read(run.join(f)).expect("whole"),
            std::fs::read(merged_run.join(f)).expect("merged"),
        );
        assert!(
            a == b,
            "{f} differs between the unsharded run and the merged shards"
        );
    }
    // Growing: the 1 + 1 draw is nested in the 2 + 2 one; reusing it measures only the rest.
    let (small, grown) = (tmp.path().join("small"), tmp.path().join("grown"));
    let no_panels = ["--set", "output.panels=0"];
    let one = ["--set", "subset.first=1"];
    xfv(&[&common[..], &one, &no_panels, &["--out", &arg(&small)]].concat());
    let small_run = only_run(&small, "xfv-benchmark");
    xfv(&[&common[..], &no_panels, &["--out", &arg(&grown), "--reuse", &arg(&small_run)]].concat());
    let grown_run = only_run(&grown, "xfv-benchmark");
    let json = |dir: &Path, f: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(dir.join(f)).expect("file")).expect("json")
    };
    // The config hash differs (no panels); the pairs' records and the tables may not.
    assert_eq!(json(&run, "records.json")["records"], json(&grown_run, "records.json")["records"]);
    for f in ["table1.csv", "table2.csv", "curves.csv"] {
        assert!(
            std::fs::read(run.join(f)).expect("whole") == std::fs::read(grown_run.join(f)).expect("grown"),
            "{f} differs between the whole run and the run grown with --reuse"
        );
    }
    let timings: serde_json::Value =
        serde_json::from_slice(&std::fs::read(grown_run.join("timings.json")).expect("timings")).expect("json");
    assert_eq!(timings["reused_pairs"], 2, "the 1 + 1 pairs are taken, not measured");
    assert_eq!(timings["explanations"]["w600k_mbf/score-gradient"], 2, "only the 2 new pairs are explained");
    // A run under another protocol is refused, naming the directory and the section.
    let refused = Command::new(env!("CARGO_BIN_EXE_xfv-benchmark"))
        .args([&common[..], &["--set", "protocol.step=50", "--out", &arg(&grown), "--reuse", &arg(&small_run)]].concat())
        .current_dir(repo_root())
        .env("CI", "1")
        .output()
        .expect("binary runs");
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("protocol") && err.contains(&arg(&small_run)), "{err}");

    // Adding a method under perturb = "by-kind": score gradient's curves come from the
    // both + probe-only run (probe only for genuine pairs, both images for impostors), only the
    // random map is measured, and the records equal a fresh by-kind run of both methods.
    let (added, fresh) = (tmp.path().join("added"), tmp.path().join("fresh"));
    let by_kind = [
        "--set",
        "methods=[\"score-gradient\", \"random\"]",
        "--set",
        "protocol.perturb=\"by-kind\"",
        "--set",
        "protocol.also_probe=false",
    ];
    xfv(&[&common[..], &no_panels, &by_kind, &["--out", &arg(&added), "--reuse", &arg(&run)]].concat());
    xfv(&[&common[..], &no_panels, &by_kind, &["--out", &arg(&fresh)]].concat());
    let (added_run, fresh_run) = (only_run(&added, "xfv-benchmark"), only_run(&fresh, "xfv-benchmark"));
    assert_eq!(json(&added_run, "records.json")["records"], json(&fresh_run, "records.json")["records"]);
    let timings = json(&added_run, "timings.json");
    assert_eq!(timings["reused_pairs"], 0, "every pair still needs the random map");
    assert_eq!(timings["reused_explanations"][key], 4, "score gradient is taken on all 4 pairs");
    assert_eq!(timings["explanations"]["w600k_mbf/random"], 4);
    assert!(timings["explanations"].get(key).is_none(), "score gradient is not explained again");

    let (pa, pb) = (
        files_with_ext(&run.join("panels"), "png"),
        files_with_ext(&merged_run.join("panels"), "png"),
    );
    assert_eq!(
        pa.iter().map(|p| p.file_name()).collect::<Vec<_>>(),
        pb.iter().map(|p| p.file_name()).collect::<Vec<_>>()
    );
    for (a, b) in pa.iter().zip(&pb) {
        assert!(
            std::fs::read(a).expect("png") == std::fs::read(b).expect("png"),
            "{} differs",
            a.display()
        );
    }
}
