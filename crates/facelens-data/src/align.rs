//! 5-point face alignment onto the ArcFace 112x112 template (docs/design.md §4).
//!
//! The transform is the least-squares similarity (rotation, uniform scale, translation; never a
//! reflection) of Umeyama (1991), as computed by insightface's `face_align.norm_crop` through
//! scikit-image. The warp reproduces OpenCV's `warpAffine(INTER_LINEAR, BORDER_CONSTANT, 0)` bit for
//! bit in its fixed-point arithmetic, because the recognisers were trained on crops made that way
//! and the reference embeddings in `shared/models` were computed from such crops.

use image::{imageops, Rgb, RgbImage};

use crate::error::{DataError, Result};

/// Side of the canonical ArcFace crop.
pub const ARCFACE_SIZE: u32 = 112;

/// Keypoint positions (left eye, right eye, nose, left and right mouth corner) in a 112x112 crop.
pub const ARCFACE_TEMPLATE: [[f32; 2]; 5] = [
    [38.2946, 51.6963],
    [73.5318, 51.5014],
    [56.0252, 71.7366],
    [41.5493, 92.3655],
    [70.7299, 92.2041],
];

/// A 2x3 affine matrix `[[a, b, c], [d, e, f]]` mapping `(x, y)` to `(a x + b y + c, d x + e y + f)`,
/// laid out like the matrices OpenCV's `warpAffine` takes.
pub type Affine = [[f64; 3]; 2];

/// A similarity `x' = a x - b y + tx`, `y' = b x + a y + ty` with `a = s cos(theta)`, `b = s sin(theta)`.
///
/// Storing `(a, b)` instead of a general 2x2 block makes a reflection unrepresentable.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Similarity {
    pub a: f64,
    pub b: f64,
    pub tx: f64,
    pub ty: f64,
}

impl Similarity {
    /// Uniform scale factor (always > 0 for an estimated transform).
    pub fn scale(&self) -> f64 {
        self.a.hypot(self.b)
    }

    /// Rotation angle in radians, counter-clockwise in a y-up frame.
    pub fn rotation(&self) -> f64 {
        self.b.atan2(self.a)
    }

    /// The transform as an OpenCV-style 2x3 matrix.
    pub fn matrix(&self) -> Affine {
        [[self.a, -self.b, self.tx], [self.b, self.a, self.ty]]
    }

    /// Maps one point.
    pub fn apply(&self, p: [f64; 2]) -> [f64; 2] {
        [
            self.a * p[0] - self.b * p[1] + self.tx,
            self.b * p[0] + self.a * p[1] + self.ty,
        ]
    }
}

/// Least-squares similarity mapping `src` onto `dst` (Umeyama without reflection).
///
/// In 2-D, Umeyama's SVD solution restricted to proper rotations equals the complex least-squares
/// fit `z_dst ~ w z_src + t` with `w = a + ib`; that closed form needs no SVD and cannot reflect.
pub fn umeyama(src: &[[f64; 2]], dst: &[[f64; 2]]) -> Result<Similarity> {
    if src.len() != dst.len() || src.len() < 2 {
        return Err(DataError::DegenerateLandmarks {
            reason: format!(
                "need at least 2 matching points, got {} source and {} destination points",
                src.len(),
                dst.len()
            ),
        });
    }
    if src.iter().chain(dst).flatten().any(|v| !v.is_finite()) {
        return Err(DataError::DegenerateLandmarks {
            reason: "keypoints contain NaN or infinite coordinates".into(),
        });
    }
    let n = src.len() as f64;
    let mean = |pts: &[[f64; 2]]| {
        let s = pts
            .iter()
            .fold([0.0, 0.0], |acc, p| [acc[0] + p[0], acc[1] + p[1]]);
        [s[0] / n, s[1] / n]
    };
    let (ms, md) = (mean(src), mean(dst));
    let (mut var, mut dot, mut cross) = (0.0, 0.0, 0.0);
    for (s, d) in src.iter().zip(dst) {
        let (sx, sy) = (s[0] - ms[0], s[1] - ms[1]);
        let (dx, dy) = (d[0] - md[0], d[1] - md[1]);
        var += sx * sx + sy * sy;
        dot += sx * dx + sy * dy;
        cross += sx * dy - sy * dx;
    }
    // All source points (nearly) coincide: scale and rotation are undetermined.
    let spread = src.iter().flatten().fold(1.0f64, |m, v| m.max(v.abs()));
    if var <= 1e-12 * spread * spread * n {
        return Err(DataError::DegenerateLandmarks {
            reason: "all source keypoints coincide".into(),
        });
    }
    let (a, b) = (dot / var, cross / var);
    if a == 0.0 && b == 0.0 {
        return Err(DataError::DegenerateLandmarks {
            reason: "all destination keypoints coincide".into(),
        });
    }
    Ok(Similarity {
        a,
        b,
        tx: md[0] - (a * ms[0] - b * ms[1]),
        ty: md[1] - (b * ms[0] + a * ms[1]),
    })
}

/// The ArcFace template for a crop of side `size`, following insightface's `estimate_norm`:
/// multiples of 112 scale the template, other sizes use the 128-pixel variant (scaled, shifted 8 px).
#[allow(clippy::manual_is_multiple_of)] // `is_multiple_of` needs Rust 1.87; the MSRV is 1.85.
pub fn arcface_template(size: u32) -> Result<[[f64; 2]; 5]> {
    if size == 0 {
        return Err(DataError::InvalidArgument(
            "alignment size must be > 0".into(),
        ));
    }
    let (ratio, diff_x) = if size % ARCFACE_SIZE == 0 {
        (f64::from(size) / 112.0, 0.0)
    } else {
        let r = f64::from(size) / 128.0;
        (r, 8.0 * r)
    };
    Ok(ARCFACE_TEMPLATE.map(|[x, y]| [f64::from(x) * ratio + diff_x, f64::from(y) * ratio]))
}

/// The similarity that maps the 5 keypoints (original pixel coordinates) onto the template.
pub fn alignment_transform(keypoints: &[[f32; 2]; 5], size: u32) -> Result<Similarity> {
    let src = keypoints.map(|[x, y]| [f64::from(x), f64::from(y)]);
    umeyama(&src, &arcface_template(size)?)
}

/// The 2x3 matrix that [`align_face`] warps with (source pixels to crop pixels).
pub fn alignment_matrix(keypoints: &[[f32; 2]; 5], size: u32) -> Result<Affine> {
    Ok(alignment_transform(keypoints, size)?.matrix())
}

/// Aligns a face to a `size` x `size` crop from its 5 keypoints.
pub fn align_face(img: &RgbImage, keypoints: &[[f32; 2]; 5], size: u32) -> Result<RgbImage> {
    let m = alignment_matrix(keypoints, size)?;
    warp_affine(img, &m, size, size)
}

/// A plain bilinear resize to `size` x `size` (aspect ratio not kept), for users who explicitly
/// accept unaligned inputs.
pub fn resize_to(img: &RgbImage, size: u32) -> RgbImage {
    imageops::resize(img, size, size, imageops::FilterType::Triangle)
}

// OpenCV's fixed-point constants (imgproc/src/imgwarp.cpp).
const INTER_BITS: u32 = 5;
const INTER_TAB_SIZE: i64 = 1 << INTER_BITS;
const AB_BITS: u32 = 10;
const AB_SCALE: f64 = (1 << AB_BITS) as f64;
const COEF_BITS: u32 = 15;

/// `saturate_cast<int>(double)`: round half to even (SSE2 `cvtsd2si`), clamp to `i32`.
fn cv_round(v: f64) -> i64 {
    if v.is_nan() {
        return 0;
    }
    v.round_ties_even()
        .clamp(f64::from(i32::MIN), f64::from(i32::MAX)) as i64
}

/// Inverts a 2x3 affine matrix exactly as `cv::invertAffineTransform` does.
pub fn invert_affine(m: &Affine) -> Result<Affine> {
    let det = m[0][0] * m[1][1] - m[0][1] * m[1][0];
    if !det.is_finite() || det == 0.0 || m.iter().flatten().any(|v| !v.is_finite()) {
        return Err(DataError::InvalidArgument(format!(
            "affine matrix {m:?} is not invertible"
        )));
    }
    let d = 1.0 / det;
    let (a11, a22) = (m[1][1] * d, m[0][0] * d);
    let (a12, a21) = (-m[0][1] * d, -m[1][0] * d);
    let b1 = -a11 * m[0][2] - a12 * m[1][2];
    let b2 = -a21 * m[0][2] - a22 * m[1][2];
    Ok([[a11, a12, b1], [a21, a22, b2]])
}

/// Warps `src` by the forward matrix `m` (source to destination pixels) into a `width` x `height`
/// image, like `cv2.warpAffine(src, m, (width, height))` with bilinear interpolation and a black
/// constant border.
///
/// Each destination pixel is inverse-mapped to the source; the source position is quantised to
/// 1/32 pixel and interpolated with 15-bit integer weights, as OpenCV does, so results match it
/// up to JPEG decoder differences.
pub fn warp_affine(src: &RgbImage, m: &Affine, width: u32, height: u32) -> Result<RgbImage> {
    let inv = invert_affine(m)?;
    let (sw, sh) = (i64::from(src.width()), i64::from(src.height()));
    let raw = src.as_raw();
    let pixel = |x: i64, y: i64| -> [i64; 3] {
        if x < 0 || y < 0 || x >= sw || y >= sh {
            return [0; 3];
        }
        let i = ((y * sw + x) * 3) as usize;
        [raw[i].into(), raw[i + 1].into(), raw[i + 2].into()]
    };
    let round_delta = (1i64 << AB_BITS) / INTER_TAB_SIZE / 2;
    let adelta: Vec<i64> = (0..width)
        .map(|x| cv_round(inv[0][0] * f64::from(x) * AB_SCALE))
        .collect();
    let bdelta: Vec<i64> = (0..width)
        .map(|x| cv_round(inv[1][0] * f64::from(x) * AB_SCALE))
        .collect();
    let mut out = RgbImage::new(width, height);
    for y in 0..height {
        let fy = f64::from(y);
        let x0 = cv_round((inv[0][1] * fy + inv[0][2]) * AB_SCALE) + round_delta;
        let y0 = cv_round((inv[1][1] * fy + inv[1][2]) * AB_SCALE) + round_delta;
        for x in 0..width {
            let xs = (x0 + adelta[x as usize]) >> (AB_BITS - INTER_BITS);
            let ys = (y0 + bdelta[x as usize]) >> (AB_BITS - INTER_BITS);
            let (sx, sy) = (xs >> INTER_BITS, ys >> INTER_BITS);
            let (ax, ay) = (xs & (INTER_TAB_SIZE - 1), ys & (INTER_TAB_SIZE - 1));
            // Products of the two 1-D weights, each in 1/32, scaled to 2^15: exact integers.
            let w00 = (INTER_TAB_SIZE - ax) * (INTER_TAB_SIZE - ay) * 32;
            let w01 = ax * (INTER_TAB_SIZE - ay) * 32;
            let w10 = (INTER_TAB_SIZE - ax) * ay * 32;
            let w11 = ax * ay * 32;
            let (p00, p01) = (pixel(sx, sy), pixel(sx + 1, sy));
            let (p10, p11) = (pixel(sx, sy + 1), pixel(sx + 1, sy + 1));
            let mut rgb = [0u8; 3];
            for c in 0..3 {
                let acc = w00 * p00[c] + w01 * p01[c] + w10 * p10[c] + w11 * p11[c];
                rgb[c] = ((acc + (1 << (COEF_BITS - 1))) >> COEF_BITS).clamp(0, 255) as u8;
            }
            out.put_pixel(x, y, Rgb(rgb));
        }
    }
    Ok(out)
}
