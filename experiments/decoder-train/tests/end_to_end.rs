//! The `decoder-train` binary on a very small config: outputs, exact resume, Ctrl-C, bad input.
//! The training tests need the shared data and the w600k_mbf checkpoint, so they are ignored by
//! default (`cargo test --release -p decoder-train -- --include-ignored` runs them).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// Fails loudly when the data an ignored test needs is missing.
fn require_data() {
    let root = repo_root();
    for need in [
        "checkpoints/w600k_mbf.safetensors",
        "../shared/data/utkface/landmarks.csv",
        "../shared/data/lfw/pairs.txt",
    ] {
        assert!(
            root.join(need).is_file(),
            "{need} is missing (fetch weights with scripts/setup.sh; ../shared holds the data)"
        );
    }
}

/// The smallest meaningful run: 8 crops, a 16-channel decoder, 4 steps of 2.
fn tiny_overrides(runs: &Path) -> Vec<String> {
    [
        format!("runs_root={}", runs.display()),
        "data.limit=8".into(),
        "data.workers=2".into(),
        "train.steps=4".into(),
        "train.batch_size=2".into(),
        "train.warmup_steps=1".into(),
        "decoder.width=16".into(),
        "decoder.min_channels=4".into(),
        "eval.faces=2".into(),
        "log.panel_faces=2".into(),
        "log.images_every=2".into(),
        "log.histograms_every=2".into(),
        "log.checkpoint_every=2".into(),
        "log.keep_checkpoints=true".into(),
        "probe.faces=1".into(),
        "probe.top_k=3".into(),
        "probe.batch=128".into(),
    ]
    .to_vec()
}

fn command() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_decoder-train"));
    c.current_dir(repo_root())
        .env("CI", "1")
        .env("RAYON_NUM_THREADS", "1");
    c
}

fn run_ok(args: &[String]) -> Output {
    let out = command().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "decoder-train {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn fresh_args(runs: &Path, extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        "--config".to_string(),
        "experiments/decoder-train/ci.toml".into(),
    ];
    for o in tiny_overrides(runs)
        .into_iter()
        .chain(extra.iter().map(|s| s.to_string()))
    {
        args.push("--set".into());
        args.push(o);
    }
    args
}

fn only_run_dir(runs: &Path) -> PathBuf {
    let dirs: Vec<PathBuf> = std::fs::read_dir(runs.join("decoder-train"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs[0].clone()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

#[test]
#[ignore = "needs ../shared and fetched weights (scripts/setup.sh)"]
fn tiny_run_writes_every_output_and_a_resumed_copy_reproduces_its_losses() {
    require_data();
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    run_ok(&fresh_args(&runs, &[]));
    let run = only_run_dir(&runs);
    for f in [
        "config.toml",
        "meta.json",
        "results.json",
        "checkpoint.safetensors",
        "decoder.safetensors",
        "embeddings.safetensors",
        "losses.csv",
        "reconstructions.png",
        "panels/step_000002.png",
        "panels/step_000004.png",
        "checkpoints/step_000002.safetensors",
        "probe/region_stats.json",
        "probe/region_mass.csv",
        "probe/top_dimensions.csv",
        "probe/region_panel.png",
    ] {
        assert!(run.join(f).is_file(), "missing {f}");
    }
    assert!(std::fs::read_dir(&run).unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .starts_with("events.out.tfevents")));
    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("results.json")).unwrap()).unwrap();
    assert_eq!(results["eval"]["faces"], 2);
    assert!(results["eval"]["identity_cos_mean"]
        .as_f64()
        .unwrap()
        .is_finite());
    assert!(results["eval"]["type1_success"]["far_1pct"].is_number());

    // Resume a copy from its step-2 checkpoint: the losses of steps 2 and 3 must come out the same.
    let copy = tmp.path().join("copy");
    copy_dir(&run, &copy);
    std::fs::copy(
        copy.join("checkpoints/step_000002.safetensors"),
        copy.join("checkpoint.safetensors"),
    )
    .unwrap();
    std::fs::remove_file(copy.join("results.json")).unwrap();
    run_ok(&["--resume".to_string(), copy.display().to_string()]);
    let a = std::fs::read_to_string(run.join("losses.csv")).unwrap();
    let b = std::fs::read_to_string(copy.join("losses.csv")).unwrap();
    assert_eq!(a.lines().count(), 5, "{a}");
    assert_eq!(a, b, "resumed losses differ");
    let resumed: serde_json::Value =
        serde_json::from_slice(&std::fs::read(copy.join("results.json")).unwrap()).unwrap();
    assert_eq!(resumed["resumed_from_step"], 2);

    // The probe subcommand on the trained run.
    let out = command()
        .args(["probe", "--run", &run.display().to_string(), "--faces", "1"])
        .args(["--out", &tmp.path().join("p").display().to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(tmp.path().join("p/region_panel.png").is_file());
    assert!(String::from_utf8_lossy(&out.stdout).contains("left_eye"));
}

#[test]
#[ignore = "needs ../shared and fetched weights (scripts/setup.sh)"]
fn ctrl_c_writes_a_checkpoint_that_covers_every_logged_step() {
    require_data();
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let child = command()
        .args(fresh_args(
            &runs,
            &[
                "train.steps=100000",
                "log.checkpoint_every=0",
                "probe.faces=0",
            ],
        ))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    let losses = loop {
        assert!(
            t0.elapsed() < Duration::from_secs(240),
            "no training steps logged in time"
        );
        if let Ok(d) = std::fs::read_dir(runs.join("decoder-train")) {
            if let Some(run) = d.filter_map(|e| e.ok()).map(|e| e.path()).next() {
                let p = run.join("losses.csv");
                if std::fs::read_to_string(&p)
                    .map(|t| t.lines().count() >= 3)
                    .unwrap_or(false)
                {
                    break p;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("interrupted after step"), "{stderr}");
    let run = losses.parent().unwrap();
    let ck = facelens_recon::Checkpoint::load(
        &run.join("checkpoint.safetensors"),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let rows = std::fs::read_to_string(&losses).unwrap().lines().count() as u64 - 1;
    assert_eq!(ck.meta.step, rows, "checkpoint step vs logged steps");
    assert!(
        !run.join("results.json").exists(),
        "an interrupted run must not look finished"
    );
}

#[test]
fn bad_input_gets_one_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    // A typo in an override names the key.
    let out = command()
        .args([
            "--config",
            "experiments/decoder-train/ci.toml",
            "--set",
            "train.stpes=3",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("stpes"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Resuming a folder without a checkpoint says so.
    let out = command()
        .args(["--resume", &tmp.path().display().to_string()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("checkpoint.safetensors"));
    // A corrupt checkpoint is refused before any work, naming the file.
    std::fs::write(
        tmp.path().join("config.toml"),
        std::fs::read(repo_root().join("experiments/decoder-train/ci.toml")).unwrap(),
    )
    .unwrap();
    std::fs::write(tmp.path().join("checkpoint.safetensors"), b"garbage").unwrap();
    let out = command()
        .args(["--resume", &tmp.path().display().to_string()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("checkpoint.safetensors")
            && stderr.contains("not a valid decoder checkpoint"),
        "{stderr}"
    );
}
