//! Deletion / Insertion on toy "models" whose right answer is known.
//!
//! The toy verifier looks only at the top-left quadrant of a 3x16x16 image: its embedding is
//! `[bias, q_0 - fill, ..., q_63 - fill]` with `q_i` the channel mean of quadrant pixel `i`, so a
//! removed pixel contributes exactly 0. The ideal map is the quadrant; a uniformly random map
//! spreads its budget over pixels the model never sees, so it must lose clearly.

use facelens_eval::deletion::{
    accuracy_curve, cosine, evaluate, pair_curve, perturb, pixel_count, ranking, steps, Curve,
    ImageShape, MapKind, Mode, PairCurve, PairInput, Perturb, Protocol,
};
use facelens_eval::EvalError;

mod common;
use common::*;

struct Pair {
    a: Vec<f32>,
    b: Vec<f32>,
    genuine: bool,
}

fn pairs(genuine: bool, count: usize, seed: u64) -> Vec<Pair> {
    let mut rng = Rng(seed);
    (0..count)
        .map(|_| {
            let za: Vec<f32> = (0..Q * Q).map(|_| rng.normal()).collect();
            let zb: Vec<f32> = if genuine {
                za.iter().map(|z| z + 0.2 * rng.normal()).collect()
            } else {
                (0..Q * Q).map(|_| rng.normal()).collect()
            };
            Pair {
                a: image(&za, &mut rng),
                b: image(&zb, &mut rng),
                genuine,
            }
        })
        .collect()
}

fn ideal_map() -> Vec<f32> {
    (0..H * W)
        .map(|px| if in_quadrant(px) { 1.0 } else { 0.0 })
        .collect()
}

fn random_map(rng: &mut Rng) -> Vec<f32> {
    (0..H * W).map(|_| rng.uniform()).collect()
}

fn clean_score(pair: &Pair, bias: f32) -> f32 {
    let mut model = toy_model(bias);
    let ea = model(&pair.a, 1).expect("embed");
    let eb = model(&pair.b, 1).expect("embed");
    cosine(&ea, &eb)
}

/// Curves of the pairs of `kind` under ideal and random maps, at threshold `tau`.
fn ideal_vs_random(kind: MapKind, bias: f32, tau: f32, mode: Mode) -> (Curve, Curve) {
    let all = pairs(kind == MapKind::Similarity, 24, 7 + bias.to_bits() as u64);
    let eligible: Vec<&Pair> = all
        .iter()
        .filter(|p| MapKind::for_pair(p.genuine, clean_score(p, bias), tau) == Some(kind))
        .collect();
    assert!(
        eligible.len() >= 20,
        "only {} of 24 toy pairs are eligible",
        eligible.len()
    );
    let ideal = ideal_map();
    let mut rng = Rng(99);
    let random: Vec<(Vec<f32>, Vec<f32>)> = eligible
        .iter()
        .map(|_| (random_map(&mut rng), random_map(&mut rng)))
        .collect();
    let protocol = Protocol {
        batch: 7,
        ..Protocol::default()
    };
    let inputs_ideal: Vec<PairInput> = eligible
        .iter()
        .map(|p| PairInput {
            a: &p.a,
            b: &p.b,
            map_a: &ideal,
            map_b: &ideal,
            genuine: p.genuine,
        })
        .collect();
    let inputs_random: Vec<PairInput> = eligible
        .iter()
        .zip(&random)
        .map(|(p, (ma, mb))| PairInput {
            a: &p.a,
            b: &p.b,
            map_a: ma,
            map_b: mb,
            genuine: p.genuine,
        })
        .collect();
    let mut model = toy_model(bias);
    let c_ideal =
        evaluate(&inputs_ideal, shape(), &protocol, tau, mode, &mut model).expect("ideal curve");
    let c_random =
        evaluate(&inputs_random, shape(), &protocol, tau, mode, &mut model).expect("random curve");
    eprintln!(
        "{kind:?} {mode:?} over {} pairs: ideal AUC {:.2}, random AUC {:.2}",
        eligible.len(),
        c_ideal.auc,
        c_random.auc
    );
    (c_ideal, c_random)
}

#[test]
fn similarity_maps_ideal_beats_random() {
    // Without a bias a fully removed quadrant embeds as the zero vector (cosine 0): Reject.
    let (ideal, random) = ideal_vs_random(MapKind::Similarity, 0.0, 0.5, Mode::Deletion);
    assert_eq!(ideal.accuracy[0], 1.0);
    // The whole quadrant is 25 % of the image: gone at p = 25 %.
    assert_eq!(ideal.accuracy[5], 0.0, "{:?}", ideal.accuracy);
    assert!(
        ideal.auc + 20.0 < random.auc,
        "deletion: ideal {} vs random {}",
        ideal.auc,
        random.auc
    );

    let (ideal, random) = ideal_vs_random(MapKind::Similarity, 0.0, 0.5, Mode::Insertion);
    assert_eq!(ideal.accuracy[0], 0.0);
    assert_eq!(*ideal.accuracy.last().expect("points"), 1.0);
    assert!(
        ideal.auc > random.auc + 20.0,
        "insertion: ideal {} vs random {}",
        ideal.auc,
        random.auc
    );
    assert!(ideal.auc > 90.0, "{}", ideal.auc);
}

#[test]
fn dissimilarity_maps_ideal_beats_random() {
    // With a strong bias two fully blackened quadrants embed identically: the impostor pair is
    // then (wrongly) accepted, which is what removing the dissimilar evidence should do.
    let bias = 32f32.sqrt();
    let (ideal, random) = ideal_vs_random(MapKind::Dissimilarity, bias, 0.6, Mode::Deletion);
    assert_eq!(ideal.accuracy[0], 1.0);
    assert!(
        ideal.auc + 20.0 < random.auc,
        "deletion: ideal {} vs random {}",
        ideal.auc,
        random.auc
    );

    let (ideal, random) = ideal_vs_random(MapKind::Dissimilarity, bias, 0.6, Mode::Insertion);
    assert_eq!(ideal.accuracy[0], 0.0, "all-black impostors look identical");
    assert!(
        ideal.auc > random.auc + 15.0,
        "insertion: ideal {} vs random {}",
        ideal.auc,
        random.auc
    );
}

#[test]
fn endpoints_reproduce_clean_decisions() {
    let mut rng = Rng(3);
    let mut all = pairs(true, 6, 11);
    all.extend(pairs(false, 6, 12));
    for perturb in [Perturb::Both, Perturb::Probe, Perturb::ByKind] {
        let protocol = Protocol {
            perturb,
            step_percent: 10.0,
            ..Protocol::default()
        };
        for p in &all {
            let (ma, mb) = (random_map(&mut rng), random_map(&mut rng));
            let input = PairInput {
                a: &p.a,
                b: &p.b,
                map_a: &ma,
                map_b: &mb,
                genuine: p.genuine,
            };
            let clean = clean_score(p, 0.5);
            let del: PairCurve = pair_curve::<EvalError, _>(
                &input,
                shape(),
                &protocol,
                Mode::Deletion,
                &mut toy_model(0.5),
            )
            .expect("curve");
            let ins: PairCurve = pair_curve::<EvalError, _>(
                &input,
                shape(),
                &protocol,
                Mode::Insertion,
                &mut toy_model(0.5),
            )
            .expect("curve");
            assert_eq!(del.scores.len(), 11);
            assert_eq!(del.scores[0], clean, "p = 0 deletion is the clean pair");
            assert_eq!(
                *ins.scores.last().expect("points"),
                clean,
                "p = 100 insertion is the clean pair"
            );
            assert_eq!(del.genuine, p.genuine);
        }
    }
}

#[test]
fn probe_mode_leaves_b_alone() {
    let p = &pairs(true, 1, 5)[0];
    let ideal = ideal_map();
    let input = PairInput {
        a: &p.a,
        b: &p.b,
        map_a: &ideal,
        map_b: &ideal,
        genuine: true,
    };
    let mut seen_b = 0;
    let mut model = toy_model(0.0);
    let mut spy = |images: &[f32], n: usize| {
        seen_b += images
            .chunks(C * H * W)
            .filter(|img| *img == p.b.as_slice())
            .count();
        model(images, n)
    };
    let protocol = Protocol {
        perturb: Perturb::Probe,
        ..Protocol::default()
    };
    let del = pair_curve::<EvalError, _>(&input, shape(), &protocol, Mode::Deletion, &mut spy)
        .expect("curve");
    assert_eq!(seen_b, 1, "B is embedded once, clean");
    // A's quadrant is gone from 25 % on; a zero embedding has cosine 0 with anything.
    assert_eq!(del.scores[5], 0.0);
    // Before that A keeps a fraction f of the quadrant and B all of it: cosine about sqrt(f).
    assert!(
        del.scores[0] > 0.9 && del.scores[4] > 0.25,
        "{:?}",
        del.scores
    );
}

#[test]
fn ranking_is_stable_descending() {
    let map = [0.5, 1.0, 0.5, -0.0, 0.0, 1.0, 0.25];
    assert_eq!(ranking(&map).expect("finite"), vec![1, 5, 0, 2, 6, 3, 4]);
    // All ties: index order.
    assert_eq!(ranking(&[0.0; 5]).expect("finite"), vec![0, 1, 2, 3, 4]);
    assert!(matches!(
        ranking(&[0.0, f32::NAN]),
        Err(EvalError::InvalidCurve(_))
    ));
    assert!(ranking(&[f32::INFINITY]).is_err());
}

#[test]
fn perturbation_touches_every_channel() {
    let s = ImageShape::new(2, 1, 4);
    let img = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
    let order = ranking(&[0.1, 0.9, 0.5, 0.0]).expect("finite"); // 1, 2, 0, 3
    assert_eq!(
        perturb(&img, s, &order, 50.0, -1.0, Mode::Deletion),
        vec![1.0, -1.0, -1.0, 4.0, 5.0, -1.0, -1.0, 8.0]
    );
    assert_eq!(
        perturb(&img, s, &order, 50.0, -1.0, Mode::Insertion),
        vec![-1.0, 2.0, 3.0, -1.0, -1.0, 6.0, 7.0, -1.0]
    );
    assert_eq!(
        perturb(&img, s, &order, 0.0, 9.0, Mode::Deletion),
        img.to_vec()
    );
    assert_eq!(
        perturb(&img, s, &order, 0.0, 9.0, Mode::Insertion),
        vec![9.0; 8]
    );
    assert_eq!(
        perturb(&img, s, &order, 100.0, 9.0, Mode::Deletion),
        vec![9.0; 8]
    );
    assert_eq!(
        perturb(&img, s, &order, 100.0, 9.0, Mode::Insertion),
        img.to_vec()
    );
}

#[test]
fn steps_and_counts() {
    let s = steps(5.0).expect("valid");
    assert_eq!(s.len(), 21);
    assert_eq!((s[0], s[1], s[20]), (0.0, 5.0, 100.0));
    assert_eq!(
        steps(30.0).expect("valid"),
        vec![0.0, 30.0, 60.0, 90.0, 100.0]
    );
    assert_eq!(steps(100.0).expect("valid"), vec![0.0, 100.0]);
    assert_eq!(steps(0.1).expect("valid").len(), 1001);
    for bad in [0.0, -5.0, 101.0, f64::NAN] {
        assert!(steps(bad).is_err(), "{bad}");
    }
    assert_eq!(pixel_count(5.0, 112 * 112), 627); // 627.2
    assert_eq!(pixel_count(100.0, 12544), 12544);
    assert_eq!(pixel_count(50.0, 3), 2); // 1.5 rounds up
}

#[test]
fn curve_is_order_independent_and_checked() {
    let st = [0.0, 50.0, 100.0];
    let a = PairCurve {
        genuine: true,
        scores: vec![0.9, 0.4, 0.1],
    };
    let b = PairCurve {
        genuine: false,
        scores: vec![0.1, 0.6, 0.2],
    };
    let c = PairCurve {
        genuine: true,
        scores: vec![0.8, 0.7, 0.0],
    };
    let fwd = accuracy_curve(&[a.clone(), b.clone(), c.clone()], &st, 0.5, Mode::Deletion)
        .expect("curve");
    let rev = accuracy_curve(&[c, b, a.clone()], &st, 0.5, Mode::Deletion).expect("curve");
    assert_eq!(fwd, rev);
    assert_eq!(fwd.accuracy, vec![1.0, 1.0 / 3.0, 1.0 / 3.0]);
    assert!((fwd.auc - (50.0 * (1.0 + 1.0 / 3.0) / 2.0 + 50.0 / 3.0)).abs() < 1e-12);
    assert_eq!(fwd.pairs, 3);

    assert_eq!(
        accuracy_curve(&[], &st, 0.5, Mode::Deletion),
        Err(EvalError::Empty)
    );
    let short = PairCurve {
        genuine: true,
        scores: vec![0.9],
    };
    assert!(accuracy_curve(&[a.clone(), short], &st, 0.5, Mode::Deletion).is_err());
    let nan = PairCurve {
        genuine: true,
        scores: vec![0.9, f32::NAN, 0.1],
    };
    assert!(matches!(
        accuracy_curve(&[a, nan], &st, 0.5, Mode::Deletion),
        Err(EvalError::NonFiniteScore { index: 1, .. })
    ));
}

#[test]
fn bad_inputs_and_scorer_errors() {
    let p = &pairs(true, 1, 1)[0];
    let ideal = ideal_map();
    let protocol = Protocol::default();
    let short_map = vec![1.0; 10];
    let bad = PairInput {
        a: &p.a,
        b: &p.b,
        map_a: &short_map,
        map_b: &ideal,
        genuine: true,
    };
    let err = pair_curve::<EvalError, _>(
        &bad,
        shape(),
        &protocol,
        Mode::Deletion,
        &mut toy_model(0.0),
    )
    .unwrap_err();
    assert!(
        matches!(err, EvalError::LengthMismatch { what: "map A", .. }),
        "{err}"
    );

    // The scorer's own error type comes back unchanged.
    #[derive(Debug, PartialEq)]
    enum MyError {
        Eval(EvalError),
        Model(&'static str),
    }
    impl From<EvalError> for MyError {
        fn from(e: EvalError) -> Self {
            MyError::Eval(e)
        }
    }
    let good = PairInput {
        a: &p.a,
        b: &p.b,
        map_a: &ideal,
        map_b: &ideal,
        genuine: true,
    };
    let mut failing =
        |_: &[f32], _: usize| -> Result<Vec<f32>, MyError> { Err(MyError::Model("out of memory")) };
    assert_eq!(
        pair_curve(&good, shape(), &protocol, Mode::Insertion, &mut failing),
        Err(MyError::Model("out of memory"))
    );
    let mut ragged =
        |_: &[f32], n: usize| -> Result<Vec<f32>, MyError> { Ok(vec![1.0; 2 * n + 1]) };
    assert!(matches!(
        pair_curve(&good, shape(), &protocol, Mode::Insertion, &mut ragged),
        Err(MyError::Eval(_))
    ));
}

#[test]
fn map_kinds() {
    assert_eq!(MapKind::for_pair(true, 0.5, 0.3), Some(MapKind::Similarity));
    assert_eq!(
        MapKind::for_pair(true, 0.3, 0.3),
        Some(MapKind::Similarity),
        "score == tau accepts"
    );
    assert_eq!(MapKind::for_pair(true, 0.2, 0.3), None);
    assert_eq!(
        MapKind::for_pair(false, 0.2, 0.3),
        Some(MapKind::Dissimilarity)
    );
    assert_eq!(MapKind::for_pair(false, 0.4, 0.3), None);
}

#[test]
fn by_kind_is_probe_for_genuine_and_both_for_impostor_pairs() {
    let mut rng = Rng(5);
    let mut all = pairs(true, 3, 21);
    all.extend(pairs(false, 3, 22));
    let curve = |p: &Pair, ma: &[f32], mb: &[f32], perturb: Perturb, mode: Mode| {
        let input = PairInput { a: &p.a, b: &p.b, map_a: ma, map_b: mb, genuine: p.genuine };
        let protocol = Protocol { perturb, step_percent: 10.0, ..Protocol::default() };
        pair_curve::<EvalError, _>(&input, shape(), &protocol, mode, &mut toy_model(0.5))
            .expect("curve")
            .scores
    };
    for p in &all {
        let (ma, mb) = (random_map(&mut rng), random_map(&mut rng));
        let same_as = if p.genuine { Perturb::Probe } else { Perturb::Both };
        for mode in Mode::ALL {
            assert_eq!(
                curve(p, &ma, &mb, Perturb::ByKind, mode),
                curve(p, &ma, &mb, same_as, mode),
                "genuine {} {mode:?}",
                p.genuine
            );
        }
    }
    assert_eq!(Perturb::ByKind.for_pair(true), Perturb::Probe);
    assert_eq!(Perturb::Probe.for_pair(false), Perturb::Probe);
}
