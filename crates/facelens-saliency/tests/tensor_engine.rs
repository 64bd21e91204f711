//! The device-agnostic engine (candle ops, `TensorNet`) against the hand-written CPU engine
//! (`Net`) on real backbones and real LFW faces of the reference set, for w600k_mbf and SFace:
//!
//! * embeddings agree (cosine);
//! * with the same PReLU signs, the reverse pass agrees to rounding (1e-5 of the largest input
//!   gradient) for a block of Jacobian rows;
//! * with its own forward pass, an activation within rounding of 0 can take the other PReLU
//!   branch (candle's convolutions sum in another order): where none does, the reverse pass and
//!   FGGB's maps agree to 1e-5 of their largest magnitude; where one does, the gradient moves
//!   near that unit and the maps must still correlate at r > 0.9999 (FGGB on one SFace pair:
//!   w600k_mbf's 512 rows take minutes on candle's CPU convolutions, see `facelens check-device`).
//!
//! Needs `../shared` and the weights `scripts/setup.sh` fetches.

use std::path::PathBuf;

use candle_core::{Device, Tensor};
use facelens_models::reverse::{Net, TensorNet};
use facelens_models::FaceModel;
use facelens_saliency::{engine_of, EngineKind, Explainer, FacePair, Fggb};

/// Pairs checked: 1 by default; `FACELENS_TENSOR_PAIRS=10` for the full comparison (the 20 faces
/// of 10 pairs; minutes on candle's CPU convolutions).
fn pairs() -> usize {
    std::env::var("FACELENS_TENSOR_PAIRS").ok().and_then(|v| v.parse().ok()).unwrap_or(1).clamp(1, 20)
}

/// The first `2 * pairs()` LFW crops of the reference set (aligned 112x112 RGB).
fn lfw_faces() -> Vec<Vec<u8>> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/models/w600k_mbf.reference.safetensors");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e} (needs ../shared)", path.display()));
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
    let t = st.tensor("images_rgb_u8").expect("images_rgb_u8");
    t.data().chunks_exact(112 * 112 * 3).take(2 * pairs()).map(<[u8]>::to_vec).collect()
}

fn relative_max_difference(x: &[f32], y: &[f32]) -> f32 {
    let scale = y.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-30);
    x.iter().zip(y).fold(0f32, |m, (p, q)| m.max((p - q).abs())) / scale
}

fn pearson(x: &[f32], y: &[f32]) -> f64 {
    let n = x.len() as f64;
    let (mx, my) = (x.iter().map(|v| *v as f64).sum::<f64>() / n, y.iter().map(|v| *v as f64).sum::<f64>() / n);
    let (sxy, sxx, syy) = x.iter().zip(y).fold((0.0, 0.0, 0.0), |(a, b, c), (p, q)| {
        let (dx, dy) = (*p as f64 - mx, *q as f64 - my);
        (a + dx * dy, b + dx * dx, c + dy * dy)
    });
    sxy / (sxx * syy).sqrt()
}

fn compare(model_name: &str, fggb_pair: bool) {
    let model = FaceModel::load(model_name, &Device::Cpu).unwrap_or_else(|e| panic!("{model_name}: {e} (scripts/setup.sh)"));
    let net = Net::from_backbone(&model.backbone).expect("lowering");
    let tn = TensorNet::new(&net, &Device::Cpu).expect("tensor net");
    let faces = lfw_faces();
    let x: Vec<Vec<f32>> = faces.iter().map(|f| facelens_models::preprocess::normalise_chw(f, &model.spec).unwrap()).collect();
    let (c, h, w) = (net.input.c, net.input.h, net.input.w);

    // Embeddings.
    let n = x.len();
    let all: Vec<f32> = x.concat();
    let want = net.forward(&all, n);
    let got: Vec<f32> = tn.forward(&Tensor::from_slice(&all, (n, c, h, w), &Device::Cpu).unwrap()).unwrap().flatten_all().unwrap().to_vec1().unwrap();
    let d = net.output_dim();
    for i in 0..n {
        let cos = facelens_models::preprocess::cosine(&got[i * d..(i + 1) * d], &want[i * d..(i + 1) * d]);
        assert!(cos > 0.99999, "{model_name} face {i}: embedding cosine {cos}");
    }

    // The reverse pass on 16 Jacobian rows of each face: with the CPU engine's activation signs it
    // must agree to rounding; with its own forward, an activation within rounding of 0 may take
    // the other PReLU branch, which moves the gradient locally.
    let rows = 16;
    let seeds: Vec<f32> = (0..rows * d).map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0).collect();
    let s = Tensor::from_slice(&seeds, (rows, d), &Device::Cpu).unwrap();
    let mut flipped = vec![0usize; x.len()];
    for (f, image) in x.iter().enumerate() {
        let tape = net.tape(image);
        let want = net.vjp(&tape, &seeds, rows);
        let same_signs = tn.tape_with_signs_of(&net, &tape).unwrap();
        let got: Vec<f32> = tn.vjp(&same_signs, &s).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let exact = relative_max_difference(&got, &want);
        assert!(exact <= 1e-5, "{model_name} face {f}: reverse pass with the same signs differs by {exact:.2e}");
        let own = tn.tape(&Tensor::from_slice(image, (1, c, h, w), &Device::Cpu).unwrap()).unwrap();
        let (flips, total) = tn.sign_flips(&own, &net, &tape).unwrap();
        let got: Vec<f32> = tn.vjp(&own, &s).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let (moved, r) = (relative_max_difference(&got, &want), pearson(&got, &want));
        eprintln!(
            "{model_name} face {f}: same-sign VJP max difference {exact:.2e}; own forward: {flips} of {total} PReLU inputs on the other branch, VJP max difference {moved:.2e}, r = {r:.7}"
        );
        assert!(flips * 10_000 < total, "{model_name}: {flips} of {total} PReLU branches differ: more than rounding");
        assert!(r > 0.9999, "{model_name}: own-forward VJP correlates at r = {r}");
        if flips == 0 {
            assert!(moved <= 1e-5, "{model_name} face {f}: no branch differs, yet the VJP moved by {moved:.2e}");
        }
        flipped[f] = flips;
    }

    if fggb_pair {
        let pair = FacePair { a: &x[0], b: &x[1] };
        let cpu = engine_of(EngineKind::Net, &model, Some(32)).unwrap();
        let tensor = engine_of(EngineKind::Tensor, &model, Some(32)).unwrap();
        let want = Fggb::default().explain(cpu.as_ref(), pair, 0.3).unwrap();
        let got = Fggb::default().explain(tensor.as_ref(), pair, 0.3).unwrap();
        // Per face, the signed map S = S+ - S-, relative to its largest magnitude.
        let signed = |p: &[f32], n: &[f32]| p.iter().zip(n).map(|(a, b)| a - b).collect::<Vec<f32>>();
        for (face, m, w) in [
            ("A", signed(&got.maps.sa_pos, &got.maps.sa_neg), signed(&want.maps.sa_pos, &want.maps.sa_neg)),
            ("B", signed(&got.maps.sb_pos, &got.maps.sb_neg), signed(&want.maps.sb_pos, &want.maps.sb_neg)),
        ] {
            let (diff, r) = (relative_max_difference(&m, &w), pearson(&m, &w));
            let flips = flipped[usize::from(face == "B")];
            eprintln!("{model_name} FGGB face {face}: max difference {diff:.2e} of the map's largest magnitude, r = {r:.7} ({flips} PReLU branches differ)");
            if flips == 0 {
                assert!(diff <= 1e-5, "{model_name} FGGB face {face}: differs by {diff:.2e}");
            } else {
                assert!(r > 0.9999, "{model_name} FGGB face {face}: r = {r} with {flips} PReLU branches differing");
            }
        }
    }
}

#[test]
#[ignore = "needs ../shared and fetched weights (scripts/setup.sh)"]
fn tensor_engine_equals_the_cpu_engine_on_w600k_mbf() {
    compare("w600k_mbf", false);
}

#[test]
#[ignore = "needs ../shared and SFace fetched (scripts/setup.sh); about a minute"]
fn tensor_engine_equals_the_cpu_engine_on_sface() {
    compare("sface", true);
}
