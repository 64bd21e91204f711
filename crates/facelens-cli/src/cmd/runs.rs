//! `facelens runs list|show`: what experiment runs exist and what they hold.
//!
//! Scanning and summarising live in `facelens_board::runs`; this file only prints.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use facelens_board::runs::{self, RunDetails, RunSummary};
use serde_json::Value;

#[derive(Subcommand)]
pub enum RunsCommand {
    /// List run directories, oldest first.
    List(ListArgs),
    /// Show one run: provenance, config, results summary, TensorBoard scalars, figures.
    Show(ShowArgs),
}

#[derive(Args)]
pub struct ListArgs {
    /// Root of the run directories (`<root>/<experiment>/<run id>/`), or one experiment's folder.
    #[arg(long, default_value = "runs")]
    pub root: PathBuf,
    /// Only this experiment's runs.
    #[arg(long)]
    pub experiment: Option<String>,
    /// Print the runs as a JSON array.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct ShowArgs {
    /// A run directory, or a run id (`[experiment/]id`, or a unique prefix of it) under --root.
    pub run: String,
    /// Root searched for run ids.
    #[arg(long, default_value = "runs")]
    pub root: PathBuf,
    /// Print everything as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// `writeln!` into a `String`, which cannot fail.
macro_rules! outln {
    ($out:expr, $($arg:tt)*) => {{
        let _ = writeln!($out, $($arg)*);
    }};
}

/// Writes to stdout in one go; a closed pipe (`facelens runs list | head`) is not an error.
fn emit(text: &str) -> Result<()> {
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        result => result.context("cannot write to stdout"),
    }
}

pub fn run(c: RunsCommand) -> Result<()> {
    match c {
        RunsCommand::List(a) => list(a),
        RunsCommand::Show(a) => show(a),
    }
}

fn list(a: ListArgs) -> Result<()> {
    let runs = runs::list_runs(&a.root, a.experiment.as_deref())?;
    if a.json {
        return emit(&(serde_json::to_string_pretty(&runs)? + "\n"));
    }
    if runs.is_empty() {
        eprintln!("no runs under {}", a.root.display());
        return Ok(());
    }
    let header = ["RUN ID", "EXPERIMENT", "START (UTC)", "GIT", "CONFIG", "STATUS", "SUMMARY"];
    let rows: Vec<[String; 7]> = runs.iter().map(list_row).collect();
    emit(&table(&header, &rows))
}

fn list_row(r: &RunSummary) -> [String; 7] {
    let status = if r.issues.is_empty() {
        r.status.label().to_owned()
    } else {
        format!("{} ({} issues)", r.status.label(), r.issues.len())
    };
    let summary = r.summary.iter().map(|(k, v)| format!("{k}={}", fmt_value(v))).collect::<Vec<_>>().join(" ");
    [
        r.run_id.clone(),
        r.experiment.clone(),
        r.start_time_utc.as_deref().map_or_else(|| "?".into(), fmt_time),
        git_label(r),
        r.config_sha256.as_deref().map_or_else(|| "?".into(), |h| h.chars().take(8).collect()),
        status,
        summary,
    ]
}

/// `abc1234`, `abc1234-dirty`; `-` when the run was not in a git checkout, `?` without meta.json.
fn git_label(r: &RunSummary) -> String {
    let Some(git) = r.meta.as_ref().map(|m| &m.git) else { return "?".into() };
    let Some(rev) = &git.revision else { return "-".into() };
    let short: String = rev.chars().take(7).collect();
    match git.dirty {
        Some(true) => format!("{short}-dirty"),
        _ => short,
    }
}

/// `2024-03-01T09:00:00Z` -> `2024-03-01 09:00:00`.
fn fmt_time(rfc3339: &str) -> String {
    rfc3339.trim_end_matches('Z').replacen('T', " ", 1)
}

/// Numbers with at most 4 decimals (trailing zeros trimmed), strings unquoted.
fn fmt_value(v: &Value) -> String {
    match v {
        Value::Number(n) if n.is_f64() => fmt_f64(n.as_f64().unwrap_or(f64::NAN)),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn fmt_f64(x: f64) -> String {
    if !x.is_finite() {
        x.to_string()
    } else if x != 0.0 && (x.abs() >= 1e6 || x.abs() < 1e-3) {
        format!("{x:.3e}")
    } else {
        let s = format!("{x:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

/// Left-aligned columns separated by two spaces; the last column is not padded.
fn table<const N: usize>(header: &[&str; N], rows: &[[String; N]]) -> String {
    let mut widths = header.map(str::len);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut push = |cells: Vec<&str>| {
        let mut text = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == N {
                text.push_str(cell);
            } else {
                let _ = write!(text, "{cell:<w$}  ");
            }
        }
        outln!(out, "{}", text.trim_end());
    };
    push(header.to_vec());
    for row in rows {
        push(row.iter().map(String::as_str).collect());
    }
    out
}

fn show(a: ShowArgs) -> Result<()> {
    let dir = runs::find_run(&a.root, &a.run)?;
    let d = runs::details(&dir).with_context(|| format!("cannot read run {}", dir.display()))?;
    // `list` shows damaged runs with their issues; `show` is about one run and must not pass
    // off a missing or corrupt meta.json as `"meta": null`.
    if d.summary.meta.is_none() {
        anyhow::bail!("run {}: {}", dir.display(), d.summary.issues.join("; "));
    }
    if a.json {
        emit(&(serde_json::to_string_pretty(&d)? + "\n"))
    } else {
        emit(&details_text(&d))
    }
}

fn details_text(d: &RunDetails) -> String {
    let mut out = String::new();
    let s = &d.summary;
    outln!(out, "run         {}/{}", s.experiment, s.run_id);
    outln!(out, "path        {}", s.path.display());
    outln!(out, "started     {}", s.start_time_utc.as_deref().map_or_else(|| "?".into(), |t| fmt_time(t) + " UTC"));
    outln!(out, "git         {}", git_label(s));
    outln!(out, "config      {}", s.config_sha256.as_deref().unwrap_or("?"));
    if let Some(m) = &s.meta {
        outln!(out, "command     {}", m.command_line.join(" "));
        let cpu = m.machine.cpu_model.as_deref().unwrap_or("unknown CPU");
        outln!(out, "machine     {} ({cpu}, {} cores), device {}", m.machine.hostname, m.machine.cpu_cores, m.machine.device);
    }
    outln!(out, "status      {}", s.status.label());
    for issue in &s.issues {
        outln!(out, "issue       {issue}");
    }

    if let Some(config) = &d.config_toml {
        outln!(out, "\nconfig.toml:");
        for l in config.lines() {
            outln!(out, "  {l}");
        }
    }
    if !d.results_keys.is_empty() {
        outln!(out, "\nresults.json keys: {}", d.results_keys.join(", "));
    }
    if !s.summary.is_empty() {
        outln!(out, "results.json summary:");
        let rows: Vec<[String; 2]> = s.summary.iter().map(|(k, v)| [format!("  {k}"), fmt_value(v)]).collect();
        out.push_str(&table(&["", ""], &rows));
    }

    outln!(out, "\nevent files ({}):", d.event_files.len());
    for f in &d.event_files {
        outln!(out, "  {}", f.file_name().map_or_else(|| f.display().to_string(), |n| n.to_string_lossy().into_owned()));
    }
    if !d.scalars.is_empty() {
        outln!(out, "\nscalars ({} tags):", d.scalars.len());
        let opt = |x: Option<f32>| x.map_or_else(|| "-".into(), |x| fmt_f64(f64::from(x)));
        let rows: Vec<[String; 6]> = d
            .scalars
            .iter()
            .map(|t| {
                [
                    format!("  {}", t.tag),
                    t.points.to_string(),
                    t.last_step.to_string(),
                    opt(Some(t.last_value)),
                    opt(t.min),
                    opt(t.max),
                ]
            })
            .collect();
        out.push_str(&table(&["  TAG", "POINTS", "LAST STEP", "LAST", "MIN", "MAX"], &rows));
    }
    if !d.other_tags.is_empty() {
        outln!(out, "\nother tags ({}):", d.other_tags.len());
        let rows: Vec<[String; 4]> = d
            .other_tags
            .iter()
            .map(|t| {
                [format!("  {}", t.tag), t.kind.label().to_owned(), t.points.to_string(), t.last_step.to_string()]
            })
            .collect();
        out.push_str(&table(&["  TAG", "KIND", "POINTS", "LAST STEP"], &rows));
    }
    outln!(out, "\npng files ({}):", d.png_files.len());
    for p in &d.png_files {
        outln!(out, "  {}", p.display());
    }
    out
}
