//! The benchmark itself: choose pairs, explain them, and trace each pair's Deletion and Insertion
//! scores (docs/design.md §8).
//!
//! Work is split per pair and every per-pair computation depends only on that pair and the config
//! (fixed Jacobian rows, fixed batch layout), so a shard's [`PairRecord`]s are exactly those an
//! unsharded run would produce for the same pairs, merged shards give the same tables bit for bit,
//! and curves can be cached by content ([`crate::cache`]).

use std::time::Instant;

use candle_core::Device;
use facelens_data::{load_face, load_pairs, LandmarkTable, LoadOptions, Pair, RgbImage};
use facelens_eval::deletion::{self, MapKind, Protocol};
use facelens_models::FaceModel;
use facelens_saliency::render::{render_panel, PanelInfo};
use facelens_saliency::{engine_for, FacePair, GradientEngine};

use crate::cache::{CurveCache, CurveKey, CACHE_VERSION};
use crate::config::{Config, Method, MethodSpec, Select, Threshold, EXPERIMENT};
use crate::error::{Context, Error, Result};
use crate::explain::{crops_sha256, explain_all, Loaded};
use crate::pair::{method_curves, prepare, Prepared};
use crate::records::{ModelInfo, ModelPairRecord, PairRecord, Records, RowCurves, Shard, Timings};
use crate::{draw, select};

/// A rendered example panel.
pub struct Panel {
    pub name: String,
    pub image: RgbImage,
}

/// Called with (done, total, message) as work proceeds.
pub type Progress<'a> = &'a dyn Fn(usize, usize, &str);

/// A loaded backbone with its threshold, fill value and gradient engine.
pub struct Backbone {
    pub info: ModelInfo,
    pub model: FaceModel,
    pub engine: Box<dyn GradientEngine>,
}

impl Backbone {
    /// Loads `entry` with Jacobian rows per pass fixed to `rows`.
    pub fn load(entry: &crate::config::ModelEntry, fill: crate::config::Fill, rows: usize, device: &Device) -> Result<Backbone> {
        let model = FaceModel::load(&entry.name, device).context_with(|| format!("loading model `{}`", entry.name))?;
        let (threshold, threshold_source) = match entry.threshold {
            Threshold::Value(t) => (t, "config".to_string()),
            Threshold::Calibrated => match model.spec.threshold {
                Some(t) => (t, model.spec.threshold_source.clone().unwrap_or_else(|| "model zoo".into())),
                None => {
                    return Err(Error::config(
                        "models.threshold",
                        format!("model `{}` has no calibrated threshold; set `threshold = <cosine>`", entry.name),
                    ))
                }
            },
        };
        let road = fill.road_for(&model.spec)?;
        let fill = fill.value_for(&model.spec)?;
        let engine = engine_for(&model, Some(rows))?;
        let weights_sha256 = facelens_models::backbone::sha256_file(&model.weights_path)?;
        let info = ModelInfo {
            name: entry.name.clone(),
            threshold,
            threshold_source,
            fill,
            road,
            embedding_dim: model.spec.embedding_dim,
            weights_sha256,
        };
        Ok(Backbone { info, model, engine })
    }

    /// [`prepare`] with this backbone.
    pub fn prepare(&self, crop_a: &RgbImage, crop_b: &RgbImage, genuine: bool) -> Result<Prepared> {
        prepare(self.engine.as_ref(), &self.model.spec, self.info.threshold, crop_a, crop_b, genuine)
    }
}

/// Everything loaded once per run.
pub struct Bench {
    config: Config,
    config_sha256: String,
    backbones: Vec<Backbone>,
    /// Every method, for the first backbone.
    methods: Vec<Loaded>,
    /// The FGGB that Table III runs on every backbone: the first FGGB entry, or FGGB as specified.
    table3: Loaded,
    steps: Vec<f64>,
    pairs: Vec<Pair>,
    landmarks: LandmarkTable,
    cache: Option<CurveCache>,
}

/// Output of [`Bench::run`].
pub struct RunOutput {
    pub records: Records,
    pub panels: Vec<Panel>,
    pub timings: Timings,
}

impl Bench {
    /// Loads backbones, explainers, pairs and landmarks; `cache` stores and serves curves.
    pub fn load(config: Config, config_sha256: String, device: &Device, cache: Option<CurveCache>) -> Result<Bench> {
        config.validate()?;
        let p = &config.protocol;
        let backbones =
            config.models.iter().map(|m| Backbone::load(m, p.fill, p.jacobian_rows, device)).collect::<Result<Vec<_>>>()?;
        let methods = config.methods()?;
        let table3 = methods
            .iter()
            .find(|m| matches!(m.spec, MethodSpec::Fggb { .. }))
            .cloned()
            .unwrap_or_else(|| Method { name: "fggb".into(), spec: MethodSpec::Fggb { config: Default::default(), tau: None } });
        let methods = methods.into_iter().map(|m| Loaded::load(m, device)).collect::<Result<Vec<_>>>()?;
        let table3 = Loaded::load(table3, device)?;
        let pairs = load_pairs(&config.data.pairs)?;
        let landmarks = LandmarkTable::load(&config.data.landmarks)?;
        if !config.data.images.is_dir() {
            return Err(Error::invalid(&config.data.images, "images folder does not exist"));
        }
        let steps = deletion::steps(f64::from(p.step))?;
        Ok(Bench { config, config_sha256, backbones, methods, table3, steps, pairs, landmarks, cache })
    }

    /// The resolved config the benchmark was loaded with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The configured backbones, in config order (the first one selects the pairs).
    pub fn backbones(&self) -> &[Backbone] {
        &self.backbones
    }

    /// The Deletion/Insertion protocol for backbone `bb` with what `perturb` says is perturbed.
    fn protocol(&self, bb: &Backbone, perturb: deletion::Perturb) -> Protocol {
        Protocol {
            step_percent: f64::from(self.config.protocol.step),
            fill: bb.info.fill,
            perturb,
            batch: self.config.protocol.batch,
            road: bb.info.road,
        }
    }

    /// The aligned crops of a pair, or why it is skipped (no face detected in an image).
    pub fn load_crops(&self, pair: &Pair) -> Result<std::result::Result<(RgbImage, RgbImage), String>> {
        let opts = LoadOptions::new(&self.config.data.images, Some(&self.landmarks));
        let mut crops = Vec::with_capacity(2);
        for rel in [&pair.a, &pair.b] {
            match load_face(rel, &opts) {
                Ok(face) => crops.push(face.image),
                Err(e) if e.is_no_detection() => return Ok(Err(format!("no face detected in {}", rel.display()))),
                Err(e) => return Err(e).context_with(|| format!("pairs.txt line {}", pair.line)),
            }
        }
        let b = crops.pop().expect("two crops");
        let a = crops.pop().expect("two crops");
        Ok(Ok((a, b)))
    }

    /// The selection: deterministic, identical in every shard.
    pub fn select(&self, progress: Progress<'_>) -> Result<Vec<&Pair>> {
        let sub = &self.config.subset;
        let candidates: Vec<&Pair> =
            self.pairs.iter().filter(|p| sub.folds.is_empty() || sub.folds.contains(&(p.fold + 1))).collect();
        if candidates.is_empty() {
            return Err(Error::config("subset.folds", format!("no pairs in folds {:?} of {}", sub.folds, self.config.data.pairs.display())));
        }
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
            sub.limit,
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
        let of = |genuine: bool| selection.iter().enumerate().filter(move |(_, p)| p.genuine == genuine).map(|(i, _)| i).take(n);
        let mut out: Vec<usize> = of(true).chain(of(false)).collect();
        out.sort_unstable();
        out
    }

    /// What the records of this benchmark hold apart from the pairs: shards must agree on it.
    pub fn header(&self, shard: Shard, selected: usize) -> Records {
        let names: Vec<String> = self.methods.iter().map(|m| m.name().to_string()).collect();
        Records {
            experiment: EXPERIMENT.into(),
            config_sha256: self.config_sha256.clone(),
            shard,
            selected,
            models: self.backbones.iter().map(|b| b.info.clone()).collect(),
            rows: self.config.protocol.rows(&names),
            table3_method: self.table3.name().to_string(),
            steps: self.steps.clone(),
            perturb: self.config.protocol.perturb,
            records: Vec::new(),
        }
    }

    /// Runs this shard of the benchmark.
    pub fn run(&self, shard: Shard, progress: Progress<'_>) -> Result<RunOutput> {
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
            let label = if pair.genuine { "genuine" } else { "impostor" };
            progress(done, owned.len(), &format!("pair {} ({label})", j + 1));
            let (record, panel) = self.evaluate_pair(j, pair, panel_pairs.contains(&j), &mut timings)?;
            records.push(record);
            panels.extend(panel);
        }
        progress(owned.len(), owned.len(), "done");
        timings.total_s = start.elapsed().as_secs_f64();
        let records = Records { records, ..self.header(shard, selection.len()) };
        Ok(RunOutput { records, panels, timings })
    }

    /// The methods explained on backbone `backbone`: all of them on the first, FGGB on the others.
    fn methods_on(&self, backbone: usize) -> Vec<&Loaded> {
        if backbone == 0 {
            self.methods.iter().collect()
        } else {
            vec![&self.table3]
        }
    }

    /// Measures `pair` with every method, taking from the cache the curves it holds; panel pairs
    /// are explained whole (their maps are drawn).
    fn evaluate_pair(&self, index: usize, pair: &Pair, want_panel: bool, timings: &mut Timings) -> Result<(PairRecord, Option<Panel>)> {
        let mut record = PairRecord::new(index, pair);
        let (crop_a, crop_b) = match self.load_crops(pair)? {
            Ok(c) => c,
            Err(why) => {
                record.skipped = Some(why);
                return Ok((record, None));
            }
        };
        let crops_sha256 = crops_sha256(&crop_a, &crop_b);
        let mut panel_rows = Vec::new();
        for (mi, bb) in self.backbones.iter().enumerate() {
            let prepared = bb.prepare(&crop_a, &crop_b, pair.genuine)?;
            let mut rows: Vec<Vec<RowCurves>> = Vec::new();
            let methods = if prepared.kind.is_some() { self.methods_on(mi) } else { Vec::new() };
            let mut missing = Vec::new();
            for (k, m) in methods.iter().enumerate() {
                let key = format!("{}/{}", bb.info.name, m.name());
                let cached: Option<Vec<RowCurves>> = self
                    .config
                    .protocol
                    .rows_of(mi, m.name(), pair.genuine)
                    .into_iter()
                    .map(|(row, perturb)| {
                        let k = self.curve_key(bb, m, perturb, &crops_sha256, pair.genuine);
                        Some(RowCurves { row, perturb, curves: self.cache.as_ref()?.get(&k)? })
                    })
                    .collect();
                match cached {
                    Some(c) if !(want_panel && mi == 0) => {
                        *timings.cached.entry(key).or_default() += 1;
                        rows.push(c);
                    }
                    _ => {
                        missing.push(k);
                        rows.push(Vec::new());
                    }
                }
            }
            if let (Some(kind), false) = (prepared.kind, missing.is_empty()) {
                let todo: Vec<&Loaded> = missing.iter().map(|&k| methods[k]).collect();
                let face_pair = FacePair { a: &prepared.a, b: &prepared.b };
                let explained = explain_all(bb.engine.as_ref(), face_pair, bb.info.threshold, &todo)
                    .context_with(|| format!("pairs.txt line {} with {}", pair.line, bb.info.name))?;
                for (&k, ex) in missing.iter().zip(&explained) {
                    let m = methods[k];
                    let key = format!("{}/{}", bb.info.name, m.name());
                    *timings.explain_s.entry(key.clone()).or_default() += ex.seconds;
                    *timings.explanations.entry(key.clone()).or_default() += 1;
                    *timings.forward_images.entry(key.clone()).or_default() += ex.forward_images;
                    *timings.backward_rows.entry(key.clone()).or_default() += ex.backward_rows;
                    let t1 = Instant::now();
                    for (row, perturb) in self.config.protocol.rows_of(mi, m.name(), pair.genuine) {
                        let protocol = self.protocol(bb, perturb);
                        let curves = method_curves(bb.engine.as_ref(), &protocol, &prepared, &ex.maps, kind, pair.genuine)?;
                        if let Some(cache) = &self.cache {
                            cache.put(&self.curve_key(bb, m, perturb, &crops_sha256, pair.genuine), &curves)?;
                        }
                        rows[k].push(RowCurves { row, perturb, curves });
                    }
                    *timings.curves_s.entry(key).or_default() += t1.elapsed().as_secs_f64();
                    if mi == 0 && want_panel {
                        let info = PanelInfo {
                            score: ex.score,
                            threshold: bb.info.threshold,
                            decision: ex.decision,
                            method: m.name().to_string(),
                            model: bb.info.name.clone(),
                        };
                        panel_rows.push(render_panel(&crop_a, &crop_b, &ex.maps, &info, true));
                    }
                }
            }
            record.models.push(ModelPairRecord {
                clean_score: prepared.clean_score,
                kind: prepared.kind,
                rows: rows.into_iter().flatten().collect(),
            });
        }
        let panel = (!panel_rows.is_empty()).then(|| Panel { name: panel_name(index, pair.genuine), image: draw::stack(&panel_rows) });
        Ok((record, panel))
    }

    fn curve_key(&self, bb: &Backbone, m: &Loaded, perturb: deletion::Perturb, crops_sha256: &str, genuine: bool) -> CurveKey {
        let p = &self.config.protocol;
        CurveKey {
            version: CACHE_VERSION,
            weights_sha256: bb.info.weights_sha256.clone(),
            threshold: bb.info.threshold,
            fill: bb.info.fill,
            road: bb.info.road,
            method: m.identity.clone(),
            jacobian_rows: p.jacobian_rows,
            batch: p.batch,
            step: p.step,
            perturb,
            crops_sha256: crops_sha256.to_string(),
            genuine,
        }
    }
}

pub fn panel_name(index: usize, genuine: bool) -> String {
    format!("pair-{:05}-{}", index + 1, if genuine { "genuine" } else { "impostor" })
}
