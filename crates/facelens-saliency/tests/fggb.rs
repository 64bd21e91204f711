//! FGGB's invariants on a random MobileFaceNet, and agreement between the fast engine
//! and candle's autograd.

use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use facelens_models::mobilefacenet::{Config, MobileFaceNet};
use facelens_models::reverse::Net;
use facelens_saliency::engine::normalised;
use facelens_saliency::fggb::{dimension_weights, shifted_weights};
use facelens_saliency::reduce::ChannelReduction;
use facelens_saliency::{Decision, Explainer, FacePair, Fggb, FggbConfig, GradientEngine, NetEngine};

fn tiny_net(seed: u64) -> (MobileFaceNet, Net) {
    let map = VarMap::new();
    let m = MobileFaceNet::new(&Config::tiny(), VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu)).unwrap();
    facelens_models::weights::fill_deterministic(&map, seed).unwrap();
    let net = Net::from_mobilefacenet(&m).unwrap();
    (m, net)
}

fn image(seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    (0..3 * 112 * 112)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        })
        .collect()
}

fn total(v: &[f32]) -> f64 {
    v.iter().map(|x| *x as f64).sum()
}

#[test]
fn weights_sum_to_cosine_and_shift_sums_to_margin() {
    let (_, net) = tiny_net(1);
    let engine = NetEngine::new(net, Some(16));
    let (a, b) = (image(1), image(2));
    let fa = normalised(&engine.embed(&a, 1).unwrap());
    let fb = normalised(&engine.embed(&b, 1).unwrap());
    let w = dimension_weights(&fa, &fb);
    let cos = facelens_models::preprocess::cosine(&fa, &fb);
    assert!((total(&w) - cos as f64).abs() < 1e-5, "sum w_k {} != cos {cos}", total(&w));
    let v = shifted_weights(&w, 0.3);
    assert!((total(&v) - (cos as f64 - 0.3)).abs() < 1e-5);
    let e = Fggb::default().explain(&engine, FacePair { a: &a, b: &b }, 0.3).unwrap();
    assert!((e.score - cos).abs() < 1e-5);
    assert_eq!(e.decision, Decision::at(cos, 0.3));
}

#[test]
fn identical_images_at_zero_threshold_have_no_dissimilarity() {
    let (_, net) = tiny_net(2);
    let engine = NetEngine::new(net, Some(16));
    let a = image(3);
    let e = Fggb::default().explain(&engine, FacePair { a: &a, b: &a }, 0.0).unwrap();
    assert!((e.score - 1.0).abs() < 1e-5);
    assert!(e.maps.sa_neg.iter().all(|&v| v == 0.0), "S_A- must vanish");
    assert!(e.maps.sb_neg.iter().all(|&v| v == 0.0), "S_B- must vanish");
    assert!(total(&e.maps.sa_pos) > 0.0);
}

#[test]
fn maps_are_finite_non_negative_and_full_resolution() {
    let (_, net) = tiny_net(3);
    let engine = NetEngine::new(net, Some(7));
    let (a, b) = (image(4), image(5));
    for cfg in [
        FggbConfig::default(),
        FggbConfig { channel_reduction: ChannelReduction::MaxAbs, ..Default::default() },
        FggbConfig { normalised_embedding: false, ..Default::default() },
        FggbConfig { blur: true, ..Default::default() },
    ] {
        let e = Fggb::new(cfg.clone()).explain(&engine, FacePair { a: &a, b: &b }, 0.2).unwrap();
        for (name, m) in e.maps.named() {
            assert_eq!(m.len(), 112 * 112, "{name}");
            assert!(m.iter().all(|v| v.is_finite() && *v >= 0.0), "{name} under {cfg:?}");
        }
        // A pixel is never both similar and dissimilar in the unblurred maps.
        if !cfg.blur {
            assert!(e.maps.sa_pos.iter().zip(&e.maps.sa_neg).all(|(p, n)| *p == 0.0 || *n == 0.0));
        }
    }
}

#[test]
fn raising_the_threshold_moves_mass_from_similarity_to_dissimilarity() {
    let (_, net) = tiny_net(4);
    let engine = NetEngine::new(net, Some(16));
    let (a, b) = (image(6), image(7));
    let fggb = Fggb::default();
    let lo = fggb.explain(&engine, FacePair { a: &a, b: &b }, -0.5).unwrap();
    let hi = fggb.explain(&engine, FacePair { a: &a, b: &b }, 0.9).unwrap();
    assert!(total(&hi.maps.sa_pos) < total(&lo.maps.sa_pos));
    assert!(total(&hi.maps.sa_neg) > total(&lo.maps.sa_neg));
    assert!(total(&hi.maps.sb_neg) > total(&lo.maps.sb_neg));
}

#[test]
fn one_row_per_pass_and_all_rows_per_pass_give_the_same_maps() {
    let (_, net) = tiny_net(5);
    let (a, b) = (image(8), image(9));
    let one = NetEngine::new(net.clone(), Some(1));
    let all = NetEngine::new(net, Some(64));
    let e1 = Fggb::default().explain(&one, FacePair { a: &a, b: &b }, 0.1).unwrap();
    let e64 = Fggb::default().explain(&all, FacePair { a: &a, b: &b }, 0.1).unwrap();
    for ((name, m1), (_, m64)) in e1.maps.named().into_iter().zip(e64.maps.named()) {
        let scale = m1.iter().fold(0f32, |m, v| m.max(*v)).max(1e-12);
        let err = m1.iter().zip(m64.iter()).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale;
        assert!(err < 1e-5, "{name}: B=1 vs B=64 relative difference {err}");
    }
}

#[test]
fn fast_engine_matches_candle_autograd_engine() {
    let (m, net) = tiny_net(6);
    let (a, b) = (image(10), image(11));
    let fast = NetEngine::new(net, Some(16));
    let autograd = facelens_saliency::AutogradEngine {
        backbone: facelens_models::Backbone::MobileFaceNet(m),
        device: Device::Cpu,
        size: 112,
        dim: Config::tiny().num_features,
        rows: 8,
        passes: Default::default(),
    };
    let ef = Fggb::default().explain(&fast, FacePair { a: &a, b: &b }, 0.1).unwrap();
    let ea = Fggb::default().explain(&autograd, FacePair { a: &a, b: &b }, 0.1).unwrap();
    // FGGB costs one Jacobian row per embedding dimension and image on either engine.
    let rows = 2 * Config::tiny().num_features as u64;
    assert_eq!(fast.passes(), (2, rows));
    assert_eq!(autograd.passes().1, rows);
    assert!((ef.score - ea.score).abs() < 1e-5);
    // Errors are relative to the signed map's largest magnitude (S = S+ - S-).
    let scale_of = |p: &[f32], n: &[f32]| p.iter().chain(n).fold(0f32, |m, v| m.max(*v)).max(1e-12);
    let scales = [scale_of(&ea.maps.sa_pos, &ea.maps.sa_neg), scale_of(&ea.maps.sb_pos, &ea.maps.sb_neg)];
    for (i, ((name, x), (_, y))) in ef.maps.named().into_iter().zip(ea.maps.named()).enumerate() {
        let scale = scales[i / 2];
        let err = x.iter().zip(y.iter()).fold(0f32, |m, (p, q)| m.max((p - q).abs())) / scale;
        assert!(err < 1e-4, "{name}: fast vs autograd relative difference {err}");
    }
}

#[test]
fn baselines_produce_valid_maps() {
    let (_, net) = tiny_net(7);
    let engine = NetEngine::new(net, Some(16));
    let (a, b) = (image(12), image(13));
    // Perturbation baselines have their own tests at small budgets (tests/baselines.rs).
    for name in ["fggb", "score-gradient", "xssab"] {
        let e = facelens_saliency::by_name(name).unwrap().explain(&engine, FacePair { a: &a, b: &b }, 0.2).unwrap();
        for (m, v) in e.maps.named() {
            assert!(v.iter().all(|x| x.is_finite() && *x >= 0.0), "{name}/{m}");
            assert!(total(v) > 0.0 || m.ends_with("neg"), "{name}/{m} is all zero");
        }
    }
    assert!(facelens_saliency::by_name("nope").is_err());
}

fn variant(normalised: bool, max: bool, pdn: bool, blur: bool, tau: f32) -> facelens_saliency::FggbVariant {
    facelens_saliency::FggbVariant {
        config: FggbConfig {
            normalised_embedding: normalised,
            channel_reduction: if max { ChannelReduction::MaxAbs } else { ChannelReduction::MeanAbs },
            per_dimension_norm: pdn,
            blur,
        },
        tau,
    }
}

/// One pass over each image's Jacobian serves every variant: each equals the variant explained on
/// its own (bit for bit on the normalised embedding; to float rounding for raw rows recombined
/// from normalised ones).
#[test]
fn variants_from_one_jacobian_equal_each_variant_alone() {
    let (_, net) = tiny_net(5);
    let engine = NetEngine::new(net, Some(5));
    let (a, b) = (image(11), image(12));
    let pair = FacePair { a: &a, b: &b };
    let variants = vec![
        variant(true, false, true, false, 0.2151),
        variant(true, true, true, false, 0.2151),
        variant(true, false, false, false, 0.2151),
        variant(true, false, true, true, 0.2151),
        variant(true, false, true, false, 0.1910),
        variant(false, false, true, false, 0.2151),
        variant(false, true, false, true, 0.1910),
    ];
    let (maps, score) = facelens_saliency::fggb::variant_maps(&engine, pair, &variants).unwrap();
    assert_eq!(maps.len(), variants.len());
    let max_abs = |v: &[f32]| v.iter().map(|x| x.abs()).fold(0.0f32, f32::max);
    for (v, m) in variants.iter().zip(&maps) {
        let alone = Fggb::new(v.config.clone()).explain(&engine, pair, v.tau).unwrap();
        assert_eq!(score, alone.score);
        for ((name, got), (_, want)) in m.named().iter().zip(alone.maps.named()) {
            assert!(got.iter().all(|x| x.is_finite() && *x >= 0.0), "{name}");
            if v.config.normalised_embedding {
                assert!(*got == want, "{v:?} {name}: not bit-identical to the variant alone");
            } else {
                let d = got.iter().zip(want).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
                assert!(d <= 1e-4 * max_abs(want), "{v:?} {name}: off by {d} (scale {})", max_abs(want));
            }
        }
    }
    // The raw variant really differs from the normalised one.
    let d = maps[0].sa_pos.iter().zip(&maps[5].sa_pos).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
    assert!(d > 1e-3 * max_abs(&maps[0].sa_pos));
}

#[test]
fn tensor_engine_matches_the_cpu_engine() {
    let (_, net) = tiny_net(8);
    let (a, b) = (image(12), image(13));
    let tensor = facelens_saliency::TensorEngine::new(net.clone(), &Device::Cpu, 24).unwrap();
    let fast = NetEngine::new(net, Some(16));
    let et = Fggb::default().explain(&tensor, FacePair { a: &a, b: &b }, 0.1).unwrap();
    let ef = Fggb::default().explain(&fast, FacePair { a: &a, b: &b }, 0.1).unwrap();
    assert!((et.score - ef.score).abs() < 1e-5);
    assert_eq!(tensor.passes(), fast.passes(), "the same passes, counted the same way");
    for ((name, x), (_, y)) in et.maps.named().into_iter().zip(ef.maps.named()) {
        let scale = y.iter().fold(0f32, |m, v| m.max(*v)).max(1e-12);
        let err = x.iter().zip(y.iter()).fold(0f32, |m, (p, q)| m.max((p - q).abs())) / scale;
        assert!(err < 1e-5, "{name}: tensor vs CPU engine relative difference {err}");
    }
}
