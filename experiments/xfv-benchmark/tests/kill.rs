//! `xfv-benchmark merge` killed with SIGKILL at random points: `--out` then holds either no run
//! or one complete run (every file an uninterrupted merge writes), and the staging folder a
//! killed merge leaves is removed by the next merge.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use facelens_eval::deletion::{MapKind, Perturb};
use facelens_protocol::config::Row;
use facelens_protocol::records::{MethodCurves, ModelInfo, ModelPairRecord, PairRecord, Records, RowCurves, Shard};

const KILLS: usize = 24;

/// Shard `i` of `n` of a 200-pair toy run (large enough that a merge takes a while to write).
fn records(i: usize, n: usize) -> Records {
    let shard = Shard { index: i, count: n };
    let steps: Vec<f64> = (0..=20).map(|k| 5.0 * k as f64).collect();
    let records = (0..200)
        .filter(|&j| shard.owns(j))
        .map(|j| {
            let genuine = j % 2 == 0;
            let curve: Vec<f32> = steps.iter().map(|p| if genuine { 0.9 - (*p as f32) / 150.0 } else { 0.1 + (*p as f32) / 150.0 }).collect();
            PairRecord {
                index: j,
                line: j + 2,
                fold: 1 + j % 10,
                a: format!("a{j}"),
                b: format!("b{j}"),
                genuine,
                skipped: None,
                models: vec![ModelPairRecord {
                    clean_score: if genuine { 0.9 } else { 0.1 },
                    kind: Some(if genuine { MapKind::Similarity } else { MapKind::Dissimilarity }),
                    rows: vec![RowCurves {
                        row: Row::configured("fggb"),
                        perturb: Perturb::Both,
                        curves: MethodCurves { deletion: curve.clone(), insertion: curve },
                    }],
                }],
            }
        })
        .collect();
    Records {
        experiment: "xfv-benchmark".into(),
        config_sha256: "0aac9587aa".into(),
        shard,
        selected: 200,
        models: vec![ModelInfo {
            name: "toy".into(),
            threshold: 0.5,
            threshold_source: "test".into(),
            fill: -1.0,
            road: None,
            embedding_dim: 4,
            weights_sha256: "00".into(),
        }],
        rows: vec![Row::configured("fggb")],
        table3_method: "fggb".into(),
        steps,
        perturb: Perturb::Both,
        records,
    }
}

fn merge(shards: &Path, out: &Path) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_xfv-benchmark"))
        .args(["merge", shards.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run xfv-benchmark")
}

fn entries(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir).map(|d| d.map(|e| e.unwrap().path()).collect()).unwrap_or_default();
    v.sort();
    v
}

/// File names in `dir`; TensorBoard event files, whose names hold the writer's process id, as
/// `events.out.tfevents`.
fn names(dir: &Path) -> Vec<String> {
    entries(dir)
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .map(|n| if n.starts_with("events.out.tfevents") { "events.out.tfevents".into() } else { n })
        .collect()
}

#[test]
fn merge_killed_at_random_points_leaves_no_partial_run() {
    let tmp = tempfile::tempdir().unwrap();
    let shards = tmp.path().join("shards");
    for i in 1..=2 {
        let d = shards.join(format!("s{i}"));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("records.json"), serde_json::to_vec(&records(i, 2)).unwrap()).unwrap();
        std::fs::write(d.join("config.toml"), "x = 1\n").unwrap();
    }
    // An uninterrupted merge: what a complete run holds, and how long it takes.
    let reference = tmp.path().join("reference");
    let t = Instant::now();
    assert!(merge(&shards, &reference).wait().unwrap().success());
    let full = t.elapsed();
    let runs = entries(&reference.join("xfv-benchmark"));
    assert_eq!(runs.len(), 1);
    let complete = names(&runs[0]);
    assert!(complete.contains(&"results.json".to_string()), "{complete:?}");

    let out = tmp.path().join("out");
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
    eprintln!("kill-point seed {seed}");
    let mut x = seed;
    let mut hit = 0;
    for i in 0..KILLS {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let mut child = merge(&shards, &out);
        let pid = child.id();
        std::thread::sleep(Duration::from_micros(x % (full.as_micros() as u64 * 9 / 10).max(1)));
        let _ = child.kill();
        hit += usize::from(!child.wait().unwrap().success());
        for run in entries(&out.join("xfv-benchmark")) {
            assert_eq!(names(&run), complete, "kill {i}: {} is not a complete run", run.display());
        }
        // Each merge removes the staging folders of dead merges before making its own, so at
        // most two exist: one left by an earlier kill (when this merge died before reaching
        // that point) and this merge's own.
        let staging: Vec<(String, u32)> = names(&out)
            .into_iter()
            .filter(|n| n != "xfv-benchmark")
            .map(|n| {
                let owner = n.strip_prefix(".merge.facelens-tmp-").and_then(|r| r.split('-').next()).and_then(|p| p.parse().ok());
                let owner = owner.unwrap_or_else(|| panic!("kill {i}: unexpected {n} in --out"));
                (n, owner)
            })
            .collect();
        assert!(staging.len() <= 2 && staging.iter().filter(|(_, o)| *o != pid).count() <= 1, "kill {i}: staging folders pile up: {staging:?}");
    }
    assert!(merge(&shards, &out).wait().unwrap().success());
    assert_eq!(names(&out), ["xfv-benchmark"], "a staging folder remains after a complete merge");
    eprintln!("merge: {KILLS} kills, {hit} while it still ran");
    assert!(hit >= KILLS / 3, "only {hit} of {KILLS} kills hit a running merge");
}
