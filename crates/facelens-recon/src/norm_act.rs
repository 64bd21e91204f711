//! The decoder's elementwise layers on the CPU as single passes with closed-form backward
//! passes: BatchNorm in training mode (Ioffe & Szegedy, "Batch Normalization", ICML 2015),
//! PReLU (He et al., "Delving Deep into Rectifiers", ICCV 2015) and nearest-neighbour x2
//! upsampling.
//!
//! Composed from candle ops these are a dozen full passes over a `(B, C, 112, 112)` activation
//! forward and twice that backward (transposes, broadcasts and their reductions, a grouped
//! convolution for the upsampling's gradient), most of a training step's time outside the
//! convolutions. Here the forward is one pass after the statistics and the backward one pass
//! after its sums. Other devices and dtypes use the candle composition, which the tests
//! compare against.

use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Shape, Tensor};
use rayon::prelude::*;

use crate::conv3x3::{cpu_slice, dims4};

/// Whether the single-pass CPU versions apply to `x`.
pub fn fast(x: &Tensor) -> bool {
    x.device().is_cpu() && x.dtype() == candle_core::DType::F32
}

/// Per-channel mean and biased variance of `x: (B, C, H, W)`, summed in f64.
fn channel_stats(x: &[f32], (b, c, hw): (usize, usize, usize)) -> Vec<(f64, f64)> {
    (0..c)
        .into_par_iter()
        .map(|ch| {
            let n = (b * hw) as f64;
            let planes = || (0..b).map(move |bi| &x[(bi * c + ch) * hw..(bi * c + ch + 1) * hw]);
            let mean = planes().map(|p| p.iter().map(|v| *v as f64).sum::<f64>()).sum::<f64>() / n;
            let var = planes().map(|p| p.iter().map(|v| (*v as f64 - mean).powi(2)).sum::<f64>()).sum::<f64>() / n;
            (mean, var)
        })
        .collect()
}

/// BatchNorm with batch statistics: `(x - mean) / sqrt(var + eps) * gamma + beta` per channel
/// of `x: (B, C, H, W)`; also returns the batch mean and biased variance per channel (for the
/// running statistics).
pub fn batch_norm_train(x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f64) -> candle_core::Result<(Tensor, Vec<f64>, Vec<f64>)> {
    let stats = Arc::new(Mutex::new(Vec::new()));
    let op = BatchNormTrain { eps, stats: stats.clone() };
    let y = x.contiguous()?.apply_op3(&gamma.contiguous()?, &beta.contiguous()?, op)?;
    let stats = std::mem::take(&mut *stats.lock().map_err(|_| candle_core::Error::Msg("batch-norm statistics lock poisoned".into()))?);
    Ok((y, stats.iter().map(|s| s.0).collect(), stats.iter().map(|s| s.1).collect()))
}

/// The forward op; it leaves the statistics it used in `stats`.
struct BatchNormTrain {
    eps: f64,
    stats: Arc<Mutex<Vec<(f64, f64)>>>,
}

impl CustomOp3 for BatchNormTrain {
    fn name(&self) -> &'static str {
        "facelens-batch-norm-train"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout, s3: &CpuStorage, l3: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (b, c, h, w) = dims4(l1)?;
        let hw = h * w;
        let x = cpu_slice(s1, l1, "batch-norm input")?;
        let (gamma, beta) = (cpu_slice(s2, l2, "batch-norm weight")?, cpu_slice(s3, l3, "batch-norm bias")?);
        let stats = channel_stats(x, (b, c, hw));
        if let Ok(mut kept) = self.stats.lock() {
            kept.clone_from(&stats);
        }
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(hw).enumerate().for_each(|(plane, out)| {
            let ch = plane % c;
            let (mean, var) = stats[ch];
            let scale = gamma[ch] / (var + self.eps).sqrt() as f32;
            let (mean, shift) = (mean as f32, beta[ch]);
            for (o, v) in out.iter_mut().zip(&x[plane * hw..(plane + 1) * hw]) {
                *o = (v - mean) * scale + shift;
            }
        });
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, gamma: &Tensor, _beta: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (b, c, h, w) = x.dims4()?;
        let n = b * c * h * w;
        let packed = x.apply_op3_no_bwd(&grad.contiguous()?, &gamma.contiguous()?, &BatchNormGrad { eps: self.eps })?;
        let dx = packed.narrow(0, 0, n)?.reshape((b, c, h, w))?;
        let dgamma = packed.narrow(0, n, c)?;
        let dbeta = packed.narrow(0, n + c, c)?;
        Ok((Some(dx), Some(dgamma), Some(dbeta)))
    }
}

/// `(x, dy, gamma) -> [dx, dgamma, dbeta]` packed in one vector: with `xh` the normalised
/// input, `dbeta = sum dy`, `dgamma = sum dy * xh`,
/// `dx = gamma / (sigma * N) * (N * dy - dbeta - xh * dgamma)` per channel.
struct BatchNormGrad {
    eps: f64,
}

impl CustomOp3 for BatchNormGrad {
    fn name(&self) -> &'static str {
        "facelens-batch-norm-grad"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout, s3: &CpuStorage, l3: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (b, c, h, w) = dims4(l1)?;
        let hw = h * w;
        let x = cpu_slice(s1, l1, "batch-norm input")?;
        let dy = cpu_slice(s2, l2, "batch-norm output gradient")?;
        let gamma = cpu_slice(s3, l3, "batch-norm weight")?;
        let stats = channel_stats(x, (b, c, hw));
        let count = (b * hw) as f64;
        // Per channel: (1 / sigma, dgamma, dbeta).
        let sums: Vec<(f64, f64, f64)> = (0..c)
            .into_par_iter()
            .map(|ch| {
                let (mean, var) = stats[ch];
                let inv = 1.0 / (var + self.eps).sqrt();
                let (mut dg, mut db) = (0f64, 0f64);
                for bi in 0..b {
                    let at = (bi * c + ch) * hw;
                    for (v, g) in x[at..at + hw].iter().zip(&dy[at..at + hw]) {
                        db += *g as f64;
                        dg += *g as f64 * (*v as f64 - mean) * inv;
                    }
                }
                (inv, dg, db)
            })
            .collect();
        let n = x.len();
        let mut out = vec![0f32; n + 2 * c];
        out[..n].par_chunks_mut(hw).enumerate().for_each(|(plane, dst)| {
            let ch = plane % c;
            let (mean, inv, dg, db) = (stats[ch].0, sums[ch].0, sums[ch].1, sums[ch].2);
            let k = gamma[ch] as f64 * inv / count;
            let at = plane * hw;
            for ((o, v), g) in dst.iter_mut().zip(&x[at..at + hw]).zip(&dy[at..at + hw]) {
                let xh = (*v as f64 - mean) * inv;
                *o = (k * (count * *g as f64 - db - xh * dg)) as f32;
            }
        });
        for (ch, s) in sums.iter().enumerate() {
            out[n + ch] = s.1 as f32;
            out[n + c + ch] = s.2 as f32;
        }
        Ok((CpuStorage::F32(out), Shape::from(n + 2 * c)))
    }
}

/// PReLU with one slope per channel of `x: (B, C, H, W)`: `x` where `x >= 0`, else `a[c] * x`.
pub fn prelu(x: &Tensor, slope: &Tensor) -> candle_core::Result<Tensor> {
    x.contiguous()?.apply_op2(&slope.flatten_all()?.contiguous()?, PRelu)
}

struct PRelu;

impl CustomOp2 for PRelu {
    fn name(&self) -> &'static str {
        "facelens-prelu"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (_, c, h, w) = dims4(l1)?;
        let hw = h * w;
        let x = cpu_slice(s1, l1, "prelu input")?;
        let a = cpu_slice(s2, l2, "prelu slope")?;
        let mut y = x.to_vec();
        y.par_chunks_mut(hw).enumerate().for_each(|(plane, ys)| {
            let s = a[plane % c];
            ys.iter_mut().for_each(|v| *v = if *v >= 0.0 { *v } else { *v * s });
        });
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, slope: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let (b, c, h, w) = x.dims4()?;
        let n = b * c * h * w;
        let packed = x.apply_op3_no_bwd(&grad.contiguous()?, &slope.contiguous()?, &PReluGrad)?;
        let dx = packed.narrow(0, 0, n)?.reshape((b, c, h, w))?;
        let da = packed.narrow(0, n, c)?.reshape(slope.shape())?;
        Ok((Some(dx), Some(da)))
    }
}

/// `(x, dy, a) -> [dx, da]`: `dx = dy` where `x >= 0`, else `a * dy`; `da = sum_{x < 0} dy * x`.
struct PReluGrad;

impl CustomOp3 for PReluGrad {
    fn name(&self) -> &'static str {
        "facelens-prelu-grad"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout, s3: &CpuStorage, l3: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (b, c, h, w) = dims4(l1)?;
        let hw = h * w;
        let x = cpu_slice(s1, l1, "prelu input")?;
        let dy = cpu_slice(s2, l2, "prelu output gradient")?;
        let a = cpu_slice(s3, l3, "prelu slope")?;
        let n = x.len();
        let mut out = vec![0f32; n + c];
        let partial: Vec<f64> = out[..n]
            .par_chunks_mut(hw)
            .enumerate()
            .map(|(plane, dst)| {
                let s = a[plane % c];
                let at = plane * hw;
                let mut da = 0f64;
                for ((o, v), g) in dst.iter_mut().zip(&x[at..at + hw]).zip(&dy[at..at + hw]) {
                    if *v >= 0.0 {
                        *o = *g;
                    } else {
                        *o = *g * s;
                        da += *g as f64 * *v as f64;
                    }
                }
                da
            })
            .collect();
        for (plane, da) in partial.iter().enumerate().take(b * c) {
            out[n + plane % c] += *da as f32;
        }
        Ok((CpuStorage::F32(out), Shape::from(n + c)))
    }
}

/// Nearest-neighbour x2 upsampling of `x: (B, C, H, W)`; its gradient sums each 2x2 block.
pub fn upsample_nearest2x(x: &Tensor) -> candle_core::Result<Tensor> {
    x.contiguous()?.apply_op1(Nearest2x)
}

struct Nearest2x;

impl CustomOp1 for Nearest2x {
    fn name(&self) -> &'static str {
        "facelens-nearest-2x"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (b, c, h, w) = dims4(l)?;
        let x = cpu_slice(s, l, "upsampling input")?;
        let mut y = vec![0f32; b * c * 4 * h * w];
        y.par_chunks_mut(4 * h * w).enumerate().for_each(|(plane, out)| {
            let src = &x[plane * h * w..(plane + 1) * h * w];
            for (i, row) in src.chunks_exact(w).enumerate() {
                let (top, bottom) = out[4 * i * w..4 * (i + 1) * w].split_at_mut(2 * w);
                for (j, v) in row.iter().enumerate() {
                    top[2 * j] = *v;
                    top[2 * j + 1] = *v;
                }
                bottom.copy_from_slice(top);
            }
        });
        Ok((CpuStorage::F32(y), Shape::from((b, c, 2 * h, 2 * w))))
    }

    fn bwd(&self, _x: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(&Nearest2xGrad)?))
    }
}

/// `dy: (B, C, 2H, 2W) -> dx: (B, C, H, W)`, each value the sum of its 2x2 block.
struct Nearest2xGrad;

impl CustomOp1 for Nearest2xGrad {
    fn name(&self) -> &'static str {
        "facelens-nearest-2x-grad"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (b, c, h2, w2) = dims4(l)?;
        let (h, w) = (h2 / 2, w2 / 2);
        let dy = cpu_slice(s, l, "upsampling output gradient")?;
        let mut dx = vec![0f32; b * c * h * w];
        dx.par_chunks_mut(h * w).enumerate().for_each(|(plane, out)| {
            let src = &dy[plane * h2 * w2..(plane + 1) * h2 * w2];
            for (i, row) in out.chunks_exact_mut(w).enumerate() {
                let (top, bottom) = (&src[2 * i * w2..(2 * i + 1) * w2], &src[(2 * i + 1) * w2..(2 * i + 2) * w2]);
                for (j, o) in row.iter_mut().enumerate() {
                    *o = (top[2 * j] + top[2 * j + 1]) + (bottom[2 * j] + bottom[2 * j + 1]);
                }
            }
        });
        Ok((CpuStorage::F32(dx), Shape::from((b, c, h, w))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn max_rel(a: &Tensor, b: &Tensor) -> f32 {
        let scale = b.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap().max(1e-6);
        (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap() / scale
    }

    /// candle's composition of the same layers (the reference, and the path off the CPU).
    fn reference(x: &Tensor, gamma: &Tensor, beta: &Tensor, slope: &Tensor) -> Tensor {
        let c = x.dim(1).unwrap();
        let mean = x.mean_keepdim(0).unwrap().mean_keepdim(2).unwrap().mean_keepdim(3).unwrap();
        let xc = x.broadcast_sub(&mean).unwrap();
        let var = xc.sqr().unwrap().mean_keepdim(0).unwrap().mean_keepdim(2).unwrap().mean_keepdim(3).unwrap();
        let xh = xc.broadcast_div(&(var + 1e-5).unwrap().sqrt().unwrap()).unwrap();
        let y = xh.broadcast_mul(&gamma.reshape((1, c, 1, 1)).unwrap()).unwrap().broadcast_add(&beta.reshape((1, c, 1, 1)).unwrap()).unwrap();
        let zeros = y.zeros_like().unwrap();
        let act = (y.maximum(&zeros).unwrap() + y.minimum(&zeros).unwrap().broadcast_mul(&slope.reshape((1, c, 1, 1)).unwrap()).unwrap()).unwrap();
        act.upsample_nearest2d(2 * x.dim(2).unwrap(), 2 * x.dim(3).unwrap()).unwrap()
    }

    #[test]
    fn norm_act_up_match_candle_forward_and_backward() {
        let dev = Device::Cpu;
        for &(b, c, h, w) in &[(4usize, 3usize, 5usize, 7usize), (2, 16, 14, 14), (1, 2, 1, 1)] {
            let x = Var::from_tensor(&(Tensor::randn(0.5f32, 2.0, (b, c, h, w), &dev).unwrap())).unwrap();
            let gamma = Var::from_tensor(&Tensor::randn(1f32, 0.3, c, &dev).unwrap()).unwrap();
            let beta = Var::from_tensor(&Tensor::randn(0f32, 0.3, c, &dev).unwrap()).unwrap();
            let slope = Var::from_tensor(&Tensor::randn(0.2f32, 0.2, c, &dev).unwrap()).unwrap();
            let r = Tensor::randn(0f32, 1.0, (b, c, 2 * h, 2 * w), &dev).unwrap();
            let (y, mean, var) = batch_norm_train(x.as_tensor(), gamma.as_tensor(), beta.as_tensor(), 1e-5).unwrap();
            let ours = upsample_nearest2x(&prelu(&y, slope.as_tensor()).unwrap()).unwrap();
            let theirs = reference(x.as_tensor(), gamma.as_tensor(), beta.as_tensor(), slope.as_tensor());
            assert!(max_rel(&ours, &theirs) < 1e-5, "forward");
            let xs: Vec<f32> = x.as_tensor().transpose(0, 1).unwrap().flatten_from(1).unwrap().mean(1).unwrap().to_vec1().unwrap();
            for (m, e) in mean.iter().zip(&xs) {
                assert!((*m as f32 - e).abs() < 1e-5, "batch mean");
            }
            assert!(var.iter().all(|v| *v >= 0.0));
            let g1 = (ours * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let g2 = (theirs * &r).unwrap().sum_all().unwrap().backward().unwrap();
            for (name, v) in [("x", &x), ("gamma", &gamma), ("beta", &beta), ("slope", &slope)] {
                let err = max_rel(g1.get(v.as_tensor()).unwrap(), g2.get(v.as_tensor()).unwrap());
                assert!(err < 1e-4, "{name} gradient differs by {err} of its largest value at {:?}", (b, c, h, w));
            }
        }
    }

    #[test]
    fn batch_norm_gradient_matches_finite_differences() {
        // In f64 arithmetic on the loss sum(r * bn(x)^2), which couples every input of a channel.
        let dev = Device::Cpu;
        let (b, c, h, w) = (3, 2, 2, 3);
        let x0: Vec<f32> = (0..b * c * h * w).map(|i| ((i * 37 % 17) as f32 - 8.0) / 5.0).collect();
        let r = Tensor::from_vec((0..b * c * h * w).map(|i| ((i * 13 % 7) as f32 - 3.0) / 3.0).collect::<Vec<_>>(), (b, c, h, w), &dev).unwrap();
        let gamma = Tensor::new(&[1.3f32, 0.7], &dev).unwrap();
        let beta = Tensor::new(&[0.1f32, -0.2], &dev).unwrap();
        let loss = |x: &[f32]| -> f64 {
            let t = Tensor::from_vec(x.to_vec(), (b, c, h, w), &dev).unwrap();
            let (y, _, _) = batch_norm_train(&t, &gamma, &beta, 1e-5).unwrap();
            let y: Vec<f32> = (y.sqr().unwrap() * &r).unwrap().flatten_all().unwrap().to_vec1().unwrap();
            y.iter().map(|v| *v as f64).sum()
        };
        let xv = Var::from_tensor(&Tensor::from_vec(x0.clone(), (b, c, h, w), &dev).unwrap()).unwrap();
        let (y, _, _) = batch_norm_train(xv.as_tensor(), &gamma, &beta, 1e-5).unwrap();
        let g: Vec<f32> = (y.sqr().unwrap() * &r).unwrap().sum_all().unwrap().backward().unwrap().get(xv.as_tensor()).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let eps = 1e-2f32;
        for i in 0..x0.len() {
            let (mut p, mut m) = (x0.clone(), x0.clone());
            p[i] += eps;
            m[i] -= eps;
            let fd = (loss(&p) - loss(&m)) / (2.0 * eps as f64);
            assert!((fd - g[i] as f64).abs() < 2e-2 * fd.abs().max(1.0), "dx[{i}]: fd {fd} vs {}", g[i]);
        }
    }
}
