//! Hostile inputs to the `facelens` binary: each test feeds one kind of crafted input and checks
//! the exit code, that the message names the file or setting at fault, and what is on disk
//! afterwards (nothing half-written). None of these needs `../shared` or fetched weights: the
//! inputs are made here, and every refusal happens before a model is loaded.

mod common;

use std::io::Cursor;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::repo;

/// How long a refusal may take before the test calls the command blocked. Not a performance
/// assertion: the commands below answer in well under a second; this only turns a hang (a read
/// waiting on a FIFO forever) into a failure instead of a stuck test run.
const HANG: Duration = Duration::from_secs(300);

/// Runs `facelens args` in `cwd` with an empty checkpoint folder and an empty, offline Hugging
/// Face cache unless `env` says otherwise; kills it and fails if it blocks.
fn facelens_in(cwd: &Path, args: &[&str], env: &[(&str, &Path)]) -> Output {
    let empty = cwd.join(".empty-checkpoints");
    std::fs::create_dir_all(&empty).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_facelens"));
    cmd.args(args)
        .current_dir(cwd)
        .env("FACELENS_CHECKPOINTS", &empty)
        .env("HF_HUB_CACHE", cwd.join(".empty-hf-cache"))
        .env("HF_HUB_OFFLINE", "1")
        .env("CI", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("run facelens");
    let start = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if start.elapsed() > HANG {
            let _ = child.kill();
            let _ = child.wait();
            panic!("facelens {args:?} blocked for {HANG:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Exit code 1 and a message containing every one of `needles`.
fn assert_refused(o: &Output, needles: &[&str]) -> String {
    let e = stderr(o);
    assert_eq!(o.status.code(), Some(1), "expected exit 1: {e}");
    for n in needles {
        assert!(e.contains(n), "message lacks `{n}`: {e}");
    }
    e
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with(".empty-"))
        .collect();
    v.sort();
    v
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A real 250x250 JPEG (a smooth colour pattern), as an encoder writes it.
fn jpeg() -> Vec<u8> {
    let img = image::RgbImage::from_fn(250, 250, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, ((x * y) % 251) as u8]));
    let mut out = Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(img).write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
    out.into_inner()
}

fn png(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_pixel(w, h, image::Rgb([90, 120, 150]));
    let mut out = Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(img).write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// PNG's chunk checksum (CRC-32, ISO 3309), so a patched header is still a valid chunk.
fn crc32(bytes: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in bytes {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
        }
    }
    !c
}

fn mkfifo(p: &Path) {
    assert!(Command::new("mkfifo").arg(p).status().expect("mkfifo runs").success());
}

// Row 1: hub references are names inside one repository's snapshot.
#[test]
fn hub_references_cannot_leave_the_model_cache() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("hf");
    let snap = cache.join("models--org--repo/snapshots/main");
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::create_dir_all(cache.join("models--org--repo/refs")).unwrap();
    let outside = dir.path().join("secret.safetensors");
    std::fs::write(&outside, b"not for you").unwrap();
    std::os::unix::fs::symlink(&outside, snap.join("link.safetensors")).unwrap();
    std::fs::write(dir.path().join("face.png"), png(112, 112)).unwrap();
    let env = [("HF_HUB_CACHE", cache.as_path())];
    for (spec, needle) in [
        ("hf:org/repo/../../../../secret.safetensors", "`..`"),
        ("hf:../../x/f.safetensors", "organisation `..`"),
        ("hf:org/repo//etc/passwd", "empty path segment"),
        ("hf:org/repo@../../x/f.safetensors", "revision"),
        ("hf:org/repo/link.safetensors", "outside the repository's cache folder"),
    ] {
        let o = facelens_in(dir.path(), &["embed", "face.png", "--out", "e.safetensors", "--model", spec], &env);
        assert_refused(&o, &[needle]);
        assert!(!dir.path().join("e.safetensors").exists(), "{spec}");
    }
    assert_eq!(std::fs::read(&outside).unwrap(), b"not for you");
}

// Row 2: outputs that are not regular files are refused, before any work, and left as they were.
#[test]
fn outputs_that_are_not_regular_files_are_refused_and_kept() {
    use std::os::unix::fs::FileTypeExt;
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("out.safetensors");
    mkfifo(&fifo);
    std::fs::write(dir.path().join("face.png"), png(112, 112)).unwrap();
    std::fs::write(dir.path().join("m.onnx"), b"whatever").unwrap();
    for args in [
        vec!["embed", "face.png", "--out", "out.safetensors"],
        vec!["import", "onnx", "m.onnx", "--out", "out.safetensors"],
        vec!["embed", "face.png", "--out", "/dev/null"],
        vec!["import", "onnx", "m.onnx", "--out", "/dev/null"],
    ] {
        let o = facelens_in(dir.path(), &args, &[]);
        let target = args[args.len() - 1];
        assert_refused(&o, &[target, "not a regular file"]);
    }
    assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
    assert!(std::fs::metadata("/dev/null").unwrap().file_type().is_char_device());
    assert_eq!(names(dir.path()), ["face.png", "m.onnx", "out.safetensors"]);
}

// Row 3: a header's size claim is checked before decoding, for JPEG as for PNG.
#[test]
fn decompression_bombs_are_refused_from_the_header() {
    let dir = tempfile::tempdir().unwrap();
    let mut bomb = jpeg();
    let sof = bomb.windows(2).position(|w| w == [0xFF, 0xC0]).expect("baseline SOF0");
    bomb[sof + 5..sof + 9].copy_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF]); // height, width = 65535
    std::fs::write(dir.path().join("bomb.jpg"), &bomb).unwrap();
    let mut pbomb = png(4, 4);
    pbomb[16..24].copy_from_slice(&[0, 0, 0xFF, 0xFF, 0, 0, 0xFF, 0xFF]); // IHDR width, height
    let crc = crc32(&pbomb[12..29]); // the chunk's type and data
    pbomb[29..33].copy_from_slice(&crc.to_be_bytes());
    std::fs::write(dir.path().join("bomb.png"), &pbomb).unwrap();
    for f in ["bomb.jpg", "bomb.png"] {
        let o = facelens_in(dir.path(), &["align", f, "--out", "crops", "--resize", "--no-detect"], &[]);
        assert_refused(&o, &[f, "16384"]);
    }
    assert_eq!(names(dir.path()), ["bomb.jpg", "bomb.png"]);
}

// Row 4: sizes in configs and checkpoint headers are bounded before anything is allocated.
#[test]
fn oversized_configs_and_decoder_headers_are_refused_with_their_bound() {
    let dir = tempfile::tempdir().unwrap();
    let config = repo().join("experiments/decoder-train/ci.toml");
    let runs = dir.path().join("runs");
    let root = format!("runs_root=\"{}\"", runs.display());
    for (set, needles) in [
        ("train.batch_size=1000000000000", ["train.batch_size", "4096"]),
        ("decoder.width=100000", ["decoder.width", "2048"]),
        ("decoder.convs_per_block=1000000", ["decoder.convs_per_block", "..=8"]),
    ] {
        let o = facelens_in(dir.path(), &["train-decoder", "--config", s(&config), "--set", &root, "--set", set], &[]);
        let e = assert_refused(&o, &needles);
        assert!(e.contains("ci.toml"), "{e}");
        assert!(!runs.exists(), "{set}: a run directory was created");
    }
    // A decoder file whose header claims a 2^40-wide decoder.
    let header = r#"{"embedding_dim":512,"width":1099511627776,"min_channels":16,"block":"nearest-conv","norm":"batch","groups":32,"activation":"prelu","convs_per_block":1}"#;
    let meta = std::collections::HashMap::from([("facelens.recon.decoder".to_string(), header.to_string())]);
    let t = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![1], &[0u8; 4]).unwrap();
    let bytes = safetensors::serialize([("x", t)], Some(meta)).unwrap();
    std::fs::write(dir.path().join("huge.safetensors"), bytes).unwrap();
    std::fs::write(dir.path().join("face.png"), png(112, 112)).unwrap();
    let o = facelens_in(dir.path(), &["reconstruct", "face.png", "--decoder", "huge.safetensors", "--out", "rec"], &[]);
    assert_refused(&o, &["huge.safetensors", "decoder.width = 1099511627776", "1..=2048"]);
    assert!(!dir.path().join("rec").exists());
}

// Row 5: a JPEG cut short is refused, whatever the cut.
#[test]
fn truncated_jpegs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let full = jpeg();
    std::fs::write(dir.path().join("full.jpg"), &full).unwrap();
    let o = facelens_in(dir.path(), &["align", "full.jpg", "--out", "ok", "--resize", "--no-detect"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(names(&dir.path().join("ok")), ["full.png"]);
    for pct in (10..100).step_by(10) {
        let name = format!("cut{pct}.jpg");
        std::fs::write(dir.path().join(&name), &full[..full.len() * pct / 100]).unwrap();
        let o = facelens_in(dir.path(), &["align", &name, "--out", "crops", "--resize", "--no-detect"], &[]);
        assert_refused(&o, &[&name, "truncated"]);
        assert!(!dir.path().join("crops").exists(), "{name}");
    }
}

// Row 7: a failure leaves no partial output.
#[test]
fn align_writes_nothing_when_one_input_fails() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("good.jpg"), jpeg()).unwrap();
    std::fs::write(dir.path().join("text.jpg"), b"this is not an image\n").unwrap();
    let o = facelens_in(dir.path(), &["align", "good.jpg", "text.jpg", "--out", "D", "--resize", "--no-detect"], &[]);
    assert_refused(&o, &["text.jpg", "not a JPEG file"]);
    assert!(!dir.path().join("D").exists());
}

#[test]
fn train_decoder_creates_no_run_directory_for_a_config_it_cannot_run() {
    let dir = tempfile::tempdir().unwrap();
    let config = repo().join("experiments/decoder-train/ci.toml");
    let runs = dir.path().join("runs");
    let root = format!("runs_root=\"{}\"", runs.display());
    let o = facelens_in(dir.path(), &["train-decoder", "--config", s(&config), "--set", &root, "--set", "model=\"no-such-model.safetensors\""], &[]);
    assert_refused(&o, &["no-such-model.safetensors"]);
    assert!(!runs.exists());
}

// Row 8: inputs that are FIFOs (or other non-regular files) are refused without blocking.
#[test]
fn fifo_inputs_are_refused_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    mkfifo(&dir.path().join("f.png"));
    mkfifo(&dir.path().join("lm.csv"));
    mkfifo(&dir.path().join("m.onnx"));
    std::fs::write(dir.path().join("face.png"), png(112, 112)).unwrap();
    for (args, file) in [
        (vec!["align", "f.png", "--out", "D", "--no-detect"], "f.png"),
        (vec!["align", "face.png", "--out", "D", "--no-detect", "--landmarks", "lm.csv"], "lm.csv"),
        (vec!["import", "onnx", "m.onnx", "--out", "m.safetensors"], "m.onnx"),
    ] {
        let o = facelens_in(dir.path(), &args, &[]);
        assert_refused(&o, &[file, "FIFO"]);
    }
    // A run whose meta.json is a FIFO.
    let run = dir.path().join("runs/exp/20250101T000000Z-abc");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::write(run.join("config.toml"), "x = 1\n").unwrap();
    mkfifo(&run.join("meta.json"));
    let o = facelens_in(dir.path(), &["runs", "list", "--root", "runs"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = facelens_in(dir.path(), &["runs", "show", "runs/exp/20250101T000000Z-abc"], &[]);
    assert_refused(&o, &["meta.json", "FIFO"]);
    // A hub cache file that is a FIFO.
    let cache = dir.path().join("hf");
    let snap = cache.join("models--org--repo/snapshots/main");
    std::fs::create_dir_all(&snap).unwrap();
    mkfifo(&snap.join("w.safetensors"));
    let o = facelens_in(dir.path(), &["embed", "face.png", "--out", "e.safetensors", "--model", "hf:org/repo/w.safetensors"], &[("HF_HUB_CACHE", cache.as_path())]);
    assert_refused(&o, &["hf:org/repo@main/w.safetensors", "FIFO"]);
    let mut left = names(dir.path());
    left.retain(|n| n != "hf" && n != "runs");
    assert_eq!(left, ["f.png", "face.png", "lm.csv", "m.onnx"]);
}

// Row 9: nonsense settings are refused, naming the key, before a run directory exists.
#[test]
fn nonsense_training_settings_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = repo().join("experiments/decoder-train/ci.toml");
    let runs = dir.path().join("runs");
    let root = format!("runs_root=\"{}\"", runs.display());
    for (set, key) in [
        ("train.lr=nan", "train.lr"),
        ("train.lr=inf", "train.lr"),
        ("train.adamw.beta1=1.0", "train.adamw.beta1"),
        ("train.adamw.eps=0", "train.adamw.eps"),
        ("data.grey_fraction=2.0", "data.grey_fraction"),
        ("train.min_lr=1.0", "train.min_lr"),
        ("runs_root=\"\"", "runs_root"),
    ] {
        let o = facelens_in(dir.path(), &["train-decoder", "--config", s(&config), "--set", &root, "--set", set], &[]);
        let e = assert_refused(&o, &[key]);
        assert!(e.contains("ci.toml"), "{set}: {e}");
        assert!(!runs.exists(), "{set}: a run directory was created");
    }
    assert_eq!(names(dir.path()), Vec::<String>::new(), "nothing written into the working folder");
}

#[test]
fn align_refuses_two_inputs_that_would_share_an_output() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("b")).unwrap();
    std::fs::write(dir.path().join("a.png"), png(112, 112)).unwrap();
    std::fs::write(dir.path().join("b/a.png"), png(112, 112)).unwrap();
    for args in [["align", "a.png", "a.png"], ["align", "a.png", "b/a.png"]] {
        let mut args = args.to_vec();
        args.extend(["--out", "D", "--no-detect"]);
        let o = facelens_in(dir.path(), &args, &[]);
        assert_refused(&o, &[args[2], "would both be written as", "a.png"]);
        assert!(!dir.path().join("D").exists());
    }
}

#[test]
fn runs_show_refuses_a_corrupt_meta_json() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("runs/exp/20250101T000000Z-abc");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::write(run.join("config.toml"), "x = 1\n").unwrap();
    std::fs::write(run.join("meta.json"), "{ not json").unwrap();
    let o = facelens_in(dir.path(), &["runs", "show", "runs/exp/20250101T000000Z-abc", "--json"], &[]);
    assert_refused(&o, &["meta.json"]);
    assert!(o.stdout.is_empty(), "nothing printed as if the run were fine");
    assert_eq!(std::fs::read_to_string(run.join("meta.json")).unwrap(), "{ not json");
}

// Row 10: messages say what failed once, naming the file or setting.
#[test]
fn errors_are_said_once_and_name_what_failed() {
    let dir = tempfile::tempdir().unwrap();
    let o = facelens_in(dir.path(), &["align", "missing.jpg", "--out", "D", "--no-detect"], &[]);
    let e = assert_refused(&o, &["missing.jpg"]);
    assert_eq!(e.matches("No such file or directory").count(), 1, "{e}");

    std::fs::write(dir.path().join("bad.toml"), "[train\nsteps = 1\n").unwrap();
    let o = facelens_in(dir.path(), &["train-decoder", "--config", "bad.toml"], &[]);
    let e = assert_refused(&o, &["bad.toml"]);
    assert_eq!(e.matches("invalid table header").count(), 1, "{e}");

    let config = repo().join("experiments/decoder-train/ci.toml");
    let root = format!("runs_root=\"{}\"", dir.path().join("runs").display());
    let o = facelens_in(
        dir.path(),
        &["train-decoder", "--config", s(&config), "--set", &root, "--set", "train.loss.pixel=0", "--set", "train.loss.identity=0", "--set", "train.loss.ssim=0", "--set", "train.loss.perceptual=0"],
        &[],
    );
    assert_refused(&o, &["train.loss.pixel", "all 0", "nothing to train"]);

    std::fs::write(dir.path().join("face.png"), png(112, 112)).unwrap();
    let o = facelens_in(dir.path(), &["reconstruct", "face.png", "--decoder", "hf:org/repo/decoder.safetensors", "--out", "R"], &[]);
    let e = assert_refused(&o, &["hf:org/repo@main/decoder.safetensors", "HF_HUB_OFFLINE"]);
    assert!(!e.contains("train one"), "{e}");

    // A write into a "folder" that is a file says it could not write, not read.
    std::fs::write(dir.path().join("file"), b"x").unwrap();
    let o = facelens_in(dir.path(), &["embed", "face.png", "--out", "file/e.safetensors"], &[]);
    let e = assert_refused(&o, &["cannot write file/e.safetensors"]);
    assert!(!e.contains("cannot read"), "{e}");
    let mut left = names(dir.path());
    left.sort();
    assert_eq!(left, ["bad.toml", "face.png", "file"]);
}

// Row 11: `eval verify` writes no file unless asked.
#[test]
#[ignore = "needs ../shared and the weights scripts/setup.sh fetches"]
fn eval_verify_writes_no_scores_into_the_working_folder_unless_asked() {
    let dir = tempfile::tempdir().unwrap();
    let full = std::fs::read_to_string(common::shared("data/lfw/pairs.txt")).unwrap();
    let lines: Vec<&str> = full.lines().skip(1).collect();
    let small = format!("2\t1\n{}\n{}\n{}\n{}\n", lines[0], lines[300], lines[600], lines[900]);
    std::fs::write(dir.path().join("pairs.txt"), small).unwrap();
    let images = common::shared("data/lfw/images");
    let ck = repo().join("checkpoints");
    assert!(ck.join("w600k_mbf.safetensors").is_file(), "run scripts/setup.sh first");
    let o = facelens_in(
        dir.path(),
        &["eval", "verify", "--pairs", "pairs.txt", "--images", s(&images), "--landmarks", &common::landmarks(), "--json"],
        &[("FACELENS_CHECKPOINTS", ck.as_path())],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(names(dir.path()), ["pairs.txt"]);
    // Asked for, into a FIFO: refused before any image is embedded, the FIFO left as it was.
    mkfifo(&dir.path().join("scores.csv"));
    let o = facelens_in(
        dir.path(),
        &["eval", "verify", "--pairs", "pairs.txt", "--images", s(&images), "--landmarks", &common::landmarks(), "--scores", "scores.csv"],
        &[("FACELENS_CHECKPOINTS", ck.as_path())],
    );
    assert_refused(&o, &["scores.csv", "FIFO"]);
    assert_eq!(names(dir.path()), ["pairs.txt", "scores.csv"]);
}
