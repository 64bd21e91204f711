//! SCRFD-500M face detector with five keypoints (`scrfd_500m_bnkps`), as a candle module.
//!
//! Guo et al., "Sample and Computation Redistribution for Efficient Face Detection" (2021).
//! Layout and parameter names follow the mmdet code in insightface
//! `detection/scrfd/` (`mmdet/models/backbones/mobilenet.py` `MobileNetV1`, mmdet `PAFPN`,
//! `mmdet/models/dense_heads/scrfd_head.py` `SCRFDHead`, config
//! `configs/scrfd/scrfd_500m_bnkps.py`); the post-processing that consumes the head lives in
//! [`crate::detect`] and follows `python-package/insightface/model_zoo/scrfd.py`. The released
//! ONNX (`scrfd_500m_bnkps.onnx`, opset 11) has every BatchNorm folded into the preceding
//! convolution, so each `conv -> BN -> ReLU` here is one biased conv (the BN slot keeps its
//! index: `conv_dw` is `.0` depthwise and `.3` pointwise, the ReLUs are parameter-free). The
//! forward returns, per stride 8/16/32, exactly the three ONNX head outputs
//! `score_S (N, H*W*2, 1)` (after sigmoid), `bbox_S (N, H*W*2, 4)` and `kps_S (N, H*W*2, 10)`,
//! in units of the stride, anchors ordered (row, column, anchor).

use std::path::Path;
use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Module, Shape, Tensor};
use candle_nn::{conv2d, Conv2d, Conv2dConfig, VarBuilder};
use sha2::{Digest, Sha256};

use crate::backbone::{ImportReport, META_ARCH, META_CONFIG};
use crate::error::{ModelError, Result};
use crate::im2col::{im2col, matmul, valid_columns, Window};
use crate::onnx::{attr_i, attr_ints, OnnxGraph};
use crate::weights::{self, ParamLayout};

/// Value of `facelens.arch` in checkpoints imported by [`import_onnx`].
pub const ARCH: &str = "scrfd";

/// Hyper-parameters of an SCRFD detector with a `MobileNetV1` backbone and PAFPN neck.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Config {
    /// `block_cfg.stage_planes` of `MobileNetV1`: stem conv, stem dw-block, then the four stages.
    pub stage_planes: [usize; 6],
    /// `block_cfg.stage_blocks`: `conv_dw` blocks per stage (the first one has stride 2).
    pub stage_blocks: [usize; 4],
    /// PAFPN `out_channels`.
    pub neck_channels: usize,
    /// `SCRFDHead.feat_channels`.
    pub feat_channels: usize,
    /// `SCRFDHead.stacked_convs` (depthwise-separable conv modules per stride).
    pub stacked_convs: usize,
    /// Anchors per feature-map cell (`len(scales) * len(ratios)`).
    pub num_anchors: usize,
    /// Keypoints per face.
    pub num_keypoints: usize,
}

impl Config {
    /// `scrfd_500m_bnkps` (insightface `buffalo_s` detector).
    pub fn scrfd_500m_bnkps() -> Self {
        Self {
            stage_planes: [16, 16, 40, 72, 152, 288],
            stage_blocks: [2, 3, 2, 6],
            neck_channels: 16,
            feat_channels: 64,
            stacked_convs: 2,
            num_anchors: 2,
            num_keypoints: 5,
        }
    }

    /// A small variant for tests (same topology, few channels).
    pub fn tiny() -> Self {
        Self {
            stage_planes: [4, 4, 8, 8, 8, 8],
            stage_blocks: [1, 1, 1, 1],
            neck_channels: 4,
            feat_channels: 8,
            stacked_convs: 1,
            num_anchors: 2,
            num_keypoints: 5,
        }
    }

    /// Feature strides of the three head levels (PAFPN `start_level = 1`).
    pub fn strides(&self) -> [usize; 3] {
        STRIDES
    }
}

impl Default for Config {
    fn default() -> Self {
        Self::scrfd_500m_bnkps()
    }
}

/// Strides of the head levels; the input side must be a multiple of the largest.
pub const STRIDES: [usize; 3] = [8, 16, 32];

/// Geometry of one convolution, kept so the ONNX importer can check each node's attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvSpec {
    pub in_channels: usize,
    pub out_channels: usize,
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
    pub groups: usize,
}

impl ConvSpec {
    pub fn is_depthwise(&self) -> bool {
        self.groups == self.in_channels && self.groups == self.out_channels
    }

    fn out_size(&self, h: usize, w: usize) -> (usize, usize) {
        let o = |n: usize| (n + 2 * self.padding).saturating_sub(self.kernel) / self.stride + 1;
        (o(h), o(w))
    }
}

/// Inference-only CPU convolution of one [`ConvUnit`] (NCHW f32, bias and optional ReLU fused).
#[derive(Debug)]
pub struct CpuConv {
    spec: ConvSpec,
    relu: bool,
    /// `[out][in/groups][k][k]`.
    weight: Vec<f32>,
    bias: Vec<f32>,
}

impl CpuConv {
    /// One image: `x` is `[cin][h*w]`, `y` is `[cout][oh*ow]`.
    fn image(&self, x: &[f32], h: usize, w: usize, y: &mut [f32], scratch: &mut Vec<f32>) {
        let s = self.spec;
        let (oh, ow) = s.out_size(h, w);
        let op = oh * ow;
        if s.is_depthwise() {
            for c in 0..s.out_channels {
                let kk = s.kernel * s.kernel;
                depthwise_plane(
                    &s,
                    &x[c * h * w..(c + 1) * h * w],
                    h,
                    w,
                    &self.weight[c * kk..(c + 1) * kk],
                    self.bias[c],
                    &mut y[c * op..(c + 1) * op],
                    ow,
                );
            }
        } else {
            for (plane, &b) in y.chunks_exact_mut(op).zip(&self.bias) {
                plane.fill(b);
            }
            let kk = s.in_channels * s.kernel * s.kernel;
            if s.kernel == 1 && s.stride == 1 && s.padding == 0 {
                matmul(s.out_channels, op, kk, &self.weight, kk, 1, x, op, 1, y, true);
            } else {
                let win = Window { channels: s.in_channels, h, w, k: s.kernel, stride: s.stride, pad: s.padding };
                scratch.resize(kk * op, 0.0);
                im2col(&win, x, 1, scratch);
                matmul(s.out_channels, op, kk, &self.weight, kk, 1, scratch, op, 1, y, true);
            }
        }
        if self.relu {
            y.iter_mut().for_each(|v| *v = v.max(0.0));
        }
    }
}

impl CustomOp1 for CpuConv {
    fn name(&self) -> &'static str {
        "scrfd-conv2d"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(data) = storage else { candle_core::bail!("scrfd-conv2d: f32 input expected") };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("scrfd-conv2d: contiguous input expected")
        };
        let x = &data[start..end];
        let (n, c, h, w) = layout.shape().dims4()?;
        let s = self.spec;
        if c != s.in_channels || h + 2 * s.padding < s.kernel || w + 2 * s.padding < s.kernel {
            candle_core::bail!("scrfd-conv2d: input {:?} does not fit {s:?}", layout.shape().dims());
        }
        let (oh, ow) = s.out_size(h, w);
        let mut y = vec![0f32; n * s.out_channels * oh * ow];
        let mut scratch = Vec::new();
        for (xi, yi) in x.chunks_exact(c * h * w).zip(y.chunks_exact_mut(s.out_channels * oh * ow)) {
            self.image(xi, h, w, yi, &mut scratch);
        }
        Ok((CpuStorage::F32(y), Shape::from((n, s.out_channels, oh, ow))))
    }
}

/// Input row of output row `oy` and kernel row `ky`, if inside the image.
fn src_row(s: &ConvSpec, h: usize, oy: usize, ky: usize) -> Option<usize> {
    let iy = (oy * s.stride + ky).checked_sub(s.padding)?;
    (iy < h).then_some(iy)
}

/// Splits a row into `stride` phases, `phases[p][j] = row[j * stride + p]`, so that strided
/// taps become contiguous (vectorisable) slices.
fn split_phases(row: &[f32], stride: usize, phases: &mut [Vec<f32>]) {
    for (p, ph) in phases.iter_mut().enumerate().take(stride) {
        ph.clear();
        ph.extend(row.iter().skip(p).step_by(stride));
    }
}

/// Direct depthwise convolution of one plane into `dst` (`oh * ow`), starting from `bias`.
#[allow(clippy::too_many_arguments)]
fn depthwise_plane(s: &ConvSpec, src: &[f32], h: usize, w: usize, wk: &[f32], bias: f32, dst: &mut [f32], ow: usize) {
    let (k, st, pad) = (s.kernel, s.stride, s.padding);
    let ranges: Vec<(usize, usize)> = (0..k).map(|kx| valid_columns(kx, st, pad, w, ow)).collect();
    let mut phases = vec![Vec::with_capacity(w / st + 1); st];
    for (oy, row) in dst.chunks_exact_mut(ow).enumerate() {
        row.fill(bias);
        for ky in 0..k {
            let Some(iy) = src_row(s, h, oy, ky) else { continue };
            let srow = &src[iy * w..(iy + 1) * w];
            if st > 1 {
                split_phases(srow, st, &mut phases);
            }
            for kx in 0..k {
                let wv = wk[ky * k + kx];
                let (lo, hi) = ranges[kx];
                if lo >= hi {
                    continue;
                }
                let first = lo * st + kx - pad;
                let taps = if st == 1 {
                    &srow[first..first + (hi - lo)]
                } else {
                    &phases[first % st][first / st..first / st + (hi - lo)]
                };
                for (d, &v) in row[lo..hi].iter_mut().zip(taps) {
                    *d += wv * v;
                }
            }
        }
    }
}

/// A biased convolution (BatchNorm folded in), optionally followed by ReLU.
///
/// On the CPU the forward runs through [`CpuConv`] (a direct depthwise kernel, im2col + GEMM
/// for dense convs, bias and ReLU fused): candle runs a depthwise conv as one small conv per
/// channel, which made SCRFD ~4x slower. Other devices use candle's `conv2d`.
#[derive(Debug, Clone)]
pub struct ConvUnit {
    /// Module prefix of the parameters (`<name>.weight`, `<name>.bias`).
    pub name: String,
    pub conv: Conv2d,
    pub spec: ConvSpec,
    pub relu: bool,
    cpu: Option<Arc<CpuConv>>,
}

impl ConvUnit {
    fn new(spec: ConvSpec, relu: bool, vb: VarBuilder) -> candle_core::Result<Self> {
        let cfg =
            Conv2dConfig { stride: spec.stride, padding: spec.padding, groups: spec.groups, ..Default::default() };
        let name = vb.prefix();
        let cpu_device = vb.device().is_cpu();
        let conv = conv2d(spec.in_channels, spec.out_channels, spec.kernel, cfg, vb)?;
        let cpu = if cpu_device && (spec.groups == 1 || spec.is_depthwise()) {
            let weight = conv.weight().to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
            let bias = match conv.bias() {
                Some(b) => b.to_dtype(DType::F32)?.to_vec1::<f32>()?,
                None => vec![0.0; spec.out_channels],
            };
            Some(Arc::new(CpuConv { spec, relu, weight, bias }))
        } else {
            None
        };
        Ok(Self { name, conv, spec, relu, cpu })
    }

    fn dense(
        cin: usize,
        cout: usize,
        kernel: usize,
        stride: usize,
        relu: bool,
        vb: VarBuilder,
    ) -> candle_core::Result<Self> {
        let spec = ConvSpec { in_channels: cin, out_channels: cout, kernel, stride, padding: kernel / 2, groups: 1 };
        Self::new(spec, relu, vb)
    }

    fn depthwise(c: usize, stride: usize, vb: VarBuilder) -> candle_core::Result<Self> {
        let spec = ConvSpec { in_channels: c, out_channels: c, kernel: 3, stride, padding: 1, groups: c };
        Self::new(spec, true, vb)
    }
}

impl Module for ConvUnit {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        if let Some(op) = &self.cpu {
            if xs.device().is_cpu() && xs.dtype() == DType::F32 {
                return xs.contiguous()?.apply_op1_no_bwd(op.as_ref());
            }
        }
        let ys = self.conv.forward(xs)?;
        if self.relu {
            ys.relu()
        } else {
            Ok(ys)
        }
    }
}

fn run(units: &[ConvUnit], xs: &Tensor) -> candle_core::Result<Tensor> {
    units.iter().try_fold(xs.clone(), |x, u| u.forward(&x))
}

/// `MobileNetV1` of SCRFD: `stem` (`conv_bn`, `conv_dw`) then `layer1..layer4` of `conv_dw`
/// blocks; returns the outputs of `layer2..layer4` (strides 8, 16, 32).
#[derive(Debug, Clone)]
pub struct MobileNetV1 {
    pub stem: Vec<ConvUnit>,
    pub layers: [Vec<ConvUnit>; 4],
}

impl MobileNetV1 {
    fn new(cfg: &Config, vb: VarBuilder) -> candle_core::Result<Self> {
        let p = cfg.stage_planes;
        // `conv_dw(inp, oup, stride)`: depthwise 3x3 (`.0`, BN `.1` folded) + pointwise 1x1 (`.3`).
        let conv_dw = |inp: usize, oup: usize, stride: usize, vb: VarBuilder| -> candle_core::Result<Vec<ConvUnit>> {
            Ok(vec![ConvUnit::depthwise(inp, stride, vb.pp("0"))?, ConvUnit::dense(inp, oup, 1, 1, true, vb.pp("3"))?])
        };
        let vs = vb.pp("stem");
        let mut stem = vec![ConvUnit::dense(3, p[0], 3, 2, true, vs.pp("0").pp("0"))?];
        stem.extend(conv_dw(p[0], p[1], 1, vs.pp("1"))?);
        let mut layers: [Vec<ConvUnit>; 4] = Default::default();
        for (i, &n) in cfg.stage_blocks.iter().enumerate() {
            let vl = vb.pp(format!("layer{}", i + 1));
            for j in 0..n {
                let (inp, stride) = if j == 0 { (p[i + 1], 2) } else { (p[i + 2], 1) };
                layers[i].extend(conv_dw(inp, p[i + 2], stride, vl.pp(j.to_string()))?);
            }
        }
        Ok(Self { stem, layers })
    }

    fn forward(&self, xs: &Tensor) -> candle_core::Result<[Tensor; 3]> {
        let x = run(&self.stem, xs)?;
        let x = run(&self.layers[0], &x)?;
        let c3 = run(&self.layers[1], &x)?;
        let c4 = run(&self.layers[2], &c3)?;
        let c5 = run(&self.layers[3], &c4)?;
        Ok([c3, c4, c5])
    }

    fn units(&self) -> impl Iterator<Item = &ConvUnit> {
        self.stem.iter().chain(self.layers.iter().flatten())
    }
}

/// mmdet `PAFPN` (no norm, no activation): FPN top-down with nearest upsampling, then a
/// bottom-up path of stride-2 convs.
#[derive(Debug, Clone)]
pub struct Pafpn {
    pub lateral_convs: Vec<ConvUnit>,
    pub fpn_convs: Vec<ConvUnit>,
    pub downsample_convs: Vec<ConvUnit>,
    pub pafpn_convs: Vec<ConvUnit>,
}

impl Pafpn {
    fn new(in_channels: &[usize], out: usize, vb: VarBuilder) -> candle_core::Result<Self> {
        let n = in_channels.len();
        let conv = |name: &str, i: usize| vb.pp(name).pp(i.to_string()).pp("conv");
        let lateral_convs = (0..n)
            .map(|i| ConvUnit::dense(in_channels[i], out, 1, 1, false, conv("lateral_convs", i)))
            .collect::<candle_core::Result<_>>()?;
        let fpn_convs = (0..n)
            .map(|i| ConvUnit::dense(out, out, 3, 1, false, conv("fpn_convs", i)))
            .collect::<candle_core::Result<_>>()?;
        let downsample_convs = (0..n - 1)
            .map(|i| ConvUnit::dense(out, out, 3, 2, false, conv("downsample_convs", i)))
            .collect::<candle_core::Result<_>>()?;
        let pafpn_convs = (0..n - 1)
            .map(|i| ConvUnit::dense(out, out, 3, 1, false, conv("pafpn_convs", i)))
            .collect::<candle_core::Result<_>>()?;
        Ok(Self { lateral_convs, fpn_convs, downsample_convs, pafpn_convs })
    }

    fn forward(&self, feats: &[Tensor; 3]) -> candle_core::Result<Vec<Tensor>> {
        let mut lat =
            self.lateral_convs.iter().zip(feats).map(|(c, x)| c.forward(x)).collect::<candle_core::Result<Vec<_>>>()?;
        for i in (1..lat.len()).rev() {
            let (_, _, h, w) = lat[i - 1].dims4()?;
            // ONNX `Resize` nearest / asymmetric / floor to the lower level's size.
            let up = lat[i].upsample_nearest2d(h, w)?;
            lat[i - 1] = (&lat[i - 1] + up)?;
        }
        let mut inter =
            self.fpn_convs.iter().zip(&lat).map(|(c, x)| c.forward(x)).collect::<candle_core::Result<Vec<_>>>()?;
        for i in 0..inter.len() - 1 {
            let down = self.downsample_convs[i].forward(&inter[i])?;
            inter[i + 1] = (&inter[i + 1] + down)?;
        }
        let mut outs = vec![inter[0].clone()];
        for (conv, x) in self.pafpn_convs.iter().zip(&inter[1..]) {
            outs.push(conv.forward(x)?);
        }
        Ok(outs)
    }

    fn units(&self) -> impl Iterator<Item = &ConvUnit> {
        self.lateral_convs.iter().chain(&self.fpn_convs).chain(&self.downsample_convs).chain(&self.pafpn_convs)
    }
}

/// One stride of `SCRFDHead` (`strides_share=False`, `cls_reg_share=True`, `dw_conv=True`):
/// `cls_stride_convs.(S, S)` depthwise-separable modules, then `stride_cls`, `stride_reg`,
/// `stride_kps` 3x3 convs.
#[derive(Debug, Clone)]
pub struct HeadLevel {
    pub stride: usize,
    pub convs: Vec<ConvUnit>,
    pub cls: ConvUnit,
    pub reg: ConvUnit,
    pub kps: ConvUnit,
}

/// The three head outputs of one stride, as the ONNX graph returns them.
#[derive(Debug, Clone)]
pub struct LevelOutput {
    pub stride: usize,
    /// `(N, H*W*A, 1)`, sigmoid applied.
    pub scores: Tensor,
    /// `(N, H*W*A, 4)`: distances left, top, right, bottom in units of the stride.
    pub bbox: Tensor,
    /// `(N, H*W*A, 2*K)`: keypoint offsets `(dx, dy)` in units of the stride.
    pub kps: Tensor,
}

impl HeadLevel {
    fn new(cfg: &Config, stride: usize, vb: VarBuilder) -> candle_core::Result<Self> {
        let key = format!("({stride}, {stride})");
        let vc = vb.pp("cls_stride_convs").pp(&key);
        let mut convs = Vec::new();
        let mut cin = cfg.neck_channels;
        for i in 0..cfg.stacked_convs {
            let vi = vc.pp(i.to_string());
            convs.push(ConvUnit::depthwise(cin, 1, vi.pp("depthwise_conv").pp("conv"))?);
            convs.push(ConvUnit::dense(cin, cfg.feat_channels, 1, 1, true, vi.pp("pointwise_conv").pp("conv"))?);
            cin = cfg.feat_channels;
        }
        let a = cfg.num_anchors;
        let head = |name: &str, out: usize| ConvUnit::dense(cin, out, 3, 1, false, vb.pp(name).pp(&key));
        Ok(Self {
            stride,
            convs,
            cls: head("stride_cls", a)?,
            reg: head("stride_reg", 4 * a)?,
            kps: head("stride_kps", 2 * cfg.num_keypoints * a)?,
        })
    }

    fn forward(&self, xs: &Tensor) -> candle_core::Result<LevelOutput> {
        let feat = run(&self.convs, xs)?;
        // (N, C*A, H, W) -> (N, H, W, C*A) -> (N, H*W*A, C)
        let flat = |t: Tensor, c: usize| -> candle_core::Result<Tensor> {
            let n = t.dim(0)?;
            t.permute((0, 2, 3, 1))?.contiguous()?.reshape((n, (), c))
        };
        let kp2 = self.kps.spec.out_channels / self.cls.spec.out_channels;
        Ok(LevelOutput {
            stride: self.stride,
            scores: candle_nn::ops::sigmoid(&flat(self.cls.forward(&feat)?, 1)?)?,
            bbox: flat(self.reg.forward(&feat)?, 4)?,
            kps: flat(self.kps.forward(&feat)?, kp2)?,
        })
    }

    fn units(&self) -> impl Iterator<Item = &ConvUnit> {
        self.convs.iter().chain([&self.cls, &self.reg, &self.kps])
    }
}

/// SCRFD: `backbone` -> `neck` -> `bbox_head`.
#[derive(Debug, Clone)]
pub struct Scrfd {
    pub backbone: MobileNetV1,
    pub neck: Pafpn,
    pub head: Vec<HeadLevel>,
    pub config: Config,
}

impl Scrfd {
    pub fn new(config: &Config, vb: VarBuilder) -> candle_core::Result<Self> {
        let backbone = MobileNetV1::new(config, vb.pp("backbone"))?;
        let p = config.stage_planes;
        let neck = Pafpn::new(&[p[3], p[4], p[5]], config.neck_channels, vb.pp("neck"))?;
        let vh = vb.pp("bbox_head");
        let head =
            STRIDES.iter().map(|&s| HeadLevel::new(config, s, vh.clone())).collect::<candle_core::Result<_>>()?;
        Ok(Self { backbone, neck, head, config: config.clone() })
    }

    /// Every parameter of the architecture, in forward order.
    pub fn layout(config: &Config) -> Result<ParamLayout> {
        ParamLayout::record(|vb| Scrfd::new(config, vb))
    }

    /// All convolutions in the order the ONNX export lists its `Conv` nodes.
    pub fn conv_units(&self) -> Vec<&ConvUnit> {
        self.backbone.units().chain(self.neck.units()).chain(self.head.iter().flat_map(|h| h.units())).collect()
    }

    /// Head outputs for strides 8, 16, 32 of a normalised `(N, 3, H, W)` batch
    /// (`(rgb - 127.5) / 128`; `H`, `W` multiples of 32).
    pub fn forward(&self, xs: &Tensor) -> candle_core::Result<Vec<LevelOutput>> {
        let (_, c, h, w) = xs.dims4()?;
        if c != 3 || h % 32 != 0 || w % 32 != 0 || h == 0 || w == 0 {
            candle_core::bail!("scrfd expects (N, 3, H, W) with H, W positive multiples of 32, got {:?}", xs.dims());
        }
        let feats = self.backbone.forward(xs)?;
        let outs = self.neck.forward(&feats)?;
        self.head.iter().zip(&outs).map(|(h, x)| h.forward(x)).collect()
    }

    /// Loads a checkpoint written by [`import_onnx`], checked strictly against the layout of
    /// the configuration recorded in its metadata (or [`Config::scrfd_500m_bnkps`]).
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        let meta = weights::read_metadata(path)?;
        let unknown = |reason: String| ModelError::UnknownArchitecture { path: path.to_path_buf(), reason };
        match meta.get(META_ARCH).map(String::as_str) {
            None | Some(ARCH) => {}
            Some(other) => {
                return Err(unknown(format!("checkpoint is a `{other}` model, not the `{ARCH}` face detector")))
            }
        }
        let config = match meta.get(META_CONFIG) {
            Some(c) => {
                serde_json::from_str::<Config>(c).map_err(|e| unknown(format!("bad `{META_CONFIG}` metadata: {e}")))?
            }
            None => Config::default(),
        };
        let layout = Self::layout(&config)?;
        let checkpoint = weights::load_checked(path, &layout, ARCH)?;
        Ok(Self::new(&config, checkpoint.var_builder(device)?)?)
    }
}

/// Imports `scrfd_500m_bnkps.onnx` into a safetensors checkpoint at `out` (written atomically,
/// metadata `facelens.arch = "scrfd"`, the config as JSON, the source file name and sha256).
///
/// The graph's `Conv` nodes are paired in order with [`Scrfd::conv_units`]; kernel, stride,
/// padding, group and every shape must match, and initializers that kept their PyTorch name
/// (neck and head) must carry the very name given here.
pub fn import_onnx(onnx_path: &Path, out: &Path) -> Result<ImportReport> {
    let bytes = facelens_core::fs::read(onnx_path).map_err(|e| ModelError::io(onnx_path, e))?;
    let sha: String = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
    let graph = OnnxGraph::from_bytes(onnx_path, &bytes)?;
    let config = Config::scrfd_500m_bnkps();
    let tensors = map_graph(&graph, &config)?;
    let layout = Scrfd::layout(&config)?;
    let config_json = serde_json::to_string(&config).unwrap_or_default();
    crate::backbone::write_import(onnx_path, out, ARCH, config_json, sha, &tensors, layout.num_parameters())
}

/// Named tensors as [`weights::save_atomic`] takes them: name, shape, values.
type NamedTensors = Vec<(String, Vec<usize>, Vec<f32>)>;

/// Names the weights of `graph`'s `Conv` nodes after the candle model of `config`.
fn map_graph(graph: &OnnxGraph, config: &Config) -> Result<NamedTensors> {
    let mismatch = |reason: String| ModelError::GraphMismatch { path: graph.path.clone(), arch: ARCH.into(), reason };
    let model = Scrfd::new(config, VarBuilder::zeros(DType::F32, &Device::Cpu))?;
    let units = model.conv_units();
    let convs: Vec<_> = graph.nodes.iter().filter(|n| n.op_type == "Conv").collect();
    if convs.len() != units.len() {
        return Err(mismatch(format!("graph has {} Conv nodes, scrfd_500m_bnkps has {}", convs.len(), units.len())));
    }
    let mut out = Vec::with_capacity(2 * units.len());
    for (node, unit) in convs.iter().zip(&units) {
        let s = unit.spec;
        let k = s.kernel as i64;
        let checks = [
            ("kernel_shape", attr_ints(node, "kernel_shape"), vec![k, k]),
            ("strides", attr_ints(node, "strides"), vec![s.stride as i64; 2]),
            ("pads", attr_ints(node, "pads"), vec![s.padding as i64; 4]),
        ];
        for (what, got, want) in checks {
            if !(got == want || (got.is_empty() && what == "pads" && s.padding == 0)) {
                return Err(mismatch(format!("`{}` ({}): {what} {got:?}, expected {want:?}", node.name, unit.name)));
            }
        }
        let dil = attr_ints(node, "dilations");
        if !(dil.is_empty() || dil.iter().all(|&d| d == 1)) {
            return Err(mismatch(format!("`{}` ({}): dilations {dil:?}, expected 1", node.name, unit.name)));
        }
        if attr_i(node, "group", 1) != s.groups as i64 {
            return Err(mismatch(format!(
                "`{}` ({}): group {}, expected {}",
                node.name,
                unit.name,
                attr_i(node, "group", 1),
                s.groups
            )));
        }
        let want_shapes = [vec![s.out_channels, s.in_channels / s.groups, s.kernel, s.kernel], vec![s.out_channels]];
        for (slot, (suffix, want)) in ["weight", "bias"].iter().zip(want_shapes).enumerate() {
            let name = format!("{}.{suffix}", unit.name);
            let input = node
                .input
                .get(slot + 1)
                .ok_or_else(|| mismatch(format!("`{}` ({name}) has no {suffix}", node.name)))?;
            let init = graph
                .initializers
                .get(input)
                .ok_or_else(|| mismatch(format!("`{}`: {suffix} `{input}` is not an initializer", node.name)))?;
            // Initializers that kept their PyTorch name must agree with ours.
            if input.contains('.') && *input != name {
                return Err(mismatch(format!("ONNX `{input}` sits where `{name}` was expected")));
            }
            if init.dims != want {
                return Err(ModelError::WrongShape {
                    path: graph.path.clone(),
                    name: format!("{name} (ONNX `{input}`)"),
                    expected: want,
                    got: init.dims.clone(),
                });
            }
            let bad = init.data.iter().filter(|v| !v.is_finite()).count();
            if bad > 0 {
                return Err(ModelError::NonFinite { path: graph.path.clone(), name, count: bad });
            }
            out.push((name, init.dims.clone(), init.data.clone()));
        }
    }
    Ok(out)
}
