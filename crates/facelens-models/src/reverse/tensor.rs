//! The frozen-network engine as ordinary candle tensor ops, for any [`Device`].
//!
//! [`TensorNet`] holds the lowered graph of a [`Net`] as device tensors and writes the reverse
//! pass as forward ops that cuDNN/cuBLAS accelerate on a GPU, instead of candle's generic
//! autograd (which also forms every frozen weight's gradient and runs a direct
//! transposed-convolution kernel for the input gradient):
//!
//! * a convolution's input gradient is a stride-1 convolution of the output gradient with the
//!   spatially flipped, channel-transposed kernel (per group), after zero-interleaving the
//!   gradient by the stride and padding it by `k - 1 - pad` (plus the rows and columns the forward
//!   stride dropped);
//! * PReLU multiplies by a gain saved from the forward pass (1 where `x >= 0`, the slope
//!   elsewhere); BatchNorm is folded or an affine scale; a residual sum passes the gradient to both
//!   inputs; the dense head is a matrix product;
//! * Jacobian rows are the batch dimension.
//!
//! On the CPU it agrees with the hand-written engine of [`Net::vjp`] to float rounding (tests).

use candle_core::{DType, Device, Result, Tensor, D};

use super::{BufShape, Net, Op, PassCounter};

/// One op with its weights on the device. Op `i` writes buffer `i + 1`, as in [`Net`].
enum TensorOp {
    Conv {
        input: usize,
        /// `[cout, cin / groups, k, k]`.
        weight: Tensor,
        /// `[1, cout, 1, 1]`.
        bias: Tensor,
        /// The input-gradient kernel: `[cin, cout / groups, k, k]`, flipped and transposed per group.
        back: Tensor,
        stride: usize,
        pad: usize,
        k: usize,
        groups: usize,
        /// Input rows and columns.
        h: usize,
        w: usize,
    },
    PRelu { input: usize, slope: Tensor },
    Affine { input: usize, scale: Tensor, shift: Tensor },
    Add { a: usize, b: usize },
    /// `weight`: `[out, C*H*W]`; `bias`: `[out]`.
    Dense { input: usize, weight: Tensor, bias: Tensor },
}

/// The lowered network on a device.
pub struct TensorNet {
    pub input: BufShape,
    shapes: Vec<BufShape>,
    ops: Vec<TensorOp>,
    pub device: Device,
    /// Images forward and seed rows backward, as [`Net::passes`].
    pub passes: PassCounter,
}

/// What a reverse pass needs from one image's forward pass: the PReLU gains (`[1, C, H, W]`,
/// indexed by op) and the raw embedding.
pub struct TensorTape {
    gains: Vec<Option<Tensor>>,
    output: Vec<f32>,
}

impl TensorTape {
    pub fn output(&self) -> &[f32] {
        &self.output
    }
}

/// `[c]` values as a `[1, c, 1, 1]` tensor for per-channel broadcasting.
fn per_channel(v: &[f32], device: &Device) -> Result<Tensor> {
    Tensor::from_slice(v, (1, v.len(), 1, 1), device)
}

impl TensorNet {
    /// Copies a lowered network's weights to `device`.
    pub fn new(net: &Net, device: &Device) -> Result<Self> {
        let mut ops = Vec::with_capacity(net.ops.len());
        for op in &net.ops {
            ops.push(match op {
                Op::Conv { input, geom: g, weight, bias } => {
                    if g.pad >= g.k {
                        candle_core::bail!("convolution with padding {} >= kernel {} is not supported", g.pad, g.k);
                    }
                    let (cin_g, cout_g) = (g.cin / g.groups, g.cout / g.groups);
                    let kk = g.k * g.k;
                    let mut back = vec![0f32; g.cin * cout_g * kk];
                    for grp in 0..g.groups {
                        for o in 0..cout_g {
                            for i in 0..cin_g {
                                let src = &weight[((grp * cout_g + o) * cin_g + i) * kk..][..kk];
                                let dst = &mut back[((grp * cin_g + i) * cout_g + o) * kk..][..kk];
                                for (t, v) in src.iter().enumerate() {
                                    dst[kk - 1 - t] = *v;
                                }
                            }
                        }
                    }
                    TensorOp::Conv {
                        input: *input,
                        weight: Tensor::from_slice(weight, (g.cout, cin_g, g.k, g.k), device)?,
                        bias: per_channel(bias, device)?,
                        back: Tensor::from_vec(back, (g.cin, cout_g, g.k, g.k), device)?,
                        stride: g.stride,
                        pad: g.pad,
                        k: g.k,
                        groups: g.groups,
                        h: g.h,
                        w: g.w,
                    }
                }
                Op::PRelu { input, slope } => TensorOp::PRelu { input: *input, slope: per_channel(slope, device)? },
                Op::Affine { input, scale, shift } => TensorOp::Affine {
                    input: *input,
                    scale: per_channel(scale, device)?,
                    shift: per_channel(shift, device)?,
                },
                Op::Add { a, b } => TensorOp::Add { a: *a, b: *b },
                Op::Dense { input, weight, bias, out } => TensorOp::Dense {
                    input: *input,
                    weight: Tensor::from_slice(weight, (*out, weight.len() / out), device)?,
                    bias: Tensor::from_slice(bias, *out, device)?,
                },
            });
        }
        Ok(Self { input: net.input, shapes: net.shapes.clone(), ops, device: device.clone(), passes: PassCounter::default() })
    }

    pub fn output_dim(&self) -> usize {
        self.shapes.last().map_or(0, |s| s.numel())
    }

    /// Raw embeddings `[n, D]` of images `[n, C, H, W]` on the device.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.passes.add(x.dim(0)?, 0);
        self.run(x, None)
    }

    /// The forward pass of one image `[1, C, H, W]`, keeping what its reverse passes need.
    pub fn tape(&self, image: &Tensor) -> Result<TensorTape> {
        self.passes.add(1, 0);
        let mut gains = vec![None; self.ops.len()];
        let out = self.run(image, Some(&mut gains))?;
        Ok(TensorTape { gains, output: out.flatten_all()?.to_device(&Device::Cpu)?.to_vec1()? })
    }

    /// The forward pass; with `gains`, each PReLU's gain is kept there (indexed by op).
    fn run(&self, x: &Tensor, mut gains: Option<&mut Vec<Option<Tensor>>>) -> Result<Tensor> {
        // Last reader of each buffer, so activations nobody needs again are dropped early.
        let mut last_use = vec![0usize; self.shapes.len()];
        for (i, op) in self.ops.iter().enumerate() {
            for r in inputs(op) {
                last_use[r] = i;
            }
        }
        let mut bufs: Vec<Option<Tensor>> = vec![None; self.shapes.len()];
        bufs[0] = Some(x.clone());
        let get = |bufs: &[Option<Tensor>], i: usize| {
            bufs[i].clone().ok_or_else(|| candle_core::Error::Msg(format!("buffer {i} was released too early")))
        };
        for (i, op) in self.ops.iter().enumerate() {
            let y = match op {
                TensorOp::Conv { input, weight, bias, stride, pad, groups, .. } => {
                    get(&bufs, *input)?.conv2d(weight, *pad, *stride, 1, *groups)?.broadcast_add(bias)?
                }
                TensorOp::PRelu { input, slope } => {
                    let x = get(&bufs, *input)?;
                    // gain = 1 where x >= 0, else the channel's slope (exactly); y = gain * x.
                    let gain = x.ge(0f64)?.where_cond(&x.ones_like()?, &slope.broadcast_as(x.shape())?)?;
                    let y = (&x * &gain)?;
                    if let Some(g) = gains.as_deref_mut() {
                        g[i] = Some(gain);
                    }
                    y
                }
                TensorOp::Affine { input, scale, shift } => get(&bufs, *input)?.broadcast_mul(scale)?.broadcast_add(shift)?,
                TensorOp::Add { a, b } => (get(&bufs, *a)? + get(&bufs, *b)?)?,
                TensorOp::Dense { input, weight, bias } => {
                    get(&bufs, *input)?.flatten_from(1)?.matmul(&weight.t()?)?.broadcast_add(bias)?
                }
            };
            for r in inputs(op) {
                if last_use[r] == i {
                    bufs[r] = None;
                }
            }
            bufs[i + 1] = Some(y);
        }
        get(&bufs, self.shapes.len() - 1)
    }

    /// A tape whose PReLU gains follow the signs of the hand-written engine's forward pass
    /// (`tape` of `net`, the network this one was made from) instead of this engine's own. The
    /// two forwards round differently, and an activation within rounding of 0 can take the other
    /// PReLU branch; with the same signs, the reverse passes must agree to rounding.
    pub fn tape_with_signs_of(&self, net: &Net, tape: &super::Tape) -> Result<TensorTape> {
        let mut gains = vec![None; self.ops.len()];
        for (i, op) in net.ops.iter().enumerate() {
            if let Op::PRelu { input, slope } = op {
                let s = net.shapes[*input];
                let x = &tape.buffers[*input];
                let gain: Vec<f32> = x.iter().enumerate().map(|(j, v)| if *v < 0.0 { slope[j / s.plane()] } else { 1.0 }).collect();
                gains[i] = Some(Tensor::from_vec(gain, (1, s.c, s.h, s.w), &self.device)?);
            }
        }
        Ok(TensorTape { gains, output: tape.output().to_vec() })
    }

    /// How many PReLU inputs of this engine's tape take the other branch than in `tape` of `net`
    /// (activations within rounding of 0), out of how many.
    pub fn sign_flips(&self, own: &TensorTape, net: &Net, tape: &super::Tape) -> Result<(usize, usize)> {
        let reference = self.tape_with_signs_of(net, tape)?;
        let (mut flips, mut total) = (0, 0);
        for (a, b) in own.gains.iter().zip(&reference.gains) {
            if let (Some(a), Some(b)) = (a, b) {
                flips += a.ne(b)?.to_dtype(DType::F32)?.sum_all()?.to_scalar::<f32>()? as usize;
                total += a.elem_count();
            }
        }
        Ok((flips, total))
    }

    /// Input gradients `[r, C, H, W]` of the taped image for output seeds `[r, D]`.
    pub fn vjp(&self, tape: &TensorTape, seeds: &Tensor) -> Result<Tensor> {
        let r = seeds.dim(0)?;
        self.passes.add(0, r);
        let mut grads: Vec<Option<Tensor>> = vec![None; self.shapes.len()];
        grads[self.shapes.len() - 1] = Some(seeds.clone());
        for (i, op) in self.ops.iter().enumerate().rev() {
            let Some(gy) = grads[i + 1].take() else { continue };
            let (input, gx) = match op {
                TensorOp::Conv { input, back, stride, pad, k, groups, h, w, .. } => {
                    let g = dilate(&gy, *stride)?;
                    let lo = k - 1 - pad;
                    // Rows and columns the forward stride never reached get zero gradient.
                    let (extra_h, extra_w) = ((h + 2 * pad - k) % stride, (w + 2 * pad - k) % stride);
                    let g = g.pad_with_zeros(2, lo, lo + extra_h)?.pad_with_zeros(3, lo, lo + extra_w)?;
                    (*input, g.conv2d(back, 0, 1, 1, *groups)?)
                }
                TensorOp::PRelu { input, .. } => {
                    let gain = tape.gains[i].as_ref().ok_or_else(|| candle_core::Error::Msg("tape lacks a PReLU gain".into()))?;
                    (*input, gy.broadcast_mul(gain)?)
                }
                TensorOp::Affine { input, scale, .. } => (*input, gy.broadcast_mul(scale)?),
                TensorOp::Add { a, b } => {
                    accumulate(&mut grads[*b], gy.clone())?;
                    (*a, gy)
                }
                TensorOp::Dense { input, weight, .. } => {
                    let s = self.shapes[*input];
                    (*input, gy.matmul(weight)?.reshape((r, s.c, s.h, s.w))?)
                }
            };
            accumulate(&mut grads[input], gx)?;
        }
        match grads[0].take() {
            Some(g) => Ok(g),
            None => Tensor::zeros((r, self.input.c, self.input.h, self.input.w), DType::F32, &self.device),
        }
    }
}

fn inputs(op: &TensorOp) -> Vec<usize> {
    match op {
        TensorOp::Conv { input, .. }
        | TensorOp::PRelu { input, .. }
        | TensorOp::Affine { input, .. }
        | TensorOp::Dense { input, .. } => vec![*input],
        TensorOp::Add { a, b } => vec![*a, *b],
    }
}

fn accumulate(slot: &mut Option<Tensor>, g: Tensor) -> Result<()> {
    *slot = Some(match slot.take() {
        Some(acc) => (acc + g)?,
        None => g,
    });
    Ok(())
}

/// `[n, c, h, w]` with `s - 1` zeros between neighbouring values along both spatial axes:
/// `[n, c, (h - 1) s + 1, (w - 1) s + 1]`.
fn dilate(x: &Tensor, s: usize) -> Result<Tensor> {
    if s == 1 {
        return Ok(x.clone());
    }
    let (n, c, h, w) = x.dims4()?;
    let zeros = Tensor::zeros((n, c, h, w, s - 1), x.dtype(), x.device())?;
    let x = Tensor::cat(&[&x.unsqueeze(D::Minus1)?, &zeros], 4)?.reshape((n, c, h, w * s))?.narrow(3, 0, (w - 1) * s + 1)?;
    let w2 = (w - 1) * s + 1;
    let zeros = Tensor::zeros((n, c, h, s - 1, w2), x.dtype(), x.device())?;
    Tensor::cat(&[&x.unsqueeze(3)?, &zeros], 3)?.reshape((n, c, h * s, w2))?.narrow(2, 0, (h - 1) * s + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reverse::ConvGeom;

    /// A small net with every op kind: a strided conv with a dropped row, a grouped and a
    /// depthwise conv, PReLU, affine, a residual add and the dense head.
    fn toy() -> Net {
        let mut rng = facelens_core::rng::SplitMix64::new(7);
        let mut v = |n: usize| (0..n).map(|_| rng.uniform() - 0.5).collect::<Vec<f32>>();
        let mut net = Net::new(BufShape { c: 3, h: 11, w: 10 });
        let g1 = ConvGeom { cin: 3, cout: 4, k: 3, stride: 2, pad: 1, groups: 1, h: 11, w: 10 };
        let x1 = net.push(Op::Conv { input: 0, geom: g1, weight: v(4 * 3 * 9), bias: v(4) });
        let x2 = net.push(Op::PRelu { input: x1, slope: v(4) });
        let (h, w) = (g1.out_h(), g1.out_w());
        let g2 = ConvGeom { cin: 4, cout: 4, k: 3, stride: 1, pad: 1, groups: 4, h, w };
        let x3 = net.push(Op::Conv { input: x2, geom: g2, weight: v(4 * 9), bias: v(4) });
        let x4 = net.push(Op::Add { a: x3, b: x2 });
        let g3 = ConvGeom { cin: 4, cout: 6, k: 3, stride: 2, pad: 0, groups: 2, h, w };
        let x5 = net.push(Op::Conv { input: x4, geom: g3, weight: v(6 * 2 * 9), bias: v(6) });
        let x6 = net.push(Op::Affine { input: x5, scale: v(6), shift: v(6) });
        let d = net.shapes[x6].numel();
        net.push(Op::Dense { input: x6, weight: v(5 * d), bias: v(5), out: 5 });
        net
    }

    #[test]
    fn equals_the_cpu_engine_forward_and_backward() {
        let net = toy();
        let tn = TensorNet::new(&net, &Device::Cpu).expect("tensor net");
        let n = net.input.numel();
        let images: Vec<f32> = (0..2 * n).map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0).collect();
        let want = net.forward(&images, 2);
        let x = Tensor::from_slice(&images, (2, 3, 11, 10), &Device::Cpu).unwrap();
        let got: Vec<f32> = tn.forward(&x).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let close = |a: &[f32], b: &[f32], what: &str| {
            assert_eq!(a.len(), b.len(), "{what}");
            let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
            let worst = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
            assert!(worst <= 1e-5 * scale, "{what}: max difference {worst} of {scale}");
        };
        close(&got, &want, "forward");

        let image = &images[..n];
        let tape = net.tape(image);
        let ttape = tn.tape(&Tensor::from_slice(image, (1, 3, 11, 10), &Device::Cpu).unwrap()).unwrap();
        close(ttape.output(), tape.output(), "taped output");
        let rows = 3;
        let seeds: Vec<f32> = (0..rows * 5).map(|i| (i as f32 * 0.7).sin()).collect();
        let want = net.vjp(&tape, &seeds, rows);
        let s = Tensor::from_slice(&seeds, (rows, 5), &Device::Cpu).unwrap();
        let got: Vec<f32> = tn.vjp(&ttape, &s).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        close(&got, &want, "input gradients");
        assert_eq!(tn.passes.get(), (3, rows as u64));
    }

    #[test]
    fn dilation_interleaves_zeros() {
        let x = Tensor::arange(1f32, 5., &Device::Cpu).unwrap().reshape((1, 1, 2, 2)).unwrap();
        let d: Vec<f32> = dilate(&x, 2).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(d, [1., 0., 2., 0., 0., 0., 3., 0., 4.]);
    }
}
