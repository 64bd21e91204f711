//! Helpers shared by the integration tests: locating `../shared` and reading the reference set.
#![allow(dead_code)]

use std::path::PathBuf;

/// `../shared` beside the repository, when this machine has it.
pub fn shared_dir() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared");
    p.join("models/w600k_mbf.onnx").is_file().then(|| p.canonicalize().unwrap_or(p))
}

/// The ONNX of the default model: `../shared` first, else the one `scripts/setup.sh` fetched.
pub fn default_onnx() -> Option<PathBuf> {
    if let Some(s) = shared_dir() {
        return Some(s.join("models/w600k_mbf.onnx"));
    }
    let fetched = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../checkpoints/w600k_mbf.onnx");
    fetched.is_file().then_some(fetched)
}

pub struct Reference {
    pub images: Vec<Vec<u8>>,
    pub embeddings: Vec<Vec<f32>>,
    pub files: Vec<String>,
}

/// The 60 aligned faces and onnxruntime embeddings in `w600k_mbf.reference.safetensors`.
pub fn reference() -> Option<Reference> {
    let path = shared_dir()?.join("models/w600k_mbf.reference.safetensors");
    let bytes = std::fs::read(path).ok()?;
    let st = safetensors::SafeTensors::deserialize(&bytes).ok()?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).ok()?;
    let files: Vec<String> = meta.metadata().as_ref()?.get("files")?.lines().map(String::from).collect();
    let imgs = st.tensor("images_rgb_u8").ok()?;
    let n = imgs.shape()[0];
    let per = 112 * 112 * 3;
    let images = (0..n).map(|i| imgs.data()[i * per..(i + 1) * per].to_vec()).collect();
    let emb = st.tensor("embeddings").ok()?;
    let d = emb.shape()[1];
    let vals: Vec<f32> = emb.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    let embeddings = vals.chunks(d).map(|c| c.to_vec()).collect();
    Some(Reference { images, embeddings, files })
}

/// Imports the default ONNX once per test binary into a temp dir and returns the checkpoint.
pub fn imported_default() -> Option<PathBuf> {
    static ONCE: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    ONCE.get_or_init(|| {
        let onnx = default_onnx()?;
        let dir = std::env::temp_dir().join(format!("facelens-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).ok()?;
        let out = dir.join("w600k_mbf.safetensors");
        let arch = facelens_models::zoo::w600k_mbf().arch;
        facelens_models::backbone::import_onnx(&onnx, &arch, &out).expect("import of the default ONNX");
        Some(out)
    })
    .clone()
}

/// SFace as `scripts/setup.sh` fetches it: the imported checkpoint, or its ONNX imported once
/// per test binary. `None` when neither was fetched.
pub fn imported_sface() -> Option<PathBuf> {
    let spec = facelens_models::zoo::sface();
    let ckpt = facelens_models::zoo::setup_checkpoint(&spec)?;
    if ckpt.is_file() {
        return Some(ckpt);
    }
    let onnx = ckpt.with_file_name("face_recognition_sface_2021dec_int8bq.onnx");
    if !onnx.is_file() {
        return None;
    }
    let dir = std::env::temp_dir().join(format!("facelens-test-sface-{}", std::process::id()));
    std::fs::create_dir_all(&dir).ok()?;
    let out = dir.join("sface.safetensors");
    facelens_models::backbone::import_onnx(&onnx, &spec.arch, &out).expect("import of the SFace ONNX");
    Some(out)
}
