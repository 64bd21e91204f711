//! Training losses of the decoder (docs/design.md §9):
//! `lambda_pix * L1_masked(x_hat, x) + lambda_id * (1 - cos(l2(f(x_hat)), z)) + lambda_ssim * (1 - SSIM)
//!  + lambda_perc * feature matching in f (see [`crate::net_loss`]) + lambda_tv * TV2(x_hat)`.
//!
//! The identity term runs the frozen backbone `f` inside candle's autograd. Its weights are plain
//! tensors (loaded through `VarBuilder::from_tensors`), not `Var`s, so the backward pass only
//! stores gradients for the decoder's variables and the optimizer can never touch the backbone.
//!
//! On the CPU that is slow: candle computes every backbone weight gradient too and runs
//! MobileFaceNet's depthwise convolutions group by group (fwd+bwd of 16 faces ~45 s on two
//! cores). [`IdentityBackend::Net`] instead asks the backbone's lowered frozen graph
//! (`facelens_models::reverse::Net`) for `g = dL_id/dx_hat` (input gradient only, ~10x faster)
//! and puts the surrogate `sum(x_hat * g)` into the graph: its gradient with respect to every
//! decoder parameter is exactly the identity loss's. `tests/losses.rs` checks the two agree.

use std::sync::Arc;

use candle_core::{Device, Module, Tensor, D};
use facelens_models::reverse::Net;
use facelens_models::zoo::ColourOrder;
use facelens_models::{FaceModel, ModelSpec};
use serde::{Deserialize, Serialize};

use crate::decoder::l2_normalise_rows;
use crate::error::Result;
use crate::net_loss::{net_terms, NetTerms};
use crate::metrics::{gaussian_kernel, SSIM_K1, SSIM_K2, SSIM_SIGMA, SSIM_WINDOW};

/// Weights of the loss terms; a zero weight skips the term's computation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LossConfig {
    pub pixel: f64,
    pub identity: f64,
    /// `1 - SSIM` on the RGB reconstruction (a cheap perceptual term).
    pub ssim: f64,
    /// Feature matching on the frozen backbone's activations ([`crate::net_loss`]); needs the
    /// lowered CPU graph (`identity_backend` `auto` or `net` on the CPU).
    pub perceptual: f64,
    /// Squared total variation: mean squared difference of vertically and horizontally
    /// adjacent pixels, a penalty on high frequencies.
    pub tv: f64,
    pub identity_backend: IdentityBackend,
}

impl Default for LossConfig {
    fn default() -> Self {
        Self {
            pixel: 1.0,
            identity: 1.0,
            ssim: 0.0,
            perceptual: 0.0,
            tv: 0.0,
            identity_backend: IdentityBackend::Auto,
        }
    }
}

/// How the identity loss's gradient through the frozen backbone is computed (same value and
/// same gradient either way, up to float rounding).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IdentityBackend {
    /// `net` when the backbone has a lowered CPU graph and the data is on the CPU, else `autograd`.
    #[default]
    Auto,
    /// candle autograd through the backbone module (any device).
    Autograd,
    /// The lowered frozen graph's input-only vector-Jacobian product (CPU).
    Net,
}

/// The affine map from decoder output (RGB in `[-1, 1]`, `pixel = (x + 1) * 127.5`) to a
/// backbone's normalised input, plus its channel order. For w600k_mbf (RGB, mean = std =
/// 127.5) it is the identity and costs nothing.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInput {
    pub scale: [f32; 3],
    pub shift: [f32; 3],
    pub bgr: bool,
}

impl ModelInput {
    pub fn identity() -> Self {
        Self {
            scale: [1.0; 3],
            shift: [0.0; 3],
            bgr: false,
        }
    }

    pub fn from_spec(spec: &ModelSpec) -> Self {
        // ((x + 1) * 127.5 - mean) / std = x * 127.5 / std + (127.5 - mean) / std
        Self {
            scale: std::array::from_fn(|c| 127.5 / spec.std[c]),
            shift: std::array::from_fn(|c| (127.5 - spec.mean[c]) / spec.std[c]),
            bgr: spec.colour == ColourOrder::Bgr,
        }
    }

    pub fn is_identity(&self) -> bool {
        *self == Self::identity()
    }

    /// Applies the map to `(N, 3, H, W)` decoder output (differentiable).
    pub fn apply(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        if self.is_identity() {
            return Ok(x.clone());
        }
        let dev = x.device();
        let scale = Tensor::from_slice(&self.scale, (1, 3, 1, 1), dev)?;
        let shift = Tensor::from_slice(&self.shift, (1, 3, 1, 1), dev)?;
        let y = x.broadcast_mul(&scale)?.broadcast_add(&shift)?;
        if self.bgr {
            y.index_select(&Tensor::from_slice(&[2u32, 1, 0], 3, dev)?, 1)
        } else {
            Ok(y)
        }
    }
}

/// A frozen face-recognition network seen from the decoder: decoder images in, L2-normalised
/// embeddings out.
#[derive(Clone)]
pub struct FrozenBackbone {
    module: Arc<dyn Module + Send + Sync>,
    net: Option<Arc<Net>>,
    input: ModelInput,
    dim: usize,
}

impl std::fmt::Debug for FrozenBackbone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrozenBackbone")
            .field("input", &self.input)
            .field("dim", &self.dim)
            .finish()
    }
}

impl FrozenBackbone {
    /// The model's candle backbone (BatchNorm in eval mode, weights plain tensors), plus its
    /// lowered CPU graph when the model lives on the CPU.
    pub fn from_model(model: &FaceModel) -> Self {
        let net = if model.device.is_cpu() {
            Net::from_backbone(&model.backbone).ok().map(Arc::new)
        } else {
            None
        };
        Self {
            module: Arc::new(model.backbone.clone()),
            net,
            input: ModelInput::from_spec(&model.spec),
            dim: model.spec.embedding_dim,
        }
    }

    /// Any module, e.g. a tiny network in tests (autograd only).
    pub fn new(module: Arc<dyn Module + Send + Sync>, input: ModelInput, dim: usize) -> Self {
        Self {
            module,
            net: None,
            input,
            dim,
        }
    }

    /// Whether [`IdentityBackend::Net`] is available.
    pub fn has_net(&self) -> bool {
        self.net.is_some()
    }

    /// The terms computed through the backbone, weighted: identity `mean(1 - cos(l2(f(x_hat)),
    /// z))` and feature matching against the source images `x`. The objective's gradient is the
    /// weighted terms' gradient (for the `Net` backend a surrogate whose value is meaningless).
    pub fn backbone_terms(
        &self,
        x_hat: &Tensor,
        z: &Tensor,
        x: &Tensor,
        cfg: &LossConfig,
    ) -> Result<NetTerms> {
        let use_net = match cfg.identity_backend {
            IdentityBackend::Autograd => false,
            IdentityBackend::Net => true,
            IdentityBackend::Auto => self.net.is_some() && x_hat.device().is_cpu(),
        };
        let need_net = |what: &str| {
            crate::ReconError::Config(format!(
                "{what} needs a backbone with a lowered CPU graph (a CPU run with identity_backend auto or net)"
            ))
        };
        if !use_net {
            if cfg.perceptual != 0.0 {
                return Err(need_net("train.loss.perceptual"));
            }
            let l = identity_loss(&self.embed(x_hat)?, z)?;
            let v = scalar(&l);
            return Ok(NetTerms { objective: (l * cfg.identity)?, identity: Some(v), perceptual: None });
        }
        let net = self.net.as_ref().ok_or_else(|| need_net("identity_backend = \"net\""))?;
        net_terms(net, &self.input, x_hat, z, x, cfg.identity, cfg.perceptual)
    }

    pub fn embedding_dim(&self) -> usize {
        self.dim
    }

    /// L2-normalised embeddings `(N, D)` of decoder images `(N, 3, H, W)`.
    pub fn embed(&self, x: &Tensor) -> Result<Tensor> {
        let y = self.module.forward(&self.input.apply(x)?)?;
        Ok(l2_normalise_rows(&y)?)
    }
}

/// Per-pixel weights `H*W`: 0 where the aligned source crop (HWC RGB `u8`) is exactly black in
/// every channel — the border the alignment warp fills in — and 1 elsewhere.
pub fn border_mask(rgb: &[u8]) -> Vec<f32> {
    rgb.chunks_exact(3)
        .map(|p| if p.iter().all(|v| *v == 0) { 0.0 } else { 1.0 })
        .collect()
}

/// Mean absolute error over unmasked pixels and all channels. `mask` is `(N, 1, H, W)`.
pub fn masked_l1(x_hat: &Tensor, x: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let c = x.dim(1)? as f64;
    let err = (x_hat - x)?.abs()?.broadcast_mul(mask)?.sum_all()?;
    let count = ((mask.sum_all()? * c)? + 1e-6)?;
    Ok(err.broadcast_div(&count)?)
}

/// `cos` of each row pair of two `(N, D)` L2-normalised matrices.
pub fn row_cosines(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    Ok((a * b)?.sum(D::Minus1)?)
}

/// `mean(1 - cos(e_hat, z))` for normalised embeddings.
pub fn identity_loss(e_hat: &Tensor, z: &Tensor) -> Result<Tensor> {
    Ok(row_cosines(e_hat, z)?.neg()?.affine(1.0, 1.0)?.mean_all()?)
}

/// Differentiable mean SSIM of two `(N, 3, H, W)` tensors in `[-1, 1]`: the same quantity as
/// [`crate::metrics::ssim_plane`] on the 8-bit images. SSIM's luminance term is not
/// shift-invariant, so the values are first mapped to intensities in `[0, 1]`. On the CPU in
/// f32 this is one pass forward and one backward ([`crate::ssim_op`]).
pub fn ssim_tensor(x: &Tensor, y: &Tensor) -> Result<Tensor> {
    if crate::norm_act::fast(x) && crate::norm_act::fast(y) {
        return Ok(crate::ssim_op::ssim_mean(x, y)?);
    }
    ssim_tensor_composed(x, y)
}

/// [`ssim_tensor`] composed from candle ops (any device and dtype).
pub(crate) fn ssim_tensor_composed(x: &Tensor, y: &Tensor) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let (x, y) = (x.affine(0.5, 0.5)?, y.affine(0.5, 0.5)?);
    let size = SSIM_WINDOW.min(h).min(w);
    // The Gaussian window is separable: a row pass then a column pass (2 x 11 taps instead of
    // 121, which matters most for the backward pass through candle's transposed convolution).
    let k1: Vec<f32> = gaussian_kernel(size, SSIM_SIGMA).iter().map(|v| *v as f32).collect();
    let row = Tensor::from_vec(k1.clone(), (1, 1, 1, size), x.device())?;
    let col = Tensor::from_vec(k1, (1, 1, size, 1), x.device())?;
    let x = x.reshape((n * c, 1, h, w))?;
    let y = y.reshape((n * c, 1, h, w))?;
    let blur = |t: &Tensor| t.conv2d(&row, 0, 1, 1, 1)?.conv2d(&col, 0, 1, 1, 1);
    let (mx, my) = (blur(&x)?, blur(&y)?);
    let vx = (blur(&x.sqr()?)? - mx.sqr()?)?;
    let vy = (blur(&y.sqr()?)? - my.sqr()?)?;
    let cov = (blur(&(&x * &y)?)? - (&mx * &my)?)?;
    let range = 1.0;
    let c1 = (SSIM_K1 * range).powi(2);
    let c2 = (SSIM_K2 * range).powi(2);
    let num = (((&mx * &my)? * 2.0)? + c1)?.mul(&((cov * 2.0)? + c2)?)?;
    let den = ((mx.sqr()? + my.sqr()?)? + c1)?.mul(&((vx + vy)? + c2)?)?;
    Ok((num / den)?.mean_all()?)
}

/// Squared total variation of `(N, C, H, W)`: the mean of the squared differences between
/// vertically adjacent pixels plus the same horizontally.
pub fn tv_loss(x: &Tensor) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    let dy = (x.narrow(2, 1, h - 1)? - x.narrow(2, 0, h - 1)?)?.sqr()?.mean_all()?;
    let dx = (x.narrow(3, 1, w - 1)? - x.narrow(3, 0, w - 1)?)?.sqr()?.mean_all()?;
    Ok((dy + dx)?)
}

/// `1 - SSIM`.
pub fn ssim_loss(x_hat: &Tensor, x: &Tensor) -> Result<Tensor> {
    Ok(ssim_tensor(x_hat, x)?.affine(-1.0, 1.0)?)
}

/// The loss of one batch: what to differentiate, and the terms' values for logging.
#[derive(Debug, Clone)]
pub struct LossTerms {
    /// Differentiate this (its value equals `total` except with the `Net` backend).
    pub objective: Tensor,
    pub total: f64,
    pub pixel: Option<f64>,
    pub identity: Option<f64>,
    pub ssim: Option<f64>,
    pub perceptual: Option<f64>,
    pub tv: Option<f64>,
}

/// Computes the weighted loss. `backbone` is needed only when `cfg.identity` or
/// `cfg.perceptual` is non-zero.
pub fn decoder_loss(
    cfg: &LossConfig,
    x_hat: &Tensor,
    x: &Tensor,
    mask: &Tensor,
    z: &Tensor,
    backbone: Option<&FrozenBackbone>,
) -> Result<LossTerms> {
    let mut objective = Tensor::zeros((), x_hat.dtype(), x_hat.device())?;
    let mut terms = LossTerms {
        objective: objective.clone(),
        total: 0.0,
        pixel: None,
        identity: None,
        ssim: None,
        perceptual: None,
        tv: None,
    };
    if cfg.pixel != 0.0 {
        let l = masked_l1(x_hat, x, mask)?;
        objective = (objective + (&l * cfg.pixel)?)?;
        terms.pixel = Some(scalar(&l));
    }
    if cfg.identity != 0.0 || cfg.perceptual != 0.0 {
        let bb = backbone.ok_or_else(|| {
            crate::ReconError::Config(
                "the identity and perceptual losses need a backbone (set train.loss.identity = 0 and train.loss.perceptual = 0 to train without)"
                    .into(),
            )
        })?;
        let t = bb.backbone_terms(x_hat, z, x, cfg)?;
        objective = (objective + t.objective)?;
        terms.identity = t.identity.filter(|_| cfg.identity != 0.0);
        terms.perceptual = t.perceptual;
    }
    if cfg.ssim != 0.0 {
        let l = ssim_loss(x_hat, x)?;
        objective = (objective + (&l * cfg.ssim)?)?;
        terms.ssim = Some(scalar(&l));
    }
    if cfg.tv != 0.0 {
        let l = tv_loss(x_hat)?;
        objective = (objective + (&l * cfg.tv)?)?;
        terms.tv = Some(scalar(&l));
    }
    terms.total = cfg.pixel * terms.pixel.unwrap_or(0.0)
        + cfg.identity * terms.identity.unwrap_or(0.0)
        + cfg.ssim * terms.ssim.unwrap_or(0.0)
        + cfg.perceptual * terms.perceptual.unwrap_or(0.0)
        + cfg.tv * terms.tv.unwrap_or(0.0);
    terms.objective = objective;
    Ok(terms)
}

/// A scalar tensor as `f64` (NaN when it cannot be read).
pub fn scalar(t: &Tensor) -> f64 {
    t.to_device(&Device::Cpu)
        .and_then(|t| t.to_dtype(candle_core::DType::F64))
        .and_then(|t| t.to_scalar::<f64>())
        .unwrap_or(f64::NAN)
}
