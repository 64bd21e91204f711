//! Scanning and summarising run directories (`facelens runs list|show`) on
//! runs built in a temp dir: complete, unfinished, broken and foreign ones.

use std::path::Path;

use facelens_board::run_dir::{CONFIG_FILE, META_FILE, RESULTS_FILE};
use facelens_board::runs::{self, RunStatus, TagKind};
use facelens_board::{record, Error, RgbImage, RunDir, RunMeta};
use serde_json::json;

/// A run whose `meta.json` claims to have started at `start` (RFC 3339).
fn run_at(root: &Path, experiment: &str, config: &str, start: &str) -> RunDir {
    let run = RunDir::create(root, experiment, config).expect("create run");
    let meta = RunMeta {
        start_time_utc: start.to_owned(),
        ..run.meta().clone()
    };
    run.write_json(META_FILE, &meta).expect("rewrite meta");
    run
}

#[test]
fn list_sorts_by_time_and_reads_status_and_summary() {
    let root = tempfile::tempdir().expect("tempdir");
    let root = root.path();
    let late = run_at(root, "xfv-benchmark", "a = 1\n", "2024-03-02T10:00:00Z");
    late.write_results(&json!({
        "summary": { "auc": 24.5, "pairs": 20, "model": "w600k_mbf", "nested": { "x": 1 }, "list": [1] },
        "table1": { "rows": [] }
    }))
    .expect("results");
    let early = run_at(root, "decoder-train", "b = 2\n", "2024-03-01T09:00:00Z");
    let broken = run_at(root, "decoder-train", "c = 3\n", "2024-03-01T12:00:00Z");
    std::fs::write(broken.path().join(RESULTS_FILE), "{ half").expect("write");
    // A run dir from an older writer: config only, time from its id.
    let bare = root.join("decoder-train").join("20240229-235959-0badc0de");
    std::fs::create_dir_all(&bare).expect("mkdir");
    std::fs::write(bare.join(CONFIG_FILE), "d = 4\n").expect("config");
    // Not runs: an empty folder, a hidden temp folder, a stray file.
    std::fs::create_dir_all(root.join("decoder-train").join("scratch")).expect("mkdir");
    std::fs::create_dir_all(root.join(".tmp-x").join("r")).expect("mkdir");
    std::fs::write(root.join("notes.txt"), "hi").expect("write");

    let list = runs::list_runs(root, None).expect("list");
    let ids: Vec<&str> = list.iter().map(|r| r.run_id.as_str()).collect();
    assert_eq!(
        ids,
        vec![
            "20240229-235959-0badc0de",
            early.id(),
            broken.id(),
            late.id()
        ]
    );

    let [b, e, k, l] = list.as_slice() else {
        panic!("4 runs")
    };
    assert_eq!(b.experiment, "decoder-train");
    assert_eq!(b.start_time_utc.as_deref(), Some("2024-02-29T23:59:59Z"));
    assert_eq!(
        b.config_sha256.as_deref(),
        Some(facelens_board::config::config_hash("d = 4\n").as_str())
    );
    assert!(
        b.meta.is_none() && b.issues.iter().any(|i| i.contains(META_FILE)),
        "{:?}",
        b.issues
    );

    assert_eq!(
        (e.status, e.summary.len(), e.issues.len()),
        (RunStatus::NoResults, 0, 0)
    );
    assert_eq!(
        e.meta.as_ref().map(|m| m.git.clone()),
        Some(early.meta().git.clone())
    );

    assert_eq!(k.status, RunStatus::BadResults);
    assert!(
        k.issues.iter().any(|i| i.contains(RESULTS_FILE)),
        "{:?}",
        k.issues
    );

    assert_eq!(l.status, RunStatus::Complete);
    assert_eq!(l.experiment, "xfv-benchmark");
    // Only the flat entries of `summary`.
    let keys: Vec<&str> = l.summary.keys().map(String::as_str).collect();
    assert_eq!(keys, vec!["auc", "model", "pairs"]);
    assert_eq!(l.summary["auc"], json!(24.5));

    let only = runs::list_runs(root, Some("xfv-benchmark")).expect("filtered");
    assert_eq!(only.len(), 1);
    match runs::list_runs(root, Some("xfv")) {
        Err(Error::UnknownExperiment { available, .. }) => {
            assert_eq!(available, vec!["decoder-train", "xfv-benchmark"])
        }
        other => panic!("expected UnknownExperiment, got {other:?}"),
    }
    // An experiment folder works as the root too.
    let inner = runs::list_runs(&root.join("decoder-train"), None).expect("experiment root");
    assert_eq!(inner.len(), 3);
    // A missing root is an I/O error naming it.
    let err = runs::list_runs(&root.join("nope"), None).unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
}

#[test]
fn find_run_by_path_id_prefix_and_experiment() {
    let root = tempfile::tempdir().expect("tempdir");
    let root = root.path();
    let a = root.join("exp-a").join("20240101-000000-aaaa1111");
    let b = root.join("exp-b").join("20240101-000000-bbbb2222");
    let c = root.join("exp-b").join("20240102-000000-cccc3333");
    for d in [&a, &b, &c] {
        std::fs::create_dir_all(d).expect("mkdir");
        std::fs::write(d.join(CONFIG_FILE), "").expect("config");
    }
    let find = |q: &str| runs::find_run(root, q);
    assert_eq!(find(a.to_str().expect("utf-8")).expect("path"), a);
    assert_eq!(find("20240101-000000-bbbb2222").expect("id"), b);
    assert_eq!(find("20240102").expect("prefix"), c);
    assert_eq!(find("exp-a/2024").expect("experiment/prefix"), a);
    match find("20240101") {
        Err(Error::AmbiguousRun { matches, .. }) => assert_eq!(
            matches,
            vec![
                "exp-a/20240101-000000-aaaa1111",
                "exp-b/20240101-000000-bbbb2222"
            ]
        ),
        other => panic!("expected AmbiguousRun, got {other:?}"),
    }
    for missing in ["2023", "exp-c/2024", "exp-a/20240102"] {
        assert!(
            matches!(find(missing), Err(Error::RunNotFound { .. })),
            "{missing}"
        );
    }
}

#[test]
fn details_reads_scalars_tags_and_figures() {
    let root = tempfile::tempdir().expect("tempdir");
    let run = RunDir::create(root.path(), "decoder-train", "[train]\nlr = 0.001\n").expect("run");
    let mut tb = run.summary_writer().expect("writer");
    for (step, loss) in [(0, 2.0), (10, 0.5), (20, f64::NAN), (30, 0.75)] {
        tb.add_scalar("train/loss", loss, step).expect("scalar");
    }
    tb.add_scalar("eval/psnr", 21.5, 30).expect("scalar");
    tb.add_image("recon/grid", &RgbImage::new(4, 2), 30)
        .expect("image");
    tb.add_histogram("emb", &[0.1, 0.2, 0.3], 5)
        .expect("histogram");
    tb.add_text("config", "lr = 0.001", 0).expect("text");
    tb.close().expect("close");
    // A second writer (a resumed run) whose last record was torn by a crash.
    let mut tb2 = run.summary_writer().expect("second writer");
    tb2.add_scalar("train/loss", 0.25, 40).expect("scalar");
    let second = tb2.path().to_path_buf();
    tb2.close().expect("close");
    let mut bytes = std::fs::read(&second).expect("read");
    bytes.extend_from_slice(&record::encode_record(b"torn")[..7]);
    std::fs::write(&second, bytes).expect("write");

    std::fs::create_dir_all(run.path().join("recon")).expect("mkdir");
    for f in ["recon/step-30.png", "regions.png", "regions.csv"] {
        std::fs::write(run.path().join(f), b"x").expect("write");
    }
    run.write_results(&json!({ "summary": { "psnr": 21.5 }, "regions": {} }))
        .expect("results");

    let d = runs::details(run.path()).expect("details");
    assert_eq!(d.summary.status, RunStatus::Complete);
    assert_eq!(d.config_toml.as_deref(), Some("[train]\nlr = 0.001\n"));
    assert_eq!(d.results_keys, vec!["regions", "summary"]);
    assert_eq!(d.event_files.len(), 2);

    let tags: Vec<&str> = d.scalars.iter().map(|s| s.tag.as_str()).collect();
    assert_eq!(tags, vec!["eval/psnr", "train/loss"]);
    let loss = &d.scalars[1];
    assert_eq!(
        (loss.points, loss.last_step, loss.last_value),
        (5, 40, 0.25)
    );
    assert_eq!((loss.min, loss.max), (Some(0.25), Some(2.0)));

    let others: Vec<(&str, TagKind, usize)> = d
        .other_tags
        .iter()
        .map(|t| (t.tag.as_str(), t.kind, t.points))
        .collect();
    assert_eq!(
        others,
        vec![
            ("config", TagKind::Tensor, 1),
            ("emb", TagKind::Histogram, 1),
            ("recon/grid", TagKind::Image, 1)
        ]
    );
    let pngs: Vec<String> = d
        .png_files
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    assert_eq!(pngs, vec!["recon/step-30.png", "regions.png"]);
    // The torn tail is reported, not fatal.
    assert!(
        d.summary.issues.iter().any(|i| i.contains("truncated")),
        "{:?}",
        d.summary.issues
    );
    // JSON form for `runs show --json`.
    let v = serde_json::to_value(&d).expect("serialize");
    assert_eq!(v["status"], "complete");
    assert_eq!(v["scalars"][1]["last_value"], 0.25);

    assert!(runs::details(&root.path().join("missing")).is_err());
}
