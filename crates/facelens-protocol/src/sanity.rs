//! Model-parameter randomisation (Adebayo, Gilmer, Muelly, Goodfellow, Hardt & Kim, "Sanity Checks
//! for Saliency Maps", NeurIPS 2018): an explanation of what a model learnt must change when the
//! model's weights are replaced by random ones. A map that survives randomisation explains the
//! input or the architecture, not the model.
//!
//! Two tests on the backbone's learnt layers, grouped by stage
//! ([`facelens_models::reverse::Net::layer_groups`]):
//! * **cascading**: randomise from the output layer down, one group more per step; the last step
//!   has every layer randomised;
//! * **independent**: randomise one group at a time, the rest as trained.
//!
//! After each step the pair is explained again on the randomised network and each map of the
//! pair's kind (similarity maps for an accepted genuine pair, dissimilarity maps for a rejected
//! impostor pair, as in Deletion/Insertion) is compared with the original: Spearman's rank
//! correlation and SSIM of the absolute values, each map scaled to [0, 1] by its maximum for SSIM
//! (methods differ in units). The paper's reading: high similarity after randomisation = the method
//! fails the check. The pair keeps the decision of the trained model; randomised networks are
//! never asked to accept or reject anything.

use facelens_eval::deletion::MapKind;
use facelens_models::reverse::{LayerGroup, Net};
use facelens_saliency::{Explainer, FacePair, GradientEngine, SaliencyMaps};
use serde::Serialize;

use crate::error::{Error, Result};

/// Label of the last cascading step.
pub const ALL_LAYERS: &str = "all layers randomised";

/// Seed of the randomised weights (fixed, so every method sees the same random networks).
pub const SEED: u64 = 0;

/// Steps of the cascade (about 6–12 groups: MobileFaceNet's stages, long ones split).
pub const GROUPS: usize = 10;

/// Similarity of one randomised map to its original.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Similarity {
    pub spearman: f64,
    pub ssim: f64,
}

/// One pair's result: per step, the mean over the pair's two maps of the scored kind.
#[derive(Debug, Clone, PartialEq)]
pub struct PairSanity {
    pub cascading: Vec<Similarity>,
    pub independent: Vec<Similarity>,
    /// The original maps and the maps after each cascading step (for the figure).
    pub original: SaliencyMaps,
    pub cascade_maps: Vec<SaliencyMaps>,
}

/// The step names: the group randomised, the last cascading step [`ALL_LAYERS`].
pub fn step_names(groups: &[LayerGroup]) -> (Vec<String>, Vec<String>) {
    let n = groups.len();
    let cascading = groups.iter().enumerate().map(|(k, g)| if k + 1 == n { ALL_LAYERS.to_string() } else { g.name.clone() }).collect();
    let independent = groups.iter().map(|g| g.name.clone()).collect();
    (cascading, independent)
}

/// The maps of a kind: A's then B's.
pub fn maps_of(maps: &SaliencyMaps, kind: MapKind) -> [&[f32]; 2] {
    match kind {
        MapKind::Similarity => [&maps.sa_pos, &maps.sb_pos],
        MapKind::Dissimilarity => [&maps.sa_neg, &maps.sb_neg],
    }
}

/// Spearman correlation and SSIM of `|a|` and `|b|`, maps of `h x w`.
pub fn compare(a: &[f32], b: &[f32], h: usize, w: usize) -> Result<Similarity> {
    let abs = |m: &[f32]| m.iter().map(|v| v.abs()).collect::<Vec<f32>>();
    let (a, b) = (abs(a), abs(b));
    let spearman = facelens_eval::rank::spearman(&a, &b)?;
    if a.len() != h * w {
        return Err(Error::Eval(facelens_eval::EvalError::LengthMismatch { what: "map", expected: h * w, got: a.len() }));
    }
    let scaled = |m: &[f32]| {
        let max = m.iter().copied().fold(0.0f32, f32::max);
        m.iter().map(|v| if max > 0.0 { v / max } else { 0.0 }).collect::<Vec<f32>>()
    };
    let ssim = facelens_eval::ssim::ssim_plane(&scaled(&a), &scaled(&b), h, w, 1.0);
    Ok(Similarity { spearman, ssim })
}

/// The mean similarity of the kind's two maps.
fn similarity(original: &SaliencyMaps, other: &SaliencyMaps, kind: MapKind) -> Result<Similarity> {
    let (h, w) = (original.height, original.width);
    let [a0, b0] = maps_of(original, kind);
    let [a1, b1] = maps_of(other, kind);
    let (sa, sb) = (compare(a0, a1, h, w)?, compare(b0, b1, h, w)?);
    Ok(Similarity { spearman: (sa.spearman + sb.spearman) / 2.0, ssim: (sa.ssim + sb.ssim) / 2.0 })
}

/// Runs both tests on one pair. `engine` is the trained network's engine, `net` its lowering,
/// `make_engine` builds an engine over a randomised copy (the same kind as `engine`, e.g.
/// `facelens_saliency::engine_for_net`).
#[allow(clippy::too_many_arguments)]
pub fn pair_sanity(
    engine: &dyn GradientEngine,
    net: &Net,
    groups: &[LayerGroup],
    make_engine: &dyn Fn(Net) -> Result<Box<dyn GradientEngine>>,
    explainer: &dyn Explainer,
    pair: FacePair<'_>,
    threshold: f32,
    kind: MapKind,
) -> Result<PairSanity> {
    let original = explainer.explain(engine, pair, threshold)?.maps;
    let explain_on = |ops: &[usize]| -> Result<SaliencyMaps> {
        let randomised = make_engine(net.randomised(ops, SEED))?;
        Ok(explainer.explain(randomised.as_ref(), pair, threshold)?.maps)
    };
    let mut cascading = Vec::with_capacity(groups.len());
    let mut cascade_maps = Vec::with_capacity(groups.len());
    let mut ops: Vec<usize> = Vec::new();
    for g in groups {
        ops.extend(&g.ops);
        let maps = explain_on(&ops)?;
        cascading.push(similarity(&original, &maps, kind)?);
        cascade_maps.push(maps);
    }
    let mut independent = Vec::with_capacity(groups.len());
    for (k, g) in groups.iter().enumerate() {
        // With a single group the independent step is the cascade's last one.
        let maps = if groups.len() == 1 { cascade_maps[k].clone() } else { explain_on(&g.ops)? };
        independent.push(similarity(&original, &maps, kind)?);
    }
    Ok(PairSanity { cascading, independent, original, cascade_maps })
}

/// One step of the summary: the mean over pairs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    pub layer: String,
    pub spearman: f64,
    pub ssim: f64,
}

/// Means over pairs, step by step.
pub fn summarise(names: &[String], per_pair: &[Vec<Similarity>]) -> Vec<Step> {
    let n = per_pair.len().max(1) as f64;
    names
        .iter()
        .enumerate()
        .map(|(k, name)| Step {
            layer: name.clone(),
            spearman: per_pair.iter().map(|p| p[k].spearman).sum::<f64>() / n,
            ssim: per_pair.iter().map(|p| p[k].ssim).sum::<f64>() / n,
        })
        .collect()
}
