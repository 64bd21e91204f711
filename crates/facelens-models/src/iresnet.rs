//! IResNet-18/34/50/100, the "improved ResNet" face-recognition backbone.
//!
//! Duta et al., "Improved Residual Networks for Image and Video Recognition" (2020), as used
//! by ArcFace (Deng et al., CVPR 2019) and AdaFace (Kim et al., CVPR 2022). Layout and
//! parameter names follow insightface `recognition/arcface_torch/backbones/iresnet.py`:
//! stem `conv1` (3x3, stride 1) -> `bn1` -> `prelu`; four stages `layer1..layer4` of
//! `IBasicBlock` (`bn1` -> `conv1` -> `bn2` -> `prelu` -> `conv2` (block stride) -> `bn3`,
//! plus the shortcut `downsample.{0,1}` = 1x1 conv + BN on the first block of every stage);
//! head `bn2` -> dropout -> flatten (512*7*7) -> `fc` -> BatchNorm1d `features`.
//! Every BatchNorm has eps 1e-5 and every convolution is bias-free.
//!
//! [`Flavour::AdaFace`] builds the same network under the names of mk-minchul/AdaFace
//! `net.py` (`Backbone(..., mode='ir')`): `input_layer.{0,1,2}`, `body.{i}.res_layer.{0..5}`,
//! `body.{i}.shortcut_layer.{0,1}`, `output_layer.{0,3,4}`. Two real differences: where a
//! block keeps its width (the first block of stage 1), the shortcut is `MaxPool2d(1, stride)`
//! (plain subsampling, no weights), and the final BatchNorm1d has no affine parameters.
//! AdaFace checkpoints expect **BGR** input, `(x/255 - 0.5) / 0.5`; arcface_torch ones RGB.
//!
//! Inference only: BatchNorm uses its running statistics and dropout is the identity.
//! [`Module::forward`] returns the raw (not L2-normalised) embedding; AdaFace's `forward`
//! returns its L2-normalised version together with the norm.
//!
//! PyTorch state dicts also hold `*.num_batches_tracked` counters. They are not parameters
//! of this module; drop them when converting to safetensors ([`detect_config`] ignores them).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Module, Result, Tensor};
use candle_nn::{batch_norm, BatchNorm, BatchNormConfig, Linear, PReLU, VarBuilder};

use crate::error::ModelError;
use crate::mobilefacenet::ConvLayer;
use crate::weights::ParamLayout;

const BN_EPS: f64 = 1e-5;

/// Which state-dict naming (and shortcut convention) a checkpoint uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Flavour {
    /// insightface arcface_torch `iresnet.py` (`layer1.0.bn1.weight`, ...).
    ArcFace,
    /// mk-minchul/AdaFace `net.py` IR backbones (`body.0.res_layer.0.weight`, ...).
    AdaFace,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Config {
    /// Number of `IBasicBlock`s per stage.
    pub layers: [usize; 4],
    /// Output channels per stage (64/128/256/512 in every released model); the stem has `widths[0]`.
    pub widths: [usize; 4],
    /// Embedding dimension (`fc` outputs).
    pub num_features: usize,
    /// Square input side; the trunk downsamples by 16 (112 -> 7x7 before `fc`).
    pub input_size: usize,
    pub flavour: Flavour,
}

impl Config {
    fn arcface(layers: [usize; 4]) -> Self {
        Self { layers, widths: [64, 128, 256, 512], num_features: 512, input_size: 112, flavour: Flavour::ArcFace }
    }

    pub fn iresnet18() -> Self {
        Self::arcface([2, 2, 2, 2])
    }

    pub fn iresnet34() -> Self {
        Self::arcface([3, 4, 6, 3])
    }

    pub fn iresnet50() -> Self {
        Self::arcface([3, 4, 14, 3])
    }

    pub fn iresnet100() -> Self {
        Self::arcface([3, 13, 30, 3])
    }

    /// AdaFace `ir_18` / `ir_34` / `ir_50` / `ir_101` (the last has the 100-layer block counts).
    pub fn adaface_ir18() -> Self {
        Self::iresnet18().with_flavour(Flavour::AdaFace)
    }

    pub fn adaface_ir34() -> Self {
        Self::iresnet34().with_flavour(Flavour::AdaFace)
    }

    pub fn adaface_ir50() -> Self {
        Self::iresnet50().with_flavour(Flavour::AdaFace)
    }

    pub fn adaface_ir101() -> Self {
        Self::iresnet100().with_flavour(Flavour::AdaFace)
    }

    /// IResNet-18 topology with 1/8 of the channels and a 16-D embedding, for tests.
    pub fn tiny() -> Self {
        Self { widths: [8, 16, 32, 64], num_features: 16, ..Self::iresnet18() }
    }

    pub fn with_flavour(self, flavour: Flavour) -> Self {
        Self { flavour, ..self }
    }

    /// Nominal depth, 2 * blocks + 2 (18, 34, 50, 100).
    pub fn depth(&self) -> usize {
        2 * self.layers.iter().sum::<usize>() + 2
    }

    /// `iresnet50`, `adaface_ir101`, or `iresnet-custom` for non-standard widths / input sizes.
    pub fn arch_name(&self) -> String {
        let standard = self.widths == [64, 128, 256, 512] && self.input_size == 112;
        match (self.flavour, standard) {
            (_, false) => "iresnet-custom".into(),
            (Flavour::ArcFace, true) => format!("iresnet{}", self.depth()),
            (Flavour::AdaFace, true) if self.depth() == 100 => "adaface_ir101".into(),
            (Flavour::AdaFace, true) => format!("adaface_ir{}", self.depth()),
        }
    }

    fn final_size(&self) -> usize {
        self.input_size / 16
    }
}

/// Eval-mode BatchNorm: running statistics folded once into a per-channel `scale`/`shift`.
#[derive(Debug, Clone)]
pub struct FrozenBatchNorm {
    /// The BatchNorm as loaded (running stats and, when affine, weight/bias).
    pub bn: BatchNorm,
    /// `weight / sqrt(running_var + eps)`, shape (C,).
    pub scale: Tensor,
    /// `bias - running_mean * scale`, shape (C,).
    pub shift: Tensor,
}

impl FrozenBatchNorm {
    fn new(channels: usize, affine: bool, vb: VarBuilder) -> Result<Self> {
        Self::build(channels, affine, BN_EPS, vb)
    }

    /// An affine BatchNorm with another epsilon than IResNet's (other exporters' layers).
    pub(crate) fn with_eps(channels: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        Self::build(channels, true, eps, vb)
    }

    fn build(channels: usize, affine: bool, eps: f64, vb: VarBuilder) -> Result<Self> {
        let cfg = BatchNormConfig { eps, affine, ..Default::default() };
        let bn = batch_norm(channels, cfg, vb)?;
        let inv_std = (bn.running_var() + eps)?.sqrt()?.recip()?;
        let (scale, shift) = match bn.weight_and_bias() {
            Some((w, b)) => {
                let scale = (w * &inv_std)?;
                let shift = (b - (bn.running_mean() * &scale)?)?;
                (scale, shift)
            }
            None => (inv_std.clone(), (bn.running_mean() * &inv_std)?.neg()?),
        };
        Ok(Self { bn, scale, shift })
    }
}

impl Module for FrozenBatchNorm {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let c = self.scale.dim(0)?;
        let mut shape = vec![1; xs.rank()];
        if xs.rank() < 2 || xs.dim(1)? != c {
            candle_core::bail!("batch-norm over {c} channels got input of shape {:?}", xs.shape());
        }
        shape[1] = c;
        xs.broadcast_mul(&self.scale.reshape(shape.as_slice())?)?.broadcast_add(&self.shift.reshape(shape.as_slice())?)
    }
}

fn conv(in_c: usize, out_c: usize, kernel: usize, stride: usize, vb: VarBuilder) -> Result<ConvLayer> {
    ConvLayer::without_bias(in_c, out_c, kernel, stride, kernel / 2, 1, vb)
}

/// The residual path's partner in an [`IBasicBlock`].
#[derive(Debug, Clone)]
pub enum Shortcut {
    Identity,
    /// AdaFace's `MaxPool2d(1, stride)`: keep every `stride`-th row and column.
    Subsample(usize),
    /// 1x1 conv with the block stride + BatchNorm (`downsample.{0,1}` / `shortcut_layer.{0,1}`).
    Projection(ConvLayer, FrozenBatchNorm),
}

impl Module for Shortcut {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        match self {
            Shortcut::Identity => Ok(xs.clone()),
            Shortcut::Subsample(s) => subsample(xs, *s),
            Shortcut::Projection(conv, bn) => bn.forward(&conv.forward(xs)?),
        }
    }
}

/// Every `stride`-th row and column. Same values as `MaxPool2d(1, stride)`, but through
/// `index_select`, because candle has no backward for pooling with kernel != stride.
fn subsample(xs: &Tensor, stride: usize) -> Result<Tensor> {
    let (_, _, h, w) = xs.dims4()?;
    let rows: Vec<u32> = (0..h as u32).step_by(stride).collect();
    let cols: Vec<u32> = (0..w as u32).step_by(stride).collect();
    let rows = Tensor::new(rows.as_slice(), xs.device())?;
    let cols = Tensor::new(cols.as_slice(), xs.device())?;
    xs.index_select(&rows, 2)?.index_select(&cols, 3)
}

/// Pre-activation basic block: BN -> conv3x3 -> BN -> PReLU -> conv3x3(stride) -> BN, plus shortcut.
#[derive(Debug, Clone)]
pub struct IBasicBlock {
    pub bn1: FrozenBatchNorm,
    pub conv1: ConvLayer,
    pub bn2: FrozenBatchNorm,
    pub prelu: PReLU,
    pub conv2: ConvLayer,
    pub bn3: FrozenBatchNorm,
    pub shortcut: Shortcut,
}

impl IBasicBlock {
    fn new(in_c: usize, out_c: usize, stride: usize, flavour: Flavour, vb: VarBuilder) -> Result<Self> {
        // Names of bn1, conv1, bn2, prelu, conv2, bn3, shortcut conv, shortcut BN.
        let names = match flavour {
            Flavour::ArcFace => ["bn1", "conv1", "bn2", "prelu", "conv2", "bn3", "downsample.0", "downsample.1"],
            Flavour::AdaFace => [
                "res_layer.0",
                "res_layer.1",
                "res_layer.2",
                "res_layer.3",
                "res_layer.4",
                "res_layer.5",
                "shortcut_layer.0",
                "shortcut_layer.1",
            ],
        };
        let projection = match flavour {
            Flavour::ArcFace => stride != 1 || in_c != out_c,
            Flavour::AdaFace => in_c != out_c,
        };
        let shortcut = |vb: &VarBuilder| -> Result<Shortcut> {
            Ok(if projection {
                let conv = conv(in_c, out_c, 1, stride, vb.pp(names[6]))?;
                Shortcut::Projection(conv, FrozenBatchNorm::new(out_c, true, vb.pp(names[7]))?)
            } else if stride != 1 {
                Shortcut::Subsample(stride)
            } else {
                Shortcut::Identity
            })
        };
        // Build in each source's registration order so the recorded layout follows its state dict.
        let early = match flavour {
            Flavour::AdaFace => Some(shortcut(&vb)?),
            Flavour::ArcFace => None,
        };
        let bn1 = FrozenBatchNorm::new(in_c, true, vb.pp(names[0]))?;
        let conv1 = conv(in_c, out_c, 3, 1, vb.pp(names[1]))?;
        let bn2 = FrozenBatchNorm::new(out_c, true, vb.pp(names[2]))?;
        let prelu = candle_nn::prelu(Some(out_c), vb.pp(names[3]))?;
        let conv2 = conv(out_c, out_c, 3, stride, vb.pp(names[4]))?;
        let bn3 = FrozenBatchNorm::new(out_c, true, vb.pp(names[5]))?;
        let shortcut = match early {
            Some(s) => s,
            None => shortcut(&vb)?,
        };
        Ok(Self { bn1, conv1, bn2, prelu, conv2, bn3, shortcut })
    }
}

impl Module for IBasicBlock {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let ys = self.conv1.forward(&self.bn1.forward(xs)?)?;
        let ys = self.prelu.forward(&self.bn2.forward(&ys)?)?;
        let ys = self.bn3.forward(&self.conv2.forward(&ys)?)?;
        ys + self.shortcut.forward(xs)?
    }
}

#[derive(Debug, Clone)]
pub struct IResNet {
    pub conv1: ConvLayer,
    pub bn1: FrozenBatchNorm,
    pub prelu: PReLU,
    /// `layer1..layer4`, one `Vec` of blocks per stage.
    pub stages: Vec<Vec<IBasicBlock>>,
    pub bn2: FrozenBatchNorm,
    pub fc: Linear,
    pub features: FrozenBatchNorm,
    pub config: Config,
}

impl IResNet {
    pub fn new(config: &Config, vb: VarBuilder) -> Result<Self> {
        if config.input_size < 16 || config.final_size() * 16 != config.input_size {
            candle_core::bail!("IResNet input size must be a positive multiple of 16, got {}", config.input_size);
        }
        let ada = config.flavour == Flavour::AdaFace;
        let p = |arc: &str, ada_name: &str| vb.pp(if ada { ada_name } else { arc });
        let w0 = config.widths[0];
        let conv1 = conv(3, w0, 3, 1, p("conv1", "input_layer.0"))?;
        let bn1 = FrozenBatchNorm::new(w0, true, p("bn1", "input_layer.1"))?;
        let prelu = candle_nn::prelu(Some(w0), p("prelu", "input_layer.2"))?;
        let mut stages = Vec::with_capacity(4);
        let (mut in_c, mut index) = (w0, 0);
        for (k, (&n, &out_c)) in config.layers.iter().zip(&config.widths).enumerate() {
            let mut blocks = Vec::with_capacity(n);
            for i in 0..n {
                let vb_block = if ada { vb.pp(format!("body.{index}")) } else { vb.pp(format!("layer{}.{i}", k + 1)) };
                let stride = if i == 0 { 2 } else { 1 };
                blocks.push(IBasicBlock::new(in_c, out_c, stride, config.flavour, vb_block)?);
                in_c = out_c;
                index += 1;
            }
            stages.push(blocks);
        }
        let bn2 = FrozenBatchNorm::new(in_c, true, p("bn2", "output_layer.0"))?;
        let s = config.final_size();
        let fc = candle_nn::linear(in_c * s * s, config.num_features, p("fc", "output_layer.3"))?;
        // AdaFace's final BatchNorm1d is affine=False.
        let features = FrozenBatchNorm::new(config.num_features, !ada, p("features", "output_layer.4"))?;
        Ok(Self { conv1, bn1, prelu, stages, bn2, fc, features, config: config.clone() })
    }

    /// Every parameter name and shape of `config`, in construction order.
    pub fn layout(config: &Config) -> crate::Result<ParamLayout> {
        ParamLayout::record(|vb| IResNet::new(config, vb))
    }
}

impl Module for IResNet {
    /// `xs`: (B, 3, S, S) normalised input with S = `config.input_size`; returns (B, num_features).
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let s = self.config.input_size;
        match xs.dims() {
            [_, 3, h, w] if *h == s && *w == s => {}
            got => candle_core::bail!("IResNet expects input of shape (B, 3, {s}, {s}), got {got:?}"),
        }
        let xs = self.prelu.forward(&self.bn1.forward(&self.conv1.forward(xs)?)?)?;
        let xs = self.stages.iter().flatten().try_fold(xs, |x, b| b.forward(&x))?;
        // Dropout is the identity at inference.
        let xs = self.bn2.forward(&xs)?.flatten_from(1)?;
        self.features.forward(&self.fc.forward(&xs)?)
    }
}

/// Infers the configuration of an arcface_torch or AdaFace IResNet state dict from its tensor
/// names and shapes (block counts, widths, embedding size, input size, flavour). Returns
/// `None` unless the names and shapes match the inferred configuration exactly.
/// `*.num_batches_tracked` entries are ignored.
pub fn detect_config<'a>(params: impl IntoIterator<Item = (&'a str, &'a [usize])>) -> Option<Config> {
    let shapes: HashMap<&str, &[usize]> =
        params.into_iter().filter(|(n, _)| !n.ends_with(".num_batches_tracked")).collect();
    let out_channels = |name: &str| shapes.get(name).and_then(|s| s.first().copied());
    let (flavour, fc) = if shapes.contains_key("conv1.weight") {
        (Flavour::ArcFace, "fc.weight")
    } else if shapes.contains_key("input_layer.0.weight") {
        (Flavour::AdaFace, "output_layer.3.weight")
    } else {
        return None;
    };
    let mut layers = [0usize; 4];
    let mut widths = [0usize; 4];
    match flavour {
        Flavour::ArcFace => {
            for k in 0..4 {
                widths[k] = out_channels(&format!("layer{}.0.conv1.weight", k + 1))?;
                while shapes.contains_key(format!("layer{}.{}.conv1.weight", k + 1, layers[k]).as_str()) {
                    layers[k] += 1;
                }
            }
        }
        Flavour::AdaFace => {
            // Stages are runs of equal width along `body`.
            let mut k = 0;
            let mut i = 0;
            while let Some(c) = out_channels(&format!("body.{i}.res_layer.1.weight")) {
                if layers[k] > 0 && c != widths[k] {
                    k += 1;
                    if k == 4 {
                        return None;
                    }
                }
                widths[k] = c;
                layers[k] += 1;
                i += 1;
            }
        }
    }
    if layers.contains(&0) {
        return None;
    }
    let fc = shapes.get(fc)?;
    let (num_features, fc_in) = match fc {
        [o, i] => (*o, *i),
        _ => return None,
    };
    let cells = fc_in / widths[3];
    let side = (cells as f64).sqrt().round() as usize;
    if side == 0 || side * side * widths[3] != fc_in {
        return None;
    }
    let config = Config { layers, widths, num_features, input_size: side * 16, flavour };
    let layout = IResNet::layout(&config).ok()?;
    let exact = layout.params.len() == shapes.len()
        && layout.params.iter().all(|(n, s)| shapes.get(n.as_str()).is_some_and(|g| *g == s.as_slice()));
    exact.then_some(config)
}

/// [`detect_config`] on a safetensors file, reading only its header.
pub fn detect_config_file(path: &Path) -> crate::Result<Config> {
    let unknown = |reason: String| ModelError::UnknownArchitecture { path: path.to_path_buf(), reason };
    let corrupt = |reason: String| ModelError::CorruptSafetensors { path: path.to_path_buf(), reason };
    let mut file = facelens_core::fs::open_regular(path).map_err(|e| ModelError::io(path, e))?;
    let header = read_header(&mut file).map_err(|e| corrupt(e.to_string()))?;
    let entries: HashMap<String, serde_json::Value> =
        serde_json::from_slice(&header).map_err(|e| corrupt(format!("bad header: {e}")))?;
    let mut params = Vec::with_capacity(entries.len());
    for (name, info) in entries.iter().filter(|(n, _)| n.as_str() != "__metadata__") {
        let shape: Vec<usize> = info
            .get("shape")
            .and_then(|s| serde_json::from_value(s.clone()).ok())
            .ok_or_else(|| corrupt(format!("tensor `{name}` has no shape")))?;
        params.push((name.as_str(), shape));
    }
    detect_config(params.iter().map(|(n, s)| (*n, s.as_slice())))
        .ok_or_else(|| unknown("tensor names and shapes match no arcface_torch or AdaFace IResNet".into()))
}

fn read_header(file: &mut std::fs::File) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut len = [0u8; 8];
    file.read_exact(&mut len)?;
    let len = u64::from_le_bytes(len);
    if len > 100_000_000 {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("header of {len} bytes")));
    }
    let mut header = vec![0u8; len as usize];
    file.read_exact(&mut header)?;
    Ok(header)
}
