//! The binary end to end on real LFW pairs with w600k_mbf: a tiny config (a seeded random draw of
//! 2 + 2 pairs, 1 method, 25 % steps) run whole, then as shards 1/2 and 2/2 merged, which must give
//! identical tables (each shard repeats the draw on its own); then grown from a 1 + 1 draw and
//! switched to another perturbation with another method through the curve cache, which must give
//! the tables and records of runs that measured everything.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{only_run, read_with_tensorboard, repo_root, require_real_data};

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
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == ext)).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn json(dir: &Path, f: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join(f)).expect("file")).expect("json")
}

fn same_files(a: &Path, b: &Path, files: &[&str], what: &str) {
    for f in files {
        let (x, y) = (std::fs::read(a.join(f)).expect("first"), std::fs::read(b.join(f)).expect("second"));
        assert!(x == y, "{f} differs: {what}");
    }
}

const TABLES: [&str; 5] = ["tables.md", "table1.csv", "table2.csv", "table3.csv", "curves.csv"];

#[test]
#[ignore = "needs ../shared, fetched weights (scripts/setup.sh) and the TensorBoard venv (scripts/check-tensorboard.sh)"]
fn tiny_run_shards_and_cache_give_the_same_tables() {
    require_real_data();
    let tmp = tempfile::tempdir().expect("tempdir");
    let arg = |p: &Path| p.to_string_lossy().into_owned();
    let config = arg(&repo_root().join("experiments/xfv-benchmark/ci.toml"));
    let common = [
        "--config", &config, "--device", "cpu",
        "--set", "subset.limit=2", "--set", "subset.select=random", "--set", "subset.seed=7",
        "--set", "methods=[{kind=\"score-gradient\"}]", "--set", "protocol.step=25",
        "--set", "output.panels=1", "--set", "protocol.perturb=\"both\"", "--set", "protocol.also_probe=true",
    ];
    let (whole, shards, merged) = (tmp.path().join("whole"), tmp.path().join("shards"), tmp.path().join("merged"));

    xfv(&[&common[..], &["--no-cache", "--out", &arg(&whole)]].concat());
    let run = only_run(&whole, "xfv-benchmark");
    for f in ["config.toml", "meta.json", "results.json", "records.json", "cost.md", "cost.csv", "summary.md"].iter().chain(&TABLES) {
        assert!(run.join(f).is_file(), "{f} missing in {}", run.display());
    }
    assert!(!whole.join("cache").exists(), "--no-cache writes no cache");
    // Score gradient costs one forward (linearisation) and one backward row per face.
    let timings = json(&run, "timings.json");
    let key = "w600k_mbf/score-gradient";
    let n = timings["explanations"][key].as_u64().expect("explanations");
    assert_eq!(n, 4);
    assert_eq!(timings["forward_images"][key].as_u64(), Some(2 * n));
    assert_eq!(timings["backward_rows"][key].as_u64(), Some(2 * n));
    let events = std::fs::read_dir(&run)
        .expect("run dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("events.out.tfevents."))
        .map(|e| e.metadata().expect("stat").len())
        .collect::<Vec<_>>();
    assert!(events.len() == 1 && events[0] > 1000, "one event file holding the logs: {events:?}");
    assert!(!files_with_ext(&run.join("plots"), "png").is_empty());
    assert_eq!(files_with_ext(&run.join("panels"), "png").len(), 2, "one genuine and one impostor panel");
    let results = json(&run, "results.json");
    assert_eq!(results["pairs"]["selected"], 4);
    assert_eq!(results["steps"], serde_json::json!([0.0, 25.0, 50.0, 75.0, 100.0]));
    for table in ["table1", "table2"] {
        let row = &results[table]["rows"][0];
        assert_eq!(row["method"], "score-gradient");
        assert_eq!(row["pairs"], 2, "{table}: 2 accepted genuine / rejected impostor pairs");
        let auc = row["deletion_auc"].as_f64().expect("auc");
        assert!((0.0..=100.0).contains(&auc), "{auc}");
        // p = 0 Deletion is the clean pair, which is classified correctly by construction.
        assert_eq!(row["deletion"][0], 1.0);
        assert_eq!(row["insertion"][4], 1.0);
        let probe = &results[table]["rows"][1];
        assert_eq!(probe["method"], "score-gradient (probe only)");
        assert_eq!(probe["deletion"][0], 1.0);
    }
    tensorboard_shows_the_curves(&run, &results);

    // Shards, each repeating the draw, merge into the unsharded run's tables and panels.
    xfv(&[&common[..], &["--no-cache", "--out", &arg(&shards), "--shard", "1/2"]].concat());
    xfv(&[&common[..], &["--no-cache", "--out", &arg(&shards), "--shard", "2/2"]].concat());
    xfv(&["merge", &arg(&shards.join("xfv-benchmark")), "--out", &arg(&merged)]);
    let merged_run = only_run(&merged, "xfv-benchmark");
    same_files(&run, &merged_run, &[&TABLES[..], &["results.json", "records.json", "config.toml"]].concat(), "unsharded vs merged shards");
    let (pa, pb) = (files_with_ext(&run.join("panels"), "png"), files_with_ext(&merged_run.join("panels"), "png"));
    assert_eq!(pa.iter().map(|p| p.file_name()).collect::<Vec<_>>(), pb.iter().map(|p| p.file_name()).collect::<Vec<_>>());
    same_files(&run.join("panels"), &merged_run.join("panels"), &pa.iter().map(|p| p.file_name().unwrap().to_str().unwrap()).collect::<Vec<_>>(), "panels");

    // Growing a subset: the 1 + 1 draw is nested in the 2 + 2 one, so the cache serves its pairs
    // and only the 2 new ones are measured; the tables equal the run that measured all 4.
    let cache = tmp.path().join("cache");
    let (small, grown) = (tmp.path().join("small"), tmp.path().join("grown"));
    let cached = ["--set", "output.panels=0", "--cache", &arg(&cache)];
    xfv(&[&common[..], &cached, &["--set", "subset.limit=1", "--out", &arg(&small)]].concat());
    xfv(&[&common[..], &cached, &["--out", &arg(&grown)]].concat());
    let grown_run = only_run(&grown, "xfv-benchmark");
    same_files(&run, &grown_run, &TABLES, "a run served partly from the cache vs one that measured everything");
    assert_eq!(json(&run, "records.json")["records"], json(&grown_run, "records.json")["records"]);
    let timings = json(&grown_run, "timings.json");
    assert_eq!(timings["cached"][key], 2, "the 1 + 1 pairs come from the cache");
    assert_eq!(timings["explanations"][key], 2, "only the 2 new pairs are explained");

    // Another perturbation and another method: under "by-kind" a genuine pair's curves are the
    // probe-only curves and an impostor pair's the both-images curves, both in the cache already,
    // so only the random map is measured; the records equal a run without the cache.
    let (added, fresh) = (tmp.path().join("added"), tmp.path().join("fresh"));
    let by_kind = [
        "--set", "methods=[{kind=\"score-gradient\"}, {kind=\"random\"}]",
        "--set", "protocol.perturb=\"by-kind\"", "--set", "protocol.also_probe=false",
    ];
    xfv(&[&common[..], &cached, &by_kind, &["--out", &arg(&added)]].concat());
    xfv(&[&common[..], &by_kind, &["--set", "output.panels=0", "--no-cache", "--out", &arg(&fresh)]].concat());
    let (added_run, fresh_run) = (only_run(&added, "xfv-benchmark"), only_run(&fresh, "xfv-benchmark"));
    assert_eq!(json(&added_run, "records.json")["records"], json(&fresh_run, "records.json")["records"]);
    same_files(&added_run, &fresh_run, &TABLES, "by-kind from the cache vs measured");
    let timings = json(&added_run, "timings.json");
    assert_eq!(timings["cached"][key], 4, "score gradient comes from the cache on all 4 pairs");
    assert_eq!(timings["explanations"]["w600k_mbf/random"], 4);
    assert!(timings["explanations"].get(key).is_none(), "score gradient is not explained again");
}

/// TensorBoard's own reader finds every row's mean curves as scalars whose steps are the
/// percentages of pixels perturbed, their AUCs at step 0, and the curve figures as images.
fn tensorboard_shows_the_curves(run: &Path, results: &serde_json::Value) {
    let tb = read_with_tensorboard(run);
    for (table, rows) in [("table1", ["score-gradient", "score-gradient_probe_only"]), ("table2", ["score-gradient", "score-gradient_probe_only"])] {
        for (i, method) in rows.iter().enumerate() {
            let row = &results[table]["rows"][i];
            for mode in ["deletion", "insertion"] {
                let tag = format!("{table}/{method}/{mode}");
                let points = tb["scalars"][&tag].as_array().unwrap_or_else(|| panic!("no scalar {tag}: {}", tb["scalars"]));
                let steps: Vec<i64> = points.iter().map(|p| p["step"].as_i64().expect("step")).collect();
                assert_eq!(steps, [0, 25, 50, 75, 100], "{tag}: one point per percentage perturbed");
                for (p, want) in points.iter().zip(row[mode].as_array().expect("curve")) {
                    let (got, want) = (p["value"].as_f64().expect("value"), want.as_f64().expect("accuracy"));
                    assert!((got - want).abs() < 1e-6, "{tag}: {got} vs results.json {want}");
                }
                let auc = &tb["scalars"][format!("auc/{tag}")][0];
                assert_eq!(auc["step"], 0);
                let want = row[format!("{mode}_auc")].as_f64().expect("auc");
                assert!((auc["value"].as_f64().expect("auc") - want).abs() < 1e-4, "auc/{tag}");
            }
        }
    }
    for plot in ["plots/table1-deletion", "plots/table1-insertion", "plots/table2-deletion", "plots/table2-insertion"] {
        let image = &tb["images"][plot][0];
        assert!(image["width"].as_i64().expect("width") > 300, "{plot}: {image}");
    }
}
