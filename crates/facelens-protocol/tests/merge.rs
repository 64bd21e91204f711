//! `merge` of shard directories on disk: bad shards are refused naming the shard, and nothing
//! (no run directory, no staging folder) is left under `--out` unless the merge completed.

use std::path::{Path, PathBuf};

use facelens_eval::deletion::{MapKind, Perturb};
use facelens_protocol::config::Row;
use facelens_protocol::records::{MethodCurves, ModelInfo, ModelPairRecord, PairRecord, Records, RowCurves, Shard};
use facelens_protocol::shards::merge;

/// Shard `i` of `n` of a six-pair run: genuine pairs accepted then rejected, impostors the reverse.
fn records(i: usize, n: usize) -> Records {
    let shard = Shard { index: i, count: n };
    let records = (0..6)
        .filter(|&j| shard.owns(j))
        .map(|j| {
            let genuine = j % 2 == 0;
            let curve = if genuine { vec![0.9, 0.9, 0.1] } else { vec![0.1, 0.9, 0.9] };
            PairRecord {
                index: j,
                line: j + 2,
                fold: 1,
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
        selected: 6,
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
        steps: vec![0.0, 50.0, 100.0],
        perturb: Perturb::Both,
        records,
    }
}

fn write_shard(dir: &Path, name: &str, r: &Records, config: &str) -> PathBuf {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("records.json"), serde_json::to_vec(r).unwrap()).unwrap();
    std::fs::write(d.join("config.toml"), config).unwrap();
    d
}

fn listing(dir: &Path) -> Vec<String> {
    if !dir.exists() {
        return Vec::new();
    }
    let mut v: Vec<String> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

#[test]
fn a_complete_merge_publishes_one_run_and_no_staging_folder() {
    let dir = tempfile::tempdir().unwrap();
    let s1 = write_shard(dir.path(), "s1", &records(1, 2), "x = 1\n");
    let s2 = write_shard(dir.path(), "s2", &records(2, 2), "x = 1\n");
    let out = dir.path().join("out");
    let (run, _) = merge(&[s1, s2], &out).expect("merge");
    assert_eq!(listing(&out), ["xfv-benchmark"]);
    assert_eq!(run.path().parent().unwrap(), out.join("xfv-benchmark"));
    for f in ["records.json", "results.json", "config.toml", "meta.json", "tables.md"] {
        assert!(run.path().join(f).is_file(), "{f}");
    }
}

#[test]
fn records_without_backbones_or_methods_are_refused_naming_the_shard() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mut no_models = records(1, 1);
    no_models.models.clear();
    let s = write_shard(dir.path(), "nomodels", &no_models, "x = 1\n");
    let err = merge(&[s], &out).unwrap_err().to_string();
    assert!(err.contains("nomodels/records.json") && err.contains("`models` is empty"), "{err}");
    let mut no_rows = records(1, 1);
    no_rows.rows.clear();
    let s = write_shard(dir.path(), "norows", &no_rows, "x = 1\n");
    let err = merge(&[s], &out).unwrap_err().to_string();
    assert!(err.contains("norows/records.json") && err.contains("`rows` is empty"), "{err}");
    assert!(listing(&out).is_empty(), "{:?}", listing(&out));
}

#[test]
fn a_short_curve_is_refused_naming_the_shard_and_pair() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let s1 = write_shard(dir.path(), "s1", &records(1, 2), "x = 1\n");
    let mut short = records(2, 2);
    short.records[0].models[0].rows[0].curves.deletion.pop();
    let s2 = write_shard(dir.path(), "s2", &short, "x = 1\n");
    let err = merge(&[s1, s2], &out).unwrap_err().to_string();
    assert!(err.contains("s2/records.json") && err.contains("pair 1") && err.contains("2 points") && err.contains("3 steps"), "{err}");
    assert!(listing(&out).is_empty());
}

#[test]
fn differing_config_files_under_one_hash_are_told_apart() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let s1 = write_shard(dir.path(), "s1", &records(1, 2), "x = 1\n");
    let s2 = write_shard(dir.path(), "s2", &records(2, 2), "x = 2\n");
    let err = merge(&[s1, s2], &out).unwrap_err().to_string();
    assert!(err.contains("s2/config.toml") && err.contains("s1/config.toml") && err.contains("0aac9587aa"), "{err}");
    assert!(!err.contains("another config"), "{err}");
    assert!(listing(&out).is_empty());
}

#[test]
fn a_staging_folder_left_by_a_killed_merge_is_removed_by_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    // What a merge killed mid-way leaves: its staging folder, named with its (dead) process id.
    let stale = out.join(".merge.facelens-tmp-4000000000-abc");
    std::fs::create_dir_all(stale.join("xfv-benchmark/run")).unwrap();
    std::fs::write(stale.join("xfv-benchmark/run/config.toml"), "x = 1\n").unwrap();
    let s1 = write_shard(dir.path(), "s1", &records(1, 1), "x = 1\n");
    merge(&[s1], &out).expect("merge");
    assert_eq!(listing(&out), ["xfv-benchmark"]);
}
