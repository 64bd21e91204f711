//! The frozen-network engine agrees with candle: forward values, input gradients from
//! autograd, finite differences, and across batch sizes.

mod common;

use candle_core::{DType, Device, Module, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use facelens_models::mobilefacenet::{Config, MobileFaceNet};
use facelens_models::reverse::Net;
use facelens_models::FaceModel;

fn tiny_model(seed: u64) -> MobileFaceNet {
    let map = VarMap::new();
    let vb = VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu);
    let m = MobileFaceNet::new(&Config::tiny(), vb).unwrap();
    // Non-trivial BatchNorm statistics and PReLU slopes that differ per channel, the same every run.
    facelens_models::weights::fill_deterministic(&map, seed).unwrap();
    m
}

fn image(seed: u64, s: usize) -> Vec<f32> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..3 * s * s)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn autograd_rows(m: &impl Module, x: &[f32], s: usize, seeds: &[Vec<f32>]) -> Vec<Vec<f32>> {
    let var = Var::from_tensor(&Tensor::from_vec(x.to_vec(), (1, 3, s, s), &Device::Cpu).unwrap()).unwrap();
    let y = m.forward(var.as_tensor()).unwrap();
    seeds
        .iter()
        .map(|seed| {
            let sd = Tensor::from_vec(seed.clone(), (1, seed.len()), &Device::Cpu).unwrap();
            let g = (&y * sd).unwrap().sum_all().unwrap().backward().unwrap();
            g.get(var.as_tensor()).unwrap().flatten_all().unwrap().to_vec1().unwrap()
        })
        .collect()
}

fn max_rel(a: &[f32], b: &[f32]) -> f32 {
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

#[test]
fn forward_matches_candle_on_random_tiny_net() {
    let m = tiny_model(1);
    let net = Net::from_mobilefacenet(&m).unwrap();
    let (s, b) = (112, 3);
    let x: Vec<f32> = (0..b).flat_map(|i| image(i as u64 + 10, s)).collect();
    let ours = net.forward(&x, b);
    let theirs = m.forward(&Tensor::from_vec(x, (b, 3, s, s), &Device::Cpu).unwrap()).unwrap();
    let theirs: Vec<f32> = theirs.flatten_all().unwrap().to_vec1().unwrap();
    let err = max_rel(&ours, &theirs);
    assert!(err < 1e-4, "forward max relative error {err}");
}

#[test]
fn vjp_matches_candle_autograd_on_random_tiny_net() {
    let m = tiny_model(2);
    let net = Net::from_mobilefacenet(&m).unwrap();
    let s = 112;
    let x = image(7, s);
    let d = net.output_dim();
    let seeds: Vec<Vec<f32>> = (0..4).map(|k| image(100 + k, 16)[..d].to_vec()).collect();
    let tape = net.tape(&x);
    let flat: Vec<f32> = seeds.iter().flatten().copied().collect();
    let ours = net.vjp(&tape, &flat, seeds.len());
    let reference = autograd_rows(&m, &x, s, &seeds);
    for (k, r) in reference.iter().enumerate() {
        let row = &ours[k * 3 * s * s..(k + 1) * 3 * s * s];
        let err = max_rel(row, r);
        assert!(err < 1e-4, "row {k}: max relative error {err} against candle autograd");
    }
}

/// A small graph that exercises every kernel: full conv with stride and padding,
/// grouped conv, depthwise stride 2, pointwise, affine, PReLU, residual add, dense.
fn small_net() -> Net {
    use facelens_models::reverse::{BufShape, ConvGeom, Op};
    let w = |n: usize, seed: u64| image(seed, 16)[..n].iter().map(|v| v * 0.5).collect::<Vec<f32>>();
    let mut net = Net::new(BufShape { c: 3, h: 9, w: 9 });
    let g = |cin, cout, k, stride, pad, groups, h| ConvGeom { cin, cout, k, stride, pad, groups, h, w: h };
    let a = net.push(Op::Conv { input: 0, geom: g(3, 4, 3, 2, 1, 1, 9), weight: w(4 * 3 * 9, 1), bias: w(4, 2) });
    let a = net.push(Op::PRelu { input: a, slope: vec![0.1, 0.2, 0.3, 0.25] });
    let b = net.push(Op::Conv { input: a, geom: g(4, 4, 3, 1, 1, 2, 5), weight: w(4 * 2 * 9, 3), bias: w(4, 4) });
    let b = net.push(Op::Affine { input: b, scale: w(4, 5), shift: w(4, 6) });
    let b = net.push(Op::PRelu { input: b, slope: vec![0.3, 0.1, 0.2, 0.05] });
    let c = net.push(Op::Add { a: b, b: a });
    let c = net.push(Op::Conv { input: c, geom: g(4, 4, 3, 2, 1, 4, 5), weight: w(4 * 9, 7), bias: w(4, 8) });
    let c = net.push(Op::Conv { input: c, geom: g(4, 6, 1, 1, 0, 1, 3), weight: w(24, 9), bias: w(6, 10) });
    net.push(Op::Dense { input: c, weight: w(5 * 54, 11), bias: w(5, 12), out: 5 });
    net
}

#[test]
fn vjp_matches_finite_differences() {
    let net = small_net();
    let x = image(9, 9)[..3 * 81].to_vec();
    let seed = vec![0.7f32, -1.1, 0.4, 0.9, -0.3];
    let grad = net.vjp(&net.tape(&x), &seed, 1);
    let f = |x: &[f32]| -> f64 { net.forward(x, 1).iter().zip(&seed).map(|(a, b)| *a as f64 * *b as f64).sum() };
    let eps = 1e-3f32;
    let scale = grad.iter().fold(0f32, |m, v| m.max(v.abs())) as f64;
    let mut worst = 0f64;
    for idx in 0..x.len() {
        let (mut xp, mut xm) = (x.clone(), x.clone());
        xp[idx] += eps;
        xm[idx] -= eps;
        let fd = (f(&xp) - f(&xm)) / (2.0 * eps as f64);
        worst = worst.max((fd - grad[idx] as f64).abs() / scale);
    }
    eprintln!("finite differences over all {} inputs: worst error {worst:.2e} of max |grad|", x.len());
    assert!(worst < 2e-3, "worst finite-difference error {worst}");
}

#[test]
fn vjp_with_inner_seeds_matches_finite_differences() {
    // L(x) = seed . f(x) + sum_l g_l . a_l(x) over two inner buffers, one of them read by a
    // residual add (its gradient arrives from two ops).
    let net = small_net();
    let x = image(9, 9)[..3 * 81].to_vec();
    let seed = vec![0.7f32, -1.1, 0.4, 0.9, -0.3];
    let inner_bufs = [2usize, 6];
    let g: Vec<Vec<f32>> = inner_bufs.iter().enumerate().map(|(k, &b)| image(20 + k as u64, 9)[..net.shapes[b].numel()].to_vec()).collect();
    let inner: Vec<(usize, &[f32])> = inner_bufs.iter().zip(&g).map(|(b, g)| (*b, g.as_slice())).collect();
    let grad = net.vjp_with_inner(&net.tape(&x), &seed, &inner);
    let f = |x: &[f32]| -> f64 {
        let tape = net.tape(x);
        let out: f64 = tape.output().iter().zip(&seed).map(|(a, b)| *a as f64 * *b as f64).sum();
        out + inner_bufs.iter().zip(&g).map(|(&b, g)| net.activation(&tape, b).iter().zip(g).map(|(a, w)| *a as f64 * *w as f64).sum::<f64>()).sum::<f64>()
    };
    let eps = 1e-3f32;
    let scale = grad.iter().fold(0f32, |m, v| m.max(v.abs())) as f64;
    let mut worst = 0f64;
    for idx in 0..x.len() {
        let (mut xp, mut xm) = (x.clone(), x.clone());
        xp[idx] += eps;
        xm[idx] -= eps;
        let fd = (f(&xp) - f(&xm)) / (2.0 * eps as f64);
        worst = worst.max((fd - grad[idx] as f64).abs() / scale);
    }
    assert!(worst < 2e-3, "worst finite-difference error {worst}");
    // Without inner seeds it is the plain VJP.
    let plain = net.vjp(&net.tape(&x), &seed, 1);
    assert_eq!(net.vjp_with_inner(&net.tape(&x), &seed, &[]), plain);
}

#[test]
fn batched_rows_equal_single_rows() {
    let m = tiny_model(4);
    let net = Net::from_mobilefacenet(&m).unwrap();
    let x = image(11, 112);
    let tape = net.tape(&x);
    let d = net.output_dim();
    let r = 8;
    let mut seeds = vec![0f32; r * d];
    for k in 0..r {
        seeds[k * d + k] = 1.0;
    }
    let batched = net.vjp(&tape, &seeds, r);
    let n = 3 * 112 * 112;
    for k in 0..r {
        let single = net.vjp(&tape, &seeds[k * d..(k + 1) * d], 1);
        let err = max_rel(&batched[k * n..(k + 1) * n], &single);
        assert!(err < 1e-5, "row {k}: batched vs single relative error {err}");
    }
}

#[test]
#[ignore = "needs ../shared"]
fn real_w600k_mbf_vjp_matches_autograd() {
    let (ckpt, reference) = (common::imported_default(), common::reference());
    let model = FaceModel::load(ckpt.to_str().unwrap(), &Device::Cpu).unwrap();
    let facelens_models::Backbone::MobileFaceNet(m) = &model.backbone else { panic!("w600k_mbf is a MobileFaceNet") };
    let net = Net::from_mobilefacenet(m).unwrap();
    let x = facelens_models::preprocess::normalise_chw(&reference.images[0], &model.spec).unwrap();
    let tape = net.tape(&x);
    let emb_err = max_rel(tape.output(), &reference.embeddings[0]);
    assert!(emb_err < 1e-5, "engine forward vs onnxruntime: {emb_err}");
    let seeds: Vec<Vec<f32>> = [0usize, 311].iter().map(|&k| (0..512).map(|j| (j == k) as u8 as f32).collect()).collect();
    let flat: Vec<f32> = seeds.iter().flatten().copied().collect();
    let ours = net.vjp(&tape, &flat, 2);
    let reference_rows = autograd_rows(m, &x, 112, &seeds);
    for (k, r) in reference_rows.iter().enumerate() {
        let err = max_rel(&ours[k * r.len()..(k + 1) * r.len()], r);
        eprintln!("w600k_mbf row {k}: relative error vs candle autograd {err:.2e}");
        assert!(err < 1e-4);
    }
}

fn tiny_iresnet(flavour: facelens_models::iresnet::Flavour, seed: u64) -> facelens_models::iresnet::IResNet {
    use facelens_models::iresnet::{Config as IrConfig, IResNet};
    let map = VarMap::new();
    let vb = VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu);
    // Build once to create the variables, fill them deterministically, then build again.
    let cfg = IrConfig::tiny().with_flavour(flavour);
    IResNet::new(&cfg, vb.clone()).unwrap();
    facelens_models::weights::fill_deterministic(&map, seed).unwrap();
    IResNet::new(&cfg, vb).unwrap()
}

/// The lowered `net` of candle module `m` agrees with it on one image (`image_seed`): the
/// forward output, and three Jacobian rows (seeds from `seed_base`) against candle autograd.
fn check_lowering(what: &str, m: &impl Module, net: &Net, image_seed: u64, seed_base: u64) {
    let s = net.input.h;
    let x = image(image_seed, s);
    let theirs: Vec<f32> = m
        .forward(&Tensor::from_vec(x.clone(), (1, 3, s, s), &Device::Cpu).unwrap())
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let tape = net.tape(&x);
    let err = max_rel(tape.output(), &theirs);
    assert!(err < 1e-4, "{what}: forward relative error {err}");
    let d = net.output_dim();
    let seeds: Vec<Vec<f32>> = (0..3).map(|k| image(seed_base + k, 16)[..d].to_vec()).collect();
    let flat: Vec<f32> = seeds.iter().flatten().copied().collect();
    let ours = net.vjp(&tape, &flat, seeds.len());
    for (k, r) in autograd_rows(m, &x, s, &seeds).iter().enumerate() {
        let err = max_rel(&ours[k * r.len()..(k + 1) * r.len()], r);
        assert!(err < 1e-4, "{what} row {k}: relative error {err} against candle autograd");
    }
}

#[test]
fn iresnet_lowering_matches_candle_forward_and_autograd() {
    use facelens_models::iresnet::Flavour;
    for (i, flavour) in [Flavour::ArcFace, Flavour::AdaFace].into_iter().enumerate() {
        let m = tiny_iresnet(flavour, 20 + i as u64);
        let net = Net::from_iresnet(&m).unwrap();
        check_lowering(&format!("{flavour:?}"), &m, &net, 30 + i as u64, 200);
    }
}

#[test]
fn sface_lowering_matches_candle_forward_and_autograd() {
    use facelens_models::sface::{Config as SfConfig, SFace};
    let map = VarMap::new();
    let vb = VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu);
    // Build once to create the variables, fill them deterministically, then build again
    // (BatchNorm scale and shift are computed at construction).
    SFace::new(&SfConfig::tiny(), vb.clone()).unwrap();
    facelens_models::weights::fill_deterministic(&map, 40).unwrap();
    let m = SFace::new(&SfConfig::tiny(), vb).unwrap();
    let net = Net::from_sface(&m).unwrap();
    assert_eq!(net.output_dim(), m.config.num_features);
    check_lowering("sface", &m, &net, 41, 300);
}

#[test]
fn a_batch_tape_is_the_images_own_tapes() {
    // What a per-image loss needs from a micro-batch: the same outputs and kept activations
    // (bit for bit) and, with one seed row and inner seeds per image, each image's gradient.
    let m = tiny_model(5);
    let net = Net::from_mobilefacenet(&m).unwrap();
    let (s, b) = (112, 3);
    let n = 3 * s * s;
    let x: Vec<f32> = (0..b).flat_map(|i| image(30 + i as u64, s)).collect();
    let d = net.output_dim();
    let kept = [net.last_buffer_with_spatial(28, 28).unwrap(), net.last_buffer_with_spatial(7, 7).unwrap()];
    let tape = net.tape_batch(&x, b, &kept);
    assert_eq!(tape.images(), b);
    let seeds: Vec<f32> = (0..b).flat_map(|i| image(40 + i as u64, 16)[..d].to_vec()).collect();
    let values = |seed: u64, len: usize| image(seed, (len as f64 / 3.0).sqrt() as usize + 1)[..len].to_vec();
    let inner_seeds: Vec<Vec<f32>> = kept.iter().map(|&k| values(50 + k as u64, net.shapes[k].numel() * b)).collect();
    let inner: Vec<(usize, &[f32])> = kept.iter().zip(&inner_seeds).map(|(k, g)| (*k, g.as_slice())).collect();
    let grads = net.vjp_with_inner(&tape, &seeds, &inner);
    let outputs = tape.outputs();
    for i in 0..b {
        let own = net.tape(&x[i * n..(i + 1) * n]);
        assert_eq!(&outputs[i * d..(i + 1) * d], own.output(), "image {i}: output");
        let mut own_inner = Vec::new();
        for (&k, g) in kept.iter().zip(&inner_seeds) {
            let batch: Vec<f32> = net.activation(&tape, k).iter().skip(i).step_by(b).copied().collect();
            assert_eq!(batch, net.activation(&own, k), "image {i}: buffer {k}");
            own_inner.push(g.iter().skip(i).step_by(b).copied().collect::<Vec<f32>>());
        }
        let refs: Vec<(usize, &[f32])> = kept.iter().zip(&own_inner).map(|(k, g)| (*k, g.as_slice())).collect();
        let own_grad = net.vjp_with_inner(&own, &seeds[i * d..(i + 1) * d], &refs);
        let err = max_rel(&grads[i * n..(i + 1) * n], &own_grad);
        assert!(err < 1e-5, "image {i}: gradient differs by {err} of its largest value");
    }
    // A later tape reuses the dropped one's buffers: nothing of them shows.
    drop(tape);
    let other: Vec<f32> = (0..b).flat_map(|i| image(60 + i as u64, s)).collect();
    drop(net.tape_batch(&other, b, &kept));
    let again = net.tape_batch(&x, b, &kept);
    assert_eq!(again.outputs(), outputs);
    assert_eq!(net.vjp_with_inner(&again, &seeds, &inner), grads);
}
