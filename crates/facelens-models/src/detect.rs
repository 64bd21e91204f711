//! Face detection with SCRFD-500M: letterbox, network, anchor decoding, NMS, face picking.
//!
//! A port of the inference path of insightface `python-package/insightface/model_zoo/scrfd.py`
//! (`SCRFD.detect`, `forward`, `distance2bbox`, `distance2kps`, `nms`): the RGB image is
//! resized keeping its aspect ratio so that it fits 640x640 (OpenCV `INTER_LINEAR`, emulated
//! here in OpenCV's fixed point), padded bottom/right with black, normalised
//! `(x - 127.5) / 128`, run through [`crate::scrfd::Scrfd`], decoded anchor-free over strides
//! 8/16/32 with two anchors per cell (distances times the stride from the cell's top-left
//! corner), thresholded (score >= 0.5), suppressed (greedy NMS, IoU > 0.4, insightface's `+1`
//! pixel areas) and mapped back to the original pixels. [`pick_face`] chooses one face like
//! insightface's `max_num` logic (largest area minus twice the squared distance of the box
//! centre from the image centre). The library never prints; "no face" is
//! [`DetectError::NoFace`].

use std::path::Path;

use candle_core::{Device, Tensor};
use image::RgbImage;

use crate::error::ModelError;
use crate::scrfd::{LevelOutput, Scrfd};

/// Side of the square network input insightface uses for SCRFD.
pub const INPUT_SIZE: u32 = 640;

/// Errors of [`Detector::detect_face`]: either no face at all, or a model/input failure.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error("no face found in the {width}x{height} image (detector score threshold {threshold})")]
    NoFace { width: u32, height: u32, threshold: f32 },
    #[error(transparent)]
    Model(#[from] ModelError),
}

impl DetectError {
    pub fn is_no_face(&self) -> bool {
        matches!(self, DetectError::NoFace { .. })
    }
}

impl From<candle_core::Error> for DetectError {
    fn from(e: candle_core::Error) -> Self {
        DetectError::Model(ModelError::Candle(e))
    }
}

/// One detected face, in pixels of the image given to [`Detector::detect`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detection {
    pub score: f32,
    /// `[x1, y1, x2, y2]`.
    pub bbox: [f32; 4],
    /// Left eye, right eye, nose tip, left mouth corner, right mouth corner (`[x, y]`); the
    /// order [`facelens_data::align_face`]-style alignment expects.
    pub keypoints: [[f32; 2]; 5],
}

impl Detection {
    /// Box area, `(x2 - x1) * (y2 - y1)`.
    pub fn area(&self) -> f32 {
        (self.bbox[2] - self.bbox[0]) * (self.bbox[3] - self.bbox[1])
    }
}

/// Post-processing settings (insightface defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DetectorConfig {
    /// Square network input side (multiple of 32).
    pub input_size: u32,
    /// Minimum score of a kept anchor.
    pub score_threshold: f32,
    /// NMS drops boxes whose IoU with a better one exceeds this.
    pub nms_threshold: f32,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        Self { input_size: INPUT_SIZE, score_threshold: 0.5, nms_threshold: 0.4 }
    }
}

/// How an image was placed into the square network input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Letterbox {
    /// Side of the square input.
    pub size: u32,
    /// Size of the resized image in the top-left corner.
    pub new_width: u32,
    pub new_height: u32,
    /// `new_height / height`: network pixels per original pixel (insightface `det_scale`).
    pub scale: f32,
}

impl Letterbox {
    /// insightface `SCRFD.detect`: fit the longer side, truncate the other.
    pub fn new(width: u32, height: u32, size: u32) -> Self {
        let im_ratio = f64::from(height) / f64::from(width);
        let (new_width, new_height) = if im_ratio > 1.0 {
            ((f64::from(size) / im_ratio) as u32, size)
        } else {
            (size, (f64::from(size) * im_ratio) as u32)
        };
        let (new_width, new_height) = (new_width.clamp(1, size), new_height.clamp(1, size));
        Self { size, new_width, new_height, scale: (f64::from(new_height) / f64::from(height)) as f32 }
    }
}

/// Resizes interleaved RGB u8 like OpenCV's `cv2.resize(..., INTER_LINEAR)` (half-pixel
/// centres, 11-bit fixed-point coefficients, clamped borders, no anti-aliasing).
pub fn resize_linear(src: &[u8], sw: usize, sh: usize, dw: usize, dh: usize) -> Vec<u8> {
    const CN: usize = 3;
    const ONE: f32 = 2048.0;
    if (sw, sh) == (dw, dh) {
        return src.to_vec();
    }
    let coeff = |d: usize, scale: f64, n: usize, clamp_f: bool| -> (usize, usize, i32, i32) {
        let mut f = ((d as f64 + 0.5) * scale - 0.5) as f32;
        let mut s = f.floor() as i64;
        f -= s as f32;
        if clamp_f {
            if s < 0 {
                f = 0.0;
                s = 0;
            }
            if s >= n as i64 - 1 {
                f = 0.0;
                s = n as i64 - 1;
            }
        }
        let s0 = s.clamp(0, n as i64 - 1) as usize;
        let s1 = (s + 1).clamp(0, n as i64 - 1) as usize;
        (s0, s1, ((1.0 - f) * ONE).round_ties_even() as i32, (f * ONE).round_ties_even() as i32)
    };
    let scale_x = 1.0 / (dw as f64 / sw as f64);
    let scale_y = 1.0 / (dh as f64 / sh as f64);
    let xs: Vec<_> = (0..dw).map(|d| coeff(d, scale_x, sw, true)).collect();
    // Horizontal pass of every source row, as `int` (value * 2048).
    let hrow = |y: usize, buf: &mut Vec<i32>| {
        buf.clear();
        let row = &src[y * sw * CN..(y + 1) * sw * CN];
        for &(s0, s1, a0, a1) in &xs {
            for c in 0..CN {
                buf.push(i32::from(row[s0 * CN + c]) * a0 + i32::from(row[s1 * CN + c]) * a1);
            }
        }
    };
    let mut out = vec![0u8; dw * dh * CN];
    let (mut r0, mut r1) = (Vec::with_capacity(dw * CN), Vec::with_capacity(dw * CN));
    let mut cached = (usize::MAX, usize::MAX);
    for dy in 0..dh {
        let (s0, s1, b0, b1) = coeff(dy, scale_y, sh, false);
        if cached.0 != s0 {
            if cached.1 == s0 {
                std::mem::swap(&mut r0, &mut r1);
                cached = (s0, cached.0);
            } else {
                hrow(s0, &mut r0);
                cached.0 = s0;
            }
        }
        if cached.1 != s1 {
            hrow(s1, &mut r1);
            cached.1 = s1;
        }
        let dst = &mut out[dy * dw * CN..(dy + 1) * dw * CN];
        // OpenCV's SIMD `VResizeLinearVec_32s8u`: mul_hi of (S >> 4) and beta, then (+2) >> 2.
        for ((d, &a), &b) in dst.iter_mut().zip(&r0).zip(&r1) {
            let v = (((a >> 4) * b0) >> 16) + (((b >> 4) * b1) >> 16);
            *d = ((v + 2) >> 2).clamp(0, 255) as u8;
        }
    }
    out
}

/// Letterboxes interleaved RGB u8 into a `size` x `size` RGB u8 canvas (black padding).
pub fn letterbox(rgb: &[u8], width: u32, height: u32, size: u32) -> (Vec<u8>, Letterbox) {
    let lb = Letterbox::new(width, height, size);
    let (nw, nh, s) = (lb.new_width as usize, lb.new_height as usize, size as usize);
    let resized = resize_linear(rgb, width as usize, height as usize, nw, nh);
    let mut canvas = vec![0u8; s * s * 3];
    for y in 0..nh {
        canvas[y * s * 3..y * s * 3 + nw * 3].copy_from_slice(&resized[y * nw * 3..(y + 1) * nw * 3]);
    }
    (canvas, lb)
}

/// `(1, 3, S, S)` network input from a letterboxed RGB canvas: `(x - 127.5) / 128`.
pub fn input_tensor(canvas: &[u8], size: u32, device: &Device) -> candle_core::Result<Tensor> {
    let s = size as usize;
    let plane = s * s;
    let mut data = vec![0f32; 3 * plane];
    for (i, px) in canvas.chunks_exact(3).enumerate() {
        for c in 0..3 {
            data[c * plane + i] = (f32::from(px[c]) - 127.5) / 128.0;
        }
    }
    Tensor::from_vec(data, (1, 3, s, s), device)
}

/// Anchor-free decoding of the head outputs of image `batch_index`, in network pixels.
/// Candidates come out in insightface's order (stride, then anchor index), unsorted.
pub fn decode(
    levels: &[LevelOutput],
    batch_index: usize,
    input_w: usize,
    input_h: usize,
    threshold: f32,
) -> candle_core::Result<Vec<Detection>> {
    let mut out = Vec::new();
    for level in levels {
        let s = level.stride;
        let (w, h) = (input_w / s, input_h / s);
        let to_vec = |t: &Tensor| -> candle_core::Result<Vec<f32>> {
            t.get(batch_index)?.to_device(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>()
        };
        let scores = to_vec(&level.scores)?;
        let n = scores.len();
        if h * w == 0 || n % (h * w) != 0 {
            candle_core::bail!("stride {s}: {n} scores do not fit a {w}x{h} feature map");
        }
        let anchors = n / (h * w);
        let bbox = to_vec(&level.bbox)?;
        let kps = to_vec(&level.kps)?;
        let nk = kps.len() / n;
        if bbox.len() != 4 * n || nk < 10 {
            candle_core::bail!("stride {s}: head outputs have inconsistent sizes");
        }
        let sf = s as f32;
        for (k, &score) in scores.iter().enumerate() {
            if score < threshold {
                continue;
            }
            let cell = k / anchors;
            let (cx, cy) = (((cell % w) * s) as f32, ((cell / w) * s) as f32);
            let d = &bbox[4 * k..4 * k + 4];
            let p = &kps[nk * k..nk * k + 10];
            let mut keypoints = [[0f32; 2]; 5];
            for (j, kp) in keypoints.iter_mut().enumerate() {
                *kp = [cx + p[2 * j] * sf, cy + p[2 * j + 1] * sf];
            }
            out.push(Detection {
                score,
                bbox: [cx - d[0] * sf, cy - d[1] * sf, cx + d[2] * sf, cy + d[3] * sf],
                keypoints,
            });
        }
    }
    Ok(out)
}

/// Sorts by score (descending, stable) and applies insightface's greedy NMS
/// (areas `(x2 - x1 + 1) * (y2 - y1 + 1)`, drop IoU > `threshold`).
pub fn nms(mut dets: Vec<Detection>, threshold: f32) -> Vec<Detection> {
    dets.sort_by(|a, b| b.score.total_cmp(&a.score));
    let area = |d: &Detection| (d.bbox[2] - d.bbox[0] + 1.0) * (d.bbox[3] - d.bbox[1] + 1.0);
    let mut keep: Vec<Detection> = Vec::new();
    let mut suppressed = vec![false; dets.len()];
    for i in 0..dets.len() {
        if suppressed[i] {
            continue;
        }
        let a = dets[i];
        keep.push(a);
        for (j, b) in dets.iter().enumerate().skip(i + 1) {
            if suppressed[j] {
                continue;
            }
            let w = (a.bbox[2].min(b.bbox[2]) - a.bbox[0].max(b.bbox[0]) + 1.0).max(0.0);
            let h = (a.bbox[3].min(b.bbox[3]) - a.bbox[1].max(b.bbox[1]) + 1.0).max(0.0);
            let inter = w * h;
            if inter / (area(&a) + area(b) - inter) > threshold {
                suppressed[j] = true;
            }
        }
    }
    keep
}

/// The face insightface keeps with `max_num = 1`: the largest box area minus twice the squared
/// distance of the box centre from the image centre (`(width / 2, height / 2)`, integer
/// division). Ties go to the earlier (higher-scoring) detection.
pub fn pick_face(dets: &[Detection], width: u32, height: u32) -> Option<&Detection> {
    let (icx, icy) = ((width / 2) as f32, (height / 2) as f32);
    let value = |d: &Detection| {
        let ox = (d.bbox[0] + d.bbox[2]) / 2.0 - icx;
        let oy = (d.bbox[1] + d.bbox[3]) / 2.0 - icy;
        d.area() - (ox * ox + oy * oy) * 2.0
    };
    let mut best: Option<(&Detection, f32)> = None;
    for d in dets {
        let v = value(d);
        if best.is_none_or(|(_, bv)| v > bv) {
            best = Some((d, v));
        }
    }
    best.map(|(d, _)| d)
}

/// SCRFD with its insightface pre- and post-processing.
#[derive(Debug, Clone)]
pub struct Detector {
    pub model: Scrfd,
    pub config: DetectorConfig,
    pub device: Device,
}

impl Detector {
    pub fn new(model: Scrfd, device: &Device) -> Self {
        Self { model, config: DetectorConfig::default(), device: device.clone() }
    }

    /// Loads a checkpoint written by [`crate::scrfd::import_onnx`] (strictly checked).
    pub fn load(path: &Path, device: &Device) -> crate::error::Result<Self> {
        Ok(Self::new(Scrfd::load(path, device)?, device))
    }

    pub fn with_config(mut self, config: DetectorConfig) -> Self {
        self.config = config;
        self
    }

    /// All faces in an RGB image, best score first, in the image's pixels.
    pub fn detect(&self, img: &RgbImage) -> crate::error::Result<Vec<Detection>> {
        self.detect_rgb(img.as_raw(), img.width(), img.height())
    }

    /// As [`Detector::detect`] for interleaved RGB u8 bytes (`height * width * 3`).
    #[allow(clippy::manual_is_multiple_of)] // `is_multiple_of` needs Rust 1.87; the MSRV is 1.85.
    pub fn detect_rgb(&self, rgb: &[u8], width: u32, height: u32) -> crate::error::Result<Vec<Detection>> {
        let size = self.config.input_size;
        if width == 0 || height == 0 || rgb.len() != width as usize * height as usize * 3 {
            return Err(ModelError::BadInput {
                expected: vec![height as usize, width as usize, 3],
                got: vec![rgb.len()],
            });
        }
        if size == 0 || size % 32 != 0 {
            return Err(ModelError::BadInput { expected: vec![INPUT_SIZE as usize], got: vec![size as usize] });
        }
        let (canvas, lb) = letterbox(rgb, width, height, size);
        let xs = input_tensor(&canvas, size, &self.device)?;
        let levels = self.model.forward(&xs)?;
        let candidates = decode(&levels, 0, size as usize, size as usize, self.config.score_threshold)?;
        let mut dets = nms(candidates, self.config.nms_threshold);
        for d in &mut dets {
            for v in &mut d.bbox {
                *v /= lb.scale;
            }
            for kp in &mut d.keypoints {
                kp[0] /= lb.scale;
                kp[1] /= lb.scale;
            }
        }
        Ok(dets)
    }

    /// The one face [`pick_face`] chooses, or [`DetectError::NoFace`].
    pub fn detect_face(&self, img: &RgbImage) -> Result<Detection, DetectError> {
        let dets = self.detect(img)?;
        pick_face(&dets, img.width(), img.height()).copied().ok_or(DetectError::NoFace {
            width: img.width(),
            height: img.height(),
            threshold: self.config.score_threshold,
        })
    }
}
