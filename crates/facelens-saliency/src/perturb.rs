//! Shared machinery of the perturbation baselines (CorrRISE, RISE, LIME, random).
//!
//! They all follow one skeleton: build masked copies of an image, push them through the
//! frozen backbone in batches, and score each copy by its cosine to the (unmasked)
//! partner. Only how masks are drawn and how scores become a map differs per method.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::engine::{normalised, GradientEngine};
use crate::{Decision, Explanation, FacePair, Result, SaliencyMaps};

/// Model-space value of a black pixel (0 in 0..255) for `w600k_mbf`:
/// `(0 - 127.5) / 127.5`. Occluding with the model's own black matches Deletion (docs/design.md §8);
/// a backbone with another normalisation needs its own value.
pub const BLACK_W600K_MBF: f32 = -1.0;

/// Masked images per forward batch: enough to keep the convolution kernels busy while a
/// batch of 112-px images stays a few MiB.
pub const DEFAULT_BATCH: usize = 32;

/// The masks' generator; its stream is pinned in `facelens_core::rng`, so mask sets stay
/// reproducible.
pub use facelens_core::rng::SplitMix64 as Rng;

/// `keep * x + (1 - keep) * fill` for every channel of a CHW image; `keep` is `[H*W]` in `[0, 1]`.
pub fn apply_mask(image: &[f32], keep: &[f32], fill: f32, out: &mut [f32]) {
    let p = keep.len();
    for (ch_in, ch_out) in image.chunks(p).zip(out.chunks_mut(p)) {
        for ((o, &x), &k) in ch_out.iter_mut().zip(ch_in).zip(keep) {
            *o = k * x + (1.0 - k) * fill;
        }
    }
}

/// Cosines `cos(f(image * M_i), partner)` for `n` masks, `partner` L2-normalised.
/// `mask(i, keep)` writes the keep-weights of mask `i` (`[H*W]`, 1 = untouched).
pub fn masked_scores(
    engine: &dyn GradientEngine,
    image: &[f32],
    partner: &[f32],
    n: usize,
    batch: usize,
    fill: f32,
    mut mask: impl FnMut(usize, &mut [f32]),
) -> Result<Vec<f32>> {
    engine.check_image(image)?;
    let (_, h, w) = engine.input_shape();
    let (numel, d) = (image.len(), engine.embedding_dim());
    let batch = batch.max(1);
    let mut keep = vec![0f32; h * w];
    let mut scores = Vec::with_capacity(n);
    let mut buf = Vec::new();
    for start in (0..n).step_by(batch) {
        let rows = batch.min(n - start);
        buf.resize(rows * numel, 0.0);
        for (r, out) in buf.chunks_mut(numel).enumerate() {
            mask(start + r, &mut keep);
            apply_mask(image, &keep, fill, out);
        }
        let emb = engine.embed(&buf, rows)?;
        scores.extend(emb.chunks(d).map(|e| dot(&normalised(e), partner)));
    }
    Ok(scores)
}

/// L2-normalised embeddings of both faces and their cosine.
pub fn pair_embeddings(engine: &dyn GradientEngine, pair: FacePair<'_>) -> Result<(Vec<f32>, Vec<f32>, f32)> {
    engine.check_image(pair.a)?;
    engine.check_image(pair.b)?;
    let d = engine.embedding_dim();
    let mut both = pair.a.to_vec();
    both.extend_from_slice(pair.b);
    let e = engine.embed(&both, 2)?;
    let (fa, fb) = (normalised(&e[..d]), normalised(&e[d..]));
    let score = dot(&fa, &fb);
    Ok((fa, fb, score))
}

pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Packs the common parts of an [`Explanation`]; `total_s` is measured from `start`.
pub fn explanation(
    method: &str,
    maps: SaliencyMaps,
    score: f32,
    threshold: f32,
    mut timings: BTreeMap<String, f64>,
    start: Instant,
) -> Explanation {
    timings.insert("total_s".into(), start.elapsed().as_secs_f64());
    Explanation { maps, score, threshold, decision: Decision::at(score, threshold), method: method.into(), timings }
}

/// The shared skeleton of methods that explain each face by a signed map against its
/// partner's fixed embedding: `S_A = map(A, F_B)`, `S_B = map(B, F_A)`, split into S+ / S-.
/// `phase` names the timings (`<phase>_a_s`, `<phase>_b_s`).
pub fn explain_by_signed_maps(
    method: &str,
    engine: &dyn GradientEngine,
    pair: FacePair<'_>,
    threshold: f32,
    phase: &str,
    mut signed_map: impl FnMut(&[f32], &[f32]) -> Result<Vec<f32>>,
) -> Result<Explanation> {
    let start = Instant::now();
    let (_, h, w) = engine.input_shape();
    let (fa, fb, score) = pair_embeddings(engine, pair)?;
    let mut timings = BTreeMap::new();
    let t = Instant::now();
    let sa = signed_map(pair.a, &fb)?;
    timings.insert(format!("{phase}_a_s"), t.elapsed().as_secs_f64());
    let t = Instant::now();
    let sb = signed_map(pair.b, &fa)?;
    timings.insert(format!("{phase}_b_s"), t.elapsed().as_secs_f64());
    let maps = SaliencyMaps::from_signed(h, w, &sa, &sb);
    Ok(explanation(method, maps, score, threshold, timings, start))
}

/// Bilinear resize of one `[sh][sw]` plane to `[h][w]` with half-pixel centres and clamped
/// edges (OpenCV `INTER_LINEAR`, as pytorch-grad-cam uses).
pub fn upsample_bilinear(map: &[f32], sh: usize, sw: usize, h: usize, w: usize) -> Vec<f32> {
    let axis = |i: usize, n: usize, sn: usize| {
        let s = ((i as f32 + 0.5) * sn as f32 / n as f32 - 0.5).clamp(0.0, (sn - 1) as f32);
        let i0 = s.floor() as usize;
        (i0, (i0 + 1).min(sn - 1), s - i0 as f32)
    };
    let mut out = vec![0f32; h * w];
    for y in 0..h {
        let (y0, y1, ty) = axis(y, h, sh);
        for x in 0..w {
            let (x0, x1, tx) = axis(x, w, sw);
            let top = map[y0 * sw + x0] * (1.0 - tx) + map[y0 * sw + x1] * tx;
            let bottom = map[y1 * sw + x0] * (1.0 - tx) + map[y1 * sw + x1] * tx;
            out[y * w + x] = top * (1.0 - ty) + bottom * ty;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_blends_towards_fill() {
        let image = [1.0, 2.0, 3.0, 4.0];
        let mut out = [0.0; 4];
        apply_mask(&image, &[1.0, 0.0], -1.0, &mut out);
        assert_eq!(out, [1.0, -1.0, 3.0, -1.0]);
        apply_mask(&image, &[0.5, 0.25], 0.0, &mut out);
        assert_eq!(out, [0.5, 0.5, 1.5, 1.0]);
    }

    #[test]
    fn upsampling_keeps_constants_and_interpolates_between_centres() {
        let up = upsample_bilinear(&[2.0; 49], 7, 7, 112, 112);
        assert!(up.iter().all(|v| (v - 2.0).abs() < 1e-6));
        // A horizontal ramp 0..6 stays monotone and spans the source range.
        let ramp: Vec<f32> = (0..49).map(|i| (i % 7) as f32).collect();
        let up = upsample_bilinear(&ramp, 7, 7, 112, 112);
        assert_eq!(up[0], 0.0);
        assert_eq!(up[111], 6.0);
        assert!(up[..112].windows(2).all(|p| p[1] >= p[0]));
    }
}
