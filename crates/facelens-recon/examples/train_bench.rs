//! Decoder training speed on this machine: whole [`Trainer`] steps (images/s) and where a step's
//! time goes (decoder forward, loss terms, backward, optimizer), on synthetic batches of the
//! shapes of a real run. Prints one JSON line per configuration, like the other benchmarks, so
//! `benches/run.sh` can put it next to the PyTorch loop of `benches/python/decoder_train_torch.py`.
//!
//! `RAYON_NUM_THREADS=1 cargo run --release -p facelens-recon --example train_bench -- \
//!     [--model w600k_mbf] [--width 128] [--batch 16] [--steps 8] [--block nearest-conv] \
//!     [--min-channels 16] [--identity 1] [--perceptual 0] [--pixel 1] [--ssim 0] [--output-blur 0]`

use std::time::Instant;

use candle_core::{Device, Tensor};
use facelens_models::FaceModel;
use facelens_recon::data::Batch;
use facelens_recon::decoder::{DecoderConfig, UpsampleKind};
use facelens_recon::losses::{decoder_loss, FrozenBackbone, LossConfig};
use facelens_recon::trainer::{TrainConfig, Trainer};
use facelens_recon::data::Sample;

fn arg<T: std::str::FromStr>(args: &[String], key: &str, default: T) -> T {
    args.iter()
        .position(|a| a == key)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn synthetic_batch(step: u64, n: usize, dim: usize) -> Batch {
    let mut rng = facelens_core::rng::Xoshiro256::stream(step, 7);
    let images: Vec<f32> = (0..n * 3 * 112 * 112).map(|_| (2.0 * rng.uniform() - 1.0) as f32).collect();
    let mut embeddings: Vec<f32> = (0..n * dim).map(|_| rng.normal() as f32).collect();
    for row in embeddings.chunks_mut(dim) {
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        row.iter_mut().for_each(|v| *v /= norm);
    }
    Batch {
        step,
        samples: (0..n).map(|i| Sample { index: i, grey: false }).collect(),
        images,
        masks: vec![1.0; n * 112 * 112],
        embeddings,
        dim,
    }
}

fn main() -> anyhow::Result<()> {
    facelens_core::alloc::keep_freed_memory();
    let args: Vec<String> = std::env::args().collect();
    let model_name: String = arg(&args, "--model", "w600k_mbf".to_string());
    let width: usize = arg(&args, "--width", 128);
    let min_channels: usize = arg(&args, "--min-channels", 16);
    let batch: usize = arg(&args, "--batch", 16);
    let steps: u64 = arg(&args, "--steps", 8);
    let block: String = arg(&args, "--block", "nearest-conv".to_string());
    let dev = Device::Cpu;
    let model = FaceModel::load(&model_name, &dev)?;
    let dim = model.spec.embedding_dim;
    let decoder = DecoderConfig {
        embedding_dim: dim,
        width,
        min_channels,
        block: serde_json::from_value::<UpsampleKind>(serde_json::Value::String(block.clone()))?,
        output_blur: arg(&args, "--output-blur", 0.0),
        ..DecoderConfig::default()
    };
    let mut train = TrainConfig {
        steps: steps + 2,
        batch_size: batch,
        warmup_steps: 1,
        ..TrainConfig::default()
    };
    // As experiments/decoder-train/cpu.toml and benches/python/decoder_train_torch.py.
    train.adamw.weight_decay = 1e-4;
    train.loss = LossConfig {
        pixel: arg(&args, "--pixel", 1.0),
        identity: arg(&args, "--identity", 1.0),
        perceptual: arg(&args, "--perceptual", 0.0),
        ssim: arg(&args, "--ssim", 0.0),
        ..LossConfig::default()
    };
    let backbone = FrozenBackbone::from_model(&model);
    let mut trainer = Trainer::new(decoder.clone(), train.clone(), Some(backbone.clone()), &dev)?;

    // Whole steps, two for warm-up.
    for s in 0..2 {
        trainer.step(&synthetic_batch(s, batch, dim), false)?;
    }
    let t = Instant::now();
    for s in 2..2 + steps {
        trainer.step(&synthetic_batch(s, batch, dim), false)?;
    }
    let step_s = t.elapsed().as_secs_f64() / steps as f64;

    // The same work split into phases (outside the trainer, same decoder).
    let (mut fwd, mut loss, mut bwd) = (0.0, 0.0, 0.0);
    for s in 0..steps {
        let b = synthetic_batch(100 + s, batch, dim);
        let x = Tensor::from_slice(&b.images, (batch, 3, 112, 112), &dev)?;
        let mask = Tensor::from_slice(&b.masks, (batch, 1, 112, 112), &dev)?;
        let z = Tensor::from_slice(&b.embeddings, (batch, dim), &dev)?;
        let t0 = Instant::now();
        let x_hat = trainer.decoder().forward_t(&z, true)?;
        let t1 = Instant::now();
        let terms = decoder_loss(&train.loss, &x_hat, &x, &mask, &z, Some(&backbone))?;
        let t2 = Instant::now();
        let _grads = terms.objective.backward()?;
        let t3 = Instant::now();
        fwd += (t1 - t0).as_secs_f64();
        loss += (t2 - t1).as_secs_f64();
        bwd += (t3 - t2).as_secs_f64();
    }
    let per = |v: f64| 1e3 * v / steps as f64;

    // The frozen backbone alone, per batch: forward keeping what gradients need, and one
    // input-gradient row per image (what the identity term costs), in the trainer's
    // micro-batches.
    let net = facelens_models::reverse::Net::from_backbone(&model.backbone)?;
    let m = facelens_models::reverse::FORWARD_MICRO_BATCH;
    let (mut tape_s, mut vjp_s) = (0.0, 0.0);
    for s in 0..steps {
        let b = synthetic_batch(200 + s, batch, dim);
        let per_image = 3 * 112 * 112;
        for first in (0..batch).step_by(m) {
            let k = m.min(batch - first);
            let t0 = Instant::now();
            let tape = net.tape_batch(&b.images[first * per_image..(first + k) * per_image], k, &[]);
            let t1 = Instant::now();
            let g = net.vjp(&tape, &b.embeddings[first * dim..(first + k) * dim], k);
            tape_s += (t1 - t0).as_secs_f64();
            vjp_s += t1.elapsed().as_secs_f64();
            std::hint::black_box(g);
        }
    }
    println!(
        "{}",
        serde_json::json!({
            "impl": "facelens",
            "bench": "decoder_train",
            "model": model_name,
            "width": width,
            "min_channels": min_channels,
            "block": block,
            "output_blur": decoder.output_blur,
            "batch": batch,
            "threads": rayon::current_num_threads(),
            "dense_kernel": facelens_models::reverse::dense_kernel(),
            "params": trainer.decoder_tensors()?.iter().filter(|(n, _)| !facelens_recon::decoder::is_buffer(n)).map(|(_, t)| t.elem_count()).sum::<usize>(),
            "loss": {"pixel": train.loss.pixel, "identity": train.loss.identity, "perceptual": train.loss.perceptual, "ssim": train.loss.ssim},
            "images_per_s": batch as f64 / step_s,
            "ms_per_step": 1e3 * step_s,
            "ms_decoder_forward": per(fwd),
            "ms_losses_forward": per(loss),
            "ms_backward": per(bwd),
            "ms_optimizer_and_rest": 1e3 * step_s - per(fwd + loss + bwd),
            "ms_backbone_tapes": per(tape_s),
            "ms_backbone_vjps": per(vjp_s),
        })
    );
    Ok(())
}
