//! MobileFaceNet as shipped in InsightFace's `buffalo_s` pack (`w600k_mbf`).
//!
//! Chen et al., "MobileFaceNets: Efficient CNNs for Accurate Real-Time Face Verification
//! on Mobile Devices" (2018); layout and parameter names follow insightface
//! `recognition/arcface_torch/backbones/mobilefacenet.py` (scale 2, blocks 1/4/6/2).
//! The released ONNX has every BatchNorm2d folded into the preceding convolution, so
//! each `ConvBlock` here is conv(+bias) -> PReLU (`layers.0`, `layers.2`, with the
//! BatchNorm slot `layers.1` folded away). The head of `w600k_mbf` is a 1x1 conv to 64
//! channels + PReLU, flatten (64*7*7), `fc` and a BatchNorm1d `features`.

use candle_core::{Module, Result, Tensor};
use candle_nn::{batch_norm, conv2d, linear, BatchNorm, Conv2d, Conv2dConfig, Linear, ModuleT, PReLU, VarBuilder};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Config {
    /// Channel multiplier of arcface_torch's MobileFaceNet (64 * scale at the stem).
    pub scale: usize,
    /// Number of residual blocks per stage.
    pub blocks: [usize; 4],
    /// Channels of the 1x1 conv before flatten.
    pub head_channels: usize,
    pub num_features: usize,
    pub input_size: usize,
}

impl Config {
    /// `w600k_mbf` from insightface buffalo_s.
    pub fn w600k_mbf() -> Self {
        Self { scale: 2, blocks: [1, 4, 6, 2], head_channels: 64, num_features: 512, input_size: 112 }
    }

    /// A small variant for tests (same topology, few channels).
    pub fn tiny() -> Self {
        Self { scale: 1, blocks: [1, 1, 1, 1], head_channels: 4, num_features: 16, input_size: 112 }
    }

    fn final_size(&self) -> usize {
        self.input_size / 16
    }
}

/// Where a convolution sits in the network, kept so the reverse-mode engine can
/// replay the layer without candle's generic autograd.
#[derive(Debug, Clone)]
pub struct ConvLayer {
    pub conv: Conv2d,
    pub in_channels: usize,
    pub out_channels: usize,
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
    pub groups: usize,
}

impl ConvLayer {
    fn new(
        in_c: usize,
        out_c: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        groups: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let cfg = Conv2dConfig { stride, padding, groups, ..Default::default() };
        let conv = conv2d(in_c, out_c, kernel, cfg, vb)?;
        Ok(Self { conv, in_channels: in_c, out_channels: out_c, kernel, stride, padding, groups })
    }

    /// A convolution without bias (one followed by an unfolded BatchNorm).
    pub(crate) fn without_bias(
        in_c: usize,
        out_c: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        groups: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let cfg = Conv2dConfig { stride, padding, groups, ..Default::default() };
        let conv = candle_nn::conv2d_no_bias(in_c, out_c, kernel, cfg, vb)?;
        Ok(Self { conv, in_channels: in_c, out_channels: out_c, kernel, stride, padding, groups })
    }
}

impl Module for ConvLayer {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        self.conv.forward(xs)
    }
}

/// Conv (BN folded) -> PReLU.
#[derive(Debug, Clone)]
pub struct ConvBlock {
    pub conv: ConvLayer,
    pub prelu: PReLU,
}

impl ConvBlock {
    fn new(
        in_c: usize,
        out_c: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        groups: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let conv = ConvLayer::new(in_c, out_c, kernel, stride, padding, groups, vb.pp("layers.0"))?;
        let prelu = candle_nn::prelu(Some(out_c), vb.pp("layers.2"))?;
        Ok(Self { conv, prelu })
    }
}

impl Module for ConvBlock {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        self.prelu.forward(&self.conv.forward(xs)?)
    }
}

/// Inverted-residual unit: 1x1 expand + PReLU, depthwise 3x3 + PReLU, 1x1 linear projection.
#[derive(Debug, Clone)]
pub struct DepthWise {
    pub expand: ConvBlock,
    pub depthwise: ConvBlock,
    pub project: ConvLayer,
    pub residual: bool,
}

impl DepthWise {
    fn new(in_c: usize, out_c: usize, residual: bool, stride: usize, groups: usize, vb: VarBuilder) -> Result<Self> {
        let expand = ConvBlock::new(in_c, groups, 1, 1, 0, 1, vb.pp("layers.0"))?;
        let depthwise = ConvBlock::new(groups, groups, 3, stride, 1, groups, vb.pp("layers.1"))?;
        let project = ConvLayer::new(groups, out_c, 1, 1, 0, 1, vb.pp("layers.2.layers.0"))?;
        Ok(Self { expand, depthwise, project, residual })
    }
}

impl Module for DepthWise {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let ys = self.project.forward(&self.depthwise.forward(&self.expand.forward(xs)?)?)?;
        if self.residual {
            ys + xs
        } else {
            Ok(ys)
        }
    }
}

/// One stage of the trunk, in the order of arcface_torch's `self.layers`.
#[derive(Debug, Clone)]
pub enum Stage {
    Conv(ConvBlock),
    Unit(DepthWise),
    Residual(Vec<DepthWise>),
}

impl Module for Stage {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        match self {
            Stage::Conv(b) => b.forward(xs),
            Stage::Unit(u) => u.forward(xs),
            Stage::Residual(units) => units.iter().try_fold(xs.clone(), |x, u| u.forward(&x)),
        }
    }
}

#[derive(Debug, Clone)]
pub struct MobileFaceNet {
    pub stages: Vec<Stage>,
    pub conv_sep: ConvBlock,
    pub conv_head: ConvBlock,
    pub fc: Linear,
    pub features: BatchNorm,
    pub config: Config,
}

impl MobileFaceNet {
    pub fn new(config: &Config, vb: VarBuilder) -> Result<Self> {
        let c1 = 64 * config.scale;
        let c2 = 128 * config.scale;
        let vl = vb.pp("layers");
        let residual = |c: usize, n: usize, groups: usize, vb: VarBuilder| -> Result<Stage> {
            let units =
                (0..n).map(|i| DepthWise::new(c, c, true, 1, groups, vb.pp(format!("layers.{i}")))).collect::<Result<_>>()?;
            Ok(Stage::Residual(units))
        };
        // Expansion widths of arcface_torch (128/128/256/256/512/256 at scale 2).
        let (g1, g2, g3) = (64 * config.scale, 128 * config.scale, 256 * config.scale);
        let mut stages = vec![Stage::Conv(ConvBlock::new(3, c1, 3, 2, 1, 1, vl.pp("0"))?)];
        stages.push(if config.blocks[0] == 1 {
            Stage::Conv(ConvBlock::new(c1, c1, 3, 1, 1, 32 * config.scale, vl.pp("1"))?)
        } else {
            residual(c1, config.blocks[0], g1, vl.pp("1"))?
        });
        stages.push(Stage::Unit(DepthWise::new(c1, c1, false, 2, g1, vl.pp("2"))?));
        stages.push(residual(c1, config.blocks[1], g1, vl.pp("3"))?);
        stages.push(Stage::Unit(DepthWise::new(c1, c2, false, 2, g2, vl.pp("4"))?));
        stages.push(residual(c2, config.blocks[2], g2, vl.pp("5"))?);
        stages.push(Stage::Unit(DepthWise::new(c2, c2, false, 2, g3, vl.pp("6"))?));
        stages.push(residual(c2, config.blocks[3], g2, vl.pp("7"))?);
        let conv_sep = ConvBlock::new(c2, 512, 1, 1, 0, 1, vb.pp("conv_sep"))?;
        let conv_head = ConvBlock::new(512, config.head_channels, 1, 1, 0, 1, vb.pp("conv_head"))?;
        let s = config.final_size();
        let fc = linear(config.head_channels * s * s, config.num_features, vb.pp("fc"))?;
        let features = batch_norm(config.num_features, 1e-5, vb.pp("features"))?;
        Ok(Self { stages, conv_sep, conv_head, fc, features, config: config.clone() })
    }

    /// Module prefixes paired with their ONNX op, in graph order (for ONNX import).
    pub fn onnx_order(&self) -> Vec<(String, &'static str)> {
        let mut out = Vec::new();
        let block = |out: &mut Vec<(String, &'static str)>, p: &str| {
            out.push((format!("{p}.layers.0"), "Conv"));
            out.push((format!("{p}.layers.2"), "PRelu"));
        };
        let unit = |out: &mut Vec<(String, &'static str)>, p: &str| {
            block(out, &format!("{p}.layers.0"));
            block(out, &format!("{p}.layers.1"));
            out.push((format!("{p}.layers.2.layers.0"), "Conv"));
        };
        for (i, stage) in self.stages.iter().enumerate() {
            let p = format!("layers.{i}");
            match stage {
                Stage::Conv(_) => block(&mut out, &p),
                Stage::Unit(_) => unit(&mut out, &p),
                Stage::Residual(units) => {
                    for j in 0..units.len() {
                        unit(&mut out, &format!("{p}.layers.{j}"));
                    }
                }
            }
        }
        block(&mut out, "conv_sep");
        block(&mut out, "conv_head");
        out.push(("fc".into(), "Gemm"));
        out.push(("features".into(), "BatchNormalization"));
        out
    }
}

impl Module for MobileFaceNet {
    /// `xs`: (B, 3, 112, 112) normalised input; returns the raw (not L2-normalised) embedding.
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let xs = self.stages.iter().try_fold(xs.clone(), |x, s| s.forward(&x))?;
        let xs = self.conv_head.forward(&self.conv_sep.forward(&xs)?)?;
        let xs = xs.flatten_from(1)?;
        self.features.forward_t(&self.fc.forward(&xs)?, false)
    }
}
