//! Decoding (every format, size limits, truncation) and aligning whatever decodes. The input is
//! the whole file; its first bytes also jitter the keypoints (so real files stay valid seeds).
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(img) = facelens_data::decode_bytes(data, Path::new("fuzz.jpg")) else { return };
    let (w, h) = (img.width() as f32, img.height() as f32);
    let template = [[0.34, 0.46], [0.66, 0.46], [0.5, 0.64], [0.37, 0.82], [0.63, 0.82]];
    let mut kp = [[0f32; 2]; 5];
    for (i, p) in template.iter().enumerate() {
        let jitter = |k: usize| f32::from(data.get(i * 2 + k).copied().unwrap_or(128)) / 255.0 - 0.5;
        kp[i] = [(p[0] + 0.3 * jitter(0)) * w, (p[1] + 0.3 * jitter(1)) * h];
    }
    if let Ok(crop) = facelens_data::align_face(&img, &kp, 112) {
        assert_eq!(crop.dimensions(), (112, 112));
    }
    let _ = facelens_data::resize_to(&img, 112);
});
