//! The candle MobileFaceNet is the real `w600k_mbf`: embeddings match onnxruntime's.

mod common;

use candle_core::Device;
use facelens_models::preprocess::cosine;
use facelens_models::FaceModel;

#[test]
#[ignore = "needs ../shared"]
fn w600k_mbf_matches_onnxruntime_reference() {
    let (ckpt, reference) = (common::imported_default(), common::reference());
    let model = FaceModel::load(ckpt.to_str().unwrap(), &Device::Cpu).expect("load imported checkpoint");
    assert_eq!(model.spec.name, "w600k_mbf", "imported default keeps its zoo spec");
    let crops: Vec<&[u8]> = reference.images.iter().map(|v| v.as_slice()).collect();
    let ours = model.embed_crops_candle(&crops, 20).expect("embed");
    assert_eq!(ours.len(), 60);
    check(&ours, &reference.embeddings, "candle module");
    let fast = model.embed_crops(&crops, 20).expect("embed (lowered graph)");
    check(&fast, &reference.embeddings, "lowered graph");
}

fn check(ours: &[Vec<f32>], reference: &[Vec<f32>], what: &str) {
    let mut min_cos = f32::MAX;
    let mut max_abs = 0f32;
    for (a, b) in ours.iter().zip(reference) {
        min_cos = min_cos.min(cosine(a, b));
        for (x, y) in a.iter().zip(b) {
            max_abs = max_abs.max((x - y).abs());
        }
    }
    let scale = reference.iter().flatten().fold(0f32, |m, v| m.max(v.abs()));
    eprintln!("w600k_mbf parity ({what}) over 60 faces: min cosine {min_cos:.7}, max abs diff {max_abs:.2e} (max |e| {scale:.2})");
    assert!(min_cos >= 0.99999, "{what}: min cosine {min_cos} < 0.99999");
}

/// The synthetic images of `benches/python/sface_reference.py`, HWC RGB.
fn synthetic(k: usize) -> Vec<u8> {
    let mut img = Vec::with_capacity(112 * 112 * 3);
    for y in 0..112 {
        for x in 0..112 {
            for c in 0..3 {
                img.push(((7 * x + 13 * y + 50 * c + 5 * ((x * y) % 23) + 31 * k) % 256) as u8);
            }
        }
    }
    img
}

#[test]
#[ignore = "needs SFace fetched (scripts/setup.sh)"]
fn sface_matches_onnxruntime_on_synthetic_images() {
    let ckpt = common::imported_sface();
    let model = FaceModel::load(ckpt.to_str().unwrap(), &Device::Cpu).expect("load SFace");
    assert_eq!(model.spec.name, "sface", "an imported SFace keeps its zoo spec");
    assert_eq!(model.spec.std, [128.0; 3]);
    let fixture: serde_json::Value = serde_json::from_str(include_str!("fixtures/sface_synthetic.json")).expect("fixture");
    let reference: Vec<Vec<f32>> = fixture["embeddings"]
        .as_array()
        .expect("embeddings")
        .iter()
        .map(|e| e.as_array().expect("row").iter().map(|v| v.as_f64().expect("number") as f32).collect())
        .collect();
    let images: Vec<Vec<u8>> = (0..reference.len()).map(synthetic).collect();
    let crops: Vec<&[u8]> = images.iter().map(|v| v.as_slice()).collect();
    let ours = model.embed_crops_candle(&crops, 4).expect("embed");
    let fast = model.embed_crops(&crops, 4).expect("embed (lowered graph)");
    for (what, got) in [("candle module", &ours), ("lowered graph", &fast)] {
        let min_cos = got.iter().zip(&reference).map(|(a, b)| cosine(a, b)).fold(f32::MAX, f32::min);
        let max_abs = got.iter().flatten().zip(reference.iter().flatten()).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        eprintln!("sface parity ({what}) over {} images: min cosine {min_cos:.7}, max abs diff {max_abs:.2e}", got.len());
        assert!(min_cos >= 0.99999, "{what}: min cosine {min_cos} < 0.99999");
    }
}
