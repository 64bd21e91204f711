//! The quadrant toy shared by the model-free tests: a verifier that looks only at the top-left
//! quadrant of a 3x16x16 image. Its embedding is `[bias, q_0 - fill, ..., q_63 - fill]` with `q_i`
//! the channel mean of quadrant pixel `i`, so a removed pixel contributes exactly 0 and the
//! evidence is known to lie in the quadrant.
#![allow(dead_code)]

use facelens_eval::deletion::ImageShape;
use facelens_eval::EvalError;

pub const C: usize = 3;
pub const H: usize = 16;
pub const W: usize = 16;
pub const Q: usize = 8;
pub const FILL: f32 = -1.0;

pub fn shape() -> ImageShape {
    ImageShape::new(C, H, W)
}

/// xorshift64*: a reproducible source of noise without a dependency.
pub struct Rng(pub u64);

impl Rng {
    pub fn uniform(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        ((self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40) as f32) / (1u64 << 24) as f32
    }

    pub fn normal(&mut self) -> f32 {
        let u = self.uniform().max(1e-7);
        let v = self.uniform();
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f32::consts::PI * v).cos()
    }
}

pub fn in_quadrant(px: usize) -> bool {
    px / W < Q && px % W < Q
}

/// The toy embedding of `n` images laid out back to back.
pub fn toy_model(bias: f32) -> impl FnMut(&[f32], usize) -> Result<Vec<f32>, EvalError> {
    move |images: &[f32], n: usize| {
        let len = C * H * W;
        assert_eq!(images.len(), n * len);
        let mut out = Vec::with_capacity(n * (1 + Q * Q));
        for img in images.chunks(len) {
            out.push(bias);
            for px in (0..H * W).filter(|&p| in_quadrant(p)) {
                let mean = (0..C).map(|c| img[c * H * W + px]).sum::<f32>() / C as f32;
                out.push(mean - FILL);
            }
        }
        Ok(out)
    }
}

/// An image whose quadrant carries `pattern` (offset from the fill value) and whose other pixels
/// are noise the model ignores.
pub fn image(pattern: &[f32], rng: &mut Rng) -> Vec<f32> {
    let mut img = vec![0f32; C * H * W];
    let mut k = 0;
    for px in 0..H * W {
        let v = if in_quadrant(px) {
            k += 1;
            FILL + pattern[k - 1]
        } else {
            rng.normal()
        };
        for c in 0..C {
            img[c * H * W + px] = v;
        }
    }
    img
}

