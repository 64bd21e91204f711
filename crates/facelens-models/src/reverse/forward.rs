//! Forward passes through a [`Net`]: op by op when a tape keeps every activation for the
//! reverse pass, fused when only the output is wanted.
//!
//! Fusing moves the elementwise ops that read nothing but a convolution's output (BatchNorm,
//! PReLU, the residual addition) into that convolution's epilogue (see [`super::epilogue`]);
//! the values are the same, bit for bit, only the passes over memory go.

use std::time::Instant;

use rayon::prelude::*;

use super::epilogue::{Epilogue, SavePtr, Step};
use super::kernels::{self, Workspace};
use super::{batch_innermost, batch_outermost, op_inputs, Net, Op, Tape};

/// Images per forward micro-batch (see [`Net::forward`]).
pub const FORWARD_MICRO_BATCH: usize = 2;

/// Time spent in one step of a forward pass: a convolution with the ops fused into it, or a
/// single op.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StepTime {
    /// Ops of the step (`Net::ops` indices).
    pub ops: std::ops::Range<usize>,
    /// e.g. `conv 3x3/2 g64 64->64 @56x56 +prelu`.
    pub label: String,
    pub seconds: f64,
}

/// Which buffers a forward pass keeps.
#[derive(Debug, Clone, Copy)]
enum Keep<'k> {
    /// Only the output: buffers are freed after their last reader and the elementwise ops
    /// after a convolution run in its epilogue (their buffers stay empty).
    Output,
    /// Every buffer; every op runs on its own.
    All,
    /// What a reverse pass needs (PReLU inputs, saved from the epilogue that computes them)
    /// and the listed buffers; the rest is fused as for [`Keep::Output`], nothing is freed.
    Gradients(&'k [usize]),
}

impl Keep<'_> {
    fn frees(self) -> bool {
        matches!(self, Keep::Output)
    }
}

impl Net {
    /// Embeddings of `b` images given as NCHW `[b][C][H][W]`; returns `[b][D]`.
    ///
    /// Runs in micro-batches of [`FORWARD_MICRO_BATCH`] images (wider batches make the
    /// activations outgrow the caches), several at once when there are several.
    pub fn forward(&self, images: &[f32], b: usize) -> Vec<f32> {
        self.forward_steps(images, b, None)
    }

    /// Like [`Net::forward`], also returning the time of every step summed over the batch.
    pub fn forward_profile(&self, images: &[f32], b: usize) -> (Vec<f32>, Vec<StepTime>) {
        let mut times = Vec::new();
        let out = self.forward_steps(images, b, Some(&mut times));
        (out, times)
    }

    fn forward_steps(&self, images: &[f32], b: usize, times: Option<&mut Vec<StepTime>>) -> Vec<f32> {
        self.passes.add(b, 0);
        let n = self.input.numel();
        let chunks: Vec<&[f32]> = images[..b * n].chunks(FORWARD_MICRO_BATCH * n).collect();
        let pass = |chunk: &[f32], times: Option<&mut Vec<StepTime>>| {
            let m = chunk.len() / n;
            let buffers = self.run(batch_innermost(chunk, self.input, m), m, Keep::Output, times);
            batch_outermost(buffers.last().expect("net has an output"), self.shapes[self.last()], m)
        };
        match times {
            // Step times are only meaningful one micro-batch at a time.
            Some(t) => chunks.iter().flat_map(|c| pass(c, Some(&mut *t))).collect(),
            // Micro-batches side by side: each thread keeps its own activations in its cache;
            // the kernels inside still split their work when threads are idle.
            None => chunks.par_iter().flat_map_iter(|c| pass(c, None)).collect(),
        }
    }

    /// Forward pass of one CHW image, keeping every activation.
    pub fn tape(&self, image: &[f32]) -> Tape {
        self.passes.add(1, 0);
        Tape::new(self.run(image.to_vec(), 1, Keep::All, None), 1)
    }

    /// Forward pass of `b` images (NCHW `[b][C][H][W]`) keeping what input gradients of a
    /// per-image loss need: every PReLU's input (its branch), the output, and the buffers
    /// listed in `keep` (e.g. the activations a feature-matching loss reads). Everything else
    /// runs fused, as in [`Net::forward`], and its buffer stays empty, so this costs about what
    /// the inference forward does. The values are those of [`Net::tape`], bit for bit.
    ///
    /// Buffers are stored batch-innermost, `[C][H*W][b]` (see [`Net::activation`]); the
    /// reverse pass of such a tape takes one seed row per image ([`Net::vjp`] with `r = b`).
    pub fn tape_batch(&self, images: &[f32], b: usize, keep: &[usize]) -> Tape {
        self.passes.add(b, 0);
        let x = batch_innermost(&images[..b * self.input.numel()], self.input, b);
        let mut ws = self.pool.lease();
        let buffers = self.run_in(x, b, Keep::Gradients(keep), None, &mut ws);
        Tape { buffers, images: b, workspace: std::sync::Mutex::new(ws), pool: Some(self.pool.clone()) }
    }

    /// Runs the graph on `b` images stored `[C][H*W][b]` (see [`Keep`]).
    fn run(&self, x: Vec<f32>, b: usize, keep: Keep, times: Option<&mut Vec<StepTime>>) -> Vec<Vec<f32>> {
        self.run_in(x, b, keep, times, &mut Workspace::default())
    }

    /// [`Net::run`] drawing its buffers from `ws`.
    fn run_in(&self, x: Vec<f32>, b: usize, keep: Keep, mut times: Option<&mut Vec<StepTime>>, ws: &mut Workspace) -> Vec<Vec<f32>> {
        let mut last_use = vec![0usize; self.shapes.len()];
        let mut readers = vec![0usize; self.shapes.len()];
        for (i, op) in self.ops.iter().enumerate() {
            for r in op_inputs(op) {
                last_use[r] = i;
                readers[r] += 1;
            }
        }
        let mut bufs: Vec<Vec<f32>> = Vec::with_capacity(self.shapes.len());
        bufs.push(x);
        let mut saved: Vec<(usize, Vec<f32>)> = Vec::new();
        let mut i = 0;
        while i < self.ops.len() {
            let t0 = times.is_some().then(Instant::now);
            let (y, end) = match &self.ops[i] {
                Op::Conv { input, geom, weight, bias } => {
                    let mut epi = Epilogue::bias(bias);
                    let mut end = i + 1;
                    if !matches!(keep, Keep::All) {
                        while let Some(step) = self.fusable(end, &readers, &bufs, keep) {
                            if let (Keep::Gradients(_), Step::PRelu { .. }) = (keep, step) {
                                // The reverse pass reads a PReLU's input: saved on the way.
                                let mut buf = ws.take(self.shapes[end].numel() * b);
                                epi.steps.push(Step::Save { to: SavePtr(buf.as_mut_ptr()) });
                                saved.push((end, buf));
                            }
                            epi.steps.push(step);
                            end += 1;
                        }
                    }
                    (kernels::conv_forward(geom, weight, &bufs[*input], b, &epi, ws), end)
                }
                op => (self.single(op, &mut bufs, b, if keep.frees() { &last_use } else { &[] }, i), i + 1),
            };
            // Buffers of fused ops stay empty, except those saved; the step's output is the
            // last one's.
            bufs.resize_with(end, Vec::new);
            bufs.push(y);
            for (j, buf) in saved.drain(..) {
                bufs[j] = buf;
            }
            if let (Some(t), Some(t0)) = (times.as_deref_mut(), t0) {
                t.push(StepTime { ops: i..end, label: self.label(i..end), seconds: t0.elapsed().as_secs_f64() });
            }
            if keep.frees() {
                for op in i..end {
                    for r in op_inputs(&self.ops[op]) {
                        if last_use[r] == op {
                            ws.give(std::mem::take(&mut bufs[r]));
                        }
                    }
                }
            }
            i = end;
        }
        bufs
    }

    /// The epilogue step for op `j`, if it can run inside the convolution writing buffer `j`:
    /// it is elementwise, the only reader of that buffer, and the buffer need not be kept.
    fn fusable<'a>(&'a self, j: usize, readers: &[usize], bufs: &'a [Vec<f32>], keep: Keep) -> Option<Step<'a>> {
        if readers[j] != 1 {
            return None;
        }
        if let Keep::Gradients(listed) = keep {
            if listed.contains(&j) {
                return None;
            }
        }
        match self.ops.get(j)? {
            Op::PRelu { input, slope } if *input == j => Some(Step::PRelu { slope }),
            Op::Affine { input, scale, shift } if *input == j => Some(Step::Affine { scale, shift }),
            Op::Add { a, b } if (*a == j) != (*b == j) => Some(Step::Add { other: &bufs[if *a == j { *b } else { *a }] }),
            _ => None,
        }
    }

    /// An op other than a convolution, on its own. An input read for the last time is
    /// updated in place (`last_use` is empty when every buffer is kept).
    fn single(&self, op: &Op, bufs: &mut [Vec<f32>], b: usize, last_use: &[usize], i: usize) -> Vec<f32> {
        let own = |bufs: &mut [Vec<f32>], r: usize| -> Vec<f32> {
            if last_use.get(r) == Some(&i) {
                std::mem::take(&mut bufs[r])
            } else {
                bufs[r].clone()
            }
        };
        let (mut y, step, input) = match op {
            Op::PRelu { input, slope } => (own(bufs, *input), Step::PRelu { slope }, *input),
            Op::Affine { input, scale, shift } => (own(bufs, *input), Step::Affine { scale, shift }, *input),
            Op::Add { a, b: other } => return bufs[*a].iter().zip(&bufs[*other]).map(|(x, o)| x + o).collect(),
            Op::Dense { input, weight, bias, out } => return kernels::dense_forward(weight, bias, &bufs[*input], b, *out),
            Op::Conv { .. } => unreachable!("convolutions run with their epilogue"),
        };
        let plane = self.shapes[input].plane() * b;
        y.par_chunks_mut(plane).enumerate().for_each(|(c, ch)| super::simd(|| step.apply(c, plane, 0, ch)));
        y
    }

    /// A readable name for the ops `r`, e.g. `conv 1x1 64->128 @56x56 +prelu`.
    fn label(&self, r: std::ops::Range<usize>) -> String {
        let mut s = match &self.ops[r.start] {
            Op::Conv { geom: g, .. } => {
                let groups = if g.groups > 1 { format!(" g{}", g.groups) } else { String::new() };
                format!("conv {k}x{k}/{}{groups} {}->{} @{}x{}", g.stride, g.cin, g.cout, g.h, g.w, k = g.k)
            }
            Op::PRelu { .. } => "prelu".into(),
            Op::Affine { .. } => "bn".into(),
            Op::Add { .. } => "add".into(),
            Op::Dense { input, out, .. } => format!("dense {}->{out}", self.shapes[*input].numel()),
        };
        for op in &self.ops[r.start + 1..r.end] {
            s.push_str(match op {
                Op::PRelu { .. } => " +prelu",
                Op::Affine { .. } => " +bn",
                Op::Add { .. } => " +add",
                _ => " +?",
            });
        }
        s
    }
}
