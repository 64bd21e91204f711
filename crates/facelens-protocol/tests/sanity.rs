//! The model-randomisation sanity check: on a tiny MobileFaceNet the cascade's layer groups run
//! from the output down and cover every learnt layer once; on a small conv net, randomising every
//! layer leaves score-gradient maps uncorrelated with the trained network's, while the seeded random
//! baseline, which ignores the model, stays identical.

use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use facelens_eval::deletion::MapKind;
use facelens_models::mobilefacenet::{Config, MobileFaceNet};
use facelens_models::reverse::{BufShape, ConvGeom, Net, Op};
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

/// A small trained-looking network on 3x24x24 inputs: conv, PReLU, conv, PReLU, dense. Small enough
/// that the test runs in well under a second.
fn toy_net() -> Net {
    let mut rng = facelens_core::rng::SplitMix64::new(5);
    let mut v = |n: usize, scale: f32| (0..n).map(|_| (rng.uniform() - 0.5) * scale).collect::<Vec<f32>>();
    let mut net = Net::new(BufShape { c: 3, h: 24, w: 24 });
    let g1 = ConvGeom { cin: 3, cout: 6, k: 3, stride: 1, pad: 1, groups: 1, h: 24, w: 24 };
    let x = net.push(Op::Conv { input: 0, geom: g1, weight: v(6 * 3 * 9, 0.6), bias: v(6, 0.2) });
    let x = net.push(Op::PRelu { input: x, slope: vec![0.25; 6] });
    let g2 = ConvGeom { cin: 6, cout: 8, k: 3, stride: 2, pad: 1, groups: 1, h: 24, w: 24 };
    let x = net.push(Op::Conv { input: x, geom: g2, weight: v(8 * 6 * 9, 0.4), bias: v(8, 0.2) });
    let x = net.push(Op::PRelu { input: x, slope: vec![0.25; 8] });
    let d = net.shapes[x].numel();
    net.push(Op::Dense { input: x, weight: v(16 * d, 0.1), bias: v(16, 0.1), out: 16 });
    net
}

fn toy_image(seed: u64) -> Vec<f32> {
    let mut rng = facelens_core::rng::SplitMix64::new(seed);
    (0..3 * 24 * 24).map(|_| rng.uniform() * 2.0 - 1.0).collect()
}

#[test]
fn randomising_every_layer_decorrelates_gradient_maps() {
    let net = toy_net();
    let groups = net.layer_groups(3);
    assert_eq!(groups.iter().map(|g| g.name.as_str()).collect::<Vec<_>>(), ["dense", "12x12", "24x24"]);
    let engine = NetEngine::new(net.clone(), Some(8));
    let make = |n: Net| -> facelens_protocol::Result<Box<dyn GradientEngine>> { Ok(Box::new(NetEngine::new(n, Some(8)))) };
    // Averaged over a few pairs: one pair's correlation with an independent map is noisy.
    let mut last = Vec::new();
    for k in 0..6 {
        let (a, b) = (toy_image(2 * k + 1), toy_image(2 * k + 2));
        let pair = FacePair { a: &a, b: &b };
        let r = pair_sanity(&engine, &net, &groups, &make, &ScoreGradient, pair, 0.0, MapKind::Similarity).expect("sanity");
        assert_eq!((r.cascading.len(), r.independent.len()), (3, 3));
        // The cascade's last step and the independent step of the only group left agree in kind:
        // both change the map.
        assert!(r.cascading[0].spearman < 0.95, "dense randomised: {}", r.cascading[0].spearman);
        last.push(r.cascading[2].spearman);
        // One group (`--groups 1`) is the cascade's last step alone: the same network, the same maps.
        let all = net.layer_groups(1);
        assert_eq!((all.len(), all[0].ops.len()), (1, groups.iter().map(|g| g.ops.len()).sum::<usize>()));
        let one = pair_sanity(&engine, &net, &all, &make, &ScoreGradient, pair, 0.0, MapKind::Similarity).expect("sanity");
        assert_eq!((one.cascading[0], one.independent[0]), (r.cascading[2], r.cascading[2]));
        assert_eq!(step_names(&all).0, [ALL_LAYERS]);
    }
    let mean = last.iter().sum::<f64>() / last.len() as f64;
    assert!(mean.abs() < 0.1, "all layers randomised: mean spearman {mean} ({last:?})");
    // The random baseline does not read the model: its maps survive any randomisation.
    let (a, b) = (toy_image(1), toy_image(2));
    let pair = FacePair { a: &a, b: &b };
    let random = pair_sanity(&engine, &net, &groups, &make, &RandomMaps::default(), pair, 0.0, MapKind::Similarity).expect("sanity");
    assert!(random.cascading.iter().all(|s| (s.spearman - 1.0).abs() < 1e-9 && (s.ssim - 1.0).abs() < 1e-9));
}
