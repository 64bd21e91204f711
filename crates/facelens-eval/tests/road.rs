//! ROAD on the quadrant toy (tests/common): with removed pixels imputed from their neighbours
//! instead of set to the fill, removing the quadrant first (MoRF) still breaks genuine decisions
//! far sooner than a random order, and removing it last (LeRF) keeps them far longer.

use facelens_eval::deletion::{evaluate, Mode, PairInput, Perturb, Protocol};
use facelens_eval::road::Road;
use facelens_eval::EvalError;

mod common;
use common::*;

#[test]
fn ideal_map_beats_random_under_road() {
    let mut rng = Rng(17);
    let pairs: Vec<(Vec<f32>, Vec<f32>)> = (0..16)
        .map(|_| {
            let za: Vec<f32> = (0..Q * Q).map(|_| rng.normal()).collect();
            let zb: Vec<f32> = za.iter().map(|z| z + 0.2 * rng.normal()).collect();
            (image(&za, &mut rng), image(&zb, &mut rng))
        })
        .collect();
    let ideal: Vec<f32> = (0..H * W).map(|p| if in_quadrant(p) { 1.0 } else { 0.0 }).collect();
    let random: Vec<Vec<f32>> = (0..2 * pairs.len()).map(|_| (0..H * W).map(|_| rng.uniform()).collect()).collect();
    let protocol = Protocol {
        step_percent: 10.0,
        // The probe only, as `by-kind` does for genuine pairs: two quadrants imputed from the same
        // kind of surroundings look alike, whatever the map.
        perturb: Perturb::ByKind,
        road: Some(Road { noise: 2.55, mean: 127.5, std: 127.5, seed: 3 }),
        ..Protocol::default()
    };
    let ideal_in: Vec<PairInput> = pairs.iter().map(|(a, b)| PairInput { a, b, map_a: &ideal, map_b: &ideal, genuine: true }).collect();
    let random_in: Vec<PairInput> =
        pairs.iter().enumerate().map(|(i, (a, b))| PairInput { a, b, map_a: &random[2 * i], map_b: &random[2 * i + 1], genuine: true }).collect();
    let mut model = toy_model(0.0);
    let tau = 0.5;
    let mut auc = |inputs: &[PairInput], mode| evaluate::<EvalError, _>(inputs, shape(), &protocol, tau, mode, &mut model).expect("curve").auc;
    let (morf_ideal, morf_random) = (auc(&ideal_in, Mode::Deletion), auc(&random_in, Mode::Deletion));
    let (lerf_ideal, lerf_random) = (auc(&ideal_in, Mode::Insertion), auc(&random_in, Mode::Insertion));
    assert!(morf_ideal + 20.0 < morf_random, "MoRF: ideal {morf_ideal} vs random {morf_random}");
    assert!(lerf_ideal > lerf_random + 20.0, "LeRF: ideal {lerf_ideal} vs random {lerf_random}");
}
