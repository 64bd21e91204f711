//! End-to-end tests of `facelens train-decoder`, `reconstruct` and `probe-regions` on real faces
//! with the committed w600k_mbf decoder. Those that need `../shared` and the fetched w600k_mbf
//! are ignored by default (`-- --include-ignored` runs them).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{landmarks, lfw, repo, shared};

/// The repository's checkpoint folder, with the fetched w600k_mbf and the committed decoder.
fn checkpoints() -> PathBuf {
    let c = repo().join("checkpoints");
    let model = c.join("w600k_mbf.safetensors");
    assert!(model.is_file(), "{} is missing: run scripts/setup.sh", model.display());
    let decoder = c.join("decoder-w600k_mbf.safetensors");
    assert!(decoder.is_file(), "{} is missing: it is committed to the repository", decoder.display());
    c
}

fn facelens(checkpoints: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_facelens"))
        .args(args)
        .current_dir(repo())
        .env("FACELENS_CHECKPOINTS", checkpoints)
        .env("CI", "1")
        .env("RAYON_NUM_THREADS", "1")
        .output()
        .expect("run facelens")
}

fn ok(out: &Output) {
    assert!(out.status.success(), "failed:\n{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
#[ignore = "needs ../shared and fetched weights (scripts/setup.sh)"]
fn reconstruct_writes_a_panel_and_scores_identity() {
    let c = checkpoints();
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("recon");
    let (a, b) = (lfw("Aaron_Peirsol/Aaron_Peirsol_0001.jpg"), lfw("Abdullah_Gul/Abdullah_Gul_0001.jpg"));
    let out = facelens(&c, &["reconstruct", &a, &b, "--landmarks", &landmarks(), "--out", out_dir.to_str().unwrap()]);
    ok(&out);
    let panel = image::open(out_dir.join("panel.png")).unwrap();
    assert_eq!((panel.width() > 2 * 112, panel.height() >= 112), (true, true));
    let result: serde_json::Value = serde_json::from_slice(&std::fs::read(out_dir.join("result.json")).unwrap()).unwrap();
    assert_eq!(result["model"], "w600k_mbf");
    // SFace judges by default, at its own thresholds.
    assert_eq!(result["judge"]["model"], "sface");
    assert!(result["judge"]["thresholds"]["far_0_1pct"].as_f64().unwrap() > result["judge"]["thresholds"]["far_1pct"].as_f64().unwrap());
    let scores = result["faces"].as_array().unwrap();
    assert_eq!(scores.len(), 2);
    for s in scores {
        let cos = s["identity_cos"].as_f64().unwrap();
        // The model recognises the reconstruction as the same person far above chance (~0).
        assert!(cos > 0.2 && cos <= 1.0, "identity cosine {cos}");
        // So does a model the decoder never saw, if less surely.
        let judged = s["judge_identity_cos"].as_f64().unwrap();
        assert!(judged > 0.1 && judged <= 1.0, "SFace identity cosine {judged}");
        // The whole crop includes background the decoder cannot know (and colour against a
        // grey photo): only a sanity bound. The face region is what is reconstructed.
        assert!(s["psnr_db"].as_f64().unwrap() > 5.0);
        assert!(s["face_psnr_luma_db"].as_f64().unwrap() > 10.0);
        let ssim = s["face_ssim_luma"].as_f64().unwrap();
        assert!(ssim > 0.0 && ssim < 1.0, "face SSIM {ssim}");
        assert!(s["checkerboard_ratio"].as_f64().unwrap() > 0.0);
    }
    // Without a judge the cross-model fields are absent.
    let plain = tmp.path().join("plain");
    ok(&facelens(&c, &["reconstruct", &a, "--landmarks", &landmarks(), "--judge", "none", "--out", plain.to_str().unwrap()]));
    let result: serde_json::Value = serde_json::from_slice(&std::fs::read(plain.join("result.json")).unwrap()).unwrap();
    assert!(result.get("judge").is_none() && result["faces"][0].get("judge_identity_cos").is_none());
    assert!(out_dir.join("000_Aaron_Peirsol_0001_reconstruction.png").is_file());
}

#[test]
#[ignore = "needs ../shared and fetched weights (scripts/setup.sh)"]
fn probe_regions_writes_statistics_and_a_panel() {
    let c = checkpoints();
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("probe");
    let out = facelens(
        &c,
        &["probe-regions", &lfw("Aaron_Peirsol/Aaron_Peirsol_0001.jpg"), "--landmarks", &landmarks(), "--out", out_dir.to_str().unwrap(), "--top-k", "3"],
    );
    ok(&out);
    for f in ["region_stats.json", "region_mass.csv", "top_dimensions.csv", "region_panel.png"] {
        assert!(out_dir.join(f).is_file(), "missing {f}");
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    for region in ["left_eye", "right_eye", "nose", "mouth"] {
        assert!(stdout.contains(region), "{stdout}");
    }
    // 512 dimensions, one CSV row each.
    let csv = std::fs::read_to_string(out_dir.join("region_mass.csv")).unwrap();
    assert_eq!(csv.lines().count(), 513);
}

#[test]
#[ignore = "needs ../shared and fetched weights (scripts/setup.sh)"]
fn bad_decoder_files_are_named_in_the_error() {
    let c = checkpoints();
    let tmp = tempfile::tempdir().unwrap();
    let garbage = tmp.path().join("garbage.safetensors");
    std::fs::write(&garbage, b"not a safetensors file").unwrap();
    let face = lfw("Aaron_Peirsol/Aaron_Peirsol_0001.jpg");
    let out_dir = tmp.path().join("o");
    let out = facelens(&c, &["reconstruct", &face, "--landmarks", &landmarks(), "--decoder", garbage.to_str().unwrap(), "--out", out_dir.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("garbage.safetensors"), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!out_dir.join("panel.png").exists());

    let missing = tmp.path().join("nope.safetensors");
    let out = facelens(&c, &["probe-regions", &face, "--landmarks", &landmarks(), "--decoder", missing.to_str().unwrap(), "--out", out_dir.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope.safetensors"));
}

#[test]
#[ignore = "needs ../shared and fetched weights (scripts/setup.sh)"]
fn train_decoder_runs_the_training_entry_point() {
    let c = checkpoints();
    // The CI config trains on UTKFace.
    shared("data/utkface/landmarks.csv");
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let mut args: Vec<String> = vec!["train-decoder".into(), "--config".into(), "experiments/decoder-train/ci.toml".into()];
    for o in [
        format!("runs_root={}", runs.display()),
        "data.limit=8".into(),
        "train.steps=2".into(),
        "train.batch_size=2".into(),
        "train.warmup_steps=1".into(),
        "decoder.width=16".into(),
        "decoder.min_channels=4".into(),
        "eval.faces=1".into(),
        "log.panel_faces=1".into(),
        "probe.faces=0".into(),
    ] {
        args.push("--set".into());
        args.push(o);
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    ok(&facelens(&c, &refs));
    let run = std::fs::read_dir(runs.join("decoder-train")).unwrap().next().unwrap().unwrap().path();
    assert!(run.join("decoder.safetensors").is_file());
    let results: serde_json::Value = serde_json::from_slice(&std::fs::read(run.join("results.json")).unwrap()).unwrap();
    assert_eq!(results["steps"], 2);
}

#[test]
#[ignore = "needs ../shared and fetched weights (scripts/setup.sh)"]
fn explain_with_dfv_uses_the_committed_decoder() {
    let c = checkpoints();
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("dfv");
    let (a, b) = (lfw("Abel_Pacheco/Abel_Pacheco_0001.jpg"), lfw("Abel_Pacheco/Abel_Pacheco_0004.jpg"));
    let out = facelens(&c, &["explain", &a, &b, "--method", "dfv", "--landmarks", &landmarks(), "--out", out_dir.to_str().unwrap()]);
    ok(&out);
    let result: serde_json::Value = serde_json::from_slice(&std::fs::read(out_dir.join("result.json")).unwrap()).unwrap();
    assert_eq!(result["method"], "dfv");
    assert_eq!(result["decision"], "accept");
    // A genuine pair: the similarity maps carry evidence.
    assert!(result["map_mass"]["sa_pos"].as_f64().unwrap() > 0.0, "{result}");
    assert!(out_dir.join("panel.png").is_file());
}

#[test]
fn committed_decoder_matches_its_manifest_entry() {
    let decoder = repo().join("checkpoints/decoder-w600k_mbf.safetensors");
    let manifest = std::fs::read_to_string(repo().join("checkpoints/MANIFEST.toml")).unwrap();
    let entry = manifest.split("[[decoder]]").nth(1).expect("MANIFEST.toml has a [[decoder]] entry");
    let sha = entry.lines().find_map(|l| l.strip_prefix("sha256 = ")).expect("sha256 line").trim_matches('"');
    assert_eq!(facelens_models::backbone::sha256_file(&decoder).unwrap(), sha);
    // Small enough to live in the repository.
    assert!(std::fs::metadata(&decoder).unwrap().len() <= 16 << 20);
}
