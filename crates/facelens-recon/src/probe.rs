//! Feature-to-region probing (docs/design.md §9).
//!
//! For a face with normalised embedding `z` and each dimension `k`:
//! `R^k = mean_c |D(z) - D(renorm(z with z_k = 0))|`, normalised to sum 1, shows where in the face
//! dimension `k` matters to the decoder. Summed over a facial region, `R^k` gives the share of
//! dimension `k`'s effect that lands in that region; averaged over many faces it says which
//! dimensions encode which regions.
//!
//! # Regions
//! Defined on the 112x112 ArcFace crop around the template landmarks
//! `[[38.29,51.70],[73.53,51.50],[56.03,71.74],[41.55,92.37],[70.73,92.20]]` (image left eye,
//! image right eye, nose tip, mouth corners). "Left"/"right" are as seen in the image (the
//! subject's right eye is the image's left eye). Pixels are labelled by the first region that
//! contains their centre, in this order:
//!
//! | region | shape (x right, y down, pixels) |
//! | --- | --- |
//! | `left_eye` | ellipse centre (38.3, 49.0), semi-axes 14 x 10 (eye and lower brow) |
//! | `right_eye` | ellipse centre (73.5, 49.0), semi-axes 14 x 10 |
//! | `nose` | ellipse centre (56.0, 68.0), semi-axes 9 x 13 (bridge to tip) |
//! | `mouth` | ellipse centre (56.1, 92.3), semi-axes 21 x 9 (both corners inside) |
//! | `forehead` | inside the face oval, above y = 38 |
//! | `cheeks_jaw` | inside the face oval, below y = 38, not in a region above |
//! | `other` | outside the face oval: hair, ears, background, alignment border |
//!
//! The face oval is the ellipse centre (56, 62), semi-axes 40 x 54.

use candle_core::Tensor;
use facelens_data::RgbImage;
use facelens_saliency::render::{draw_text, turbo};
use serde::Serialize;

use crate::decoder::{Decoder, OUTPUT_SIDE};
use crate::error::{ReconError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Region {
    LeftEye,
    RightEye,
    Nose,
    Mouth,
    Forehead,
    CheeksJaw,
    Other,
}

pub const REGIONS: [Region; 7] = [
    Region::LeftEye,
    Region::RightEye,
    Region::Nose,
    Region::Mouth,
    Region::Forehead,
    Region::CheeksJaw,
    Region::Other,
];

impl Region {
    pub fn name(self) -> &'static str {
        match self {
            Region::LeftEye => "left_eye",
            Region::RightEye => "right_eye",
            Region::Nose => "nose",
            Region::Mouth => "mouth",
            Region::Forehead => "forehead",
            Region::CheeksJaw => "cheeks_jaw",
            Region::Other => "other",
        }
    }
}

fn in_ellipse(x: f64, y: f64, cx: f64, cy: f64, a: f64, b: f64) -> bool {
    ((x - cx) / a).powi(2) + ((y - cy) / b).powi(2) <= 1.0
}

/// The region of pixel `(x, y)` of a 112x112 crop (see the module doc).
pub fn region_at(x: usize, y: usize) -> Region {
    let (px, py) = (x as f64 + 0.5, y as f64 + 0.5);
    if in_ellipse(px, py, 38.3, 49.0, 14.0, 10.0) {
        Region::LeftEye
    } else if in_ellipse(px, py, 73.5, 49.0, 14.0, 10.0) {
        Region::RightEye
    } else if in_ellipse(px, py, 56.0, 68.0, 9.0, 13.0) {
        Region::Nose
    } else if in_ellipse(px, py, 56.1, 92.3, 21.0, 9.0) {
        Region::Mouth
    } else if !in_ellipse(px, py, 56.0, 62.0, 40.0, 54.0) {
        Region::Other
    } else if py < 38.0 {
        Region::Forehead
    } else {
        Region::CheeksJaw
    }
}

/// Region index (into [`REGIONS`]) of every pixel of the 112x112 crop, row-major.
pub fn region_labels() -> Vec<u8> {
    let s = OUTPUT_SIDE;
    (0..s * s)
        .map(|p| {
            REGIONS
                .iter()
                .position(|r| *r == region_at(p % s, p / s))
                .unwrap_or(6) as u8
        })
        .collect()
}

/// Renormalises a vector to unit L2 norm (zeros stay zeros).
fn renorm(v: &mut [f32]) {
    let n = v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x = (*x as f64 / n) as f32);
    }
}

/// The region maps `R^k` of one embedding for dimensions `dims`, each `112*112` values summing
/// to 1 (all zeros if zeroing `z_k` changes nothing). `batch` perturbed embeddings are decoded
/// per forward pass.
pub fn region_maps_for(
    decoder: &Decoder,
    z: &[f32],
    dims: &[usize],
    batch: usize,
    device: &candle_core::Device,
) -> Result<Vec<Vec<f32>>> {
    let d = decoder.config().embedding_dim;
    if z.len() != d {
        return Err(ReconError::UnexpectedShape {
            what: "probed embedding",
            expected: vec![d],
            got: vec![z.len()],
        });
    }
    let mut base = z.to_vec();
    renorm(&mut base);
    let reference = decoder.decode(&Tensor::from_slice(&base, (1, d), device)?)?;
    let mut out = Vec::with_capacity(dims.len());
    for chunk in dims.chunks(batch.max(1)) {
        let mut zs = Vec::with_capacity(chunk.len() * d);
        for &k in chunk {
            let mut v = base.clone();
            v[k] = 0.0;
            renorm(&mut v);
            zs.extend(v);
        }
        let decoded = decoder.decode(&Tensor::from_vec(zs, (chunk.len(), d), device)?)?;
        let diff = decoded.broadcast_sub(&reference)?.abs()?.mean(1)?; // (B, H, W)
        let flat: Vec<f32> = diff
            .flatten_all()?
            .to_device(&candle_core::Device::Cpu)?
            .to_vec1()?;
        let p = flat.len() / chunk.len();
        for m in flat.chunks(p) {
            let s: f64 = m.iter().map(|v| *v as f64).sum();
            out.push(if s > 0.0 {
                m.iter().map(|v| (*v as f64 / s) as f32).collect()
            } else {
                vec![0.0; p]
            });
        }
    }
    Ok(out)
}

/// `R^k` for every dimension.
pub fn region_maps(
    decoder: &Decoder,
    z: &[f32],
    batch: usize,
    device: &candle_core::Device,
) -> Result<Vec<Vec<f32>>> {
    let dims: Vec<usize> = (0..decoder.config().embedding_dim).collect();
    region_maps_for(decoder, z, &dims, batch, device)
}

/// Running per-dimension, per-region statistics over faces.
#[derive(Debug, Clone)]
pub struct ProbeAccumulator {
    dim: usize,
    labels: Vec<u8>,
    faces: usize,
    /// `[dim][region]` sums of the region mass and its square.
    mass: Vec<f64>,
    mass_sq: Vec<f64>,
    /// `[dim][pixel]` sum of the maps, for mean maps.
    map_sum: Vec<f64>,
}

impl ProbeAccumulator {
    pub fn new(dim: usize) -> Self {
        let p = OUTPUT_SIDE * OUTPUT_SIDE;
        Self {
            dim,
            labels: region_labels(),
            faces: 0,
            mass: vec![0.0; dim * REGIONS.len()],
            mass_sq: vec![0.0; dim * REGIONS.len()],
            map_sum: vec![0.0; dim * p],
        }
    }

    /// Adds one face's maps (`dim` maps of 112*112, as from [`region_maps`]).
    pub fn add(&mut self, maps: &[Vec<f32>]) -> Result<()> {
        let p = self.labels.len();
        if maps.len() != self.dim || maps.iter().any(|m| m.len() != p) {
            return Err(ReconError::UnexpectedShape {
                what: "region maps",
                expected: vec![self.dim, p],
                got: vec![maps.len(), maps.first().map_or(0, |m| m.len())],
            });
        }
        let r = REGIONS.len();
        for (k, m) in maps.iter().enumerate() {
            let mut per = [0f64; REGIONS.len()];
            for (i, v) in m.iter().enumerate() {
                per[self.labels[i] as usize] += *v as f64;
                self.map_sum[k * p + i] += *v as f64;
            }
            let (mass, mass_sq) = (
                &mut self.mass[k * r..(k + 1) * r],
                &mut self.mass_sq[k * r..(k + 1) * r],
            );
            for ((m1, m2), v) in mass.iter_mut().zip(mass_sq.iter_mut()).zip(per) {
                *m1 += v;
                *m2 += v * v;
            }
        }
        self.faces += 1;
        Ok(())
    }

    pub fn faces(&self) -> usize {
        self.faces
    }

    /// Mean map of dimension `k` over the faces added.
    pub fn mean_map(&self, k: usize) -> Vec<f32> {
        let p = self.labels.len();
        let n = self.faces.max(1) as f64;
        self.map_sum[k * p..(k + 1) * p]
            .iter()
            .map(|v| (*v / n) as f32)
            .collect()
    }

    /// Statistics with the `top_k` dimensions of each region.
    pub fn finish(&self, top_k: usize) -> ProbeStats {
        let r = REGIONS.len();
        let n = self.faces.max(1) as f64;
        let p = self.labels.len() as f64;
        let area: Vec<f64> = (0..r)
            .map(|j| self.labels.iter().filter(|l| **l as usize == j).count() as f64 / p)
            .collect();
        let mean: Vec<f64> = self.mass.iter().map(|s| s / n).collect();
        let std: Vec<f64> = self
            .mass_sq
            .iter()
            .zip(&mean)
            .map(|(sq, m)| (sq / n - m * m).max(0.0).sqrt())
            .collect();
        let regions = REGIONS
            .iter()
            .enumerate()
            .map(|(j, reg)| {
                let mut dims: Vec<usize> = (0..self.dim).collect();
                dims.sort_by(|a, b| mean[b * r + j].total_cmp(&mean[a * r + j]).then(a.cmp(b)));
                RegionStats {
                    region: reg.name(),
                    area_fraction: area[j],
                    mean_mass: (0..self.dim).map(|k| mean[k * r + j]).sum::<f64>()
                        / self.dim.max(1) as f64,
                    top: dims
                        .into_iter()
                        .take(top_k)
                        .map(|k| DimensionScore {
                            dim: k,
                            mean_mass: mean[k * r + j],
                            std_mass: std[k * r + j],
                            concentration: if area[j] > 0.0 {
                                mean[k * r + j] / area[j]
                            } else {
                                0.0
                            },
                        })
                        .collect(),
                }
            })
            .collect();
        ProbeStats {
            faces: self.faces,
            dim: self.dim,
            regions,
            mass_mean: mean,
            mass_std: std,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct DimensionScore {
    pub dim: usize,
    /// Mean over faces of the share of `R^k` inside the region.
    pub mean_mass: f64,
    pub std_mass: f64,
    /// `mean_mass / area_fraction`: above 1 when the dimension concentrates on the region.
    pub concentration: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RegionStats {
    pub region: &'static str,
    /// Fraction of the crop's pixels in the region.
    pub area_fraction: f64,
    /// Mean over dimensions of the mean mass (what a dimension puts there on average).
    pub mean_mass: f64,
    pub top: Vec<DimensionScore>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProbeStats {
    pub faces: usize,
    pub dim: usize,
    pub regions: Vec<RegionStats>,
    /// `[dim][region]` mean mass (region order of [`REGIONS`]).
    #[serde(skip)]
    pub mass_mean: Vec<f64>,
    #[serde(skip)]
    pub mass_std: Vec<f64>,
}

impl ProbeStats {
    /// CSV with one row per dimension: `dim,<region>_mean,<region>_std,...`.
    pub fn to_csv(&self) -> String {
        let r = REGIONS.len();
        let mut s = String::from("dim");
        for reg in REGIONS {
            s.push_str(&format!(",{0}_mean,{0}_std", reg.name()));
        }
        s.push('\n');
        for k in 0..self.dim {
            s.push_str(&k.to_string());
            for j in 0..r {
                s.push_str(&format!(
                    ",{:.6},{:.6}",
                    self.mass_mean[k * r + j],
                    self.mass_std[k * r + j]
                ));
            }
            s.push('\n');
        }
        s
    }
}

/// A map coloured on `[0, its max]`, pixels of region `outline` (if any) edged in white.
pub fn render_map(map: &[f32], outline: Option<(u8, &[u8])>) -> RgbImage {
    let s = OUTPUT_SIDE;
    let max = map.iter().copied().fold(0f32, f32::max);
    let mut img = RgbImage::from_fn(s as u32, s as u32, |x, y| {
        let v = map[y as usize * s + x as usize];
        turbo(if max > 0.0 { v / max } else { 0.0 })
    });
    if let Some((region, labels)) = outline {
        for y in 0..s {
            for x in 0..s {
                let inside = |xx: usize, yy: usize| labels[yy * s + xx] == region;
                if inside(x, y)
                    && (x == 0
                        || y == 0
                        || x + 1 == s
                        || y + 1 == s
                        || !inside(x - 1, y)
                        || !inside(x + 1, y)
                        || !inside(x, y - 1)
                        || !inside(x, y + 1))
                {
                    img.put_pixel(x as u32, y as u32, image::Rgb([255, 255, 255]));
                }
            }
        }
    }
    img
}

/// Labels in black, the 8x8 font at 1x.
fn draw_label(img: &mut RgbImage, x: u32, y: u32, text: &str) {
    draw_text(img, x.into(), y.into(), text, image::Rgb([0, 0, 0]), 1);
}

/// One row per region: the region mask, then the mean maps of its `top_k` dimensions (each on
/// its own colour scale, the region outlined), labelled `k=<dim>` with the mass share.
pub fn render_region_panel(acc: &ProbeAccumulator, stats: &ProbeStats, top_k: usize) -> RgbImage {
    let s = OUTPUT_SIDE as u32;
    let (gap, label) = (4u32, 12u32);
    let cols = top_k as u32 + 1;
    let rows = stats.regions.len() as u32;
    let (cw, ch) = (s + gap, s + label + gap);
    let mut img = RgbImage::from_pixel(
        gap + cols * cw,
        gap + rows * ch,
        image::Rgb([255, 255, 255]),
    );
    for (j, reg) in stats.regions.iter().enumerate() {
        let y0 = gap + j as u32 * ch;
        let mask: Vec<f32> = acc
            .labels
            .iter()
            .map(|l| if *l as usize == j { 1.0 } else { 0.2 })
            .collect();
        image::imageops::replace(
            &mut img,
            &render_map(&mask, None),
            gap as i64,
            (y0 + label) as i64,
        );
        draw_label(
            &mut img,
            gap,
            y0 + 2,
            &reg.region[..reg.region.len().min(14)],
        );
        for (c, d) in reg.top.iter().take(top_k).enumerate() {
            let x0 = gap + (c as u32 + 1) * cw;
            let map = acc.mean_map(d.dim);
            image::imageops::replace(
                &mut img,
                &render_map(&map, Some((j as u8, &acc.labels))),
                x0 as i64,
                (y0 + label) as i64,
            );
            draw_label(
                &mut img,
                x0,
                y0 + 2,
                &format!("k={} {:.0}%", d.dim, 100.0 * d.mean_mass),
            );
        }
    }
    img
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_points_fall_in_their_regions() {
        assert_eq!(region_at(38, 51), Region::LeftEye);
        assert_eq!(region_at(73, 51), Region::RightEye);
        assert_eq!(region_at(56, 71), Region::Nose);
        assert_eq!(region_at(41, 92), Region::Mouth);
        assert_eq!(region_at(70, 92), Region::Mouth);
        assert_eq!(region_at(56, 20), Region::Forehead);
        assert_eq!(region_at(25, 75), Region::CheeksJaw);
        assert_eq!(region_at(2, 2), Region::Other);
        let labels = region_labels();
        for j in 0..REGIONS.len() {
            assert!(
                labels.iter().any(|l| *l as usize == j),
                "region {j} is empty"
            );
        }
    }
}
