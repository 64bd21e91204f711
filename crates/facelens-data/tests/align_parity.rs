//! Alignment parity with the reference crops in `shared/models/w600k_mbf.reference.safetensors`
//! (insightface-style Umeyama + OpenCV `warpAffine`).

mod common;

use facelens_data::{align_face, decode_image, LandmarkTable};
use safetensors::SafeTensors;

#[test]
#[ignore = "needs ../shared"]
fn aligned_crops_match_reference() {
    let bytes = std::fs::read(common::shared("models/w600k_mbf.reference.safetensors"))
        .expect("read reference");
    let (_, meta) = SafeTensors::read_metadata(&bytes).expect("safetensors header");
    let files: Vec<String> = meta
        .metadata()
        .as_ref()
        .and_then(|m| m.get("files"))
        .expect("metadata key `files`")
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    let st = SafeTensors::deserialize(&bytes).expect("safetensors");
    let images = st.tensor("images_rgb_u8").expect("images_rgb_u8");
    assert_eq!(images.shape(), &[files.len(), 112, 112, 3]);
    let reference = images.data();

    let data = common::shared("data");
    let lfw = LandmarkTable::load(&common::shared("data/lfw/landmarks.csv")).expect("lfw landmarks");
    let utk = LandmarkTable::load(&common::shared("data/utkface/landmarks.csv")).expect("utkface landmarks");

    let crop_len = 112 * 112 * 3;
    let mut per_image = Vec::new();
    let (mut identical, mut total) = (0usize, 0usize);
    for (i, file) in files.iter().enumerate() {
        let (table, rel) = if let Some(rel) = file.strip_prefix("lfw/images/") {
            (&lfw, rel)
        } else if let Some(rel) = file.strip_prefix("utkface/images/") {
            (&utk, rel)
        } else {
            panic!("unexpected reference file {file}");
        };
        let kps = table
            .get(rel)
            .and_then(|r| r.keypoints)
            .expect("landmarks for reference file");
        let img = decode_image(&data.join(file)).expect("decode");
        let crop = align_face(&img, &kps, 112).expect("align");
        let want = &reference[i * crop_len..(i + 1) * crop_len];
        let sum: u64 = crop
            .as_raw()
            .iter()
            .zip(want)
            .map(|(&a, &b)| u64::from(a.abs_diff(b)))
            .sum();
        identical += crop
            .as_raw()
            .iter()
            .zip(want)
            .filter(|(a, b)| a == b)
            .count();
        total += crop_len;
        per_image.push((sum as f64 / crop_len as f64, file));
    }
    let max = per_image.iter().map(|p| p.0).fold(0.0, f64::max);
    let mean = per_image.iter().map(|p| p.0).sum::<f64>() / per_image.len() as f64;
    eprintln!(
        "alignment parity over {} crops: per-image mean |diff| max {max:.4}, mean {mean:.4} grey levels; \
         {:.2} % of samples identical",
        per_image.len(),
        100.0 * identical as f64 / total as f64
    );
    for (d, file) in &per_image {
        assert!(*d <= 1.0, "{file}: mean abs diff {d:.3} > 1.0");
    }
}
