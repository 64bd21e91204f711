//! Run directories: one immutable folder per experiment run.
//!
//! Layout: `root/<experiment>/<UTC YYYYMMDD-HHMMSS>-<sha256(config)[..8]>/`
//! with `config.toml` (the resolved config), `meta.json` (provenance) and,
//! at the end, `results.json`. TensorBoard event files go into the same
//! folder, so `tensorboard --logdir root/<experiment>` lists runs by id.
//!
//! A run never overwrites another: the directory is created with
//! `create_dir` (which fails if it exists) and on collision `-2`, `-3`, ...
//! are appended, which is race-free even across processes.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};

use crate::config::config_hash;
use crate::error::{Error, Result};
use crate::machine;
use crate::utc::UtcDateTime;
use crate::writer::SummaryWriter;

/// File name of the resolved config inside a run directory.
pub const CONFIG_FILE: &str = "config.toml";
/// File name of the provenance record.
pub const META_FILE: &str = "meta.json";
/// File name of the final results.
pub const RESULTS_FILE: &str = "results.json";

/// Suffixes tried after the plain name before giving up.
const MAX_SUFFIX: u32 = 1000;

/// Provenance of a run, written to `meta.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunMeta {
    /// Experiment name (parent folder).
    pub experiment: String,
    /// Run folder name.
    pub run_id: String,
    /// Full SHA-256 of `config.toml`.
    pub config_sha256: String,
    /// Start time, RFC 3339 UTC.
    pub start_time_utc: String,
    /// Start time, seconds since the Unix epoch.
    pub start_time_unix: u64,
    /// `std::env::args()` of the process.
    pub command_line: Vec<String>,
    /// Source revision, if the working directory is a git checkout.
    pub git: GitInfo,
    /// Where it ran.
    pub machine: MachineInfo,
}

/// Git state of the current working directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GitInfo {
    /// `git rev-parse HEAD`; `None` without git, outside a repo, or before
    /// the first commit.
    pub revision: Option<String>,
    /// Whether `git status --porcelain` lists anything (modified, staged or
    /// untracked files); `None` if git could not tell.
    pub dirty: Option<bool>,
}

impl GitInfo {
    /// Queries git in the current working directory; never fails.
    pub fn detect() -> Self {
        GitInfo {
            revision: git_stdout(&["rev-parse", "HEAD"]).filter(|s| !s.is_empty()),
            dirty: git_stdout(&["status", "--porcelain"]).map(|s| !s.is_empty()),
        }
    }
}

/// Runs git and returns trimmed stdout if it exited successfully.
fn git_stdout(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The machine a run executes on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MachineInfo {
    /// Host name.
    pub hostname: String,
    /// CPU model from `/proc/cpuinfo`.
    pub cpu_model: Option<String>,
    /// Usable CPU cores.
    pub cpu_cores: usize,
    /// Compute device as described by the caller (e.g. `"cuda:0 (H100)"`).
    pub device: String,
}

impl MachineInfo {
    /// Detects host facts; `device` comes from the caller, who knows it.
    pub fn detect(device: &str) -> Self {
        MachineInfo {
            hostname: machine::hostname(),
            cpu_model: machine::cpu_model(),
            cpu_cores: machine::cpu_cores(),
            device: device.to_owned(),
        }
    }
}

/// A created run directory.
#[derive(Debug, Clone)]
pub struct RunDir {
    path: PathBuf,
    meta: RunMeta,
}

impl RunDir {
    /// Creates a run directory, recording the device as `"unspecified"`.
    ///
    /// See [`create_with_device`](Self::create_with_device).
    pub fn create(root: &Path, experiment: &str, config_toml: &str) -> Result<RunDir> {
        Self::create_with_device(root, experiment, config_toml, "unspecified")
    }

    /// Creates `root/<experiment>/<timestamp>-<hash8>[-N]/` and writes
    /// `config.toml` (verbatim `config_toml`) and `meta.json`.
    ///
    /// `experiment` must be a single, non-empty path component.
    pub fn create_with_device(
        root: &Path,
        experiment: &str,
        config_toml: &str,
        device: &str,
    ) -> Result<RunDir> {
        validate_component("experiment", experiment)?;
        let start = machine::unix_time_secs();
        let utc = UtcDateTime::from_unix(start);
        let hash = config_hash(config_toml);
        // Detect git before creating anything, so our own run folder can
        // never make the checkout look dirty.
        let git = GitInfo::detect();

        let parent = root.join(experiment);
        std::fs::create_dir_all(&parent).map_err(|e| Error::io(&parent, e))?;
        let base = format!("{}-{}", utc.compact(), &hash[..8]);
        let (path, run_id) = create_unique_dir(&parent, &base)?;

        let meta = RunMeta {
            experiment: experiment.to_owned(),
            run_id,
            config_sha256: hash,
            start_time_utc: utc.rfc3339(),
            start_time_unix: start,
            command_line: std::env::args().collect(),
            git,
            machine: MachineInfo::detect(device),
        };
        let run = RunDir { path, meta };
        write_atomic(&run.path.join(CONFIG_FILE), config_toml.as_bytes())?;
        run.write_json(META_FILE, &run.meta)?;
        Ok(run)
    }

    /// Moves a run directory that was built elsewhere (under a staging root on the same file
    /// system, see [`facelens_core::fs::staging_dir`]) to `root/<experiment>/<id>` in one
    /// rename, so that readers of `root` see the run complete or not at all.
    /// Like [`create_with_device`](Self::create_with_device), a name that is taken (the same
    /// config published within the same second) gets a suffix `-2`, `-3`, ..., and `meta.json`
    /// says which.
    pub fn publish(mut self, root: &Path) -> Result<RunDir> {
        let parent = root.join(&self.meta.experiment);
        std::fs::create_dir_all(&parent).map_err(|e| Error::io(&parent, e))?;
        let base = self.meta.run_id.clone();
        for n in 1..=MAX_SUFFIX {
            let name = if n == 1 { base.clone() } else { format!("{base}-{n}") };
            let path = parent.join(&name);
            if path.exists() {
                continue;
            }
            if name != self.meta.run_id {
                self.meta.run_id = name;
                self.write_json(META_FILE, &self.meta)?;
            }
            match std::fs::rename(&self.path, &path) {
                Ok(()) => {
                    facelens_core::fs::sync_folder(&parent);
                    return Ok(RunDir { path, meta: self.meta });
                }
                // Taken between the check and the rename (a non-empty folder is never replaced).
                Err(e) if path.exists() && e.kind() != ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(&path, e)),
            }
        }
        Err(Error::io(
            parent.join(&base),
            std::io::Error::new(ErrorKind::AlreadyExists, format!("{MAX_SUFFIX} runs with this timestamp and config already exist")),
        ))
    }

    /// The run directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The run folder name (`<timestamp>-<hash8>[-N]`).
    pub fn id(&self) -> &str {
        &self.meta.run_id
    }

    /// What was written to `meta.json`.
    pub fn meta(&self) -> &RunMeta {
        &self.meta
    }

    /// A TensorBoard writer logging into this run directory.
    pub fn summary_writer(&self) -> Result<SummaryWriter> {
        SummaryWriter::create(&self.path)
    }

    /// Writes `results.json` atomically (temp file + rename), so a crash
    /// never leaves a half-written result that looks valid. May be called
    /// repeatedly (e.g. after each evaluation); the last call wins.
    pub fn write_results<T: Serialize + ?Sized>(&self, results: &T) -> Result<PathBuf> {
        self.write_json(RESULTS_FILE, results)
    }

    /// Writes any pretty-printed JSON file into the run directory atomically.
    pub fn write_json<T: Serialize + ?Sized>(&self, file_name: &str, value: &T) -> Result<PathBuf> {
        validate_component("file", file_name)?;
        let path = self.path.join(file_name);
        let mut bytes = serde_json::to_vec_pretty(value).map_err(|source| Error::Json {
            path: path.clone(),
            source,
        })?;
        bytes.push(b'\n');
        write_atomic(&path, &bytes)?;
        Ok(path)
    }
}

/// Creates `parent/base`, or `parent/base-2`, `-3`, ... if taken.
fn create_unique_dir(parent: &Path, base: &str) -> Result<(PathBuf, String)> {
    for n in 1..=MAX_SUFFIX {
        let name = if n == 1 {
            base.to_owned()
        } else {
            format!("{base}-{n}")
        };
        let path = parent.join(&name);
        match std::fs::create_dir(&path) {
            Ok(()) => return Ok((path, name)),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::io(path, e)),
        }
    }
    Err(Error::io(
        parent.join(base),
        std::io::Error::new(
            ErrorKind::AlreadyExists,
            format!("{MAX_SUFFIX} runs with this timestamp and config already exist"),
        ),
    ))
}

/// Rejects names that would escape or confuse the directory layout.
fn validate_component(what: &'static str, name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        Some("must not be empty")
    } else if name == "." || name == ".." {
        Some("must not be '.' or '..'")
    } else if name.contains(['/', '\\', '\0']) {
        Some("must be a single path component")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(Error::InvalidName {
            what,
            name: name.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// Writes `bytes` to `path` atomically ([`facelens_core::write_atomic`]): readers see either
/// the old or the new complete file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    facelens_core::write_atomic(path, bytes).map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_experiment_names() {
        let root = tempfile::tempdir().expect("tempdir");
        for bad in ["", ".", "..", "a/b", "a\\b"] {
            let err = RunDir::create(root.path(), bad, "x = 1").unwrap_err();
            assert!(matches!(err, Error::InvalidName { .. }), "{bad:?}: {err}");
        }
    }

    #[test]
    fn layout_and_no_overwrite() {
        let root = tempfile::tempdir().expect("tempdir");
        let cfg = "[train]\nlr = 0.1\n";
        let a = RunDir::create_with_device(root.path(), "exp", cfg, "cpu").expect("first run");
        let b = RunDir::create_with_device(root.path(), "exp", cfg, "cpu").expect("second run");
        assert_ne!(a.path(), b.path());
        assert_eq!(a.path().parent(), Some(root.path().join("exp").as_path()));

        // `<YYYYMMDD-HHMMSS>-<hash8>`, optionally `-N`.
        let hash8 = &config_hash(cfg)[..8];
        let id = a.id();
        assert_eq!(id.len(), 15 + 1 + 8, "{id}");
        assert!(id.ends_with(hash8), "{id}");
        assert!(
            id[..8].bytes().all(|c| c.is_ascii_digit()) && &id[8..9] == "-",
            "{id}"
        );

        let config = std::fs::read_to_string(a.path().join(CONFIG_FILE)).expect("config.toml");
        assert_eq!(config, cfg);
        let meta: RunMeta =
            serde_json::from_slice(&std::fs::read(a.path().join(META_FILE)).expect("meta.json"))
                .expect("meta.json parses");
        assert_eq!(&meta, a.meta());
        assert_eq!(meta.machine.device, "cpu");
        assert_eq!(meta.config_sha256, config_hash(cfg));
        assert!(!meta.command_line.is_empty());
    }

    #[test]
    fn collisions_get_numeric_suffixes() {
        let root = tempfile::tempdir().expect("tempdir");
        let (p1, id1) = create_unique_dir(root.path(), "run").expect("1");
        let (_, id2) = create_unique_dir(root.path(), "run").expect("2");
        let (_, id3) = create_unique_dir(root.path(), "run").expect("3");
        assert_eq!(
            (id1.as_str(), id2.as_str(), id3.as_str()),
            ("run", "run-2", "run-3")
        );
        assert_eq!(p1, root.path().join("run"));
    }

    #[test]
    fn publishing_a_taken_name_adds_a_suffix_and_says_so_in_meta() {
        let root = tempfile::tempdir().expect("tempdir");
        let (stage_a, stage_b) = (root.path().join("stage-a"), root.path().join("stage-b"));
        let a = RunDir::create(&stage_a, "exp", "x = 1\n").expect("a");
        let mut b = RunDir::create(&stage_b, "exp", "x = 1\n").expect("b");
        // The same config staged within the same second: the same name.
        b.meta.run_id = a.id().to_owned();
        let out = root.path().join("out");
        let a = a.publish(&out).expect("publish a");
        let b = b.publish(&out).expect("publish b");
        assert_eq!(b.id(), format!("{}-2", a.id()));
        assert_eq!(b.path(), out.join("exp").join(b.id()));
        let meta: RunMeta = serde_json::from_slice(&std::fs::read(b.path().join(META_FILE)).expect("meta")).expect("json");
        assert_eq!(meta.run_id, b.id());
        assert!(a.path().join(CONFIG_FILE).is_file() && b.path().join(CONFIG_FILE).is_file());
    }

    #[test]
    fn results_are_replaced_atomically() {
        let root = tempfile::tempdir().expect("tempdir");
        let run = RunDir::create(root.path(), "exp", "").expect("run");
        run.write_results(&serde_json::json!({"acc": 0.5}))
            .expect("first");
        let path = run
            .write_results(&serde_json::json!({"acc": 0.9, "tar@far": [0.1, 0.2]}))
            .expect("second");
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
        assert_eq!(v["acc"], 0.9);
        // No temp files left behind.
        let leftovers: Vec<_> = std::fs::read_dir(run.path())
            .expect("list")
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
            .collect();
        assert!(leftovers.is_empty());
    }
}
