//! facelens' AdamW against `candle_nn::AdamW`, and its state round trip.

use std::collections::HashMap;

use candle_core::{Device, Tensor, Var};
use candle_nn::{Optimizer, ParamsAdamW};
use facelens_recon::adamw::{AdamW, AdamWConfig};

fn problem() -> (Tensor, Tensor) {
    let dev = Device::Cpu;
    let x = Tensor::from_vec(
        (0..24).map(|i| ((i * 7 % 11) as f32 - 5.0) / 5.0).collect(),
        (8, 3),
        &dev,
    )
    .unwrap();
    let y = Tensor::from_vec(
        (0..16).map(|i| ((i * 5 % 7) as f32 - 3.0) / 3.0).collect(),
        (8, 2),
        &dev,
    )
    .unwrap();
    (x, y)
}

fn params() -> (Var, Var) {
    let dev = Device::Cpu;
    let w = Var::from_tensor(
        &Tensor::from_vec(vec![0.1f32, -0.2, 0.3, 0.05, -0.15, 0.25], (3, 2), &dev).unwrap(),
    )
    .unwrap();
    let b = Var::from_tensor(&Tensor::from_vec(vec![0.01f32, -0.02], 2, &dev).unwrap()).unwrap();
    (w, b)
}

fn loss(w: &Var, b: &Var) -> Tensor {
    let (x, y) = problem();
    (x.matmul(w.as_tensor())
        .unwrap()
        .broadcast_add(b.as_tensor())
        .unwrap()
        - y)
        .unwrap()
        .sqr()
        .unwrap()
        .mean_all()
        .unwrap()
}

fn values(v: &Var) -> Vec<f32> {
    v.as_tensor().flatten_all().unwrap().to_vec1().unwrap()
}

const LR: f64 = 0.05;
const WD: f64 = 0.1;

#[test]
fn matches_candle_adamw_step_for_step() {
    let (cw, cb) = params();
    let (fw, fb) = params();
    let mut theirs = candle_nn::AdamW::new(
        vec![cw.clone(), cb.clone()],
        ParamsAdamW {
            lr: LR,
            weight_decay: WD,
            ..ParamsAdamW::default()
        },
    )
    .unwrap();
    // candle decays every parameter, biases included: decay_1d = true reproduces it.
    let cfg = AdamWConfig {
        weight_decay: WD,
        decay_1d: true,
        ..AdamWConfig::default()
    };
    let mut ours = AdamW::new(
        vec![("w".into(), fw.clone()), ("b".into(), fb.clone())],
        cfg,
    )
    .unwrap();
    let mut max_diff = 0f32;
    for step in 0..5 {
        theirs.backward_step(&loss(&cw, &cb)).unwrap();
        ours.step(&loss(&fw, &fb).backward().unwrap(), LR, 1.0)
            .unwrap();
        for (a, b) in [(&cw, &fw), (&cb, &fb)] {
            let (va, vb) = (values(a), values(b));
            max_diff = va
                .iter()
                .zip(&vb)
                .map(|(x, y)| (x - y).abs())
                .fold(max_diff, f32::max);
            assert_eq!(
                va.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                vb.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                "step {step}: {va:?} vs {vb:?}"
            );
        }
    }
    eprintln!(
        "AdamW vs candle_nn::AdamW over 5 steps: max |difference| = {max_diff:e}; final w = {:?}",
        values(&fw)
    );
    assert!(
        values(&fw)
            != params()
                .0
                .as_tensor()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
    );
}

#[test]
fn saved_state_continues_exactly() {
    let cfg = AdamWConfig {
        weight_decay: WD,
        ..AdamWConfig::default()
    };
    let (w1, b1) = params();
    let mut straight = AdamW::new(
        vec![("w".into(), w1.clone()), ("b".into(), b1.clone())],
        cfg.clone(),
    )
    .unwrap();
    for _ in 0..5 {
        straight
            .step(&loss(&w1, &b1).backward().unwrap(), LR, 1.0)
            .unwrap();
    }

    let (w2, b2) = params();
    let mut first = AdamW::new(
        vec![("w".into(), w2.clone()), ("b".into(), b2.clone())],
        cfg.clone(),
    )
    .unwrap();
    for _ in 0..2 {
        first
            .step(&loss(&w2, &b2).backward().unwrap(), LR, 1.0)
            .unwrap();
    }
    let state: HashMap<String, Tensor> = first.state_tensors().unwrap().into_iter().collect();
    let step = first.step_count();
    drop(first);
    // Fresh variables holding the saved values, fresh optimizer, restored state.
    let w3 = Var::from_tensor(&w2.as_tensor().copy().unwrap()).unwrap();
    let b3 = Var::from_tensor(&b2.as_tensor().copy().unwrap()).unwrap();
    let mut resumed = AdamW::new(
        vec![("w".into(), w3.clone()), ("b".into(), b3.clone())],
        cfg,
    )
    .unwrap();
    resumed.load_state(&state, step).unwrap();
    for _ in 0..3 {
        resumed
            .step(&loss(&w3, &b3).backward().unwrap(), LR, 1.0)
            .unwrap();
    }
    assert_eq!(values(&w1), values(&w3));
    assert_eq!(values(&b1), values(&b3));
}

#[test]
fn one_dimensional_parameters_are_not_decayed_by_default() {
    let dev = Device::Cpu;
    let b = Var::from_tensor(&Tensor::new(&[1.0f32, -1.0], &dev).unwrap()).unwrap();
    let w = Var::from_tensor(&Tensor::new(&[[1.0f32, -1.0]], &dev).unwrap()).unwrap();
    let cfg = AdamWConfig {
        weight_decay: 0.5,
        ..AdamWConfig::default()
    };
    let mut opt = AdamW::new(vec![("b".into(), b.clone()), ("w".into(), w.clone())], cfg).unwrap();
    // Zero gradients: only weight decay could move the parameters.
    let flat = |v: &Var| {
        (v.as_tensor() - v.as_tensor().detach())
            .unwrap()
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
    };
    let zero = (flat(&b) + flat(&w)).unwrap();
    opt.step(&zero.backward().unwrap(), 0.1, 1.0).unwrap();
    assert_eq!(values(&b), vec![1.0, -1.0]);
    assert_eq!(values(&w), vec![0.95, -0.95]);
}
