//! One pair as one backbone sees it: normalised inputs, the clean cosine, the kind of map it is
//! scored with, and its Deletion/Insertion curves under a set of maps. One code path for
//! selection, the benchmark and `facelens eval xfv`, so they never disagree about a pair.

use facelens_data::RgbImage;
use facelens_eval::deletion::{self, ImageShape, MapKind, Mode, PairInput, Protocol};
use facelens_models::preprocess::normalise_chw;
use facelens_models::ModelSpec;
use facelens_saliency::{GradientEngine, SaliencyMaps};

use crate::error::Result;
use crate::records::MethodCurves;

/// A pair's inputs for one backbone.
pub struct Prepared {
    /// Both images normalised for the backbone, CHW.
    pub a: Vec<f32>,
    pub b: Vec<f32>,
    pub clean_score: f32,
    /// `None` when the backbone misclassifies the pair at the threshold.
    pub kind: Option<MapKind>,
}

/// Normalises a pair's aligned crops for a model, scores the clean pair and decides which kind of
/// map it is scored with at `threshold`.
pub fn prepare(
    engine: &dyn GradientEngine,
    spec: &ModelSpec,
    threshold: f32,
    crop_a: &RgbImage,
    crop_b: &RgbImage,
    genuine: bool,
) -> Result<Prepared> {
    let (a, b) = (normalise_chw(crop_a.as_raw(), spec)?, normalise_chw(crop_b.as_raw(), spec)?);
    let clean_score = clean_score(engine, &a, &b)?;
    let kind = MapKind::for_pair(genuine, clean_score, threshold);
    Ok(Prepared { a, b, clean_score, kind })
}

/// The clean cosine of a pair, computed one way everywhere (selection, eligibility) so that a pair
/// is classified identically in every shard.
pub fn clean_score(engine: &dyn GradientEngine, a: &[f32], b: &[f32]) -> Result<f32> {
    let both = [a, b].concat();
    let e = engine.embed(&both, 2)?;
    let d = e.len() / 2;
    Ok(deletion::cosine(&e[..d], &e[d..]))
}

/// Deletion and Insertion cosines of one pair under its maps of `kind`: similarity maps for an
/// accepted genuine pair, dissimilarity maps for a rejected impostor pair.
pub fn method_curves(
    engine: &dyn GradientEngine,
    protocol: &Protocol,
    prepared: &Prepared,
    maps: &SaliencyMaps,
    kind: MapKind,
    genuine: bool,
) -> Result<MethodCurves> {
    let (map_a, map_b) = match kind {
        MapKind::Similarity => (&maps.sa_pos, &maps.sb_pos),
        MapKind::Dissimilarity => (&maps.sa_neg, &maps.sb_neg),
    };
    let (c, h, w) = engine.input_shape();
    let input = PairInput { a: &prepared.a, b: &prepared.b, map_a, map_b, genuine };
    let mut scorer = |images: &[f32], n: usize| -> Result<Vec<f32>> { Ok(engine.embed(images, n)?) };
    let shape = ImageShape::new(c, h, w);
    let deletion = deletion::pair_curve(&input, shape, protocol, Mode::Deletion, &mut scorer)?.scores;
    let insertion = deletion::pair_curve(&input, shape, protocol, Mode::Insertion, &mut scorer)?.scores;
    Ok(MethodCurves { deletion, insertion })
}
