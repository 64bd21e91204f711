//! The model-randomisation sanity check on a tiny MobileFaceNet: the cascade's layer groups run
//! from the output down and cover every learnt layer once; randomising nothing leaves the maps as
//! they are, and randomising every layer leaves score-gradient maps uncorrelated with the trained
//! network's (while the seeded random baseline, which ignores the model, stays identical).

use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use facelens_eval::deletion::MapKind;
use facelens_models::mobilefacenet::{Config, MobileFaceNet};
use facelens_models::reverse::Net;
use facelens_protocol::sanity::{pair_sanity, step_names, ALL_LAYERS};
use facelens_saliency::random::RandomMaps;
use facelens_saliency::score_gradient::ScoreGradient;
use facelens_saliency::{FacePair, GradientEngine, NetEngine};

fn tiny_net() -> Net {
    let map = VarMap::new();
    let m = MobileFaceNet::new(&Config::tiny(), VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu)).unwrap();
    facelens_models::weights::fill_deterministic(&map, 11).unwrap();
    Net::from_mobilefacenet(&m).unwrap()
}

/// A smooth face-like image: a bright ellipse and two dark eyes on a gradient, plus texture.
fn image(seed: u64) -> Vec<f32> {
    let mut rng = facelens_core::rng::SplitMix64::new(seed);
    let mut img = vec![0f32; 3 * 112 * 112];
    for p in 0..112 * 112 {
        let (y, x) = ((p / 112) as f32, (p % 112) as f32);
        let face = if ((x - 56.0) / 38.0).powi(2) + ((y - 60.0) / 48.0).powi(2) < 1.0 { 0.6 } else { -0.4 };
        let eyes = if ((x - 38.0).powi(2) + (y - 52.0).powi(2)).min((x - 74.0).powi(2) + (y - 52.0).powi(2)) < 40.0 { -0.8 } else { 0.0 };
        let v = face + eyes + 0.2 * (y / 112.0) + 0.1 * (rng.uniform() - 0.5);
        for c in 0..3 {
            img[c * 112 * 112 + p] = v;
        }
    }
    img
}

#[test]
fn groups_cover_every_learnt_layer_once_from_the_output_down() {
    let net = tiny_net();
    let groups = net.layer_groups(8);
    assert!((6..=12).contains(&groups.len()), "{} groups", groups.len());
    assert_eq!(groups[0].name, "dense");
    let mut ops: Vec<usize> = groups.iter().flat_map(|g| g.ops.clone()).collect();
    // Output side first: each group's ops come after the next group's.
    for w in groups.windows(2) {
        assert!(w[0].ops[0] > *w[1].ops.last().unwrap(), "{} before {}", w[0].name, w[1].name);
    }
    ops.sort_unstable();
    ops.dedup();
    let learnt = net.ops.iter().filter(|o| matches!(o, facelens_models::reverse::Op::Conv { .. } | facelens_models::reverse::Op::Dense { .. })).count();
    assert_eq!(ops.len(), learnt);
    // The same op is re-drawn identically wherever it is randomised; others are untouched.
    let (one, both) = (net.randomised(&groups[0].ops, 0), net.randomised(&[groups[0].ops.clone(), groups[1].ops.clone()].concat(), 0));
    let w = |n: &Net, i: usize| match &n.ops[i] {
        facelens_models::reverse::Op::Conv { weight, .. } | facelens_models::reverse::Op::Dense { weight, .. } => weight.clone(),
        _ => unreachable!(),
    };
    assert_eq!(w(&one, groups[0].ops[0]), w(&both, groups[0].ops[0]));
    assert_ne!(w(&one, groups[0].ops[0]), w(&net, groups[0].ops[0]));
    assert_eq!(w(&one, groups[1].ops[0]), w(&net, groups[1].ops[0]));
    assert_eq!(step_names(&groups).0.last().map(String::as_str), Some(ALL_LAYERS));
}

#[test]
fn randomising_every_layer_decorrelates_gradient_maps() {
    let net = tiny_net();
    let groups = net.layer_groups(8);
    let engine = NetEngine::new(net.clone(), Some(8));
    let make = |n: Net| -> facelens_protocol::Result<Box<dyn GradientEngine>> { Ok(Box::new(NetEngine::new(n, Some(8)))) };
    let (a, b) = (image(1), image(2));
    let pair = FacePair { a: &a, b: &b };
    let result = pair_sanity(&engine, &net, &groups, &make, &ScoreGradient, pair, 0.0, MapKind::Similarity).expect("sanity");
    assert_eq!(result.cascading.len(), groups.len());
    assert_eq!(result.independent.len(), groups.len());
    let last = result.cascading.last().unwrap();
    assert!(last.spearman.abs() < 0.2, "all layers randomised: spearman {}", last.spearman);
    assert!(last.ssim < 0.5, "all layers randomised: ssim {}", last.ssim);
    // The random baseline does not read the model: its maps survive any randomisation.
    let random = pair_sanity(&engine, &net, &groups[..2], &make, &RandomMaps::default(), pair, 0.0, MapKind::Similarity).expect("sanity");
    assert!(random.cascading.iter().all(|s| (s.spearman - 1.0).abs() < 1e-9 && (s.ssim - 1.0).abs() < 1e-9));
}
