//! Gradient engines: embeddings and batched vector-Jacobian products of a frozen backbone.
//!
//! [`NetEngine`] runs the backbone's lowered inference graph ([`facelens_models::reverse::Net`])
//! and forms input gradients only; it is the fast CPU path. [`TensorEngine`] runs the same
//! lowered graph as candle tensor ops ([`facelens_models::reverse::TensorNet`]) on any device;
//! it is the engine for GPUs. [`AutogradEngine`] uses candle's generic autograd on any device
//! and any backbone; it is the reference the others are tested against.

use candle_core::{Device, Module, Tensor, Var};
use facelens_models::reverse::{Net, PassCounter, Tape, TensorNet, TensorTape};
use facelens_models::{Backbone, FaceModel};


use crate::{Result, SaliencyError};

/// One image linearised around its forward pass.
pub trait Linearised {
    /// Raw embedding of the image.
    fn embedding(&self) -> &[f32];
    /// Input gradients `[rows][C][H][W]` for output seeds `[rows][D]`.
    fn vjp(&self, seeds: &[f32], rows: usize) -> Result<Vec<f32>>;
}

pub trait GradientEngine: Sync {
    /// (channels, height, width) of one input image.
    fn input_shape(&self) -> (usize, usize, usize);
    fn embedding_dim(&self) -> usize;
    /// Raw embeddings `[n][D]` of `n` images `[n][C][H][W]`.
    fn embed(&self, images: &[f32], n: usize) -> Result<Vec<f32>>;
    fn linearise<'a>(&'a self, image: &[f32]) -> Result<Box<dyn Linearised + 'a>>;
    /// Jacobian rows per backward pass.
    fn rows_per_pass(&self) -> usize;
    /// The lowered network, for methods that need intermediate activations (Grad-CAM).
    fn as_net(&self) -> Option<&Net> {
        None
    }
    /// `(images forward, seed rows backward)` through the network so far; the difference
    /// around an explanation is its cost in passes (what a method costs on any machine).
    fn passes(&self) -> (u64, u64);

    fn check_image(&self, image: &[f32]) -> Result<()> {
        let (c, h, w) = self.input_shape();
        if image.len() != c * h * w {
            return Err(SaliencyError::BadImage { expected: c * h * w, got: image.len(), size: h });
        }
        Ok(())
    }
}

/// The fast CPU engine over a lowered [`Net`].
pub struct NetEngine {
    pub net: Net,
    rows: usize,
}

impl NetEngine {
    /// `rows`: Jacobian rows per pass; `None` picks it from a memory budget.
    pub fn new(net: Net, rows: Option<usize>) -> Self {
        let rows = rows.unwrap_or_else(|| rows_for_budget(&net, memory_budget()));
        Self { net, rows: rows.max(1) }
    }
}

/// Bytes a reverse pass holds per Jacobian row: a few live gradient buffers of the
/// largest activation plus the im2col buffer of the stem.
fn bytes_per_row(net: &Net) -> usize {
    let largest = net.shapes.iter().map(|s| s.numel()).max().unwrap_or(1);
    4 * (4 * largest + 9 * net.input.numel())
}

/// Most Jacobian rows one pass may be asked for: each row holds a few activation-sized buffers
/// (about 4.5 MB for w600k_mbf), so 128 rows stay under 1 GB, and wider passes are not faster.
pub const MAX_ROWS_PER_PASS: usize = 128;

/// Rows per pass that fit `budget`, at most 32: beyond that the buffers outgrow the caches
/// and each GEMM is already wide (N = H*W*rows), so larger passes measured slower.
pub fn rows_for_budget(net: &Net, budget: usize) -> usize {
    (budget / bytes_per_row(net)).clamp(1, 32)
}

/// A quarter of available memory, at most 2 GiB (`FACELENS_JACOBIAN_MEMORY` in MiB overrides).
fn memory_budget() -> usize {
    if let Some(mib) = std::env::var("FACELENS_JACOBIAN_MEMORY").ok().and_then(|v| v.parse::<usize>().ok()) {
        return mib << 20;
    }
    let available = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemAvailable:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<usize>().ok())
        })
        .map(|kb| kb << 10)
        .unwrap_or(4 << 30);
    (available / 4).min(2 << 30)
}

struct NetLinearised<'a> {
    net: &'a Net,
    tape: Tape,
}

impl Linearised for NetLinearised<'_> {
    fn embedding(&self) -> &[f32] {
        self.tape.output()
    }
    fn vjp(&self, seeds: &[f32], rows: usize) -> Result<Vec<f32>> {
        Ok(self.net.vjp(&self.tape, seeds, rows))
    }
}

impl GradientEngine for NetEngine {
    fn input_shape(&self) -> (usize, usize, usize) {
        (self.net.input.c, self.net.input.h, self.net.input.w)
    }
    fn embedding_dim(&self) -> usize {
        self.net.output_dim()
    }
    fn embed(&self, images: &[f32], n: usize) -> Result<Vec<f32>> {
        Ok(self.net.forward(images, n))
    }
    fn linearise<'a>(&'a self, image: &[f32]) -> Result<Box<dyn Linearised + 'a>> {
        self.check_image(image)?;
        Ok(Box::new(NetLinearised { net: &self.net, tape: self.net.tape(image) }))
    }
    fn rows_per_pass(&self) -> usize {
        self.rows
    }
    fn as_net(&self) -> Option<&Net> {
        Some(&self.net)
    }
    fn passes(&self) -> (u64, u64) {
        self.net.passes.get()
    }
}

/// The lowered graph as candle ops on any device (input-only VJPs; Jacobian rows as the batch).
/// Keeps the CPU lowering too, for methods that read intermediate activations (Grad-CAM).
pub struct TensorEngine {
    pub net: TensorNet,
    cpu: Net,
    rows: usize,
}

/// Images per forward batch on the device.
const TENSOR_FORWARD_BATCH: usize = 64;

impl TensorEngine {
    pub fn new(net: Net, device: &Device, rows: usize) -> Result<Self> {
        Ok(Self { net: TensorNet::new(&net, device)?, cpu: net, rows: rows.max(1) })
    }
}

struct TensorLinearised<'a> {
    engine: &'a TensorEngine,
    tape: TensorTape,
}

impl Linearised for TensorLinearised<'_> {
    fn embedding(&self) -> &[f32] {
        self.tape.output()
    }
    fn vjp(&self, seeds: &[f32], rows: usize) -> Result<Vec<f32>> {
        let net = &self.engine.net;
        let seeds = Tensor::from_slice(seeds, (rows, net.output_dim()), &net.device)?;
        Ok(net.vjp(&self.tape, &seeds)?.flatten_all()?.to_device(&Device::Cpu)?.to_vec1()?)
    }
}

impl GradientEngine for TensorEngine {
    fn input_shape(&self) -> (usize, usize, usize) {
        (self.net.input.c, self.net.input.h, self.net.input.w)
    }
    fn embedding_dim(&self) -> usize {
        self.net.output_dim()
    }
    fn embed(&self, images: &[f32], n: usize) -> Result<Vec<f32>> {
        let (c, h, w) = self.input_shape();
        let mut out = Vec::with_capacity(n * self.embedding_dim());
        for chunk in images[..n * c * h * w].chunks(TENSOR_FORWARD_BATCH * c * h * w) {
            let m = chunk.len() / (c * h * w);
            let x = Tensor::from_slice(chunk, (m, c, h, w), &self.net.device)?;
            out.extend(self.net.forward(&x)?.flatten_all()?.to_device(&Device::Cpu)?.to_vec1::<f32>()?);
        }
        Ok(out)
    }
    fn linearise<'a>(&'a self, image: &[f32]) -> Result<Box<dyn Linearised + 'a>> {
        self.check_image(image)?;
        let (c, h, w) = self.input_shape();
        let x = Tensor::from_slice(image, (1, c, h, w), &self.net.device)?;
        Ok(Box::new(TensorLinearised { engine: self, tape: self.net.tape(&x)? }))
    }
    fn rows_per_pass(&self) -> usize {
        self.rows
    }
    fn as_net(&self) -> Option<&Net> {
        Some(&self.cpu)
    }
    fn passes(&self) -> (u64, u64) {
        let (f, b) = self.net.passes.get();
        let (cf, cb) = self.cpu.passes.get();
        (f + cf, b + cb)
    }
}

/// candle autograd on any device: replicate the image once per row, seed each copy with
/// its row, one backward gives all rows (BatchNorm runs in eval mode, so copies are independent).
pub struct AutogradEngine {
    pub backbone: Backbone,
    pub device: Device,
    pub size: usize,
    pub dim: usize,
    pub rows: usize,
    pub passes: PassCounter,
}

impl AutogradEngine {
    pub fn new(model: &FaceModel, rows: usize) -> Self {
        Self {
            backbone: model.backbone.clone(),
            device: model.device.clone(),
            size: model.spec.input_size,
            dim: model.spec.embedding_dim,
            rows: rows.max(1),
            passes: PassCounter::default(),
        }
    }
}

struct AutogradLinearised<'a> {
    engine: &'a AutogradEngine,
    image: Vec<f32>,
    embedding: Vec<f32>,
}

impl Linearised for AutogradLinearised<'_> {
    fn embedding(&self) -> &[f32] {
        &self.embedding
    }
    fn vjp(&self, seeds: &[f32], rows: usize) -> Result<Vec<f32>> {
        let e = self.engine;
        let s = e.size;
        // One forward copy per row, then one backward over all of them.
        e.passes.add(rows, rows);
        let x = Tensor::from_vec(self.image.clone(), (1, 3, s, s), &e.device)?.repeat((rows, 1, 1, 1))?;
        let x = Var::from_tensor(&x)?;
        let y = e.backbone.forward(x.as_tensor())?;
        let seeds = Tensor::from_vec(seeds.to_vec(), (rows, e.dim), &e.device)?;
        let grads = (y * seeds)?.sum_all()?.backward()?;
        let g = grads.get(x.as_tensor()).ok_or_else(|| candle_core::Error::Msg("input got no gradient".into()))?;
        Ok(g.flatten_all()?.to_device(&Device::Cpu)?.to_vec1()?)
    }
}

impl GradientEngine for AutogradEngine {
    fn input_shape(&self) -> (usize, usize, usize) {
        (3, self.size, self.size)
    }
    fn embedding_dim(&self) -> usize {
        self.dim
    }
    fn embed(&self, images: &[f32], n: usize) -> Result<Vec<f32>> {
        let s = self.size;
        self.passes.add(n, 0);
        let x = Tensor::from_vec(images.to_vec(), (n, 3, s, s), &self.device)?;
        Ok(self.backbone.forward(&x)?.flatten_all()?.to_device(&Device::Cpu)?.to_vec1()?)
    }
    fn linearise<'a>(&'a self, image: &[f32]) -> Result<Box<dyn Linearised + 'a>> {
        self.check_image(image)?;
        let embedding = self.embed(image, 1)?;
        Ok(Box::new(AutogradLinearised { engine: self, image: image.to_vec(), embedding }))
    }
    fn rows_per_pass(&self) -> usize {
        self.rows
    }
    fn passes(&self) -> (u64, u64) {
        self.passes.get()
    }
}

/// Which implementation of the frozen-network passes to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineKind {
    /// [`NetEngine`]: hand-written CPU kernels.
    Net,
    /// [`TensorEngine`]: candle ops on the model's device.
    Tensor,
    /// [`AutogradEngine`]: candle's autograd on the model's device.
    Autograd,
}

/// Rows per pass on a GPU: enough to fill it without holding gigabytes of activations.
const DEVICE_ROWS: usize = 64;

/// The best engine for a loaded model: the hand-written kernels on the CPU, the same graph as
/// candle ops elsewhere. `rows`: Jacobian rows per pass (`None`: from the memory budget).
pub fn engine_for(model: &FaceModel, rows: Option<usize>) -> Result<Box<dyn GradientEngine>> {
    let kind = if model.device.is_cpu() { EngineKind::Net } else { EngineKind::Tensor };
    engine_of(kind, model, rows)
}

/// The engine [`engine_for`] would build, over a given lowering of the model's network instead of
/// its own (e.g. one with randomised weights, [`Net::randomised`]).
pub fn engine_for_net(model: &FaceModel, net: Net, rows: Option<usize>) -> Result<Box<dyn GradientEngine>> {
    if let Some(rows) = rows.filter(|r| !(1..=MAX_ROWS_PER_PASS).contains(r)) {
        return Err(SaliencyError::RowsOutOfRange { rows, max: MAX_ROWS_PER_PASS });
    }
    Ok(if model.device.is_cpu() {
        Box::new(NetEngine::new(net, rows))
    } else {
        Box::new(TensorEngine::new(net, &model.device, rows.unwrap_or(DEVICE_ROWS))?)
    })
}

/// A chosen engine for a loaded model (the tensor and autograd engines on the model's device;
/// the net engine always on the CPU). `rows` must be in `1..=MAX_ROWS_PER_PASS`.
pub fn engine_of(kind: EngineKind, model: &FaceModel, rows: Option<usize>) -> Result<Box<dyn GradientEngine>> {
    if let Some(rows) = rows.filter(|r| !(1..=MAX_ROWS_PER_PASS).contains(r)) {
        return Err(SaliencyError::RowsOutOfRange { rows, max: MAX_ROWS_PER_PASS });
    }
    Ok(match kind {
        EngineKind::Net => Box::new(NetEngine::new(Net::from_backbone(&model.backbone)?, rows)),
        EngineKind::Tensor => {
            Box::new(TensorEngine::new(Net::from_backbone(&model.backbone)?, &model.device, rows.unwrap_or(DEVICE_ROWS))?)
        }
        EngineKind::Autograd => Box::new(AutogradEngine::new(model, rows.unwrap_or(16))),
    })
}

/// Runs the Jacobian of the output (raw or L2-normalised) over `dims` in passes of
/// `rows_per_pass` rows and hands each pass's input gradients to `visit(k0, rows, grads)`.
pub fn jacobian_passes(
    lin: &dyn Linearised,
    normalised: bool,
    rows_per_pass: usize,
    mut visit: impl FnMut(usize, usize, &[f32]),
) -> Result<()> {
    let e = lin.embedding();
    let d = e.len();
    let mut k0 = 0;
    while k0 < d {
        let rows = rows_per_pass.min(d - k0);
        let mut seeds = vec![0f32; rows * d];
        for r in 0..rows {
            let k = k0 + r;
            let row = &mut seeds[r * d..(r + 1) * d];
            if normalised {
                let mut onehot = vec![0f32; d];
                onehot[k] = 1.0;
                row.copy_from_slice(&pull_back_normalisation(e, &onehot));
            } else {
                row[k] = 1.0;
            }
        }
        let grads = lin.vjp(&seeds, rows)?;
        visit(k0, rows, &grads);
        k0 += rows;
    }
    Ok(())
}

/// Pulls a seed on the L2-normalised embedding `F = e/|e|` back to the raw embedding:
/// `J^T v = (v - F (F . v)) / |e|` (the Jacobian of normalisation is symmetric).
pub fn pull_back_normalisation(e: &[f32], v: &[f32]) -> Vec<f32> {
    let norm = e.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt().max(1e-12);
    let fv: f64 = e.iter().zip(v).map(|(x, y)| *x as f64 / norm * *y as f64).sum();
    e.iter().zip(v).map(|(x, y)| ((*y as f64 - *x as f64 / norm * fv) / norm) as f32).collect()
}

/// L2-normalised copy of an embedding.
pub fn normalised(e: &[f32]) -> Vec<f32> {
    facelens_models::preprocess::l2_normalise(e)
}
