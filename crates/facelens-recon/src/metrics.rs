//! Reconstruction metrics on 8-bit images: PSNR and Gaussian-window SSIM.
//!
//! SSIM follows Wang et al., "Image quality assessment: from error visibility to structural
//! similarity" (TIP 2004): an 11x11 Gaussian window with sigma 1.5, `K1 = 0.01`, `K2 = 0.03`,
//! evaluated at every position where the window fits ("valid"), averaged; colour images are
//! scored per channel and the channels averaged. The plane SSIM itself is `facelens_eval::ssim`
//! (shared with the sanity checks of saliency maps). [`crate::losses::ssim_loss`] computes the same
//! quantity on tensors, differentiably.

//!
//! Face-region scores compare luminance (LFW is greyscale; a colour decoder should not be
//! rewarded or punished for hue) inside the face ellipse ([`FACE_ELLIPSE`]), so the black
//! alignment border and the background do not count. The checkerboard share measures the
//! period-2 pattern that x2 upsampling leaves (Odena et al., "Deconvolution and Checkerboard
//! Artifacts", Distill 2016).
use image::RgbImage;

// SSIM lives in facelens-eval, which also scores saliency maps with it (sanity checks); one
// implementation serves both.
pub use facelens_eval::ssim::{gaussian_kernel, ssim_map, ssim_plane, SSIM_K1, SSIM_K2, SSIM_SIGMA, SSIM_WINDOW};

/// PSNR of identical images is infinite; it is reported as this many dB so JSON stays numeric.
pub const PSNR_CAP_DB: f64 = 100.0;

/// Peak signal-to-noise ratio of two equally sized 8-bit buffers, in dB (capped at
/// [`PSNR_CAP_DB`]).
pub fn psnr(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len(), "psnr: buffers differ in length");
    if a.is_empty() {
        return PSNR_CAP_DB;
    }
    let mse = a
        .iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
        .sum::<f64>()
        / a.len() as f64;
    if mse == 0.0 {
        PSNR_CAP_DB
    } else {
        (10.0 * (255.0f64 * 255.0 / mse).log10()).min(PSNR_CAP_DB)
    }
}

/// BT.601 luma of an RGB image, row-major.
pub fn luma(img: &RgbImage) -> Vec<f32> {
    img.pixels()
        .map(|p| 0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32)
        .collect()
}

/// Centre `(x, y)` and semi-axes `(x, y)` of the face region in an aligned 112x112 crop (ArcFace
/// template: eyes at y ~ 52, mouth corners at y ~ 92): the ellipse holds brows to chin and
/// cheek to cheek, and little background.
pub const FACE_ELLIPSE: ((f64, f64), (f64, f64)) = ((56.0, 62.0), (40.0, 50.0));

/// Whether pixel `(x, y)` (its centre) of an aligned 112x112 crop lies in the face ellipse.
pub fn in_face_ellipse(x: usize, y: usize) -> bool {
    let ((cx, cy), (ax, ay)) = FACE_ELLIPSE;
    ((x as f64 - cx) / ax).powi(2) + ((y as f64 - cy) / ay).powi(2) <= 1.0
}

/// Luminance PSNR (dB, data range 255) over the face ellipse of two aligned crops.
pub fn face_psnr_luma(a: &RgbImage, b: &RgbImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions(), "psnr: images differ in size");
    let w = a.width() as usize;
    let (la, lb) = (luma(a), luma(b));
    let (mut sum, mut n) = (0.0, 0usize);
    for (i, (p, q)) in la.iter().zip(&lb).enumerate() {
        if in_face_ellipse(i % w, i / w) {
            sum += (*p as f64 - *q as f64).powi(2);
            n += 1;
        }
    }
    if n == 0 || sum == 0.0 {
        return PSNR_CAP_DB;
    }
    (10.0 * (255.0f64 * 255.0 / (sum / n as f64)).log10()).min(PSNR_CAP_DB)
}

/// Luminance SSIM of two aligned crops averaged over the windows centred in the face ellipse.
pub fn face_ssim_luma(a: &RgbImage, b: &RgbImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions(), "ssim: images differ in size");
    let (w, h) = (a.width() as usize, a.height() as usize);
    let (values, oh, ow) = ssim_map(&luma(a), &luma(b), h, w, 255.0);
    let half = SSIM_WINDOW.min(h).min(w).max(1) / 2;
    let (mut sum, mut n) = (0.0, 0usize);
    for r in 0..oh {
        for c in 0..ow {
            if in_face_ellipse(c + half, r + half) {
                sum += values[r * ow + c];
                n += 1;
            }
        }
    }
    sum / n.max(1) as f64
}

/// Share of the spectral power (DC excluded) of an `h x w` plane that lies on the period-2
/// rows and columns of its 2-D DFT (horizontal or vertical frequency `1/2`).
///
/// By Parseval, with `X` the unnormalised DFT and `x` the mean-free plane:
/// `sum |X|^2 = h w sum x^2`; the column `k_x = w/2` holds `h sum_y (sum_x x (-1)^x)^2`, the row
/// `k_y = h/2` holds `w sum_x (sum_y x (-1)^y)^2`, and their shared corner
/// `(sum x (-1)^(x+y))^2` is counted once. 0 for a constant plane.
pub fn checkerboard_share(plane: &[f32], h: usize, w: usize) -> f64 {
    assert_eq!(plane.len(), h * w, "checkerboard: plane has the wrong size");
    let mean = plane.iter().map(|v| *v as f64).sum::<f64>() / (h * w).max(1) as f64;
    let x = |r: usize, c: usize| plane[r * w + c] as f64 - mean;
    let sign = |i: usize| if i % 2 == 0 { 1.0 } else { -1.0 };
    let total: f64 = (0..h * w).map(|i| x(i / w, i % w).powi(2)).sum::<f64>() * (h * w) as f64;
    if total == 0.0 {
        return 0.0;
    }
    let column: f64 = (0..h).map(|r| (0..w).map(|c| x(r, c) * sign(c)).sum::<f64>().powi(2)).sum::<f64>() * h as f64;
    let row: f64 = (0..w).map(|c| (0..h).map(|r| x(r, c) * sign(r)).sum::<f64>().powi(2)).sum::<f64>() * w as f64;
    let corner = (0..h * w).map(|i| x(i / w, i % w) * sign(i / w + i % w)).sum::<f64>().powi(2);
    (column + row - corner) / total
}

/// [`checkerboard_share`] of a reconstruction's luminance over its source's: above 1 the
/// reconstruction carries more period-2 pattern than the photo it came from.
pub fn checkerboard_ratio(reconstruction: &RgbImage, source: &RgbImage) -> f64 {
    let (w, h) = (source.width() as usize, source.height() as usize);
    let share = |img: &RgbImage| checkerboard_share(&luma(img), h, w);
    share(reconstruction) / share(source).max(1e-12)
}

/// Mean SSIM of two RGB images over the three channels (data range 255).
pub fn ssim_rgb(a: &RgbImage, b: &RgbImage) -> f64 {
    assert_eq!(
        a.dimensions(),
        b.dimensions(),
        "ssim: images differ in size"
    );
    let (w, h) = (a.width() as usize, a.height() as usize);
    let plane = |img: &RgbImage, c: usize| {
        img.as_raw()
            .iter()
            .skip(c)
            .step_by(3)
            .map(|v| *v as f32)
            .collect::<Vec<_>>()
    };
    (0..3)
        .map(|c| ssim_plane(&plane(a, c), &plane(b, c), h, w, 255.0))
        .sum::<f64>()
        / 3.0
}

/// Mean SSIM of the grey (BT.601 luma) versions of two RGB images.
pub fn ssim_grey(a: &RgbImage, b: &RgbImage) -> f64 {
    assert_eq!(
        a.dimensions(),
        b.dimensions(),
        "ssim: images differ in size"
    );
    let (w, h) = (a.width() as usize, a.height() as usize);
    ssim_plane(&luma(a), &luma(b), h, w, 255.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psnr_of_known_mse() {
        // MSE = 1 on every pixel: PSNR = 20 log10(255).
        let a = vec![10u8; 64];
        let b = vec![11u8; 64];
        assert!((psnr(&a, &b) - 20.0 * 255f64.log10()).abs() < 1e-9);
        assert_eq!(psnr(&a, &a), PSNR_CAP_DB);
    }

    #[test]
    fn checkerboard_share_of_known_patterns() {
        let (h, w) = (8, 8);
        // A pure period-2 pattern along x: all power on the column k_x = w/2.
        let stripes: Vec<f32> = (0..h * w).map(|i| if (i % w) % 2 == 0 { 10.0 } else { 0.0 }).collect();
        assert!((checkerboard_share(&stripes, h, w) - 1.0).abs() < 1e-12);
        // A checkerboard: all power at the corner (w/2, h/2), counted once.
        let board: Vec<f32> = (0..h * w).map(|i| ((i % w + i / w) % 2) as f32).collect();
        assert!((checkerboard_share(&board, h, w) - 1.0).abs() < 1e-12);
        // A slow ramp has nearly none; a constant plane has none.
        let ramp: Vec<f32> = (0..h * w).map(|i| (i % w) as f32).collect();
        assert!(checkerboard_share(&ramp, h, w) < 0.05);
        assert_eq!(checkerboard_share(&[3.0; 64], h, w), 0.0);
        // Against a brute-force DFT on a random plane.
        let plane: Vec<f32> = (0..h * w).map(|i| ((i * 37 + 11) % 17) as f32).collect();
        let mean = plane.iter().sum::<f32>() as f64 / 64.0;
        let (mut nyq, mut total) = (0.0, 0.0);
        for ky in 0..h {
            for kx in 0..w {
                let (mut re, mut im) = (0.0f64, 0.0f64);
                for y in 0..h {
                    for x in 0..w {
                        let a = -2.0 * std::f64::consts::PI * (ky * y) as f64 / h as f64 - 2.0 * std::f64::consts::PI * (kx * x) as f64 / w as f64;
                        let v = plane[y * w + x] as f64 - mean;
                        re += v * a.cos();
                        im += v * a.sin();
                    }
                }
                let p = re * re + im * im;
                total += p;
                if kx == w / 2 || ky == h / 2 {
                    nyq += p;
                }
            }
        }
        assert!((checkerboard_share(&plane, h, w) - nyq / total).abs() < 1e-9);
    }

    #[test]
    fn face_scores_ignore_pixels_outside_the_ellipse() {
        let a = RgbImage::from_fn(112, 112, |x, y| image::Rgb([(x * 2) as u8, (y * 2) as u8, 90]));
        let mut b = a.clone();
        // Changing the corners (outside the ellipse, beyond any window centred inside) changes
        // neither score.
        for (x, y) in [(0, 0), (111, 0), (0, 111), (111, 111), (1, 1), (110, 110)] {
            b.put_pixel(x, y, image::Rgb([255, 0, 255]));
        }
        assert_eq!(face_psnr_luma(&a, &b), PSNR_CAP_DB);
        assert!((face_ssim_luma(&a, &b) - 1.0).abs() < 1e-12);
        // The ellipse's centre does count.
        b.put_pixel(56, 62, image::Rgb([255, 255, 255]));
        assert!(face_psnr_luma(&a, &b) < PSNR_CAP_DB);
        assert!(face_ssim_luma(&a, &b) < 1.0);
        assert!(in_face_ellipse(56, 62) && in_face_ellipse(56, 12) && !in_face_ellipse(56, 11) && !in_face_ellipse(15, 62));
    }
}
