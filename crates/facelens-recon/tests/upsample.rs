//! Bilinear x2 upsampling against the sampling rule it implements, and its gradient against
//! the adjoint identity `<A x, y> = <x, A^T y>` (the gradient of `sum(A(x) * y)` is `A^T y`).

use candle_core::{Device, Tensor, Var};
use facelens_recon::decoder::upsample_bilinear2x;

/// PyTorch's `interpolate(scale_factor=2, mode="bilinear", align_corners=False)` along one axis:
/// the input index and weight pairs of output `o`.
fn taps(o: usize, n: usize) -> [(usize, f32); 2] {
    let src = ((o as f32 + 0.5) / 2.0 - 0.5).max(0.0);
    let i0 = src.floor() as usize;
    let i1 = (i0 + 1).min(n - 1);
    let l = src - i0 as f32;
    [(i0, 1.0 - l), (i1, l)]
}

fn values(n: usize, seed: u32) -> Vec<f32> {
    (0..n).map(|i| ((i as u32 * 2654435761 + seed) % 1000) as f32 / 500.0 - 1.0).collect()
}

#[test]
fn bilinear2x_matches_the_sampling_rule() {
    let (b, c, h, w) = (2, 3, 5, 7);
    let x = values(b * c * h * w, 11);
    let t = Tensor::from_vec(x.clone(), (b, c, h, w), &Device::Cpu).unwrap();
    let y: Vec<f32> = upsample_bilinear2x(&t).unwrap().flatten_all().unwrap().to_vec1().unwrap();
    let (oh, ow) = (2 * h, 2 * w);
    let mut worst = 0f32;
    for p in 0..b * c {
        for oy in 0..oh {
            for ox in 0..ow {
                let mut want = 0.0;
                for (iy, wy) in taps(oy, h) {
                    for (ix, wx) in taps(ox, w) {
                        want += wy * wx * x[p * h * w + iy * w + ix];
                    }
                }
                worst = worst.max((y[p * oh * ow + oy * ow + ox] - want).abs());
            }
        }
    }
    assert!(worst < 1e-6, "max difference {worst}");
}

#[test]
fn bilinear2x_gradient_is_its_adjoint() {
    let (b, c, h, w) = (1, 2, 4, 6);
    let dev = Device::Cpu;
    let x = Var::from_tensor(&Tensor::from_vec(values(b * c * h * w, 3), (b, c, h, w), &dev).unwrap()).unwrap();
    let y = Tensor::from_vec(values(b * c * 4 * h * w, 5), (b, c, 2 * h, 2 * w), &dev).unwrap();
    let ax = upsample_bilinear2x(x.as_tensor()).unwrap();
    let lhs = (&ax * &y).unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
    let grads = (&ax * &y).unwrap().sum_all().unwrap().backward().unwrap();
    let aty = grads.get(x.as_tensor()).unwrap();
    let rhs = (x.as_tensor() * aty).unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
    assert!((lhs - rhs).abs() < 1e-4 * lhs.abs().max(1.0), "{lhs} vs {rhs}");
    // A^T of a constant field: each input pixel receives weight 4 in total.
    let ones = Tensor::ones((b, c, 2 * h, 2 * w), candle_core::DType::F32, &dev).unwrap();
    let g = upsample_bilinear2x(x.as_tensor()).unwrap().mul(&ones).unwrap().sum_all().unwrap().backward().unwrap();
    let g: Vec<f32> = g.get(x.as_tensor()).unwrap().flatten_all().unwrap().to_vec1().unwrap();
    assert!(g.iter().all(|v| (v - 4.0).abs() < 1e-5), "{g:?}");
}
