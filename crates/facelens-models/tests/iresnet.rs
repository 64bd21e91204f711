//! IResNet: parameter names against arcface_torch / AdaFace, strict loading of synthetic
//! weights, an independent scalar re-implementation of the forward pass, architecture
//! detection, and (ignored by default) parity with the PyTorch modules of
//! `scripts/check-iresnet-torch.py`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Module, Tensor};
use facelens_models::iresnet::{detect_config, detect_config_file, Config, Flavour, IResNet};
use facelens_models::weights::{load_checked, save_atomic, ParamLayout};
use facelens_models::ModelError;

type Named = Vec<(String, Vec<usize>, Vec<f32>)>;

/// `model.state_dict()` of arcface_torch `iresnet18()`, printed by PyTorch
/// (`check-iresnet-torch.py layout iresnet18`): `name [shape]`, in state-dict order.
const IRESNET18_STATE_DICT: &str = "
conv1.weight [64, 3, 3, 3]
bn1.weight [64]
bn1.bias [64]
bn1.running_mean [64]
bn1.running_var [64]
bn1.num_batches_tracked []
prelu.weight [64]
layer1.0.bn1.weight [64]
layer1.0.bn1.bias [64]
layer1.0.bn1.running_mean [64]
layer1.0.bn1.running_var [64]
layer1.0.bn1.num_batches_tracked []
layer1.0.conv1.weight [64, 64, 3, 3]
layer1.0.bn2.weight [64]
layer1.0.bn2.bias [64]
layer1.0.bn2.running_mean [64]
layer1.0.bn2.running_var [64]
layer1.0.bn2.num_batches_tracked []
layer1.0.prelu.weight [64]
layer1.0.conv2.weight [64, 64, 3, 3]
layer1.0.bn3.weight [64]
layer1.0.bn3.bias [64]
layer1.0.bn3.running_mean [64]
layer1.0.bn3.running_var [64]
layer1.0.bn3.num_batches_tracked []
layer1.0.downsample.0.weight [64, 64, 1, 1]
layer1.0.downsample.1.weight [64]
layer1.0.downsample.1.bias [64]
layer1.0.downsample.1.running_mean [64]
layer1.0.downsample.1.running_var [64]
layer1.0.downsample.1.num_batches_tracked []
layer1.1.bn1.weight [64]
layer1.1.bn1.bias [64]
layer1.1.bn1.running_mean [64]
layer1.1.bn1.running_var [64]
layer1.1.bn1.num_batches_tracked []
layer1.1.conv1.weight [64, 64, 3, 3]
layer1.1.bn2.weight [64]
layer1.1.bn2.bias [64]
layer1.1.bn2.running_mean [64]
layer1.1.bn2.running_var [64]
layer1.1.bn2.num_batches_tracked []
layer1.1.prelu.weight [64]
layer1.1.conv2.weight [64, 64, 3, 3]
layer1.1.bn3.weight [64]
layer1.1.bn3.bias [64]
layer1.1.bn3.running_mean [64]
layer1.1.bn3.running_var [64]
layer1.1.bn3.num_batches_tracked []
layer2.0.bn1.weight [64]
layer2.0.bn1.bias [64]
layer2.0.bn1.running_mean [64]
layer2.0.bn1.running_var [64]
layer2.0.bn1.num_batches_tracked []
layer2.0.conv1.weight [128, 64, 3, 3]
layer2.0.bn2.weight [128]
layer2.0.bn2.bias [128]
layer2.0.bn2.running_mean [128]
layer2.0.bn2.running_var [128]
layer2.0.bn2.num_batches_tracked []
layer2.0.prelu.weight [128]
layer2.0.conv2.weight [128, 128, 3, 3]
layer2.0.bn3.weight [128]
layer2.0.bn3.bias [128]
layer2.0.bn3.running_mean [128]
layer2.0.bn3.running_var [128]
layer2.0.bn3.num_batches_tracked []
layer2.0.downsample.0.weight [128, 64, 1, 1]
layer2.0.downsample.1.weight [128]
layer2.0.downsample.1.bias [128]
layer2.0.downsample.1.running_mean [128]
layer2.0.downsample.1.running_var [128]
layer2.0.downsample.1.num_batches_tracked []
layer2.1.bn1.weight [128]
layer2.1.bn1.bias [128]
layer2.1.bn1.running_mean [128]
layer2.1.bn1.running_var [128]
layer2.1.bn1.num_batches_tracked []
layer2.1.conv1.weight [128, 128, 3, 3]
layer2.1.bn2.weight [128]
layer2.1.bn2.bias [128]
layer2.1.bn2.running_mean [128]
layer2.1.bn2.running_var [128]
layer2.1.bn2.num_batches_tracked []
layer2.1.prelu.weight [128]
layer2.1.conv2.weight [128, 128, 3, 3]
layer2.1.bn3.weight [128]
layer2.1.bn3.bias [128]
layer2.1.bn3.running_mean [128]
layer2.1.bn3.running_var [128]
layer2.1.bn3.num_batches_tracked []
layer3.0.bn1.weight [128]
layer3.0.bn1.bias [128]
layer3.0.bn1.running_mean [128]
layer3.0.bn1.running_var [128]
layer3.0.bn1.num_batches_tracked []
layer3.0.conv1.weight [256, 128, 3, 3]
layer3.0.bn2.weight [256]
layer3.0.bn2.bias [256]
layer3.0.bn2.running_mean [256]
layer3.0.bn2.running_var [256]
layer3.0.bn2.num_batches_tracked []
layer3.0.prelu.weight [256]
layer3.0.conv2.weight [256, 256, 3, 3]
layer3.0.bn3.weight [256]
layer3.0.bn3.bias [256]
layer3.0.bn3.running_mean [256]
layer3.0.bn3.running_var [256]
layer3.0.bn3.num_batches_tracked []
layer3.0.downsample.0.weight [256, 128, 1, 1]
layer3.0.downsample.1.weight [256]
layer3.0.downsample.1.bias [256]
layer3.0.downsample.1.running_mean [256]
layer3.0.downsample.1.running_var [256]
layer3.0.downsample.1.num_batches_tracked []
layer3.1.bn1.weight [256]
layer3.1.bn1.bias [256]
layer3.1.bn1.running_mean [256]
layer3.1.bn1.running_var [256]
layer3.1.bn1.num_batches_tracked []
layer3.1.conv1.weight [256, 256, 3, 3]
layer3.1.bn2.weight [256]
layer3.1.bn2.bias [256]
layer3.1.bn2.running_mean [256]
layer3.1.bn2.running_var [256]
layer3.1.bn2.num_batches_tracked []
layer3.1.prelu.weight [256]
layer3.1.conv2.weight [256, 256, 3, 3]
layer3.1.bn3.weight [256]
layer3.1.bn3.bias [256]
layer3.1.bn3.running_mean [256]
layer3.1.bn3.running_var [256]
layer3.1.bn3.num_batches_tracked []
layer4.0.bn1.weight [256]
layer4.0.bn1.bias [256]
layer4.0.bn1.running_mean [256]
layer4.0.bn1.running_var [256]
layer4.0.bn1.num_batches_tracked []
layer4.0.conv1.weight [512, 256, 3, 3]
layer4.0.bn2.weight [512]
layer4.0.bn2.bias [512]
layer4.0.bn2.running_mean [512]
layer4.0.bn2.running_var [512]
layer4.0.bn2.num_batches_tracked []
layer4.0.prelu.weight [512]
layer4.0.conv2.weight [512, 512, 3, 3]
layer4.0.bn3.weight [512]
layer4.0.bn3.bias [512]
layer4.0.bn3.running_mean [512]
layer4.0.bn3.running_var [512]
layer4.0.bn3.num_batches_tracked []
layer4.0.downsample.0.weight [512, 256, 1, 1]
layer4.0.downsample.1.weight [512]
layer4.0.downsample.1.bias [512]
layer4.0.downsample.1.running_mean [512]
layer4.0.downsample.1.running_var [512]
layer4.0.downsample.1.num_batches_tracked []
layer4.1.bn1.weight [512]
layer4.1.bn1.bias [512]
layer4.1.bn1.running_mean [512]
layer4.1.bn1.running_var [512]
layer4.1.bn1.num_batches_tracked []
layer4.1.conv1.weight [512, 512, 3, 3]
layer4.1.bn2.weight [512]
layer4.1.bn2.bias [512]
layer4.1.bn2.running_mean [512]
layer4.1.bn2.running_var [512]
layer4.1.bn2.num_batches_tracked []
layer4.1.prelu.weight [512]
layer4.1.conv2.weight [512, 512, 3, 3]
layer4.1.bn3.weight [512]
layer4.1.bn3.bias [512]
layer4.1.bn3.running_mean [512]
layer4.1.bn3.running_var [512]
layer4.1.bn3.num_batches_tracked []
bn2.weight [512]
bn2.bias [512]
bn2.running_mean [512]
bn2.running_var [512]
bn2.num_batches_tracked []
fc.weight [512, 25088]
fc.bias [512]
features.weight [512]
features.bias [512]
features.running_mean [512]
features.running_var [512]
features.num_batches_tracked []
";

// ---------------------------------------------------------------------------------------
// Helpers: deterministic synthetic weights and a scalar reference forward pass.

/// SplitMix64, so every run and every machine gets the same weights.
struct Rng(u64);

impl Rng {
    fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        lo + (hi - lo) * ((z >> 40) as f32 / (1u64 << 24) as f32)
    }
}

/// Plausible eval-mode weights: BN scale near 1, running_var in [0.5, 1.5], PReLU slopes in
/// [0, 0.3], conv/linear weights uniform with variance 1/fan_in.
fn synthetic(layout: &ParamLayout, seed: u64) -> Named {
    let mut rng = Rng(seed);
    let bn: Vec<&str> = layout.params.iter().filter_map(|(n, _)| n.strip_suffix(".running_mean")).collect();
    layout
        .params
        .iter()
        .map(|(name, shape)| {
            let (prefix, leaf) = name.rsplit_once('.').unwrap_or(("", name));
            let is_bn = bn.contains(&prefix);
            let fan_in: usize = shape[1..].iter().product();
            let (lo, hi) = match (leaf, is_bn, shape.len()) {
                ("running_var", _, _) => (0.5, 1.5),
                ("running_mean", _, _) | ("bias", _, _) => (-0.1, 0.1),
                ("weight", true, _) => (0.8, 1.2),
                ("weight", false, 1) => (0.0, 0.3),
                _ => {
                    let a = (3.0 / fan_in as f32).sqrt();
                    (-a, a)
                }
            };
            let n: usize = shape.iter().product();
            (name.clone(), shape.clone(), (0..n).map(|_| rng.uniform(lo, hi)).collect())
        })
        .collect()
}

fn save(dir: &Path, file: &str, tensors: &Named) -> PathBuf {
    let path = dir.join(file);
    save_atomic(&path, tensors, &Default::default()).expect("save synthetic weights");
    path
}

fn input(batch: usize, size: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng(seed);
    (0..batch * 3 * size * size).map(|_| rng.uniform(-1.0, 1.0)).collect()
}

fn build(cfg: &Config, tensors: &Named) -> IResNet {
    let dir = tempfile::tempdir().unwrap();
    let path = save(dir.path(), "w.safetensors", tensors);
    let layout = IResNet::layout(cfg).unwrap();
    let ckpt = load_checked(&path, &layout, &cfg.arch_name()).expect("strict load");
    IResNet::new(cfg, ckpt.var_builder(&Device::Cpu).unwrap()).unwrap()
}

fn run(model: &IResNet, xs: &[f32], batch: usize) -> Vec<Vec<f32>> {
    let s = model.config.input_size;
    let x = Tensor::from_slice(xs, (batch, 3, s, s), &Device::Cpu).unwrap();
    model.forward(&x).unwrap().to_vec2().unwrap()
}

/// A (C, H, W) activation in f64.
#[derive(Clone)]
struct Img {
    c: usize,
    h: usize,
    w: usize,
    d: Vec<f64>,
}

/// Scalar re-implementation of both source files, looked up by their own names.
struct Reference<'a>(HashMap<&'a str, (&'a [usize], &'a [f32])>);

impl<'a> Reference<'a> {
    fn new(tensors: &'a Named) -> Self {
        Self(tensors.iter().map(|(n, s, d)| (n.as_str(), (s.as_slice(), d.as_slice()))).collect())
    }

    fn get(&self, name: &str) -> (&[usize], &[f32]) {
        *self.0.get(name).unwrap_or_else(|| panic!("reference needs `{name}`"))
    }

    /// Bias-free conv, square kernel, padding kernel/2.
    fn conv(&self, x: &Img, name: &str, stride: usize) -> Img {
        let (s, w) = self.get(&format!("{name}.weight"));
        let (oc, ic, k) = (s[0], s[1], s[2]);
        assert_eq!(ic, x.c, "{name}: input channels");
        let pad = k / 2;
        let (oh, ow) = ((x.h + 2 * pad - k) / stride + 1, (x.w + 2 * pad - k) / stride + 1);
        let mut d = vec![0.0; oc * oh * ow];
        for o in 0..oc {
            for y in 0..oh {
                for xx in 0..ow {
                    let mut acc = 0.0;
                    for i in 0..ic {
                        for ky in 0..k {
                            let iy = (y * stride + ky) as isize - pad as isize;
                            if iy < 0 || iy >= x.h as isize {
                                continue;
                            }
                            for kx in 0..k {
                                let ix = (xx * stride + kx) as isize - pad as isize;
                                if ix < 0 || ix >= x.w as isize {
                                    continue;
                                }
                                let v = x.d[(i * x.h + iy as usize) * x.w + ix as usize];
                                acc += v * w[((o * ic + i) * k + ky) * k + kx] as f64;
                            }
                        }
                    }
                    d[(o * oh + y) * ow + xx] = acc;
                }
            }
        }
        Img { c: oc, h: oh, w: ow, d }
    }

    fn bn(&self, x: &mut Img, name: &str, affine: bool) {
        let (_, rm) = self.get(&format!("{name}.running_mean"));
        let (_, rv) = self.get(&format!("{name}.running_var"));
        let hw = x.h * x.w;
        for c in 0..x.c {
            let (w, b) = if affine {
                (self.get(&format!("{name}.weight")).1[c] as f64, self.get(&format!("{name}.bias")).1[c] as f64)
            } else {
                (1.0, 0.0)
            };
            let inv = 1.0 / (rv[c] as f64 + 1e-5).sqrt();
            for v in &mut x.d[c * hw..(c + 1) * hw] {
                *v = (*v - rm[c] as f64) * inv * w + b;
            }
        }
    }

    fn prelu(&self, x: &mut Img, name: &str) {
        let (_, a) = self.get(&format!("{name}.weight"));
        assert_eq!(a.len(), x.c, "{name}: channels");
        for (plane, &a) in x.d.chunks_mut(x.h * x.w).zip(a) {
            for v in plane.iter_mut().filter(|v| **v < 0.0) {
                *v *= a as f64;
            }
        }
    }

    fn linear(&self, x: &[f64], name: &str) -> Img {
        let (s, w) = self.get(&format!("{name}.weight"));
        let (_, b) = self.get(&format!("{name}.bias"));
        assert_eq!(s[1], x.len(), "{name}: input features");
        let d = (0..s[0]).map(|o| b[o] as f64 + (0..s[1]).map(|i| w[o * s[1] + i] as f64 * x[i]).sum::<f64>());
        Img { c: s[0], h: 1, w: 1, d: d.collect() }
    }

    fn add(a: &Img, b: &Img) -> Img {
        assert_eq!((a.c, a.h, a.w), (b.c, b.h, b.w));
        Img { d: a.d.iter().zip(&b.d).map(|(x, y)| x + y).collect(), ..a.clone() }
    }

    /// arcface_torch `IResNet.forward` (eval mode).
    fn arcface(&self, cfg: &Config, x: Img) -> Vec<f64> {
        let mut x = self.conv(&x, "conv1", 1);
        self.bn(&mut x, "bn1", true);
        self.prelu(&mut x, "prelu");
        for (k, &n) in cfg.layers.iter().enumerate() {
            for i in 0..n {
                let p = format!("layer{}.{i}", k + 1);
                let stride = if i == 0 { 2 } else { 1 };
                let mut y = x.clone();
                self.bn(&mut y, &format!("{p}.bn1"), true);
                let mut y = self.conv(&y, &format!("{p}.conv1"), 1);
                self.bn(&mut y, &format!("{p}.bn2"), true);
                self.prelu(&mut y, &format!("{p}.prelu"));
                let mut y = self.conv(&y, &format!("{p}.conv2"), stride);
                self.bn(&mut y, &format!("{p}.bn3"), true);
                // `_make_layer`: downsample iff stride != 1 or inplanes != planes -> first block.
                let identity = if i == 0 {
                    let mut s = self.conv(&x, &format!("{p}.downsample.0"), stride);
                    self.bn(&mut s, &format!("{p}.downsample.1"), true);
                    s
                } else {
                    x.clone()
                };
                x = Self::add(&y, &identity);
            }
        }
        self.bn(&mut x, "bn2", true);
        let mut y = self.linear(&x.d, "fc");
        self.bn(&mut y, "features", true);
        y.d
    }

    /// AdaFace `Backbone.forward` (mode 'ir', eval mode), before its L2 normalisation.
    fn adaface(&self, cfg: &Config, x: Img) -> Vec<f64> {
        let mut x = self.conv(&x, "input_layer.0", 1);
        self.bn(&mut x, "input_layer.1", true);
        self.prelu(&mut x, "input_layer.2");
        let mut idx = 0;
        for &n in &cfg.layers {
            for i in 0..n {
                let p = format!("body.{idx}");
                let stride = if i == 0 { 2 } else { 1 };
                let mut y = x.clone();
                self.bn(&mut y, &format!("{p}.res_layer.0"), true);
                let mut y = self.conv(&y, &format!("{p}.res_layer.1"), 1);
                self.bn(&mut y, &format!("{p}.res_layer.2"), true);
                self.prelu(&mut y, &format!("{p}.res_layer.3"));
                let mut y = self.conv(&y, &format!("{p}.res_layer.4"), stride);
                self.bn(&mut y, &format!("{p}.res_layer.5"), true);
                let shortcut = if x.c == y.c {
                    // MaxPool2d(1, stride): every stride-th pixel.
                    let (h, w) = ((x.h - 1) / stride + 1, (x.w - 1) / stride + 1);
                    let mut d = Vec::with_capacity(x.c * h * w);
                    for c in 0..x.c {
                        for yy in 0..h {
                            for xx in 0..w {
                                d.push(x.d[(c * x.h + yy * stride) * x.w + xx * stride]);
                            }
                        }
                    }
                    Img { c: x.c, h, w, d }
                } else {
                    let mut s = self.conv(&x, &format!("{p}.shortcut_layer.0"), stride);
                    self.bn(&mut s, &format!("{p}.shortcut_layer.1"), true);
                    s
                };
                x = Self::add(&y, &shortcut);
                idx += 1;
            }
        }
        self.bn(&mut x, "output_layer.0", true);
        let mut y = self.linear(&x.d, "output_layer.3");
        self.bn(&mut y, "output_layer.4", false);
        y.d
    }
}

fn max_abs_diff(a: &[f32], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (*x as f64 - y).abs()).fold(0.0, f64::max)
}

fn presets() -> Vec<(Config, &'static str)> {
    vec![
        (Config::iresnet18(), "iresnet18"),
        (Config::iresnet34(), "iresnet34"),
        (Config::iresnet50(), "iresnet50"),
        (Config::iresnet100(), "iresnet100"),
        (Config::adaface_ir18(), "adaface_ir18"),
        (Config::adaface_ir34(), "adaface_ir34"),
        (Config::adaface_ir50(), "adaface_ir50"),
        (Config::adaface_ir101(), "adaface_ir101"),
    ]
}

// ---------------------------------------------------------------------------------------
// Parameter layout.

fn parse_state_dict(text: &str) -> Vec<(String, Vec<usize>)> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (name, shape) = l.split_once(' ').expect("`name [shape]`");
            let shape = shape.trim_matches(|c| c == '[' || c == ']');
            let dims = shape.split(',').filter(|s| !s.trim().is_empty()).map(|s| s.trim().parse().unwrap());
            (name.to_string(), dims.collect())
        })
        .collect()
}

fn module_order(names: impl Iterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for n in names {
        let p = n.rsplit_once('.').map(|(p, _)| p.to_string()).unwrap_or_default();
        if out.last() != Some(&p) {
            out.push(p);
        }
    }
    out
}

#[test]
fn iresnet18_layout_is_the_arcface_torch_state_dict() {
    let torch = parse_state_dict(IRESNET18_STATE_DICT);
    assert_eq!(torch.len(), 187);
    // BN step counters are buffers of no use at inference: not part of the layout.
    let torch: Vec<_> = torch.into_iter().filter(|(n, _)| !n.ends_with(".num_batches_tracked")).collect();
    let layout = IResNet::layout(&Config::iresnet18()).unwrap();
    assert_eq!(layout.params.len(), 156);
    let ours: HashMap<_, _> = layout.params.iter().cloned().collect();
    let theirs: HashMap<_, _> = torch.iter().cloned().collect();
    assert_eq!(ours, theirs);
    // Modules are built in PyTorch's registration (= forward) order.
    assert_eq!(
        module_order(layout.params.iter().map(|p| p.0.clone())),
        module_order(torch.iter().map(|p| p.0.clone()))
    );
}

/// State-dict floats (running stats included, `num_batches_tracked` excluded), by hand from
/// iresnet.py / net.py.
fn expected_floats(cfg: &Config) -> usize {
    let ada = cfg.flavour == Flavour::AdaFace;
    let bn = |c: usize| 4 * c;
    let w0 = cfg.widths[0];
    let mut total = 27 * w0 + bn(w0) + w0;
    let mut in_c = w0;
    for (&n, &out) in cfg.layers.iter().zip(&cfg.widths) {
        for i in 0..n {
            total += bn(in_c) + 9 * in_c * out + bn(out) + out + 9 * out * out + bn(out);
            let projection = if ada { in_c != out } else { i == 0 };
            if projection {
                total += in_c * out + bn(out);
            }
            in_c = out;
        }
    }
    let s = cfg.input_size / 16;
    let features = if ada { 2 * cfg.num_features } else { bn(cfg.num_features) };
    total + bn(in_c) + in_c * s * s * cfg.num_features + cfg.num_features + features
}

#[test]
fn preset_layouts_match_pytorch_sizes() {
    // (tensors, floats) of `model.state_dict()` without num_batches_tracked, from PyTorch
    // (`check-iresnet-torch.py layout ARCH`). `model.parameters()` of iresnet50 (BN running
    // stats excluded) is 43_590_848.
    let torch = [
        (156, 24_040_320),
        (276, 34_165_184),
        (396, 43_628_992),
        (771, 65_225_792),
        (149, 24_034_944),
        (269, 34_159_808),
        (389, 43_623_616),
        (764, 65_220_416),
    ];
    for ((cfg, name), (tensors, floats)) in presets().into_iter().zip(torch) {
        assert_eq!(cfg.arch_name(), name);
        let layout = IResNet::layout(&cfg).unwrap();
        assert_eq!(layout.params.len(), tensors, "{name}: tensor count");
        assert_eq!(layout.num_parameters(), floats, "{name}: float count");
        assert_eq!(expected_floats(&cfg), floats, "{name}: hand count");
        let running: usize = layout.params.iter().filter(|(n, _)| n.contains(".running_")).map(|(_, s)| s[0]).sum();
        if name == "iresnet50" {
            assert_eq!(floats - running, 43_590_848);
        }
    }
}

#[test]
fn adaface_layout_uses_net_py_names_and_shortcuts() {
    let layout = IResNet::layout(&Config::adaface_ir18()).unwrap();
    let shapes = layout.shapes();
    let has = |n: &str| shapes.contains_key(n);
    assert_eq!(shapes["input_layer.0.weight"], [64, 3, 3, 3]);
    assert_eq!(shapes["input_layer.2.weight"], [64]);
    assert_eq!(shapes["body.0.res_layer.4.weight"], [64, 64, 3, 3]);
    // body.0 is 64 -> 64 with stride 2: MaxPool2d(1, 2) shortcut, no weights.
    assert!(!shapes.keys().any(|n| n.starts_with("body.0.shortcut_layer")));
    assert!(!shapes.keys().any(|n| n.starts_with("body.1.shortcut_layer")));
    assert_eq!(shapes["body.2.shortcut_layer.0.weight"], [128, 64, 1, 1]);
    assert_eq!(shapes["body.6.shortcut_layer.1.running_var"], [512]);
    assert!(!shapes.keys().any(|n| n.starts_with("body.7.shortcut_layer")));
    assert!(!has("body.8.res_layer.0.weight"));
    assert_eq!(shapes["output_layer.3.weight"], [512, 512 * 7 * 7]);
    assert_eq!(shapes["output_layer.3.bias"], [512]);
    // BatchNorm1d(512, affine=False).
    assert!(has("output_layer.4.running_mean") && has("output_layer.4.running_var"));
    assert!(!has("output_layer.4.weight") && !has("output_layer.4.bias"));
    // arcface_torch projects layer1.0 instead.
    let arc = IResNet::layout(&Config::iresnet18()).unwrap().shapes();
    assert_eq!(arc["layer1.0.downsample.0.weight"], [64, 64, 1, 1]);
    assert!(!arc.contains_key("layer1.1.downsample.0.weight"));
}

// ---------------------------------------------------------------------------------------
// Loading and forward.

#[test]
fn synthetic_iresnet18_loads_strictly_and_embeds() {
    let cfg = Config::iresnet18();
    let layout = IResNet::layout(&cfg).unwrap();
    let tensors = synthetic(&layout, 18);
    let dir = tempfile::tempdir().unwrap();
    let path = save(dir.path(), "iresnet18.safetensors", &tensors);
    assert_eq!(detect_config_file(&path).unwrap(), cfg);
    let ckpt = load_checked(&path, &layout, "iresnet18").unwrap();
    let model = IResNet::new(&cfg, ckpt.var_builder(&Device::Cpu).unwrap()).unwrap();
    let out = run(&model, &input(1, 112, 7), 1);
    assert_eq!((out.len(), out[0].len()), (1, 512));
    assert!(out[0].iter().all(|v| v.is_finite()));
    let norm = out[0].iter().map(|v| v * v).sum::<f32>().sqrt();
    assert!(norm > 1.0 && norm < 1e4, "embedding norm {norm}");
}

#[test]
fn forward_matches_scalar_reference_for_both_flavours() {
    for flavour in [Flavour::ArcFace, Flavour::AdaFace] {
        let cfg = Config::tiny().with_flavour(flavour);
        let tensors = synthetic(&IResNet::layout(&cfg).unwrap(), 3);
        let model = build(&cfg, &tensors);
        let xs = input(2, 112, 11);
        let out = run(&model, &xs, 2);
        let reference = Reference::new(&tensors);
        for (b, got) in out.iter().enumerate() {
            let n = 3 * 112 * 112;
            let img = Img { c: 3, h: 112, w: 112, d: xs[b * n..(b + 1) * n].iter().map(|v| *v as f64).collect() };
            let want = match flavour {
                Flavour::ArcFace => reference.arcface(&cfg, img),
                Flavour::AdaFace => reference.adaface(&cfg, img),
            };
            let scale = want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
            let diff = max_abs_diff(got, &want);
            assert!(diff <= 1e-4 * scale, "{flavour:?} image {b}: max abs diff {diff} (scale {scale})");
        }
        // The two images differ, and so do their embeddings.
        assert!(max_abs_diff(&out[0], &out[1].iter().map(|v| *v as f64).collect::<Vec<_>>()) > 1e-3);
    }
}

#[test]
fn with_fc_weight_zeroed_the_embedding_is_the_normalised_fc_bias() {
    for flavour in [Flavour::ArcFace, Flavour::AdaFace] {
        let cfg = Config::tiny().with_flavour(flavour);
        let mut tensors = synthetic(&IResNet::layout(&cfg).unwrap(), 5);
        let (fc, features) = match flavour {
            Flavour::ArcFace => ("fc", "features"),
            Flavour::AdaFace => ("output_layer.3", "output_layer.4"),
        };
        let get = |t: &Named, n: &str| t.iter().find(|(m, _, _)| m == n).map(|(_, _, d)| d.clone());
        tensors.iter_mut().filter(|(n, _, _)| *n == format!("{fc}.weight")).for_each(|(_, _, d)| d.fill(0.0));
        let bias = get(&tensors, &format!("{fc}.bias")).unwrap();
        let rm = get(&tensors, &format!("{features}.running_mean")).unwrap();
        let rv = get(&tensors, &format!("{features}.running_var")).unwrap();
        let w = get(&tensors, &format!("{features}.weight")).unwrap_or(vec![1.0; 16]);
        let b = get(&tensors, &format!("{features}.bias")).unwrap_or(vec![0.0; 16]);
        let want: Vec<f64> = (0..16)
            .map(|j| (bias[j] as f64 - rm[j] as f64) / (rv[j] as f64 + 1e-5).sqrt() * w[j] as f64 + b[j] as f64)
            .collect();
        let model = build(&cfg, &tensors);
        for seed in [1, 2] {
            let got = run(&model, &input(1, 112, seed), 1);
            let diff = max_abs_diff(&got[0], &want);
            assert!(diff < 1e-5, "{flavour:?}: max abs diff {diff}");
        }
    }
}

#[test]
fn num_batches_tracked_is_ignored_by_the_strict_loader() {
    // PyTorch state dicts carry BatchNorm step counters; they are not weights and are skipped.
    let cfg = Config::tiny();
    let layout = IResNet::layout(&cfg).unwrap();
    let mut tensors = synthetic(&layout, 1);
    tensors.push(("bn1.num_batches_tracked".into(), vec![], vec![100.0]));
    tensors.push(("layer1.0.bn1.num_batches_tracked".into(), vec![], vec![100.0]));
    let dir = tempfile::tempdir().unwrap();
    let path = save(dir.path(), "w.safetensors", &tensors);
    let ckpt = load_checked(&path, &layout, "iresnet-custom").expect("counters are skipped");
    assert_eq!(ckpt.tensors.len(), layout.params.len());
    assert!(!ckpt.tensors.contains_key("bn1.num_batches_tracked"));
    // ...and architecture detection looks past them too.
    assert_eq!(detect_config_file(&path).unwrap(), cfg);
    // A genuinely foreign tensor is still refused.
    tensors.push(("layer9.0.conv1.weight".into(), vec![1], vec![0.0]));
    let path = save(dir.path(), "w2.safetensors", &tensors);
    match load_checked(&path, &layout, "iresnet-custom") {
        Err(ModelError::UnexpectedKeys { names, .. }) => assert_eq!(names, ["layer9.0.conv1.weight"]),
        other => panic!("expected UnexpectedKeys, got {other:?}"),
    }
}

#[test]
fn missing_shortcut_projection_is_reported() {
    let cfg = Config::tiny();
    let layout = IResNet::layout(&cfg).unwrap();
    let tensors: Named =
        synthetic(&layout, 1).into_iter().filter(|(n, _, _)| n != "layer1.0.downsample.0.weight").collect();
    let dir = tempfile::tempdir().unwrap();
    let path = save(dir.path(), "w.safetensors", &tensors);
    match load_checked(&path, &layout, "iresnet-custom") {
        Err(ModelError::MissingKeys { names, .. }) => assert_eq!(names, ["layer1.0.downsample.0.weight"]),
        other => panic!("expected MissingKeys, got {other:?}"),
    }
}

#[test]
fn forward_rejects_a_wrong_input_size() {
    let cfg = Config::tiny();
    let model = build(&cfg, &synthetic(&IResNet::layout(&cfg).unwrap(), 1));
    let x = Tensor::zeros((1, 3, 96, 96), candle_core::DType::F32, &Device::Cpu).unwrap();
    let err = model.forward(&x).unwrap_err().to_string();
    assert!(err.contains("(B, 3, 112, 112)") && err.contains("96"), "{err}");
}

// ---------------------------------------------------------------------------------------
// Architecture detection.

fn with_counters(layout: &ParamLayout) -> Vec<(String, Vec<usize>)> {
    let mut out = layout.params.clone();
    for bn in layout.params.iter().filter_map(|(n, _)| n.strip_suffix(".running_var")) {
        out.push((format!("{bn}.num_batches_tracked"), vec![]));
    }
    out
}

fn detect(params: &[(String, Vec<usize>)]) -> Option<Config> {
    detect_config(params.iter().map(|(n, s)| (n.as_str(), s.as_slice())))
}

#[test]
fn detect_config_recovers_every_preset() {
    let mut configs: Vec<Config> = presets().into_iter().map(|(c, _)| c).collect();
    configs.push(Config::tiny());
    configs.push(Config::tiny().with_flavour(Flavour::AdaFace));
    configs.push(Config { input_size: 224, ..Config::tiny() });
    for cfg in configs {
        let layout = IResNet::layout(&cfg).unwrap();
        assert_eq!(detect(&layout.params).as_ref(), Some(&cfg), "{}", cfg.arch_name());
        assert_eq!(detect(&with_counters(&layout)).as_ref(), Some(&cfg), "{} + counters", cfg.arch_name());
    }
}

#[test]
fn detect_config_refuses_what_is_not_an_iresnet() {
    assert_eq!(detect(&[]), None);
    let mbf = ParamLayout::record(|vb| {
        facelens_models::mobilefacenet::MobileFaceNet::new(&facelens_models::mobilefacenet::Config::w600k_mbf(), vb)
    })
    .unwrap();
    assert_eq!(detect(&mbf.params), None);
    // A block missing in the middle of a stage.
    let ir50 = IResNet::layout(&Config::iresnet50()).unwrap();
    let holed: Vec<_> = ir50.params.iter().filter(|(n, _)| !n.starts_with("layer3.5.")).cloned().collect();
    assert_eq!(detect(&holed), None);
    // AdaFace IR-SE adds squeeze-excitation weights this module does not have.
    let mut se = IResNet::layout(&Config::adaface_ir50()).unwrap().params;
    se.push(("body.0.res_layer.6.fc1.weight".into(), vec![4, 64, 1, 1]));
    assert_eq!(detect(&se), None);
    // A wrong shape anywhere.
    let mut bad = IResNet::layout(&Config::iresnet18()).unwrap().params;
    bad.iter_mut().find(|(n, _)| n == "layer2.1.prelu.weight").unwrap().1 = vec![1];
    assert_eq!(detect(&bad), None);
}

// ---------------------------------------------------------------------------------------
// PyTorch parity (ignored by default: needs torch).

fn torch_python() -> Option<PathBuf> {
    let p = std::env::var_os("FACELENS_TORCH_PYTHON")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/facelens-bench-venv/bin/python")))?;
    p.exists().then_some(p)
}

fn script(python: &Path, args: &[&str]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/check-iresnet-torch.py");
    let out = std::process::Command::new(python).arg(script).args(args).output().expect("run python");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
#[ignore = "needs PyTorch: $HOME/.cache/facelens-bench-venv/bin/python or FACELENS_TORCH_PYTHON"]
fn matches_pytorch_reference() {
    let python = torch_python().expect("no python with torch");
    for (cfg, arch) in presets() {
        let torch: Vec<_> = parse_state_dict(
            &script(&python, &["layout", arch]).lines().filter(|l| !l.starts_with('#')).collect::<Vec<_>>().join("\n"),
        )
        .into_iter()
        .filter(|(n, _)| !n.ends_with(".num_batches_tracked"))
        .collect();
        let ours: HashMap<_, _> = IResNet::layout(&cfg).unwrap().params.into_iter().collect();
        assert_eq!(ours, torch.into_iter().collect::<HashMap<_, _>>(), "{arch}: layout");
    }
    for (cfg, arch) in [(Config::iresnet18(), "iresnet18"), (Config::adaface_ir18(), "adaface_ir18")] {
        let dir = tempfile::tempdir().unwrap();
        let tensors = synthetic(&IResNet::layout(&cfg).unwrap(), 42);
        let weights = save(dir.path(), "w.safetensors", &tensors);
        let xs = input(2, 112, 43);
        let x_path = save(dir.path(), "x.safetensors", &vec![("input".into(), vec![2, 3, 112, 112], xs.clone())]);
        let got = run(&build(&cfg, &tensors), &xs, 2);
        let json = script(&python, &["embed", arch, weights.to_str().unwrap(), x_path.to_str().unwrap()]);
        let want: Vec<Vec<f64>> = serde_json::from_str(&json).unwrap();
        for (g, w) in got.iter().zip(&want) {
            let diff = max_abs_diff(g, w);
            let scale = w.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            let dot: f64 = g.iter().zip(w).map(|(a, b)| *a as f64 * b).sum();
            let norm = |v: &mut dyn Iterator<Item = f64>| v.map(|x| x * x).sum::<f64>().sqrt();
            let cos = dot / (norm(&mut g.iter().map(|v| *v as f64)) * norm(&mut w.iter().copied()));
            println!(
                "{arch}: max |candle - torch| = {diff:.3e}, max |torch| = {scale:.3}, 1 - cosine = {:.1e}",
                1.0 - cos
            );
            assert!(diff <= 1e-4 * scale.max(1.0) && cos > 0.999_999, "{arch}");
        }
    }
}
