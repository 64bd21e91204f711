//! The benchmark's methods, loaded once per run, and explaining a pair with any subset of them.
//! Every FGGB entry of a run is served by one Jacobian per image ([`facelens_saliency::fggb`]),
//! so an ablation over FGGB's switches costs one FGGB, not one per variant.

use std::time::Instant;

use candle_core::Device;
use facelens_saliency::fggb::variant_maps;
use facelens_saliency::{Decision, Explainer, FacePair, FggbVariant, GradientEngine, SaliencyMaps};

use crate::cache::hex;
use crate::config::{Method, MethodSpec};
use crate::error::{Context, Error, Result};

/// A method with what computes its maps.
pub struct Loaded {
    pub method: Method,
    /// What the method's curves depend on, as canonical JSON (for the curve cache).
    pub identity: String,
    explainer: Option<Box<dyn Explainer>>,
}

/// The maps of one method on one pair, with what they cost.
pub struct Explained {
    pub maps: SaliencyMaps,
    pub score: f32,
    pub decision: Decision,
    pub seconds: f64,
    pub forward_images: u64,
    pub backward_rows: u64,
}

impl Loaded {
    pub fn load(method: Method, device: &Device) -> Result<Loaded> {
        let (explainer, extra): (Option<Box<dyn Explainer>>, Option<String>) = match &method.spec {
            MethodSpec::Fggb { .. } => (None, None),
            MethodSpec::Dfv { decoder } => {
                if !decoder.is_file() {
                    return Err(Error::invalid(decoder, "DFV decoder not found (train one with `facelens train-decoder`)"));
                }
                let sha = facelens_models::backbone::sha256_file(decoder)?;
                let dec = facelens_recon::load_decoder(decoder, device)
                    .context_with(|| format!("loading DFV decoder {}", decoder.display()))?;
                (Some(Box::new(facelens_recon::Dfv::new(dec, device.clone()))), Some(sha))
            }
            MethodSpec::Named { kind } => (Some(facelens_saliency::by_name(kind)?), None),
        };
        let identity = match extra {
            // The decoder's contents, not its path, decide its maps.
            Some(sha) => serde_json::json!({ "dfv": { "decoder_sha256": sha } }),
            None => serde_json::to_value(&method.spec).expect("a method spec serialises"),
        }
        .to_string();
        Ok(Loaded { method, identity, explainer })
    }

    pub fn name(&self) -> &str {
        &self.method.name
    }
}

/// Explains `pair` with each of `methods` at the protocol `threshold`; FGGB entries share one
/// Jacobian per image (their time and passes are split evenly between them).
pub fn explain_all(
    engine: &dyn GradientEngine,
    pair: FacePair<'_>,
    threshold: f32,
    methods: &[&Loaded],
) -> Result<Vec<Explained>> {
    let mut out: Vec<Option<Explained>> = methods.iter().map(|_| None).collect();
    let fggb: Vec<(usize, FggbVariant)> = methods
        .iter()
        .enumerate()
        .filter_map(|(i, l)| match &l.method.spec {
            MethodSpec::Fggb { config, tau } => {
                Some((i, FggbVariant { config: config.clone(), tau: tau.unwrap_or(threshold) }))
            }
            _ => None,
        })
        .collect();
    if !fggb.is_empty() {
        let names = || fggb.iter().map(|(i, _)| methods[*i].name()).collect::<Vec<_>>().join(", ");
        let variants: Vec<FggbVariant> = fggb.iter().map(|(_, v)| v.clone()).collect();
        let (maps, score, cost) = measured(engine, || Ok(variant_maps(engine, pair, &variants)?))
            .context_with(|| names())?;
        let n = fggb.len();
        for ((i, _), maps) in fggb.iter().zip(maps) {
            out[*i] = Some(Explained {
                maps,
                score,
                decision: Decision::at(score, threshold),
                seconds: cost.0 / n as f64,
                forward_images: cost.1 / n as u64,
                backward_rows: cost.2 / n as u64,
            });
        }
    }
    for (i, l) in methods.iter().enumerate() {
        let Some(explainer) = &l.explainer else { continue };
        let (ex, _, cost) = measured(engine, || {
            let ex = explainer.explain(engine, pair, threshold)?;
            Ok((ex, ()))
        })
        .context_with(|| l.name().to_string())?;
        out[i] = Some(Explained {
            maps: ex.maps,
            score: ex.score,
            decision: ex.decision,
            seconds: cost.0,
            forward_images: cost.1,
            backward_rows: cost.2,
        });
    }
    Ok(out.into_iter().map(|e| e.expect("every method is FGGB or has an explainer")).collect())
}

/// Runs `f` and measures its wall time and the engine's forward images and backward rows.
fn measured<T, U>(
    engine: &dyn GradientEngine,
    f: impl FnOnce() -> Result<(T, U)>,
) -> Result<(T, U, (f64, u64, u64))> {
    let t0 = Instant::now();
    let (fwd0, bwd0) = engine.passes();
    let (t, u) = f()?;
    let (fwd1, bwd1) = engine.passes();
    Ok((t, u, (t0.elapsed().as_secs_f64(), fwd1 - fwd0, bwd1 - bwd0)))
}

/// sha256 of both aligned crops, A then B: what the curve cache knows a pair by.
pub fn crops_sha256(a: &facelens_data::RgbImage, b: &facelens_data::RgbImage) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for img in [a, b] {
        h.update(img.width().to_le_bytes());
        h.update(img.height().to_le_bytes());
        h.update(img.as_raw());
    }
    hex(&h.finalize())
}
