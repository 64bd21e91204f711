//! Deletion / Insertion curves: how well a saliency map ranks the pixels a verifier relies on
//! (docs/design.md §8). The metrics are those of Petsiuk, Das & Saenko, "RISE: Randomized Input Sampling
//! for Explanation of Black-box Models" (BMVC 2018), with the class score replaced by the
//! verification decision at τ.
//!
//! For each step `p` (0, 5, ..., 100 %) the top-`p` % pixels of a map are removed from the image
//! (Deletion: set to the fill value, i.e. black) or are the only ones kept (Insertion: everything
//! else is fill). The perturbed pair is re-verified at the clean threshold τ; the curve is the
//! fraction of pairs whose decision still equals the ground truth, and its trapezoid area over `p`
//! in percent summarises it (so a curve that stays at accuracy 1 has area 100). A good map makes
//! Deletion fall fast (low area) and Insertion rise fast (high area).
//!
//! The module knows nothing about models: images are model-space CHW `f32` buffers, and a caller
//! supplied scorer turns batches of images into embeddings. That keeps the protocol testable on toy
//! "models" whose correct answer is known, and lets experiments batch, shard and cache as they
//! like. Work is organised per pair ([`pair_curve`]) so that a pair's result never depends on which
//! other pairs were evaluated with it: sharded runs then merge bit-for-bit.

use serde::{Deserialize, Serialize};

use crate::error::{EvalError, Result};
use crate::metrics::trapezoid_auc;
use crate::road::{self, Road};

/// Which way the top-ranked pixels are used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Remove the top-`p` % pixels (set them to the fill value). Lower area is better.
    Deletion,
    /// Start from an all-fill image and restore the top-`p` % pixels. Higher area is better.
    Insertion,
}

impl Mode {
    pub const ALL: [Mode; 2] = [Mode::Deletion, Mode::Insertion];

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Deletion => "deletion",
            Mode::Insertion => "insertion",
        }
    }
}

/// Which images of a pair are perturbed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Perturb {
    /// Both images, each by its own map (the FGGB paper's protocol).
    #[default]
    Both,
    /// Only image A (the probe) by its map; image B stays clean. Avoids the artefact that two
    /// equally blackened images look alike to the model.
    Probe,
    /// The probe only for similarity maps (accepted genuine pairs), both images for
    /// dissimilarity maps (rejected impostor pairs): the one setting of each table that does not
    /// saturate. Perturbing both faces of a genuine pair alike keeps them alike (the filled
    /// pixels are identical in both), so similarity Deletion barely moves; perturbing only the
    /// probe of an impostor pair only moves it further from the reference, so dissimilarity
    /// Deletion barely moves either.
    ByKind,
}

impl Perturb {
    /// What is perturbed for a pair with this label (only accepted genuine and rejected impostor
    /// pairs are scored, so the label decides the kind of map): never [`Perturb::ByKind`].
    pub fn for_pair(self, genuine: bool) -> Perturb {
        match self {
            Perturb::ByKind if genuine => Perturb::Probe,
            Perturb::ByKind => Perturb::Both,
            p => p,
        }
    }

    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Perturb::Both => "both",
            Perturb::Probe => "probe",
            Perturb::ByKind => "by-kind",
        }
    }

    /// For table captions.
    pub fn describe(self) -> &'static str {
        match self {
            Perturb::Both => "both images",
            Perturb::Probe => "the probe (A) only",
            Perturb::ByKind => "the probe (A) only for similarity maps, both images for dissimilarity maps",
        }
    }
}

/// Which kind of map a pair can score (docs/design.md §8): similarity maps explain an accepted genuine
/// pair, dissimilarity maps a rejected impostor pair. Misclassified pairs score neither, because
/// there is no correct decision for the map to explain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MapKind {
    Similarity,
    Dissimilarity,
}

impl MapKind {
    /// The kind of map a pair with this label and clean score is scored with, if any.
    pub fn for_pair(genuine: bool, clean_score: f32, threshold: f32) -> Option<MapKind> {
        match (genuine, accepts(clean_score, threshold)) {
            (true, true) => Some(MapKind::Similarity),
            (false, false) => Some(MapKind::Dissimilarity),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MapKind::Similarity => "similarity",
            MapKind::Dissimilarity => "dissimilarity",
        }
    }
}

/// The verification rule shared with `facelens_saliency::Decision`: accept when `score >= τ`.
pub fn accepts(score: f32, threshold: f32) -> bool {
    score >= threshold
}

/// Layout of one image: `channels x height x width`, channel-major.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageShape {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
}

impl ImageShape {
    pub fn new(channels: usize, height: usize, width: usize) -> Self {
        Self {
            channels,
            height,
            width,
        }
    }

    /// Pixels per channel (the length of a map).
    pub fn pixels(&self) -> usize {
        self.height * self.width
    }

    /// Values per image.
    pub fn len(&self) -> usize {
        self.channels * self.pixels()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Protocol switches (every choice of docs/design.md §8 is one of these fields).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Protocol {
    /// Step between curve points in percent of the pixels (5 gives 0, 5, ..., 100).
    pub step_percent: f64,
    /// Model-space value of a removed pixel: the normalised value of black (-1 for inputs
    /// normalised as `(x - 127.5) / 127.5`).
    pub fill: f32,
    pub perturb: Perturb,
    /// Images per scorer call; only affects speed and memory.
    pub batch: usize,
    /// ROAD instead of a constant fill ([`crate::road`]): removed pixels are imputed from their
    /// neighbours, [`Mode::Deletion`] becomes MoRF (most relevant removed first) and
    /// [`Mode::Insertion`] LeRF (least relevant removed first; higher is better, as for
    /// Insertion). `fill` is then used only where every pixel is removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub road: Option<Road>,
}

impl Default for Protocol {
    fn default() -> Self {
        Self {
            step_percent: 5.0,
            fill: -1.0,
            perturb: Perturb::Both,
            batch: 32,
            road: None,
        }
    }
}

impl Protocol {
    /// The curve's x values: `0, step, 2 step, ...` and always exactly 100 at the end.
    pub fn steps(&self) -> Result<Vec<f64>> {
        steps(self.step_percent)
    }
}

/// `0, step, 2 step, ..., 100` (percent). A step that does not divide 100 still ends at 100, so
/// every curve covers the whole range and areas stay comparable.
pub fn steps(step_percent: f64) -> Result<Vec<f64>> {
    if !(step_percent.is_finite() && step_percent > 0.0 && step_percent <= 100.0) {
        return Err(EvalError::InvalidCurve(format!(
            "step must be within (0, 100] percent, got {step_percent}"
        )));
    }
    let mut out = Vec::new();
    let mut i = 0u32;
    loop {
        let p = f64::from(i) * step_percent;
        // Points closer than 1e-9 % to 100 are 100 (0.1 * 1000 is not exactly 100).
        if p >= 100.0 - 1e-9 {
            break;
        }
        out.push(p);
        i += 1;
    }
    out.push(100.0);
    Ok(out)
}

/// How many of `pixels` pixels `p` percent means (rounded to nearest, halves up).
pub fn pixel_count(p: f64, pixels: usize) -> usize {
    let k = (p / 100.0 * pixels as f64).round();
    (k.max(0.0) as usize).min(pixels)
}

/// Pixel indices from most to least salient. The sort is stable and compares with `<` (so
/// `-0.0 == 0.0`): equal values keep ascending index order, which makes flat regions — common
/// after `max(S, 0)` — perturb deterministically instead of depending on a sort's internals.
pub fn ranking(map: &[f32]) -> Result<Vec<usize>> {
    if let Some(i) = map.iter().position(|v| !v.is_finite()) {
        return Err(EvalError::InvalidCurve(format!(
            "saliency map value #{i} is {}, not a finite number",
            map[i]
        )));
    }
    let mut order: Vec<usize> = (0..map.len()).collect();
    // `partial_cmp` is total here: the values are finite.
    order.sort_by(|&i, &j| {
        map[j]
            .partial_cmp(&map[i])
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    Ok(order)
}

/// Writes into `out` the image perturbed at `top` pixels of `order` (see [`Mode`]); every channel
/// of a chosen pixel is treated alike.
pub fn perturb_into(
    image: &[f32],
    shape: ImageShape,
    order: &[usize],
    top: usize,
    fill: f32,
    mode: Mode,
    out: &mut [f32],
) {
    let plane = shape.pixels();
    let top = top.min(order.len());
    match mode {
        Mode::Deletion => {
            out.copy_from_slice(image);
            for &px in &order[..top] {
                for c in 0..shape.channels {
                    out[c * plane + px] = fill;
                }
            }
        }
        Mode::Insertion => {
            out.fill(fill);
            for &px in &order[..top] {
                for c in 0..shape.channels {
                    out[c * plane + px] = image[c * plane + px];
                }
            }
        }
    }
}

/// The image perturbed at `p` percent (see [`perturb_into`]).
pub fn perturb(
    image: &[f32],
    shape: ImageShape,
    order: &[usize],
    p: f64,
    fill: f32,
    mode: Mode,
) -> Vec<f32> {
    let mut out = vec![0f32; image.len()];
    perturb_into(
        image,
        shape,
        order,
        pixel_count(p, shape.pixels()),
        fill,
        mode,
        &mut out,
    );
    out
}

/// Cosine similarity of two embeddings, accumulated in f64 (0 when either is the zero vector,
/// e.g. a model that sees only removed pixels).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (f64::from(*x), f64::from(*y));
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    if aa == 0.0 || bb == 0.0 {
        return 0.0;
    }
    (ab / (aa.sqrt() * bb.sqrt())) as f32
}

/// One pair with its two maps, everything in model space.
#[derive(Debug, Clone, Copy)]
pub struct PairInput<'a> {
    pub a: &'a [f32],
    pub b: &'a [f32],
    /// Map of image A, `height * width`, higher = more important.
    pub map_a: &'a [f32],
    pub map_b: &'a [f32],
    /// Ground truth: same identity?
    pub genuine: bool,
}

/// The cosine of one pair at every step of a curve. Kept per pair (not as accuracies) so that a
/// sharded run can store pairs and a merge recompute the curve exactly, and so that a different τ
/// can be applied later.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairCurve {
    pub genuine: bool,
    /// `scores[i]` is the cosine after perturbing at `steps[i]`.
    pub scores: Vec<f32>,
}

impl PairCurve {
    /// Whether the decision at each step equals the ground truth.
    pub fn correct(&self, threshold: f32) -> impl Iterator<Item = bool> + '_ {
        self.scores
            .iter()
            .map(move |&s| accepts(s, threshold) == self.genuine)
    }
}

/// An accuracy curve over a set of pairs and its area.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Curve {
    pub mode: Mode,
    /// x values in percent.
    pub steps: Vec<f64>,
    /// Fraction of pairs whose decision equals the ground truth at each step.
    pub accuracy: Vec<f64>,
    /// Trapezoid area of `accuracy` over `steps` (percent x fraction, so within [0, 100]).
    pub auc: f64,
    pub pairs: usize,
}

/// Evaluates one pair at every step: returns the cosine of the perturbed pair per step.
///
/// `scorer(images, n)` must return `n` embeddings (`n * dim` values, any `dim`) of `n` images laid
/// out back to back. Images are sent in chunks of `protocol.batch`, in an order fixed by the pair
/// and the protocol alone.
pub fn pair_curve<E, S>(
    pair: &PairInput<'_>,
    shape: ImageShape,
    protocol: &Protocol,
    mode: Mode,
    scorer: &mut S,
) -> std::result::Result<PairCurve, E>
where
    E: From<EvalError>,
    S: FnMut(&[f32], usize) -> std::result::Result<Vec<f32>, E>,
{
    check_pair(pair, shape)?;
    let steps = protocol.steps()?;
    let order_a = ranking(pair.map_a)?;
    let n = steps.len();
    let len = shape.len();
    let counts: Vec<usize> = steps
        .iter()
        .map(|&p| pixel_count(p, shape.pixels()))
        .collect();

    // Images to embed: A at every step, then B at every step (or B once, clean, for `Probe`).
    let perturb_b = protocol.perturb.for_pair(pair.genuine) == Perturb::Both;
    let rows_b = if perturb_b { n } else { 1 };
    let mut images = vec![0f32; (n + rows_b) * len];
    let (ia, ib) = images.split_at_mut(n * len);
    for (i, &k) in counts.iter().enumerate() {
        perturb_step(pair.a, shape, &order_a, k, protocol, mode, (0, i), &mut ia[i * len..(i + 1) * len])?;
    }
    if perturb_b {
        let order_b = ranking(pair.map_b)?;
        for (i, &k) in counts.iter().enumerate() {
            perturb_step(pair.b, shape, &order_b, k, protocol, mode, (1, i), &mut ib[i * len..(i + 1) * len])?;
        }
    } else {
        ib.copy_from_slice(pair.b);
    }
    let embeddings = embed_chunked(&images, len, protocol.batch, scorer)?;
    let scores = (0..n)
        .map(|i| {
            let ea = &embeddings[i];
            let eb = &embeddings[if perturb_b { n + i } else { n }];
            cosine(ea, eb)
        })
        .collect();
    Ok(PairCurve {
        genuine: pair.genuine,
        scores,
    })
}

/// One curve point of one image: [`perturb_into`] with the constant fill, or ROAD's imputation
/// when the protocol asks for it. `(image, step)` pick the noise stream, so a pair's curve is a
/// function of the pair alone.
#[allow(clippy::too_many_arguments)]
fn perturb_step(
    image: &[f32],
    shape: ImageShape,
    order: &[usize],
    top: usize,
    protocol: &Protocol,
    mode: Mode,
    (which, step): (u64, usize),
    out: &mut [f32],
) -> Result<()> {
    let Some(r) = &protocol.road else {
        perturb_into(image, shape, order, top, protocol.fill, mode, out);
        return Ok(());
    };
    let top = top.min(order.len());
    // MoRF removes the head of the ranking, LeRF its tail.
    let gone = match mode {
        Mode::Deletion => &order[..top],
        Mode::Insertion => &order[order.len() - top..],
    };
    let mut removed = vec![false; shape.pixels()];
    for &p in gone {
        removed[p] = true;
    }
    let seed = facelens_core::rng::hash_words(&[r.seed, which, step as u64, mode as u64]);
    let filled = road::impute(image, (shape.channels, shape.height, shape.width), &removed, r, seed, protocol.fill)?;
    out.copy_from_slice(&filled);
    Ok(())
}

/// Embeds images `len` values each, `batch` per call, checking what the scorer returns.
fn embed_chunked<E, S>(
    images: &[f32],
    len: usize,
    batch: usize,
    scorer: &mut S,
) -> std::result::Result<Vec<Vec<f32>>, E>
where
    E: From<EvalError>,
    S: FnMut(&[f32], usize) -> std::result::Result<Vec<f32>, E>,
{
    let batch = batch.max(1);
    let mut out = Vec::with_capacity(images.len() / len);
    for chunk in images.chunks(batch * len) {
        let n = chunk.len() / len;
        let flat = scorer(chunk, n)?;
        if flat.is_empty() || flat.len() % n != 0 {
            return Err(EvalError::InvalidCurve(format!(
                "the scorer returned {} values for {n} images, not a whole number of embeddings",
                flat.len()
            ))
            .into());
        }
        out.extend(flat.chunks(flat.len() / n).map(<[f32]>::to_vec));
    }
    Ok(out)
}

fn check_pair(pair: &PairInput<'_>, shape: ImageShape) -> Result<()> {
    if shape.is_empty() {
        return Err(EvalError::InvalidCurve("images have no pixels".into()));
    }
    for (what, got, expected) in [
        ("image A", pair.a.len(), shape.len()),
        ("image B", pair.b.len(), shape.len()),
        ("map A", pair.map_a.len(), shape.pixels()),
        ("map B", pair.map_b.len(), shape.pixels()),
    ] {
        if got != expected {
            return Err(EvalError::LengthMismatch {
                what,
                expected,
                got,
            });
        }
    }
    Ok(())
}

/// Aggregates per-pair curves into the accuracy curve at threshold τ and its area.
///
/// Accuracies are counts over the pair total, so the result does not depend on the order of
/// `pairs` — the property that lets shards be merged exactly.
pub fn accuracy_curve(
    pairs: &[PairCurve],
    steps: &[f64],
    threshold: f32,
    mode: Mode,
) -> Result<Curve> {
    if pairs.is_empty() {
        return Err(EvalError::Empty);
    }
    let mut correct = vec![0usize; steps.len()];
    for (i, pair) in pairs.iter().enumerate() {
        if pair.scores.len() != steps.len() {
            return Err(EvalError::InvalidCurve(format!(
                "pair #{i} has {} scores but the curve has {} steps",
                pair.scores.len(),
                steps.len()
            )));
        }
        if let Some(j) = pair.scores.iter().position(|s| !s.is_finite()) {
            return Err(EvalError::NonFiniteScore {
                index: i,
                value: pair.scores[j],
            });
        }
        for (c, ok) in correct.iter_mut().zip(pair.correct(threshold)) {
            *c += usize::from(ok);
        }
    }
    let accuracy: Vec<f64> = correct
        .iter()
        .map(|&c| c as f64 / pairs.len() as f64)
        .collect();
    let auc = trapezoid_auc(steps, &accuracy)?;
    Ok(Curve {
        mode,
        steps: steps.to_vec(),
        accuracy,
        auc,
        pairs: pairs.len(),
    })
}

/// Runs the whole protocol for one mode over a pair set: [`pair_curve`] for each pair, then
/// [`accuracy_curve`]. Use it when all pairs are at hand; experiments that shard work call the two
/// halves themselves.
pub fn evaluate<E, S>(
    pairs: &[PairInput<'_>],
    shape: ImageShape,
    protocol: &Protocol,
    threshold: f32,
    mode: Mode,
    scorer: &mut S,
) -> std::result::Result<Curve, E>
where
    E: From<EvalError>,
    S: FnMut(&[f32], usize) -> std::result::Result<Vec<f32>, E>,
{
    let curves = pairs
        .iter()
        .map(|p| pair_curve(p, shape, protocol, mode, scorer))
        .collect::<std::result::Result<Vec<_>, E>>()?;
    Ok(accuracy_curve(
        &curves,
        &protocol.steps()?,
        threshold,
        mode,
    )?)
}
