//! `decoder-ablation`: which parts of the decoder's recipe matter (DESIGN §9)?
//!
//! Each variant is one `decoder-train` run — the base config plus the variant's overrides — so a
//! variant is exactly what `facelens train-decoder --config BASE --set ...` would train. The runs
//! live under this ablation's run directory; their held-out LFW results are gathered into one
//! table (markdown, CSV, JSON) and logged to TensorBoard next to each variant's own event file.
//!
//! ```text
//! decoder-ablation --config experiments/decoder-ablation/cpu.toml [--only NAME]... [--device cpu]
//! ```

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Parser;
use decoder_train::train::{self, Start};
use facelens_board::{RunDir, SummaryWriter};
use serde::{Deserialize, Serialize};

const EXPERIMENT: &str = "decoder-ablation";

#[derive(Parser)]
#[command(version, about = "Decoder ablation: one decoder-train run per variant, one table")]
struct Cli {
    /// Ablation config (TOML), e.g. experiments/decoder-ablation/ci.toml.
    #[arg(long)]
    config: PathBuf,
    /// Override a key of the ablation config (repeatable), e.g. `--set 'set=["train.steps=10"]'`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Run only the named variants (repeatable).
    #[arg(long)]
    only: Vec<String>,
    /// Override every variant's device: auto | cpu | cuda | cuda:N.
    #[arg(long)]
    device: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// decoder-train config that every variant starts from.
    base: PathBuf,
    /// Overrides applied to the base before each variant's own.
    #[serde(default)]
    set: Vec<String>,
    runs_root: PathBuf,
    variants: Vec<Variant>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Variant {
    name: String,
    #[serde(default)]
    set: Vec<String>,
}

/// One row of the table: a variant's held-out LFW metrics and its cost.
#[derive(Debug, Clone, Serialize)]
struct Row {
    variant: String,
    overrides: Vec<String>,
    run_dir: PathBuf,
    identity_cos: f64,
    type1: Vec<(String, f64)>,
    type2: Vec<(String, f64)>,
    psnr_db: f64,
    ssim: f64,
    faces: u64,
    img_per_s: f64,
    train_seconds: f64,
}

fn number(v: &serde_json::Value, path: &[&str], file: &Path) -> Result<f64> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p).with_context(|| format!("{}: no `{}`", file.display(), path.join(".")))?;
    }
    cur.as_f64().with_context(|| format!("{}: `{}` is not a number", file.display(), path.join(".")))
}

fn rates(v: &serde_json::Value, key: &str) -> Vec<(String, f64)> {
    v["eval"][key]
        .as_object()
        .map(|m| m.iter().filter_map(|(k, x)| Some((k.clone(), x.as_f64()?))).collect())
        .unwrap_or_default()
}

fn read_row(variant: &Variant, overrides: Vec<String>, run_dir: &Path) -> Result<Row> {
    let file = run_dir.join("results.json");
    let text = std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("{} is not JSON", file.display()))?;
    Ok(Row {
        variant: variant.name.clone(),
        overrides,
        run_dir: run_dir.to_path_buf(),
        identity_cos: number(&v, &["eval", "identity_cos_mean"], &file)?,
        type1: rates(&v, "type1_success"),
        type2: rates(&v, "type2_success"),
        psnr_db: number(&v, &["eval", "psnr_mean"], &file)?,
        ssim: number(&v, &["eval", "ssim_mean"], &file)?,
        faces: number(&v, &["eval", "faces"], &file)? as u64,
        img_per_s: number(&v, &["images_per_second_this_process"], &file)?,
        train_seconds: number(&v, &["train_seconds_this_process"], &file)?,
    })
}

fn pct(rates: &[(String, f64)]) -> String {
    rates.iter().map(|(k, r)| format!("{:.1} % @{}", 100.0 * r, k.replace("far_", "FAR ").replace("pct", "%").replace("0_1", "0.1"))).collect::<Vec<_>>().join(", ")
}

fn markdown(rows: &[Row]) -> String {
    let mut s = String::from(
        "| variant | identity cos | type I success | type II success | PSNR (dB) | SSIM | LFW faces | img/s | train s |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        s.push_str(&format!(
            "| {} | {:.4} | {} | {} | {:.2} | {:.4} | {} | {:.1} | {:.0} |\n",
            r.variant,
            r.identity_cos,
            pct(&r.type1),
            pct(&r.type2),
            r.psnr_db,
            r.ssim,
            r.faces,
            r.img_per_s,
            r.train_seconds
        ));
    }
    s
}

fn csv(rows: &[Row]) -> String {
    let names: Vec<String> = rows.first().map(|r| r.type1.iter().map(|(k, _)| k.clone()).collect()).unwrap_or_default();
    let mut s = String::from("variant,identity_cos,psnr_db,ssim,faces,img_per_s,train_seconds");
    for n in &names {
        s.push_str(&format!(",type1_{n},type2_{n}"));
    }
    s.push('\n');
    for r in rows {
        s.push_str(&format!(
            "\"{}\",{:.6},{:.4},{:.6},{},{:.3},{:.1}",
            r.variant.replace('"', "'"),
            r.identity_cos,
            r.psnr_db,
            r.ssim,
            r.faces,
            r.img_per_s,
            r.train_seconds
        ));
        for n in &names {
            let get = |v: &[(String, f64)]| v.iter().find(|(k, _)| k == n).map(|(_, x)| *x).unwrap_or(f64::NAN);
            s.push_str(&format!(",{:.6},{:.6}", get(&r.type1), get(&r.type2)));
        }
        s.push('\n');
    }
    s
}

fn log_tensorboard(tb: &mut SummaryWriter, rows: &[Row], table: &str) -> Result<()> {
    tb.add_text("ablation/table", table, 0)?;
    for (i, r) in rows.iter().enumerate() {
        let step = i as i64;
        tb.add_text("ablation/variant", &format!("{step}: {} ({})", r.variant, r.run_dir.display()), step)?;
        tb.add_scalar("ablation/identity_cos", r.identity_cos, step)?;
        tb.add_scalar("ablation/psnr_db", r.psnr_db, step)?;
        tb.add_scalar("ablation/ssim", r.ssim, step)?;
        for (k, v) in &r.type1 {
            tb.add_scalar(&format!("ablation/type1_success/{k}"), *v, step)?;
        }
        for (k, v) in &r.type2 {
            tb.add_scalar(&format!("ablation/type2_success/{k}"), *v, step)?;
        }
    }
    Ok(())
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let resolved = facelens_board::config::load::<Config, _, _>(&cli.config, cli.set.iter().map(String::as_str))
        .with_context(|| format!("reading config {}", cli.config.display()))?;
    let cfg = resolved.value;
    if cfg.variants.is_empty() {
        bail!("{}: no [[variants]]", cli.config.display());
    }
    for name in &cli.only {
        if !cfg.variants.iter().any(|v| &v.name == name) {
            bail!("--only {name}: no such variant in {}", cli.config.display());
        }
    }
    if !cfg.base.is_file() {
        bail!("{}: base config {} not found", cli.config.display(), cfg.base.display());
    }
    let run = RunDir::create(&cfg.runs_root, EXPERIMENT, &resolved.text)?;
    eprintln!("ablation run directory: {}", run.path().display());
    let mut tb = run.summary_writer()?;
    let mut rows = Vec::new();
    for variant in cfg.variants.iter().filter(|v| cli.only.is_empty() || cli.only.contains(&v.name)) {
        let mut overrides = cfg.set.clone();
        overrides.extend(variant.set.iter().cloned());
        // Variant runs are nested in this ablation's run directory.
        let mut all = overrides.clone();
        all.push(format!("runs_root={}", toml::Value::String(run.path().display().to_string())));
        eprintln!("== variant `{}`: {}", variant.name, overrides.join(" "));
        let outcome = train::run(Start::Fresh { config: cfg.base.clone(), overrides: all }, cli.device.as_deref())?;
        if !outcome.completed {
            bail!("interrupted during variant `{}` ({}); resume it with `decoder-train --resume`", variant.name, outcome.run_dir.display());
        }
        rows.push(read_row(variant, overrides, &outcome.run_dir)?);
    }
    let table = markdown(&rows);
    run.write_json("table.json", &rows)?;
    facelens_board::run_dir::write_atomic(&run.path().join("table.md"), table.as_bytes())?;
    facelens_board::run_dir::write_atomic(&run.path().join("table.csv"), csv(&rows).as_bytes())?;
    log_tensorboard(&mut tb, &rows, &table)?;
    tb.close()?;
    run.write_results(&serde_json::json!({ "experiment": EXPERIMENT, "rows": rows }))?;
    println!("{table}");
    eprintln!("table: {}", run.path().join("table.md").display());
    Ok(())
}
