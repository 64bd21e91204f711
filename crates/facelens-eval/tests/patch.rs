//! The ground-truth patch benchmark on the quadrant toy (tests/common): a patch of an impostor's
//! face inside the quadrant the toy reads lowers the genuine score and is kept; a patch outside it
//! changes nothing and is dropped by the margin. On the kept cases, the ideal dissimilarity map (the
//! patch) wins every score and a uniformly random map scores what blindness scores.

use facelens_eval::patch::{patch_if_it_drops, score_map, PatchBox};
use facelens_eval::EvalError;

mod common;
use common::*;

fn genuine_pair(rng: &mut Rng) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let za: Vec<f32> = (0..Q * Q).map(|_| rng.normal()).collect();
    let zb: Vec<f32> = za.iter().map(|z| z + 0.2 * rng.normal()).collect();
    let zd: Vec<f32> = (0..Q * Q).map(|_| rng.normal()).collect();
    (image(&za, rng), image(&zb, rng), image(&zd, rng))
}

#[test]
fn ideal_map_wins_the_patch_benchmark() {
    let mut rng = Rng(0x5eed);
    let mut model = toy_model(0.0);
    let inside = PatchBox { x0: 1, y0: 2, x1: 7, y1: 6 }.mask(H, W);
    let outside = PatchBox { x0: 9, y0: 9, x1: 15, y1: 13 }.mask(H, W);
    let (mut kept, mut ideal, mut random) = (0, Vec::new(), Vec::new());
    for _ in 0..40 {
        let (a, b, donor) = genuine_pair(&mut rng);
        let out = patch_if_it_drops::<EvalError, _>(&a, &donor, &b, shape(), &outside, 0.05, &mut model).expect("patch");
        assert!(out.is_none(), "a patch the model cannot see must not lower the score");
        let Some(p) = patch_if_it_drops::<EvalError, _>(&a, &donor, &b, shape(), &inside, 0.05, &mut model).expect("patch") else {
            continue;
        };
        assert!(p.clean_score - p.patched_score >= 0.05);
        kept += 1;
        let map: Vec<f32> = inside.iter().map(|&m| if m { 1.0 } else { 0.0 }).collect();
        ideal.push(score_map(&map, &inside).expect("score"));
        let noise: Vec<f32> = (0..H * W).map(|_| rng.uniform()).collect();
        random.push(score_map(&noise, &inside).expect("score"));
    }
    assert!(kept >= 30, "only {kept} of 40 patched pairs dropped by the margin");
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let pg = |s: &[facelens_eval::patch::PatchScores]| mean(&s.iter().map(|x| f64::from(u8::from(x.pointing_game))).collect::<Vec<_>>());
    let mass = |s: &[facelens_eval::patch::PatchScores]| mean(&s.iter().map(|x| x.mass_in_patch).collect::<Vec<_>>());
    let auc = |s: &[facelens_eval::patch::PatchScores]| mean(&s.iter().map(|x| x.auc).collect::<Vec<_>>());
    let area = ideal[0].patch_area_fraction;
    assert_eq!((pg(&ideal), mass(&ideal), auc(&ideal)), (1.0, 1.0, 1.0));
    assert!(pg(&random) < 0.4, "random pointing game {}", pg(&random));
    assert!((mass(&random) - area).abs() < 0.03, "random mass {} vs area {area}", mass(&random));
    assert!((auc(&random) - 0.5).abs() < 0.06, "random AUC {}", auc(&random));
}
