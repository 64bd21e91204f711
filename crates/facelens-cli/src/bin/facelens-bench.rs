//! `facelens-bench`: timings for `benches/run.sh`, printed as JSON lines so the script can put
//! them in one table next to onnxruntime and PyTorch measured in the same run.
//!
//! * `embed`: embedding throughput at the given batch sizes.
//! * `fggb`: FGGB per pair on a list of aligned pairs (`pathA pathB` per line); writes
//!   `<i>.safetensors` maps in the same format as `benches/python/fggb_torch.py`.
//! * `layers`: where a forward pass spends its time, step by step (a convolution with the
//!   elementwise ops fused into it), summed over repeats.
//! * `methods`: seconds per pair of named explainers (e.g. the perturbation baselines, which
//!   are streams of forward passes) on a list of aligned pairs.
//! * `rows`: FGGB time per pair as a function of Jacobian rows per pass.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use candle_core::Device;
use clap::{Parser, Subcommand};
use facelens_models::FaceModel;
use facelens_saliency::{Explainer, FacePair, Fggb, NetEngine};

#[derive(Parser)]
struct Cli {
    #[arg(long, default_value = "w600k_mbf")]
    model: String,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    Embed {
        #[arg(long, value_delimiter = ',', default_value = "1,32")]
        batch: Vec<usize>,
        /// Seconds to spend per batch size.
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
    },
    Fggb {
        #[arg(long)]
        pairs: PathBuf,
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long)]
        tau: f32,
        #[arg(long)]
        rows: Option<usize>,
        /// Only the first N pairs.
        #[arg(long)]
        limit: Option<usize>,
    },
    Methods {
        #[arg(long)]
        pairs: PathBuf,
        #[arg(long, value_delimiter = ',', default_value = "corrrise,lime,rise")]
        methods: Vec<String>,
        #[arg(long)]
        tau: f32,
        /// Only the first N pairs.
        #[arg(long, default_value_t = 3)]
        limit: usize,
    },
    Layers {
        #[arg(long, default_value_t = 1)]
        batch: usize,
        #[arg(long, default_value_t = 50)]
        repeats: usize,
    },
    Rows {
        #[arg(long)]
        pairs: PathBuf,
        #[arg(long, value_delimiter = ',', default_value = "8,16,32,64,128")]
        rows: Vec<usize>,
    },
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn read_pairs(path: &PathBuf, model: &FaceModel) -> Result<Vec<(Vec<f32>, Vec<f32>)>> {
    let text = facelens_core::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    // Paths are relative to the pair list's folder.
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    let load = |p: &str| -> Result<Vec<f32>> {
        let img = facelens_data::decode_image(&dir.join(p))?;
        Ok(facelens_models::preprocess::normalise_chw(img.as_raw(), &model.spec)?)
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            let mut it = l.split_whitespace();
            match (it.next(), it.next()) {
                (Some(a), Some(b)) => Ok((load(a)?, load(b)?)),
                _ => anyhow::bail!("{}:{}: expected `pathA pathB`", path.display(), i + 1),
            }
        })
        .collect()
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    facelens_core::alloc::keep_freed_memory();
    let model = FaceModel::load(&cli.model, &Device::Cpu)?;
    let threads = rayon::current_num_threads();
    match cli.cmd {
        Cmd::Embed { batch, seconds } => {
            for &b in &batch {
                check_batch(b, "--batch")?;
            }
            let s = model.spec.input_size;
            for b in batch {
                let x: Vec<f32> = (0..b * 3 * s * s).map(|i| ((i * 7919) % 255) as f32 / 127.5 - 1.0).collect();
                model.embed_normalised(&x, b)?; // warm-up
                let mut times = Vec::new();
                let t0 = Instant::now();
                while t0.elapsed().as_secs_f64() < seconds || times.len() < 3 {
                    let t = Instant::now();
                    model.embed_normalised(&x, b)?;
                    times.push(t.elapsed().as_secs_f64());
                }
                let m = median(&mut times);
                println!(
                    "{}",
                    serde_json::json!({"model": model.spec.name, "impl": "facelens", "threads": threads, "batch": b, "ms_per_batch": m * 1e3, "images_per_s": b as f64 / m, "dense_kernel": facelens_models::reverse::dense_kernel()})
                );
            }
        }
        Cmd::Fggb { pairs, out, tau, rows, limit } => {
            let mut pairs = read_pairs(&pairs, &model)?;
            if let Some(n) = limit {
                pairs.truncate(n);
            }
            let engine = NetEngine::new(model.net()?.clone(), rows);
            let fggb = Fggb::default();
            if let Some(dir) = &out {
                std::fs::create_dir_all(dir)?;
            }
            let mut times = Vec::new();
            for (i, (a, b)) in pairs.iter().enumerate() {
                let t = Instant::now();
                let e = fggb.explain(&engine, FacePair { a, b }, tau)?;
                let dt = t.elapsed().as_secs_f64();
                if i > 0 || pairs.len() == 1 {
                    times.push(dt);
                }
                if let Some(dir) = &out {
                    let tensors: Vec<(String, Vec<usize>, Vec<f32>)> =
                        e.maps.named().iter().map(|(n, m)| (n.to_string(), vec![112, 112], (*m).clone())).collect();
                    let mut meta = BTreeMap::new();
                    meta.insert("score".to_string(), e.score.to_string());
                    facelens_models::weights::save_atomic(&dir.join(format!("{i}.safetensors")), &tensors, &meta)?;
                }
            }
            let all = times.clone();
            println!(
                "{}",
                serde_json::json!({"impl": "facelens", "threads": threads, "rows_per_pass": engine_rows(&engine), "pairs": pairs.len(),
                    "seconds_per_pair_median": median(&mut times), "seconds_per_pair_all": all})
            );
        }
        Cmd::Methods { pairs, methods, tau, limit } => {
            let mut pairs = read_pairs(&pairs, &model)?;
            pairs.truncate(limit);
            let engine = NetEngine::new(model.net()?.clone(), None);
            for name in methods {
                let method = facelens_saliency::by_name(&name)?;
                let mut times = Vec::new();
                let (f0, b0) = engine_passes(&engine);
                for (a, b) in &pairs {
                    let t = Instant::now();
                    method.explain(&engine, FacePair { a, b }, tau)?;
                    times.push(t.elapsed().as_secs_f64());
                }
                let (f1, b1) = engine_passes(&engine);
                let per_pair = |n: u64| n as f64 / pairs.len().max(1) as f64;
                let all = times.clone();
                println!(
                    "{}",
                    serde_json::json!({"impl": "facelens", "threads": threads, "method": name, "pairs": pairs.len(),
                        "seconds_per_pair_median": median(&mut times), "seconds_per_pair_all": all,
                        "forward_images_per_pair": per_pair(f1 - f0), "backward_rows_per_pair": per_pair(b1 - b0)})
                );
            }
        }
        Cmd::Layers { batch, repeats } => {
            check_batch(batch, "--batch")?;
            anyhow::ensure!(repeats >= 1, "--repeats must be at least 1");
            let s = model.spec.input_size;
            let x: Vec<f32> = (0..batch * 3 * s * s).map(|i| ((i * 7919) % 255) as f32 / 127.5 - 1.0).collect();
            let net = model.net()?;
            net.forward(&x, batch); // warm-up
            // Steps by first op, summed over repeats and micro-batches.
            let mut total: BTreeMap<usize, facelens_models::reverse::StepTime> = BTreeMap::new();
            for _ in 0..repeats {
                for st in net.forward_profile(&x, batch).1 {
                    match total.get_mut(&st.ops.start) {
                        Some(t) => t.seconds += st.seconds,
                        None => {
                            total.insert(st.ops.start, st);
                        }
                    }
                }
            }
            let total: Vec<_> = total.into_values().collect();
            let all: f64 = total.iter().map(|t| t.seconds).sum();
            for t in &total {
                println!(
                    "{}",
                    serde_json::json!({"model": model.spec.name, "impl": "facelens", "threads": threads, "batch": batch, "ops": [t.ops.start, t.ops.end],
                        "step": t.label, "ms_per_batch": t.seconds * 1e3 / repeats as f64, "share": t.seconds / all})
                );
            }
            println!("{}", serde_json::json!({"impl": "facelens", "threads": threads, "batch": batch, "step": "total", "ms_per_batch": all * 1e3 / repeats as f64}));
        }
        Cmd::Rows { pairs, rows } => {
            let pairs = read_pairs(&pairs, &model)?;
            let (a, b) = &pairs[0];
            for r in rows {
                let engine = NetEngine::new(model.net()?.clone(), Some(r));
                let t = Instant::now();
                Fggb::default().explain(&engine, FacePair { a, b }, 0.2)?;
                println!("{}", serde_json::json!({"impl": "facelens", "threads": threads, "rows_per_pass": r, "seconds_per_pair": t.elapsed().as_secs_f64()}));
            }
        }
    }
    Ok(())
}

/// Largest batch the timing commands build an input for (1,024 images of 112 px are 154 MB).
const MAX_BATCH: usize = 1024;

fn check_batch(b: usize, flag: &str) -> Result<()> {
    anyhow::ensure!((1..=MAX_BATCH).contains(&b), "{flag} {b}: must be between 1 and {MAX_BATCH}");
    Ok(())
}

/// Forward images and backward rows run through the engine's net so far.
fn engine_passes(e: &NetEngine) -> (u64, u64) {
    e.net.passes.get()
}

fn engine_rows(e: &NetEngine) -> usize {
    use facelens_saliency::GradientEngine;
    e.rows_per_pass()
}
