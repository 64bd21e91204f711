//! Re-drawing a lowered network's learnt weights, for the model-parameter randomisation test of
//! Adebayo et al., "Sanity Checks for Saliency Maps" (NeurIPS 2018): an explanation that depends
//! on what the model learnt must change when the weights are replaced by random ones.
//!
//! The seam is the lowered [`Net`] every gradient engine is built from: a randomised copy is an
//! ordinary `Net`, so every explainer runs on it unchanged. Learnt layers are the convolutions and
//! the dense head (BatchNorm is already folded into them; an IResNet's stride shortcut, a fixed
//! unit-weight selection, is not learnt and is left alone). PReLU slopes and the unfolded
//! BatchNorms of SFace/IResNet stay as trained: they rescale activations rather than choose
//! features, and the paper randomises the weights of each layer.
//!
//! Each op's weights are re-drawn from a zero-mean Gaussian with the standard deviation of its
//! own trained weights (biases likewise), from a stream fixed by the seed and the op's index, so
//! an op gets the same random weights in the cascading and in the independent test.

use facelens_core::rng::Xoshiro256;

use super::{Net, Op};

/// Learnt layers randomised together: one step of the cascade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerGroup {
    /// Where the layers sit: the output resolution of their stage (`28x28`, split into parts
    /// `28x28 (1/2)` ... from the input side when a stage is long), or `dense` for the head.
    pub name: String,
    /// Op indices into [`Net::ops`], in graph order.
    pub ops: Vec<usize>,
}

/// Stream id of randomised weights (distinct from every other use of a seed).
const STREAM: u64 = 0x5241_4e44; // "RAND"

impl Net {
    /// Whether op `i` holds learnt weights.
    fn learnt(&self, i: usize) -> bool {
        match &self.ops[i] {
            Op::Dense { .. } => true,
            // A 1x1 depthwise convolution with unit weights and no bias only subsamples.
            Op::Conv { geom, weight, bias, .. } => {
                !(geom.k == 1 && geom.groups == geom.cin && weight.iter().all(|&w| w == 1.0) && bias.iter().all(|&b| b == 0.0))
            }
            _ => false,
        }
    }

    /// The learnt layers in groups, **output side first** (the cascade's order): the dense head,
    /// then stages by output resolution from the deepest, long stages split into contiguous parts
    /// until there are `target` groups. Stages are never merged, so there are at least as many
    /// groups as stages, except for `target` ≤ 1: one group of every learnt layer, the cascade's
    /// last step alone (each layer's weights are drawn from their own stream, so that network is
    /// the same as the last step of any longer cascade).
    pub fn layer_groups(&self, target: usize) -> Vec<LayerGroup> {
        if target <= 1 {
            let ops: Vec<usize> = (0..self.ops.len()).filter(|&i| self.learnt(i)).collect();
            return if ops.is_empty() { Vec::new() } else { vec![LayerGroup { name: "all".to_string(), ops }] };
        }
        // Stages in graph order: (name, ops); the dense head is a stage of its own.
        let mut stages: Vec<(String, Vec<usize>)> = Vec::new();
        for i in (0..self.ops.len()).filter(|&i| self.learnt(i)) {
            let s = self.shapes[i + 1];
            let name = match self.ops[i] {
                Op::Dense { .. } => "dense".to_string(),
                _ => format!("{}x{}", s.h, s.w),
            };
            match stages.last_mut() {
                Some((n, ops)) if *n == name => ops.push(i),
                _ => stages.push((name, vec![i])),
            }
        }
        // Parts per stage: give one more part to the stage with the most ops per part.
        let mut parts = vec![1usize; stages.len()];
        while parts.iter().sum::<usize>() < target {
            let best = (0..stages.len())
                .filter(|&k| stages[k].1.len() > parts[k])
                .max_by(|&a, &b| (stages[a].1.len() * parts[b]).cmp(&(stages[b].1.len() * parts[a])).then(b.cmp(&a)));
            match best {
                Some(k) => parts[k] += 1,
                None => break,
            }
        }
        let mut groups = Vec::new();
        for ((name, ops), n) in stages.into_iter().zip(parts) {
            for k in 0..n {
                let (a, b) = (k * ops.len() / n, (k + 1) * ops.len() / n);
                let name = if n == 1 { name.clone() } else { format!("{name} ({}/{n})", k + 1) };
                groups.push(LayerGroup { name, ops: ops[a..b].to_vec() });
            }
        }
        groups.reverse();
        groups
    }

    /// A copy of the network with the weights and biases of `ops` re-drawn (see the module docs).
    pub fn randomised(&self, ops: &[usize], seed: u64) -> Net {
        let mut net = Net { input: self.input, ops: self.ops.clone(), shapes: self.shapes.clone(), passes: Default::default(), pool: Default::default() };
        for &i in ops {
            let mut rng = Xoshiro256::stream(seed, facelens_core::rng::hash_words(&[STREAM, i as u64]));
            if let Op::Conv { weight, bias, .. } | Op::Dense { weight, bias, .. } = &mut net.ops[i] {
                redraw(weight, &mut rng);
                redraw(bias, &mut rng);
            }
        }
        net
    }
}

/// Replaces `v` by zero-mean Gaussian values with `v`'s standard deviation.
fn redraw(v: &mut [f32], rng: &mut Xoshiro256) {
    if v.is_empty() {
        return;
    }
    let n = v.len() as f64;
    let mean = v.iter().map(|x| f64::from(*x)).sum::<f64>() / n;
    let sd = (v.iter().map(|x| (f64::from(*x) - mean).powi(2)).sum::<f64>() / n).sqrt();
    for x in v.iter_mut() {
        *x = (sd * rng.normal()) as f32;
    }
}
