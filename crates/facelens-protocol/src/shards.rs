//! Assembling a sharded run: finding shard directories, checking they form one run, and writing
//! the merged run directory with the tables an unsharded run writes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use facelens_board::RunDir;

use crate::bench::Panel;
use crate::config::EXPERIMENT;
use crate::error::{Error, Result};
use crate::output::{write_run, RECORDS_FILE, PANELS_DIR, TIMINGS_FILE};
use crate::records::{Records, Shard, Timings};
use crate::report::Results;

/// Shard run directories named on the command line: each argument is a run directory holding
/// `records.json`, or a folder whose immediate subfolders are searched for them (e.g.
/// `runs/job-123/xfv-benchmark`).
pub fn find_shards(args: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for a in args {
        if a.join(RECORDS_FILE).is_file() {
            out.push(a.clone());
            continue;
        }
        let entries = std::fs::read_dir(a)
            .map_err(|e| Error::io(a, "neither a shard run directory nor a folder of them", e))?;
        let mut found: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.join(RECORDS_FILE).is_file())
            .collect();
        if found.is_empty() {
            return Err(Error::invalid(a, format!("no {RECORDS_FILE} here or in its subfolders")));
        }
        found.sort();
        out.extend(found);
    }
    Ok(out)
}

/// Names the staging folders of `merge` under its `--out` folder.
const STAGING_NAME: &str = "merge";

/// A shard loaded for merging.
pub struct ShardDir {
    pub path: PathBuf,
    pub config_text: String,
    pub records: Records,
}

pub fn read_shard(dir: &Path) -> Result<ShardDir> {
    let path = dir.join(RECORDS_FILE);
    let bytes = facelens_core::fs::read(&path).map_err(|e| Error::io(&path, "reading", e))?;
    let records: Records = serde_json::from_slice(&bytes)
        .map_err(|e| Error::invalid(&path, format!("not a records file of this version: {e}")))?;
    records.check().map_err(|reason| Error::invalid(&path, reason))?;
    let cfg = dir.join(facelens_board::run_dir::CONFIG_FILE);
    let config_text = facelens_core::fs::read_to_string(&cfg).map_err(|e| Error::io(&cfg, "reading", e))?;
    Ok(ShardDir {
        path: dir.to_path_buf(),
        config_text,
        records,
    })
}

/// Combines the shards of one sharded run. Refuses mixtures of configs, missing or repeated
/// shards, and pairs evaluated twice or not at all, naming the directories involved.
pub fn merge_records(shards: &[ShardDir]) -> Result<Records> {
    let Some(first) = shards.first() else {
        return Err(Error::Merge("nothing to merge".into()));
    };
    let r0 = &first.records;
    let count = r0.shard.count;
    let mut seen: BTreeMap<usize, &Path> = BTreeMap::new();
    for s in shards {
        let r = &s.records;
        if r.config_sha256 != r0.config_sha256 {
            return Err(Error::Merge(format!(
                "{} was run with another config (sha256 {}) than {} (sha256 {}); pass the shards of one run only",
                s.path.display(),
                r.config_sha256,
                first.path.display(),
                r0.config_sha256
            )));
        }
        if s.config_text != first.config_text {
            return Err(Error::Merge(format!(
                "{} and {} differ although both records name config sha256 {} (edited by hand?); pass the shards of one run only",
                s.path.join(facelens_board::run_dir::CONFIG_FILE).display(),
                first.path.join(facelens_board::run_dir::CONFIG_FILE).display(),
                r0.config_sha256
            )));
        }
        if r.shard.count != count {
            return Err(Error::Merge(format!(
                "{} is shard {} but {} is shard {}",
                s.path.display(),
                r.shard,
                first.path.display(),
                r0.shard
            )));
        }
        if r.models != r0.models
            || r.rows != r0.rows
            || r.table3_method != r0.table3_method
            || r.steps != r0.steps
            || r.perturb != r0.perturb
            || r.selected != r0.selected
        {
            return Err(Error::Merge(format!(
                "{} and {} disagree on models, methods, steps or selection (different checkpoints or code?)",
                s.path.display(),
                first.path.display()
            )));
        }
        if let Some(other) = seen.insert(r.shard.index, &s.path) {
            return Err(Error::Merge(format!(
                "shard {} appears twice: {} and {}",
                r.shard,
                other.display(),
                s.path.display()
            )));
        }
    }
    let missing: Vec<String> = (1..=count)
        .filter(|i| !seen.contains_key(i))
        .map(|i| format!("{i}/{count}"))
        .collect();
    if !missing.is_empty() {
        return Err(Error::Merge(format!("missing shards: {}", missing.join(", "))));
    }
    let mut records: Vec<_> = shards
        .iter()
        .flat_map(|s| s.records.records.iter().cloned())
        .collect();
    records.sort_by_key(|r| r.index);
    let indices: BTreeSet<usize> = records.iter().map(|r| r.index).collect();
    if indices.len() != records.len()
        || indices.len() != r0.selected
        || records.last().is_some_and(|r| r.index + 1 != r0.selected)
    {
        return Err(Error::Merge(format!("the shards hold {} records for {} distinct pairs, expected each of the {} selected pairs once", records.len(), indices.len(), r0.selected)));
    }
    Ok(Records {
        shard: Shard::WHOLE,
        records,
        ..r0.clone()
    })
}

/// Panels saved by the shards, in name order.
pub fn read_panels(shards: &[ShardDir]) -> Result<Vec<Panel>> {
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    for s in shards {
        let dir = s.path.join(PANELS_DIR);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.filter_map(|e| e.ok()) {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "png") {
                let name = p
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                files.push((name, p));
            }
        }
    }
    files.sort();
    files
        .into_iter()
        .map(|(name, p)| {
            let image = image::open(&p)
                .map_err(|e| Error::invalid(&p, format!("reading panel: {e}")))?
                .to_rgb8();
            Ok(Panel { name, image })
        })
        .collect()
}

/// Sums the shards' timings (what the whole job cost, not its wall time).
pub fn read_timings(shards: &[ShardDir]) -> Timings {
    let mut total = Timings::default();
    for s in shards {
        let Ok(bytes) = facelens_core::fs::read(s.path.join(TIMINGS_FILE)) else {
            continue;
        };
        let Ok(t) = serde_json::from_slice::<Timings>(&bytes) else {
            continue;
        };
        total.add(t);
    }
    total
}

/// `merge`: shard directories -> one complete run directory under `out`.
pub fn merge(args: &[PathBuf], out: &Path) -> Result<(RunDir, Results)> {
    let dirs = find_shards(args)?;
    let shards = dirs
        .iter()
        .map(|d| read_shard(d))
        .collect::<Result<Vec<_>>>()?;
    let records = merge_records(&shards)?;
    let panels = read_panels(&shards)?;
    let timings = read_timings(&shards);
    // The tables are built once before the run directory exists, so records that cannot make
    // tables leave nothing behind.
    crate::report::build(&records)?;
    let config_text = &shards[0].config_text;
    // The run is built in a hidden staging folder under `out` and renamed into place when
    // complete: a failure or a kill never leaves a half-merged run that `runs list` would show.
    // A staging folder left by a killed merge is removed by the next one.
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, "creating folder", e))?;
    let staging = facelens_core::fs::staging_dir(out, STAGING_NAME).map_err(|e| Error::io(out, "creating folder", e))?;
    let built = RunDir::create_with_device(
        &staging,
        EXPERIMENT,
        config_text,
        &format!("merge of {} shards", shards.len()),
    )
    .map_err(Error::from)
    .and_then(|run| write_run(&run, config_text, &records, &panels, &timings).map(|r| (run, r)))
    .and_then(|(run, results)| Ok((run.publish(out)?, results)));
    let _ = std::fs::remove_dir_all(&staging);
    built
}
