//! Every bad model input gets one clear error naming the file and the problem.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::Device;
use facelens_models::backbone::{META_ARCH, META_CONFIG};
use facelens_models::mobilefacenet::Config;
use facelens_models::weights::{save_atomic, ParamLayout};
use facelens_models::zoo::Arch;
use facelens_models::{Backbone, FaceModel, ModelError};

type Named = Vec<(String, Vec<usize>, Vec<f32>)>;

fn tiny_layout() -> ParamLayout {
    Backbone::layout(&Arch::MobileFaceNet(Config::tiny())).unwrap()
}

fn tiny_tensors() -> Named {
    tiny_layout()
        .params
        .into_iter()
        .enumerate()
        .map(|(i, (name, shape))| {
            let n: usize = shape.iter().product();
            let fill = if name.ends_with("running_var") { 1.0 } else { 0.01 * (i % 7) as f32 };
            (name, shape, vec![fill; n])
        })
        .collect()
}

fn meta() -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    m.insert(META_ARCH.into(), "mobilefacenet".into());
    m.insert(META_CONFIG.into(), serde_json::to_string(&Config::tiny()).unwrap());
    m
}

fn write(dir: &Path, name: &str, tensors: &Named) -> PathBuf {
    let p = dir.join(name);
    save_atomic(&p, tensors, &meta()).unwrap();
    p
}

fn load_err(path: &Path) -> ModelError {
    match FaceModel::load(path.to_str().unwrap(), &Device::Cpu) {
        Ok(_) => panic!("{} loaded but should not", path.display()),
        Err(e) => {
            let msg = e.to_string();
            let file = path.file_name().unwrap().to_str().unwrap();
            assert!(msg.contains(file), "error `{msg}` does not name {file}");
            e
        }
    }
}

#[test]
fn a_good_checkpoint_loads_and_embeds() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "ok.safetensors", &tiny_tensors());
    let m = FaceModel::load(p.to_str().unwrap(), &Device::Cpu).unwrap();
    assert_eq!(m.spec.embedding_dim, 16);
    assert!(m.spec.threshold.is_none(), "a custom checkpoint has no calibrated threshold");
    let crop = vec![128u8; 112 * 112 * 3];
    let e = m.embed_crops(&[&crop], 1).unwrap();
    assert!(e[0].iter().all(|v| v.is_finite()));
}

#[test]
fn missing_tensor_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = tiny_tensors();
    t.retain(|(n, _, _)| n != "fc.weight");
    match load_err(&write(dir.path(), "missing.safetensors", &t)) {
        ModelError::MissingKeys { names, .. } => assert_eq!(names, ["fc.weight"]),
        e => panic!("expected MissingKeys, got {e}"),
    }
}

#[test]
fn unexpected_tensor_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = tiny_tensors();
    t.push(("head.extra.weight".into(), vec![2], vec![0.0, 0.0]));
    match load_err(&write(dir.path(), "extra.safetensors", &t)) {
        ModelError::UnexpectedKeys { names, .. } => assert_eq!(names, ["head.extra.weight"]),
        e => panic!("expected UnexpectedKeys, got {e}"),
    }
}

#[test]
fn wrong_shape_says_expected_and_found() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = tiny_tensors();
    let fc = t.iter_mut().find(|(n, _, _)| n == "fc.weight").unwrap();
    let want = fc.1.clone();
    fc.1 = vec![want[0], want[1] - 1];
    fc.2.truncate(want[0] * (want[1] - 1));
    match load_err(&write(dir.path(), "shape.safetensors", &t)) {
        ModelError::WrongShape { name, expected, got, .. } => {
            assert_eq!(name, "fc.weight");
            assert_eq!(expected, want);
            assert_eq!(got, vec![want[0], want[1] - 1]);
        }
        e => panic!("expected WrongShape, got {e}"),
    }
}

#[test]
fn non_finite_weights_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = tiny_tensors();
    let w = t.iter_mut().find(|(n, _, _)| n == "conv_sep.layers.0.weight").unwrap();
    w.2[3] = f32::NAN;
    w.2[5] = f32::INFINITY;
    match load_err(&write(dir.path(), "nan.safetensors", &t)) {
        ModelError::NonFinite { name, count, .. } => {
            assert_eq!(name, "conv_sep.layers.0.weight");
            assert_eq!(count, 2);
        }
        e => panic!("expected NonFinite, got {e}"),
    }
}

#[test]
fn integer_dtype_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let t = tiny_tensors();
    // Re-encode one tensor as i32 with the raw safetensors API.
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = t
        .iter()
        .map(|(n, s, d)| {
            let b = if n == "fc.bias" { d.iter().flat_map(|v| (*v as i32).to_le_bytes()).collect() } else { d.iter().flat_map(|v| v.to_le_bytes()).collect() };
            (n.clone(), s.clone(), b)
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = bytes
        .iter()
        .map(|(n, s, b)| {
            let dt = if n == "fc.bias" { safetensors::Dtype::I32 } else { safetensors::Dtype::F32 };
            (n.clone(), safetensors::tensor::TensorView::new(dt, s.clone(), b).unwrap())
        })
        .collect();
    let meta: std::collections::HashMap<String, String> = meta().into_iter().collect();
    let p = dir.path().join("dtype.safetensors");
    std::fs::write(&p, safetensors::serialize(views, Some(meta)).unwrap()).unwrap();
    match load_err(&p) {
        ModelError::WrongDtype { name, got, .. } => {
            assert_eq!(name, "fc.bias");
            assert!(got.contains("I32"));
        }
        e => panic!("expected WrongDtype, got {e}"),
    }
}

#[test]
fn truncated_and_empty_and_garbage_files_are_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(dir.path(), "good.safetensors", &tiny_tensors());
    let bytes = std::fs::read(&good).unwrap();
    for (name, data) in [
        ("truncated.safetensors", bytes[..bytes.len() / 2].to_vec()),
        ("empty.safetensors", Vec::new()),
        ("garbage.safetensors", b"this is not a safetensors file at all".to_vec()),
    ] {
        let p = dir.path().join(name);
        std::fs::write(&p, data).unwrap();
        match load_err(&p) {
            ModelError::CorruptSafetensors { .. } | ModelError::UnknownArchitecture { .. } => {}
            e => panic!("{name}: expected CorruptSafetensors, got {e}"),
        }
    }
}

#[test]
fn checkpoint_without_architecture_is_refused_with_advice() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("noarch.safetensors");
    save_atomic(&p, &tiny_tensors(), &BTreeMap::new()).unwrap();
    match load_err(&p) {
        ModelError::UnknownArchitecture { reason, .. } => assert!(reason.contains("import"), "{reason}"),
        e => panic!("expected UnknownArchitecture, got {e}"),
    }
}

#[test]
fn unknown_model_name_lists_the_zoo() {
    match FaceModel::load("no_such_model", &Device::Cpu) {
        Err(ModelError::UnknownModel { name, known }) => {
            assert_eq!(name, "no_such_model");
            assert!(known.contains(&"w600k_mbf".to_string()));
        }
        Err(e) => panic!("expected UnknownModel, got {e}"),
        Ok(_) => panic!("loaded an unknown model"),
    }
}

#[test]
fn missing_file_is_named() {
    let e = FaceModel::load("/nonexistent/dir/model.safetensors", &Device::Cpu).err().expect("must fail");
    assert!(e.to_string().contains("/nonexistent/dir/model.safetensors"), "{e}");
}

#[test]
fn corrupt_onnx_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let arch = Arch::MobileFaceNet(Config::w600k_mbf());
    for (name, data) in [("empty.onnx", Vec::new()), ("garbage.onnx", vec![0xffu8; 64])] {
        let p = dir.path().join(name);
        std::fs::write(&p, data).unwrap();
        let out = dir.path().join("out.safetensors");
        match facelens_models::backbone::import_onnx(&p, &arch, &out) {
            Err(ModelError::CorruptOnnx { path, .. }) => assert_eq!(path, p),
            Err(e) => panic!("{name}: expected CorruptOnnx, got {e}"),
            Ok(_) => panic!("{name} imported"),
        }
        assert!(!out.exists(), "no output file may be written for a bad import");
    }
}

#[test]
#[ignore = "needs ../shared"]
fn onnx_of_another_architecture_is_a_graph_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.safetensors");
    let arch = Arch::MobileFaceNet(Config::w600k_mbf());
    match facelens_models::backbone::import_onnx(&common::shared("models/scrfd_500m_bnkps.onnx"), &arch, &out) {
        Err(ModelError::GraphMismatch { .. }) | Err(ModelError::WrongShape { .. }) => {}
        Err(e) => panic!("expected GraphMismatch, got {e}"),
        Ok(_) => panic!("the detector imported as a recogniser"),
    }
    assert!(!out.exists());
}

/// A Hugging Face cache layout made by the test: `hf:` references resolve offline.
#[test]
fn hub_reference_resolves_offline_from_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let hub = dir.path().join("hub");
    let repo = hub.join("models--testorg--tiny-face");
    let sha = "0123456789abcdef0123456789abcdef01234567";
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::create_dir_all(repo.join("blobs")).unwrap();
    std::fs::create_dir_all(repo.join(format!("snapshots/{sha}"))).unwrap();
    // A trailing newline, as many tools write it.
    std::fs::write(repo.join("refs/main"), format!("{sha}\n")).unwrap();
    let blob = write(&repo.join("blobs"), "deadbeef", &tiny_tensors());
    std::os::unix::fs::symlink(&blob, repo.join(format!("snapshots/{sha}/model.safetensors"))).unwrap();
    // Environment is process-wide: this is the only test in this binary touching HF_*.
    std::env::set_var("HF_HUB_CACHE", &hub);
    std::env::set_var("HF_HUB_OFFLINE", "1");
    let m = FaceModel::load("hf:testorg/tiny-face/model.safetensors", &Device::Cpu).expect("cached hub file");
    assert_eq!(m.spec.embedding_dim, 16);
    let pinned = format!("hf:testorg/tiny-face@{sha}/model.safetensors");
    assert!(FaceModel::load(&pinned, &Device::Cpu).is_ok(), "revision pinned by commit");
    match FaceModel::load("hf:testorg/tiny-face/missing.safetensors", &Device::Cpu) {
        Err(ModelError::Hub { spec, reason }) => {
            assert!(spec.contains("missing.safetensors"));
            assert!(reason.contains("HF_HUB_OFFLINE"), "{reason}");
        }
        Err(e) => panic!("expected Hub error, got {e}"),
        Ok(_) => panic!("found a file that is not cached"),
    }
    for bad in ["hf:", "hf:org", "hf:org/repo", "hf:org/@rev/file", "hf:/repo/file"] {
        assert!(matches!(FaceModel::load(bad, &Device::Cpu), Err(ModelError::BadHubSpec { .. })), "{bad}");
    }
}
