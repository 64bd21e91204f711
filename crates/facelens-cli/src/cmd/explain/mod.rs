//! `facelens explain A B`: the main job.
//!
//! Writes `panel.png` (faces with similarity and dissimilarity overlays, score, τ and
//! decision), `maps.safetensors` (raw, unblurred maps) and `result.json`. With several methods
//! (`--method fggb,xssab` or `all`) the panel compares them, a row per method, and the maps are
//! keyed `<method>.sa_pos` etc. With `--pairs LIST` every pair of a list is explained by one
//! process (models loaded once), a folder per pair plus `summary.csv` / `summary.json`
//! ([`pairs`]). A photo with several faces gets an overview, `faces-a.png` / `faces-b.png`.

mod pairs;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::Device;
use clap::Args;
use facelens_models::FaceModel;
use facelens_saliency::fggb::FggbConfig;
use facelens_saliency::reduce::ChannelReduction;
use facelens_saliency::render::{render_comparison, render_panel, MethodRow, PanelInfo};
use facelens_saliency::{Decision, Explainer, FacePair, Fggb, GradientEngine, SaliencyMaps};
use serde::Serialize;

use crate::faces::{Face, FaceArgs, FaceLoader, FaceReport};

#[derive(Args)]
pub struct ExplainArgs {
    /// The two faces (photos or aligned crops); or --pairs.
    #[arg(required_unless_present = "pairs")]
    pub a: Option<PathBuf>,
    #[arg(required_unless_present = "pairs")]
    pub b: Option<PathBuf>,
    /// A list of pairs, one per line: `A B [label]` (tab-separated when paths hold spaces;
    /// relative paths are relative to the list's folder; `#` starts a comment). Models load
    /// once; every pair gets a folder under --out, plus summary.csv and summary.json.
    #[arg(long, value_name = "LIST", conflicts_with_all = ["a", "b"])]
    pub pairs: Option<PathBuf>,
    /// Explainer(s), comma-separated, or `all` (every registered method, and dfv when its decoder
    /// fits the model): fggb, score-gradient, xssab, corrrise, rise, lime, gradcam, random, dfv
    /// (decoder feature visualisation; see --decoder). Several give a comparison panel.
    #[arg(long, default_value = "fggb", value_delimiter = ',')]
    pub method: Vec<String>,
    /// DFV: decoder weights (default: checkpoints/decoder-w600k_mbf.safetensors).
    #[arg(long)]
    pub decoder: Option<PathBuf>,
    #[arg(long, default_value = facelens_models::zoo::DEFAULT_MODEL)]
    pub model: String,
    /// Cosine threshold τ (default: the model's calibrated threshold).
    #[arg(long)]
    pub threshold: Option<f32>,
    /// Which face of A to use when it is a photo of several (1-based, left to right, as numbered
    /// in faces-a.png; default: --face, else the largest, most central).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub face_a: Option<u32>,
    /// As --face-a, for B.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub face_b: Option<u32>,
    /// Output folder for panel.png, maps.safetensors and result.json.
    #[arg(long, default_value = "explain-out")]
    pub out: PathBuf,
    /// Print result.json to stdout.
    #[arg(long)]
    pub json: bool,
    /// FGGB: differentiate the raw embedding instead of the L2-normalised one.
    #[arg(long)]
    pub raw_embedding: bool,
    /// FGGB: channel reduction of |grad|.
    #[arg(long, value_enum, default_value = "mean-abs")]
    pub channel_reduction: Reduction,
    /// FGGB: skip the per-dimension L2 normalisation of gradient maps.
    #[arg(long)]
    pub no_per_dim_norm: bool,
    /// Show the maps unsmoothed in the panel (saved maps are always raw).
    #[arg(long)]
    pub no_blur: bool,
    /// Jacobian rows per backward pass (default: chosen from available memory).
    #[arg(long)]
    pub rows: Option<usize>,
    #[command(flatten)]
    pub faces: FaceArgs,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum Reduction {
    MeanAbs,
    MaxAbs,
}

/// `result.json`.
#[derive(Serialize)]
struct ExplainResult {
    score: f32,
    threshold: f32,
    threshold_source: String,
    decision: Decision,
    /// The method, or the methods joined by commas.
    method: String,
    model: String,
    images: [String; 2],
    /// What the detector saw in each input that was a photo (absent for aligned crops).
    #[serde(skip_serializing_if = "Faces::is_empty")]
    faces: Faces,
    fggb: Option<FggbConfig>,
    /// Sum of each map (how much evidence each side carries); with one method only.
    #[serde(skip_serializing_if = "Option::is_none")]
    map_mass: Option<BTreeMap<String, f64>>,
    /// Per method: map sums and seconds.
    methods: Vec<MethodResult>,
    timings: BTreeMap<String, f64>,
}

#[derive(Serialize, Default)]
struct Faces {
    #[serde(skip_serializing_if = "Option::is_none")]
    a: Option<FaceSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    b: Option<FaceSummary>,
}

impl Faces {
    fn is_empty(&self) -> bool {
        self.a.is_none() && self.b.is_none()
    }
}

#[derive(Serialize)]
struct FaceSummary {
    #[serde(flatten)]
    report: FaceReport,
    /// The overview PNG (numbered boxes), written when the photo holds several faces.
    #[serde(skip_serializing_if = "Option::is_none")]
    overview: Option<String>,
}

#[derive(Serialize, Clone)]
struct MethodResult {
    method: String,
    map_mass: BTreeMap<String, f64>,
    seconds: f64,
    timings: BTreeMap<String, f64>,
}

/// What stays loaded across pairs: the model, the faces' loader, the explainers and the engine.
struct Session {
    model: FaceModel,
    threshold: f32,
    threshold_source: String,
    loader: FaceLoader,
    explainers: Vec<Box<dyn Explainer>>,
    engine: Box<dyn GradientEngine>,
    fggb: Option<FggbConfig>,
    blur: bool,
}

/// One explained pair, ready to be written.
struct Explained {
    result: ExplainResult,
    files: Vec<(String, Vec<u8>)>,
}

pub fn run(a: ExplainArgs, device: &Device) -> Result<()> {
    let t0 = Instant::now();
    // Refuse an unusable --out before any model loads or anything is computed.
    if let Ok(meta) = std::fs::symlink_metadata(&a.out) {
        if !meta.is_dir() {
            bail!("cannot write into {}: it exists and is not a folder", a.out.display());
        }
    }
    let session = Session::open(&a, device)?;
    if let Some(list) = &a.pairs {
        return pairs::run(&session, list, &a, t0);
    }
    let (pa, pb) = (a.a.as_deref().context("A is required")?, a.b.as_deref().context("B is required")?);
    let done = session.explain(pa, pb, (a.face_a, a.face_b), t0, &mut |note| eprintln!("{note}"))?;
    write(&a.out, &done)?;
    let r = &done.result;
    if a.json {
        println!("{}", serde_json::to_string_pretty(r)?);
    } else {
        println!(
            "score {:.4}  threshold {:.4}  {}  ({}, {})  -> {}/panel.png  [{:.1} s]",
            r.score,
            r.threshold,
            word(r.decision),
            r.method,
            r.model,
            a.out.display(),
            t0.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

fn word(d: Decision) -> &'static str {
    match d {
        Decision::Accept => "accept",
        Decision::Reject => "reject",
    }
}

/// Writes an explained pair's files into `dir` (created), each atomically.
fn write(dir: &Path, done: &Explained) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for (name, bytes) in &done.files {
        crate::output::write_atomic(&dir.join(name), bytes)?;
    }
    let mut json = serde_json::to_vec_pretty(&done.result)?;
    json.push(b'\n');
    crate::output::write_atomic(&dir.join("result.json"), &json)
}

impl Session {
    fn open(a: &ExplainArgs, device: &Device) -> Result<Self> {
        let model = super::load_model(&a.model, device)?;
        let threshold = super::threshold(&model, a.threshold)?;
        let threshold_source = match a.threshold {
            Some(_) => "--threshold".to_string(),
            None => model.spec.threshold_source.clone().unwrap_or_default(),
        };
        let fggb = FggbConfig {
            normalised_embedding: !a.raw_embedding,
            channel_reduction: match a.channel_reduction {
                Reduction::MeanAbs => ChannelReduction::MeanAbs,
                Reduction::MaxAbs => ChannelReduction::MaxAbs,
            },
            per_dimension_norm: !a.no_per_dim_norm,
            blur: false,
        };
        let mut explainers: Vec<Box<dyn Explainer>> = Vec::new();
        for (name, optional) in method_names(&a.method, a.decoder.is_some())? {
            explainers.push(match name.as_str() {
                "fggb" => Box::new(Fggb::new(fggb.clone())),
                "dfv" => match super::decoder::dfv(a.decoder.as_deref(), device, model.spec.embedding_dim) {
                    Ok(dfv) => Box::new(dfv),
                    // `all` takes DFV only where the committed decoder fits the model.
                    Err(_) if optional => continue,
                    Err(e) => return Err(e),
                },
                other => facelens_saliency::by_name(other)?,
            });
        }
        let engine = facelens_saliency::engine_for(&model, a.rows)?;
        Ok(Self {
            fggb: explainers.iter().any(|e| e.name() == "fggb").then_some(fggb),
            model,
            threshold,
            threshold_source,
            loader: FaceLoader::new(&a.faces)?,
            explainers,
            engine,
            blur: !a.no_blur,
        })
    }

    /// Explains the pair `(a, b)` with every method; `faces` are `--face-a` / `--face-b`;
    /// `note` receives what the user should know about the inputs (several faces in a photo).
    fn explain(
        &self,
        a: &Path,
        b: &Path,
        faces: (Option<u32>, Option<u32>),
        t0: Instant,
        note: &mut dyn FnMut(String),
    ) -> Result<Explained> {
        let face_a = self.loader.load_choice(a, faces.0, "--face-a")?;
        let face_b = self.loader.load_choice(b, faces.1, "--face-b")?;
        for (face, path, flag) in [(&face_a, a, "--face-a"), (&face_b, b, "--face-b")] {
            if let Some(n) = face.note(path, flag) {
                note(n);
            }
        }
        let spec = &self.model.spec;
        let xa = facelens_models::preprocess::normalise_chw(face_a.image.as_raw(), spec)?;
        let xb = facelens_models::preprocess::normalise_chw(face_b.image.as_raw(), spec)?;
        let load_s = t0.elapsed().as_secs_f64();

        let mut explanations = Vec::new();
        for explainer in &self.explainers {
            let t = Instant::now();
            let e = explainer
                .explain(self.engine.as_ref(), FacePair { a: &xa, b: &xb }, self.threshold)
                .with_context(|| format!("{} on {} and {}", explainer.name(), a.display(), b.display()))?;
            explanations.push((e, t.elapsed().as_secs_f64()));
        }
        let Some((first, _)) = explanations.first() else { bail!("no method to explain with") };
        let (score, decision) = (first.score, first.decision);
        let single = explanations.len() == 1;

        let mut files = Vec::new();
        let mut tensors = Vec::new();
        for (e, _) in &explanations {
            let (h, w) = (e.maps.height, e.maps.width);
            for (n, m) in e.maps.named() {
                let key = if single { n.to_string() } else { format!("{}.{n}", e.method) };
                tensors.push((key, vec![h, w], m.clone()));
            }
        }
        let methods: Vec<String> = explanations.iter().map(|(e, _)| e.method.clone()).collect();
        let mut meta = BTreeMap::new();
        meta.insert("score".into(), score.to_string());
        meta.insert("threshold".into(), self.threshold.to_string());
        meta.insert("method".into(), methods.join(","));
        meta.insert("model".into(), spec.name.clone());
        files.push(("maps.safetensors".into(), facelens_models::weights::serialize_f32(Path::new("maps.safetensors"), &tensors, &meta)?));

        let info = PanelInfo {
            score,
            threshold: self.threshold,
            decision,
            method: methods.join(","),
            model: spec.name.clone(),
        };
        let panel = if single {
            render_panel(&face_a.image, &face_b.image, &first.maps, &info, self.blur)
        } else {
            let rows: Vec<MethodRow> = explanations
                .iter()
                .map(|(e, s)| MethodRow { method: &e.method, maps: &e.maps, seconds: *s })
                .collect();
            render_comparison(&face_a.image, &face_b.image, &rows, &info, self.blur)
        };
        files.push(("panel.png".into(), crate::output::png_bytes(&panel)?));
        let sa = summarise("a", face_a, &mut files)?;
        let sb = summarise("b", face_b, &mut files)?;

        let method_results: Vec<MethodResult> = explanations
            .iter()
            .map(|(e, s)| MethodResult { method: e.method.clone(), map_mass: mass(&e.maps), seconds: *s, timings: e.timings.clone() })
            .collect();
        let mut timings = if single { first.timings.clone() } else { BTreeMap::new() };
        timings.insert("load_s".into(), load_s);
        timings.insert("wall_s".into(), t0.elapsed().as_secs_f64());
        let result = ExplainResult {
            score,
            threshold: self.threshold,
            threshold_source: self.threshold_source.clone(),
            decision,
            method: methods.join(","),
            model: spec.name.clone(),
            images: [a.display().to_string(), b.display().to_string()],
            faces: Faces { a: sa, b: sb },
            fggb: self.fggb.clone(),
            map_mass: single.then(|| mass(&first.maps)),
            methods: method_results,
            timings,
        };
        Ok(Explained { result, files })
    }
}

/// The detector's report on one side, with its overview added to `files` when the photo holds
/// several faces.
fn summarise(side: &str, face: Face, files: &mut Vec<(String, Vec<u8>)>) -> Result<Option<FaceSummary>> {
    let Some(detected) = face.detection else { return Ok(None) };
    let mut overview = None;
    if detected.report.found > 1 {
        let name = format!("faces-{side}.png");
        files.push((name.clone(), crate::output::png_bytes(&crate::overview::render(&detected))?));
        overview = Some(name);
    }
    Ok(Some(FaceSummary { report: detected.report, overview }))
}

fn mass(maps: &SaliencyMaps) -> BTreeMap<String, f64> {
    maps.named().iter().map(|(n, m)| (n.to_string(), m.iter().map(|v| *v as f64).sum())).collect()
}

/// `--method` as explainer names, each with whether it may be left out: `all` expands to every
/// registered method and to DFV, which is left out unless `--decoder` was given when the
/// committed decoder does not take the model's embeddings. A name listed twice counts once, as
/// required if it was ever named explicitly.
fn method_names(given: &[String], decoder_given: bool) -> Result<Vec<(String, bool)>> {
    let mut names: Vec<(String, bool)> = Vec::new();
    let mut add = |name: &str, optional: bool| match names.iter_mut().find(|(n, _)| n == name) {
        Some(entry) => entry.1 &= optional,
        None => names.push((name.to_string(), optional)),
    };
    for name in given.iter().map(|s| s.trim()) {
        if name == "all" {
            facelens_saliency::METHODS.iter().for_each(|m| add(m, false));
            add("dfv", !decoder_given);
        } else if name.is_empty() {
            bail!("--method: empty name in the list (expected e.g. fggb,xssab or all)");
        } else {
            add(name, false);
        }
    }
    Ok(names)
}
