//! A 3x3, stride-1, padding-1 convolution with a GEMM backward pass on the CPU.
//!
//! candle's CPU backward of `conv2d` computes the input gradient with a direct
//! `conv_transpose2d` loop and the weight gradient as a convolution whose kernel is the whole
//! image; for the decoder's wide, shallow layers (16 channels at 112x112) that is ~1 GFLOP/s.
//! Here every pass is one GEMM per image over an im2col matrix (Caffe's formulation):
//!
//! * forward: `y_b [O, HW] = W [O, 9C] * cols_b [9C, HW]`
//! * weight gradient: `dW = sum_b dy_b [O, HW] * cols_b^T`
//! * input gradient: `dcols_b = W^T * dy_b`, scattered back by col2im.
//!
//! On other devices, or for other dtypes, [`conv3x3`] falls back to candle's `conv2d`, so the
//! decoder is the same network everywhere (parity is tested against it).

use candle_core::{CpuStorage, CustomOp2, Layout, Shape, Tensor};
use facelens_models::im2col::{col2im, im2col, matmul, Window};
use rayon::prelude::*;

/// `conv2d(x, w, padding = 1)` for `x: (B, C, H, W)`, `w: (O, C, 3, 3)`, with a fast CPU backward.
pub fn conv3x3(x: &Tensor, w: &Tensor) -> candle_core::Result<Tensor> {
    let fast = x.device().is_cpu() && x.dtype() == candle_core::DType::F32;
    if !fast {
        return x.conv2d(w, 1, 1, 1, 1);
    }
    let (_, c, _, _) = x.dims4()?;
    let (_, wc, kh, kw) = w.dims4()?;
    if wc != c || kh != 3 || kw != 3 {
        return Err(candle_core::Error::Msg(format!(
            "conv3x3: input has {c} channels, kernel is {:?}",
            w.dims()
        )));
    }
    x.contiguous()?.apply_op2(&w.contiguous()?, Conv3x3)
}

/// The 3x3, stride-1, padding-1 window over `c` planes of `h x w`.
fn window(c: usize, h: usize, w: usize) -> Window {
    Window { channels: c, h, w, k: 3, stride: 1, pad: 1 }
}

pub(crate) fn cpu_slice<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> candle_core::Result<&'a [f32]> {
    let data = s.as_slice::<f32>()?;
    match l.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => Err(candle_core::Error::Msg(format!("conv3x3: {what} is not contiguous"))),
    }
}

pub(crate) fn dims4(l: &Layout) -> candle_core::Result<(usize, usize, usize, usize)> {
    l.shape().dims4()
}

/// The forward op; its backward uses [`InputGrad`] and [`WeightGrad`].
struct Conv3x3;

impl CustomOp2 for Conv3x3 {
    fn name(&self) -> &'static str {
        "facelens-conv3x3"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (b, c, h, w) = dims4(l1)?;
        let o = l2.shape().dims()[0];
        let x = cpu_slice(s1, l1, "input")?;
        let k = cpu_slice(s2, l2, "kernel")?;
        let hw = h * w;
        let mut y = vec![0f32; b * o * hw];
        y.par_chunks_mut(o * hw).enumerate().for_each(|(bi, yb)| {
            let mut cols = vec![0f32; 9 * c * hw];
            im2col(&window(c, h, w), &x[bi * c * hw..(bi + 1) * c * hw], 1, &mut cols);
            matmul(o, hw, 9 * c, k, 9 * c, 1, &cols, hw, 1, yb, false);
        });
        Ok((CpuStorage::F32(y), Shape::from((b, o, h, w))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let dx = grad.apply_op2_no_bwd(w, &InputGrad)?;
        let dw = x.apply_op2_no_bwd(&grad, &WeightGrad { o: w.dim(0)? })?;
        Ok((Some(dx), Some(dw)))
    }
}

/// `(dy: (B, O, H, W), w: (O, C, 3, 3)) -> dx: (B, C, H, W)`.
struct InputGrad;

impl CustomOp2 for InputGrad {
    fn name(&self) -> &'static str {
        "facelens-conv3x3-input-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (b, o, h, w) = dims4(l1)?;
        let c = l2.shape().dims()[1];
        let dy = cpu_slice(s1, l1, "output gradient")?;
        let k = cpu_slice(s2, l2, "kernel")?;
        let hw = h * w;
        let mut dx = vec![0f32; b * c * hw];
        dx.par_chunks_mut(c * hw).enumerate().for_each(|(bi, dxb)| {
            let mut cols = vec![0f32; 9 * c * hw];
            // W^T [9C, O] * dy_b [O, HW]
            matmul(9 * c, hw, o, k, 1, 9 * c, &dy[bi * o * hw..(bi + 1) * o * hw], hw, 1, &mut cols, false);
            col2im(&window(c, h, w), &cols, 1, dxb);
        });
        Ok((CpuStorage::F32(dx), Shape::from((b, c, h, w))))
    }
}

/// `(x: (B, C, H, W), dy: (B, O, H, W)) -> dw: (O, C, 3, 3)`.
struct WeightGrad {
    o: usize,
}

impl CustomOp2 for WeightGrad {
    fn name(&self) -> &'static str {
        "facelens-conv3x3-weight-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (b, c, h, w) = dims4(l1)?;
        let o = self.o;
        let x = cpu_slice(s1, l1, "input")?;
        let dy = cpu_slice(s2, l2, "output gradient")?;
        let hw = h * w;
        // One partial sum per image, reduced afterwards: images run in parallel.
        let partial: Vec<Vec<f32>> = (0..b)
            .into_par_iter()
            .map(|bi| {
                let mut cols = vec![0f32; 9 * c * hw];
                im2col(&window(c, h, w), &x[bi * c * hw..(bi + 1) * c * hw], 1, &mut cols);
                let mut dw = vec![0f32; o * 9 * c];
                // dy_b [O, HW] * cols^T [HW, 9C]
                matmul(o, 9 * c, hw, &dy[bi * o * hw..(bi + 1) * o * hw], hw, 1, &cols, 1, hw, &mut dw, false);
                dw
            })
            .collect();
        let mut dw = vec![0f32; o * 9 * c];
        for p in &partial {
            for (a, v) in dw.iter_mut().zip(p) {
                *a += *v;
            }
        }
        Ok((CpuStorage::F32(dw), Shape::from((o, c, 3, 3))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap()
    }

    #[test]
    fn matches_candle_conv2d_forward_and_backward() -> candle_core::Result<()> {
        let dev = Device::Cpu;
        for &(b, c, o, h, w) in &[(2usize, 3usize, 5usize, 7usize, 9usize), (3, 16, 4, 14, 14), (1, 1, 1, 2, 2)] {
            let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (b, c, h, w), &dev)?)?;
            let k = Var::from_tensor(&Tensor::randn(0f32, 0.3, (o, c, 3, 3), &dev)?)?;
            // A non-uniform upstream gradient: weight the outputs by a fixed random tensor.
            let r = Tensor::randn(0f32, 1.0, (b, o, h, w), &dev)?;
            let ours = conv3x3(x.as_tensor(), k.as_tensor())?;
            let reference = x.as_tensor().conv2d(k.as_tensor(), 1, 1, 1, 1)?;
            assert!(max_abs_diff(&ours, &reference) < 1e-4);
            let g1 = (ours * &r)?.sum_all()?.backward()?;
            let g2 = (reference * &r)?.sum_all()?.backward()?;
            for v in [x.as_tensor(), k.as_tensor()] {
                let (a, bb) = (g1.get(v).unwrap(), g2.get(v).unwrap());
                let scale = bb.abs()?.max_all()?.to_scalar::<f32>()?.max(1.0);
                assert!(max_abs_diff(a, bb) / scale < 1e-5, "gradient mismatch for {:?}", v.dims());
            }
        }
        Ok(())
    }

    #[test]
    fn gradient_matches_finite_differences() -> candle_core::Result<()> {
        let dev = Device::Cpu;
        let x0: Vec<f64> = (0..2 * 2 * 4 * 5).map(|i| ((i * 37 % 17) as f64 - 8.0) / 7.0).collect();
        let k0: Vec<f64> = (0..3 * 2 * 9).map(|i| ((i * 11 % 13) as f64 - 6.0) / 9.0).collect();
        let loss = |x: &[f64], k: &[f64]| -> candle_core::Result<f32> {
            let x = Tensor::from_vec(x.iter().map(|v| *v as f32).collect::<Vec<_>>(), (2, 2, 4, 5), &dev)?;
            let k = Tensor::from_vec(k.iter().map(|v| *v as f32).collect::<Vec<_>>(), (3, 2, 3, 3), &dev)?;
            conv3x3(&x, &k)?.sqr()?.sum_all()?.to_scalar::<f32>()
        };
        let xv = Var::from_tensor(&Tensor::from_vec(x0.iter().map(|v| *v as f32).collect::<Vec<_>>(), (2, 2, 4, 5), &dev)?)?;
        let kv = Var::from_tensor(&Tensor::from_vec(k0.iter().map(|v| *v as f32).collect::<Vec<_>>(), (3, 2, 3, 3), &dev)?)?;
        let grads = conv3x3(xv.as_tensor(), kv.as_tensor())?.sqr()?.sum_all()?.backward()?;
        let gx: Vec<f32> = grads.get(xv.as_tensor()).unwrap().flatten_all()?.to_vec1()?;
        let gk: Vec<f32> = grads.get(kv.as_tensor()).unwrap().flatten_all()?.to_vec1()?;
        let eps = 1e-2;
        for i in (0..x0.len()).step_by(7) {
            let (mut p, mut m) = (x0.clone(), x0.clone());
            p[i] += eps;
            m[i] -= eps;
            let fd = (loss(&p, &k0)? - loss(&m, &k0)?) as f64 / (2.0 * eps);
            assert!((fd - gx[i] as f64).abs() < 2e-2 * fd.abs().max(1.0), "dx[{i}]: fd {fd} vs {}", gx[i]);
        }
        for i in (0..k0.len()).step_by(5) {
            let (mut p, mut m) = (k0.clone(), k0.clone());
            p[i] += eps;
            m[i] -= eps;
            let fd = (loss(&x0, &p)? - loss(&x0, &m)?) as f64 / (2.0 * eps);
            assert!((fd - gk[i] as f64).abs() < 2e-2 * fd.abs().max(1.0), "dw[{i}]: fd {fd} vs {}", gk[i]);
        }
        Ok(())
    }
}
