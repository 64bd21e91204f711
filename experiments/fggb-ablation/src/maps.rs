//! Every variant's FGGB maps from one Jacobian per image.
//!
//! FGGB's cost is the N-row Jacobian of each image (N = 512 backward rows); everything a variant
//! changes comes after it. With `F = e/|e|` and `u = J^T F` (one extra row), the Jacobian rows of
//! the normalised embedding are `n_k = (J_k - F_k u) / |e|` (that is what
//! `facelens_saliency::engine::pull_back_normalisation` seeds), so the raw rows follow from them as
//! `J_k = |e| n_k + F_k u`. Channel reduction and per-dimension normalisation act on one row at a
//! time, τ only changes the weights `v_k = w_k - τ/N`, and blur acts on the finished maps. So one
//! pass over the normalised rows (plus `u` when a variant wants the raw embedding) feeds every
//! variant, instead of one Jacobian per variant.
//!
//! The normalised rows are produced exactly as [`Fggb`](facelens_saliency::Fggb) produces them
//! (same seeds, same rows per pass, same reduction and accumulation order), so a variant on the
//! normalised embedding gets bit for bit the maps `Fggb::explain` would; a raw-embedding variant
//! equals them to float rounding (its rows are recombined rather than back-propagated).

use anyhow::Result;
use facelens_saliency::blur::display_blur;
use facelens_saliency::engine::{jacobian_passes, normalised, GradientEngine, Linearised};
use facelens_saliency::fggb::{dimension_weights, shifted_weights};
use facelens_saliency::reduce::{l2_normalise_map, reduce_channels, ChannelReduction};
use facelens_saliency::{FacePair, FggbConfig, SaliencyMaps};

/// One variant with its τ resolved to a cosine.
#[derive(Debug, Clone, PartialEq)]
pub struct MapSpec {
    pub fggb: FggbConfig,
    pub tau: f32,
}

/// How a Jacobian row becomes a per-dimension map `G^k`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RowKey {
    normalised: bool,
    reduction: ChannelReduction,
    per_dimension_norm: bool,
}

impl RowKey {
    fn of(c: &FggbConfig) -> Self {
        Self {
            normalised: c.normalised_embedding,
            reduction: c.channel_reduction,
            per_dimension_norm: c.per_dimension_norm,
        }
    }
}

/// A signed map `S = Σ_k v_k G^k` to accumulate: which row key, which τ.
#[derive(Debug, Clone, Copy, PartialEq)]
struct SumKey {
    row: usize,
    tau: f32,
}

/// Index of `item` in `list`, appending it when absent.
fn intern<T: PartialEq>(list: &mut Vec<T>, item: T) -> usize {
    match list.iter().position(|x| *x == item) {
        Some(i) => i,
        None => {
            list.push(item);
            list.len() - 1
        }
    }
}

/// Every signed map of one image in a single pass over its Jacobian. `weights[i]` are the
/// shifted weights `v` of `sums[i]`.
fn signed_maps(
    engine: &dyn GradientEngine,
    lin: &dyn Linearised,
    rows: &[RowKey],
    sums: &[SumKey],
    weights: &[Vec<f32>],
) -> Result<Vec<Vec<f32>>> {
    let (c, h, w) = engine.input_shape();
    let (p, len) = (h * w, c * h * w);
    let e = lin.embedding();
    let f = normalised(e);
    // Only raw rows need u = J^T F and |e| (in f64, as the normalisation pull-back computes it).
    let raw = rows.iter().any(|r| !r.normalised);
    let (u, norm) = if raw {
        let norm = e
            .iter()
            .map(|x| f64::from(*x).powi(2))
            .sum::<f64>()
            .sqrt()
            .max(1e-12);
        (lin.vjp(&f, 1)?, norm as f32)
    } else {
        (Vec::new(), 0.0)
    };
    let mut out = vec![vec![0f32; p]; sums.len()];
    let mut g = vec![0f32; p];
    let mut raw_row = vec![0f32; if raw { len } else { 0 }];
    jacobian_passes(lin, true, engine.rows_per_pass(), |k0, n_rows, grads| {
        for r in 0..n_rows {
            let k = k0 + r;
            let n_k = &grads[r * len..(r + 1) * len];
            if raw {
                for ((o, &n), &uu) in raw_row.iter_mut().zip(n_k).zip(&u) {
                    *o = norm * n + f[k] * uu;
                }
            }
            for (ri, key) in rows.iter().enumerate() {
                let row = if key.normalised { n_k } else { &raw_row[..] };
                reduce_channels(row, c, key.reduction, &mut g);
                if key.per_dimension_norm {
                    l2_normalise_map(&mut g);
                }
                for ((sum, s), v) in sums.iter().zip(out.iter_mut()).zip(weights) {
                    if sum.row == ri {
                        let vk = v[k];
                        s.iter_mut().zip(&g).for_each(|(acc, gv)| *acc += vk * gv);
                    }
                }
            }
        }
    })?;
    Ok(out)
}

/// The maps of every spec for one pair, and the pair's cosine.
pub fn variant_maps(
    engine: &dyn GradientEngine,
    pair: FacePair<'_>,
    specs: &[MapSpec],
) -> Result<(Vec<SaliencyMaps>, f32)> {
    let (_, h, w) = engine.input_shape();
    let lin_a = engine.linearise(pair.a)?;
    let lin_b = engine.linearise(pair.b)?;
    let weights = dimension_weights(
        &normalised(lin_a.embedding()),
        &normalised(lin_b.embedding()),
    );
    let score: f32 = weights.iter().sum();
    let (mut rows, mut sums) = (Vec::new(), Vec::new());
    let spec_sum: Vec<usize> = specs
        .iter()
        .map(|s| {
            let row = intern(&mut rows, RowKey::of(&s.fggb));
            intern(&mut sums, SumKey { row, tau: s.tau })
        })
        .collect();
    let v: Vec<Vec<f32>> = sums
        .iter()
        .map(|s| shifted_weights(&weights, s.tau))
        .collect();
    let sa = signed_maps(engine, lin_a.as_ref(), &rows, &sums, &v)?;
    let sb = signed_maps(engine, lin_b.as_ref(), &rows, &sums, &v)?;
    let maps = specs
        .iter()
        .zip(spec_sum)
        .map(|(spec, i)| {
            let mut m = SaliencyMaps::from_signed(h, w, &sa[i], &sb[i]);
            if spec.fggb.blur {
                for x in [&mut m.sa_pos, &mut m.sa_neg, &mut m.sb_pos, &mut m.sb_neg] {
                    *x = display_blur(x, h, w);
                }
            }
            m
        })
        .collect();
    Ok((maps, score))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use candle_nn::{VarBuilder, VarMap};
    use facelens_models::mobilefacenet::{Config, MobileFaceNet};
    use facelens_models::reverse::Net;
    use facelens_saliency::{Explainer, Fggb, NetEngine};

    /// A random tiny MobileFaceNet with non-trivial BatchNorm statistics (candle cannot seed its
    /// CPU generator, so the weights differ per run; what is compared holds for any weights).
    fn tiny_engine(rows: usize) -> NetEngine {
        let dev = Device::Cpu;
        let map = VarMap::new();
        let m = MobileFaceNet::new(
            &Config::tiny(),
            VarBuilder::from_varmap(&map, DType::F32, &dev),
        )
        .expect("tiny net");
        for (name, var) in map.data().lock().expect("vars").iter() {
            if name.ends_with("running_var") {
                var.set(&var.as_tensor().rand_like(0.5, 2.0).expect("rand"))
                    .expect("set");
            } else if name.ends_with("bias") || name.ends_with("running_mean") {
                var.set(&var.as_tensor().rand_like(-0.3, 0.3).expect("rand"))
                    .expect("set");
            }
        }
        NetEngine::new(Net::from_mobilefacenet(&m).expect("lowered"), Some(rows))
    }

    fn image(seed: u64) -> Vec<f32> {
        let mut rng = facelens_saliency::perturb::Rng::new(seed);
        (0..3 * 112 * 112)
            .map(|_| rng.uniform() * 2.0 - 1.0)
            .collect()
    }

    fn spec(normalised: bool, max: bool, pdn: bool, blur: bool, tau: f32) -> MapSpec {
        MapSpec {
            fggb: FggbConfig {
                normalised_embedding: normalised,
                channel_reduction: if max {
                    ChannelReduction::MaxAbs
                } else {
                    ChannelReduction::MeanAbs
                },
                per_dimension_norm: pdn,
                blur,
            },
            tau,
        }
    }

    fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }

    fn max_abs(a: &[f32]) -> f32 {
        a.iter().map(|x| x.abs()).fold(0.0, f32::max)
    }

    #[test]
    fn one_pass_gives_every_variant_fggb_would_give() {
        let engine = tiny_engine(5);
        let (a, b) = (image(1), image(2));
        let pair = FacePair { a: &a, b: &b };
        let specs = vec![
            spec(true, false, true, false, 0.2151),
            spec(true, true, true, false, 0.2151),
            spec(true, false, false, false, 0.2151),
            spec(true, false, true, true, 0.2151),
            spec(true, false, true, false, 0.1910),
            spec(false, false, true, false, 0.2151),
            spec(false, true, false, true, 0.1910),
        ];
        let (maps, score) = variant_maps(&engine, pair, &specs).expect("maps");
        assert_eq!(maps.len(), specs.len());
        for (s, m) in specs.iter().zip(&maps) {
            let reference = Fggb::new(s.fggb.clone())
                .explain(&engine, pair, s.tau)
                .expect("fggb");
            assert_eq!(score, reference.score);
            for ((name, got), (_, want)) in m.named().iter().zip(reference.maps.named()) {
                assert!(got.iter().all(|v| v.is_finite() && *v >= 0.0), "{name}");
                if s.fggb.normalised_embedding {
                    assert!(*got == want, "{s:?} {name}: not bit-identical to Fggb");
                } else {
                    let (d, scale) = (max_abs_diff(got, want), max_abs(want));
                    assert!(
                        d <= 1e-4 * scale,
                        "{s:?} {name}: off by {d} (scale {scale})"
                    );
                }
            }
        }
        // The raw variant really differs from the normalised one.
        assert!(max_abs_diff(&maps[0].sa_pos, &maps[5].sa_pos) > 1e-3 * max_abs(&maps[0].sa_pos));
    }
}
