//! The benchmark itself: choose pairs, explain them, and trace each pair's Deletion and Insertion
//! scores (DESIGN §8).
//!
//! Work is split per pair and every per-pair computation depends only on that pair and the config
//! (fixed Jacobian rows, fixed batch layout), so a shard's [`PairRecord`]s are exactly those an
//! unsharded run would produce for the same pairs, and merged shards give the same tables bit for
//! bit.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use candle_core::{Device, DeviceLocation};
use facelens_data::{load_face, load_pairs, LandmarkTable, LoadOptions, Pair, RgbImage};
use facelens_eval::deletion::{self, ImageShape, MapKind, Mode, PairInput, Perturb, Protocol};
use facelens_models::preprocess::normalise_chw;
use facelens_models::{FaceModel, ModelSpec};
use facelens_saliency::render::{render_panel, PanelInfo};
use facelens_saliency::{engine_for, Explainer, FacePair, Fggb, GradientEngine, SaliencyMaps};
use serde::{Deserialize, Serialize};

use crate::config::{Config, Select, Threshold, EXPERIMENT};
use crate::reuse::Reuse;
use crate::{draw, select};

/// Which part of the selection this process evaluates: pairs `j` with `j % count == index - 1`.
/// Round-robin keeps genuine and impostor pairs balanced across shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// 1-based.
    pub index: usize,
    pub count: usize,
}

impl Shard {
    pub const WHOLE: Shard = Shard { index: 1, count: 1 };

    /// Parses `i/n` with `1 <= i <= n` (Slurm: `--array=1-N` and
    /// `--shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT`).
    pub fn parse(s: &str) -> Result<Shard> {
        let (i, n) = s
            .split_once('/')
            .ok_or_else(|| anyhow!("--shard expects i/n (e.g. 2/8), got `{s}`"))?;
        let (index, count): (usize, usize) = (
            i.trim()
                .parse()
                .map_err(|_| anyhow!("--shard `{s}`: `{i}` is not a number"))?,
            n.trim()
                .parse()
                .map_err(|_| anyhow!("--shard `{s}`: `{n}` is not a number"))?,
        );
        if count == 0 || index == 0 || index > count {
            bail!("--shard `{s}`: need 1 <= i <= n (shards are numbered from 1)");
        }
        Ok(Shard { index, count })
    }

    pub fn owns(&self, selection_index: usize) -> bool {
        selection_index % self.count == self.index - 1
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// What the tables need to know about a backbone, recorded with every shard so that a merge can
/// check the shards agree without loading any model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// The reference given in the config.
    pub name: String,
    pub threshold: f32,
    pub threshold_source: String,
    pub fill: f32,
    pub embedding_dim: usize,
    pub weights_sha256: String,
}

/// Deletion and Insertion cosines of one pair under one method's maps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MethodCurves {
    pub deletion: Vec<f32>,
    pub insertion: Vec<f32>,
}

impl MethodCurves {
    pub fn get(&self, mode: Mode) -> &[f32] {
        match mode {
            Mode::Deletion => &self.deletion,
            Mode::Insertion => &self.insertion,
        }
    }
}

/// One pair under one backbone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelPairRecord {
    pub clean_score: f32,
    /// `None` when the backbone misclassifies the pair: such pairs are not scored.
    pub kind: Option<MapKind>,
    /// Method name -> curves (empty when `kind` is `None`).
    pub methods: BTreeMap<String, MethodCurves>,
}

/// One selected pair and everything measured on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairRecord {
    /// Position in the selection (the order every table aggregates in).
    pub index: usize,
    /// Line in `pairs.txt`.
    pub line: usize,
    /// 1-based fold.
    pub fold: usize,
    pub a: String,
    pub b: String,
    pub genuine: bool,
    /// Why the pair was left out (e.g. no face detected), if it was.
    pub skipped: Option<String>,
    /// One entry per configured backbone, in config order (empty when skipped).
    pub models: Vec<ModelPairRecord>,
}

impl PairRecord {
    /// The record of selection entry `index` before anything is measured on it.
    pub fn new(index: usize, pair: &Pair) -> Self {
        PairRecord {
            index,
            line: pair.line,
            fold: pair.fold + 1,
            a: path_string(&pair.a),
            b: path_string(&pair.b),
            genuine: pair.genuine,
            skipped: None,
            models: Vec::new(),
        }
    }
}

/// Everything a (shard of a) run measured; `records.json` in its run directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Records {
    pub experiment: String,
    /// sha256 of the resolved config; shards of one run share it.
    pub config_sha256: String,
    pub shard: Shard,
    /// Size of the whole selection (all shards).
    pub selected: usize,
    pub models: Vec<ModelInfo>,
    /// Methods run on the first backbone; later backbones run FGGB only.
    pub methods: Vec<String>,
    pub steps: Vec<f64>,
    pub perturb: Perturb,
    pub records: Vec<PairRecord>,
}

/// Wall-clock seconds, per method and phase; kept out of [`Records`] so that results stay
/// reproducible.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Timings {
    pub total_s: f64,
    pub select_s: f64,
    /// `model/method` -> seconds spent explaining.
    pub explain_s: BTreeMap<String, f64>,
    /// `model/method` -> seconds spent on Deletion/Insertion forward passes.
    pub curves_s: BTreeMap<String, f64>,
    /// `model/method` -> explanations computed (pairs x 1; each explains both faces).
    #[serde(default)]
    pub explanations: BTreeMap<String, u64>,
    /// `model/method` -> images through the network forward while explaining.
    #[serde(default)]
    pub forward_images: BTreeMap<String, u64>,
    /// `model/method` -> Jacobian (seed) rows through the network backward while explaining.
    #[serde(default)]
    pub backward_rows: BTreeMap<String, u64>,
    /// Pairs whose records came from `--reuse` (not measured, so not in the times above).
    #[serde(default)]
    pub reused_pairs: usize,
    /// `model/method` -> explanations whose curves an earlier run (`--reuse`) had, on pairs
    /// that still needed other methods measured (not counted in `explanations`).
    #[serde(default)]
    pub reused_explanations: BTreeMap<String, u64>,
}

impl Timings {
    /// Adds `other` (another shard's timings) into `self`.
    pub fn add(&mut self, other: Timings) {
        self.total_s += other.total_s;
        self.select_s += other.select_s;
        self.reused_pairs += other.reused_pairs;
        for (k, v) in other.explain_s {
            *self.explain_s.entry(k).or_default() += v;
        }
        for (k, v) in other.curves_s {
            *self.curves_s.entry(k).or_default() += v;
        }
        for (mine, theirs) in [
            (&mut self.explanations, other.explanations),
            (&mut self.forward_images, other.forward_images),
            (&mut self.backward_rows, other.backward_rows),
            (&mut self.reused_explanations, other.reused_explanations),
        ] {
            for (k, v) in theirs {
                *mine.entry(k).or_default() += v;
            }
        }
    }
}

/// A rendered example panel.
pub struct Panel {
    pub name: String,
    pub image: RgbImage,
}

/// Called after each pair with (done, total, message).
pub type Progress<'a> = &'a dyn Fn(usize, usize, &str);

/// A loaded backbone with its threshold, fill value and gradient engine.
pub struct Backbone {
    pub info: ModelInfo,
    pub model: FaceModel,
    pub engine: Box<dyn GradientEngine>,
}

/// A pair as one backbone sees it.
pub struct Prepared {
    /// Both images normalised for the backbone, CHW.
    pub a: Vec<f32>,
    pub b: Vec<f32>,
    pub clean_score: f32,
    /// `None` when the backbone misclassifies the pair.
    pub kind: Option<MapKind>,
}

impl Backbone {
    /// [`prepare`] with this backbone.
    pub fn prepare(&self, crop_a: &RgbImage, crop_b: &RgbImage, genuine: bool) -> Result<Prepared> {
        prepare(
            self.engine.as_ref(),
            &self.model.spec,
            self.info.threshold,
            crop_a,
            crop_b,
            genuine,
        )
    }
}

/// The DFV explainer over the decoder at `path`.
pub fn load_dfv(path: &Path, device: &Device) -> Result<facelens_recon::Dfv> {
    if !path.is_file() {
        bail!("DFV decoder {} not found (train one with `facelens train-decoder`)", path.display());
    }
    let decoder = facelens_recon::load_decoder(path, device)
        .with_context(|| format!("loading DFV decoder {}", path.display()))?;
    Ok(facelens_recon::Dfv::new(decoder, device.clone()))
}

/// Normalises a pair's aligned crops for a model, scores the clean pair and decides which kind of
/// map it is scored with at `threshold`: one code path for selection and evaluation (here and in
/// `facelens eval xfv`), so they never disagree about a pair.
pub fn prepare(
    engine: &dyn GradientEngine,
    spec: &ModelSpec,
    threshold: f32,
    crop_a: &RgbImage,
    crop_b: &RgbImage,
    genuine: bool,
) -> Result<Prepared> {
    let (a, b) = (
        normalise_chw(crop_a.as_raw(), spec)?,
        normalise_chw(crop_b.as_raw(), spec)?,
    );
    let clean_score = clean_score(engine, &a, &b)?;
    let kind = MapKind::for_pair(genuine, clean_score, threshold);
    Ok(Prepared {
        a,
        b,
        clean_score,
        kind,
    })
}

/// Everything loaded once per run.
pub struct Bench {
    config: Config,
    config_sha256: String,
    backbones: Vec<Backbone>,
    /// (name, explainer) for the first backbone.
    methods: Vec<(String, Box<dyn Explainer>)>,
    fggb: Fggb,
    steps: Vec<f64>,
    pairs: Vec<Pair>,
    landmarks: LandmarkTable,
}

/// Output of [`Bench::run`].
pub struct RunOutput {
    pub records: Records,
    pub panels: Vec<Panel>,
    pub timings: Timings,
}

/// The `--device` value: `auto` (CUDA if this build and machine have it), `cpu` or `cuda:N`.
pub fn parse_device(s: &str) -> Result<Device> {
    match s {
        "cpu" => Ok(Device::Cpu),
        "auto" => Ok(Device::cuda_if_available(0)?),
        other => {
            let n = other
                .strip_prefix("cuda:")
                .or(other.strip_prefix("cuda").map(|_| "0"))
                .and_then(|n| n.parse::<usize>().ok())
                .ok_or_else(|| anyhow!("--device must be auto, cpu or cuda:N, got `{other}`"))?;
            Device::new_cuda(n).with_context(|| {
                format!("cannot open {other} (build with `--features cuda` on a GPU machine)")
            })
        }
    }
}

/// Device name for `meta.json`.
pub fn describe_device(d: &Device) -> String {
    match d.location() {
        DeviceLocation::Cpu => "cpu".into(),
        DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

impl Bench {
    /// Loads backbones, explainers, pairs and landmarks.
    pub fn load(config: Config, config_sha256: String, device: &Device) -> Result<Bench> {
        config.validate()?;
        let rows = Some(config.protocol.jacobian_rows);
        let mut backbones = Vec::new();
        for entry in &config.models {
            let model = FaceModel::load(&entry.name, device)
                .with_context(|| format!("loading model `{}`", entry.name))?;
            let (threshold, threshold_source) = match entry.threshold {
                Threshold::Value(t) => (t, "config".to_string()),
                Threshold::Calibrated => match model.spec.threshold {
                    Some(t) => (t, model.spec.threshold_source.clone().unwrap_or_else(|| "model zoo".into())),
                    None => bail!(
                        "model `{}` has no calibrated threshold; set `threshold = <cosine>` for it in `[[models]]`",
                        entry.name
                    ),
                },
            };
            let fill = config.protocol.fill.value_for(&model)?;
            let engine = engine_for(&model, rows)?;
            let weights_sha256 = facelens_models::backbone::sha256_file(&model.weights_path)?;
            let info = ModelInfo {
                name: entry.name.clone(),
                threshold,
                threshold_source,
                fill,
                embedding_dim: model.spec.embedding_dim,
                weights_sha256,
            };
            backbones.push(Backbone {
                info,
                model,
                engine,
            });
        }
        let fggb = Fggb::new(config.fggb.clone());
        let methods = config
            .method_names()
            .into_iter()
            .map(|name| {
                let explainer: Box<dyn Explainer> = if name == "fggb" {
                    Box::new(fggb.clone())
                } else if name == crate::config::DFV {
                    Box::new(load_dfv(&config.dfv.decoder, device)?)
                } else {
                    facelens_saliency::by_name(&name)?
                };
                Ok((name, explainer))
            })
            .collect::<Result<Vec<_>>>()?;
        let pairs = load_pairs(&config.data.pairs)?;
        let landmarks = LandmarkTable::load(&config.data.landmarks)?;
        if !config.data.images.is_dir() {
            bail!(
                "images folder {} does not exist",
                config.data.images.display()
            );
        }
        let steps = deletion::steps(f64::from(config.protocol.step))?;
        Ok(Bench {
            config,
            config_sha256,
            backbones,
            methods,
            fggb,
            steps,
            pairs,
            landmarks,
        })
    }

    pub fn method_names(&self) -> Vec<String> {
        self.methods.iter().map(|(n, _)| n.clone()).collect()
    }

    /// Table rows: the methods, then their probe-only curves when `protocol.also_probe` is on.
    fn row_names(&self) -> Vec<String> {
        self.config.protocol.row_names(&self.method_names())
    }

    /// The resolved config the benchmark was loaded with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// sha256 of the resolved config the run was loaded with.
    pub fn config_sha256(&self) -> &str {
        &self.config_sha256
    }

    /// The curve's x values, p in %.
    pub fn steps(&self) -> &[f64] {
        &self.steps
    }

    /// The configured backbones, in config order (the first one selects the pairs).
    pub fn backbones(&self) -> &[Backbone] {
        &self.backbones
    }

    /// The Deletion/Insertion protocol as configured, with `bb`'s fill value.
    pub fn protocol(&self, bb: &Backbone) -> Protocol {
        Protocol {
            step_percent: f64::from(self.config.protocol.step),
            fill: bb.info.fill,
            perturb: self.config.protocol.perturb,
            batch: self.config.protocol.batch,
        }
    }

    fn load_opts(&self) -> LoadOptions<'_> {
        LoadOptions::new(&self.config.data.images, Some(&self.landmarks))
    }

    /// The aligned crops of a pair, or why it is skipped (no face detected in an image).
    pub fn load_crops(
        &self,
        pair: &Pair,
    ) -> Result<std::result::Result<(RgbImage, RgbImage), String>> {
        let opts = self.load_opts();
        let mut crops = Vec::with_capacity(2);
        for rel in [&pair.a, &pair.b] {
            match load_face(rel, &opts) {
                Ok(face) => crops.push(face.image),
                Err(e) if e.is_no_detection() => {
                    return Ok(Err(format!("no face detected in {}", rel.display())))
                }
                Err(e) => return Err(e).with_context(|| format!("pairs.txt line {}", pair.line)),
            }
        }
        let b = crops.pop().expect("two crops");
        let a = crops.pop().expect("two crops");
        Ok(Ok((a, b)))
    }

    /// Pairs of the configured folds, in list order.
    fn candidates(&self) -> Vec<&Pair> {
        let folds = &self.config.subset.folds;
        self.pairs
            .iter()
            .filter(|p| folds.is_empty() || folds.contains(&(p.fold + 1)))
            .collect()
    }

    /// The selection: deterministic, identical in every shard.
    pub fn select(&self, progress: Progress<'_>) -> Result<Vec<&Pair>> {
        let candidates = self.candidates();
        if candidates.is_empty() {
            bail!(
                "no pairs in folds {:?} of {}",
                self.config.subset.folds,
                self.config.data.pairs.display()
            );
        }
        let sub = &self.config.subset;
        let order: Vec<usize> = match sub.select {
            Select::Every => return Ok(candidates.into_iter().step_by(sub.every).collect()),
            Select::First => (0..candidates.len()).collect(),
            Select::Random => select::shuffled(candidates.len(), sub.seed),
        };
        // Eligibility is decided by the first backbone.
        let first = &self.backbones[0];
        let chosen = select::balanced(
            order,
            candidates.len(),
            sub.first,
            |k| candidates[k].genuine,
            |k| self.classify(first, candidates[k]),
            |k, n| progress(k, n, "selecting pairs"),
        )?;
        Ok(chosen.into_iter().map(|k| candidates[k]).collect())
    }

    /// The kind of map `bb` scores the pair with, or `None` when `bb` misclassifies it or an
    /// image has no detected face.
    pub fn classify(&self, bb: &Backbone, pair: &Pair) -> Result<Option<MapKind>> {
        let Ok((ca, cb)) = self.load_crops(pair)? else {
            return Ok(None);
        };
        Ok(bb.prepare(&ca, &cb, pair.genuine)?.kind)
    }

    /// Selection indices whose pairs get example panels: the first `panels` genuine and impostor
    /// pairs, the same for every method and every shard layout.
    fn panel_indices(&self, selection: &[&Pair]) -> Vec<usize> {
        let n = self.config.output.panels;
        let genuine = selection
            .iter()
            .enumerate()
            .filter(|(_, p)| p.genuine)
            .map(|(i, _)| i)
            .take(n);
        let impostor = selection
            .iter()
            .enumerate()
            .filter(|(_, p)| !p.genuine)
            .map(|(i, _)| i)
            .take(n);
        let mut out: Vec<usize> = genuine.chain(impostor).collect();
        out.sort_unstable();
        out
    }

    /// What the records of this benchmark hold apart from the pairs (models with their weights,
    /// rows, steps, perturbation): shards and reused runs must agree on it.
    pub fn header(&self, shard: Shard, selected: usize) -> Records {
        Records {
            experiment: EXPERIMENT.into(),
            config_sha256: self.config_sha256.clone(),
            shard,
            selected,
            models: self.backbones.iter().map(|b| b.info.clone()).collect(),
            methods: self.row_names(),
            steps: self.steps.clone(),
            perturb: self.config.protocol.perturb,
            records: Vec::new(),
        }
    }

    /// Runs this shard of the benchmark, taking the records `reuse` holds instead of measuring
    /// those pairs again (except the panel pairs, whose maps are drawn).
    pub fn run(&self, shard: Shard, reuse: &Reuse, progress: Progress<'_>) -> Result<RunOutput> {
        let start = Instant::now();
        let mut timings = Timings::default();
        let selection = self.select(progress)?;
        timings.select_s = start.elapsed().as_secs_f64();
        let panel_pairs = self.panel_indices(&selection);
        let owned: Vec<usize> = (0..selection.len()).filter(|&j| shard.owns(j)).collect();
        let mut records = Vec::with_capacity(owned.len());
        let mut panels = Vec::new();
        for (done, &j) in owned.iter().enumerate() {
            let pair = selection[j];
            progress(
                done,
                owned.len(),
                &format!(
                    "pair {} ({})",
                    j + 1,
                    if pair.genuine { "genuine" } else { "impostor" }
                ),
            );
            let want_panel = panel_pairs.contains(&j);
            // Panel pairs are measured whole: their maps are drawn.
            let reuse = (!want_panel).then_some(reuse);
            if let Some(record) = reuse.and_then(|r| self.reused_record(j, pair, r)) {
                timings.reused_pairs += 1;
                records.push(record);
                continue;
            }
            let (record, panel) = self.evaluate_pair(j, pair, want_panel, reuse, &mut timings)?;
            records.push(record);
            panels.extend(panel);
        }
        progress(owned.len(), owned.len(), "done");
        timings.total_s = start.elapsed().as_secs_f64();
        let records = Records {
            records,
            ..self.header(shard, selection.len())
        };
        Ok(RunOutput {
            records,
            panels,
            timings,
        })
    }

    /// The methods explained on backbone `backbone`: all of them on the first, FGGB on the others.
    fn methods_on(&self, backbone: usize) -> Vec<(&str, &dyn Explainer)> {
        if backbone == 0 {
            self.methods.iter().map(|(n, e)| (n.as_str(), e.as_ref())).collect()
        } else {
            vec![("fggb", &self.fggb as &dyn Explainer)]
        }
    }

    /// Every row of `method` on `pair` from earlier runs, or `None` if one is missing.
    fn reused_rows(
        &self,
        reuse: &Reuse,
        pair: &Pair,
        backbone: usize,
        method: &str,
    ) -> Option<Vec<(String, MethodCurves)>> {
        self.config.protocol.rows_of(backbone, method, pair.genuine)
            .into_iter()
            .map(|(row, wanted)| Some((row, reuse.curves(pair, backbone, method, wanted)?)))
            .collect()
    }

    /// The whole record of `pair` from earlier runs, if they measured every method it needs.
    fn reused_record(&self, index: usize, pair: &Pair, reuse: &Reuse) -> Option<PairRecord> {
        let outcome = reuse.outcome(pair)?;
        let mut record = PairRecord::new(index, pair);
        if outcome.skipped.is_some() {
            record.skipped = outcome.skipped;
            return Some(record);
        }
        for (mi, (clean_score, kind)) in outcome.models.into_iter().enumerate() {
            let mut methods = BTreeMap::new();
            if kind.is_some() {
                for (name, _) in self.methods_on(mi) {
                    methods.extend(self.reused_rows(reuse, pair, mi, name)?);
                }
            }
            record.models.push(ModelPairRecord { clean_score, kind, methods });
        }
        Some(record)
    }

    /// Measures `pair` with every method, taking from `reuse` the methods earlier runs measured.
    fn evaluate_pair(
        &self,
        index: usize,
        pair: &Pair,
        want_panel: bool,
        reuse: Option<&Reuse>,
        timings: &mut Timings,
    ) -> Result<(PairRecord, Option<Panel>)> {
        let mut record = PairRecord::new(index, pair);
        let (crop_a, crop_b) = match self.load_crops(pair)? {
            Ok(c) => c,
            Err(why) => {
                record.skipped = Some(why);
                return Ok((record, None));
            }
        };
        let mut panel_rows = Vec::new();
        for (mi, bb) in self.backbones.iter().enumerate() {
            let Prepared {
                a,
                b,
                clean_score: clean,
                kind,
            } = bb.prepare(&crop_a, &crop_b, pair.genuine)?;
            let engine = bb.engine.as_ref();
            let mut methods = BTreeMap::new();
            if let Some(kind) = kind {
                for (name, explainer) in self.methods_on(mi) {
                    let key = format!("{}/{name}", bb.info.name);
                    if let Some(rows) = reuse.and_then(|r| self.reused_rows(r, pair, mi, name)) {
                        *timings.reused_explanations.entry(key).or_default() += 1;
                        methods.extend(rows);
                        continue;
                    }
                    let t0 = Instant::now();
                    let (fwd0, bwd0) = engine.passes();
                    let ex = explainer
                        .explain(engine, FacePair { a: &a, b: &b }, bb.info.threshold)
                        .with_context(|| {
                            format!(
                                "{name} on pairs.txt line {} with {}",
                                pair.line, bb.info.name
                            )
                        })?;
                    *timings.explain_s.entry(key.clone()).or_default() +=
                        t0.elapsed().as_secs_f64();
                    let (fwd1, bwd1) = engine.passes();
                    *timings.explanations.entry(key.clone()).or_default() += 1;
                    *timings.forward_images.entry(key.clone()).or_default() += fwd1 - fwd0;
                    *timings.backward_rows.entry(key.clone()).or_default() += bwd1 - bwd0;
                    let t1 = Instant::now();
                    for (row, perturb) in self.config.protocol.rows_of(mi, name, pair.genuine) {
                        let protocol = Protocol { perturb, ..self.protocol(bb) };
                        let curves = method_curves(engine, &protocol, &a, &b, &ex.maps, kind, pair.genuine)?;
                        methods.insert(row, curves);
                    }
                    *timings.curves_s.entry(key).or_default() += t1.elapsed().as_secs_f64();
                    if mi == 0 && want_panel {
                        let info = PanelInfo {
                            score: ex.score,
                            threshold: ex.threshold,
                            decision: ex.decision,
                            method: name.to_string(),
                            model: bb.info.name.clone(),
                        };
                        panel_rows.push(render_panel(&crop_a, &crop_b, &ex.maps, &info, true));
                    }
                }
            }
            record.models.push(ModelPairRecord {
                clean_score: clean,
                kind,
                methods,
            });
        }
        let panel = (!panel_rows.is_empty()).then(|| Panel {
            name: panel_name(index, pair.genuine),
            image: draw::stack(&panel_rows),
        });
        Ok((record, panel))
    }
}

/// Deletion and Insertion cosines of one pair under its maps of `kind`: similarity maps for an
/// accepted genuine pair, dissimilarity maps for a rejected impostor pair.
pub fn method_curves(
    engine: &dyn GradientEngine,
    protocol: &Protocol,
    a: &[f32],
    b: &[f32],
    maps: &SaliencyMaps,
    kind: MapKind,
    genuine: bool,
) -> Result<MethodCurves> {
    let (map_a, map_b) = match kind {
        MapKind::Similarity => (&maps.sa_pos, &maps.sb_pos),
        MapKind::Dissimilarity => (&maps.sa_neg, &maps.sb_neg),
    };
    let (c, h, w) = engine.input_shape();
    let shape = ImageShape::new(c, h, w);
    let input = PairInput {
        a,
        b,
        map_a,
        map_b,
        genuine,
    };
    let mut scorer =
        |images: &[f32], n: usize| -> Result<Vec<f32>> { Ok(engine.embed(images, n)?) };
    let deletion =
        deletion::pair_curve(&input, shape, protocol, Mode::Deletion, &mut scorer)?.scores;
    let insertion =
        deletion::pair_curve(&input, shape, protocol, Mode::Insertion, &mut scorer)?.scores;
    Ok(MethodCurves {
        deletion,
        insertion,
    })
}

/// The clean cosine of a pair, computed one way everywhere (selection, eligibility) so that a pair
/// is classified identically in every shard.
pub fn clean_score(engine: &dyn GradientEngine, a: &[f32], b: &[f32]) -> Result<f32> {
    let both = [a, b].concat();
    let e = engine.embed(&both, 2)?;
    let d = e.len() / 2;
    Ok(deletion::cosine(&e[..d], &e[d..]))
}

/// Model-space value of a black pixel; all channels must agree because Deletion fills every
/// channel with one value.
pub fn black_value(model: &FaceModel) -> Result<f32> {
    let s = &model.spec;
    let v: Vec<f32> = (0..3).map(|c| (0.0 - s.mean[c]) / s.std[c]).collect();
    if v.iter().any(|x| (x - v[0]).abs() > 1e-6) {
        bail!(
            "model `{}`: black differs per channel ({v:?}); set `protocol.fill` to a number",
            s.name
        );
    }
    Ok(v[0])
}

pub fn panel_name(index: usize, genuine: bool) -> String {
    format!(
        "pair-{:05}-{}",
        index + 1,
        if genuine { "genuine" } else { "impostor" }
    )
}

fn path_string(p: &Path) -> String {
    p.to_string_lossy().replace('\\', "/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_partition_the_selection() {
        assert_eq!(
            Shard::parse("2/4").expect("valid"),
            Shard { index: 2, count: 4 }
        );
        for bad in ["0/4", "5/4", "1/0", "x/2", "3"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
        let shards: Vec<Shard> = (1..=3).map(|i| Shard { index: i, count: 3 }).collect();
        for j in 0..20 {
            assert_eq!(shards.iter().filter(|s| s.owns(j)).count(), 1);
        }
        assert!((0..5).all(|j| Shard::WHOLE.owns(j)));
    }

    #[test]
    fn device_names() {
        assert!(matches!(parse_device("cpu"), Ok(Device::Cpu)));
        assert!(parse_device("gpu").is_err());
        assert!(parse_device("cuda:x").is_err());
    }
}
