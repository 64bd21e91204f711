//! The candle MobileFaceNet is the real `w600k_mbf`: embeddings match onnxruntime's.

mod common;

use candle_core::Device;
use facelens_models::preprocess::cosine;
use facelens_models::FaceModel;

#[test]
fn w600k_mbf_matches_onnxruntime_reference() {
    let (Some(ckpt), Some(reference)) = (common::imported_default(), common::reference()) else {
        eprintln!("skipped: ../shared (reference embeddings) not present");
        return;
    };
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
    assert!(min_cos >= 0.9999, "{what}: min cosine {min_cos} < 0.9999");
}
