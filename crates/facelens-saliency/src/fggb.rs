//! FGGB: Feature-Guided Gradient Backpropagation.
//!
//! Lu, Xu, Ebrahimi, "Explainable Face Verification via Feature-Guided Gradient Backpropagation"
//! (FG 2024, arXiv:2403.04549). Each embedding dimension k gets its own input-gradient map `G^k`
//! (normalised to unit L2 norm, so strong and weak dimensions speak equally), and the maps are
//! combined with the dimension's contribution to the cosine, shifted by the threshold:
//! `v_k = F_A[k] F_B[k] - τ/N`, so `Σ v_k = cos - τ`. The positive part of
//! `S = Σ_k v_k G^k` explains Accept, the negative part explains Reject.
//!
//! FGGB's cost is the N-row Jacobian of each image; every switch acts after it. With `F = e/|e|`
//! and `u = J^T F` (one extra row), the rows of the normalised embedding are
//! `n_k = (J_k - F_k u) / |e|` (what the backward passes are seeded with), so raw rows follow as
//! `J_k = |e| n_k + F_k u`. Channel reduction and per-dimension normalisation act on one row at a
//! time, τ only changes the weights, and blur acts on the finished maps. [`variant_maps`]
//! therefore serves any number of variants from one pass over each image's Jacobian; a single
//! variant (what [`Fggb`] explains) is the same code with one entry.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::engine::{jacobian_passes, normalised, GradientEngine, Linearised};
use crate::reduce::{l2_normalise_map, reduce_channels, ChannelReduction};
use crate::{blur, Decision, Explainer, Explanation, FacePair, Result, SaliencyMaps};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FggbConfig {
    /// Differentiate the L2-normalised embedding (as specified) or the raw one.
    pub normalised_embedding: bool,
    pub channel_reduction: ChannelReduction,
    /// Normalise each dimension's map to unit L2 norm before weighting.
    pub per_dimension_norm: bool,
    /// Smooth the returned maps (kernel 25, sigma 5).
    pub blur: bool,
}

impl Default for FggbConfig {
    fn default() -> Self {
        Self {
            normalised_embedding: true,
            channel_reduction: ChannelReduction::MeanAbs,
            per_dimension_norm: true,
            blur: false,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Fggb {
    pub config: FggbConfig,
}

impl Fggb {
    pub fn new(config: FggbConfig) -> Self {
        Self { config }
    }
}

/// One FGGB variant: its switches and the threshold τ its weights are shifted by.
#[derive(Debug, Clone, PartialEq)]
pub struct FggbVariant {
    pub config: FggbConfig,
    pub tau: f32,
}

/// `w_k = F_A[k] F_B[k]`: the per-dimension terms of the cosine.
pub fn dimension_weights(fa: &[f32], fb: &[f32]) -> Vec<f32> {
    fa.iter().zip(fb).map(|(a, b)| a * b).collect()
}

/// `v_k = w_k - τ/N`.
pub fn shifted_weights(w: &[f32], threshold: f32) -> Vec<f32> {
    let shift = threshold / w.len() as f32;
    w.iter().map(|x| x - shift).collect()
}

/// How a Jacobian row becomes a per-dimension map `G^k`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RowKey {
    normalised: bool,
    reduction: ChannelReduction,
    per_dimension_norm: bool,
}

/// A signed map `S = Σ_k v_k G^k` to accumulate: which row key, which τ.
#[derive(Debug, Clone, Copy, PartialEq)]
struct SumKey {
    row: usize,
    tau: f32,
}

/// Index of `item` in `list`, appending it when absent.
fn intern<T: PartialEq>(list: &mut Vec<T>, item: T) -> usize {
    match list.iter().position(|x| *x == item) {
        Some(i) => i,
        None => {
            list.push(item);
            list.len() - 1
        }
    }
}

/// Every signed map of one image in a single pass over its Jacobian. `weights[i]` are the
/// shifted weights `v` of `sums[i]`.
fn signed_maps(
    engine: &dyn GradientEngine,
    lin: &dyn Linearised,
    rows: &[RowKey],
    sums: &[SumKey],
    weights: &[Vec<f32>],
) -> Result<Vec<Vec<f32>>> {
    let (c, h, w) = engine.input_shape();
    let (p, len) = (h * w, c * h * w);
    // Seed the embedding the variants differentiate; only a mixture of raw and normalised
    // variants needs raw rows recombined from normalised ones (u = J^T F and |e|, in f64 as the
    // normalisation pull-back computes them).
    let seed_normalised = rows.iter().any(|r| r.normalised);
    let recombine = seed_normalised && rows.iter().any(|r| !r.normalised);
    let e = lin.embedding();
    let f = normalised(e);
    let (u, norm) = if recombine {
        let norm = e.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt().max(1e-12);
        (lin.vjp(&f, 1)?, norm as f32)
    } else {
        (Vec::new(), 0.0)
    };
    let mut out = vec![vec![0f32; p]; sums.len()];
    let mut g = vec![0f32; p];
    let mut raw_row = vec![0f32; if recombine { len } else { 0 }];
    jacobian_passes(lin, seed_normalised, engine.rows_per_pass(), |k0, n_rows, grads| {
        for r in 0..n_rows {
            let k = k0 + r;
            let seeded = &grads[r * len..(r + 1) * len];
            if recombine {
                for ((o, &n), &uu) in raw_row.iter_mut().zip(seeded).zip(&u) {
                    *o = norm * n + f[k] * uu;
                }
            }
            for (ri, key) in rows.iter().enumerate() {
                let row = if key.normalised || !recombine { seeded } else { &raw_row[..] };
                reduce_channels(row, c, key.reduction, &mut g);
                if key.per_dimension_norm {
                    l2_normalise_map(&mut g);
                }
                for ((sum, s), v) in sums.iter().zip(out.iter_mut()).zip(weights) {
                    if sum.row == ri {
                        let vk = v[k];
                        s.iter_mut().zip(&g).for_each(|(acc, gv)| *acc += vk * gv);
                    }
                }
            }
        }
    })?;
    Ok(out)
}

/// The maps of every variant for one pair, and the pair's cosine. Variants on the normalised
/// embedding get bit for bit the maps they would get alone; raw-embedding variants mixed with
/// normalised ones equal theirs to float rounding (their rows are recombined rather than
/// back-propagated).
pub fn variant_maps(
    engine: &dyn GradientEngine,
    pair: FacePair<'_>,
    variants: &[FggbVariant],
) -> Result<(Vec<SaliencyMaps>, f32)> {
    let (_, h, w) = engine.input_shape();
    let lin_a = engine.linearise(pair.a)?;
    let lin_b = engine.linearise(pair.b)?;
    let weights = dimension_weights(&normalised(lin_a.embedding()), &normalised(lin_b.embedding()));
    let score: f32 = weights.iter().sum();
    let (mut rows, mut sums) = (Vec::new(), Vec::new());
    let sum_of: Vec<usize> = variants
        .iter()
        .map(|s| {
            let key = RowKey {
                normalised: s.config.normalised_embedding,
                reduction: s.config.channel_reduction,
                per_dimension_norm: s.config.per_dimension_norm,
            };
            let row = intern(&mut rows, key);
            intern(&mut sums, SumKey { row, tau: s.tau })
        })
        .collect();
    let v: Vec<Vec<f32>> = sums.iter().map(|s| shifted_weights(&weights, s.tau)).collect();
    let sa = signed_maps(engine, lin_a.as_ref(), &rows, &sums, &v)?;
    let sb = signed_maps(engine, lin_b.as_ref(), &rows, &sums, &v)?;
    let maps = variants
        .iter()
        .zip(sum_of)
        .map(|(spec, i)| {
            let mut m = SaliencyMaps::from_signed(h, w, &sa[i], &sb[i]);
            if spec.config.blur {
                for x in [&mut m.sa_pos, &mut m.sa_neg, &mut m.sb_pos, &mut m.sb_neg] {
                    *x = blur::display_blur(x, h, w);
                }
            }
            m
        })
        .collect();
    Ok((maps, score))
}

impl Explainer for Fggb {
    fn name(&self) -> &'static str {
        "fggb"
    }

    fn explain(&self, engine: &dyn GradientEngine, pair: FacePair<'_>, threshold: f32) -> Result<Explanation> {
        let t0 = Instant::now();
        let variant = FggbVariant { config: self.config.clone(), tau: threshold };
        let (mut maps, score) = variant_maps(engine, pair, std::slice::from_ref(&variant))?;
        let mut timings = std::collections::BTreeMap::new();
        timings.insert("total_s".into(), t0.elapsed().as_secs_f64());
        Ok(Explanation {
            maps: maps.remove(0),
            score,
            threshold,
            decision: Decision::at(score, threshold),
            method: self.name().into(),
            timings,
        })
    }
}
