//! The ablation loop: the benchmark's pairs, every variant's maps from one Jacobian per image, and
//! each variant's Deletion/Insertion curves, recorded in the benchmark's per-pair format (with
//! variants in place of methods) so that its report code turns them into AUCs.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{Context, Result};
use candle_core::Device;
use facelens_eval::deletion::Protocol;
use facelens_saliency::FacePair;
use serde::{Deserialize, Serialize};
use xfv_benchmark::bench::{method_curves, Bench, ModelPairRecord, PairRecord, Prepared, Records};
use xfv_benchmark::Progress;

use crate::config::{Config, Tau, EXPERIMENT};
use crate::maps::{variant_maps, MapSpec};

/// Wall-clock seconds; kept out of the records so that those stay reproducible.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Timings {
    pub total_s: f64,
    pub select_s: f64,
    /// Pairs whose maps were computed (the scored pairs).
    pub explained_pairs: usize,
    /// Forward passes, the one shared Jacobian of both images and every variant's maps.
    pub maps_s: f64,
    /// Variant -> seconds of its Deletion/Insertion curves.
    pub curves_s: BTreeMap<String, f64>,
}

impl Timings {
    /// Seconds per scored pair the maps took, shared by all variants.
    pub fn maps_s_per_pair(&self) -> f64 {
        self.maps_s / self.explained_pairs.max(1) as f64
    }

    /// What one variant costs per scored pair on its own: the Jacobian it would need alone (the
    /// shared one) plus its curves.
    pub fn seconds_per_pair(&self, variant: &str) -> f64 {
        self.maps_s_per_pair()
            + self.curves_s.get(variant).copied().unwrap_or(0.0)
                / self.explained_pairs.max(1) as f64
    }
}

/// Thresholds in use: the protocol's (best accuracy) and the EER one.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    pub best_accuracy: f32,
    pub eer: f32,
}

impl Thresholds {
    pub fn get(&self, tau: Tau) -> f32 {
        match tau {
            Tau::BestAccuracy => self.best_accuracy,
            Tau::Eer => self.eer,
        }
    }
}

/// What [`Ablation::run`] measured.
pub struct Output {
    pub records: Records,
    pub timings: Timings,
}

/// The loaded model and data plus the variants.
pub struct Ablation {
    config: Config,
    bench: Bench,
    specs: Vec<MapSpec>,
    thresholds: Thresholds,
}

impl Ablation {
    pub fn load(config: Config, config_sha256: String, device: &Device) -> Result<Ablation> {
        config.validate()?;
        let bench = Bench::load(config.benchmark(), config_sha256, device)?;
        let thresholds = Thresholds {
            best_accuracy: bench.backbones()[0].info.threshold,
            eer: config.model.eer_threshold,
        };
        let specs = config
            .variants
            .iter()
            .map(|v| MapSpec {
                fggb: v.fggb(),
                tau: thresholds.get(v.tau),
            })
            .collect();
        Ok(Ablation {
            config,
            bench,
            specs,
            thresholds,
        })
    }

    pub fn thresholds(&self) -> Thresholds {
        self.thresholds
    }

    /// Every selected pair under every variant.
    pub fn run(&self, progress: Progress<'_>) -> Result<Output> {
        let start = Instant::now();
        let mut timings = Timings::default();
        let selection = self.bench.select(progress)?;
        timings.select_s = start.elapsed().as_secs_f64();
        let mut records = Vec::with_capacity(selection.len());
        for (j, pair) in selection.iter().enumerate() {
            progress(
                j,
                selection.len(),
                &format!(
                    "pair {} ({})",
                    j + 1,
                    if pair.genuine { "genuine" } else { "impostor" }
                ),
            );
            let mut record = PairRecord::new(j, pair);
            match self.bench.load_crops(pair)? {
                Err(why) => record.skipped = Some(why),
                Ok((ca, cb)) => {
                    let scored = self
                        .score_pair(&ca, &cb, pair.genuine, &mut timings)
                        .with_context(|| format!("pairs.txt line {}", pair.line))?;
                    record.models.push(scored);
                }
            }
            records.push(record);
        }
        progress(selection.len(), selection.len(), "done");
        timings.total_s = start.elapsed().as_secs_f64();
        let bb = &self.bench.backbones()[0];
        let records = Records {
            experiment: EXPERIMENT.into(),
            config_sha256: self.bench.config_sha256().to_string(),
            shard: xfv_benchmark::Shard::WHOLE,
            selected: selection.len(),
            models: vec![bb.info.clone()],
            methods: self.config.row_names(),
            steps: self.bench.steps().to_vec(),
            perturb: self.config.protocol.perturb,
            records,
        };
        Ok(Output { records, timings })
    }

    /// One pair's clean score and, if it is eligible, every variant's curves.
    fn score_pair(
        &self,
        crop_a: &image::RgbImage,
        crop_b: &image::RgbImage,
        genuine: bool,
        timings: &mut Timings,
    ) -> Result<ModelPairRecord> {
        let bb = &self.bench.backbones()[0];
        let Prepared {
            a,
            b,
            clean_score,
            kind,
        } = bb.prepare(crop_a, crop_b, genuine)?;
        let engine = bb.engine.as_ref();
        let mut methods = BTreeMap::new();
        if let Some(kind) = kind {
            let t0 = Instant::now();
            let (maps, _) = variant_maps(engine, FacePair { a: &a, b: &b }, &self.specs)?;
            timings.maps_s += t0.elapsed().as_secs_f64();
            timings.explained_pairs += 1;
            let protocol = self.bench.protocol(bb);
            for (variant, m) in self.config.variants.iter().zip(&maps) {
                for (row, perturb) in self.config.protocol.rows_of(0, &variant.name, genuine) {
                    let p = Protocol { perturb, ..protocol };
                    let t1 = Instant::now();
                    let curves = method_curves(engine, &p, &a, &b, m, kind, genuine)?;
                    *timings.curves_s.entry(row.clone()).or_default() +=
                        t1.elapsed().as_secs_f64();
                    methods.insert(row, curves);
                }
            }
        }
        Ok(ModelPairRecord {
            clean_score,
            kind,
            methods,
        })
    }
}
