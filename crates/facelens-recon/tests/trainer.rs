//! The training loop's guarantees: exact resume, deterministic data order, NaN recovery,
//! checkpoint integrity.

mod common;

use std::sync::Arc;

use candle_core::Device;
use common::{bits, tiny_backbone, tiny_data, DIM};
use facelens_recon::data::{BatchLoader, TrainData};
use facelens_recon::{DecoderConfig, LossConfig, ReconError, StepOutcome, TrainConfig, Trainer};

fn decoder_cfg() -> DecoderConfig {
    DecoderConfig {
        width: 16,
        min_channels: 4,
        ..DecoderConfig::tiny(DIM)
    }
}

fn train_cfg(steps: u64) -> TrainConfig {
    TrainConfig {
        steps,
        batch_size: 2,
        lr: 3e-3,
        min_lr: 1e-4,
        warmup_steps: 2,
        clip_grad_norm: 0.5, // low, so clipping is exercised
        seed: 5,
        embedding_noise: 0.05, // exercises the RNG state
        loss: LossConfig {
            pixel: 1.0,
            identity: 1.0,
            ssim: 0.5,
            ..LossConfig::default()
        },
        ..TrainConfig::default()
    }
}

/// Runs steps `from..to` with batches from two loader threads; returns the losses.
fn run(trainer: &mut Trainer, data: &Arc<TrainData>, from: u64, to: u64) -> Vec<f64> {
    BatchLoader::spawn(data.clone(), from, to, 2, 2)
        .map(|b| {
            let r = trainer.step(&b.unwrap(), false).unwrap();
            assert_eq!(r.outcome, StepOutcome::Updated);
            r.loss
        })
        .collect()
}

#[test]
fn resumed_run_reproduces_the_uninterrupted_run_bit_for_bit() {
    let dev = Device::Cpu;
    let data = tiny_data(8, 2, 5);
    let mut straight =
        Trainer::new(decoder_cfg(), train_cfg(6), Some(tiny_backbone()), &dev).unwrap();
    let a = run(&mut straight, &data, 0, 6);

    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("checkpoint.safetensors");
    let mut first = Trainer::new(decoder_cfg(), train_cfg(6), Some(tiny_backbone()), &dev).unwrap();
    let mut b = run(&mut first, &data, 0, 3);
    first.save_checkpoint(&ck).unwrap();
    drop(first);
    let mut resumed = Trainer::resume(&ck, Some(tiny_backbone()), &dev).unwrap();
    assert_eq!(resumed.step_index(), 3);
    assert_eq!(resumed.optimizer().step_count(), 3);
    b.extend(run(&mut resumed, &data, 3, 6));

    eprintln!("straight: {a:?}\nresumed:  {b:?}");
    let max_diff = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max);
    eprintln!("max |loss difference| = {max_diff:e}");
    assert_eq!(
        a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        b.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );
    // The weights (and BatchNorm buffers) end up identical too.
    for ((na, ta), (nb, tb)) in straight
        .decoder_tensors()
        .unwrap()
        .iter()
        .zip(resumed.decoder_tensors().unwrap().iter())
    {
        assert_eq!(na, nb);
        assert_eq!(bits(ta), bits(tb), "{na} differs after resume");
    }
    // A loss sequence that actually moves: the run is not trivially constant.
    assert!(a.iter().any(|v| (v - a[0]).abs() > 1e-6));
}

#[test]
fn data_order_depends_only_on_seed_and_step() {
    let data = tiny_data(8, 3, 9);
    let one: Vec<_> = BatchLoader::spawn(data.clone(), 0, 7, 1, 1)
        .map(|b| b.unwrap().samples)
        .collect();
    let three: Vec<_> = BatchLoader::spawn(data.clone(), 0, 7, 3, 2)
        .map(|b| b.unwrap().samples)
        .collect();
    let late: Vec<_> = BatchLoader::spawn(data.clone(), 4, 7, 2, 1)
        .map(|b| b.unwrap().samples)
        .collect();
    assert_eq!(one, three);
    assert_eq!(&one[4..], &late[..]);
    // Every epoch is a permutation: 8 items in steps covering positions 0..8 (with batch 3, the
    // first two steps plus two samples of the third).
    let mut first_epoch: Vec<usize> = one.iter().flatten().take(8).map(|s| s.index).collect();
    first_epoch.sort_unstable();
    assert_eq!(first_epoch, (0..8).collect::<Vec<_>>());
    assert!(one.iter().flatten().any(|s| s.grey) && one.iter().flatten().any(|s| !s.grey));
}

#[test]
fn nan_steps_are_skipped_then_the_last_checkpoint_is_restored_with_half_the_lr() {
    let dev = Device::Cpu;
    let data = tiny_data(8, 2, 5);
    let cfg = TrainConfig {
        nan_patience: 2,
        debug_nan_steps: vec![3, 4, 6],
        ..train_cfg(8)
    };
    let mut t = Trainer::new(decoder_cfg(), cfg.clone(), Some(tiny_backbone()), &dev).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("ck.safetensors");
    let mut loader = BatchLoader::spawn(data, 0, 8, 1, 1);
    let mut next = || loader.next().unwrap().unwrap();

    for _ in 0..2 {
        assert_eq!(
            t.step(&next(), false).unwrap().outcome,
            StepOutcome::Updated
        );
    }
    t.save_checkpoint(&ck).unwrap(); // last good state: after steps 0 and 1
    let good = t.decoder_tensors().unwrap();
    assert_eq!(
        t.step(&next(), false).unwrap().outcome,
        StepOutcome::Updated
    ); // step 2 moves on
    let before = t.decoder_tensors().unwrap();

    let r3 = t.step(&next(), false).unwrap();
    assert!(
        r3.loss.is_nan() && matches!(r3.outcome, StepOutcome::Skipped { .. }),
        "{:?}",
        r3.outcome
    );
    for ((n, x), (_, y)) in before.iter().zip(t.decoder_tensors().unwrap().iter()) {
        assert_eq!(bits(x), bits(y), "{n} changed in a skipped step");
    }

    let r4 = t.step(&next(), false).unwrap();
    assert_eq!(
        r4.outcome,
        StepOutcome::Recovered {
            reason: "loss is NaN".into(),
            lr_scale: 0.5
        }
    );
    for ((n, x), (_, y)) in good.iter().zip(t.decoder_tensors().unwrap().iter()) {
        assert_eq!(bits(x), bits(y), "{n} was not restored to the checkpoint");
    }
    assert_eq!(
        t.optimizer().step_count(),
        2,
        "optimizer state restored too"
    );

    let r5 = t.step(&next(), false).unwrap();
    assert_eq!(r5.outcome, StepOutcome::Updated);
    assert!(
        (r5.lr - 0.5 * cfg.schedule().lr(5)).abs() < 1e-15,
        "lr {} after recovery",
        r5.lr
    );
    // The streak was reset by the recovery: a single NaN is skipped again, not recovered.
    assert!(matches!(
        t.step(&next(), false).unwrap().outcome,
        StepOutcome::Skipped { .. }
    ));
    eprintln!(
        "NaN recovery: step 3 {:?}; step 4 {:?}; step 5 lr {:.3e} (scheduled {:.3e})",
        r3.outcome,
        r4.outcome,
        r5.lr,
        cfg.schedule().lr(5)
    );
}

#[test]
fn batches_must_match_the_trainer_step() {
    let dev = Device::Cpu;
    let data = tiny_data(4, 2, 1);
    let mut t = Trainer::new(decoder_cfg(), train_cfg(4), Some(tiny_backbone()), &dev).unwrap();
    let b = data.batch(2).unwrap();
    assert!(matches!(
        t.step(&b, false),
        Err(ReconError::StepMismatch {
            expected: 0,
            got: 2
        })
    ));
}

#[test]
fn corrupt_and_truncated_checkpoints_are_refused_with_the_file_named() {
    let dev = Device::Cpu;
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("ck.safetensors");
    let mut t = Trainer::new(decoder_cfg(), train_cfg(4), Some(tiny_backbone()), &dev).unwrap();
    t.save_checkpoint(&ck).unwrap();
    let bytes = std::fs::read(&ck).unwrap();
    // No temporary files are left next to the checkpoint.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

    let truncated = dir.path().join("truncated.safetensors");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let err = Trainer::resume(&truncated, Some(tiny_backbone()), &dev)
        .err()
        .expect("truncated file accepted");
    assert!(err.to_string().contains("truncated.safetensors"), "{err}");

    let garbage = dir.path().join("garbage.safetensors");
    std::fs::write(&garbage, b"not a checkpoint").unwrap();
    let err = Trainer::resume(&garbage, Some(tiny_backbone()), &dev)
        .err()
        .expect("garbage accepted");
    assert!(matches!(err, ReconError::CorruptCheckpoint { .. }), "{err}");

    let missing = dir.path().join("missing.safetensors");
    let err = Trainer::resume(&missing, Some(tiny_backbone()), &dev)
        .err()
        .expect("missing file accepted");
    assert!(err.to_string().contains("missing.safetensors"), "{err}");
}

#[test]
fn training_reduces_the_loss_on_a_fixed_batch() {
    let dev = Device::Cpu;
    let data = tiny_data(2, 2, 3);
    let cfg = TrainConfig {
        lr: 5e-3,
        warmup_steps: 0,
        clip_grad_norm: 0.0,
        embedding_noise: 0.0,
        ..train_cfg(30)
    };
    let mut t = Trainer::new(
        DecoderConfig {
            norm: facelens_recon::NormKind::Group,
            ..decoder_cfg()
        },
        cfg,
        Some(tiny_backbone()),
        &dev,
    )
    .unwrap();
    // Same two faces every step (one epoch = one batch).
    let losses: Vec<f64> = (0..30)
        .map(|s| t.step(&data.batch(s).unwrap(), false).unwrap().loss)
        .collect();
    assert!(
        losses[29] < 0.8 * losses[0],
        "loss {} -> {}",
        losses[0],
        losses[29]
    );
}

#[test]
fn init_from_starts_a_run_at_saved_weights_and_refuses_other_layers() {
    let dev = Device::Cpu;
    let data = tiny_data(8, 2, 5);
    let mut first = Trainer::new(decoder_cfg(), train_cfg(4), Some(tiny_backbone()), &dev).unwrap();
    run(&mut first, &data, 0, 3);
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("decoder.safetensors");
    facelens_recon::checkpoint::save_decoder(&saved, first.decoder_config(), &first.decoder_tensors().unwrap()).unwrap();

    // A different seed, then the saved weights: the same decoder, at step 0 with a fresh optimizer.
    let mut second = Trainer::new(decoder_cfg(), TrainConfig { seed: 9, ..train_cfg(4) }, Some(tiny_backbone()), &dev).unwrap();
    second.load_weights(&saved).unwrap();
    assert_eq!(second.step_index(), 0);
    let z = candle_core::Tensor::randn(0f32, 1.0, (3, DIM), &dev).unwrap();
    assert_eq!(bits(&first.decoder().decode(&z).unwrap()), bits(&second.decoder().decode(&z).unwrap()));

    // With a low-pass on the output the layers are the same: the weights load, the pictures
    // are the filtered ones.
    let blurred = DecoderConfig { output_blur: 0.25, ..decoder_cfg() };
    let mut third = Trainer::new(blurred, train_cfg(4), Some(tiny_backbone()), &dev).unwrap();
    third.load_weights(&saved).unwrap();
    assert_ne!(bits(&first.decoder().decode(&z).unwrap()), bits(&third.decoder().decode(&z).unwrap()));

    // Other layers: refused, naming the file.
    let wider = DecoderConfig { width: 32, ..decoder_cfg() };
    let mut fourth = Trainer::new(wider, train_cfg(4), Some(tiny_backbone()), &dev).unwrap();
    let err = fourth.load_weights(&saved).unwrap_err().to_string();
    assert!(err.contains("decoder.safetensors"), "{err}");
}

#[test]
fn output_blur_out_of_range_is_refused_by_name() {
    for a in [-0.1, 0.3, f64::NAN] {
        let err = DecoderConfig { output_blur: a, ..decoder_cfg() }.validate().unwrap_err().to_string();
        assert!(err.contains("decoder.output_blur"), "{err}");
    }
}
