//! Reconstruction metrics on 8-bit images: PSNR and Gaussian-window SSIM.
//!
//! SSIM follows Wang et al., "Image quality assessment: from error visibility to structural
//! similarity" (TIP 2004): an 11x11 Gaussian window with sigma 1.5, `K1 = 0.01`, `K2 = 0.03`,
//! evaluated at every position where the window fits ("valid"), averaged; colour images are
//! scored per channel and the channels averaged. [`crate::losses::ssim_loss`] computes the same
//! quantity on tensors, differentiably.
//!
//! Face-region scores compare luminance (LFW is greyscale; a colour decoder should not be
//! rewarded or punished for hue) inside [`face_ellipse`], so the black alignment border and the
//! background do not count. The checkerboard share measures the period-2 pattern that x2
//! upsampling leaves (Odena et al., "Deconvolution and Checkerboard Artifacts", Distill 2016).

use image::RgbImage;

pub const SSIM_WINDOW: usize = 11;
pub const SSIM_SIGMA: f64 = 1.5;
pub const SSIM_K1: f64 = 0.01;
pub const SSIM_K2: f64 = 0.03;
/// PSNR of identical images is infinite; it is reported as this many dB so JSON stays numeric.
pub const PSNR_CAP_DB: f64 = 100.0;

/// Normalised 1-D Gaussian of `size` taps.
pub fn gaussian_kernel(size: usize, sigma: f64) -> Vec<f64> {
    let c = (size as f64 - 1.0) / 2.0;
    let k: Vec<f64> = (0..size)
        .map(|i| (-((i as f64 - c).powi(2)) / (2.0 * sigma * sigma)).exp())
        .collect();
    let s: f64 = k.iter().sum();
    k.into_iter().map(|v| v / s).collect()
}

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

/// Valid-mode separable filtering of a `h x w` plane with a 1-D kernel.
fn filter_valid(x: &[f64], h: usize, w: usize, k: &[f64]) -> (Vec<f64>, usize, usize) {
    let n = k.len();
    let (oh, ow) = (h + 1 - n, w + 1 - n);
    let mut rows = vec![0.0; h * ow];
    for y in 0..h {
        for x0 in 0..ow {
            rows[y * ow + x0] = (0..n).map(|i| k[i] * x[y * w + x0 + i]).sum();
        }
    }
    let mut out = vec![0.0; oh * ow];
    for y0 in 0..oh {
        for x0 in 0..ow {
            out[y0 * ow + x0] = (0..n).map(|i| k[i] * rows[(y0 + i) * ow + x0]).sum();
        }
    }
    (out, oh, ow)
}

/// SSIM at every valid window position of two single-channel `h x w` planes with values in
/// `[0, data_range]`: `(values, rows, cols)`; the window at `(r, c)` is centred on pixel
/// `(r + k / 2, c + k / 2)` for window size `k`.
///
/// Planes smaller than the window are compared with a window the size of the smaller side.
pub fn ssim_map(a: &[f32], b: &[f32], h: usize, w: usize, data_range: f64) -> (Vec<f64>, usize, usize) {
    assert_eq!(a.len(), h * w, "ssim: plane a has the wrong size");
    assert_eq!(b.len(), h * w, "ssim: plane b has the wrong size");
    let size = SSIM_WINDOW.min(h).min(w).max(1);
    let k = gaussian_kernel(size, SSIM_SIGMA);
    let a: Vec<f64> = a.iter().map(|v| *v as f64).collect();
    let b: Vec<f64> = b.iter().map(|v| *v as f64).collect();
    let prod = |x: &[f64], y: &[f64]| x.iter().zip(y).map(|(p, q)| p * q).collect::<Vec<f64>>();
    let (mu_a, oh, ow) = filter_valid(&a, h, w, &k);
    let (mu_b, ..) = filter_valid(&b, h, w, &k);
    let (e_aa, ..) = filter_valid(&prod(&a, &a), h, w, &k);
    let (e_bb, ..) = filter_valid(&prod(&b, &b), h, w, &k);
    let (e_ab, ..) = filter_valid(&prod(&a, &b), h, w, &k);
    let c1 = (SSIM_K1 * data_range).powi(2);
    let c2 = (SSIM_K2 * data_range).powi(2);
    let values = (0..oh * ow)
        .map(|i| {
            let (ma, mb) = (mu_a[i], mu_b[i]);
            let va = e_aa[i] - ma * ma;
            let vb = e_bb[i] - mb * mb;
            let cov = e_ab[i] - ma * mb;
            ((2.0 * ma * mb + c1) * (2.0 * cov + c2)) / ((ma * ma + mb * mb + c1) * (va + vb + c2))
        })
        .collect();
    (values, oh, ow)
}

/// Mean SSIM of two single-channel `h x w` planes with values in `[0, data_range]`.
pub fn ssim_plane(a: &[f32], b: &[f32], h: usize, w: usize, data_range: f64) -> f64 {
    let (values, ..) = ssim_map(a, b, h, w, data_range);
    values.iter().sum::<f64>() / values.len().max(1) as f64
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
    fn ssim_of_constant_images_is_the_luminance_term() {
        // sigma = cov = 0 everywhere, so SSIM = (2ab + C1) / (a^2 + b^2 + C1).
        let (a, b) = (100.0f32, 120.0f32);
        let c1 = (0.01f64 * 255.0).powi(2);
        let expected = (2.0 * 100.0 * 120.0 + c1) / (100.0f64.powi(2) + 120.0f64.powi(2) + c1);
        let got = ssim_plane(&vec![a; 32 * 32], &vec![b; 32 * 32], 32, 32, 255.0);
        assert!((got - expected).abs() < 1e-12, "{got} vs {expected}");
    }

    #[test]
    fn ssim_single_window_matches_direct_formula() {
        // An 11x11 image has exactly one valid window: compute its moments with a 2-D sum.
        let n = 11;
        let a: Vec<f32> = (0..n * n).map(|i| ((i * 37) % 251) as f32).collect();
        let b: Vec<f32> = (0..n * n).map(|i| ((i * 53 + 7) % 241) as f32).collect();
        let k = gaussian_kernel(n, SSIM_SIGMA);
        let (mut ma, mut mb, mut aa, mut bb, mut ab) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for y in 0..n {
            for x in 0..n {
                let wgt = k[y] * k[x];
                let (p, q) = (a[y * n + x] as f64, b[y * n + x] as f64);
                ma += wgt * p;
                mb += wgt * q;
                aa += wgt * p * p;
                bb += wgt * q * q;
                ab += wgt * p * q;
            }
        }
        let (c1, c2) = ((0.01f64 * 255.0).powi(2), (0.03f64 * 255.0).powi(2));
        let expected = ((2.0 * ma * mb + c1) * (2.0 * (ab - ma * mb) + c2))
            / ((ma * ma + mb * mb + c1) * ((aa - ma * ma) + (bb - mb * mb) + c2));
        let got = ssim_plane(&a, &b, n, n, 255.0);
        assert!((got - expected).abs() < 1e-10, "{got} vs {expected}");
        assert!((ssim_plane(&a, &a, n, n, 255.0) - 1.0).abs() < 1e-12);
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
