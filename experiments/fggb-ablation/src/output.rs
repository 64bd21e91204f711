//! The run directory: records, timings, the table (JSON, Markdown, CSV), plots, and TensorBoard
//! events — one event file in the run directory (config and table as text) and one TensorBoard run
//! per variant under `variants/<name>/`, so the dashboard overlays the variants' curves and lists
//! their switches as hyperparameters. Every file is written atomically.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use facelens_board::{HParamValue, RunDir, SummaryWriter};
use image::RgbImage;
use xfv_benchmark::bench::Records;
use xfv_benchmark::draw::{curve_plot, Series};
use xfv_benchmark::output::{tag_safe, write_png, write_text, RECORDS_FILE, TIMINGS_FILE};
use xfv_benchmark::report::Cell;

use crate::ablation::Timings;
use crate::table::{Row, Table};

pub const TABLE_MD: &str = "table.md";
pub const TABLE_CSV: &str = "table.csv";
/// Folder of the per-variant TensorBoard runs.
pub const VARIANTS_DIR: &str = "variants";
pub const PLOTS_DIR: &str = "plots";

/// The kinds of map and modes, as TensorBoard tag parts.
const KINDS: [&str; 2] = ["similarity", "dissimilarity"];
const MODES: [&str; 2] = ["deletion", "insertion"];

fn cell<'a>(row: &'a Row, kind: &str) -> &'a Cell {
    if kind == "similarity" {
        &row.similarity
    } else {
        &row.dissimilarity
    }
}

fn curve<'a>(c: &'a Cell, mode: &str) -> (&'a [f64], Option<f64>) {
    if mode == "deletion" {
        (&c.deletion, c.deletion_auc)
    } else {
        (&c.insertion, c.insertion_auc)
    }
}

/// Writes everything and returns nothing new: `table` already holds the results.
pub fn write_run(
    run: &RunDir,
    config_text: &str,
    records: &Records,
    timings: &Timings,
    table: &Table,
) -> Result<()> {
    let dir = run.path();
    run.write_json(RECORDS_FILE, records)?;
    run.write_json(TIMINGS_FILE, timings)?;
    run.write_results(table)?;
    let markdown = table.markdown();
    write_text(&dir.join(TABLE_MD), &markdown)?;
    write_text(&dir.join(TABLE_CSV), &table.csv())?;

    let mut tb = run.summary_writer()?;
    tb.add_text("config", &format!("```toml\n{config_text}\n```"), 0)?;
    tb.add_text("table", &markdown, 0)?;
    for (name, img) in plots(table) {
        write_png(&dir.join(PLOTS_DIR).join(format!("{name}.png")), &img)?;
        tb.add_image(&format!("plots/{name}"), &img, 0)?;
    }
    tb.close()?;

    for row in &table.rows {
        let logdir = dir.join(VARIANTS_DIR).join(tag_safe(&row.variant));
        let mut w = SummaryWriter::create(&logdir)
            .with_context(|| format!("creating the TensorBoard run {}", logdir.display()))?;
        log_variant(&mut w, table, row)?;
        w.close()?;
    }
    Ok(())
}

/// One variant's TensorBoard run: accuracy per step (step = p in %), AUCs, cost, switches.
fn log_variant(w: &mut SummaryWriter, table: &Table, row: &Row) -> Result<()> {
    let mut metrics = Vec::new();
    for kind in KINDS {
        for mode in MODES {
            let (ys, auc) = curve(cell(row, kind), mode);
            for (p, y) in table.steps.iter().zip(ys) {
                w.add_scalar(&format!("{kind}/{mode}"), *y, p.round() as i64)?;
            }
            if let Some(a) = auc {
                let tag = format!("auc/{kind}/{mode}");
                w.add_scalar(&tag, a, 0)?;
                metrics.push(tag);
            }
        }
    }
    w.add_scalar("seconds_per_pair", row.seconds_per_pair, 0)?;
    metrics.push("seconds_per_pair".into());
    let mut h = BTreeMap::new();
    h.insert("variant".into(), HParamValue::String(row.variant.clone()));
    h.insert(
        "normalised_embedding".into(),
        HParamValue::Bool(row.normalised_embedding),
    );
    h.insert(
        "channel_reduction".into(),
        HParamValue::String(
            serde_json::to_value(row.channel_reduction)?
                .as_str()
                .unwrap_or_default()
                .to_string(),
        ),
    );
    h.insert(
        "per_dimension_norm".into(),
        HParamValue::Bool(row.per_dimension_norm),
    );
    h.insert("blur".into(), HParamValue::Bool(row.blur));
    h.insert("tau".into(), HParamValue::String(row.tau.as_str().into()));
    h.insert(
        "tau_value".into(),
        HParamValue::Number(f64::from(row.tau_value)),
    );
    let refs: Vec<&str> = metrics.iter().map(String::as_str).collect();
    w.add_hparams(&h, &refs)?;
    Ok(())
}

/// One plot per kind of map and mode, a line per variant.
fn plots(table: &Table) -> Vec<(String, RgbImage)> {
    let mut out = Vec::new();
    for kind in KINDS {
        for mode in MODES {
            let series: Vec<Series> = table
                .rows
                .iter()
                .map(|row| {
                    let c = cell(row, kind);
                    let (ys, auc) = curve(c, mode);
                    Series {
                        label: match auc {
                            Some(a) => format!("{}  AUC {a:.2}  (n={})", row.variant, c.pairs),
                            None => format!("{}  n/a", row.variant),
                        },
                        xs: &table.steps[..ys.len()],
                        ys,
                    }
                })
                .collect();
            let title = format!("FGGB ablation: {kind} maps, {mode}");
            let detail = format!(
                "{} at tau = {}",
                table.model, table.thresholds.best_accuracy
            );
            out.push((
                format!("{kind}-{mode}"),
                curve_plot(&[&title, &detail], "pixels perturbed (%)", &series),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::{build, tests as toy};

    #[test]
    fn a_run_directory_holds_tables_plots_and_one_tensorboard_run_per_variant() {
        let root = tempfile::tempdir().expect("tempdir");
        let records = toy::records();
        let timings = toy::timings();
        let table = build(&records, &toy::variants(), toy::THRESHOLDS, &timings).expect("table");
        let run = RunDir::create_with_device(root.path(), "fggb-ablation", "x = 1\n", "cpu")
            .expect("run dir");
        write_run(&run, "x = 1\n", &records, &timings, &table).expect("written");
        let dir = run.path();
        for f in [
            "config.toml",
            "meta.json",
            "results.json",
            RECORDS_FILE,
            TIMINGS_FILE,
            TABLE_MD,
            TABLE_CSV,
        ] {
            assert!(dir.join(f).is_file(), "{f}");
        }
        let back: Table =
            serde_json::from_slice(&std::fs::read(dir.join("results.json")).expect("read"))
                .expect("results.json is the table");
        assert_eq!(back, table);
        assert_eq!(
            std::fs::read_dir(dir.join(PLOTS_DIR))
                .expect("plots")
                .count(),
            4
        );
        for v in ["spec", "raw"] {
            let events = facelens_board::reader::event_files(&dir.join(VARIANTS_DIR).join(v))
                .expect("variant run");
            assert_eq!(events.len(), 1, "{v}");
            let tags: Vec<String> = facelens_board::reader::read_event_file(&events[0])
                .expect("events")
                .into_iter()
                .filter_map(|e| match e.what {
                    Some(facelens_board::proto::event::What::Summary(s)) => Some(s.value),
                    _ => None,
                })
                .flatten()
                .map(|v| v.tag)
                .collect();
            for tag in [
                "similarity/deletion",
                "auc/dissimilarity/insertion",
                "seconds_per_pair",
            ] {
                assert!(
                    tags.iter().any(|t| t == tag),
                    "{v}: {tag} missing in {tags:?}"
                );
            }
        }
        assert_eq!(
            facelens_board::reader::event_files(dir)
                .expect("main")
                .len(),
            1
        );
    }
}
