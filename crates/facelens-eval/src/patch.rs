//! The ground-truth patch benchmark: evidence planted where it is known.
//!
//! Deletion, Insertion and ROAD ask the model whether a map's pixels matter, but never say where
//! the evidence *is*. Here it is made known: one facial region of the probe of a genuine pair (the
//! eyes, nose or mouth box around the ArcFace 112x112 template landmarks of Deng et al., CVPR
//! 2019) is replaced by the same region of an aligned face of another identity. When that drops the
//! pair's cosine by at least a margin, the patch is evidence against the match, and a faithful
//! dissimilarity map of the patched probe puts its mass on the patch (the "controlled synthetic
//! evidence" check of attribution benchmarks; cf. the pointing game of Zhang et al., "Top-down
//! Neural Attention by Excitation Backprop", ECCV 2016).
//!
//! Three scores per map, all model-free ([`score_map`]):
//! * **pointing game**: the map's maximum lies in the patch (ties: the first maximum in row-major
//!   order, as [`crate::deletion::ranking`] orders them);
//! * **mass in patch**: the patch's share of the map's total, to be read against the patch's share of
//!   the image (a map that ignores the patch scores about that share);
//! * **AUC**: the probability that a patch pixel outranks a pixel outside it (0.5 = blind).

use serde::{Deserialize, Serialize};

use crate::deletion::{cosine, ImageShape};
use crate::error::{EvalError, Result};
use crate::rank;

/// The five ArcFace landmarks (left eye, right eye, nose tip, left and right mouth corner) in a
/// 112x112 aligned crop.
pub const ARCFACE_TEMPLATE: [[f32; 2]; 5] = [[38.29, 51.70], [73.53, 51.50], [56.03, 71.74], [41.55, 92.37], [70.73, 92.20]];

/// A facial region the benchmark can replace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Region {
    Eyes,
    Nose,
    Mouth,
}

impl Region {
    pub const ALL: [Region; 3] = [Region::Eyes, Region::Nose, Region::Mouth];

    pub fn as_str(self) -> &'static str {
        match self {
            Region::Eyes => "eyes",
            Region::Nose => "nose",
            Region::Mouth => "mouth",
        }
    }

    /// The region's box in a `size x size` aligned crop: the template landmarks' bounding box
    /// grown by a margin that covers the feature (brows to lower lids, nose bridge to nostrils,
    /// lips), in 112-pixel units scaled to `size`.
    pub fn patch_box(self, size: usize) -> PatchBox {
        let t = ARCFACE_TEMPLATE;
        // (x0, y0, x1, y1) in the 112x112 template.
        let (x0, y0, x1, y1) = match self {
            Region::Eyes => (t[0][0] - 12.0, t[1][1] - 9.0, t[1][0] + 12.0, t[0][1] + 9.0),
            Region::Nose => (t[2][0] - 12.0, t[2][1] - 10.0, t[2][0] + 12.0, t[2][1] + 8.0),
            Region::Mouth => (t[3][0] - 7.0, t[4][1] - 8.0, t[4][0] + 7.0, t[3][1] + 9.0),
        };
        let s = size as f32 / 112.0;
        let px = |v: f32| ((v * s).round().max(0.0) as usize).min(size);
        PatchBox { x0: px(x0), y0: px(y0), x1: px(x1), y1: px(y1) }
    }
}

/// A half-open pixel box `[x0, x1) x [y0, y1)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatchBox {
    pub x0: usize,
    pub y0: usize,
    pub x1: usize,
    pub y1: usize,
}

impl PatchBox {
    /// Which of `height * width` pixels lie in the box.
    pub fn mask(&self, height: usize, width: usize) -> Vec<bool> {
        (0..height * width)
            .map(|p| (self.y0..self.y1).contains(&(p / width)) && (self.x0..self.x1).contains(&(p % width)))
            .collect()
    }
}

/// `probe` with the pixels of `mask` taken from `donor` in every channel (both model-space CHW).
pub fn paste(probe: &[f32], donor: &[f32], shape: ImageShape, mask: &[bool]) -> Result<Vec<f32>> {
    for (what, got, expected) in [("probe", probe.len(), shape.len()), ("donor", donor.len(), shape.len()), ("patch mask", mask.len(), shape.pixels())] {
        if got != expected {
            return Err(EvalError::LengthMismatch { what, expected, got });
        }
    }
    let plane = shape.pixels();
    let mut out = probe.to_vec();
    for c in 0..shape.channels {
        for p in (0..plane).filter(|&p| mask[p]) {
            out[c * plane + p] = donor[c * plane + p];
        }
    }
    Ok(out)
}

/// A patched probe kept by the benchmark, with the scores that justified keeping it.
#[derive(Debug, Clone, PartialEq)]
pub struct Patched {
    pub image: Vec<f32>,
    pub clean_score: f32,
    pub patched_score: f32,
}

/// Patches `probe` with `donor` on `mask` and keeps it when the cosine to `reference` drops by at
/// least `margin`: only then is the patch known to be evidence against the match. `scorer(images,
/// n)` embeds `n` images laid back to back, as in [`crate::deletion::pair_curve`].
pub fn patch_if_it_drops<E, S>(
    probe: &[f32],
    donor: &[f32],
    reference: &[f32],
    shape: ImageShape,
    mask: &[bool],
    margin: f32,
    scorer: &mut S,
) -> std::result::Result<Option<Patched>, E>
where
    E: From<EvalError>,
    S: FnMut(&[f32], usize) -> std::result::Result<Vec<f32>, E>,
{
    if !(margin.is_finite() && margin >= 0.0) {
        return Err(EvalError::InvalidCurve(format!("patch margin must be a finite cosine drop >= 0, got {margin}")).into());
    }
    let image = paste(probe, donor, shape, mask)?;
    let e = scorer(&[probe, image.as_slice(), reference].concat(), 3)?;
    if e.is_empty() || e.len() % 3 != 0 {
        return Err(EvalError::InvalidCurve(format!("the scorer returned {} values for 3 images", e.len())).into());
    }
    let d = e.len() / 3;
    let (clean_score, patched_score) = (cosine(&e[..d], &e[2 * d..]), cosine(&e[d..2 * d], &e[2 * d..]));
    Ok((clean_score - patched_score >= margin).then_some(Patched { image, clean_score, patched_score }))
}

/// How one map scores against the patch.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PatchScores {
    pub pointing_game: bool,
    /// Share of the map's total in the patch (the map is non-negative); 0 for an all-zero map.
    pub mass_in_patch: f64,
    /// Share of the image the patch covers.
    pub patch_area_fraction: f64,
    pub auc: f64,
}

/// Scores a non-negative map (`height * width`) against the patch `mask`.
pub fn score_map(map: &[f32], mask: &[bool]) -> Result<PatchScores> {
    if map.len() != mask.len() {
        return Err(EvalError::LengthMismatch { what: "patch mask", expected: map.len(), got: mask.len() });
    }
    if let Some(i) = map.iter().position(|v| !v.is_finite() || *v < 0.0) {
        return Err(EvalError::InvalidCurve(format!("saliency map value #{i} is {}, not a finite number >= 0", map[i])));
    }
    let inside = mask.iter().filter(|m| **m).count();
    if inside == 0 || inside == mask.len() {
        return Err(EvalError::InvalidCurve(format!("the patch covers {inside} of {} pixels; it must cover some but not all", mask.len())));
    }
    let top = map.iter().enumerate().fold(0, |best, (i, v)| if *v > map[best] { i } else { best });
    let total: f64 = map.iter().map(|v| f64::from(*v)).sum();
    let in_patch: f64 = map.iter().zip(mask).filter(|(_, m)| **m).map(|(v, _)| f64::from(*v)).sum();
    Ok(PatchScores {
        pointing_game: mask[top],
        mass_in_patch: if total > 0.0 { in_patch / total } else { 0.0 },
        patch_area_fraction: inside as f64 / mask.len() as f64,
        auc: rank::auc(map, mask)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxes_cover_their_landmarks_and_do_not_overlap() {
        let boxes: Vec<PatchBox> = Region::ALL.iter().map(|r| r.patch_box(112)).collect();
        let m: Vec<Vec<bool>> = boxes.iter().map(|b| b.mask(112, 112)).collect();
        let at = |x: f32, y: f32| y as usize * 112 + x as usize;
        let t = ARCFACE_TEMPLATE;
        assert!(m[0][at(t[0][0], t[0][1])] && m[0][at(t[1][0], t[1][1])]);
        assert!(m[1][at(t[2][0], t[2][1])]);
        assert!(m[2][at(t[3][0], t[3][1])] && m[2][at(t[4][0], t[4][1])]);
        for p in 0..112 * 112 {
            assert!(m.iter().filter(|v| v[p]).count() <= 1, "pixel {p} is in two boxes");
        }
    }

    #[test]
    fn scores_of_known_maps() {
        let mask: Vec<bool> = (0..16).map(|p| p < 4).collect();
        let ideal: Vec<f32> = (0..16).map(|p| if p < 4 { 1.0 } else { 0.0 }).collect();
        let s = score_map(&ideal, &mask).unwrap();
        assert!(s.pointing_game && s.mass_in_patch == 1.0 && s.auc == 1.0 && s.patch_area_fraction == 0.25);
        let flat = score_map(&[1.0; 16], &mask).unwrap();
        assert!(flat.mass_in_patch == 0.25 && flat.auc == 0.5);
        assert!(score_map(&[-1.0; 16], &mask).is_err());
        assert!(score_map(&ideal, &[true; 16]).is_err());
    }
}
