//! A frozen-network engine: fast forward passes and input-only vector-Jacobian products.
//!
//! Saliency methods such as FGGB need hundreds of input-gradient maps per image. candle's
//! generic autograd computes every weight gradient too and runs the input gradient of a
//! convolution through a direct transposed-convolution loop; for a frozen backbone both
//! are waste. A [`Net`] is the backbone's inference graph with BatchNorm folded, and
//! [`Net::vjp`] pushes a batch of output seeds back to the input through that graph only.
//! It is checked against candle's autograd and finite differences in the tests.

mod iresnet;
mod kernels;
mod mbf;

pub use kernels::ConvGeom;

use rayon::prelude::*;

/// One operation of the inference graph. Buffers are numbered; buffer 0 is the input.
#[derive(Debug, Clone)]
pub enum Op {
    Conv { input: usize, geom: ConvGeom, weight: Vec<f32>, bias: Vec<f32> },
    /// `y = x` where `x > 0`, else `slope[c] * x`.
    PRelu { input: usize, slope: Vec<f32> },
    /// Per-channel `y = scale[c] * x + shift[c]` (BatchNorm in eval mode).
    Affine { input: usize, scale: Vec<f32>, shift: Vec<f32> },
    Add { a: usize, b: usize },
    /// Flatten `(C, H, W)` then `y = W x + b`, `W` of shape `[out][C*H*W]`.
    Dense { input: usize, weight: Vec<f32>, bias: Vec<f32>, out: usize },
}

/// Shape of a buffer for one image: channels and spatial size (`h = w = 1` for vectors).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufShape {
    pub c: usize,
    pub h: usize,
    pub w: usize,
}

impl BufShape {
    pub fn plane(&self) -> usize {
        self.h * self.w
    }
    pub fn numel(&self) -> usize {
        self.c * self.h * self.w
    }
}

/// Op `i` writes buffer `i + 1`.
///
/// Built from a loaded backbone with [`Net::from_backbone`].
#[derive(Debug, Clone)]
pub struct Net {
    pub input: BufShape,
    pub ops: Vec<Op>,
    pub shapes: Vec<BufShape>,
}

/// Forward activations of one image, kept for the reverse pass.
pub struct Tape {
    buffers: Vec<Vec<f32>>,
}

impl Tape {
    /// The network output (raw embedding).
    pub fn output(&self) -> &[f32] {
        self.buffers.last().map(|v| v.as_slice()).unwrap_or(&[])
    }
}

impl Net {
    pub fn new(input: BufShape) -> Self {
        Self { input, ops: Vec::new(), shapes: vec![input] }
    }

    /// Lowers any supported backbone.
    pub fn from_backbone(b: &crate::Backbone) -> candle_core::Result<Net> {
        match b {
            crate::Backbone::MobileFaceNet(m) => Net::from_mobilefacenet(m),
            crate::Backbone::IResNet(m) => Net::from_iresnet(m),
        }
    }

    pub fn last(&self) -> usize {
        self.shapes.len() - 1
    }

    pub fn output_dim(&self) -> usize {
        self.shapes[self.last()].numel()
    }

    /// Appends an op and returns the buffer it writes.
    pub fn push(&mut self, op: Op) -> usize {
        let shape = match &op {
            Op::Conv { geom, .. } => BufShape { c: geom.cout, h: geom.out_h(), w: geom.out_w() },
            Op::PRelu { input, .. } | Op::Affine { input, .. } => self.shapes[*input],
            Op::Add { a, .. } => self.shapes[*a],
            Op::Dense { out, .. } => BufShape { c: *out, h: 1, w: 1 },
        };
        self.ops.push(op);
        self.shapes.push(shape);
        self.last()
    }

    /// Embeddings of `b` images given as NCHW `[b][C][H][W]`; returns `[b][D]`.
    pub fn forward(&self, images: &[f32], b: usize) -> Vec<f32> {
        let buffers = self.run(nchw_to_cbp(images, self.input, b), b, false);
        let out = buffers.last().expect("net has an output");
        cbp_to_nchw(out, self.shapes[self.last()], b)
    }

    /// Forward pass of one CHW image, keeping every activation.
    pub fn tape(&self, image: &[f32]) -> Tape {
        Tape { buffers: self.run(image.to_vec(), 1, true) }
    }

    fn run(&self, x: Vec<f32>, b: usize, keep: bool) -> Vec<Vec<f32>> {
        // Last reader of each buffer, so activations nobody needs again are freed early.
        let mut last_use = vec![0usize; self.shapes.len()];
        for (i, op) in self.ops.iter().enumerate() {
            for r in op_inputs(op) {
                last_use[r] = i;
            }
        }
        let mut bufs: Vec<Vec<f32>> = Vec::with_capacity(self.shapes.len());
        bufs.push(x);
        for (i, op) in self.ops.iter().enumerate() {
            let y = match op {
                Op::Conv { input, geom, weight, bias } => kernels::conv_forward(geom, weight, bias, &bufs[*input], b),
                Op::PRelu { input, slope } => {
                    let plane = self.shapes[*input].plane() * b;
                    let mut y = bufs[*input].clone();
                    y.par_chunks_mut(plane).zip(slope.par_iter()).for_each(|(ch, &s)| {
                        ch.iter_mut().for_each(|v| {
                            if *v < 0.0 {
                                *v *= s
                            }
                        })
                    });
                    y
                }
                Op::Affine { input, scale, shift } => {
                    let plane = self.shapes[*input].plane() * b;
                    let mut y = bufs[*input].clone();
                    y.par_chunks_mut(plane)
                        .zip(scale.par_iter().zip(shift.par_iter()))
                        .for_each(|(ch, (&s, &t))| ch.iter_mut().for_each(|v| *v = *v * s + t));
                    y
                }
                Op::Add { a, b: bb } => bufs[*a].iter().zip(&bufs[*bb]).map(|(x, y)| x + y).collect(),
                Op::Dense { input, weight, bias, out } => {
                    let shape = self.shapes[*input];
                    let flat = cbp_to_nchw(&bufs[*input], shape, b); // [b][C*H*W]
                    let d = shape.numel();
                    let mut y = vec![0f32; out * b]; // [out][b]
                    kernels::matmul(*out, b, d, weight, d, 1, &flat, 1, d, &mut y, false);
                    for (o, row) in y.chunks_mut(b).enumerate() {
                        row.iter_mut().for_each(|v| *v += bias[o]);
                    }
                    y
                }
            };
            bufs.push(y);
            if !keep {
                for r in op_inputs(op) {
                    if last_use[r] == i {
                        bufs[r] = Vec::new();
                    }
                }
            }
        }
        bufs
    }

    /// Vector-Jacobian products: for `r` seed rows `[r][D]` at the output, returns the
    /// input gradients `[r][C][H][W]` of the taped image. Only input gradients are formed.
    pub fn vjp(&self, tape: &Tape, seeds: &[f32], r: usize) -> Vec<f32> {
        let n = self.shapes.len();
        let mut grads: Vec<Option<Vec<f32>>> = vec![None; n];
        // Output buffer is a vector: layout [D][r] (channel-major).
        let d = self.output_dim();
        let mut gout = vec![0f32; d * r];
        for row in 0..r {
            for k in 0..d {
                gout[k * r + row] = seeds[row * d + k];
            }
        }
        grads[n - 1] = Some(gout);
        for (i, op) in self.ops.iter().enumerate().rev() {
            let Some(gy) = grads[i + 1].take() else { continue };
            match op {
                Op::Conv { input, geom, weight, .. } => {
                    let gx = kernels::conv_backward_input(geom, weight, &gy, r);
                    accumulate(&mut grads[*input], gx);
                }
                Op::PRelu { input, slope } => {
                    let shape = self.shapes[*input];
                    let plane = shape.plane();
                    let x = &tape.buffers[*input];
                    let mut gx = gy;
                    gx.par_chunks_mut(plane * r).enumerate().for_each(|(c, ch)| {
                        let xs = &x[c * plane..(c + 1) * plane];
                        let s = slope[c];
                        for rows in ch.chunks_mut(plane) {
                            for (g, &xv) in rows.iter_mut().zip(xs) {
                                if xv < 0.0 {
                                    *g *= s;
                                }
                            }
                        }
                    });
                    accumulate(&mut grads[*input], gx);
                }
                Op::Affine { input, scale, .. } => {
                    let plane = self.shapes[*input].plane() * r;
                    let mut gx = gy;
                    gx.par_chunks_mut(plane).zip(scale.par_iter()).for_each(|(ch, &s)| ch.iter_mut().for_each(|v| *v *= s));
                    accumulate(&mut grads[*input], gx);
                }
                Op::Add { a, b } => {
                    accumulate(&mut grads[*b], gy.clone());
                    accumulate(&mut grads[*a], gy);
                }
                Op::Dense { input, weight, out, .. } => {
                    let shape = self.shapes[*input];
                    let dd = shape.numel();
                    // gx[r][dd] = gy^T[r][out] * W[out][dd]; gy is [out][r].
                    let mut flat = vec![0f32; r * dd];
                    kernels::matmul(r, dd, *out, &gy, 1, r, weight, dd, 1, &mut flat, false);
                    accumulate(&mut grads[*input], nchw_to_cbp(&flat, shape, r));
                }
            }
        }
        let g = grads[0].take().unwrap_or_else(|| vec![0f32; self.input.numel() * r]);
        cbp_to_nchw(&g, self.input, r)
    }
}

fn op_inputs(op: &Op) -> Vec<usize> {
    match op {
        Op::Conv { input, .. } | Op::PRelu { input, .. } | Op::Affine { input, .. } | Op::Dense { input, .. } => {
            vec![*input]
        }
        Op::Add { a, b } => vec![*a, *b],
    }
}

fn accumulate(slot: &mut Option<Vec<f32>>, g: Vec<f32>) {
    match slot {
        Some(acc) => acc.iter_mut().zip(&g).for_each(|(a, v)| *a += v),
        None => *slot = Some(g),
    }
}

/// `[b][C][P]` -> `[C][b][P]`.
pub fn nchw_to_cbp(x: &[f32], s: BufShape, b: usize) -> Vec<f32> {
    let p = s.plane();
    let mut out = vec![0f32; x.len()];
    for bi in 0..b {
        for c in 0..s.c {
            out[(c * b + bi) * p..(c * b + bi + 1) * p].copy_from_slice(&x[(bi * s.c + c) * p..(bi * s.c + c + 1) * p]);
        }
    }
    out
}

/// `[C][b][P]` -> `[b][C][P]`.
pub fn cbp_to_nchw(x: &[f32], s: BufShape, b: usize) -> Vec<f32> {
    let p = s.plane();
    let mut out = vec![0f32; x.len()];
    for bi in 0..b {
        for c in 0..s.c {
            out[(bi * s.c + c) * p..(bi * s.c + c + 1) * p].copy_from_slice(&x[(c * b + bi) * p..(c * b + bi + 1) * p]);
        }
    }
    out
}
