//! Writing a run directory: records, tables (Markdown, CSV, JSON), plots, panels and TensorBoard
//! events (merging shards is [`crate::shards`]).
//!
//! Every file is written atomically (temp file + rename), so an interrupted run never leaves a
//! half-written table that looks complete.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use facelens_board::run_dir::write_atomic;
use facelens_board::{HParamValue, RunDir, SummaryWriter};
use image::codecs::png::PngEncoder;
use image::{ImageEncoder, RgbImage};

use crate::bench::Panel;
use crate::config::Row;
use crate::draw::{self, Series};
use crate::error::{Error, Result};
use crate::records::{Records, Timings};
use crate::report::{self, Cell, Results};

pub const RECORDS_FILE: &str = "records.json";
pub const TIMINGS_FILE: &str = "timings.json";
/// Per-method cost of an explanation (time and passes), from the timings.
pub const COST_FILE: &str = "cost.csv";
pub const COST_MD: &str = "cost.md";
pub const TABLES_FILE: &str = "tables.md";
/// Tables I and II side by side with each method's cost.
pub const SUMMARY_MD: &str = "summary.md";
pub const PANELS_DIR: &str = "panels";
pub const PLOTS_DIR: &str = "plots";

pub fn write_text(path: &Path, text: &str) -> Result<()> {
    Ok(write_atomic(path, text.as_bytes())?)
}

/// Encodes `img` as PNG and writes it atomically, creating the parent folder.
pub fn write_png(path: &Path, img: &RgbImage) -> Result<()> {
    let mut bytes = Vec::new();
    PngEncoder::new(&mut bytes)
        .write_image(
            img.as_raw(),
            img.width(),
            img.height(),
            image::ExtendedColorType::Rgb8,
        )
        .map_err(|e| Error::invalid(path, format!("encoding PNG: {e}")))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, "creating folder", e))?;
    }
    Ok(write_atomic(path, &bytes)?)
}

/// Writes what a shard of a sharded run leaves behind: its records, timings and panels. Tables
/// come from `merge`.
pub fn write_shard(
    run: &RunDir,
    records: &Records,
    panels: &[Panel],
    timings: &Timings,
) -> Result<()> {
    run.write_json(RECORDS_FILE, records)?;
    run.write_json(TIMINGS_FILE, timings)?;
    for p in panels {
        write_png(
            &run.path().join(PANELS_DIR).join(format!("{}.png", p.name)),
            &p.image,
        )?;
    }
    Ok(())
}

/// Writes a complete run: records, `results.json`, tables, plots, panels and TensorBoard events.
pub fn write_run(
    run: &RunDir,
    config_text: &str,
    records: &Records,
    panels: &[Panel],
    timings: &Timings,
) -> Result<Results> {
    let results = report::build(records)?;
    let dir = run.path();
    run.write_json(RECORDS_FILE, records)?;
    run.write_json(TIMINGS_FILE, timings)?;
    run.write_results(&results)?;
    let markdown = results.markdown();
    write_text(&dir.join(TABLES_FILE), &markdown)?;
    // Costs depend on the machine and on sharding, so they stay out of the (reproducible) tables.
    let cost = cost_table(timings);
    write_text(&dir.join(COST_MD), &cost)?;
    write_text(&dir.join(COST_FILE), &cost_csv(timings))?;
    write_text(&dir.join(SUMMARY_MD), &summary_table(&results, &records.rows, timings))?;
    write_text(&dir.join("table1.csv"), &results.table1.csv())?;
    write_text(&dir.join("table2.csv"), &results.table2.csv())?;
    write_text(&dir.join("table3.csv"), &results.table3_csv())?;
    write_text(&dir.join("curves.csv"), &results.curves_csv())?;

    let mut tb = run.summary_writer()?;
    tb.add_text("config", &format!("```toml\n{config_text}\n```"), 0)?;
    tb.add_text("tables", &format!("{markdown}\n{cost}"), 0)?;
    let plots = plots(&results);
    for (name, img) in &plots {
        write_png(&dir.join(PLOTS_DIR).join(format!("{name}.png")), img)?;
        tb.add_image(&format!("plots/{name}"), img, 0)?;
    }
    for p in panels {
        write_png(
            &dir.join(PANELS_DIR).join(format!("{}.png", p.name)),
            &p.image,
        )?;
        tb.add_image(&format!("panels/{}", p.name), &p.image, 0)?;
    }
    let metrics = log_curves(&mut tb, &results)?;
    let metric_refs: Vec<&str> = metrics.iter().map(String::as_str).collect();
    tb.add_hparams(&hparams(&results), &metric_refs)?;
    tb.close()?;
    Ok(results)
}

/// Scalars: each row's mean curve as `<table>/<method>/<mode>` with step = the percentage of
/// pixels perturbed (TensorBoard draws the curve itself), and its AUC as `auc/<same tag>` at step
/// 0. Returns the AUC tags (the hparams metrics).
fn log_curves(tb: &mut SummaryWriter, r: &Results) -> Result<Vec<String>> {
    let mut aucs = Vec::new();
    let mut log = |tb: &mut SummaryWriter, prefix: String, cell: &Cell| -> Result<()> {
        for (mode, ys, auc) in [
            ("deletion", &cell.deletion, cell.deletion_auc),
            ("insertion", &cell.insertion, cell.insertion_auc),
        ] {
            for (p, y) in r.steps.iter().zip(ys.iter()) {
                tb.add_scalar(&format!("{prefix}/{mode}"), *y, p.round() as i64)?;
            }
            if let Some(a) = auc {
                let tag = format!("auc/{prefix}/{mode}");
                tb.add_scalar(&tag, a, 0)?;
                aucs.push(tag);
            }
        }
        Ok(())
    };
    for (name, t) in [("table1", &r.table1), ("table2", &r.table2)] {
        for row in &t.rows {
            log(tb, format!("{name}/{}", tag_safe(&row.method)), &row.cell)?;
        }
    }
    for row in &r.table3 {
        let model = tag_safe(&row.model);
        log(tb, format!("table3/{model}/similarity"), &row.similarity)?;
        log(
            tb,
            format!("table3/{model}/dissimilarity"),
            &row.dissimilarity,
        )?;
    }
    Ok(aucs)
}

/// A name as one TensorBoard tag component: model references may be paths and row labels hold
/// spaces (`fggb (probe only)`), so each run of other characters becomes one `_`
/// (`fggb_probe_only`, `checkpoints_sface.safetensors`).
pub fn tag_safe(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() || "-.".contains(c) {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('_') {
            out.push('_');
        }
    }
    while out.ends_with('_') {
        out.pop();
    }
    out
}

fn hparams(r: &Results) -> BTreeMap<String, HParamValue> {
    let m = &r.models[0];
    let mut h = BTreeMap::new();
    h.insert("model".into(), HParamValue::String(m.name.clone()));
    h.insert(
        "models".into(),
        HParamValue::String(
            r.models
                .iter()
                .map(|m| m.name.as_str())
                .collect::<Vec<_>>()
                .join(","),
        ),
    );
    h.insert("methods".into(), HParamValue::String(r.methods.join(",")));
    h.insert(
        "threshold".into(),
        HParamValue::Number(f64::from(m.threshold)),
    );
    h.insert("fill".into(), HParamValue::Number(f64::from(m.fill)));
    h.insert(
        "perturb".into(),
        HParamValue::String(r.perturb.as_str().into()),
    );
    let step = r.steps.get(1).copied().unwrap_or(100.0);
    h.insert("step".into(), HParamValue::Number(step));
    h.insert(
        "pairs_selected".into(),
        HParamValue::Number(r.pairs.selected as f64),
    );
    h
}

/// One plot per table and mode, a line per method (Tables I, II) or backbone (Table III).
fn plots(r: &Results) -> Vec<(String, RgbImage)> {
    let mut out = Vec::new();
    let label = |name: &str, auc: Option<f64>, n: usize| match auc {
        Some(a) => format!("{name}  AUC {a:.2}  (n={n})"),
        None => format!("{name}  n/a"),
    };
    for (name, number, t) in [("table1", "I", &r.table1), ("table2", "II", &r.table2)] {
        for mode in ["deletion", "insertion"] {
            let series: Vec<Series> = t
                .rows
                .iter()
                .map(|row| {
                    let (ys, auc) = pick(&row.cell, mode);
                    Series {
                        label: label(&row.method, auc, row.cell.pairs),
                        xs: &r.steps[..ys.len()],
                        ys,
                    }
                })
                .collect();
            let (head, detail) = t.title_parts(number);
            let head = format!("{head}: {mode}");
            out.push((
                format!("{name}-{mode}"),
                draw::curve_plot(&[&head, &detail], "pixels perturbed (%)", &series),
            ));
        }
    }
    for kind in ["similarity", "dissimilarity"] {
        for mode in ["deletion", "insertion"] {
            let series: Vec<Series> = r
                .table3
                .iter()
                .map(|row| {
                    let cell = if kind == "similarity" {
                        &row.similarity
                    } else {
                        &row.dissimilarity
                    };
                    let (ys, auc) = pick(cell, mode);
                    Series {
                        label: label(&row.model, auc, cell.pairs),
                        xs: &r.steps[..ys.len()],
                        ys,
                    }
                })
                .collect();
            let title = format!("Table III: FGGB {kind} maps across backbones: {mode}");
            out.push((
                format!("table3-{kind}-{mode}"),
                draw::curve_plot(&[&title], "pixels perturbed (%)", &series),
            ));
        }
    }
    out
}

fn pick<'a>(cell: &'a Cell, mode: &str) -> (&'a [f64], Option<f64>) {
    if mode == "deletion" {
        (&cell.deletion, cell.deletion_auc)
    } else {
        (&cell.insertion, cell.insertion_auc)
    }
}

/// Per `model/method`: (explanations, seconds per explanation, forward images and backward rows
/// per explanation, Deletion/Insertion seconds per pair).
fn cost_rows(t: &Timings) -> Vec<(String, u64, f64, f64, f64, f64)> {
    t.explain_s
        .iter()
        .map(|(key, secs)| {
            let n = t.explanations.get(key).copied().unwrap_or(0);
            let per = |v: f64| if n > 0 { v / n as f64 } else { f64::NAN };
            (
                key.clone(),
                n,
                per(*secs),
                per(t.forward_images.get(key).copied().unwrap_or(0) as f64),
                per(t.backward_rows.get(key).copied().unwrap_or(0) as f64),
                per(t.curves_s.get(key).copied().unwrap_or(0.0)),
            )
        })
        .collect()
}

/// Markdown: what one explanation (a pair: maps for both faces) costs per method, measured in
/// this run. Seconds depend on the machine; passes do not.
pub fn cost_table(t: &Timings) -> String {
    let mut s = String::from(
        "## Cost per explanation (this run; both faces of a pair)\n\n| model/method | explanations | seconds | forward images | backward rows | Deletion+Insertion seconds |\n|---|---:|---:|---:|---:|---:|\n",
    );
    for (key, n, secs, fwd, bwd, curves) in cost_rows(t) {
        s.push_str(&format!("| {key} | {n} | {secs:.3} | {fwd:.0} | {bwd:.0} | {curves:.3} |\n"));
    }
    s.push_str("\nForward images and backward rows count passes through the backbone only (DFV's decoder passes, 2 x (N+1) per pair, are not included).\n");
    s
}

/// `summary.md`: one row per method of the first backbone with its Table I and Table II AUCs
/// and what one explanation cost. Seconds come from this machine (a merge sums its shards'), so
/// unlike `tables.md` this file is not reproducible bit for bit.
pub fn summary_table(r: &Results, rows: &[Row], t: &Timings) -> String {
    let model = &r.table1.model;
    let mut s = format!(
        "# xfv-benchmark summary ({model}, tau = {})\n\n\
         Deletion (lower is better) and Insertion (higher is better) AUCs in %; similarity maps on \
         {} genuine pairs accepted, dissimilarity maps on {} impostor pairs rejected. Cost of one \
         explanation (maps for both faces) measured in this run; probe-only rows reuse their \
         method's maps.\n\n\
         | Method | Sim. Deletion | Sim. Insertion | Dissim. Deletion | Dissim. Insertion | s / explanation | forward images | backward rows |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|\n",
        r.table1.threshold,
        r.table1.pairs(),
        r.table2.pairs(),
    );
    let costs = cost_rows(t);
    for (row, typed) in r.table1.rows.iter().zip(rows) {
        let dissim = r.table2.rows.iter().find(|d| d.method == row.method).map(|d| &d.cell);
        let key = format!("{model}/{}", typed.method);
        let cost = costs.iter().find(|c| c.0 == key);
        let fmt = |v: Option<f64>, digits: usize| v.filter(|x| x.is_finite()).map_or_else(|| "n/a".into(), |x| format!("{x:.digits$}"));
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            row.method,
            report::num(row.cell.deletion_auc),
            report::num(row.cell.insertion_auc),
            report::num(dissim.and_then(|c| c.deletion_auc)),
            report::num(dissim.and_then(|c| c.insertion_auc)),
            fmt(cost.map(|c| c.2), 3),
            fmt(cost.map(|c| c.3), 0),
            fmt(cost.map(|c| c.4), 0),
        );
    }
    s
}

fn cost_csv(t: &Timings) -> String {
    let mut s = String::from("method,explanations,seconds_per_explanation,forward_images,backward_rows,curve_seconds_per_pair\n");
    for (key, n, secs, fwd, bwd, curves) in cost_rows(t) {
        s.push_str(&format!("{key},{n},{secs},{fwd},{bwd},{curves}\n"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Variant;
    use crate::records::{MethodCurves, ModelInfo, ModelPairRecord, PairRecord, RowCurves};
    use crate::config::EXPERIMENT;
    use crate::records::Shard;
    use crate::shards::{merge_records, ShardDir};
    use std::path::PathBuf;
    use facelens_eval::deletion::{MapKind, Perturb};

    /// Six pairs: genuine ones accepted at p = 0 and rejected from p = 50; impostors the reverse.
    fn records(shard: Shard) -> Records {
        let records = (0..6)
            .filter(|&i| shard.owns(i))
            .map(|i| {
                let genuine = i % 2 == 0;
                let (hi, lo) = (0.9f32, 0.1f32);
                let curve = if genuine {
                    vec![hi, hi, lo]
                } else {
                    vec![lo, hi, hi]
                };
                let rows = vec![RowCurves {
                    row: Row::configured("fggb"),
                    perturb: Perturb::Both,
                    curves: MethodCurves { deletion: curve.clone(), insertion: curve },
                }];
                PairRecord {
                    index: i,
                    line: i + 2,
                    fold: 1,
                    a: format!("a{i}"),
                    b: format!("b{i}"),
                    genuine,
                    skipped: None,
                    models: vec![ModelPairRecord {
                        clean_score: if genuine { hi } else { lo },
                        kind: Some(if genuine {
                            MapKind::Similarity
                        } else {
                            MapKind::Dissimilarity
                        }),
                        rows,
                    }],
                }
            })
            .collect();
        Records {
            experiment: EXPERIMENT.into(),
            config_sha256: "abcdef0123".into(),
            shard,
            selected: 6,
            models: vec![ModelInfo {
                name: "toy".into(),
                threshold: 0.5,
                threshold_source: "test".into(),
                fill: -1.0,
                road: None,
                embedding_dim: 4,
                weights_sha256: "00".into(),
            }],
            rows: vec![Row::configured("fggb")],
            table3_method: "fggb".into(),
            steps: vec![0.0, 50.0, 100.0],
            perturb: Perturb::Both,
            records,
        }
    }

    fn shard_dir(i: usize, n: usize) -> ShardDir {
        let shard = Shard { index: i, count: n };
        ShardDir {
            path: PathBuf::from(format!("s{i}")),
            config_text: "x = 1\n".into(),
            records: records(shard),
        }
    }

    #[test]
    fn merged_shards_equal_the_whole() {
        let whole = records(Shard::WHOLE);
        let merged =
            merge_records(&[shard_dir(3, 3), shard_dir(1, 3), shard_dir(2, 3)]).expect("merge");
        assert_eq!(merged, whole);
        let (a, b) = (
            report::build(&whole).expect("tables"),
            report::build(&merged).expect("tables"),
        );
        assert_eq!(
            serde_json::to_string(&a).expect("json"),
            serde_json::to_string(&b).expect("json")
        );
        // Genuine: correct, correct, wrong -> 50 * (1 + 1) / 2 + 50 * (1 + 0) / 2 = 75.
        assert_eq!(a.table1.rows[0].cell.deletion_auc, Some(75.0));
        // Impostors: correct, wrong, wrong -> 25.
        assert_eq!(a.table2.rows[0].cell.deletion_auc, Some(25.0));
        assert_eq!(a.table3[0].similarity, a.table1.rows[0].cell);
        assert_eq!(
            (
                a.pairs.per_model[0].similarity,
                a.pairs.per_model[0].dissimilarity
            ),
            (3, 3)
        );
        assert!(
            a.markdown().contains("| fggb | 75.00 | 75.00 | 3 |"),
            "{}",
            a.markdown()
        );
        assert_eq!(
            a.table1.csv(),
            "method,pairs,deletion_auc,insertion_auc\nfggb,3,75,75\n"
        );
    }

    #[test]
    fn merge_refuses_incomplete_or_mixed_shards() {
        let err = merge_records(&[shard_dir(1, 3), shard_dir(3, 3)])
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing shards: 2/3"), "{err}");
        let err = merge_records(&[shard_dir(1, 2), shard_dir(1, 2), shard_dir(2, 2)])
            .unwrap_err()
            .to_string();
        assert!(err.contains("appears twice"), "{err}");
        let mut other = shard_dir(2, 2);
        other.records.config_sha256 = "ffff00001111".into();
        let err = merge_records(&[shard_dir(1, 2), other])
            .unwrap_err()
            .to_string();
        assert!(err.contains("another config"), "{err}");
        let err = merge_records(&[shard_dir(1, 2), shard_dir(2, 3)])
            .unwrap_err()
            .to_string();
        assert!(err.contains("shard"), "{err}");
        let mut lost = shard_dir(2, 2);
        lost.records.records.pop();
        assert!(merge_records(&[shard_dir(1, 2), lost]).is_err());
    }

    #[test]
    fn summary_joins_both_tables_with_the_cost_of_each_method() {
        let mut r = records(Shard::WHOLE);
        let probe = Row { method: "fggb".into(), variant: Variant::ProbeOnly };
        for p in &mut r.records {
            let mut curves = p.models[0].rows[0].clone();
            curves.row = probe.clone();
            p.models[0].rows.push(curves);
        }
        r.rows.push(probe);
        let res = report::build(&r).expect("tables");
        let mut t = Timings::default();
        t.explain_s.insert("toy/fggb".into(), 30.0);
        t.explanations.insert("toy/fggb".into(), 6);
        t.forward_images.insert("toy/fggb".into(), 12);
        t.backward_rows.insert("toy/fggb".into(), 48);
        let s = summary_table(&res, &r.rows, &t);
        assert!(s.contains("| fggb | 75.00 | 75.00 | 25.00 | 25.00 | 5.000 | 2 | 8 |"), "{s}");
        assert!(s.contains("| fggb (probe only) | 75.00 | 75.00 | 25.00 | 25.00 | 5.000 | 2 | 8 |"), "{s}");
        let s = summary_table(&res, &r.rows, &Timings::default());
        assert!(s.contains("| fggb | 75.00 | 75.00 | 25.00 | 25.00 | n/a | n/a | n/a |"), "{s}");
    }

    #[test]
    fn a_table_without_pairs_says_so() {
        let mut r = records(Shard::WHOLE);
        r.records.retain(|p| p.genuine);
        let res = report::build(&r).expect("tables");
        assert_eq!(res.table2.rows[0].cell.pairs, 0);
        assert_eq!(res.table2.rows[0].cell.deletion_auc, None);
        assert!(res.markdown().contains("| fggb | n/a | n/a | 0 |"));
        assert!(!plots(&res).is_empty());
    }
}
