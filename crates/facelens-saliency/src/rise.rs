//! RISE, adapted to verification.
//!
//! Petsiuk, Das & Saenko, "RISE: Randomized Input Sampling for Explanation of Black-box
//! Models" (BMVC 2018); reference implementation github.com/eclique/RISE. Masks are
//! `grid x grid` binary grids (each cell kept with probability `p`), upsampled bilinearly to
//! `(grid + 1) * cell` pixels and cropped at a random shift, so they are smooth and not
//! aligned to the grid. The class score is replaced by the cosine `s_i` of the masked image
//! to the untouched partner, and the map is
//!
//! `S(x) = Σ_i (s_i - s̄) M_i(x) / (N p)`,
//!
//! i.e. how much higher the similarity is, on average, when `x` is kept. Subtracting the
//! mean score `s̄` (rather than τ) is deliberate: hiding half of a face pushes nearly every
//! masked score below τ, so a τ baseline would paint the whole image as dissimilarity and
//! say nothing about *where*. With `s̄` pixels that do not matter get ~0, and the sign says
//! whether keeping the pixel supports Accept (S+) or Reject (S-), as in CorrRISE.


use serde::{Deserialize, Serialize};

use crate::engine::GradientEngine;
use crate::perturb::{
    explain_by_signed_maps, masked_scores, upsample_bilinear, Rng, BLACK_W600K_MBF, DEFAULT_BATCH,
};
use crate::{Explainer, Explanation, FacePair, Result};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RiseConfig {
    /// Number of masks (the paper's ImageNet setting: 4000).
    pub masks: usize,
    /// Cells per side of the low-resolution grid.
    pub grid: usize,
    /// Probability that a cell is kept.
    pub keep_probability: f32,
    pub seed: u64,
    /// Model-space value of hidden pixels (black for `w600k_mbf`: -1).
    pub fill: f32,
    pub batch: usize,
}

impl Default for RiseConfig {
    fn default() -> Self {
        Self {
            masks: 4000,
            grid: 7,
            keep_probability: 0.5,
            seed: 0x0052_15E0,
            fill: BLACK_W600K_MBF,
            batch: DEFAULT_BATCH,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Rise {
    pub config: RiseConfig,
}

impl Rise {
    pub fn new(config: RiseConfig) -> Self {
        Self { config }
    }

    /// Mask `i` of the set (keep-weights in `[0, 1]`, `[h*w]`), drawn from its own stream so
    /// that any mask can be rebuilt without the ones before it.
    pub fn mask(&self, i: usize, h: usize, w: usize, keep: &mut [f32]) {
        let c = &self.config;
        let g = c.grid.max(1);
        let mut rng = Rng::new(c.seed ^ (i as u64).wrapping_mul(0xA24B_AED4_963E_E407));
        let cells: Vec<f32> = (0..g * g).map(|_| if rng.uniform() < c.keep_probability { 1.0 } else { 0.0 }).collect();
        let (cell_h, cell_w) = (h.div_ceil(g), w.div_ceil(g));
        let (up_h, up_w) = ((g + 1) * cell_h, (g + 1) * cell_w);
        let (dy, dx) = (rng.below(cell_h), rng.below(cell_w));
        let up = upsample_bilinear(&cells, g, g, up_h, up_w);
        for (y, row) in keep.chunks_mut(w).enumerate() {
            row.copy_from_slice(&up[(y + dy) * up_w + dx..][..w]);
        }
    }

    /// Signed map `Σ_i (s_i - s̄) M_i / (N p)` of one image.
    fn signed_map(&self, engine: &dyn GradientEngine, image: &[f32], partner: &[f32]) -> Result<Vec<f32>> {
        let (_, h, w) = engine.input_shape();
        let c = &self.config;
        let scores =
            masked_scores(engine, image, partner, c.masks, c.batch, c.fill, |i, keep| self.mask(i, h, w, keep))?;
        let n = scores.len().max(1);
        let mean = scores.iter().map(|s| *s as f64).sum::<f64>() / n as f64;
        let mut acc = vec![0f64; h * w];
        let mut keep = vec![0f32; h * w];
        for (i, s) in scores.iter().enumerate() {
            self.mask(i, h, w, &mut keep);
            let weight = *s as f64 - mean;
            acc.iter_mut().zip(&keep).for_each(|(a, k)| *a += weight * *k as f64);
        }
        let norm = n as f64 * (c.keep_probability as f64).max(1e-6);
        Ok(acc.into_iter().map(|a| (a / norm) as f32).collect())
    }
}

impl Explainer for Rise {
    fn name(&self) -> &'static str {
        "rise"
    }

    fn explain(&self, engine: &dyn GradientEngine, pair: FacePair<'_>, threshold: f32) -> Result<Explanation> {
        explain_by_signed_maps(self.name(), engine, pair, threshold, "masks", |image, partner| {
            self.signed_map(engine, image, partner)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_are_smooth_in_range_and_keep_about_p() {
        let rise = Rise::default();
        let (h, w) = (112, 112);
        let mut keep = vec![0f32; h * w];
        let mut mean = 0.0;
        for i in 0..200 {
            rise.mask(i, h, w, &mut keep);
            assert!(keep.iter().all(|k| (0.0..=1.0).contains(k)));
            // Bilinear over 16-px cells: neighbours differ by at most 1/16 (plus rounding).
            assert!(keep.windows(2).enumerate().all(|(j, p)| (j + 1) % w == 0 || (p[0] - p[1]).abs() <= 1.0 / 15.0));
            mean += keep.iter().sum::<f32>() / keep.len() as f32;
        }
        mean /= 200.0;
        assert!((mean - 0.5).abs() < 0.05, "mean keep {mean}");
    }
}
