//! From per-pair records to the paper's tables: a pure function of [`Records`], so a merge of
//! shards and an unsharded run print the same numbers.
//!
//! * Table I: similarity maps (S+), scored on genuine pairs the first backbone accepts.
//! * Table II: dissimilarity maps (S-), scored on impostor pairs it rejects.
//! * Table III: FGGB on every configured backbone, both kinds of map.
//!
//! Each cell is the trapezoid area under verification accuracy over p in percent: 100 means the
//! decision never changed. Deletion: lower is better; Insertion: higher is better.

use std::fmt::Write as _;

use facelens_eval::deletion::{accuracy_curve, MapKind, Mode, PairCurve, Perturb};
use serde::{Deserialize, Serialize};

use crate::config::Row;
use crate::error::Result;
use crate::records::{ModelInfo, Records};

/// Deletion and Insertion of one method (or backbone) on one kind of map.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    pub pairs: usize,
    /// `None` when no pair qualified.
    pub deletion_auc: Option<f64>,
    pub insertion_auc: Option<f64>,
    /// Accuracy at each step (empty when no pair qualified).
    pub deletion: Vec<f64>,
    pub insertion: Vec<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MethodRow {
    /// The row's label (`<method>` or `<method> (probe only)`).
    pub method: String,
    #[serde(flatten)]
    pub cell: Cell,
}

/// Table I or II.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MethodTable {
    pub kind: MapKind,
    pub model: String,
    pub threshold: f32,
    pub rows: Vec<MethodRow>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackboneRow {
    pub model: String,
    pub threshold: f32,
    pub similarity: Cell,
    pub dissimilarity: Cell,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairCounts {
    pub selected: usize,
    /// Left out before any model saw them (no face detected).
    pub skipped: usize,
    /// Per backbone: pairs scored with similarity maps, with dissimilarity maps, and misclassified.
    pub per_model: Vec<ModelCounts>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelCounts {
    pub model: String,
    pub similarity: usize,
    pub dissimilarity: usize,
    pub misclassified: usize,
}

/// `results.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Results {
    pub experiment: String,
    pub config_sha256: String,
    pub models: Vec<ModelInfo>,
    pub methods: Vec<String>,
    pub perturb: Perturb,
    pub steps: Vec<f64>,
    pub pairs: PairCounts,
    pub table1: MethodTable,
    pub table2: MethodTable,
    pub table3: Vec<BackboneRow>,
}

/// Curves of every pair of `kind` under backbone `model` and `row`, in record order.
fn pair_curves(records: &Records, model: usize, row: &Row, kind: MapKind, mode: Mode) -> Vec<PairCurve> {
    records
        .records
        .iter()
        .filter_map(|r| r.models.get(model).map(|m| (r.genuine, m)))
        .filter(|(_, m)| m.kind == Some(kind))
        .filter_map(|(genuine, m)| {
            m.curves(row).map(|c| PairCurve {
                genuine,
                scores: c.get(mode).to_vec(),
            })
        })
        .collect()
}

/// The cell of `row` under backbone `model` on pairs of `kind`.
fn cell(records: &Records, model: usize, row: &Row, kind: MapKind) -> Result<Cell> {
    let curves = |mode| pair_curves(records, model, row, kind, mode);
    cell_from_curves(
        &curves(Mode::Deletion),
        &curves(Mode::Insertion),
        &records.steps,
        records.models[model].threshold,
    )
}

/// A cell from per-pair curves at `steps`, re-verified at `threshold`; empty (no AUC) when a
/// mode has no pairs.
pub fn cell_from_curves(
    deletion: &[PairCurve],
    insertion: &[PairCurve],
    steps: &[f64],
    threshold: f32,
) -> Result<Cell> {
    let mut out = Cell {
        pairs: 0,
        deletion_auc: None,
        insertion_auc: None,
        deletion: vec![],
        insertion: vec![],
    };
    for (mode, curves) in [(Mode::Deletion, deletion), (Mode::Insertion, insertion)] {
        if curves.is_empty() {
            continue;
        }
        out.pairs = curves.len();
        let c = accuracy_curve(curves, steps, threshold, mode)?;
        match mode {
            Mode::Deletion => (out.deletion_auc, out.deletion) = (Some(c.auc), c.accuracy),
            Mode::Insertion => (out.insertion_auc, out.insertion) = (Some(c.auc), c.accuracy),
        }
    }
    Ok(out)
}

fn method_table(records: &Records, kind: MapKind) -> Result<MethodTable> {
    let rows = records
        .rows
        .iter()
        .map(|r| {
            Ok(MethodRow {
                method: r.label(),
                cell: cell(records, 0, r, kind)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(MethodTable {
        kind,
        model: records.models[0].name.clone(),
        threshold: records.models[0].threshold,
        rows,
    })
}

/// Builds all tables from complete (unsharded or merged) records.
pub fn build(records: &Records) -> Result<Results> {
    let fggb = Row::configured(&records.table3_method);
    let table3 = records
        .models
        .iter()
        .enumerate()
        .map(|(i, m)| {
            Ok(BackboneRow {
                model: m.name.clone(),
                threshold: m.threshold,
                similarity: cell(records, i, &fggb, MapKind::Similarity)?,
                dissimilarity: cell(records, i, &fggb, MapKind::Dissimilarity)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let per_model = records
        .models
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let kinds: Vec<Option<MapKind>> = records
                .records
                .iter()
                .filter_map(|r| r.models.get(i).map(|x| x.kind))
                .collect();
            ModelCounts {
                model: m.name.clone(),
                similarity: kinds
                    .iter()
                    .filter(|k| **k == Some(MapKind::Similarity))
                    .count(),
                dissimilarity: kinds
                    .iter()
                    .filter(|k| **k == Some(MapKind::Dissimilarity))
                    .count(),
                misclassified: kinds.iter().filter(|k| k.is_none()).count(),
            }
        })
        .collect();
    Ok(Results {
        experiment: records.experiment.clone(),
        config_sha256: records.config_sha256.clone(),
        models: records.models.clone(),
        methods: records.rows.iter().map(Row::label).collect(),
        perturb: records.perturb,
        steps: records.steps.clone(),
        pairs: PairCounts {
            selected: records.selected,
            skipped: records
                .records
                .iter()
                .filter(|r| r.skipped.is_some())
                .count(),
            per_model,
        },
        table1: method_table(records, MapKind::Similarity)?,
        table2: method_table(records, MapKind::Dissimilarity)?,
        table3,
    })
}

/// An AUC for a Markdown table: two decimals, `n/a` when no pair qualified.
pub fn num(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".into(), |x| format!("{x:.2}"))
}

/// An AUC for a CSV file: full precision, empty when no pair qualified.
pub fn csv_num(v: Option<f64>) -> String {
    v.map_or_else(String::new, |x| format!("{x}"))
}

impl MethodTable {
    /// Pairs the table scores (its widest row).
    pub fn pairs(&self) -> usize {
        self.rows.iter().map(|r| r.cell.pairs).max().unwrap_or(0)
    }

    /// "Table I: similarity maps" and what they are scored on.
    pub fn title_parts(&self, number: &str) -> (String, String) {
        let (what, pairs) = match self.kind {
            MapKind::Similarity => ("similarity maps", "genuine pairs accepted"),
            MapKind::Dissimilarity => ("dissimilarity maps", "impostor pairs rejected"),
        };
        let n = self.pairs();
        (
            format!("Table {number}: {what}"),
            format!(
                "{pairs} by {} at tau = {}, n = {n}",
                self.model, self.threshold
            ),
        )
    }

    pub fn title(&self, number: &str) -> String {
        let (head, detail) = self.title_parts(number);
        format!("{head} ({detail})")
    }

    fn markdown(&self, number: &str) -> String {
        let mut s = format!("## {}\n\n| Method | Deletion AUC (lower is better) | Insertion AUC (higher is better) | Pairs |\n|---|---:|---:|---:|\n", self.title(number));
        for r in &self.rows {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} |",
                r.method,
                num(r.cell.deletion_auc),
                num(r.cell.insertion_auc),
                r.cell.pairs
            );
        }
        s
    }

    pub fn csv(&self) -> String {
        let mut s = String::from("method,pairs,deletion_auc,insertion_auc\n");
        for r in &self.rows {
            let _ = writeln!(
                s,
                "{},{},{},{}",
                r.method,
                r.cell.pairs,
                csv_num(r.cell.deletion_auc),
                csv_num(r.cell.insertion_auc)
            );
        }
        s
    }
}

impl Results {
    /// `tables.md`: all three tables with the run's protocol in one paragraph.
    pub fn markdown(&self) -> String {
        let m = &self.models[0];
        let mut s = format!(
            "# xfv-benchmark: Deletion / Insertion\n\nBackbone `{}` (tau = {}, {}), fill {}, perturb {}, p = {} %. \
             {} pairs selected, {} skipped (no face detected). AUC = area under verification accuracy over p in % \
             (100 = the decision never changed).\n\n",
            m.name,
            m.threshold,
            m.threshold_source,
            match &m.road {
                None => format!("{} (model space)", m.fill),
                Some(r) => format!(
                    "ROAD (noisy linear imputation, noise sd {} on 0..255; Deletion columns are MoRF, Insertion columns LeRF)",
                    r.noise
                ),
            },
            self.perturb.describe(),
            steps_text(&self.steps),
            self.pairs.selected,
            self.pairs.skipped,
        );
        s += &self.table1.markdown("I");
        s += "\n";
        s += &self.table2.markdown("II");
        s += "\n## Table III: FGGB across backbones\n\n| Backbone | tau | Sim. pairs | Sim. Deletion | Sim. Insertion | Dissim. pairs | Dissim. Deletion | Dissim. Insertion |\n|---|---:|---:|---:|---:|---:|---:|---:|\n";
        for r in &self.table3 {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                r.model,
                r.threshold,
                r.similarity.pairs,
                num(r.similarity.deletion_auc),
                num(r.similarity.insertion_auc),
                r.dissimilarity.pairs,
                num(r.dissimilarity.deletion_auc),
                num(r.dissimilarity.insertion_auc)
            );
        }
        s
    }

    pub fn table3_csv(&self) -> String {
        let mut s = String::from(
            "model,threshold,similarity_pairs,similarity_deletion_auc,similarity_insertion_auc,dissimilarity_pairs,dissimilarity_deletion_auc,dissimilarity_insertion_auc\n",
        );
        for r in &self.table3 {
            let _ = writeln!(
                s,
                "{},{},{},{},{},{},{},{}",
                r.model,
                r.threshold,
                r.similarity.pairs,
                csv_num(r.similarity.deletion_auc),
                csv_num(r.similarity.insertion_auc),
                r.dissimilarity.pairs,
                csv_num(r.dissimilarity.deletion_auc),
                csv_num(r.dissimilarity.insertion_auc)
            );
        }
        s
    }

    /// Every curve in long form (`table,model,method,mode,p,accuracy`), for notebooks.
    pub fn curves_csv(&self) -> String {
        let mut s = String::from("table,model,method,mode,p,accuracy\n");
        for (table, t) in [("table1", &self.table1), ("table2", &self.table2)] {
            for r in &t.rows {
                push_curves(&mut s, table, &t.model, &r.method, &r.cell, &self.steps);
            }
        }
        for r in &self.table3 {
            push_curves(
                &mut s,
                "table3-similarity",
                &r.model,
                "fggb",
                &r.similarity,
                &self.steps,
            );
            push_curves(
                &mut s,
                "table3-dissimilarity",
                &r.model,
                "fggb",
                &r.dissimilarity,
                &self.steps,
            );
        }
        s
    }
}

fn push_curves(s: &mut String, table: &str, model: &str, method: &str, cell: &Cell, steps: &[f64]) {
    for (mode, ys) in [("deletion", &cell.deletion), ("insertion", &cell.insertion)] {
        for (p, y) in steps.iter().zip(ys.iter()) {
            let _ = writeln!(s, "{table},{model},{method},{mode},{p},{y}");
        }
    }
}

fn steps_text(steps: &[f64]) -> String {
    match steps {
        [a, b, .., last] => format!("{a}, {b}, ..., {last}"),
        other => other
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(", "),
    }
}
