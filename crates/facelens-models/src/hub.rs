//! `hf:<org>/<repo>[@rev]/<file>` references, resolved through the Hugging Face cache.
//!
//! The local cache (`$HF_HOME/hub` or `~/.cache/huggingface/hub`) is consulted first and
//! needs no network; only on a miss, and unless `HF_HUB_OFFLINE=1`, is the Hub asked.

use std::path::PathBuf;

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
        Ok(Self { repo: format!("{org}/{repo}"), revision: revision.into(), file: file.into() })
    }

    fn repo(&self) -> Repo {
        Repo::with_revision(self.repo.clone(), RepoType::Model, self.revision.clone())
    }

    fn spec(&self) -> String {
        format!("hf:{}@{}/{}", self.repo, self.revision, self.file)
    }

    /// Resolves the file from the local cache only.
    pub fn resolve_cached(&self) -> Option<PathBuf> {
        let cache = cache();
        cache.repo(self.repo()).get(&self.file).or_else(|| {
            // hf-hub 0.4 does not trim `refs/<rev>`; caches written by other tools may end it with a newline.
            let dir = cache.path().join(format!("models--{}", self.repo.replace('/', "--")));
            let commit = std::fs::read_to_string(dir.join("refs").join(&self.revision))
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| self.revision.clone());
            let path = dir.join("snapshots").join(commit).join(&self.file);
            path.is_file().then_some(path)
        })
    }

    /// Cache first; then the Hub unless offline.
    pub fn resolve(&self) -> Result<PathBuf> {
        if let Some(p) = self.resolve_cached() {
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
            .map_err(|e| ModelError::Hub { spec: self.spec(), reason: e.to_string() })
    }
}

/// The cache location: `HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`.
fn cache() -> Cache {
    match std::env::var_os("HF_HUB_CACHE") {
        Some(p) => Cache::new(PathBuf::from(p)),
        None => Cache::from_env(),
    }
}
