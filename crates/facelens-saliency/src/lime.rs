//! LIME on superpixels, with the cosine to the partner as the model output.
//!
//! Ribeiro, Singh & Guestrin, "Why Should I Trust You?" (KDD 2016); reference
//! implementation github.com/marcotcr/lime (`LimeImageExplainer`). The image is cut into
//! SLIC-like superpixels; each sample switches a random subset of them off (filled with the
//! model's black); a weighted ridge regression of `s - τ` on the on/off features, with
//! samples weighted by an exponential kernel on their cosine distance to the unperturbed
//! image, gives one coefficient per superpixel. Positive coefficients (keeping the region
//! raises the similarity) form S+, negative ones S-.
//!
//! The regression has an intercept, as in LIME, so the coefficients do not depend on τ;
//! τ only shifts the intercept (the margin with every region hidden).


use serde::{Deserialize, Serialize};

use crate::engine::GradientEngine;
use crate::perturb::{explain_by_signed_maps, masked_scores, Rng, BLACK_W600K_MBF, DEFAULT_BATCH};
use crate::{Explainer, Explanation, FacePair, Result};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimeConfig {
    /// Perturbed samples (the first is the unperturbed image, as in LIME).
    pub samples: usize,
    /// Target number of superpixels.
    pub segments: usize,
    /// SLIC weight of spatial against colour distance: moving one grid step costs as much
    /// as a colour difference of this size (model units; `w600k_mbf` spans 2).
    pub compactness: f32,
    /// SLIC k-means iterations.
    pub slic_iterations: usize,
    /// Width of the exponential kernel on cosine distance (LIME's image default).
    pub kernel_width: f32,
    /// Ridge penalty (LIME's default: sklearn `Ridge(alpha=1)`).
    pub ridge: f64,
    pub seed: u64,
    /// Model-space value of switched-off superpixels (black for `w600k_mbf`: -1).
    pub fill: f32,
    pub batch: usize,
}

impl Default for LimeConfig {
    fn default() -> Self {
        Self {
            samples: 1000,
            segments: 50,
            compactness: 0.2,
            slic_iterations: 5,
            kernel_width: 0.25,
            ridge: 1.0,
            seed: 0x0011_4E00,
            fill: BLACK_W600K_MBF,
            batch: DEFAULT_BATCH,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Lime {
    pub config: LimeConfig,
}

/// Superpixel labels `[H*W]` in `0..count`.
#[derive(Debug, Clone, PartialEq)]
pub struct Superpixels {
    pub labels: Vec<usize>,
    pub count: usize,
}

/// SLIC (Achanta et al., TPAMI 2012) simplified: seeds on a regular grid of about
/// `segments` cells, a few k-means iterations in (y, x, colour) restricted to a window of
/// one grid step around each centre, then connectivity enforced as in SLIC: every
/// 4-connected piece becomes its own superpixel, and pieces smaller than a quarter of a
/// grid cell join the superpixel next to them. Colour distance is averaged over channels,
/// so a grey image (three equal channels) weighs colour as a one-channel image would.
pub fn slic(
    image: &[f32],
    channels: usize,
    h: usize,
    w: usize,
    segments: usize,
    compactness: f32,
    iterations: usize,
) -> Superpixels {
    let p = h * w;
    let step = ((p as f32 / segments.max(1) as f32).sqrt()).max(1.0);
    let (ny, nx) = (((h as f32 / step).round() as usize).max(1), ((w as f32 / step).round() as usize).max(1));
    let colour = |i: usize, c: usize| image[c * p + i];
    // Centre: [y, x, colour...].
    let mut centres: Vec<Vec<f32>> = (0..ny * nx)
        .map(|k| {
            let y = ((k / nx) as f32 + 0.5) * h as f32 / ny as f32;
            let x = ((k % nx) as f32 + 0.5) * w as f32 / nx as f32;
            let i = (y as usize).min(h - 1) * w + (x as usize).min(w - 1);
            let mut v = vec![y, x];
            v.extend((0..channels).map(|c| colour(i, c)));
            v
        })
        .collect();
    // Start from the grid cells, so a pixel no window reaches still has a label.
    let mut labels: Vec<usize> =
        (0..p).map(|i| ((i / w) * ny / h).min(ny - 1) * nx + ((i % w) * nx / w).min(nx - 1)).collect();
    let spatial = (compactness / step).powi(2);
    let radius = step.ceil() as isize;
    let mut dist = vec![f32::INFINITY; p];
    for _ in 0..iterations {
        dist.iter_mut().for_each(|d| *d = f32::INFINITY);
        for (k, ctr) in centres.iter().enumerate() {
            let (cy, cx) = (ctr[0] as isize, ctr[1] as isize);
            for y in (cy - radius).max(0)..(cy + radius + 1).min(h as isize) {
                for x in (cx - radius).max(0)..(cx + radius + 1).min(w as isize) {
                    let i = y as usize * w + x as usize;
                    let dc = (0..channels).map(|c| (colour(i, c) - ctr[2 + c]).powi(2)).sum::<f32>() / channels as f32;
                    let ds = (y as f32 + 0.5 - ctr[0]).powi(2) + (x as f32 + 0.5 - ctr[1]).powi(2);
                    let d = dc + spatial * ds;
                    if d < dist[i] {
                        dist[i] = d;
                        labels[i] = k;
                    }
                }
            }
        }
        let mut sums = vec![vec![0f64; 2 + channels]; centres.len()];
        let mut counts = vec![0usize; centres.len()];
        for (i, &k) in labels.iter().enumerate() {
            counts[k] += 1;
            sums[k][0] += (i / w) as f64 + 0.5;
            sums[k][1] += (i % w) as f64 + 0.5;
            for c in 0..channels {
                sums[k][2 + c] += colour(i, c) as f64;
            }
        }
        for ((ctr, sum), &n) in centres.iter_mut().zip(&sums).zip(&counts) {
            if n > 0 {
                ctr.iter_mut().zip(sum).for_each(|(v, s)| *v = (s / n as f64) as f32);
            }
        }
    }
    enforce_connectivity(&labels, h, w, (step * step / 4.0) as usize)
}

/// Relabels 4-connected pieces in raster order; a piece smaller than `min_size` takes the
/// label of the piece left of or above its first pixel.
fn enforce_connectivity(labels: &[usize], h: usize, w: usize, min_size: usize) -> Superpixels {
    let mut out = vec![usize::MAX; h * w];
    let mut count = 0;
    let mut piece = Vec::new();
    for start in 0..h * w {
        if out[start] != usize::MAX {
            continue;
        }
        // Flood the piece of `start`'s old label.
        piece.clear();
        piece.push(start);
        out[start] = count;
        let mut next = 0;
        while next < piece.len() {
            let i = piece[next];
            next += 1;
            let (y, x) = (i / w, i % w);
            let neighbours = [
                (y > 0).then(|| i - w),
                (y + 1 < h).then(|| i + w),
                (x > 0).then(|| i - 1),
                (x + 1 < w).then(|| i + 1),
            ];
            for j in neighbours.into_iter().flatten() {
                if out[j] == usize::MAX && labels[j] == labels[start] {
                    out[j] = count;
                    piece.push(j);
                }
            }
        }
        // Pixels left of and above `start` are already final (raster order).
        let adjacent = [(start % w > 0).then(|| start - 1), (start >= w).then(|| start - w)]
            .into_iter()
            .flatten()
            .map(|j| out[j])
            .next();
        match adjacent {
            Some(l) if piece.len() < min_size => piece.iter().for_each(|&i| out[i] = l),
            _ => count += 1,
        }
    }
    Superpixels { labels: out, count }
}

/// Solves `A x = b` for symmetric positive-definite `A` (`n x n`, row-major) by Cholesky.
/// Returns `None` when `A` is not positive definite.
pub fn cholesky_solve(a: &[f64], b: &[f64], n: usize) -> Option<Vec<f64>> {
    let mut l = vec![0f64; n * n];
    for i in 0..n {
        for j in 0..=i {
            let s = a[i * n + j] - (0..j).map(|k| l[i * n + k] * l[j * n + k]).sum::<f64>();
            if i == j {
                if s <= 0.0 || !s.is_finite() {
                    return None;
                }
                l[i * n + i] = s.sqrt();
            } else {
                l[i * n + j] = s / l[j * n + j];
            }
        }
    }
    let mut y = vec![0f64; n];
    for i in 0..n {
        y[i] = (b[i] - (0..i).map(|k| l[i * n + k] * y[k]).sum::<f64>()) / l[i * n + i];
    }
    let mut x = vec![0f64; n];
    for i in (0..n).rev() {
        x[i] = (y[i] - (i + 1..n).map(|k| l[k * n + i] * x[k]).sum::<f64>()) / l[i * n + i];
    }
    Some(x)
}

/// Weighted ridge regression with an unpenalised intercept (sklearn `Ridge` with
/// `sample_weight`): centre by the weighted means, then solve
/// `(Xcᵀ W Xc + λ I) β = Xcᵀ W yc`. Returns `(β, intercept)`.
pub fn weighted_ridge(x: &[Vec<f64>], y: &[f64], weights: &[f64], lambda: f64) -> Option<(Vec<f64>, f64)> {
    let k = x.first().map_or(0, |r| r.len());
    let wsum: f64 = weights.iter().sum::<f64>().max(1e-300);
    let mut xm = vec![0f64; k];
    for (row, &wi) in x.iter().zip(weights) {
        xm.iter_mut().zip(row).for_each(|(m, v)| *m += wi * v / wsum);
    }
    let ym = y.iter().zip(weights).map(|(v, wi)| wi * v).sum::<f64>() / wsum;
    let mut a = vec![0f64; k * k];
    let mut b = vec![0f64; k];
    for ((row, &yi), &wi) in x.iter().zip(y).zip(weights) {
        let c: Vec<f64> = row.iter().zip(&xm).map(|(v, m)| v - m).collect();
        for i in 0..k {
            b[i] += wi * c[i] * (yi - ym);
            for j in 0..=i {
                a[i * k + j] += wi * c[i] * c[j];
            }
        }
    }
    for i in 0..k {
        a[i * k + i] += lambda;
        for j in 0..i {
            a[j * k + i] = a[i * k + j];
        }
    }
    let beta = cholesky_solve(&a, &b, k)?;
    let intercept = ym - beta.iter().zip(&xm).map(|(b, m)| b * m).sum::<f64>();
    Some((beta, intercept))
}

impl Lime {
    pub fn new(config: LimeConfig) -> Self {
        Self { config }
    }

    pub fn superpixels(&self, engine: &dyn GradientEngine, image: &[f32]) -> Superpixels {
        let (c, h, w) = engine.input_shape();
        let cfg = &self.config;
        slic(image, c, h, w, cfg.segments, cfg.compactness, cfg.slic_iterations)
    }

    /// Signed map of one image: each pixel gets its superpixel's coefficient.
    fn signed_map(
        &self,
        engine: &dyn GradientEngine,
        image: &[f32],
        partner: &[f32],
        threshold: f32,
    ) -> Result<Vec<f32>> {
        let cfg = &self.config;
        let sp = self.superpixels(engine, image);
        let k = sp.count;
        let mut rng = Rng::new(cfg.seed);
        let design: Vec<Vec<f64>> = (0..cfg.samples)
            .map(|i| (0..k).map(|_| if i == 0 || rng.uniform() < 0.5 { 1.0 } else { 0.0 }).collect())
            .collect();
        let scores = masked_scores(engine, image, partner, cfg.samples, cfg.batch, cfg.fill, |i, keep| {
            keep.iter_mut().zip(&sp.labels).for_each(|(m, &l)| *m = design[i][l] as f32)
        })?;
        let width = cfg.kernel_width as f64;
        let weights: Vec<f64> = design
            .iter()
            .map(|z| {
                // Cosine distance to the all-on vector; an all-off sample counts as distance 1.
                let on: f64 = z.iter().sum();
                let d = if on > 0.0 { 1.0 - (on / k as f64).sqrt() } else { 1.0 };
                (-(d * d) / (width * width)).exp().sqrt()
            })
            .collect();
        let y: Vec<f64> = scores.iter().map(|s| (*s - threshold) as f64).collect();
        let beta =
            weighted_ridge(&design, &y, &weights, cfg.ridge.max(1e-12)).map(|(b, _)| b).unwrap_or_else(|| vec![0.0; k]);
        Ok(sp.labels.iter().map(|&l| beta[l] as f32).collect())
    }
}

impl Explainer for Lime {
    fn name(&self) -> &'static str {
        "lime"
    }

    fn explain(&self, engine: &dyn GradientEngine, pair: FacePair<'_>, threshold: f32) -> Result<Explanation> {
        explain_by_signed_maps(self.name(), engine, pair, threshold, "samples", |image, partner| {
            self.signed_map(engine, image, partner, threshold)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cholesky_solves_a_known_system() {
        let a = [4.0, 2.0, 0.6, 2.0, 5.0, 1.0, 0.6, 1.0, 3.0];
        let x = [1.0, -2.0, 0.5];
        let b: Vec<f64> = (0..3).map(|i| (0..3).map(|j| a[i * 3 + j] * x[j]).sum()).collect();
        let got = cholesky_solve(&a, &b, 3).unwrap();
        assert!(got.iter().zip(x).all(|(g, e)| (g - e).abs() < 1e-12), "{got:?}");
        assert!(cholesky_solve(&[1.0, 2.0, 2.0, 1.0], &[1.0, 1.0], 2).is_none());
    }

    #[test]
    fn ridge_recovers_a_linear_model_with_intercept() {
        let mut rng = Rng::new(3);
        let x: Vec<Vec<f64>> = (0..400).map(|_| (0..4).map(|_| (rng.below(2)) as f64).collect()).collect();
        let truth = [0.5, -0.25, 0.0, 1.0];
        let y: Vec<f64> = x.iter().map(|r| 0.3 + r.iter().zip(truth).map(|(a, b)| a * b).sum::<f64>()).collect();
        let (beta, b0) = weighted_ridge(&x, &y, &vec![1.0; 400], 1e-9).unwrap();
        assert!(beta.iter().zip(truth).all(|(g, e)| (g - e).abs() < 1e-6), "{beta:?}");
        assert!((b0 - 0.3).abs() < 1e-6);
    }

    #[test]
    fn slic_follows_a_colour_edge_and_gives_about_the_requested_count() {
        let (h, w) = (112, 112);
        // Left half dark, right half bright, edge at x = 50 (not on the 16-px grid).
        let image: Vec<f32> = (0..3).flat_map(|_| (0..h * w).map(|i| if i % w < 50 { -0.8 } else { 0.8 })).collect();
        let sp = slic(&image, 3, h, w, 50, 0.2, 5);
        assert!((30..=60).contains(&sp.count), "{} superpixels", sp.count);
        let side = |left: bool| -> std::collections::BTreeSet<usize> {
            (0..h * w).filter(|i| (i % w < 50) == left).map(|i| sp.labels[i]).collect()
        };
        assert!(side(true).is_disjoint(&side(false)), "a superpixel crosses the colour edge");
    }

    #[test]
    fn superpixels_are_connected_on_a_noisy_shaded_image() {
        let (h, w) = (112, 112);
        let mut rng = Rng::new(5);
        // Smooth shading with pixel noise, the texture of a grey face photo.
        let image: Vec<f32> = (0..3 * h * w)
            .map(|i| {
                let (y, x) = (((i / w) % h) as f32, (i % w) as f32);
                0.5 * (x / 13.0).sin() * (y / 17.0).cos() + 0.15 * (rng.uniform() * 2.0 - 1.0)
            })
            .collect();
        let sp = slic(&image, 3, h, w, 50, 0.2, 5);
        assert!((30..=80).contains(&sp.count), "{} superpixels", sp.count);
        assert!(sp.labels.iter().all(|&l| l < sp.count));
        // One flood fill per label reaches all of its pixels.
        let mut seen = vec![false; h * w];
        for l in 0..sp.count {
            let start = sp.labels.iter().position(|&x| x == l).expect("labels are contiguous");
            let mut stack = vec![start];
            seen[start] = true;
            while let Some(i) = stack.pop() {
                let (y, x) = (i / w, i % w);
                for j in [
                    (y > 0).then(|| i - w),
                    (y + 1 < h).then(|| i + w),
                    (x > 0).then(|| i - 1),
                    (x + 1 < w).then(|| i + 1),
                ]
                .into_iter()
                .flatten()
                {
                    if !seen[j] && sp.labels[j] == l {
                        seen[j] = true;
                        stack.push(j);
                    }
                }
            }
        }
        assert!(seen.iter().all(|&s| s), "a superpixel is split into pieces");
    }
}
