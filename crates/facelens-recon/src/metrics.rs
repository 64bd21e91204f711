//! Reconstruction metrics on 8-bit images: PSNR and Gaussian-window SSIM.
//!
//! SSIM follows Wang et al., "Image quality assessment: from error visibility to structural
//! similarity" (TIP 2004): an 11x11 Gaussian window with sigma 1.5, `K1 = 0.01`, `K2 = 0.03`,
//! evaluated at every position where the window fits ("valid"), averaged; colour images are
//! scored per channel and the channels averaged. The plane SSIM itself is `facelens_eval::ssim`
//! (shared with the sanity checks of saliency maps). [`crate::losses::ssim_loss`] computes the same
//! quantity on tensors, differentiably.

use image::RgbImage;

// SSIM lives in facelens-eval, which also scores saliency maps with it (sanity checks); one
// implementation serves both.
pub use facelens_eval::ssim::{gaussian_kernel, ssim_plane, SSIM_K1, SSIM_K2, SSIM_SIGMA, SSIM_WINDOW};

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
    let luma = |img: &RgbImage| {
        img.pixels()
            .map(|p| 0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32)
            .collect::<Vec<_>>()
    };
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
}
