//! The ablation table: one row per variant with its similarity and dissimilarity AUCs (the
//! benchmark's Tables I and II cells), pair counts and cost. A pure function of the records and
//! timings.

use std::fmt::Write as _;

use anyhow::{bail, Result};
use facelens_eval::deletion::Perturb;
use facelens_saliency::reduce::ChannelReduction;
use serde::{Deserialize, Serialize};
use xfv_benchmark::bench::Records;
use xfv_benchmark::config::probe_only_name;
use xfv_benchmark::report::{self, csv_num, num, Cell};

use crate::ablation::{Thresholds, Timings};
use crate::config::{Tau, Variant};

/// One variant's line (or its probe-only line).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// The variant's name, or `<variant> (probe only)` for its curves with only the probe
    /// perturbed.
    pub variant: String,
    pub normalised_embedding: bool,
    pub channel_reduction: ChannelReduction,
    pub per_dimension_norm: bool,
    pub blur: bool,
    pub tau: Tau,
    /// The cosine `tau` stands for.
    pub tau_value: f32,
    /// Accepted genuine pairs, S+ maps.
    pub similarity: Cell,
    /// Rejected impostor pairs, S- maps.
    pub dissimilarity: Cell,
    /// What this variant costs per scored pair on its own (shared Jacobian + its curves).
    pub seconds_per_pair: f64,
}

/// `results.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Table {
    pub experiment: String,
    pub config_sha256: String,
    pub model: String,
    /// The protocol's threshold (eligibility, re-verification) and the EER threshold.
    pub thresholds: Thresholds,
    pub threshold_source: String,
    pub perturb: Perturb,
    pub steps: Vec<f64>,
    pub selected: usize,
    /// Left out before the model saw them (no face detected).
    pub skipped: usize,
    /// Selected pairs the model misclassifies (only possible with `select = "every"`).
    pub misclassified: usize,
    /// Seconds per scored pair for the forward passes, the one Jacobian per image and every
    /// variant's maps.
    pub maps_s_per_pair: f64,
    pub rows: Vec<Row>,
    /// Headline numbers for `facelens runs list`.
    pub summary: serde_json::Value,
}

/// The table from complete records (methods = the variant names in `variants` order, then, when
/// the run traced them, their probe-only rows `<variant> (probe only)`). Cells come from the
/// benchmark's report: a row's similarity cell is its Table I row, its dissimilarity cell its
/// Table II row.
pub fn build(
    records: &Records,
    variants: &[Variant],
    thresholds: Thresholds,
    timings: &Timings,
) -> Result<Table> {
    let report = report::build(records)?;
    let cells = report.table1.rows.iter().zip(&report.table2.rows);
    let n = report.table1.rows.len();
    if n != variants.len() && n != 2 * variants.len() {
        bail!(
            "the records hold {n} methods for {} variants",
            variants.len()
        );
    }
    let expected = variants
        .iter()
        .map(|v| v.name.clone())
        .chain(variants.iter().map(|v| probe_only_name(&v.name)));
    let rows = cells
        .zip(expected)
        .zip(variants.iter().cycle())
        .map(|(((sim, dis), name), v)| {
            if sim.method != name {
                bail!(
                    "the records list `{}` where `{name}` was expected",
                    sim.method
                );
            }
            Ok(Row {
                variant: name.clone(),
                normalised_embedding: v.normalised_embedding,
                channel_reduction: v.channel_reduction,
                per_dimension_norm: v.per_dimension_norm,
                blur: v.blur,
                tau: v.tau,
                tau_value: thresholds.get(v.tau),
                similarity: sim.cell.clone(),
                dissimilarity: dis.cell.clone(),
                seconds_per_pair: timings.seconds_per_pair(&name),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let model = &report.models[0];
    let counts = &report.pairs.per_model[0];
    let summary = serde_json::json!({
        "pairs": counts.similarity + counts.dissimilarity,
        "variants": variants.len(),
        "rows": rows.len(),
        "maps_s_per_pair": timings.maps_s_per_pair(),
    });
    Ok(Table {
        experiment: records.experiment.clone(),
        config_sha256: records.config_sha256.clone(),
        model: model.name.clone(),
        thresholds,
        threshold_source: model.threshold_source.clone(),
        perturb: records.perturb,
        steps: records.steps.clone(),
        selected: report.pairs.selected,
        skipped: report.pairs.skipped,
        misclassified: counts.misclassified,
        maps_s_per_pair: timings.maps_s_per_pair(),
        rows,
        summary,
    })
}

fn reduction(r: ChannelReduction) -> &'static str {
    match r {
        ChannelReduction::MeanAbs => "mean-abs",
        ChannelReduction::MaxAbs => "max-abs",
    }
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

impl Table {
    /// `table.md`: the protocol in one paragraph and one line per variant.
    pub fn markdown(&self) -> String {
        let mut s = format!(
            "# FGGB ablation: Deletion / Insertion\n\nBackbone `{}`, protocol threshold {} ({}), EER threshold {}; \
             perturb {}; {} pairs selected, {} skipped (no face detected), {} misclassified. \
             AUC = area under verification accuracy over p in % (100 = the decision never changed); \
             Deletion: lower is better, Insertion: higher is better. One Jacobian per image serves every \
             variant: {:.2} s per pair for all maps.\n\n",
            self.model,
            self.thresholds.best_accuracy,
            self.threshold_source,
            self.thresholds.eer,
            self.perturb.describe(),
            self.selected,
            self.skipped,
            self.misclassified,
            self.maps_s_per_pair,
        );
        s += "| Variant | Embedding | Channels | Per-dim. norm | Blur | tau | Sim. Deletion | Sim. Insertion | Dissim. Deletion | Dissim. Insertion | Pairs (sim. / dissim.) | s / pair |\n\
              |---|---|---|---|---|---|---:|---:|---:|---:|---:|---:|\n";
        for r in &self.rows {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} ({}) | {} | {} | {} | {} | {} / {} | {:.2} |",
                r.variant,
                if r.normalised_embedding {
                    "normalised"
                } else {
                    "raw"
                },
                reduction(r.channel_reduction),
                yes_no(r.per_dimension_norm),
                yes_no(r.blur),
                r.tau.as_str(),
                r.tau_value,
                num(r.similarity.deletion_auc),
                num(r.similarity.insertion_auc),
                num(r.dissimilarity.deletion_auc),
                num(r.dissimilarity.insertion_auc),
                r.similarity.pairs,
                r.dissimilarity.pairs,
                r.seconds_per_pair
            );
        }
        s
    }

    /// `table.csv`, full precision.
    pub fn csv(&self) -> String {
        let mut s = String::from(
            "variant,normalised_embedding,channel_reduction,per_dimension_norm,blur,tau,tau_value,\
             similarity_pairs,similarity_deletion_auc,similarity_insertion_auc,\
             dissimilarity_pairs,dissimilarity_deletion_auc,dissimilarity_insertion_auc,seconds_per_pair\n",
        );
        for r in &self.rows {
            let _ = writeln!(
                s,
                "{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
                r.variant,
                r.normalised_embedding,
                reduction(r.channel_reduction),
                r.per_dimension_norm,
                r.blur,
                r.tau.as_str(),
                r.tau_value,
                r.similarity.pairs,
                csv_num(r.similarity.deletion_auc),
                csv_num(r.similarity.insertion_auc),
                r.dissimilarity.pairs,
                csv_num(r.dissimilarity.deletion_auc),
                csv_num(r.dissimilarity.insertion_auc),
                r.seconds_per_pair
            );
        }
        s
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use facelens_data::Pair;
    use facelens_eval::deletion::MapKind;
    use std::collections::BTreeMap;
    use xfv_benchmark::bench::{MethodCurves, ModelInfo, ModelPairRecord, PairRecord};
    use xfv_benchmark::Shard;

    pub(crate) fn variants() -> Vec<Variant> {
        let spec = Variant {
            name: "spec".into(),
            normalised_embedding: true,
            channel_reduction: ChannelReduction::MeanAbs,
            per_dimension_norm: true,
            blur: false,
            tau: Tau::BestAccuracy,
        };
        let raw = Variant {
            name: "raw".into(),
            normalised_embedding: false,
            tau: Tau::Eer,
            ..spec.clone()
        };
        vec![spec, raw]
    }

    pub(crate) const THRESHOLDS: Thresholds = Thresholds {
        best_accuracy: 0.5,
        eer: 0.4,
    };

    /// Four pairs at p = 0, 50, 100: two genuine (accepted), one impostor (rejected), one genuine
    /// the model rejects. `spec` flips every decision at 50 %, `raw` never does.
    pub(crate) fn records() -> Records {
        let pair = |i: usize, genuine: bool, kind: Option<MapKind>| {
            let (keep, flip) = if genuine {
                (vec![0.9, 0.9, 0.9], vec![0.9, 0.1, 0.1])
            } else {
                (vec![0.1, 0.1, 0.1], vec![0.1, 0.9, 0.9])
            };
            let mut methods = BTreeMap::new();
            if kind.is_some() {
                for (name, c) in [("spec", flip), ("raw", keep)] {
                    methods.insert(
                        name.to_string(),
                        MethodCurves {
                            deletion: c.clone(),
                            insertion: c,
                        },
                    );
                }
            }
            let listed = Pair {
                a: format!("a{i}").into(),
                b: format!("b{i}").into(),
                genuine,
                fold: 0,
                line: i + 2,
            };
            PairRecord {
                models: vec![ModelPairRecord {
                    clean_score: 0.0,
                    kind,
                    methods,
                }],
                ..PairRecord::new(i, &listed)
            }
        };
        Records {
            experiment: "fggb-ablation".into(),
            config_sha256: "0123abcd".into(),
            shard: Shard::WHOLE,
            selected: 4,
            models: vec![ModelInfo {
                name: "toy".into(),
                threshold: THRESHOLDS.best_accuracy,
                threshold_source: "test".into(),
                fill: -1.0,
                embedding_dim: 4,
                weights_sha256: "00".into(),
            }],
            methods: vec!["spec".into(), "raw".into()],
            steps: vec![0.0, 50.0, 100.0],
            perturb: Perturb::Both,
            records: vec![
                pair(0, true, Some(MapKind::Similarity)),
                pair(1, true, Some(MapKind::Similarity)),
                pair(2, false, Some(MapKind::Dissimilarity)),
                pair(3, true, None),
            ],
        }
    }

    pub(crate) fn timings() -> Timings {
        Timings {
            total_s: 10.0,
            select_s: 1.0,
            explained_pairs: 3,
            maps_s: 6.0,
            curves_s: [("spec".to_string(), 3.0), ("raw".to_string(), 1.5)]
                .into_iter()
                .collect(),
        }
    }

    #[test]
    fn rows_follow_the_variants() {
        let t = build(&records(), &variants(), THRESHOLDS, &timings()).expect("table");
        assert_eq!((t.selected, t.skipped, t.misclassified), (4, 0, 1));
        let (spec, raw) = (&t.rows[0], &t.rows[1]);
        // Correct, wrong, wrong over p = 0, 50, 100: 50 * 1/2 = 25.
        assert_eq!(spec.similarity.deletion_auc, Some(25.0));
        assert_eq!(spec.dissimilarity.insertion_auc, Some(25.0));
        assert_eq!(raw.similarity.deletion_auc, Some(100.0));
        assert_eq!((spec.similarity.pairs, spec.dissimilarity.pairs), (2, 1));
        assert_eq!((spec.tau_value, raw.tau_value), (0.5, 0.4));
        // 6 s of maps over 3 pairs, plus each variant's curves.
        assert_eq!(spec.seconds_per_pair, 3.0);
        assert_eq!(raw.seconds_per_pair, 2.5);
        assert_eq!(t.maps_s_per_pair, 2.0);

        let md = t.markdown();
        assert!(
            md.contains("| spec | normalised | mean-abs | yes | no | best-accuracy (0.5) | 25.00 | 25.00 | 25.00 | 25.00 | 2 / 1 | 3.00 |"),
            "{md}"
        );
        assert!(md.contains("| raw | raw |"), "{md}");
        let csv = t.csv();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0].split(',').count(), lines[1].split(',').count());
        assert_eq!(
            lines[2],
            "raw,false,mean-abs,true,false,eer,0.4,2,100,100,1,100,100,2.5"
        );
    }

    #[test]
    fn probe_only_rows_follow_the_variants_with_their_switches() {
        let mut recs = records();
        let probe = |v: &str| probe_only_name(v);
        recs.methods.extend(["spec", "raw"].map(probe));
        for r in &mut recs.records {
            let m = &mut r.models[0].methods;
            if let Some(raw) = m.get("raw").cloned() {
                // Probe-only: `spec` keeps every decision, `raw` flips them.
                let spec = m["spec"].clone();
                m.insert(probe("spec"), raw);
                m.insert(probe("raw"), spec);
            }
        }
        let t = build(&recs, &variants(), THRESHOLDS, &timings()).expect("table");
        let names: Vec<&str> = t.rows.iter().map(|r| r.variant.as_str()).collect();
        assert_eq!(names, ["spec", "raw", "spec (probe only)", "raw (probe only)"]);
        let (spec_p, raw_p) = (&t.rows[2], &t.rows[3]);
        assert_eq!(spec_p.similarity.deletion_auc, Some(100.0));
        assert_eq!(raw_p.similarity.deletion_auc, Some(25.0));
        assert!(!raw_p.normalised_embedding && raw_p.tau == Tau::Eer && raw_p.tau_value == 0.4);
        assert!(spec_p.normalised_embedding && spec_p.tau == Tau::BestAccuracy);
        assert_eq!(t.summary["variants"], 2);
        assert_eq!(t.summary["rows"], 4);
        assert!(t.markdown().contains("| raw (probe only) | raw |"));

        // Rows out of order are refused.
        recs.methods.swap(2, 3);
        let err = build(&recs, &variants(), THRESHOLDS, &timings()).unwrap_err();
        assert!(err.to_string().contains("was expected"), "{err}");
    }
}
