//! CorrRISE: occlusion masks scored by rank correlation.
//!
//! Lu, Xu & Ebrahimi, "Towards Visual Saliency Explanations of Face Verification" (WACV 2024,
//! arXiv:2305.08546); a baseline of the FGGB paper. Each of `n` masks blacks out a few squares
//! of one image; its score is the cosine of the occluded image to the untouched partner. A
//! pixel's signed saliency is the Spearman correlation, over the masks, between "this pixel was
//! kept" and the score: positive where keeping the pixel raises similarity (S+), negative where
//! it lowers it (S-).
//! Pixels no mask ever occluded carry no evidence and get 0.
//!
//! Every mask hides the same number of squares, so a square on a pixel that does not
//! matter is one fewer on the pixels that do: irrelevant pixels get a weak *negative*
//! correlation, a faint diffuse S- (seen on a toy model that reads one quadrant only; see
//! `tests/baselines.rs`). Read CorrRISE's dissimilarity map with that in mind.
//!
//! One mask set, drawn from a fixed seed, is shared by every pair and both images, so maps
//! of different pairs are comparable.


use serde::{Deserialize, Serialize};

use crate::engine::GradientEngine;
use crate::perturb::{explain_by_signed_maps, masked_scores, Rng, BLACK_W600K_MBF, DEFAULT_BATCH};
use crate::{Explainer, Explanation, FacePair, Result};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CorrRiseConfig {
    /// Number of masks.
    pub masks: usize,
    /// Side of each occluding square, pixels.
    pub square: usize,
    /// Squares per mask.
    pub squares: usize,
    /// Seed of the shared mask set.
    pub seed: u64,
    /// Model-space value of occluded pixels (black for `w600k_mbf`: -1).
    pub fill: f32,
    /// Masked images per forward batch.
    pub batch: usize,
}

impl Default for CorrRiseConfig {
    fn default() -> Self {
        Self { masks: 500, square: 30, squares: 3, seed: 0x00C0_5415, fill: BLACK_W600K_MBF, batch: DEFAULT_BATCH }
    }
}

/// An occluding square with top-left corner `(x, y)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Square {
    pub x: usize,
    pub y: usize,
    pub size: usize,
}

#[derive(Debug, Clone, Default)]
pub struct CorrRise {
    pub config: CorrRiseConfig,
}

impl CorrRise {
    pub fn new(config: CorrRiseConfig) -> Self {
        Self { config }
    }

    /// The shared mask set for an `h x w` image: `masks` lists of `squares` squares, each
    /// fully inside the image. The same config always gives the same set.
    pub fn mask_set(&self, h: usize, w: usize) -> Vec<Vec<Square>> {
        let c = &self.config;
        let size = c.square.min(h).min(w);
        let mut rng = Rng::new(c.seed);
        (0..c.masks)
            .map(|_| {
                (0..c.squares)
                    .map(|_| Square { x: rng.below(w - size + 1), y: rng.below(h - size + 1), size })
                    .collect()
            })
            .collect()
    }

    /// Signed map of one image from the scores of its masked copies.
    pub fn signed_map(scores: &[f32], masks: &[Vec<Square>], h: usize, w: usize) -> Vec<f32> {
        let n = scores.len();
        let ranks = average_ranks(scores);
        let mean = (n as f64 + 1.0) / 2.0;
        let var_r = ranks.iter().map(|r| r * r).sum::<f64>() / n as f64 - mean * mean;
        // Per pixel: how many masks occlude it and the sum of their score ranks.
        let mut count = vec![0u32; h * w];
        let mut rank_sum = vec![0f64; h * w];
        let mut occluded = vec![false; h * w];
        for (squares, &r) in masks.iter().zip(&ranks) {
            occluded.iter_mut().for_each(|o| *o = false);
            for s in squares {
                for y in s.y..s.y + s.size {
                    occluded[y * w + s.x..y * w + s.x + s.size].iter_mut().for_each(|o| *o = true);
                }
            }
            for (p, _) in occluded.iter().enumerate().filter(|(_, o)| **o) {
                count[p] += 1;
                rank_sum[p] += r;
            }
        }
        // Ranks of a binary variable are affine in it, so Spearman = Pearson(kept, rank(s)),
        // and cov(kept, R) = -cov(occluded, R).
        count
            .iter()
            .zip(&rank_sum)
            .map(|(&k, &sum)| {
                let q = k as f64 / n as f64;
                if k == 0 || k as usize == n || var_r <= 0.0 {
                    return 0.0;
                }
                let cov = -(sum / n as f64 - q * mean);
                (cov / (q * (1.0 - q) * var_r).sqrt()) as f32
            })
            .collect()
    }
}

/// Ranks 1..=n, ties sharing their average rank.
fn average_ranks(v: &[f32]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut ranks = vec![0f64; v.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && v[order[j + 1]] == v[order[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        order[i..=j].iter().for_each(|&k| ranks[k] = avg);
        i = j + 1;
    }
    ranks
}

fn rasterise(squares: &[Square], w: usize, keep: &mut [f32]) {
    keep.iter_mut().for_each(|k| *k = 1.0);
    for s in squares {
        for y in s.y..s.y + s.size {
            keep[y * w + s.x..y * w + s.x + s.size].iter_mut().for_each(|k| *k = 0.0);
        }
    }
}

impl Explainer for CorrRise {
    fn name(&self) -> &'static str {
        "corrrise"
    }

    fn explain(&self, engine: &dyn GradientEngine, pair: FacePair<'_>, threshold: f32) -> Result<Explanation> {
        let (_, h, w) = engine.input_shape();
        let c = &self.config;
        let masks = self.mask_set(h, w);
        explain_by_signed_maps(self.name(), engine, pair, threshold, "masks", |image, partner| {
            let scores = masked_scores(engine, image, partner, masks.len(), c.batch, c.fill, |i, keep| {
                rasterise(&masks[i], w, keep)
            })?;
            Ok(Self::signed_map(&scores, &masks, h, w))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ties_share_their_average_rank() {
        assert_eq!(average_ranks(&[0.3, 0.1, 0.3, 0.2]), vec![3.5, 1.0, 3.5, 2.0]);
    }

    #[test]
    fn correlation_is_plus_one_when_the_score_is_whether_a_pixel_is_kept() {
        // Masks alternately occlude pixel 0 (of a 1x2 image); the score drops exactly then.
        let masks: Vec<Vec<Square>> =
            (0..10).map(|i| if i % 2 == 0 { vec![Square { x: 0, y: 0, size: 1 }] } else { vec![] }).collect();
        let scores: Vec<f32> = (0..10).map(|i| if i % 2 == 0 { 0.1 } else { 0.9 }).collect();
        let s = CorrRise::signed_map(&scores, &masks, 1, 2);
        assert!((s[0] - 1.0).abs() < 1e-6, "{s:?}");
        assert_eq!(s[1], 0.0, "never occluded");
    }
}
