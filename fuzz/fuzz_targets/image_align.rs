//! Decoding (every format, size limits, truncation) and aligning whatever decodes, with
//! keypoints taken from the input's first bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let (points, image) = data.split_at(data.len().min(20));
    let Ok(img) = facelens_data::decode_bytes(image, Path::new("fuzz.jpg")) else { return };
    let mut kp = [[0f32; 2]; 5];
    for (i, b) in points.iter().enumerate() {
        kp[i / 4][(i / 2) % 2] += f32::from(*b) * if i % 2 == 0 { 1.0 } else { 0.5 };
    }
    if let Ok(crop) = facelens_data::align_face(&img, &kp, 112) {
        assert_eq!(crop.dimensions(), (112, 112));
    }
    let _ = facelens_data::resize_to(&img, 112);
});
