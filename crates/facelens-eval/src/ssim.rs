//! Structural similarity (SSIM) of two single-channel planes, after Wang, Bovik, Sheikh &
//! Simoncelli, "Image quality assessment: from error visibility to structural similarity" (IEEE
//! TIP 2004): an 11x11 Gaussian window with sigma 1.5, `K1 = 0.01`, `K2 = 0.03`, evaluated at
//! every position where the window fits ("valid") and averaged.
//!
//! It lives here, below the decoder crate, because two views use it: reconstruction quality
//! (`facelens_recon::metrics`) and the model-randomisation sanity check of saliency maps
//! (`facelens_protocol::sanity`).

pub const SSIM_WINDOW: usize = 11;
pub const SSIM_SIGMA: f64 = 1.5;
pub const SSIM_K1: f64 = 0.01;
pub const SSIM_K2: f64 = 0.03;

/// Normalised 1-D Gaussian of `size` taps.
pub fn gaussian_kernel(size: usize, sigma: f64) -> Vec<f64> {
    let c = (size as f64 - 1.0) / 2.0;
    let k: Vec<f64> = (0..size)
        .map(|i| (-((i as f64 - c).powi(2)) / (2.0 * sigma * sigma)).exp())
        .collect();
    let s: f64 = k.iter().sum();
    k.into_iter().map(|v| v / s).collect()
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
