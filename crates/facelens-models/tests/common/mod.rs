//! Helpers shared by the integration tests: `../shared`, the reference set and the imported
//! models.
//!
//! Tests that use them are `#[ignore = "needs ..."]`, so a plain `cargo test` reports them as
//! ignored; run on purpose (`-- --include-ignored`), a missing file fails the test by name
//! instead of letting it pass without checking anything.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// `rel` inside `../shared`, the data and models beside the repository; panics naming the path
/// when it is not there.
pub fn shared(rel: &str) -> PathBuf {
    let beside_repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../..");
    let p = beside_repo.canonicalize().unwrap_or(beside_repo).join("shared").join(rel);
    assert!(p.exists(), "{} is missing: this test needs ../shared beside the repository", p.display());
    p
}

pub struct Reference {
    pub images: Vec<Vec<u8>>,
    pub embeddings: Vec<Vec<f32>>,
    pub files: Vec<String>,
}

/// The 60 aligned faces and onnxruntime embeddings in `w600k_mbf.reference.safetensors`.
pub fn reference() -> Reference {
    let path = shared("models/w600k_mbf.reference.safetensors");
    let bytes = std::fs::read(&path).expect("read the reference set");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("reference set is safetensors");
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).expect("safetensors header");
    let files: Vec<String> = meta
        .metadata()
        .as_ref()
        .and_then(|m| m.get("files"))
        .expect("metadata key `files`")
        .lines()
        .map(String::from)
        .collect();
    let imgs = st.tensor("images_rgb_u8").expect("images_rgb_u8");
    let n = imgs.shape()[0];
    let per = 112 * 112 * 3;
    let images = (0..n).map(|i| imgs.data()[i * per..(i + 1) * per].to_vec()).collect();
    let emb = st.tensor("embeddings").expect("embeddings");
    let d = emb.shape()[1];
    let vals: Vec<f32> = emb.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    let embeddings = vals.chunks(d).map(|c| c.to_vec()).collect();
    Reference { images, embeddings, files }
}

/// `../shared/models/w600k_mbf.onnx`, imported once per test binary into a temp dir: the
/// checkpoint the reference embeddings are compared against.
pub fn imported_default() -> PathBuf {
    static ONCE: OnceLock<PathBuf> = OnceLock::new();
    ONCE.get_or_init(|| {
        let onnx = shared("models/w600k_mbf.onnx");
        let dir = std::env::temp_dir().join(format!("facelens-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let out = dir.join("w600k_mbf.safetensors");
        let arch = facelens_models::zoo::w600k_mbf().arch;
        facelens_models::backbone::import_onnx(&onnx, &arch, &out).expect("import of the default ONNX");
        out
    })
    .clone()
}

/// SFace as `scripts/setup.sh` fetches it: the imported checkpoint, or its ONNX imported once
/// per test binary; panics naming both when neither was fetched.
pub fn imported_sface() -> PathBuf {
    static ONCE: OnceLock<PathBuf> = OnceLock::new();
    ONCE.get_or_init(|| {
        let spec = facelens_models::zoo::sface();
        let ckpt = facelens_models::zoo::setup_checkpoint(&spec).expect("SFace is a setup model");
        if ckpt.is_file() {
            return ckpt;
        }
        let onnx = ckpt.with_file_name("face_recognition_sface_2021dec_int8bq.onnx");
        assert!(
            onnx.is_file(),
            "neither {} nor {} is there: this test needs SFace fetched by scripts/setup.sh",
            ckpt.display(),
            onnx.display()
        );
        let dir = std::env::temp_dir().join(format!("facelens-test-sface-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let out = dir.join("sface.safetensors");
        facelens_models::backbone::import_onnx(&onnx, &spec.arch, &out).expect("import of the SFace ONNX");
        out
    })
    .clone()
}
