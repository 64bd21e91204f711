//! `facelens eval patch`: the ground-truth patch benchmark (`facelens_eval::patch`,
//! `facelens_protocol::patch`). Genuine pairs the model accepts, drawn with --seed, get the eyes,
//! nose or mouth of the probe replaced by an impostor's; pairs whose cosine drops by at least
//! --margin are kept, and each method's dissimilarity map of the patched probe is scored against the
//! patch: pointing game, share of the map's mass in the patch, and patch-vs-rest AUC.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::Device;
use clap::Args;
use facelens_data::RgbImage;
use facelens_eval::deletion::{ImageShape, MapKind};
use facelens_eval::patch::{patch_if_it_drops, score_map, PatchScores};
use facelens_models::preprocess::normalise_chw;
use facelens_protocol::patch::{choose, donor_pool};
use facelens_saliency::render::{render_comparison, MethodRow, PanelInfo};
use facelens_saliency::{Decision, FacePair, SaliencyMaps};
use serde::Serialize;

use super::pairs::PairListArgs;
use super::xfv::{explainer, named_explainer, Scorer, JACOBIAN_ROWS};

/// Donors tried per pair before it is passed over (a donor may have no face or too small an effect).
const ATTEMPTS: u64 = 3;

#[derive(Args)]
pub struct PatchEvalArgs {
    /// Explainers: one name, a comma-separated list, or `all` (every registered method; DFV only
    /// when named).
    #[arg(long)]
    pub method: String,
    /// DFV: decoder weights (default: checkpoints/decoder-w600k_mbf.safetensors).
    #[arg(long)]
    pub decoder: Option<PathBuf>,
    #[command(flatten)]
    pub list: PairListArgs,
    /// Cosine threshold τ (default: the model's calibrated threshold).
    #[arg(long)]
    pub threshold: Option<f32>,
    /// Patched pairs to score (genuine pairs the model accepts whose patch lowers the cosine by
    /// at least --margin).
    #[arg(long, value_name = "N")]
    pub limit: usize,
    /// Seed of the pair order, region and donor choice.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Least cosine drop for a patch to count as evidence against the match.
    #[arg(long, default_value_t = 0.1)]
    pub margin: f32,
    /// Keep only patched pairs the model now rejects. Methods that explain the decision (FGGB
    /// weighs dimensions by `cos - τ`) give an accepted pair an empty or near-empty dissimilarity
    /// map, however much its cosine fell; on rejected pairs the dissimilarity map is the
    /// explanation of the decision.
    #[arg(long)]
    pub reject_only: bool,
    /// Panels of the first N patched pairs with every method's maps.
    #[arg(long, default_value_t = 3)]
    pub panels: usize,
    /// Folder for `panels/*.png`, `result.json` and `per-pair.jsonl`.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Also write the per-pair results (JSON lines, as `per-pair.jsonl` of --out) to FILE: the
    /// `DIR/patch/<name>.jsonl` that `facelens eval views DIR` reads.
    #[arg(long, value_name = "FILE")]
    pub per_pair: Option<PathBuf>,
    /// Print one JSON line per method.
    #[arg(long)]
    pub json: bool,
}

/// What `--json` prints per method.
#[derive(Serialize)]
struct Summary<'a> {
    method: &'a str,
    pairs: usize,
    pointing_game: f64,
    mass_in_patch: f64,
    patch_area_fraction: f64,
    auc: f64,
    seconds_per_explanation: f64,
}

pub fn run(a: PatchEvalArgs, device: &Device) -> Result<()> {
    let t0 = Instant::now();
    if a.limit == 0 {
        bail!("--limit must be at least 1 (patched pairs)");
    }
    if !(a.margin.is_finite() && (0.0..=2.0).contains(&a.margin)) {
        bail!("--margin must be a cosine drop in [0, 2], got {}", a.margin);
    }
    if let Some(out) = &a.out {
        std::fs::create_dir_all(out.join("panels")).with_context(|| format!("cannot create --out {}", out.display()))?;
    }
    if let Some(p) = &a.per_pair {
        crate::output::check_target(p)?;
    }
    let names: Vec<String> = if a.method == "all" {
        facelens_saliency::METHODS.iter().map(|m| m.to_string()).collect()
    } else {
        a.method.split(',').map(|m| m.trim().to_string()).collect()
    };
    let named = names.iter().map(|m| named_explainer(m)).collect::<Result<Vec<_>>>()?;
    let (pairs, model, loader) = a.list.open(device)?;
    let explainers = named.into_iter().map(|n| explainer(n, a.decoder.as_deref(), device, &model)).collect::<Result<Vec<_>>>()?;
    let threshold = super::threshold(&model, a.threshold)?;
    let engine = facelens_saliency::engine_for(&model, Some(JACOBIAN_ROWS))?;
    let scorer = Scorer { model: &model, engine: engine.as_ref(), loader: &loader, images: &a.list.images, threshold };
    let (c, h, w) = engine.input_shape();
    let shape = ImageShape::new(c, h, w);
    let pool = donor_pool(&pairs);
    let mut embed = |images: &[f32], n: usize| -> facelens_protocol::Result<Vec<f32>> { Ok(engine.embed(images, n)?) };

    let mut scores: Vec<Vec<PatchScores>> = vec![Vec::new(); names.len()];
    let mut seconds = vec![0f64; names.len()];
    let (mut per_pair, mut scanned, mut panels) = (String::new(), 0usize, 0usize);
    let bar = facelens_board::progress::bar(a.limit as u64).with_message("patching");
    for i in facelens_protocol::select::shuffled(pairs.len(), a.seed) {
        if scores[0].len() >= a.limit {
            break;
        }
        let pair = &pairs[i];
        if !pair.genuine {
            continue;
        }
        scanned += 1;
        let Some(prepared) = scorer.prepare(pair)? else { continue };
        if prepared.kind != Some(MapKind::Similarity) {
            continue;
        }
        let mut found = None;
        for attempt in 0..ATTEMPTS {
            let (region, Some(donor_path)) = choose(&pool, pair, a.seed, attempt) else { break };
            let Some(donor_crop) = scorer.crop(&donor_path, pair)? else { continue };
            let donor = normalise_chw(donor_crop.as_raw(), &model.spec)?;
            let mask = region.patch_box(h).mask(h, w);
            let patched = patch_if_it_drops(&prepared.a, &donor, &prepared.b, shape, &mask, a.margin, &mut embed)?;
            if let Some(p) = patched.filter(|p| !a.reject_only || p.patched_score < threshold) {
                found = Some((region, donor_path, donor_crop, mask, p));
                break;
            }
        }
        let Some((region, donor_path, donor_crop, mask, patched)) = found else { continue };
        let face_pair = FacePair { a: &patched.image, b: &prepared.b };
        let mut maps: Vec<SaliencyMaps> = Vec::with_capacity(names.len());
        let mut row = serde_json::Map::new();
        let mut pair_seconds = Vec::with_capacity(names.len());
        for (k, e) in explainers.iter().enumerate() {
            let t = Instant::now();
            let ex = e.explain(engine.as_ref(), face_pair, threshold).with_context(|| format!("{} on pair list line {}", names[k], pair.line))?;
            pair_seconds.push(t.elapsed().as_secs_f64());
            seconds[k] += t.elapsed().as_secs_f64();
            let s = score_map(&ex.maps.sa_neg, &mask)?;
            row.insert(names[k].clone(), serde_json::to_value(s)?);
            scores[k].push(s);
            maps.push(ex.maps);
        }
        per_pair += &serde_json::json!({
            "line": pair.line,
            "region": region.as_str(),
            "donor": donor_path,
            "clean_score": patched.clean_score,
            "patched_score": patched.patched_score,
            "threshold": threshold,
            "methods": row,
        })
        .to_string();
        per_pair.push('\n');
        if let (Some(out), true) = (&a.out, panels < a.panels) {
            let crop_a = scorer.crop(&pair.a, pair)?.context("face A")?;
            let crop_b = scorer.crop(&pair.b, pair)?.context("face B")?;
            let rows: Vec<MethodRow> =
                names.iter().zip(&maps).zip(&pair_seconds).map(|((m, maps), &seconds)| MethodRow { method: m, maps, seconds }).collect();
            let info = PanelInfo {
                score: patched.patched_score,
                threshold,
                decision: Decision::at(patched.patched_score, threshold),
                method: String::new(),
                model: format!("{} ({} patched)", model.spec.name, region.as_str()),
            };
            let panel = render_comparison(&pasted(&crop_a, &donor_crop, &mask), &crop_b, &rows, &info, false);
            crate::output::write_png(&out.join("panels").join(format!("line-{:05}-{}.png", pair.line, region.as_str())), &panel)?;
            panels += 1;
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let n = scores[0].len();
    if n == 0 {
        bail!("no genuine pair of {} lost {} of its cosine to a patch (scanned {scanned}); lower --margin", a.list.pairs.display(), a.margin);
    }
    if n < a.limit {
        eprintln!("note: only {n} patched pairs qualified (asked for {})", a.limit);
    }
    let mean = |v: &[PatchScores], f: fn(&PatchScores) -> f64| v.iter().map(f).sum::<f64>() / v.len() as f64;
    let summaries: Vec<Summary> = names
        .iter()
        .zip(&scores)
        .zip(&seconds)
        .map(|((m, s), secs)| Summary {
            method: m,
            pairs: s.len(),
            pointing_game: mean(s, |x| f64::from(u8::from(x.pointing_game))),
            mass_in_patch: mean(s, |x| x.mass_in_patch),
            patch_area_fraction: mean(s, |x| x.patch_area_fraction),
            auc: mean(s, |x| x.auc),
            seconds_per_explanation: secs / s.len() as f64,
        })
        .collect();
    if let Some(out) = &a.out {
        crate::output::write_json(&out.join("result.json"), &summaries)?;
        crate::output::write_atomic(&out.join("per-pair.jsonl"), per_pair.as_bytes())?;
    }
    if let Some(p) = &a.per_pair {
        crate::output::write_atomic(p, per_pair.as_bytes())?;
    }
    eprintln!("{n} patched pairs of {scanned} genuine pairs scanned in {:.1} s", t0.elapsed().as_secs_f64());
    for s in &summaries {
        if a.json {
            println!("{}", serde_json::to_string(s)?);
        } else {
            println!(
                "{:<16} pairs {:>4}  pointing game {:.3}  mass in patch {:.3} (area {:.3})  AUC {:.3}",
                s.method, s.pairs, s.pointing_game, s.mass_in_patch, s.patch_area_fraction, s.auc
            );
        }
    }
    Ok(())
}

/// Crop `a` with the pixels of `mask` taken from `donor`: the patched probe as the model saw it.
fn pasted(a: &RgbImage, donor: &RgbImage, mask: &[bool]) -> RgbImage {
    let w = a.width() as usize;
    RgbImage::from_fn(a.width(), a.height(), |x, y| if mask[y as usize * w + x as usize] { *donor.get_pixel(x, y) } else { *a.get_pixel(x, y) })
}
