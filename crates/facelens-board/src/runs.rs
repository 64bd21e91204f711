//! Finding and summarising run directories, for `facelens runs` and other tools.
//!
//! A run directory is what [`RunDir`](crate::RunDir) creates: a folder with
//! `meta.json` and/or `config.toml`, later `results.json`, event files and
//! figures. Runs live at `root/<experiment>/<run id>/`; a `root` that is
//! itself one experiment's folder works too.
//!
//! Scanning is forgiving: a run with an unreadable `meta.json`, a broken
//! `results.json` or a half-written event file is still listed, with the
//! problem recorded in [`RunSummary::issues`]. Only failing to read the
//! folders themselves is an error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use crate::config::config_hash;
use crate::error::{Error, Result};
use crate::proto::{event, summary::value::Kind};
use crate::reader;
use crate::run_dir::{RunMeta, CONFIG_FILE, META_FILE, RESULTS_FILE};
use crate::utc::UtcDateTime;

/// Key of the flat object in `results.json` whose entries `runs list` shows.
pub const SUMMARY_KEY: &str = "summary";

/// Whether a run has finished writing its results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunStatus {
    /// `results.json` exists and parses.
    Complete,
    /// No `results.json` (still running, crashed, or a shard of a sharded run).
    NoResults,
    /// `results.json` exists but is not valid JSON.
    BadResults,
}

impl RunStatus {
    /// Short label for tables.
    pub fn label(self) -> &'static str {
        match self {
            RunStatus::Complete => "complete",
            RunStatus::NoResults => "no results",
            RunStatus::BadResults => "bad results",
        }
    }
}

/// One line of `runs list`.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    /// The run directory.
    pub path: PathBuf,
    /// Experiment (the parent folder's name).
    pub experiment: String,
    /// Run id (the folder's name).
    pub run_id: String,
    /// Provenance, if `meta.json` was readable.
    pub meta: Option<RunMeta>,
    /// Start time (RFC 3339): from `meta.json`, else from the run id.
    pub start_time_utc: Option<String>,
    /// SHA-256 of `config.toml`: from `meta.json`, else computed.
    pub config_sha256: Option<String>,
    /// Whether `results.json` is there.
    pub status: RunStatus,
    /// Scalar entries (numbers, strings, booleans) of `results.json`'s
    /// `summary` object; empty when there is none.
    pub summary: BTreeMap<String, Value>,
    /// Problems met while reading the run (one message each).
    pub issues: Vec<String>,
}

/// Last state of one scalar series in a run's event files.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScalarSeries {
    /// Summary tag.
    pub tag: String,
    /// Number of values logged.
    pub points: usize,
    /// Step of the last value (file order).
    pub last_step: i64,
    /// The last value.
    pub last_value: f32,
    /// Smallest and largest finite values, if any were finite.
    pub min: Option<f32>,
    /// See [`min`](Self::min).
    pub max: Option<f32>,
}

/// What a non-scalar tag holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TagKind {
    /// Encoded images.
    Image,
    /// Histograms.
    Histogram,
    /// Tensors (text, ...).
    Tensor,
    /// Metadata only (e.g. hparams).
    Metadata,
}

impl TagKind {
    /// Short label for tables (the same word as in JSON).
    pub fn label(self) -> &'static str {
        match self {
            TagKind::Image => "image",
            TagKind::Histogram => "histogram",
            TagKind::Tensor => "tensor",
            TagKind::Metadata => "metadata",
        }
    }
}

/// A non-scalar tag in a run's event files.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TagInfo {
    /// Summary tag.
    pub tag: String,
    /// What it holds.
    pub kind: TagKind,
    /// Number of values logged.
    pub points: usize,
    /// Step of the last value.
    pub last_step: i64,
}

/// Everything `runs show` reports about one run.
#[derive(Debug, Clone, Serialize)]
pub struct RunDetails {
    /// The list-level facts (issues include those found below).
    #[serde(flatten)]
    pub summary: RunSummary,
    /// `config.toml`, verbatim.
    pub config_toml: Option<String>,
    /// Top-level keys of `results.json`.
    pub results_keys: Vec<String>,
    /// Event files read, oldest name first.
    pub event_files: Vec<PathBuf>,
    /// Scalar series, by tag.
    pub scalars: Vec<ScalarSeries>,
    /// Other tags, by tag.
    pub other_tags: Vec<TagInfo>,
    /// PNG files anywhere in the run directory, relative to it, sorted.
    pub png_files: Vec<PathBuf>,
}

/// Whether `dir` looks like a run directory (has `meta.json` or `config.toml`).
pub fn is_run_dir(dir: &Path) -> bool {
    dir.join(META_FILE).is_file() || dir.join(CONFIG_FILE).is_file()
}

/// Sub-directories of `dir`, skipping hidden ones (temp files, `.git`), sorted.
fn subdirs(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        // `DirEntry::file_type` does not follow symlinks, so loops are impossible.
        let is_dir = entry
            .file_type()
            .map_err(|e| Error::io(entry.path(), e))?
            .is_dir();
        if is_dir && !hidden {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// Every run directory under `root`: `root/<experiment>/<run>/`, plus
/// `root/<run>/` when `root` is itself an experiment folder. With
/// `experiment`, only that experiment's runs (an unknown name is an error
/// that lists the known ones).
pub fn find_run_dirs(root: &Path, experiment: Option<&str>) -> Result<Vec<PathBuf>> {
    let mut runs = Vec::new();
    let mut experiments = Vec::new();
    let root_name = file_name(root);
    for child in subdirs(root)? {
        if is_run_dir(&child) {
            if experiment.is_none_or(|e| e == root_name) {
                runs.push(child);
            }
            continue;
        }
        let name = file_name(&child);
        if experiment.is_none_or(|e| e == name) {
            runs.extend(subdirs(&child)?.into_iter().filter(|d| is_run_dir(d)));
        }
        experiments.push(name);
    }
    if let Some(wanted) = experiment {
        if runs.is_empty() && !experiments.iter().any(|e| e == wanted) {
            return Err(Error::UnknownExperiment {
                experiment: wanted.to_owned(),
                root: root.to_path_buf(),
                available: experiments,
            });
        }
    }
    Ok(runs)
}

/// Summaries of every run under `root` (see [`find_run_dirs`]), oldest first;
/// runs whose start time is unknown come last.
pub fn list_runs(root: &Path, experiment: Option<&str>) -> Result<Vec<RunSummary>> {
    let mut runs: Vec<RunSummary> = find_run_dirs(root, experiment)?
        .iter()
        .map(|d| summarize(d).0)
        .collect();
    runs.sort_by_cached_key(|r| {
        (
            r.start_time_utc.is_none(),
            r.start_time_utc.clone(),
            r.experiment.clone(),
            r.run_id.clone(),
        )
    });
    Ok(runs)
}

/// Reads and parses a JSON file; `Ok(None)` if it does not exist.
fn read_json(path: &Path) -> Result<Option<Value>> {
    let bytes = match facelens_core::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(path, e)),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| Error::ParseJson {
            path: path.to_path_buf(),
            source,
        })
}

/// The list-level summary of one run directory, plus the parsed
/// `results.json` and `config.toml` for callers that want more.
fn summarize(dir: &Path) -> (RunSummary, Option<Value>, Option<String>) {
    let mut issues = Vec::new();
    let meta_path = dir.join(META_FILE);
    let meta = match read_json(&meta_path) {
        Ok(Some(v)) => match serde_json::from_value::<RunMeta>(v) {
            Ok(m) => Some(m),
            Err(source) => {
                let err = Error::ParseJson {
                    path: meta_path,
                    source,
                };
                issues.push(err.to_string());
                None
            }
        },
        Ok(None) => {
            issues.push(format!("no {META_FILE}"));
            None
        }
        Err(e) => {
            issues.push(e.to_string());
            None
        }
    };

    let config_path = dir.join(CONFIG_FILE);
    let config = match facelens_core::fs::read_to_string(&config_path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            issues.push(format!("no {CONFIG_FILE}"));
            None
        }
        Err(e) => {
            issues.push(Error::io(&config_path, e).to_string());
            None
        }
    };

    let (status, results) = match read_json(&dir.join(RESULTS_FILE)) {
        Ok(Some(v)) => (RunStatus::Complete, Some(v)),
        Ok(None) => (RunStatus::NoResults, None),
        Err(e) => {
            issues.push(e.to_string());
            (RunStatus::BadResults, None)
        }
    };
    let summary = results
        .as_ref()
        .and_then(|r| r.get(SUMMARY_KEY))
        .and_then(Value::as_object)
        .map(|obj| {
            obj.iter()
                .filter(|(_, v)| !v.is_object() && !v.is_array())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default();

    let run_id = file_name(dir);
    let experiment = meta.as_ref().map_or_else(
        || dir.parent().map(file_name).unwrap_or_default(),
        |m| m.experiment.clone(),
    );
    let start_time_utc = meta
        .as_ref()
        .map(|m| m.start_time_utc.clone())
        .or_else(|| UtcDateTime::parse_compact_prefix(&run_id).map(|t| t.rfc3339()));
    let config_sha256 = meta
        .as_ref()
        .map(|m| m.config_sha256.clone())
        .or_else(|| config.as_deref().map(config_hash));
    let summary = RunSummary {
        path: dir.to_path_buf(),
        experiment,
        run_id,
        meta,
        start_time_utc,
        config_sha256,
        status,
        summary,
        issues,
    };
    (summary, results, config)
}

/// Resolves what a user typed to a run directory: a path to a run directory,
/// or a run id, `experiment/run id`, or a unique prefix of a run id under
/// `root`.
pub fn find_run(root: &Path, query: &str) -> Result<PathBuf> {
    let as_path = Path::new(query);
    if is_run_dir(as_path) {
        return Ok(as_path.to_path_buf());
    }
    let not_found = || Error::RunNotFound {
        query: query.to_owned(),
        root: root.to_path_buf(),
    };
    if !root.is_dir() {
        return Err(not_found());
    }
    let (experiment, id) = match query.split_once('/') {
        Some((e, id)) => (Some(e), id),
        None => (None, query),
    };
    let candidates = match find_run_dirs(root, experiment) {
        Ok(c) => c,
        Err(Error::UnknownExperiment { .. }) => return Err(not_found()),
        Err(e) => return Err(e),
    };
    let named = |d: &&PathBuf| {
        d.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .to_owned()
    };
    let exact: Vec<&PathBuf> = candidates.iter().filter(|d| named(d) == id).collect();
    let matches = if exact.is_empty() {
        candidates
            .iter()
            .filter(|d| named(d).starts_with(id))
            .collect()
    } else {
        exact
    };
    match matches.as_slice() {
        [] => Err(not_found()),
        [one] => Ok((*one).clone()),
        many => Err(Error::AmbiguousRun {
            query: query.to_owned(),
            matches: many
                .iter()
                .map(|d| {
                    let exp = d.parent().map(file_name).unwrap_or_default();
                    format!("{exp}/{}", file_name(d))
                })
                .collect(),
        }),
    }
}

/// Everything about one run directory: provenance, config, results keys,
/// the last value of every scalar in its event files, other tags, and its
/// PNG files. Problems with individual files land in the summary's issues.
pub fn details(dir: &Path) -> Result<RunDetails> {
    if !dir.is_dir() {
        return Err(Error::io(
            dir,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such run directory"),
        ));
    }
    let (mut summary, results, config_toml) = summarize(dir);
    let results_keys = match &results {
        Some(Value::Object(obj)) => obj.keys().cloned().collect(),
        _ => Vec::new(),
    };
    let event_files = reader::event_files(dir)?;
    let (scalars, other_tags) = tags(&event_files, &mut summary.issues)?;
    let mut png_files = Vec::new();
    collect_pngs(dir, Path::new(""), &mut png_files)?;
    png_files.sort();
    Ok(RunDetails {
        summary,
        config_toml,
        results_keys,
        event_files,
        scalars,
        other_tags,
        png_files,
    })
}

/// Scalar series and other tags of `files`, read in order (a torn tail is
/// reported as an issue, the events before it still count).
fn tags(files: &[PathBuf], issues: &mut Vec<String>) -> Result<(Vec<ScalarSeries>, Vec<TagInfo>)> {
    let mut scalars: BTreeMap<String, ScalarSeries> = BTreeMap::new();
    let mut others: BTreeMap<String, TagInfo> = BTreeMap::new();
    for file in files {
        let (events, problem) = reader::read_event_file_prefix(file)?;
        if let Some(p) = problem {
            issues.push(p.to_string());
        }
        for e in events {
            let Some(event::What::Summary(s)) = e.what else {
                continue;
            };
            for v in s.value {
                let kind = match v.kind {
                    Some(Kind::SimpleValue(x)) => {
                        let finite = x.is_finite().then_some(x);
                        let s = scalars.entry(v.tag.clone()).or_insert(ScalarSeries {
                            tag: v.tag,
                            points: 0,
                            last_step: e.step,
                            last_value: x,
                            min: None,
                            max: None,
                        });
                        s.points += 1;
                        s.last_step = e.step;
                        s.last_value = x;
                        if let Some(x) = finite {
                            s.min = Some(s.min.map_or(x, |m| m.min(x)));
                            s.max = Some(s.max.map_or(x, |m| m.max(x)));
                        }
                        continue;
                    }
                    Some(Kind::Image(_)) => TagKind::Image,
                    Some(Kind::Histo(_)) => TagKind::Histogram,
                    Some(Kind::Tensor(_)) => TagKind::Tensor,
                    None => TagKind::Metadata,
                };
                let t = others.entry(v.tag.clone()).or_insert(TagInfo {
                    tag: v.tag,
                    kind,
                    points: 0,
                    last_step: e.step,
                });
                t.points += 1;
                t.last_step = e.step;
            }
        }
    }
    Ok((
        scalars.into_values().collect(),
        others.into_values().collect(),
    ))
}

/// Appends `*.png` files under `base/rel` (paths relative to `base`).
fn collect_pngs(base: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let dir = base.join(rel);
    for entry in std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
        let entry = entry.map_err(|e| Error::io(&dir, e))?;
        let kind = entry.file_type().map_err(|e| Error::io(entry.path(), e))?;
        let rel = rel.join(entry.file_name());
        let name = entry.file_name().to_string_lossy().to_ascii_lowercase();
        if kind.is_dir() && !name.starts_with('.') {
            collect_pngs(base, &rel, out)?;
        } else if kind.is_file() && name.ends_with(".png") {
            out.push(rel);
        }
    }
    Ok(())
}
