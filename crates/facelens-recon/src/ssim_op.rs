//! Mean SSIM (Wang et al., "Image Quality Assessment: From Error Visibility to Structural
//! Similarity", IEEE TIP 2004) of two image batches, and its gradient, as single CPU passes.
//!
//! Composed from candle ops, the SSIM loss is five separable Gaussian filterings and a dozen
//! elementwise passes forward, and about twice that through transposed convolutions backward;
//! in decoder training it cost as much as the rest of the step. Here each plane's five filtered
//! maps are computed once, the gradient is the adjoint filtering of three per-pixel terms, and
//! every plane runs in parallel. Other devices and dtypes use the candle composition
//! ([`crate::losses::ssim_tensor`]), which the tests compare against.

use candle_core::{CpuStorage, CustomOp2, Layout, Shape, Tensor};
use rayon::prelude::*;

use crate::conv3x3::{cpu_slice, dims4};
use crate::metrics::{gaussian_kernel, SSIM_K1, SSIM_K2, SSIM_SIGMA, SSIM_WINDOW};

/// Mean SSIM of `x` and `y`, `(N, C, H, W)` in `[-1, 1]` (compared as intensities in `[0, 1]`),
/// over every plane and every position of the valid 11 x 11 Gaussian window: the value of
/// [`crate::losses::ssim_tensor`], differentiable in both arguments.
pub fn ssim_mean(x: &Tensor, y: &Tensor) -> candle_core::Result<Tensor> {
    x.contiguous()?.apply_op2(&y.contiguous()?, SsimMean)
}

struct SsimMean;

/// Per-plane geometry: window taps, input and output sizes.
struct Geometry {
    k: Vec<f32>,
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
}

impl Geometry {
    fn new(h: usize, w: usize) -> Self {
        let size = SSIM_WINDOW.min(h).min(w);
        let k = gaussian_kernel(size, SSIM_SIGMA).iter().map(|v| *v as f32).collect();
        Self { k, h, w, oh: h + 1 - size, ow: w + 1 - size }
    }

    /// Valid separable Gaussian filtering of an `h x w` plane to `oh x ow`.
    fn blur(&self, src: &[f32]) -> Vec<f32> {
        let (k, w, ow) = (&self.k, self.w, self.ow);
        let mut rows = vec![0f32; self.h * ow];
        for (r, s) in rows.chunks_exact_mut(ow).zip(src.chunks_exact(w)) {
            for (j, o) in r.iter_mut().enumerate() {
                *o = k.iter().zip(&s[j..]).map(|(a, b)| a * b).sum();
            }
        }
        let mut out = vec![0f32; self.oh * ow];
        for (i, o) in out.chunks_exact_mut(ow).enumerate() {
            for (a, kv) in k.iter().enumerate() {
                for (o, r) in o.iter_mut().zip(&rows[(i + a) * ow..(i + a + 1) * ow]) {
                    *o += kv * r;
                }
            }
        }
        out
    }

    /// The adjoint of [`Geometry::blur`]: an `oh x ow` gradient spread back over `h x w`.
    fn blur_adjoint(&self, g: &[f32]) -> Vec<f32> {
        let (k, w, ow) = (&self.k, self.w, self.ow);
        let mut rows = vec![0f32; self.h * ow];
        for (i, gi) in g.chunks_exact(ow).enumerate() {
            for (a, kv) in k.iter().enumerate() {
                for (r, gv) in rows[(i + a) * ow..(i + a + 1) * ow].iter_mut().zip(gi) {
                    *r += kv * gv;
                }
            }
        }
        let mut out = vec![0f32; self.h * w];
        for (o, r) in out.chunks_exact_mut(w).zip(rows.chunks_exact(ow)) {
            for (j, rv) in r.iter().enumerate() {
                for (o, kv) in o[j..j + k.len()].iter_mut().zip(k) {
                    *o += kv * rv;
                }
            }
        }
        out
    }
}

/// One plane's filtered statistics at every window position, with `u = (x + 1) / 2`, `v = (y + 1) / 2`.
struct Stats {
    mx: Vec<f32>,
    my: Vec<f32>,
    sxx: Vec<f32>,
    syy: Vec<f32>,
    sxy: Vec<f32>,
}

fn intensities(x: &[f32]) -> Vec<f32> {
    x.iter().map(|v| 0.5 * v + 0.5).collect()
}

fn stats(g: &Geometry, u: &[f32], v: &[f32]) -> Stats {
    let prod = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(p, q)| p * q).collect::<Vec<f32>>();
    Stats { mx: g.blur(u), my: g.blur(v), sxx: g.blur(&prod(u, u)), syy: g.blur(&prod(v, v)), sxy: g.blur(&prod(u, v)) }
}

/// SSIM's four factors at one position: `s = a1 a2 / (b1 b2)`.
fn factors(s: &Stats, q: usize) -> (f64, f64, f64, f64, f64, f64) {
    let c1 = SSIM_K1 * SSIM_K1;
    let c2 = SSIM_K2 * SSIM_K2;
    let (mx, my) = (f64::from(s.mx[q]), f64::from(s.my[q]));
    let a1 = 2.0 * mx * my + c1;
    let a2 = 2.0 * (f64::from(s.sxy[q]) - mx * my) + c2;
    let b1 = mx * mx + my * my + c1;
    let b2 = (f64::from(s.sxx[q]) - mx * mx) + (f64::from(s.syy[q]) - my * my) + c2;
    (mx, my, a1, a2, b1, b2)
}

impl CustomOp2 for SsimMean {
    fn name(&self) -> &'static str {
        "facelens-ssim-mean"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = dims4(l1)?;
        if l2.shape() != l1.shape() {
            return Err(candle_core::Error::Msg(format!("ssim: shapes differ, {:?} and {:?}", l1.shape(), l2.shape())));
        }
        let (x, y) = (cpu_slice(s1, l1, "ssim input")?, cpu_slice(s2, l2, "ssim target")?);
        let g = Geometry::new(h, w);
        let hw = h * w;
        let total: f64 = (0..n * c)
            .into_par_iter()
            .map(|p| {
                let st = stats(&g, &intensities(&x[p * hw..(p + 1) * hw]), &intensities(&y[p * hw..(p + 1) * hw]));
                (0..g.oh * g.ow).map(|q| {
                    let (_, _, a1, a2, b1, b2) = factors(&st, q);
                    a1 * a2 / (b1 * b2)
                }).sum::<f64>()
            })
            .sum();
        let mean = total / (n * c * g.oh * g.ow) as f64;
        Ok((CpuStorage::F32(vec![mean as f32]), Shape::from(())))
    }

    fn bwd(&self, x: &Tensor, y: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let packed = x.apply_op2_no_bwd(y, &SsimGrad)?;
        let g = grad.reshape(())?;
        let dx = packed.get(0)?.broadcast_mul(&g)?;
        let dy = packed.get(1)?.broadcast_mul(&g)?;
        Ok((Some(dx), Some(dy)))
    }
}

/// `(x, y) -> [d mean / dx, d mean / dy]`, stacked on a new leading axis.
struct SsimGrad;

impl CustomOp2 for SsimGrad {
    fn name(&self) -> &'static str {
        "facelens-ssim-mean-grad"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = dims4(l1)?;
        let (x, y) = (cpu_slice(s1, l1, "ssim input")?, cpu_slice(s2, l2, "ssim target")?);
        let g = Geometry::new(h, w);
        let hw = h * w;
        let planes = n * c;
        // d mean / d u = (1 / M) [blur'(d_mx) + 2 u blur'(d_sxx) + v blur'(d_sxy)], and x = 2u - 1.
        let scale = 0.5 / (planes * g.oh * g.ow) as f64;
        let mut out = vec![0f32; 2 * planes * hw];
        let (gx, gy) = out.split_at_mut(planes * hw);
        gx.par_chunks_mut(hw).zip(gy.par_chunks_mut(hw)).enumerate().for_each(|(p, (gx, gy))| {
            let (u, v) = (intensities(&x[p * hw..(p + 1) * hw]), intensities(&y[p * hw..(p + 1) * hw]));
            let st = stats(&g, &u, &v);
            let m = g.oh * g.ow;
            let (mut d_mx, mut d_my, mut d_sxx, mut d_syy, mut d_sxy) = (vec![0f32; m], vec![0f32; m], vec![0f32; m], vec![0f32; m], vec![0f32; m]);
            for q in 0..m {
                let (mx, my, a1, a2, b1, b2) = factors(&st, q);
                let s = a1 * a2 / (b1 * b2);
                let shared = (a2 - a1) / (b1 * b2);
                let var_term = s * (1.0 / b1 - 1.0 / b2);
                d_mx[q] = ((2.0 * my * shared - 2.0 * mx * var_term) * scale) as f32;
                d_my[q] = ((2.0 * mx * shared - 2.0 * my * var_term) * scale) as f32;
                d_sxx[q] = (-s / b2 * scale) as f32;
                d_syy[q] = d_sxx[q];
                d_sxy[q] = (2.0 * a1 / (b1 * b2) * scale) as f32;
            }
            let (t_mx, t_my, t_sxx, t_syy, t_sxy) =
                (g.blur_adjoint(&d_mx), g.blur_adjoint(&d_my), g.blur_adjoint(&d_sxx), g.blur_adjoint(&d_syy), g.blur_adjoint(&d_sxy));
            for i in 0..hw {
                gx[i] = t_mx[i] + 2.0 * u[i] * t_sxx[i] + v[i] * t_sxy[i];
                gy[i] = t_my[i] + 2.0 * v[i] * t_syy[i] + u[i] * t_sxy[i];
            }
        });
        Ok((CpuStorage::F32(out), Shape::from((2, n, c, h, w))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn images(seed: u64, shape: (usize, usize, usize, usize)) -> Tensor {
        let mut rng = facelens_core::rng::Xoshiro256::new(seed);
        let n = shape.0 * shape.1 * shape.2 * shape.3;
        // Smooth-ish images in [-1, 1] with some texture, like decoder outputs and face crops.
        let v: Vec<f32> = (0..n).map(|i| (0.6 * ((i % 37) as f32 / 18.0 - 1.0) + 0.35 * (rng.uniform() as f32 * 2.0 - 1.0)).clamp(-1.0, 1.0)).collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    #[test]
    fn value_and_gradients_match_the_candle_composition() {
        for shape in [(2, 3, 24, 20), (1, 1, 11, 11), (1, 2, 8, 16)] {
            let (x, y) = (Var::from_tensor(&images(1, shape)).unwrap(), Var::from_tensor(&images(2, shape)).unwrap());
            let fast = ssim_mean(x.as_tensor(), y.as_tensor()).unwrap();
            let slow = crate::losses::ssim_tensor_composed(x.as_tensor(), y.as_tensor()).unwrap();
            let (f, s) = (fast.to_scalar::<f32>().unwrap(), slow.to_scalar::<f32>().unwrap());
            assert!((f - s).abs() < 1e-5, "{shape:?}: {f} vs {s}");
            let (gf, gs) = ((fast * 3.0).unwrap().backward().unwrap(), (slow * 3.0).unwrap().backward().unwrap());
            for v in [&x, &y] {
                let a: Vec<f32> = gf.get(v).unwrap().flatten_all().unwrap().to_vec1().unwrap();
                let b: Vec<f32> = gs.get(v).unwrap().flatten_all().unwrap().to_vec1().unwrap();
                let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
                let err = a.iter().zip(&b).fold(0f32, |m, (p, q)| m.max((p - q).abs()));
                assert!(scale > 0.0 && err <= 1e-4 * scale, "{shape:?}: max error {err} of {scale}");
            }
        }
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let shape = (1, 2, 14, 13);
        let (x, y) = (images(5, shape), images(6, shape));
        let var = Var::from_tensor(&x).unwrap();
        let grads = ssim_mean(var.as_tensor(), &y).unwrap().backward().unwrap();
        let g: Vec<f32> = grads.get(&var).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let base: Vec<f32> = x.flatten_all().unwrap().to_vec1().unwrap();
        let eps = 1e-2f32;
        for i in [0usize, 17, 90, 181, 200, 363] {
            let at = |d: f32| {
                let mut v = base.clone();
                v[i] += d;
                let t = Tensor::from_vec(v, shape, &Device::Cpu).unwrap();
                f64::from(ssim_mean(&t, &y).unwrap().to_scalar::<f32>().unwrap())
            };
            let fd = (at(eps) - at(-eps)) / (2.0 * f64::from(eps));
            assert!((fd - f64::from(g[i])).abs() < 2e-4 + 0.02 * fd.abs(), "pixel {i}: fd {fd} vs {}", g[i]);
        }
    }

    #[test]
    fn identical_images_score_one() {
        let x = images(9, (2, 3, 16, 16));
        assert!((ssim_mean(&x, &x).unwrap().to_scalar::<f32>().unwrap() - 1.0).abs() < 1e-6);
    }
}
