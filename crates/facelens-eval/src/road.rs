//! ROAD: RemOve And Debias (Rong, Leemann, Nguyen, Fiedler, Rappl, Kasneci, "A Consistent and
//! Efficient Evaluation Strategy for Attribution Methods", ICML 2022).
//!
//! Deletion with a constant fill leaks the removed pixels' positions through the shape of the
//! filled area (the model sees a black or grey silhouette of the map), so the curve partly measures
//! how the model reacts to that shape rather than to the missing evidence. ROAD instead fills
//! removed pixels by *noisy linear imputation*: each removed pixel is the weighted mean of its
//! eight neighbours (weight 1/6 for the four direct, 1/12 for the four diagonal neighbours, as in
//! the paper's reference implementation), solved jointly for all removed pixels of a channel, plus
//! a little Gaussian noise so the imputed area carries no perfectly smooth signature.
//!
//! For removed pixel `i` with in-image neighbours `N(i)` (known `K`, removed `U`):
//! `(Σ_{j∈N(i)} w_ij) x_i - Σ_{j∈U} w_ij x_j = Σ_{k∈K} w_ik v_k`.
//! The matrix is a principal sub-matrix of a weighted graph Laplacian on the 8-connected grid with
//! the known pixels' weights on the diagonal: symmetric, and positive definite whenever at least
//! one pixel is known (every component of removed pixels then borders a known one). It is factored
//! once per mask with a sparse LDLᵀ (`sprs-ldl`, reverse Cuthill-McKee ordering) and solved once per
//! channel. With every pixel removed there is nothing to interpolate from: the image becomes the
//! caller's fallback value (plus noise).
//!
//! Imputation runs in pixel space (`pixel = model * std + mean`, one normalisation for every
//! channel), then the result is normalised back, so the noise has the same size in pixel units for
//! every model. The reference code adds `0.01 * N(0, 1)` to the tensor it imputes; for images
//! scaled to [0, 1] that is 1 % of the data range, i.e. 2.55 on 0..255 ([`DEFAULT_NOISE`]).
//!
//! MoRF (most relevant first) removes the top-ranked pixels first (lower area is better, like
//! Deletion); LeRF (least relevant first) removes the bottom-ranked first (higher is better).

use serde::{Deserialize, Serialize};
use sprs::{FillInReduction, SymmetryCheck, TriMat};
use sprs_ldl::Ldl;

use crate::error::{EvalError, Result};

/// Noise standard deviation in 0..255 pixel units: 1 % of the data range (see the module docs).
pub const DEFAULT_NOISE: f32 = 2.55;

/// Most removed pixels per channel that one system may have: a 112x112 image entirely removed.
/// Larger images would be refused before any allocation.
pub const MAX_UNKNOWNS: usize = 112 * 112;

/// Neighbour offsets `(dy, dx)` and their weights (sum 1).
const NEIGHBOURS: [(isize, isize, f64); 8] = [
    (-1, -1, 1.0 / 12.0),
    (-1, 0, 1.0 / 6.0),
    (-1, 1, 1.0 / 12.0),
    (0, -1, 1.0 / 6.0),
    (0, 1, 1.0 / 6.0),
    (1, -1, 1.0 / 12.0),
    (1, 0, 1.0 / 6.0),
    (1, 1, 1.0 / 12.0),
];

/// ROAD's settings as the protocol carries them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Road {
    /// Noise standard deviation in pixel units (0..255); 0 gives the plain linear imputation.
    pub noise: f32,
    /// The model's normalisation, `model = (pixel - mean) / std`, equal for every channel.
    pub mean: f32,
    pub std: f32,
    /// Seed of the noise; each image and curve step draws its own stream from it.
    pub seed: u64,
}

impl Road {
    /// Checks the settings (`what` names them in the error).
    pub fn check(&self, what: &str) -> Result<()> {
        if !(self.noise.is_finite() && self.noise >= 0.0) {
            return Err(EvalError::InvalidCurve(format!("{what}: ROAD noise must be a finite number >= 0, got {}", self.noise)));
        }
        if !(self.std.is_finite() && self.std > 0.0 && self.mean.is_finite()) {
            return Err(EvalError::InvalidCurve(format!(
                "{what}: ROAD needs a finite normalisation with std > 0, got mean {} std {}",
                self.mean, self.std
            )));
        }
        Ok(())
    }
}

/// `image` (model space, CHW, `channels` planes of `height * width`) with the pixels where
/// `removed` is true imputed from their neighbours, plus noise drawn from `noise_seed`.
/// `fallback` (model space) is used only when every pixel is removed.
pub fn impute(
    image: &[f32],
    (channels, height, width): (usize, usize, usize),
    removed: &[bool],
    road: &Road,
    noise_seed: u64,
    fallback: f32,
) -> Result<Vec<f32>> {
    road.check("protocol.fill = \"road\"")?;
    let plane = height * width;
    if removed.len() != plane {
        return Err(EvalError::LengthMismatch { what: "ROAD mask", expected: plane, got: removed.len() });
    }
    if image.len() != channels * plane {
        return Err(EvalError::LengthMismatch { what: "ROAD image", expected: channels * plane, got: image.len() });
    }
    // Equation index of every removed pixel (usize::MAX for known pixels).
    let mut index = vec![usize::MAX; plane];
    let mut unknown = Vec::new();
    for (p, _) in removed.iter().enumerate().filter(|(_, r)| **r) {
        index[p] = unknown.len();
        unknown.push(p);
    }
    if unknown.len() > MAX_UNKNOWNS {
        return Err(EvalError::InvalidCurve(format!(
            "protocol.fill = \"road\": {} removed pixels per channel, at most {MAX_UNKNOWNS} (a 112x112 image) are supported",
            unknown.len()
        )));
    }
    let mut out = image.to_vec();
    if unknown.is_empty() {
        return Ok(out);
    }
    // Seeded xoshiro256** normals: the same noise on every machine.
    let mut noise = facelens_core::rng::Xoshiro256::new(noise_seed);
    let to_pixel = |v: f32| f64::from(v) * f64::from(road.std) + f64::from(road.mean);
    let to_model = |v: f64| ((v - f64::from(road.mean)) / f64::from(road.std)) as f32;
    if unknown.len() == plane {
        for c in 0..channels {
            for p in 0..plane {
                out[c * plane + p] = to_model(to_pixel(fallback) + f64::from(road.noise) * noise.normal());
            }
        }
        return Ok(out);
    }

    let n = unknown.len();
    let mut a = TriMat::<f64>::with_capacity((n, n), 9 * n);
    // known[e] = (pixel, weight) pairs feeding equation e's right-hand side.
    let mut known: Vec<Vec<(usize, f64)>> = vec![Vec::new(); n];
    for (e, &p) in unknown.iter().enumerate() {
        let (y, x) = ((p / width) as isize, (p % width) as isize);
        let mut diag = 0.0;
        for &(dy, dx, w) in &NEIGHBOURS {
            let (ny, nx) = (y + dy, x + dx);
            if ny < 0 || nx < 0 || ny >= height as isize || nx >= width as isize {
                continue;
            }
            let q = ny as usize * width + nx as usize;
            diag += w;
            match index[q] {
                usize::MAX => known[e].push((q, w)),
                j => a.add_triplet(e, j, -w),
            }
        }
        a.add_triplet(e, e, diag);
    }
    let a = a.to_csc::<usize>();
    let ldl = Ldl::new()
        .fill_in_reduction(FillInReduction::ReverseCuthillMcKee)
        .check_symmetry(SymmetryCheck::DontCheckSymmetry)
        .numeric(a.view())
        .map_err(|e| EvalError::InvalidCurve(format!("protocol.fill = \"road\": the imputation system did not factor ({e})")))?;
    for c in 0..channels {
        let img = &image[c * plane..(c + 1) * plane];
        let rhs: Vec<f64> = known
            .iter()
            .map(|k| k.iter().map(|&(q, w)| w * to_pixel(img[q])).sum())
            .collect();
        let x: Vec<f64> = ldl.solve(&rhs[..]);
        for (e, &p) in unknown.iter().enumerate() {
            let v = x[e] + f64::from(road.noise) * noise.normal();
            if !v.is_finite() {
                return Err(EvalError::InvalidCurve(format!("protocol.fill = \"road\": imputed pixel {p} is {v}")));
            }
            out[c * plane + p] = to_model(v);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn road(noise: f32) -> Road {
        Road { noise, mean: 127.5, std: 127.5, seed: 0 }
    }

    /// A plane linear in x and y is harmonic for these symmetric weights, and the imputation
    /// reproduces it exactly wherever the boundary is known.
    #[test]
    fn linear_ramp_is_reproduced() {
        let (h, w) = (16, 20);
        let ramp: Vec<f32> = (0..h * w).map(|p| ((p / w) as f32 * 3.0 + (p % w) as f32 * 5.0 - 60.0) / 127.5).collect();
        let image: Vec<f32> = [ramp.clone(), ramp.iter().map(|v| -v).collect::<Vec<_>>()].concat();
        // A block and scattered pixels removed, away from the border: there a pixel has
        // neighbours on one side only, and the one-sided mean of a ramp is not the ramp.
        let interior = |p: usize| (1..h - 1).contains(&(p / w)) && (1..w - 1).contains(&(p % w));
        let removed: Vec<bool> =
            (0..h * w).map(|p| (3..11).contains(&(p / w)) && (4..15).contains(&(p % w)) || (p % 7 == 0 && interior(p))).collect();
        let out = impute(&image, (2, h, w), &removed, &road(0.0), 1, 0.0).expect("impute");
        for (i, (a, b)) in out.iter().zip(&image).enumerate() {
            assert!((a - b).abs() < 1e-5, "value {i}: {a} vs {b}");
        }
    }

    #[test]
    fn noise_has_the_requested_size_and_known_pixels_stay() {
        let (h, w) = (32, 32);
        let image = vec![0.2f32; h * w];
        let removed: Vec<bool> = (0..h * w).map(|p| p % 2 == 0).collect();
        let out = impute(&image, (1, h, w), &removed, &road(2.55), 7, 0.0).expect("impute");
        let dev: Vec<f64> = out.iter().zip(&image).zip(&removed).filter(|(_, r)| **r).map(|((a, b), _)| f64::from(a - b) * 127.5).collect();
        let sd = (dev.iter().map(|d| d * d).sum::<f64>() / dev.len() as f64).sqrt();
        assert!((sd - 2.55).abs() < 0.3, "noise sd {sd}");
        assert!(out.iter().zip(&image).zip(&removed).filter(|(_, r)| !**r).all(|((a, b), _)| a == b));
    }

    #[test]
    fn everything_removed_gives_the_fallback_and_bad_input_is_refused() {
        let out = impute(&[0.5; 12], (3, 2, 2), &[true; 4], &road(0.0), 0, -1.0).expect("impute");
        assert!(out.iter().all(|&v| v == -1.0));
        assert!(impute(&[0.5; 12], (3, 2, 2), &[true; 3], &road(0.0), 0, 0.0).is_err());
        assert!(impute(&[0.5; 12], (3, 2, 2), &[true; 4], &road(f32::NAN), 0, 0.0).is_err());
        let big = vec![true; 113 * 113];
        assert!(impute(&vec![0.0; 113 * 113], (1, 113, 113), &big, &road(0.0), 0, 0.0).is_err());
    }
}
