//! SFace as released in the OpenCV model zoo (`face_recognition_sface_2021dec`).
//!
//! Zhong et al., "SFace: Sigmoid-Constrained Hypersphere Loss for Robust Face Recognition"
//! (IEEE TIP 2021). The released network is a MobileNet-style chain without residuals:
//! a 3x3 stem, then depthwise-separable blocks (`conv_{i}_dw` 3x3 depthwise, `conv_{i}` 1x1),
//! every convolution followed by BatchNorm and PReLU; then BatchNorm `bn1`, flatten
//! (1024x7x7), `pre_fc1` and a BatchNorm1d `fc1` giving a 128-D embedding. Parameter names
//! follow the released (MXNet-exported) graph: `conv_1_conv2d`, `conv_1_batchnorm`,
//! `conv_1_relu`, ...

use candle_core::{Module, Result, Tensor};
use candle_nn::{linear, Linear, VarBuilder};

use crate::iresnet::FrozenBatchNorm;
use crate::mobilefacenet::ConvLayer;

/// BatchNorm epsilon of the convolutional layers in the released graph.
const CONV_BN_EPS: f64 = 1e-3;
/// BatchNorm epsilon of `bn1` and `fc1`.
const HEAD_BN_EPS: f64 = 2e-5;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Config {
    /// Channels of the 3x3 stem `conv_1`.
    pub stem_channels: usize,
    /// Depthwise-separable blocks `conv_2`, `conv_3`, ...: (output channels, depthwise stride).
    pub blocks: Vec<(usize, usize)>,
    pub num_features: usize,
    pub input_size: usize,
}

impl Config {
    /// `face_recognition_sface_2021dec` of the OpenCV zoo.
    pub fn sface_2021dec() -> Self {
        let mut blocks = vec![(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)];
        blocks.extend([(512, 1); 5]);
        blocks.extend([(1024, 2), (1024, 1)]);
        Self { stem_channels: 32, blocks, num_features: 128, input_size: 112 }
    }

    /// A small variant for tests (same topology, few channels).
    pub fn tiny() -> Self {
        Self { stem_channels: 4, blocks: vec![(8, 2), (8, 1), (16, 2), (16, 2), (16, 2)], num_features: 8, input_size: 112 }
    }

    fn final_size(&self) -> usize {
        self.blocks.iter().fold(self.input_size, |s, &(_, stride)| s.div_ceil(stride))
    }
}

/// Convolution (no bias) -> BatchNorm -> PReLU, named `{name}_conv2d`, `{name}_batchnorm`,
/// `{name}_relu`.
#[derive(Debug, Clone)]
pub struct ConvBnPrelu {
    pub conv: ConvLayer,
    pub bn: FrozenBatchNorm,
    pub prelu: candle_nn::PReLU,
}

impl ConvBnPrelu {
    #[allow(clippy::too_many_arguments)]
    fn new(
        in_c: usize,
        out_c: usize,
        kernel: usize,
        stride: usize,
        groups: usize,
        name: &str,
        vb: &VarBuilder,
    ) -> Result<Self> {
        let conv = ConvLayer::without_bias(in_c, out_c, kernel, stride, kernel / 2, groups, vb.pp(format!("{name}_conv2d")))?;
        let bn = FrozenBatchNorm::with_eps(out_c, CONV_BN_EPS, vb.pp(format!("{name}_batchnorm")))?;
        let prelu = candle_nn::prelu(Some(out_c), vb.pp(format!("{name}_relu")))?;
        Ok(Self { conv, bn, prelu })
    }
}

impl Module for ConvBnPrelu {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        self.prelu.forward(&self.bn.forward(&self.conv.forward(xs)?)?)
    }
}

#[derive(Debug, Clone)]
pub struct SFace {
    /// `conv_1`, then `conv_2_dw`, `conv_2`, `conv_3_dw`, ... in forward order.
    pub layers: Vec<ConvBnPrelu>,
    pub bn1: FrozenBatchNorm,
    pub pre_fc1: Linear,
    pub fc1: FrozenBatchNorm,
    pub config: Config,
}

impl SFace {
    pub fn new(config: &Config, vb: VarBuilder) -> Result<Self> {
        let mut layers = vec![ConvBnPrelu::new(3, config.stem_channels, 3, 1, 1, "conv_1", &vb)?];
        let mut c = config.stem_channels;
        for (i, &(out_c, stride)) in config.blocks.iter().enumerate() {
            let n = i + 2;
            layers.push(ConvBnPrelu::new(c, c, 3, stride, c, &format!("conv_{n}_dw"), &vb)?);
            layers.push(ConvBnPrelu::new(c, out_c, 1, 1, 1, &format!("conv_{n}"), &vb)?);
            c = out_c;
        }
        let bn1 = FrozenBatchNorm::with_eps(c, HEAD_BN_EPS, vb.pp("bn1"))?;
        let s = config.final_size();
        let pre_fc1 = linear(c * s * s, config.num_features, vb.pp("pre_fc1"))?;
        let fc1 = FrozenBatchNorm::with_eps(config.num_features, HEAD_BN_EPS, vb.pp("fc1"))?;
        Ok(Self { layers, bn1, pre_fc1, fc1, config: config.clone() })
    }

    /// Module prefixes paired with their ONNX op, in graph order (for ONNX import).
    pub fn onnx_order(&self) -> Vec<(String, &'static str)> {
        let mut names = vec!["conv_1".to_string()];
        for n in 2..self.config.blocks.len() + 2 {
            names.push(format!("conv_{n}_dw"));
            names.push(format!("conv_{n}"));
        }
        let mut out = Vec::new();
        for name in names {
            out.push((format!("{name}_conv2d"), "Conv"));
            out.push((format!("{name}_batchnorm"), "BatchNormalization"));
            out.push((format!("{name}_relu"), "PRelu"));
        }
        out.push(("bn1".into(), "BatchNormalization"));
        out.push(("pre_fc1".into(), "Gemm"));
        out.push(("fc1".into(), "BatchNormalization"));
        out
    }
}

impl Module for SFace {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let x = self.layers.iter().try_fold(xs.clone(), |x, l| l.forward(&x))?;
        let x = self.bn1.forward(&x)?.flatten_from(1)?;
        self.fc1.forward(&self.pre_fc1.forward(&x)?)
    }
}
