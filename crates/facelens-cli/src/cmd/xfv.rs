//! `facelens eval xfv`: Deletion/Insertion of one explainer on a pair list (docs/design.md §8).
//!
//! Pair selection, per-pair curves and AUCs come from `facelens-protocol`, the library behind the
//! `xfv-benchmark` experiment, so
//! `--limit N --seed S` scores exactly the pairs that the benchmark's `subset.select = "random"`
//! with `first = N`, `seed = S` and all folds scores on the same model and landmarks, and the
//! numbers are those of its Tables I and II for that method.

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::Device;
use clap::{Args, ValueEnum};
use facelens_data::{DataError, Pair};
use facelens_eval::deletion::{MapKind, PairCurve, Perturb, Protocol};
use facelens_models::FaceModel;
use facelens_saliency::{FacePair, GradientEngine};
use serde::Serialize;
use facelens_protocol::cache::{MapCache, MapKey, StoredMaps, CACHE_VERSION};
use facelens_protocol::config::Fill;
use facelens_protocol::pair::{method_curves, prepare, Prepared};
use facelens_protocol::report::{cell_from_curves, Cell};
use facelens_protocol::select;

use super::pairs::PairListArgs;
use crate::faces::FaceLoader;

/// Perturbed images per forward pass while tracing curves (speed only; results do not depend on it).
const CURVE_BATCH: usize = 32;

/// Jacobian rows per backward pass: fixed (as in the benchmark's configs) rather than sized from
/// free memory, so that maps, and hence AUCs, do not depend on the machine.
pub(crate) const JACOBIAN_ROWS: usize = 32;

#[derive(Args)]
pub struct XfvEvalArgs {
    /// Explainer: fggb, score-gradient, xssab, random, corrrise, rise, lime, gradcam, or dfv
    /// (needs a trained decoder, see --decoder).
    #[arg(long)]
    pub method: String,
    /// DFV: decoder weights (default: checkpoints/decoder-w600k_mbf.safetensors).
    #[arg(long)]
    pub decoder: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub list: PairListArgs,
    /// Cosine threshold τ (default: the model's calibrated threshold).
    #[arg(long)]
    pub threshold: Option<f32>,
    /// Score a fixed random subset: N genuine pairs the model accepts and N impostor pairs it
    /// rejects, drawn with --seed (default: every eligible pair).
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Seed of the --limit draw.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Percent of pixels between curve points (5: p = 0, 5, ..., 100).
    #[arg(long, default_value_t = 5)]
    pub step: u32,
    /// Perturb both images, each by its own map, only the probe (A), or by kind (the probe for
    /// similarity maps, both images for dissimilarity maps: the setting where neither table
    /// saturates).
    #[arg(long, value_enum, default_value = "both")]
    pub perturb: PerturbArg,
    /// Value of removed pixels: `black` (0 in 0..255, the specified protocol), `grey` (127.5 in
    /// 0..255, with `--perturb by-kind` the informative protocol), `road` (ROAD's noisy linear
    /// imputation from the neighbours; the two curves become MoRF and LeRF) or a model-space number.
    #[arg(long, default_value = "black", value_name = "black|grey|road|VALUE")]
    pub fill: Fill,
    /// Also write each scored pair's AUCs (JSON lines: pair list line, kind, deletion, insertion),
    /// for paired comparisons between methods.
    #[arg(long, value_name = "FILE")]
    pub per_pair: Option<std::path::PathBuf>,
    /// Keep each pair's maps in this folder and reuse those of earlier runs: a pair explained
    /// once serves every `--fill`, `--step` and `--perturb` (entries are keyed by the model's
    /// weights, the threshold, the method and its settings, and the pair's aligned crops; the
    /// per-pair seconds are those of the run that explained it).
    #[arg(long, value_name = "DIR")]
    pub maps: Option<std::path::PathBuf>,
    /// Print the AUCs as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum PerturbArg {
    Both,
    Probe,
    ByKind,
}

/// What `--json` prints: AUCs in % per kind of map.
#[derive(Serialize)]
struct Summary<'a> {
    method: &'a str,
    similarity: KindSummary,
    dissimilarity: KindSummary,
}

/// `null` AUCs when no pair of the kind was scored.
#[derive(Serialize)]
struct KindSummary {
    deletion: Option<f64>,
    insertion: Option<f64>,
    pairs: usize,
}

impl From<&Cell> for KindSummary {
    fn from(c: &Cell) -> Self {
        Self {
            deletion: c.deletion_auc,
            insertion: c.insertion_auc,
            pairs: c.pairs,
        }
    }
}

/// The model, its engine and the loader that turn pairs into model-space images (shared by the
/// `eval` views: `xfv`, `sanity`, `patch`).
pub(crate) struct Scorer<'a> {
    pub model: &'a FaceModel,
    pub engine: &'a dyn GradientEngine,
    pub loader: &'a FaceLoader,
    pub images: &'a Path,
    pub threshold: f32,
}

impl Scorer<'_> {
    /// An image's aligned crop, or `None` when it has no detected face.
    pub fn crop(&self, rel: &Path, pair: &Pair) -> Result<Option<facelens_data::RgbImage>> {
        match self.loader.load_face(&self.images.join(rel)) {
            Ok(face) => Ok(Some(face.image)),
            Err(e) if e.downcast_ref::<DataError>().is_some_and(DataError::is_no_detection) => Ok(None),
            Err(e) => Err(e.context(format!("pair list line {}", pair.line))),
        }
    }

    /// The pair's images in model space, its clean score and the kind of map it is scored with,
    /// or `None` when an image has no detected face (such pairs are skipped, as in the benchmark).
    pub fn prepare(&self, pair: &Pair) -> Result<Option<Prepared>> {
        let (Some(a), Some(b)) = (self.crop(&pair.a, pair)?, self.crop(&pair.b, pair)?) else {
            return Ok(None);
        };
        Ok(Some(prepare(
            self.engine,
            &self.model.spec,
            self.threshold,
            &a,
            &b,
            pair.genuine,
        )?))
    }
}

/// A registered explainer by name, or `None` for DFV (built once the model is loaded, see
/// [`explainer`]); an unknown name is an error before anything loads.
pub(crate) fn named_explainer(method: &str) -> Result<Option<Box<dyn facelens_saliency::Explainer>>> {
    Ok(if method == facelens_protocol::config::DFV { None } else { Some(facelens_saliency::by_name(method)?) })
}

/// The explainer of [`named_explainer`], with DFV's decoder loaded and checked against the model.
pub(crate) fn explainer(
    named: Option<Box<dyn facelens_saliency::Explainer>>,
    decoder: Option<&Path>,
    device: &Device,
    model: &FaceModel,
) -> Result<Box<dyn facelens_saliency::Explainer>> {
    Ok(match named {
        Some(e) => e,
        None => Box::new(super::decoder::dfv(decoder, device, model.spec.embedding_dim)?),
    })
}

/// What a method's maps depend on besides the model, threshold and pair (the key of `--maps`):
/// its name, and for DFV the decoder's contents rather than its path.
fn method_identity(method: &str, decoder: Option<&Path>) -> Result<String> {
    Ok(if method == facelens_protocol::config::DFV {
        let path = super::decoder::decoder_path(decoder)?;
        serde_json::json!({ "dfv": { "decoder_sha256": facelens_models::backbone::sha256_file(&path)? } })
    } else {
        serde_json::json!({ "method": method })
    }
    .to_string())
}

/// Per-pair curves of one kind of map.
#[derive(Default)]
struct KindCurves {
    deletion: Vec<PairCurve>,
    insertion: Vec<PairCurve>,
}

pub fn run(a: XfvEvalArgs, device: &Device) -> Result<()> {
    let t0 = Instant::now();
    if a.limit == Some(0) {
        bail!(
            "--limit must be at least 1 (pairs of each kind), or left out for every eligible pair"
        );
    }
    if !(1..=100).contains(&a.step) {
        bail!("--step must be 1..=100 percent, got {}", a.step);
    }
    // An unknown method is refused before anything loads; DFV's decoder is checked against the model.
    let named = named_explainer(&a.method)?;
    let (pairs, model, loader) = a.list.open(device)?;
    let explainer = explainer(named, a.decoder.as_deref(), device, &model)?;
    let threshold = super::threshold(&model, a.threshold)?;
    let engine = facelens_saliency::engine_for(&model, Some(JACOBIAN_ROWS))?;
    let scorer = Scorer {
        model: &model,
        engine: engine.as_ref(),
        loader: &loader,
        images: &a.list.images,
        threshold,
    };
    if let Some(p) = &a.per_pair {
        crate::output::check_target(p)?;
    }
    let protocol = Protocol {
        road: a.fill.road_for(&model.spec)?,
        step_percent: f64::from(a.step),
        fill: a.fill.value_for(&model.spec)?,
        perturb: match a.perturb {
            PerturbArg::Both => Perturb::Both,
            PerturbArg::Probe => Perturb::Probe,
            PerturbArg::ByKind => Perturb::ByKind,
        },
        batch: CURVE_BATCH,
    };
    let steps = protocol.steps()?;
    let maps = match &a.maps {
        Some(dir) => Some((
            MapCache::new(dir),
            facelens_models::backbone::sha256_file(&model.weights_path)?,
            method_identity(&a.method, a.decoder.as_deref())?,
        )),
        None => None,
    };
    let mut cached = 0usize;

    let order = match a.limit {
        Some(_) => select::shuffled(pairs.len(), a.seed),
        None => (0..pairs.len()).collect(),
    };
    let bar = facelens_board::progress::bar(pairs.len() as u64).with_message("selecting");
    let chosen = select::balanced(
        order,
        pairs.len(),
        a.limit.unwrap_or(usize::MAX),
        |i| pairs[i].genuine,
        |i| anyhow::Ok(scorer.prepare(&pairs[i])?.and_then(|p| p.kind)),
        |scanned, _| bar.set_position(scanned as u64),
    )?;
    bar.finish_and_clear();
    if chosen.is_empty() {
        bail!(
            "no pair of {} is an accepted genuine or a rejected impostor pair at tau = {threshold}",
            a.list.pairs.display()
        );
    }

    let bar = facelens_board::progress::bar(chosen.len() as u64).with_message(a.method.clone());
    let (mut similarity, mut dissimilarity) = (KindCurves::default(), KindCurves::default());
    let mut per_pair = String::new();
    for &i in &chosen {
        let pair = &pairs[i];
        let prepared = scorer.prepare(pair)?;
        let Some(prepared @ Prepared { kind: Some(kind), .. }) = prepared else {
            bail!(
                "pair list line {} changed its decision between two passes",
                pair.line
            );
        };
        let key = match &maps {
            Some((cache, weights_sha256, method)) => {
                let (Some(crop_a), Some(crop_b)) = (scorer.crop(&pair.a, pair)?, scorer.crop(&pair.b, pair)?) else {
                    bail!("pair list line {} lost a face between two passes", pair.line);
                };
                let key = MapKey {
                    version: CACHE_VERSION,
                    weights_sha256: weights_sha256.clone(),
                    threshold,
                    method: method.clone(),
                    jacobian_rows: JACOBIAN_ROWS,
                    crops_sha256: facelens_protocol::explain::crops_sha256(&crop_a, &crop_b),
                };
                Some((cache, key))
            }
            None => None,
        };
        let (_, h, w) = engine.input_shape();
        let stored = match key.as_ref().and_then(|(cache, key)| cache.get(key, h, w)) {
            Some(stored) => {
                cached += 1;
                stored
            }
            None => {
                let t_explain = Instant::now();
                let explanation = explainer
                    .explain(engine.as_ref(), FacePair { a: &prepared.a, b: &prepared.b }, threshold)
                    .with_context(|| {
                        format!(
                            "{} on {} line {}",
                            a.method,
                            a.list.pairs.display(),
                            pair.line
                        )
                    })?;
                let stored = StoredMaps { maps: explanation.maps, seconds: t_explain.elapsed().as_secs_f64() };
                if let Some((cache, key)) = &key {
                    cache.put(key, &stored)?;
                }
                stored
            }
        };
        let explanation_s = stored.seconds;
        let curves = method_curves(
            engine.as_ref(),
            &protocol,
            &prepared,
            &stored.maps,
            kind,
            pair.genuine,
        )?;
        let pair_auc = |scores: &[f32]| -> Result<f64> {
            let curve = PairCurve { genuine: pair.genuine, scores: scores.to_vec() };
            Ok(facelens_eval::deletion::accuracy_curve(&[curve], &steps, threshold, facelens_eval::deletion::Mode::Deletion)?.auc)
        };
        per_pair += &serde_json::json!({
            "line": pair.line,
            "kind": kind.as_str(),
            "seconds": explanation_s,
            "deletion": pair_auc(&curves.deletion)?,
            "insertion": pair_auc(&curves.insertion)?,
        })
        .to_string();
        per_pair.push('\n');
        let target = match kind {
            MapKind::Similarity => &mut similarity,
            MapKind::Dissimilarity => &mut dissimilarity,
        };
        target.deletion.push(PairCurve {
            genuine: pair.genuine,
            scores: curves.deletion,
        });
        target.insertion.push(PairCurve {
            genuine: pair.genuine,
            scores: curves.insertion,
        });
        bar.inc(1);
    }
    bar.finish_and_clear();

    let cell = |c: &KindCurves| cell_from_curves(&c.deletion, &c.insertion, &steps, threshold);
    let (sim, dis) = (cell(&similarity)?, cell(&dissimilarity)?);
    let wall = t0.elapsed().as_secs_f64();
    if let Some(path) = &a.per_pair {
        crate::output::write_atomic(path, per_pair.as_bytes())?;
    }
    if let Some(n) = a.limit {
        if sim.pairs < n || dis.pairs < n {
            eprintln!(
                "note: only {} accepted genuine and {} rejected impostor pairs are eligible (asked for {n} each)",
                sim.pairs, dis.pairs
            );
        }
    }
    eprintln!(
        "{} pairs in {wall:.1} s ({:.2} s per pair{})",
        chosen.len(),
        wall / chosen.len() as f64,
        if cached > 0 { format!("; maps of {cached} from {}", a.maps.as_deref().unwrap_or(Path::new("")).display()) } else { String::new() }
    );
    if a.json {
        let summary = Summary {
            method: &a.method,
            similarity: (&sim).into(),
            dissimilarity: (&dis).into(),
        };
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        print!(
            "{}",
            table(
                &a.method,
                &model.spec.name,
                threshold,
                &protocol,
                &sim,
                &dis
            )
        );
    }
    Ok(())
}

/// The human-readable result.
fn table(
    method: &str,
    model: &str,
    threshold: f32,
    protocol: &Protocol,
    sim: &Cell,
    dis: &Cell,
) -> String {
    let num = |v: Option<f64>| v.map_or_else(|| "n/a".to_string(), |x| format!("{x:.2}"));
    let perturbed = protocol.perturb.describe();
    let (removed, modes, header) = match &protocol.road {
        None => (format!("set to {} (model space)", protocol.fill), "Deletion: lower is better; Insertion: higher is better", "deletion  insertion"),
        Some(r) => (
            format!("imputed by ROAD (noisy linear imputation, noise sd {} on 0..255)", r.noise),
            "MoRF (most relevant removed first): lower is better; LeRF (least relevant first): higher is better",
            "     MoRF       LeRF",
        ),
    };
    let mut s = format!(
        "{method} on {model} (tau = {threshold}), {perturbed} perturbed in steps of {} %, removed pixels \
         {removed}; AUC in %\n({modes})\n\n",
        protocol.step_percent
    );
    s += &format!("maps           pairs   {header}\n");
    for (name, c) in [("similarity", sim), ("dissimilarity", dis)] {
        s += &format!(
            "{name:<13} {:>6} {:>10} {:>10}\n",
            c.pairs,
            num(c.deletion_auc),
            num(c.insertion_auc)
        );
    }
    s
}
