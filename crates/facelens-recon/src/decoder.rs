//! The feature-to-face decoder `D: R^N -> 3 x 112 x 112` (docs/design.md §9).
//!
//! Architecture in the spirit of the DCGAN generator (Radford et al., 2016) as used for
//! feature-inversion of face embeddings (e.g. Mai et al., "On the reconstruction of face images
//! from deep face templates", TPAMI 2018): the L2-normalised embedding goes through a linear
//! layer to `width x 7 x 7`, four blocks double the resolution (7 -> 14 -> 28 -> 56 -> 112) while
//! halving the channels, a 3x3 convolution maps to RGB and `tanh` bounds the output to `[-1, 1]`
//! (RGB, `pixel = (x + 1) * 127.5`; see [`crate::losses::ModelInput`] for other backbones).
//!
//! Only operations whose gradients candle 0.11 computes correctly (checked against finite
//! differences) are used:
//! nearest x2 upsampling + conv or a stride-2 transposed conv, BatchNorm/GroupNorm (never the
//! fused layer norm, which silently cuts the graph), PReLU or leaky ReLU.

use candle_core::{DType, Module, ModuleT, Tensor, Var, D};
use candle_nn::{
    BatchNorm, BatchNormConfig, Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig,
    GroupNorm, Linear, PReLU, VarBuilder, VarMap,
};
use serde::{Deserialize, Serialize};

use crate::conv3x3::conv3x3;
use crate::norm_act;
use crate::error::{ReconError, Result};
use facelens_core::rng::Xoshiro256;

/// Side of the decoder's first feature map.
pub const SEED_SIDE: usize = 7;
/// Number of x2 upsampling blocks: 7 * 2^4 = 112.
pub const NUM_BLOCKS: usize = 4;
/// Output side.
pub const OUTPUT_SIDE: usize = SEED_SIDE << NUM_BLOCKS;

/// How a block doubles the resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpsampleKind {
    /// Nearest-neighbour x2 then a 3x3 convolution. Every output pixel of a 2x2 cell starts
    /// from the same value, so an under-trained decoder shows the cells as a grid.
    NearestConv,
    /// Bilinear x2 (PyTorch's `align_corners = false`) then a 3x3 convolution: neighbouring
    /// output pixels interpolate between inputs, leaving no period-2 pattern to unlearn
    /// (Odena et al., "Deconvolution and Checkerboard Artifacts", Distill 2016).
    BilinearConv,
    /// A 4x4 stride-2 transposed convolution (slow on candle's CPU backend).
    ConvTranspose,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NormKind {
    /// BatchNorm; its running statistics are buffers saved with the checkpoint.
    Batch,
    /// GroupNorm: independent of the batch, so small or single-image batches behave the same.
    Group,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ActivationKind {
    /// Per-channel PReLU (learned slope, initialised to 0.25).
    Prelu,
    /// Leaky ReLU with slope 0.2.
    LeakyRelu,
}

/// Largest `decoder.width` (and `min_channels`, `groups`): the seed layer alone holds
/// `embedding_dim x width x 49` weights, 205 MB at 512 x 2048.
pub const MAX_WIDTH: usize = 2048;
/// Largest embedding dimension a decoder accepts (the zoo's largest is 512).
pub const MAX_EMBEDDING_DIM: usize = 4096;
/// Largest `decoder.convs_per_block`.
pub const MAX_CONVS_PER_BLOCK: usize = 8;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DecoderConfig {
    /// Dimension N of the embedding (512 for w600k_mbf).
    pub embedding_dim: usize,
    /// Channels of the 7x7 seed map; each block halves them.
    pub width: usize,
    /// Lower bound on a block's channels, so narrow decoders keep some capacity at 112x112.
    pub min_channels: usize,
    pub block: UpsampleKind,
    pub norm: NormKind,
    /// Groups for GroupNorm (reduced to a divisor of the channel count where needed).
    pub groups: usize,
    pub activation: ActivationKind,
    /// 3x3 convolutions per block (the first one follows the upsampling).
    pub convs_per_block: usize,
    /// A fixed low-pass filter on the output image: `[a, 1 - 2a, a]` along rows and columns
    /// (edge replicated), `0 <= a <= 0.25`; 0 = none. Nearest-neighbour up-blocks leave
    /// energy at the period-2 frequencies (a grid) that no pixel loss removes, because the
    /// identity term through a stride-2 backbone rewards it; the filter takes the gain at
    /// exactly those frequencies to `1 - 4a` (0 at `a = 0.25`, the binomial `[1, 2, 1] / 4`)
    /// while the convolutions keep their full resolution, as the FIR filters of StyleGAN2's
    /// up-sampling layers do (Karras et al., "Analyzing and Improving the Image Quality of
    /// StyleGAN", CVPR 2020).
    pub output_blur: f64,
}

impl Default for DecoderConfig {
    fn default() -> Self {
        Self {
            embedding_dim: 512,
            width: 512,
            min_channels: 16,
            block: UpsampleKind::NearestConv,
            norm: NormKind::Batch,
            groups: 32,
            activation: ActivationKind::Prelu,
            convs_per_block: 1,
            output_blur: 0.0,
        }
    }
}

impl DecoderConfig {
    /// A decoder small enough for unit tests and CI runs on a CPU.
    pub fn tiny(embedding_dim: usize) -> Self {
        Self {
            embedding_dim,
            width: 32,
            min_channels: 8,
            ..Self::default()
        }
    }

    /// Output channels of block `i` (0-based).
    pub fn block_channels(&self, i: usize) -> usize {
        (self.width >> (i + 1)).max(self.min_channels).max(1)
    }

    /// Checks every size against its bound (the key and the bound are in the message), before
    /// anything is allocated: configs and checkpoint headers alike come through here.
    pub fn validate(&self) -> Result<()> {
        use crate::bounds::count;
        count("decoder.embedding_dim", self.embedding_dim, 1, MAX_EMBEDDING_DIM)?;
        count("decoder.width", self.width, 1, MAX_WIDTH)?;
        count("decoder.min_channels", self.min_channels, 1, MAX_WIDTH)?;
        count("decoder.convs_per_block", self.convs_per_block, 1, MAX_CONVS_PER_BLOCK)?;
        let lo = usize::from(self.norm == NormKind::Group);
        count("decoder.groups", self.groups, lo, MAX_WIDTH)?;
        if !(0.0..=0.25).contains(&self.output_blur) {
            return Err(ReconError::Config(format!(
                "decoder.output_blur = {}: must be within [0, 0.25] (the filter is [a, 1 - 2a, a])",
                self.output_blur
            )));
        }
        Ok(())
    }
}

/// Largest divisor of `channels` that is at most `wanted`.
// `%` rather than `is_multiple_of`: the workspace's rust-version (1.85) predates it.
#[allow(clippy::manual_is_multiple_of)]
fn group_count(channels: usize, wanted: usize) -> usize {
    (1..=wanted.min(channels))
        .rev()
        .find(|g| channels % g == 0)
        .unwrap_or(1)
}

#[derive(Debug, Clone)]
enum Norm {
    Batch(BatchNorm),
    Group(GroupNorm),
}

impl Norm {
    fn new(
        kind: NormKind,
        channels: usize,
        groups: usize,
        vb: VarBuilder,
    ) -> candle_core::Result<Self> {
        Ok(match kind {
            NormKind::Batch => Norm::Batch(candle_nn::batch_norm(
                channels,
                BatchNormConfig {
                    eps: 1e-5,
                    remove_mean: true,
                    affine: true,
                    momentum: 0.1,
                },
                vb,
            )?),
            NormKind::Group => Norm::Group(candle_nn::group_norm(
                group_count(channels, groups),
                channels,
                1e-5,
                vb,
            )?),
        })
    }

    fn forward_t(&self, xs: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        match self {
            Norm::Batch(bn) if train && norm_act::fast(xs) && bn.running_mean().is_variable() => batch_norm_step(bn, xs),
            Norm::Batch(bn) => bn.forward_t(xs, train),
            Norm::Group(gn) => gn.forward(xs),
        }
    }
}

/// A training-mode BatchNorm step on the CPU: the single-pass op, then the running statistics
/// as candle's `BatchNorm` keeps them (unbiased variance, `momentum` on the new value).
fn batch_norm_step(bn: &BatchNorm, xs: &Tensor) -> candle_core::Result<Tensor> {
    let (gamma, beta) = bn
        .weight_and_bias()
        .ok_or_else(|| candle_core::Error::Msg("decoder BatchNorm without affine parameters".into()))?;
    let (y, mean, var) = norm_act::batch_norm_train(xs, gamma, beta, bn.eps())?;
    let (b, _, h, w) = xs.dims4()?;
    let n = (b * h * w) as f64;
    let m = bn.momentum();
    let update = |running: &Tensor, batch: Vec<f64>, factor: f64| -> candle_core::Result<()> {
        let old: Vec<f32> = running.to_vec1()?;
        let new: Vec<f32> = old.iter().zip(&batch).map(|(r, v)| (*r as f64 * (1.0 - m) + v * factor * m) as f32).collect();
        // A variable's tensor: `from_tensor` shares its storage, so `set` updates the layer.
        Var::from_tensor(running)?.set(&Tensor::from_vec(new, old.len(), running.device())?)
    };
    update(bn.running_mean(), mean, 1.0)?;
    update(bn.running_var(), var, n / (n - 1.0).max(1.0))?;
    Ok(y)
}

#[derive(Debug, Clone)]
enum Activation {
    Prelu(PReLU),
    Leaky(f64),
}

impl Activation {
    fn new(kind: ActivationKind, channels: usize, vb: VarBuilder) -> candle_core::Result<Self> {
        Ok(match kind {
            ActivationKind::Prelu => Activation::Prelu(candle_nn::prelu(Some(channels), vb)?),
            ActivationKind::LeakyRelu => Activation::Leaky(0.2),
        })
    }

    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Activation::Prelu(p) if norm_act::fast(xs) && xs.rank() == 4 => norm_act::prelu(xs, p.weight()),
            Activation::Prelu(p) => p.forward(xs),
            // relu(x) - a * relu(-x): built from ops with well-tested gradients.
            Activation::Leaky(a) => xs.relu()? - (xs.neg()?.relu()? * *a)?,
        }
    }
}

#[derive(Debug, Clone)]
enum Conv {
    Plain(Conv2d),
    Transposed(ConvTranspose2d),
}

/// conv -> norm -> activation.
#[derive(Debug, Clone)]
struct ConvUnit {
    conv: Conv,
    norm: Norm,
    act: Activation,
}

impl ConvUnit {
    fn new(
        cfg: &DecoderConfig,
        in_c: usize,
        out_c: usize,
        transposed: bool,
        vb: VarBuilder,
    ) -> candle_core::Result<Self> {
        // No conv bias: the norm's shift makes it redundant.
        let conv = if transposed {
            let c = ConvTranspose2dConfig {
                padding: 1,
                output_padding: 0,
                stride: 2,
                dilation: 1,
            };
            Conv::Transposed(candle_nn::conv_transpose2d_no_bias(
                in_c,
                out_c,
                4,
                c,
                vb.pp("conv"),
            )?)
        } else {
            let c = Conv2dConfig {
                padding: 1,
                ..Default::default()
            };
            Conv::Plain(candle_nn::conv2d_no_bias(in_c, out_c, 3, c, vb.pp("conv"))?)
        };
        Ok(Self {
            conv,
            norm: Norm::new(cfg.norm, out_c, cfg.groups, vb.pp("norm"))?,
            act: Activation::new(cfg.activation, out_c, vb.pp("act"))?,
        })
    }

    fn forward_t(&self, xs: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        let ys = match &self.conv {
            Conv::Plain(c) => conv2d_3x3(c, xs)?,
            Conv::Transposed(c) => c.forward(xs)?,
        };
        self.act.forward(&self.norm.forward_t(&ys, train)?)
    }
}

#[derive(Debug, Clone)]
struct UpBlock {
    block: UpsampleKind,
    units: Vec<ConvUnit>,
}

impl UpBlock {
    fn forward_t(&self, xs: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        let (_, _, hh, ww) = xs.dims4()?;
        let mut h = match self.block {
            UpsampleKind::NearestConv if norm_act::fast(xs) => norm_act::upsample_nearest2x(xs)?,
            UpsampleKind::NearestConv => xs.upsample_nearest2d(2 * hh, 2 * ww)?,
            UpsampleKind::BilinearConv => upsample_bilinear2x(xs)?,
            UpsampleKind::ConvTranspose => xs.clone(),
        };
        for u in &self.units {
            h = u.forward_t(&h, train)?;
        }
        Ok(h)
    }
}

/// The decoder. Parameter names: `fc`, `fc_norm`, `fc_act`, `blocks.{i}.{j}.{conv,norm,act}`,
/// `to_rgb`.
#[derive(Debug, Clone)]
pub struct Decoder {
    config: DecoderConfig,
    fc: Linear,
    fc_norm: Norm,
    fc_act: Activation,
    blocks: Vec<UpBlock>,
    to_rgb: Conv2d,
}

impl Decoder {
    pub fn new(config: &DecoderConfig, vb: VarBuilder) -> Result<Self> {
        config.validate()?;
        let w = config.width;
        let fc = candle_nn::linear(config.embedding_dim, w * SEED_SIDE * SEED_SIDE, vb.pp("fc"))?;
        let fc_norm = Norm::new(config.norm, w, config.groups, vb.pp("fc_norm"))?;
        let fc_act = Activation::new(config.activation, w, vb.pp("fc_act"))?;
        let mut blocks = Vec::with_capacity(NUM_BLOCKS);
        let mut in_c = w;
        for i in 0..NUM_BLOCKS {
            let out_c = config.block_channels(i);
            let vbi = vb.pp(format!("blocks.{i}"));
            let mut units = Vec::with_capacity(config.convs_per_block);
            for j in 0..config.convs_per_block {
                let transposed = j == 0 && config.block == UpsampleKind::ConvTranspose;
                let c_in = if j == 0 { in_c } else { out_c };
                units.push(ConvUnit::new(
                    config,
                    c_in,
                    out_c,
                    transposed,
                    vbi.pp(j.to_string()),
                )?);
            }
            blocks.push(UpBlock {
                block: config.block,
                units,
            });
            in_c = out_c;
        }
        let to_rgb = candle_nn::conv2d(
            in_c,
            3,
            3,
            Conv2dConfig {
                padding: 1,
                ..Default::default()
            },
            vb.pp("to_rgb"),
        )?;
        Ok(Self {
            config: config.clone(),
            fc,
            fc_norm,
            fc_act,
            blocks,
            to_rgb,
        })
    }

    pub fn config(&self) -> &DecoderConfig {
        &self.config
    }

    /// Decodes `(N, embedding_dim)` embeddings (raw or normalised: they are L2-normalised here)
    /// into `(N, 3, 112, 112)` RGB images in `[-1, 1]`. `train` switches BatchNorm to batch
    /// statistics (and updates its running statistics).
    pub fn forward_t(&self, z: &Tensor, train: bool) -> Result<Tensor> {
        let dims = z.dims();
        if dims.len() != 2 || dims[1] != self.config.embedding_dim {
            return Err(ReconError::UnexpectedShape {
                what: "decoder input",
                expected: vec![
                    dims.first().copied().unwrap_or(1),
                    self.config.embedding_dim,
                ],
                got: dims.to_vec(),
            });
        }
        let n = dims[0];
        let z = l2_normalise_rows(z)?;
        let h = self
            .fc
            .forward(&z)?
            .reshape((n, self.config.width, SEED_SIDE, SEED_SIDE))?;
        let mut h = self.fc_act.forward(&self.fc_norm.forward_t(&h, train)?)?;
        for b in &self.blocks {
            h = b.forward_t(&h, train)?;
        }
        let rgb = conv2d_3x3(&self.to_rgb, &h)?.tanh()?;
        let a = self.config.output_blur;
        if a == 0.0 {
            return Ok(rgb);
        }
        Ok(blur3(&blur3(&rgb, 2, a)?, 3, a)?)
    }

    /// Inference: BatchNorm uses its running statistics.
    pub fn decode(&self, z: &Tensor) -> Result<Tensor> {
        self.forward_t(z, false)
    }
}

/// Bilinear x2 upsampling of `(N, C, H, W)` with PyTorch's `align_corners = false` sampling.
///
/// Along each axis that sampling gives output `2i` the weights `(1/4, 3/4)` on inputs `i - 1, i`
/// and output `2i + 1` the weights `(3/4, 1/4)` on `i, i + 1`, clamped at the borders. That is a
/// nearest-neighbour x2 followed by the filter `[1, 2, 1] / 4` with edge replication, which is how
/// it is built here: from ops whose gradients candle computes correctly.
pub fn upsample_bilinear2x(xs: &Tensor) -> candle_core::Result<Tensor> {
    let (_, _, h, w) = xs.dims4()?;
    let up = if norm_act::fast(xs) { norm_act::upsample_nearest2x(xs)? } else { xs.upsample_nearest2d(2 * h, 2 * w)? };
    blur3(&blur3(&up, 2, 0.25)?, 3, 0.25)
}

/// The filter `[a, 1 - 2a, a]` along `dim`, edge replicated, from ops whose gradients candle
/// computes correctly.
fn blur3(t: &Tensor, dim: usize, a: f64) -> candle_core::Result<Tensor> {
    let n = t.dim(dim)?;
    let padded = Tensor::cat(&[t.narrow(dim, 0, 1)?, t.clone(), t.narrow(dim, n - 1, 1)?], dim)?;
    let sides = (padded.narrow(dim, 0, n)? + padded.narrow(dim, 2, n)?)?;
    (sides * a)? + (padded.narrow(dim, 1, n)? * (1.0 - 2.0 * a))?
}

/// A padded 3x3 `Conv2d` through [`conv3x3`] (same parameters, GEMM backward on the CPU).
fn conv2d_3x3(conv: &Conv2d, xs: &Tensor) -> candle_core::Result<Tensor> {
    let ys = conv3x3(xs, conv.weight())?;
    match conv.bias() {
        Some(b) => ys.broadcast_add(&b.reshape((1, b.dim(0)?, 1, 1))?),
        None => Ok(ys),
    }
}

/// `x / sqrt(sum x^2 + eps)` per row, from differentiable ops (there is no fused normalise).
pub fn l2_normalise_rows(x: &Tensor) -> candle_core::Result<Tensor> {
    let norm = (x.sqr()?.sum_keepdim(D::Minus1)? + 1e-12)?.sqrt()?;
    x.broadcast_div(&norm)
}

/// True for BatchNorm running statistics: buffers, not parameters (never optimised).
pub fn is_buffer(name: &str) -> bool {
    name.ends_with("running_mean") || name.ends_with("running_var")
}

/// Builds a decoder whose variables live in a fresh [`VarMap`], initialised from `seed` so the
/// same seed gives the same network on every machine (candle cannot seed its CPU generator).
pub fn build_seeded(
    config: &DecoderConfig,
    seed: u64,
    device: &candle_core::Device,
) -> Result<(Decoder, VarMap)> {
    let varmap = VarMap::new();
    let decoder = Decoder::new(config, VarBuilder::from_varmap(&varmap, DType::F32, device))?;
    init_seeded(&varmap, seed)?;
    Ok((decoder, varmap))
}

/// PyTorch-style initialisation by parameter name: weights uniform in `±1/sqrt(fan_in)`,
/// biases zero, norm scales one, PReLU slopes 0.25, running mean 0 and variance 1.
pub fn init_seeded(varmap: &VarMap, seed: u64) -> Result<()> {
    let data = varmap
        .data()
        .lock()
        .map_err(|_| ReconError::Config("variable map lock poisoned".into()))?;
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    let mut rng = Xoshiro256::stream(seed, 0x1417);
    for name in names {
        let var = &data[name];
        let shape = var.dims().to_vec();
        let numel: usize = shape.iter().product();
        let constant = |c: f32| vec![c; numel];
        let values = if name.ends_with("running_mean") || name.ends_with("bias") {
            constant(0.0)
        } else if name.ends_with("running_var")
            || (name.contains("norm") && name.ends_with("weight"))
        {
            constant(1.0)
        } else if name.contains("act") && name.ends_with("weight") {
            constant(0.25)
        } else {
            // Linear (out, in), Conv2d (out, in, k, k), ConvTranspose2d (in, out, k, k): PyTorch
            // takes fan_in from dim 1 times the kernel size in every case.
            let fan_in =
                shape.get(1).copied().unwrap_or(1) * shape.iter().skip(2).product::<usize>();
            let bound = 1.0 / (fan_in.max(1) as f64).sqrt();
            (0..numel)
                .map(|_| ((2.0 * rng.uniform() - 1.0) * bound) as f32)
                .collect()
        };
        var.set(&Tensor::from_vec(values, shape, var.device())?)?;
    }
    Ok(())
}

/// Decoded images as HWC RGB `u8` crops: `pixel = round((x + 1) * 127.5)`.
pub fn to_crops(images: &Tensor) -> Result<Vec<image::RgbImage>> {
    let (n, c, h, w) = images.dims4()?;
    if c != 3 {
        return Err(ReconError::UnexpectedShape {
            what: "decoded images",
            expected: vec![n, 3, h, w],
            got: vec![n, c, h, w],
        });
    }
    let data: Vec<f32> = images
        .to_device(&candle_core::Device::Cpu)?
        .flatten_all()?
        .to_vec1()?;
    let plane = h * w;
    Ok((0..n)
        .map(|i| {
            let img = &data[i * 3 * plane..(i + 1) * 3 * plane];
            image::RgbImage::from_fn(w as u32, h as u32, |x, y| {
                let p = y as usize * w + x as usize;
                image::Rgb(std::array::from_fn(|ch| unit_to_u8(img[ch * plane + p])))
            })
        })
        .collect())
}

/// `[-1, 1]` to `0..=255`, NaN to 0.
pub fn unit_to_u8(v: f32) -> u8 {
    if v.is_finite() {
        ((v + 1.0) * 127.5).round().clamp(0.0, 255.0) as u8
    } else {
        0
    }
}

/// HWC RGB `u8` crop to CHW `f32` in `[-1, 1]`.
pub fn crop_to_unit(rgb: &[u8], out: &mut Vec<f32>) {
    let plane = rgb.len() / 3;
    let start = out.len();
    out.resize(start + rgb.len(), 0.0);
    for p in 0..plane {
        for c in 0..3 {
            out[start + c * plane + p] = rgb[p * 3 + c] as f32 / 127.5 - 1.0;
        }
    }
}
