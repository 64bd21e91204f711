//! The loss terms that look through the frozen backbone, computed on its lowered CPU graph
//! ([`facelens_models::reverse::Net`]) one image at a time: identity and feature matching.
//!
//! * identity: `1 - cos(l2(f(x_hat)), z)`;
//! * feature matching ("perceptual" loss; Johnson et al., "Perceptual Losses for Real-Time Style
//!   Transfer and Super-Resolution", ECCV 2016, and Dosovitskiy & Brox, "Generating Images with
//!   Perceptual Similarity Metrics based on Deep Networks", NeurIPS 2016): for the backbone's
//!   last activation at each resolution (56, 28, 14 and 7 px on a 112-px MobileFaceNet),
//!   `||a(x_hat) - a(x)||^2 / ||a(x)||^2`, summed over those layers. The face-recognition
//!   network's own features carry what it needs to tell faces apart: edges and parts at 56 px,
//!   parts and their layout at 14 px.
//!
//! Both gradients reach `x_hat` in one reverse sweep ([`Net::vjp_with_inner`]); the returned
//! surrogate `sum(input(x_hat) * g)` has the weighted terms' gradient with respect to every
//! decoder parameter.

use candle_core::{Device, Tensor};
use facelens_models::reverse::{Net, Op, FORWARD_MICRO_BATCH};
use rayon::prelude::*;

use crate::error::Result;
use crate::losses::ModelInput;

/// The buffers feature matching compares: per spatial size below the input's, the last one
/// written by a PReLU, from large to small.
pub fn feature_layers(net: &Net) -> Vec<usize> {
    let input_side = net.input.h;
    let mut sizes: Vec<usize> = net.shapes.iter().map(|s| s.h).filter(|&h| h > 1 && h < input_side).collect();
    sizes.sort_unstable_by(|a, b| b.cmp(a));
    sizes.dedup();
    sizes
        .into_iter()
        .filter_map(|h| {
            (1..net.shapes.len())
                .rev()
                .find(|&b| net.shapes[b].h == h && matches!(net.ops[b - 1], Op::PRelu { .. }))
        })
        .collect()
}

/// Values of the terms (batch means) and the weighted surrogate objective.
pub struct NetTerms {
    pub objective: Tensor,
    pub identity: Option<f64>,
    pub perceptual: Option<f64>,
}

/// `identity` and `perceptual` are the terms' weights; a zero weight skips the term.
/// `x` (the source images, decoder range) is needed only for feature matching.
pub fn net_terms(
    net: &Net,
    input: &ModelInput,
    x_hat: &Tensor,
    z: &Tensor,
    x: &Tensor,
    identity: f64,
    perceptual: f64,
) -> Result<NetTerms> {
    let (b, c, h, w) = x_hat.dims4()?;
    let flat = |t: &Tensor| -> Result<Vec<f32>> {
        Ok(input.apply(&t.detach())?.flatten_all()?.to_device(&Device::Cpu)?.to_vec1()?)
    };
    let pixels = flat(x_hat)?;
    let sources = if perceptual != 0.0 { flat(x)? } else { Vec::new() };
    let targets: Vec<f32> = z.flatten_all()?.to_device(&Device::Cpu)?.to_vec1()?;
    let d = targets.len() / b.max(1);
    let per = c * h * w;
    let layers = if perceptual != 0.0 { feature_layers(net) } else { Vec::new() };
    let scale = 1.0 / b.max(1) as f64;
    // Micro-batches of the fused forward's size, side by side on the threads: each keeps
    // only what its reverse pass reads.
    let m = FORWARD_MICRO_BATCH;
    let chunks: Vec<(usize, usize)> = (0..b).step_by(m).map(|i| (i, m.min(b - i))).collect();
    let results: Vec<(f64, f64, Vec<f32>)> = chunks
        .into_par_iter()
        .map(|(first, k)| {
            let tape = net.tape_batch(&pixels[first * per..(first + k) * per], k, &layers);
            let outputs = tape.outputs();
            let mut seeds = vec![0f32; k * d];
            let mut cos_sum = 0.0;
            for i in 0..k {
                let e = &outputs[i * d..(i + 1) * d];
                let norm = e.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt().max(1e-12);
                let zi = &targets[(first + i) * d..(first + i + 1) * d];
                let cos: f64 = e.iter().zip(zi).map(|(a, t)| *a as f64 / norm * *t as f64).sum();
                cos_sum += 1.0 - cos;
                // d(1 - cos)/de = -(z - cos u)/|e| with u = e/|e|.
                for ((s, a), t) in seeds[i * d..(i + 1) * d].iter_mut().zip(e).zip(zi) {
                    *s = (identity * scale * -(*t as f64 - cos * *a as f64 / norm) / norm) as f32;
                }
            }
            let mut feature_loss = 0.0;
            let mut inner: Vec<(usize, Vec<f32>)> = Vec::with_capacity(layers.len());
            if !layers.is_empty() {
                let source = net.tape_batch(&sources[first * per..(first + k) * per], k, &layers);
                for &l in &layers {
                    // Batch-innermost `[C][P][k]`: value j belongs to image j % k.
                    let (a_hat, a) = (net.activation(&tape, l), net.activation(&source, l));
                    let mut energy = vec![1e-6f64; k];
                    a.iter().enumerate().for_each(|(j, v)| energy[j % k] += (*v as f64).powi(2));
                    let diff: Vec<f64> = a_hat.iter().zip(a).map(|(p, q)| (*p - *q) as f64).collect();
                    feature_loss += diff.iter().enumerate().map(|(j, v)| v * v / energy[j % k]).sum::<f64>();
                    let g = diff.iter().enumerate().map(|(j, v)| (perceptual * scale * 2.0 / energy[j % k] * v) as f32);
                    inner.push((l, g.collect()));
                }
            }
            let inner_refs: Vec<(usize, &[f32])> = inner.iter().map(|(l, g)| (*l, g.as_slice())).collect();
            (cos_sum, feature_loss, net.vjp_with_inner(&tape, &seeds, &inner_refs))
        })
        .collect();
    let mean = |f: &dyn Fn(&(f64, f64, Vec<f32>)) -> f64| results.iter().map(f).sum::<f64>() * scale;
    let identity_value = (identity != 0.0).then(|| mean(&|r| r.0));
    let perceptual_value = (perceptual != 0.0).then(|| mean(&|r| r.1));
    let grad: Vec<f32> = results.into_iter().flat_map(|r| r.2).collect();
    let g = Tensor::from_vec(grad, (b, c, h, w), x_hat.device())?;
    let objective = (input.apply(x_hat)? * g)?.sum_all()?;
    Ok(NetTerms { objective, identity: identity_value, perceptual: perceptual_value })
}
