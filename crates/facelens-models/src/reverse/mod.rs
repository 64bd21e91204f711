//! A frozen-network engine: fast forward passes and input-only vector-Jacobian products.
//!
//! Saliency methods such as FGGB need hundreds of input-gradient maps per image. candle's
//! generic autograd computes every weight gradient too and runs the input gradient of a
//! convolution through a direct transposed-convolution loop; for a frozen backbone both
//! are waste. A [`Net`] is the backbone's inference graph with BatchNorm folded, and
//! [`Net::vjp`] pushes a batch of output seeds back to the input through that graph only.
//! It is checked against candle's autograd and finite differences in the tests.
//!
//! The perturbation baselines and every Deletion/Insertion/ROAD curve are streams of forward
//! passes; [`Net::forward`] runs them with the elementwise ops fused into each convolution's
//! epilogue, register-blocked kernels (`pointwise`, `direct`) and micro-batches side by side,
//! and equals the op-by-op forward a [`Tape`] keeps bit for bit (`tests/forward.rs`).

mod direct;
mod epilogue;
mod forward;
mod iresnet;
mod kernels;
mod mbf;
mod pointwise;
mod randomise;
mod sface;
mod tensor;

pub use forward::{StepTime, FORWARD_MICRO_BATCH};
pub use kernels::{dense_kernel, ConvGeom, Workspace};
pub use randomise::LayerGroup;
pub use tensor::{TensorNet, TensorTape};


use rayon::prelude::*;

use crate::iresnet::FrozenBatchNorm;

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

/// Flattened f32 values of a weight tensor.
pub(crate) fn tensor_values(t: &candle_core::Tensor) -> candle_core::Result<Vec<f32>> {
    t.flatten_all()?.to_dtype(candle_core::DType::F32)?.to_vec1()
}

impl Net {
    /// Appends a candle convolution reading buffer `x`.
    pub(crate) fn push_conv(&mut self, c: &crate::mobilefacenet::ConvLayer, x: usize) -> candle_core::Result<usize> {
        let shape = self.shapes[x];
        let geom = ConvGeom {
            cin: c.in_channels,
            cout: c.out_channels,
            k: c.kernel,
            stride: c.stride,
            pad: c.padding,
            groups: c.groups,
            h: shape.h,
            w: shape.w,
        };
        let bias = match c.conv.bias() {
            Some(b) => tensor_values(b)?,
            None => vec![0.0; c.out_channels],
        };
        Ok(self.push(Op::Conv { input: x, geom, weight: tensor_values(c.conv.weight())?, bias }))
    }
}

impl Net {
    /// Appends an eval-mode BatchNorm (per-channel scale and shift) reading buffer `x`.
    pub(crate) fn push_bn(&mut self, bn: &FrozenBatchNorm, x: usize) -> candle_core::Result<usize> {
        Ok(self.push(Op::Affine { input: x, scale: tensor_values(&bn.scale)?, shift: tensor_values(&bn.shift)? }))
    }

    /// Appends a `Linear` layer and the eval-mode BatchNorm1d after it, folded into one dense
    /// op reading buffer `x`.
    pub(crate) fn push_linear_bn(
        &mut self,
        linear: &candle_nn::Linear,
        bn: &FrozenBatchNorm,
        x: usize,
    ) -> candle_core::Result<usize> {
        let (scale, shift) = (tensor_values(&bn.scale)?, tensor_values(&bn.shift)?);
        let out = scale.len();
        let w = tensor_values(linear.weight())?;
        let b = match linear.bias() {
            Some(b) => tensor_values(b)?,
            None => vec![0.0; out],
        };
        let d = w.len() / out;
        let weight = (0..out * d).map(|i| w[i] * scale[i / d]).collect();
        let bias = (0..out).map(|o| b[o] * scale[o] + shift[o]).collect();
        Ok(self.push(Op::Dense { input: x, weight, bias, out }))
    }
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
    /// Images forward and seed rows backward so far: what explanations cost in passes,
    /// independent of the machine they ran on.
    pub passes: PassCounter,
    /// Buffers of finished batch tapes, for the next ones (see [`TapePool`]).
    pub pool: TapePool,
}

/// Workspaces that batch tapes ([`Net::tape_batch`]) return their buffers to when dropped, one
/// per tape alive at once. A training loop tapes the same shapes every step; without reuse,
/// every buffer is a fresh allocation the kernel zero-fills (a tenth of a decoder training
/// step). Clones of a net share the pool.
#[derive(Default, Clone)]
pub struct TapePool(std::sync::Arc<std::sync::Mutex<Vec<Workspace>>>);

impl std::fmt::Debug for TapePool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TapePool")
    }
}

impl TapePool {
    fn lease(&self) -> Workspace {
        self.0.lock().map(|mut p| p.pop()).ok().flatten().unwrap_or_default()
    }

    fn give_back(&self, ws: Workspace) {
        if let Ok(mut p) = self.0.lock() {
            p.push(ws);
        }
    }
}

/// Counts of the work done through a [`Net`] (forward images, backward seed rows).
#[derive(Debug, Default)]
pub struct PassCounter {
    forward_images: std::sync::atomic::AtomicU64,
    backward_rows: std::sync::atomic::AtomicU64,
}

impl PassCounter {
    /// `(forward images, backward rows)` since the net was built.
    pub fn get(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.forward_images.load(Relaxed), self.backward_rows.load(Relaxed))
    }

    pub fn add(&self, forward_images: usize, backward_rows: usize) {
        use std::sync::atomic::Ordering::Relaxed;
        self.forward_images.fetch_add(forward_images as u64, Relaxed);
        self.backward_rows.fetch_add(backward_rows as u64, Relaxed);
    }
}

impl Clone for PassCounter {
    fn clone(&self) -> Self {
        let c = PassCounter::default();
        let (f, b) = self.get();
        c.add(f as usize, b as usize);
        c
    }
}

/// Forward activations kept for the reverse pass, plus the buffers its reverse passes
/// recycle: of one image ([`Net::tape`], every buffer) or of a micro-batch
/// ([`Net::tape_batch`], what gradients need, batch-innermost).
pub struct Tape {
    buffers: Vec<Vec<f32>>,
    images: usize,
    workspace: std::sync::Mutex<Workspace>,
    /// Where the buffers go when the tape is dropped.
    pool: Option<TapePool>,
}

impl Drop for Tape {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            let mut ws = std::mem::take(self.workspace.get_mut().unwrap_or_else(|e| e.into_inner()));
            for b in self.buffers.drain(..) {
                ws.give(b);
            }
            pool.give_back(ws);
        }
    }
}

impl Tape {
    fn new(buffers: Vec<Vec<f32>>, images: usize) -> Self {
        Self { buffers, images, workspace: Default::default(), pool: None }
    }

    /// Images on the tape.
    pub fn images(&self) -> usize {
        self.images
    }

    /// The network output (raw embedding) of a one-image tape; `[D][b]` for a batch
    /// (see [`Tape::outputs`]).
    pub fn output(&self) -> &[f32] {
        self.buffers.last().map(|v| v.as_slice()).unwrap_or(&[])
    }

    /// The raw embeddings, `[b][D]`.
    pub fn outputs(&self) -> Vec<f32> {
        let out = self.output();
        let d = out.len() / self.images.max(1);
        batch_outermost(out, BufShape { c: d, h: 1, w: 1 }, self.images)
    }
}

impl Net {
    pub fn new(input: BufShape) -> Self {
        Self { input, ops: Vec::new(), shapes: vec![input], passes: PassCounter::default(), pool: TapePool::default() }
    }

    /// Lowers any supported backbone.
    pub fn from_backbone(b: &crate::Backbone) -> candle_core::Result<Net> {
        match b {
            crate::Backbone::MobileFaceNet(m) => Net::from_mobilefacenet(m),
            crate::Backbone::IResNet(m) => Net::from_iresnet(m),
            crate::Backbone::SFace(m) => Net::from_sface(m),
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

    /// Vector-Jacobian products: for `r` seed rows `[r][D]` at the output, returns the
    /// input gradients `[r][C][H][W]` of the taped image. Only input gradients are formed.
    /// On a tape of `b > 1` images, row `i` is image `i`'s seed and `r` must be `b`.
    pub fn vjp(&self, tape: &Tape, seeds: &[f32], r: usize) -> Vec<f32> {
        self.vjp_to(tape, seeds, r, 0)
    }

    /// Like [`Net::vjp`], but stops at buffer `target` and returns the gradient there,
    /// `[r][C][H][W]` (Grad-CAM needs the gradient at the last feature map, not the input).
    /// Every op that reads `target` comes after the op that writes it, so the reverse
    /// sweep can end there with the gradient complete. It is the partial derivative with
    /// the other buffers held fixed: a residual skip around `target` is not part of it.
    pub fn vjp_to(&self, tape: &Tape, seeds: &[f32], r: usize, target: usize) -> Vec<f32> {
        self.reverse(tape, seeds, r, target, &[])
    }

    /// The input gradient of a loss that depends on the output *and* on intermediate
    /// activations of each taped image: `seeds` is `dL/d(output)` (`[b][D]`) and each
    /// `(buffer, g)` of `inner` adds `dL/d(buffer) = g` (in the tape's layout, that of
    /// [`Net::activation`]) where the reverse sweep passes that buffer. Returns
    /// `[b][C][H][W]`. Feature-matching (perceptual) losses on a frozen backbone need exactly
    /// this. Panics when a `g` does not have its buffer's size.
    pub fn vjp_with_inner(&self, tape: &Tape, seeds: &[f32], inner: &[(usize, &[f32])]) -> Vec<f32> {
        for (b, g) in inner {
            assert_eq!(g.len(), self.shapes[*b].numel() * tape.images, "vjp_with_inner: seed for buffer {b} has the wrong size");
        }
        self.reverse(tape, seeds, tape.images, 0, inner)
    }

    fn reverse(&self, tape: &Tape, seeds: &[f32], r: usize, target: usize, inner: &[(usize, &[f32])]) -> Vec<f32> {
        assert!(tape.images == 1 || tape.images == r, "a tape of {} images takes one seed row per image, not {r}", tape.images);
        self.passes.add(0, r);
        let mut guard = tape.workspace.lock().unwrap_or_else(|e| e.into_inner());
        let ws = &mut *guard;
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
        // A gradient's `[C][P][r]` layout is the tape's: `[C][P]` (r = 1) or `[C][P][b]`. A buffer's
        // gradient is complete once every op reading it has run, and those all come later in
        // the graph: seeding it before the sweep and accumulating into it is exact.
        for (b, g) in inner {
            let mut acc = ws.take(g.len());
            acc.copy_from_slice(g);
            accumulate(&mut grads[*b], acc, ws);
        }
        for (i, op) in self.ops.iter().enumerate().skip(target).rev() {
            let Some(gy) = grads[i + 1].take() else { continue };
            match op {
                Op::Conv { input, geom, weight, .. } => {
                    let gx = kernels::conv_backward_input(geom, weight, &gy, r, ws);
                    ws.give(gy);
                    accumulate(&mut grads[*input], gx, ws);
                }
                Op::PRelu { input, slope } => {
                    let plane = self.shapes[*input].plane();
                    let x = &tape.buffers[*input];
                    let mut gx = gy;
                    // One image taped: one sign per (c, p), shared by the r rows; a batch
                    // taped: one sign per value, the layouts of `x` and `gx` being the same.
                    let per_row = if tape.images == 1 { r } else { 1 };
                    let taped = plane * tape.images;
                    gx.par_chunks_mut(plane * r).enumerate().for_each(|(c, ch)| {
                        let xs = &x[c * taped..(c + 1) * taped];
                        let s = slope[c];
                        if per_row == 1 {
                            // A select, not a branch: vectorised.
                            simd(|| ch.iter_mut().zip(xs).for_each(|(g, &xv)| *g *= if xv < 0.0 { s } else { 1.0 }));
                            return;
                        }
                        for (rows, &xv) in ch.chunks_mut(per_row).zip(xs) {
                            if xv < 0.0 {
                                rows.iter_mut().for_each(|g| *g *= s);
                            }
                        }
                    });
                    accumulate(&mut grads[*input], gx, ws);
                }
                Op::Affine { input, scale, .. } => {
                    let plane = self.shapes[*input].plane() * r;
                    let mut gx = gy;
                    gx.par_chunks_mut(plane).zip(scale.par_iter()).for_each(|(ch, &s)| ch.iter_mut().for_each(|v| *v *= s));
                    accumulate(&mut grads[*input], gx, ws);
                }
                Op::Add { a, b } => {
                    let mut copy = ws.take(gy.len());
                    copy.copy_from_slice(&gy);
                    accumulate(&mut grads[*b], copy, ws);
                    accumulate(&mut grads[*a], gy, ws);
                }
                Op::Dense { input, weight, out, .. } => {
                    let dd = self.shapes[*input].numel();
                    // gx[dd][r] = W^T[dd][out] * gy[out][r]: directly in [C][H*W][r] layout.
                    let mut gx = ws.take(dd * r);
                    crate::im2col::matmul(dd, r, *out, weight, 1, dd, &gy, r, 1, &mut gx, false);
                    ws.give(gy);
                    accumulate(&mut grads[*input], gx, ws);
                }
            }
        }
        let shape = self.shapes[target];
        let g = grads[target].take().unwrap_or_else(|| vec![0f32; shape.numel() * r]);
        let out = batch_outermost(&g, shape, r);
        ws.give(g);
        for g in grads.into_iter().flatten() {
            ws.give(g);
        }
        out
    }

    /// The taped activation of `buffer`: `[C][H][W]` for one image, `[C][H*W][b]` for a
    /// batch. Empty for a buffer a batch tape did not keep.
    pub fn activation<'t>(&self, tape: &'t Tape, buffer: usize) -> &'t [f32] {
        &tape.buffers[buffer]
    }

    /// The last buffer with spatial size `h x w` (e.g. the last 7x7 feature map of a
    /// 112-px backbone), if any.
    pub fn last_buffer_with_spatial(&self, h: usize, w: usize) -> Option<usize> {
        self.shapes.iter().rposition(|s| s.h == h && s.w == w)
    }
}

/// Runs `f` compiled for the widest SIMD instructions the CPU has (AVX2 and FMA on x86-64-v3),
/// chosen at run time: the kernels' loops are written plainly and vectorised by the compiler.
/// Rust never contracts `a * b + c` into a fused multiply-add, so results do not depend on
/// the instruction set.
#[inline(always)]
pub(crate) fn simd<R>(f: impl FnOnce() -> R) -> R {
    pulp::Arch::new().dispatch(f)
}

fn op_inputs(op: &Op) -> Vec<usize> {
    match op {
        Op::Conv { input, .. } | Op::PRelu { input, .. } | Op::Affine { input, .. } | Op::Dense { input, .. } => {
            vec![*input]
        }
        Op::Add { a, b } => vec![*a, *b],
    }
}

fn accumulate(slot: &mut Option<Vec<f32>>, g: Vec<f32>, ws: &mut Workspace) {
    match slot {
        Some(acc) => {
            acc.iter_mut().zip(&g).for_each(|(a, v)| *a += v);
            ws.give(g);
        }
        None => *slot = Some(g),
    }
}

/// `[b][C][P]` -> `[C][P][b]`.
pub fn batch_innermost(x: &[f32], s: BufShape, b: usize) -> Vec<f32> {
    let n = s.numel();
    let mut out = vec![0f32; x.len()];
    for (bi, img) in x.chunks_exact(n).enumerate().take(b) {
        for (j, v) in img.iter().enumerate() {
            out[j * b + bi] = *v;
        }
    }
    out
}

/// `[C][P][b]` -> `[b][C][P]`.
pub fn batch_outermost(x: &[f32], s: BufShape, b: usize) -> Vec<f32> {
    let n = s.numel();
    let mut out = vec![0f32; x.len()];
    for (j, run) in x.chunks_exact(b).enumerate().take(n) {
        for (bi, v) in run.iter().enumerate() {
            out[bi * n + j] = *v;
        }
    }
    out
}
