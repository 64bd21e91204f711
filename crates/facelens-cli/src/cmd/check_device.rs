//! `facelens check-device`: what a GPU machine's first minutes should establish, one JSON line
//! per figure (`scripts/gpu-check.sh` runs it from the CUDA tarball):
//!
//! * `embeddings`: the device's embeddings of aligned faces against the CPU's (min cosine);
//! * `fggb_maps`: FGGB maps from the device engine against the CPU engine (Pearson r of each
//!   face's signed map S+ − S−, max difference relative to its largest magnitude);
//! * `fggb_seconds`: FGGB seconds per pair on the device engine and on the CPU engine;
//! * `embedding_throughput`: images per second at batch 1, 32 and 256;
//! * `decoder_training`: decoder training images per second over a time budget, with a
//!   decoder-train config's decoder and losses on batches of the same faces.
//!
//! With `--device cpu` every "device" figure is the device-agnostic engine on the CPU, which is
//! how it is tested without a GPU.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use candle_core::Device;
use clap::Args;
use facelens_models::FaceModel;
use facelens_saliency::{engine_of, EngineKind, Explainer, FacePair, Fggb, GradientEngine};
use serde_json::json;

#[derive(Args)]
pub struct CheckDeviceArgs {
    /// Aligned 112x112 faces: a safetensors file with `images_rgb_u8` `[n, 112, 112, 3]` (such as
    /// ../shared/models/w600k_mbf.reference.safetensors).
    #[arg(long)]
    pub faces: PathBuf,
    #[arg(long, default_value = facelens_models::zoo::DEFAULT_MODEL)]
    pub model: String,
    /// Face pairs explained with FGGB on both engines.
    #[arg(long, default_value_t = 3)]
    pub pairs: usize,
    /// Seconds per batch size of the embedding throughput.
    #[arg(long, default_value_t = 3.0)]
    pub throughput_seconds: f64,
    /// Batch sizes of the embedding throughput.
    #[arg(long, value_delimiter = ',', default_value = "1,32,256")]
    pub batches: Vec<usize>,
    /// decoder-train config whose decoder and training settings are timed.
    #[arg(long, default_value = "experiments/decoder-train/gpu.toml")]
    pub train_config: PathBuf,
    /// Seconds of decoder training to time (0 skips it).
    #[arg(long, default_value_t = 60.0)]
    pub train_seconds: f64,
}

/// Faces in the file, at most this many (the reference set has 60).
const MAX_FACES: usize = 4096;
/// Agreement the device must reach with the CPU, else the check fails (exit 1): both run the same
/// f32 arithmetic in another order, so only rounding may differ.
const MIN_COSINE: f32 = 0.9999;
const MIN_PEARSON: f64 = 0.999;

fn line(value: serde_json::Value) {
    println!("{value}");
}

pub fn run(a: CheckDeviceArgs, device: &Device) -> Result<()> {
    let faces = read_faces(&a.faces)?;
    let name = facelens_core::describe_device(device);
    let cpu_model = super::load_model(&a.model, &Device::Cpu)?;
    let model = super::load_model(&a.model, device)?;
    line(json!({"check": "device", "device": name, "model": model.spec.name, "faces": faces.len()}));

    // Embeddings: the device's candle forward against the CPU's.
    let crops: Vec<&[u8]> = faces.iter().map(Vec::as_slice).collect();
    let on_device = model.embed_crops_candle(&crops, 32)?;
    let on_cpu = cpu_model.embed_crops(&crops, 32)?;
    let cos: Vec<f32> = on_device.iter().zip(&on_cpu).map(|(x, y)| facelens_models::preprocess::cosine(x, y)).collect();
    let min = cos.iter().copied().fold(f32::INFINITY, f32::min);
    let mean = cos.iter().sum::<f32>() / cos.len() as f32;
    let embeddings_ok = min >= MIN_COSINE;
    line(json!({"check": "embeddings", "device": name, "faces": cos.len(), "min_cosine": min, "mean_cosine": mean, "ok": embeddings_ok}));

    let maps_ok = fggb(&a, &faces, &model, &cpu_model, &name)?;
    throughput(&a, &faces, &model, &name)?;
    if a.train_seconds > 0.0 {
        training(&a, &faces, &model, &name)?;
    }
    if !embeddings_ok || !maps_ok {
        bail!(
            "{name} disagrees with the CPU: embeddings min cosine {min} (needs >= {MIN_COSINE}){}",
            if maps_ok { String::new() } else { format!(", FGGB maps below Pearson {MIN_PEARSON}") }
        );
    }
    Ok(())
}

fn read_faces(path: &Path) -> Result<Vec<Vec<u8>>> {
    let bytes = facelens_core::fs::read(path).with_context(|| format!("cannot read faces {}", path.display()))?;
    let st = safetensors::SafeTensors::deserialize(&bytes).with_context(|| format!("{}: not safetensors", path.display()))?;
    let t = st.tensor("images_rgb_u8").with_context(|| format!("{}: no tensor `images_rgb_u8`", path.display()))?;
    let shape = t.shape();
    if t.dtype() != safetensors::Dtype::U8 || shape.len() != 4 || shape[1..] != [112, 112, 3] || shape[0] < 2 {
        bail!("{}: `images_rgb_u8` must be u8 [n >= 2, 112, 112, 3], found {:?} {shape:?}", path.display(), t.dtype());
    }
    Ok(t.data().chunks_exact(112 * 112 * 3).take(MAX_FACES).map(<[u8]>::to_vec).collect())
}

/// FGGB on both engines; whether the maps agree.
fn fggb(a: &CheckDeviceArgs, faces: &[Vec<u8>], model: &FaceModel, cpu_model: &FaceModel, name: &str) -> Result<bool> {
    let pairs = a.pairs.min(faces.len() / 2);
    let dev = engine_of(EngineKind::Tensor, model, None)?;
    let cpu = engine_of(EngineKind::Net, cpu_model, None)?;
    let (mut r_min, mut r_sum, mut worst, mut t_dev, mut t_cpu) = (f64::INFINITY, 0.0, 0f64, 0.0, 0.0);
    for p in 0..pairs {
        let norm = |f: &[u8]| facelens_models::preprocess::normalise_chw(f, &model.spec);
        let (x, y) = (norm(&faces[2 * p])?, norm(&faces[2 * p + 1])?);
        let pair = FacePair { a: &x, b: &y };
        let (got, s_dev) = timed(|| Fggb::default().explain(dev.as_ref() as &dyn GradientEngine, pair, 0.3))?;
        let (want, s_cpu) = timed(|| Fggb::default().explain(cpu.as_ref() as &dyn GradientEngine, pair, 0.3))?;
        t_dev += s_dev;
        t_cpu += s_cpu;
        // Per face, the signed map S = S+ - S- (one part is often all zero, where a correlation
        // would only measure rounding).
        let signed = |pos: &[f32], neg: &[f32]| pos.iter().zip(neg).map(|(p, n)| p - n).collect::<Vec<f32>>();
        for (m, w) in [
            (signed(&got.maps.sa_pos, &got.maps.sa_neg), signed(&want.maps.sa_pos, &want.maps.sa_neg)),
            (signed(&got.maps.sb_pos, &got.maps.sb_neg), signed(&want.maps.sb_pos, &want.maps.sb_neg)),
        ] {
            let r = pearson(&m, &w);
            r_min = r_min.min(r);
            r_sum += r;
            let scale = w.iter().fold(0f32, |s, v| s.max(v.abs())).max(1e-12);
            worst = worst.max((m.iter().zip(&w).fold(0f32, |s, (p, q)| s.max((p - q).abs())) / scale) as f64);
        }
    }
    let ok = pairs > 0 && r_min >= MIN_PEARSON;
    line(json!({"check": "fggb_maps", "device": name, "pairs": pairs, "min_pearson": r_min, "mean_pearson": r_sum / (2 * pairs.max(1)) as f64, "max_relative_difference": worst, "ok": ok}));
    line(json!({"check": "fggb_seconds", "device": name, "pairs": pairs, "device_engine_s_per_pair": t_dev / pairs.max(1) as f64, "cpu_engine_s_per_pair": t_cpu / pairs.max(1) as f64}));
    Ok(ok)
}

fn timed<T>(f: impl FnOnce() -> facelens_saliency::Result<T>) -> Result<(T, f64)> {
    let t = Instant::now();
    let v = f()?;
    Ok((v, t.elapsed().as_secs_f64()))
}

fn pearson(x: &[f32], y: &[f32]) -> f64 {
    let n = x.len() as f64;
    let (mx, my) = (x.iter().map(|v| *v as f64).sum::<f64>() / n, y.iter().map(|v| *v as f64).sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        let (dx, dy) = (*a as f64 - mx, *b as f64 - my);
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    if sxx == 0.0 && syy == 0.0 {
        1.0
    } else {
        sxy / (sxx * syy).sqrt().max(1e-300)
    }
}

fn throughput(a: &CheckDeviceArgs, faces: &[Vec<u8>], model: &FaceModel, name: &str) -> Result<()> {
    for &batch in &a.batches {
        if batch == 0 || batch > 4096 {
            bail!("--batches: {batch} is not a batch size in 1..=4096");
        }
        let crops: Vec<&[u8]> = faces.iter().cycle().take(batch).map(Vec::as_slice).collect();
        let xs = facelens_models::preprocess::batch_tensor(&crops, &model.spec, &model.device)?;
        model.forward(&xs)?.to_device(&Device::Cpu)?; // warm-up (kernels, allocations)
        let (mut images, t) = (0usize, Instant::now());
        while t.elapsed() < Duration::from_secs_f64(a.throughput_seconds) || images == 0 {
            // Copying the embeddings back waits for the device to finish.
            model.forward(&xs)?.to_device(&Device::Cpu)?;
            images += batch;
        }
        let s = t.elapsed().as_secs_f64();
        line(json!({"check": "embedding_throughput", "device": name, "batch": batch, "images": images, "images_per_s": images as f64 / s}));
    }
    Ok(())
}

fn training(a: &CheckDeviceArgs, faces: &[Vec<u8>], model: &FaceModel, name: &str) -> Result<()> {
    use facelens_recon::data::Sample;
    let loaded = facelens_recon::run::ExperimentConfig::load(&a.train_config, &[])?;
    let cfg = loaded.config;
    let mut decoder = cfg.decoder.clone();
    decoder.embedding_dim = model.spec.embedding_dim;
    let backbone = (cfg.train.loss.identity != 0.0 || cfg.train.loss.perceptual != 0.0).then(|| facelens_recon::FrozenBackbone::from_model(model));
    let mut trainer = facelens_recon::Trainer::new(decoder, cfg.train.clone(), backbone, &model.device)?;
    let n = cfg.train.batch_size;
    let crops: Vec<&[u8]> = faces.iter().cycle().take(n).map(Vec::as_slice).collect();
    let embeddings: Vec<f32> = model.embed_crops(&crops, 64)?.concat();
    let images: Vec<f32> = crops
        .iter()
        .flat_map(|c| {
            // RGB HWC u8 -> CHW in [-1, 1], the decoder's output range.
            let mut chw = vec![0f32; 3 * 112 * 112];
            for (i, px) in c.chunks_exact(3).enumerate() {
                for ch in 0..3 {
                    chw[ch * 112 * 112 + i] = px[ch] as f32 / 127.5 - 1.0;
                }
            }
            chw
        })
        .collect();
    let batch = |step: u64| facelens_recon::Batch {
        step,
        samples: (0..n).map(|i| Sample { index: i, grey: false }).collect(),
        images: images.clone(),
        masks: vec![1.0; n * 112 * 112],
        embeddings: embeddings.clone(),
        dim: model.spec.embedding_dim,
    };
    trainer.step(&batch(0), false)?; // warm-up
    let (t, mut steps) = (Instant::now(), 0u64);
    while t.elapsed() < Duration::from_secs_f64(a.train_seconds) || steps == 0 {
        let report = trainer.step(&batch(trainer.step_index()), false)?;
        if !report.loss.is_finite() {
            bail!("decoder training diverged at step {} (loss {})", report.step, report.loss);
        }
        steps += 1;
    }
    let s = t.elapsed().as_secs_f64();
    line(json!({"check": "decoder_training", "device": name, "config": a.train_config.display().to_string(), "width": cfg.decoder.width, "batch": n, "steps": steps, "seconds": s, "images_per_s": (steps as usize * n) as f64 / s}));
    Ok(())
}
