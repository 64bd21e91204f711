//! Umeyama and the warp on synthetic inputs with known answers.

use facelens_data::{
    align_face, alignment_matrix, arcface_template, invert_affine, resize_to, umeyama, warp_affine,
    DataError, Similarity, ARCFACE_TEMPLATE,
};
use image::{Rgb, RgbImage};

const PTS: [[f64; 2]; 5] = [
    [10.0, 20.0],
    [50.0, 18.0],
    [31.0, 40.0],
    [15.0, 61.0],
    [48.0, 60.0],
];

#[test]
fn umeyama_recovers_a_known_similarity() {
    let (s, theta) = (1.7f64, 0.4f64);
    let truth = Similarity {
        a: s * theta.cos(),
        b: s * theta.sin(),
        tx: -12.5,
        ty: 33.0,
    };
    let dst: Vec<[f64; 2]> = PTS.iter().map(|&p| truth.apply(p)).collect();
    let est = umeyama(&PTS, &dst).expect("estimate");
    for (got, want) in est
        .matrix()
        .iter()
        .flatten()
        .zip(truth.matrix().iter().flatten())
    {
        assert!((got - want).abs() < 1e-12, "{:?} vs {:?}", est, truth);
    }
    assert!((est.scale() - s).abs() < 1e-12);
    assert!((est.rotation() - theta).abs() < 1e-12);
}

#[test]
fn umeyama_never_reflects() {
    // Mirror the points: the best similarity must still be a proper rotation (det > 0).
    let dst: Vec<[f64; 2]> = PTS.iter().map(|&[x, y]| [-x + 100.0, y]).collect();
    let est = umeyama(&PTS, &dst).expect("estimate");
    let m = est.matrix();
    let det = m[0][0] * m[1][1] - m[0][1] * m[1][0];
    assert!(det > 0.0, "determinant {det} must be positive");
}

#[test]
fn umeyama_rejects_degenerate_points() {
    let same = [[3.0, 4.0]; 5];
    assert!(matches!(
        umeyama(&same, &PTS),
        Err(DataError::DegenerateLandmarks { .. })
    ));
    let nan = [[f64::NAN, 0.0], [1.0, 1.0]];
    assert!(umeyama(&nan, &PTS[..2]).is_err());
    assert!(umeyama(&PTS[..3], &PTS[..2]).is_err());
}

#[test]
fn template_keypoints_map_to_themselves() {
    let m = alignment_matrix(&ARCFACE_TEMPLATE, 112).expect("matrix");
    let expected = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]];
    for (got, want) in m.iter().flatten().zip(expected.iter().flatten()) {
        assert!((got - want).abs() < 1e-5, "{m:?}");
    }
    let t224 = arcface_template(224).expect("224");
    assert!((t224[0][0] - 2.0 * 38.2946).abs() < 1e-4);
    let t128 = arcface_template(128).expect("128");
    assert!((t128[0][0] - (38.2946 + 8.0)).abs() < 1e-4);
}

#[test]
fn identity_warp_copies_and_borders_are_black() {
    let img = RgbImage::from_fn(8, 6, |x, y| Rgb([(x * 30) as u8, (y * 40) as u8, 7]));
    let id = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]];
    assert_eq!(warp_affine(&img, &id, 8, 6).expect("warp"), img);

    // Shift right by 2: the first two columns come from outside the source.
    let shift = [[1.0, 0.0, 2.0], [0.0, 1.0, 0.0]];
    let out = warp_affine(&img, &shift, 8, 6).expect("warp");
    assert_eq!(out.get_pixel(0, 3), &Rgb([0, 0, 0]));
    assert_eq!(out.get_pixel(1, 3), &Rgb([0, 0, 0]));
    assert_eq!(out.get_pixel(5, 3), img.get_pixel(3, 3));
}

#[test]
fn half_pixel_shift_interpolates_like_opencv() {
    // Destination x samples source x - 0.5: the mean of two neighbours, rounded half up.
    let img = RgbImage::from_fn(4, 1, |x, _| Rgb([[10u8, 21, 40, 80][x as usize], 0, 0]));
    let m = [[1.0, 0.0, 0.5], [0.0, 1.0, 0.0]];
    let out = warp_affine(&img, &m, 4, 1).expect("warp");
    let row: Vec<u8> = (0..4).map(|x| out.get_pixel(x, 0)[0]).collect();
    // x=0 blends black and 10 -> 5; (10+21)/2 = 15.5 -> 16; (21+40)/2 = 30.5 -> 31; 60.
    assert_eq!(row, vec![5, 16, 31, 60]);
}

#[test]
fn inverse_of_inverse_is_the_matrix() {
    let m = [[1.2, -0.3, 5.0], [0.3, 1.2, -7.0]];
    let back = invert_affine(&invert_affine(&m).expect("inv")).expect("inv");
    for (a, b) in m.iter().flatten().zip(back.iter().flatten()) {
        assert!((a - b).abs() < 1e-12);
    }
    assert!(invert_affine(&[[0.0; 3]; 2]).is_err());
}

#[test]
fn align_face_of_a_template_image_is_the_image() {
    let img = RgbImage::from_fn(112, 112, |x, y| Rgb([x as u8, y as u8, (x ^ y) as u8]));
    let out = align_face(&img, &ARCFACE_TEMPLATE, 112).expect("align");
    let diff: u32 = out
        .as_raw()
        .iter()
        .zip(img.as_raw())
        .map(|(a, b)| u32::from(a.abs_diff(*b)))
        .sum();
    // The fitted transform is the identity up to float noise, so at most an occasional 1-level change.
    assert!(diff < 50, "total diff {diff}");
}

#[test]
fn resize_to_gives_requested_size() {
    let img = RgbImage::from_pixel(250, 200, Rgb([50, 60, 70]));
    let out = resize_to(&img, 112);
    assert_eq!(out.dimensions(), (112, 112));
    assert_eq!(out.get_pixel(56, 56), &Rgb([50, 60, 70]));
}
