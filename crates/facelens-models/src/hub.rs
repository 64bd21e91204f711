//! `hf:<org>/<repo>[@rev]/<file>` references, resolved through the Hugging Face cache.
//!
//! The local cache (`$HF_HOME/hub` or `~/.cache/huggingface/hub`) is consulted first and
//! needs no network; only on a miss, and unless `HF_HUB_OFFLINE=1`, is the Hub asked.
//!
//! A reference is a name inside one repository's snapshot, never a path on this machine: every
//! part is checked when it is parsed (no `..`, `.`, empty or absolute segments, no backslashes),
//! and the resolved file must lie inside the snapshot folder after links are followed (the
//! cache's own snapshot files are links into `blobs/` of the same repository) and be a regular
//! file. This is the one resolver for `hf:` references.

use std::path::{Path, PathBuf};

use hf_hub::{Cache, Repo, RepoType};

use crate::error::{ModelError, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubRef {
    pub repo: String,
    pub revision: String,
    pub file: String,
}

impl HubRef {
    /// Parses `hf:org/repo[@rev]/path/in/repo.safetensors`.
    pub fn parse(spec: &str) -> Result<Self> {
        let bad = |reason: &str| ModelError::BadHubSpec { spec: spec.into(), reason: reason.into() };
        let rest = spec.strip_prefix("hf:").ok_or_else(|| bad("missing `hf:` prefix"))?;
        let mut parts = rest.splitn(3, '/');
        let org = parts.next().filter(|s| !s.is_empty()).ok_or_else(|| bad("missing organisation"))?;
        let repo_rev = parts.next().filter(|s| !s.is_empty()).ok_or_else(|| bad("missing repository"))?;
        let file = parts.next().filter(|s| !s.is_empty()).ok_or_else(|| bad("missing file name"))?;
        let (repo, revision) = match repo_rev.split_once('@') {
            Some((r, rev)) if !r.is_empty() && !rev.is_empty() => (r, rev),
            Some(_) => return Err(bad("empty repository or revision around `@`")),
            None => (repo_rev, "main"),
        };
        for (what, name) in [("organisation", org), ("repository", repo)] {
            check_name(name).map_err(|r| bad(&format!("{what} `{name}`: {r}")))?;
        }
        // Revisions may be branch names with slashes (`refs/pr/1`); each part is a plain name.
        for part in revision.split('/') {
            check_name(part).map_err(|r| bad(&format!("revision `{revision}`: {r}")))?;
        }
        for part in file.split('/') {
            check_name(part).map_err(|r| bad(&format!("file `{file}`: {r}")))?;
        }
        Ok(Self { repo: format!("{org}/{repo}"), revision: revision.into(), file: file.into() })
    }

    fn repo(&self) -> Repo {
        Repo::with_revision(self.repo.clone(), RepoType::Model, self.revision.clone())
    }

    fn spec(&self) -> String {
        format!("hf:{}@{}/{}", self.repo, self.revision, self.file)
    }

    /// Resolves the file from the local cache only: `Ok(None)` when it is not cached, an error
    /// when the cache holds something that must not be used (a path leaving the repository, a
    /// FIFO or other non-regular file).
    pub fn resolve_cached(&self) -> Result<Option<PathBuf>> {
        let dir = cache().path().join(format!("models--{}", self.repo.replace('/', "--")));
        // hf-hub 0.4 does not trim `refs/<rev>`; caches written by other tools may end it with a newline.
        let refs = dir.join("refs").join(&self.revision);
        let commit = match facelens_core::fs::read_to_string(&refs) {
            Ok(s) => s.trim().to_string(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => self.revision.clone(),
            Err(e) => return Err(self.unusable(format!("{}: {e}", refs.display()))),
        };
        check_name(&commit).map_err(|r| self.unusable(format!("{} names commit `{commit}`: {r}", refs.display())))?;
        let snapshot = dir.join("snapshots").join(&commit);
        let path = snapshot.join(&self.file);
        if std::fs::symlink_metadata(&path).is_err() {
            return Ok(None);
        }
        // Links are followed: the cache stores each file as a link into the repository's blobs.
        let real = std::fs::canonicalize(&path).map_err(|e| self.unusable(format!("{}: {e}", path.display())))?;
        let root = std::fs::canonicalize(&dir).map_err(|e| self.unusable(format!("{}: {e}", dir.display())))?;
        if !real.starts_with(&root) {
            return Err(self.unusable(format!("{} leads to {}, outside the repository's cache folder {}", path.display(), real.display(), root.display())));
        }
        facelens_core::fs::open_regular(&real).map_err(|e| self.unusable(format!("{}: {e}", path.display())))?;
        Ok(Some(path))
    }

    fn unusable(&self, reason: String) -> ModelError {
        ModelError::Hub { spec: self.spec(), reason }
    }

    /// Cache first; then the Hub unless offline.
    pub fn resolve(&self) -> Result<PathBuf> {
        if let Some(p) = self.resolve_cached()? {
            return Ok(p);
        }
        let offline = std::env::var("HF_HUB_OFFLINE").map(|v| v == "1" || v.eq_ignore_ascii_case("true")).unwrap_or(false);
        if offline {
            return Err(ModelError::Hub {
                spec: self.spec(),
                reason: format!("not in the local cache {} and HF_HUB_OFFLINE is set", cache().path().display()),
            });
        }
        let api = hf_hub::api::sync::ApiBuilder::from_cache(cache())
            .with_progress(false)
            .build()
            .map_err(|e| ModelError::Hub { spec: self.spec(), reason: e.to_string() })?;
        api.repo(self.repo())
            .get(&self.file)
            .map_err(|e| ModelError::Hub { spec: self.spec(), reason: e.to_string() })?;
        // Downloaded into the cache: resolve it there, with the same checks as a cached file.
        self.resolve_cached()?
            .ok_or_else(|| self.unusable(format!("downloaded, but not found in the cache {}", cache().path().display())))
    }
}

/// One part of a reference: a plain file or folder name.
fn check_name(part: &str) -> std::result::Result<(), &'static str> {
    match part {
        "" => Err("empty path segment"),
        "." | ".." => Err("`.` and `..` are not allowed"),
        _ if part.contains('\\') => Err("backslashes are not allowed"),
        _ if part.contains('\0') => Err("NUL bytes are not allowed"),
        _ if Path::new(part).is_absolute() => Err("absolute paths are not allowed"),
        _ => Ok(()),
    }
}

/// The cache location: `HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`.
fn cache() -> Cache {
    match std::env::var_os("HF_HUB_CACHE") {
        Some(p) => Cache::new(PathBuf::from(p)),
        None => Cache::from_env(),
    }
}
