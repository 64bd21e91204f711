//! What a (shard of a) run measures, pair by pair: the records every table is computed from, and
//! the machine-dependent timings kept apart from them.

use std::collections::BTreeMap;
use std::path::Path;

use facelens_data::Pair;
use facelens_eval::deletion::{MapKind, Mode, Perturb};
use serde::{Deserialize, Serialize};

use crate::config::Row;
use crate::error::{Error, Result};

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
        let bad = || Error::Shard(s.to_string());
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let index: usize = i.trim().parse().map_err(|_| bad())?;
        let count: usize = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || index == 0 || index > count {
            return Err(bad());
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
    /// ROAD's settings when `protocol.fill = "road"` (then `fill` only serves fully removed images).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub road: Option<facelens_eval::road::Road>,
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

/// One row's curves on one pair.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RowCurves {
    #[serde(flatten)]
    pub row: Row,
    /// What was perturbed on this pair ([`Perturb::Both`] or [`Perturb::Probe`]).
    pub perturb: Perturb,
    #[serde(flatten)]
    pub curves: MethodCurves,
}

/// One pair under one backbone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelPairRecord {
    pub clean_score: f32,
    /// `None` when the backbone misclassifies the pair: such pairs are not scored.
    pub kind: Option<MapKind>,
    /// Curves per row (empty when `kind` is `None`).
    pub rows: Vec<RowCurves>,
}

impl ModelPairRecord {
    pub fn curves(&self, row: &Row) -> Option<&MethodCurves> {
        self.rows.iter().find(|r| &r.row == row).map(|r| &r.curves)
    }
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
    /// Table rows on the first backbone, in table order.
    pub rows: Vec<Row>,
    /// The method Table III runs on every backbone.
    pub table3_method: String,
    pub steps: Vec<f64>,
    pub perturb: Perturb,
    pub records: Vec<PairRecord>,
}

impl Records {
    /// What a merge and the tables rely on: at least one backbone, row and step; every measured
    /// pair has one entry per backbone; every curve has one value per step. A records file that
    /// fails this was not written by this version (or was edited), and the message says where.
    pub fn check(&self) -> std::result::Result<(), String> {
        if self.models.is_empty() {
            return Err("`models` is empty: a run records at least one backbone".into());
        }
        if self.rows.is_empty() {
            return Err("`rows` is empty: a run records at least one method".into());
        }
        if self.steps.is_empty() || self.steps.iter().any(|s| !s.is_finite()) {
            return Err("`steps` must be a non-empty list of finite numbers".into());
        }
        for r in &self.records {
            if r.skipped.is_some() {
                continue;
            }
            if r.models.len() != self.models.len() {
                return Err(format!("pair {} has {} backbone entries, the run has {} backbones", r.index, r.models.len(), self.models.len()));
            }
            for (m, info) in r.models.iter().zip(&self.models) {
                for c in &m.rows {
                    for (mode, ys) in [("deletion", &c.curves.deletion), ("insertion", &c.curves.insertion)] {
                        if ys.len() != self.steps.len() {
                            return Err(format!(
                                "pair {}, {} `{}`: the {mode} curve has {} points, the run has {} steps",
                                r.index,
                                info.name,
                                c.row.method,
                                ys.len(),
                                self.steps.len()
                            ));
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// Wall-clock seconds and pass counts per `model/method`; kept out of [`Records`] so that results
/// stay reproducible.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Timings {
    pub total_s: f64,
    pub select_s: f64,
    /// Seconds spent explaining (FGGB variants sharing one Jacobian split its time evenly).
    pub explain_s: BTreeMap<String, f64>,
    /// Seconds spent on Deletion/Insertion forward passes.
    pub curves_s: BTreeMap<String, f64>,
    /// Explanations computed (one per pair; each explains both faces).
    #[serde(default)]
    pub explanations: BTreeMap<String, u64>,
    /// Images through the network forward while explaining.
    #[serde(default)]
    pub forward_images: BTreeMap<String, u64>,
    /// Jacobian (seed) rows through the network backward while explaining.
    #[serde(default)]
    pub backward_rows: BTreeMap<String, u64>,
    /// Explanations whose curves came from the curve cache (not measured, not in the above).
    #[serde(default)]
    pub cached: BTreeMap<String, u64>,
}

impl Timings {
    /// Adds `other` (another shard's timings) into `self`.
    pub fn add(&mut self, other: Timings) {
        self.total_s += other.total_s;
        self.select_s += other.select_s;
        for (mine, theirs) in [(&mut self.explain_s, other.explain_s), (&mut self.curves_s, other.curves_s)] {
            for (k, v) in theirs {
                *mine.entry(k).or_default() += v;
            }
        }
        for (mine, theirs) in [
            (&mut self.explanations, other.explanations),
            (&mut self.forward_images, other.forward_images),
            (&mut self.backward_rows, other.backward_rows),
            (&mut self.cached, other.cached),
        ] {
            for (k, v) in theirs {
                *mine.entry(k).or_default() += v;
            }
        }
    }
}

pub(crate) fn path_string(p: &Path) -> String {
    p.to_string_lossy().replace('\\', "/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_partition_the_selection() {
        assert_eq!(Shard::parse("2/4").expect("valid"), Shard { index: 2, count: 4 });
        for bad in ["0/4", "5/4", "1/0", "x/2", "3"] {
            assert!(Shard::parse(bad).unwrap_err().to_string().contains(bad), "{bad}");
        }
        let shards: Vec<Shard> = (1..=3).map(|i| Shard { index: i, count: 3 }).collect();
        for j in 0..20 {
            assert_eq!(shards.iter().filter(|s| s.owns(j)).count(), 1);
        }
        assert!((0..5).all(|j| Shard::WHOLE.owns(j)));
    }
}
