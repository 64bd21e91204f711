//! Loss terms: masking, identity loss through a frozen network, SSIM on tensors.

mod common;

use candle_core::{Device, Tensor, Var};
use common::{tiny_backbone, TinyNet, DIM};
use facelens_recon::decoder::l2_normalise_rows;
use facelens_recon::losses::{border_mask, identity_loss, masked_l1, ssim_tensor, ModelInput};
use facelens_recon::metrics::ssim_plane;
use facelens_core::rng::Xoshiro256;

#[test]
fn border_mask_marks_exactly_black_pixels() {
    let rgb = [0u8, 0, 0, 0, 0, 1, 5, 5, 5, 0, 0, 0];
    assert_eq!(border_mask(&rgb), vec![0.0, 1.0, 1.0, 0.0]);
}

#[test]
fn masked_l1_ignores_masked_pixels() {
    let dev = Device::Cpu;
    // One image, 1 channel would be simplest, but the loss averages over 3 channels.
    let x = Tensor::zeros((1, 3, 1, 2), candle_core::DType::F32, &dev).unwrap();
    let x_hat = Tensor::from_vec(
        vec![1f32, 100.0, 2.0, 100.0, 3.0, 100.0],
        (1, 3, 1, 2),
        &dev,
    )
    .unwrap();
    let mask = Tensor::from_vec(vec![1f32, 0.0], (1, 1, 1, 2), &dev).unwrap();
    let l: f32 = masked_l1(&x_hat, &x, &mask).unwrap().to_scalar().unwrap();
    assert!((l - 2.0).abs() < 1e-5, "{l}"); // (1 + 2 + 3) / 3
}

#[test]
fn identity_loss_is_zero_for_the_same_embedding_and_two_for_the_opposite() {
    let dev = Device::Cpu;
    let e = l2_normalise_rows(&Tensor::new(&[[1f32, 2.0, 2.0]], &dev).unwrap()).unwrap();
    assert!(
        identity_loss(&e, &e)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
            .abs()
            < 1e-6
    );
    let l: f32 = identity_loss(&e, &e.neg().unwrap())
        .unwrap()
        .to_scalar()
        .unwrap();
    assert!((l - 2.0).abs() < 1e-6);
}

#[test]
fn identity_gradient_reaches_the_image_but_never_the_backbone_weights() {
    let dev = Device::Cpu;
    let bb = tiny_backbone();
    let mut r = Xoshiro256::new(2);
    let img: Vec<f32> = (0..2 * 3 * 112 * 112)
        .map(|_| (r.uniform() * 2.0 - 1.0) as f32)
        .collect();
    let x = Var::from_tensor(&Tensor::from_vec(img, (2, 3, 112, 112), &dev).unwrap()).unwrap();
    let z =
        l2_normalise_rows(&Tensor::ones((2, DIM), candle_core::DType::F32, &dev).unwrap()).unwrap();
    let grads = identity_loss(&bb.embed(x.as_tensor()).unwrap(), &z)
        .unwrap()
        .backward()
        .unwrap();
    assert!(grads.get(x.as_tensor()).is_some());
    // The frozen network's weights are plain tensors: no gradient is stored for them.
    let net = TinyNet::new(11);
    assert!(grads.get(net.conv_weight()).is_none());
}

#[test]
fn tensor_ssim_equals_the_reference_implementation() {
    let dev = Device::Cpu;
    let mut r = Xoshiro256::new(4);
    let (h, w) = (24, 20);
    let a: Vec<f32> = (0..3 * h * w)
        .map(|_| (r.uniform() * 2.0 - 1.0) as f32)
        .collect();
    let b: Vec<f32> = a
        .iter()
        .map(|v| (v * 0.7 + 0.1 * (r.uniform() as f32 - 0.5)).clamp(-1.0, 1.0))
        .collect();
    let ta = Tensor::from_vec(a.clone(), (1, 3, h, w), &dev).unwrap();
    let tb = Tensor::from_vec(b.clone(), (1, 3, h, w), &dev).unwrap();
    let got: f32 = ssim_tensor(&ta, &tb).unwrap().to_scalar().unwrap();
    let p = h * w;
    // [-1, 1] with data range 2 is the same as [0, 255] with range 255 after scaling.
    let to255 = |v: &[f32]| v.iter().map(|x| (x + 1.0) * 127.5).collect::<Vec<f32>>();
    let expected: f64 = (0..3)
        .map(|c| {
            ssim_plane(
                &to255(&a[c * p..(c + 1) * p]),
                &to255(&b[c * p..(c + 1) * p]),
                h,
                w,
                255.0,
            )
        })
        .sum::<f64>()
        / 3.0;
    assert!((got as f64 - expected).abs() < 1e-4, "{got} vs {expected}");
    let same: f32 = ssim_tensor(&ta, &ta).unwrap().to_scalar().unwrap();
    assert!((same - 1.0).abs() < 1e-5);
}

#[test]
fn model_input_maps_unit_rgb_to_the_backbone_normalisation() {
    let dev = Device::Cpu;
    let mut spec = facelens_models::zoo::w600k_mbf();
    assert!(ModelInput::from_spec(&spec).is_identity());
    spec.mean = [0.0; 3];
    spec.std = [255.0; 3];
    spec.colour = facelens_models::zoo::ColourOrder::Bgr;
    let m = ModelInput::from_spec(&spec);
    // x = -1 (pixel 0) and x = 1 (pixel 255) map to 0 and 1; channels are reversed.
    let x = Tensor::new(&[-1f32, 1.0, 0.0], &dev)
        .unwrap()
        .reshape((1, 3, 1, 1))
        .unwrap();
    let y: Vec<f32> = m
        .apply(&x)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    assert_eq!(y, vec![0.5, 1.0, 0.0]);
}

/// A random tiny MobileFaceNet (112 px in) lowered to the frozen-network graph.
fn tiny_net() -> facelens_models::reverse::Net {
    use candle_nn::{VarBuilder, VarMap};
    use facelens_models::mobilefacenet::{Config, MobileFaceNet};
    let map = VarMap::new();
    let vb = VarBuilder::from_varmap(&map, candle_core::DType::F32, &Device::Cpu);
    let m = MobileFaceNet::new(&Config::tiny(), vb).unwrap();
    facelens_models::weights::fill_deterministic(&map, 5).unwrap();
    facelens_models::reverse::Net::from_mobilefacenet(&m).unwrap()
}

#[test]
fn feature_layers_are_the_last_prelu_per_resolution() {
    let net = tiny_net();
    let layers = facelens_recon::net_loss::feature_layers(&net);
    let sides: Vec<usize> = layers.iter().map(|&b| net.shapes[b].h).collect();
    assert_eq!(sides, vec![56, 28, 14, 7]);
    for &b in &layers {
        assert!(matches!(net.ops[b - 1], facelens_models::reverse::Op::PRelu { .. }));
        // No later PReLU output of the same size.
        assert!(!(b + 1..net.shapes.len()).any(|k| net.shapes[k].h == net.shapes[b].h && matches!(net.ops[k - 1], facelens_models::reverse::Op::PRelu { .. })));
    }
}

#[test]
fn backbone_terms_gradient_matches_a_directional_finite_difference() {
    // d/dt of identity + perceptual along a random direction v equals <grad, v>.
    let net = tiny_net();
    let dev = Device::Cpu;
    let input = ModelInput::identity();
    let rand = |n: usize, seed: u64, s: f32| {
        let mut r = facelens_core::rng::Xoshiro256::stream(seed, 1);
        (0..n).map(|_| ((2.0 * r.uniform() - 1.0) as f32) * s).collect::<Vec<f32>>()
    };
    let n = 2 * 3 * 112 * 112;
    let x_hat = Var::from_tensor(&Tensor::from_vec(rand(n, 1, 0.8), (2, 3, 112, 112), &dev).unwrap()).unwrap();
    let x = Tensor::from_vec(rand(n, 2, 0.8), (2, 3, 112, 112), &dev).unwrap();
    let z = facelens_recon::decoder::l2_normalise_rows(&Tensor::from_vec(rand(2 * net.output_dim(), 3, 1.0), (2, net.output_dim()), &dev).unwrap()).unwrap();
    let (wi, wp) = (1.0, 0.5);
    let terms = facelens_recon::net_loss::net_terms(&net, &input, x_hat.as_tensor(), &z, &x, wi, wp).unwrap();
    let grad = terms.objective.backward().unwrap();
    let g = grad.get(x_hat.as_tensor()).unwrap();
    let v = Tensor::from_vec(rand(n, 4, 1.0), (2, 3, 112, 112), &dev).unwrap();
    let predicted = (g * &v).unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap() as f64;
    let value = |t: f64| {
        let xt = (x_hat.as_tensor() + (&v * t).unwrap()).unwrap();
        let r = facelens_recon::net_loss::net_terms(&net, &input, &xt, &z, &x, wi, wp).unwrap();
        wi * r.identity.unwrap() + wp * r.perceptual.unwrap()
    };
    // Small steps: a step along v across all 75k pixels flips PReLU branches of near-zero
    // activations, a bias that shrinks with the step (measured: 3.5 % at 1e-3, 0.2 % at 1e-4).
    let eps = 1e-4;
    let fd = (value(eps) - value(-eps)) / (2.0 * eps);
    assert!((fd - predicted).abs() < 1e-2 * predicted.abs().max(1e-3), "finite difference {fd} vs gradient {predicted}");
    assert!(terms.perceptual.unwrap() > 0.0 && terms.identity.unwrap() > 0.0);
    // Feature matching of an image with itself is zero.
    let same = facelens_recon::net_loss::net_terms(&net, &input, &x, &z, &x, 0.0, 1.0).unwrap();
    assert!(same.perceptual.unwrap().abs() < 1e-12);
}
