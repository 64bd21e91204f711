//! `facelens eval sanity`: the model-parameter randomisation test of one explainer (Adebayo et al.,
//! NeurIPS 2018; `facelens_protocol::sanity`) on the pairs `facelens eval xfv --limit N --seed S`
//! scores: cascading randomisation from the output layer down and independent randomisation per
//! layer group, with the Spearman correlation and SSIM of each map to the trained model's map.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::Device;
use clap::Args;
use facelens_data::RgbImage;
use facelens_models::reverse::Net;
use facelens_protocol::sanity::{self, Similarity, Step};
use facelens_protocol::select;
use facelens_saliency::render::render_map;
use facelens_saliency::FacePair;
use serde::Serialize;

use super::pairs::PairListArgs;
use super::xfv::{explainer, named_explainer, Scorer, JACOBIAN_ROWS};

#[derive(Args)]
pub struct SanityEvalArgs {
    /// Explainer: fggb, score-gradient, xssab, random, corrrise, rise, lime, gradcam, or dfv.
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
    /// N accepted genuine and N rejected impostor pairs, drawn with --seed as by `eval xfv`.
    #[arg(long, value_name = "N")]
    pub limit: usize,
    /// Seed of the --limit draw.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Layer groups (cascade steps), 1..=32: every stage (output resolution) is a group of its own,
    /// and long stages are split until there are this many (w600k_mbf has 5 stages); 1 = only the
    /// network with every layer randomised (the cascade's last step, two explanations per pair)
    #[arg(long, default_value_t = sanity::GROUPS)]
    pub groups: usize,
    /// Folder for `sanity.png` (the first pair's maps as layers are randomised), `result.json`
    /// and `per-pair.jsonl`.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Also write the per-pair results (JSON lines, as `per-pair.jsonl` of --out) to FILE: the
    /// `DIR/sanity/<method>.jsonl` that `facelens eval views DIR` reads.
    #[arg(long, value_name = "FILE")]
    pub per_pair: Option<PathBuf>,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

/// What `--json` prints.
#[derive(Serialize)]
struct Summary<'a> {
    method: &'a str,
    model: &'a str,
    pairs: usize,
    cascading: Vec<Step>,
    independent: Vec<Step>,
}

pub fn run(a: SanityEvalArgs, device: &Device) -> Result<()> {
    let t0 = Instant::now();
    if a.limit == 0 {
        bail!("--limit must be at least 1 (pairs of each kind)");
    }
    if !(1..=32).contains(&a.groups) {
        bail!("--groups must be 1..=32, got {}", a.groups);
    }
    if let Some(out) = &a.out {
        std::fs::create_dir_all(out).with_context(|| format!("cannot create --out {}", out.display()))?;
    }
    if let Some(p) = &a.per_pair {
        crate::output::check_target(p)?;
    }
    let named = named_explainer(&a.method)?;
    let (pairs, model, loader) = a.list.open(device)?;
    let explainer = explainer(named, a.decoder.as_deref(), device, &model)?;
    let threshold = super::threshold(&model, a.threshold)?;
    let engine = facelens_saliency::engine_for(&model, Some(JACOBIAN_ROWS))?;
    let net = Net::from_backbone(&model.backbone)?;
    let groups = net.layer_groups(a.groups);
    if groups.is_empty() {
        bail!("model `{}` has no learnt layers to randomise", model.spec.name);
    }
    let (cascade_names, independent_names) = sanity::step_names(&groups);
    let make_engine = |n: Net| -> facelens_protocol::Result<Box<dyn facelens_saliency::GradientEngine>> {
        Ok(facelens_saliency::engine_for_net(&model, n, Some(JACOBIAN_ROWS))?)
    };
    let scorer = Scorer { model: &model, engine: engine.as_ref(), loader: &loader, images: &a.list.images, threshold };

    let bar = facelens_board::progress::bar(pairs.len() as u64).with_message("selecting");
    let chosen = select::balanced(
        select::shuffled(pairs.len(), a.seed),
        pairs.len(),
        a.limit,
        |i| pairs[i].genuine,
        |i| anyhow::Ok(scorer.prepare(&pairs[i])?.and_then(|p| p.kind)),
        |scanned, _| bar.set_position(scanned as u64),
    )?;
    bar.finish_and_clear();
    if chosen.is_empty() {
        bail!("no pair of {} is an accepted genuine or a rejected impostor pair at tau = {threshold}", a.list.pairs.display());
    }

    let bar = facelens_board::progress::bar(chosen.len() as u64).with_message(a.method.clone());
    let (mut cascading, mut independent): (Vec<Vec<Similarity>>, Vec<Vec<Similarity>>) = (Vec::new(), Vec::new());
    let mut per_pair = String::new();
    let mut figure: Option<RgbImage> = None;
    for &i in &chosen {
        let pair = &pairs[i];
        let Some(prepared) = scorer.prepare(pair)? else { bail!("pair list line {} lost its face between two passes", pair.line) };
        let Some(kind) = prepared.kind else { bail!("pair list line {} changed its decision between two passes", pair.line) };
        let result = sanity::pair_sanity(
            engine.as_ref(),
            &net,
            &groups,
            &make_engine,
            explainer.as_ref(),
            FacePair { a: &prepared.a, b: &prepared.b },
            threshold,
            kind,
        )
        .with_context(|| format!("{} on pair list line {}", a.method, pair.line))?;
        per_pair += &serde_json::json!({
            "line": pair.line,
            "kind": kind.as_str(),
            "cascading": result.cascading,
            "independent": result.independent,
        })
        .to_string();
        per_pair.push('\n');
        if figure.is_none() {
            figure = Some(cascade_figure(&scorer, pair, &result, kind, &cascade_names)?);
        }
        cascading.push(result.cascading);
        independent.push(result.independent);
        bar.inc(1);
    }
    bar.finish_and_clear();

    let summary = Summary {
        method: &a.method,
        model: &model.spec.name,
        pairs: chosen.len(),
        cascading: sanity::summarise(&cascade_names, &cascading),
        independent: sanity::summarise(&independent_names, &independent),
    };
    if let Some(out) = &a.out {
        if let Some(fig) = &figure {
            crate::output::write_png(&out.join("sanity.png"), fig)?;
        }
        crate::output::write_json(&out.join("result.json"), &summary)?;
        crate::output::write_atomic(&out.join("per-pair.jsonl"), per_pair.as_bytes())?;
    }
    if let Some(p) = &a.per_pair {
        crate::output::write_atomic(p, per_pair.as_bytes())?;
    }
    let wall = t0.elapsed().as_secs_f64();
    eprintln!("{} pairs in {wall:.1} s ({:.2} s per pair), {} layer groups", chosen.len(), wall / chosen.len() as f64, groups.len());
    if a.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        println!("{} on {}: {} pairs; similarity to the trained model's maps (|map|)", a.method, model.spec.name, chosen.len());
        for (title, steps) in [("cascading (from the output layer down)", &summary.cascading), ("independent", &summary.independent)] {
            println!("\n{title}\n{:<28} {:>9} {:>7}", "layers randomised", "spearman", "ssim");
            for s in steps {
                println!("{:<28} {:>9.3} {:>7.3}", s.layer, s.spearman, s.ssim);
            }
        }
    }
    Ok(())
}

/// The classic figure: face A, its map on the trained model, then its map after each cascading step.
fn cascade_figure(
    scorer: &Scorer<'_>,
    pair: &facelens_data::Pair,
    result: &sanity::PairSanity,
    kind: facelens_eval::deletion::MapKind,
    names: &[String],
) -> Result<RgbImage> {
    let face = scorer.crop(&pair.a, pair)?.context("face A")?;
    let (h, w) = (result.original.height, result.original.width);
    // Each map on its own scale: randomised networks change the units of a gradient.
    let map = |m: &facelens_saliency::SaliencyMaps| render_map(sanity::maps_of(m, kind)[0], h, w, 0.0);
    let mut tiles = vec![("face A".to_string(), face), ("trained".to_string(), map(&result.original))];
    tiles.extend(names.iter().zip(&result.cascade_maps).map(|(n, m)| (n.clone(), map(m))));
    Ok(facelens_protocol::draw::tile_row(&tiles))
}
