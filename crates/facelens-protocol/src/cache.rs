//! A content-addressed store of Deletion/Insertion curves.
//!
//! A pair's curves under one method depend only on what [`CurveKey`] holds: the backbone's
//! weights, its threshold and fill value, the method with its settings, the protocol settings as
//! applied to that pair (step, batch, Jacobian rows, what is perturbed) and the pair's aligned
//! crops — never on the other pairs or methods of a run. So a curve is stored under the sha256 of
//! its key, and growing a subset, adding a method, switching perturbation or running shards all
//! find the curves an earlier run measured, with no rules about which runs are compatible. A run
//! served from the cache writes the same tables as one that measured everything.

use std::path::{Path, PathBuf};

use facelens_eval::deletion::Perturb;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::records::MethodCurves;

/// Bumped whenever the code that turns a key into curves changes what it computes, so that
/// curves of older code are never served.
pub const CACHE_VERSION: u32 = 1;

/// Everything a pair's curves under one method depend on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CurveKey {
    pub version: u32,
    pub weights_sha256: String,
    /// The protocol threshold: it decides the kind of map and is what explainers are given.
    pub threshold: f32,
    pub fill: f32,
    /// ROAD's settings, when removed pixels are imputed (absent otherwise, so older keys hold).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub road: Option<facelens_eval::road::Road>,
    /// The method's kind and settings (a decoder's weights by sha256), as canonical JSON.
    pub method: String,
    pub jacobian_rows: usize,
    pub batch: usize,
    pub step: u32,
    /// What was perturbed on this pair ([`Perturb::Both`] or [`Perturb::Probe`]).
    pub perturb: Perturb,
    /// sha256 of both aligned crops (RGB bytes, A then B).
    pub crops_sha256: String,
    pub genuine: bool,
}

impl CurveKey {
    pub fn digest(&self) -> String {
        let json = serde_json::to_vec(self).expect("a key of plain fields serialises");
        hex(&Sha256::digest(json))
    }
}

/// One stored entry: the key is kept beside the curves so a lookup can check it.
#[derive(Serialize, Deserialize)]
struct Entry {
    key: CurveKey,
    curves: MethodCurves,
}

/// The store: `<dir>/<first 2 hex digits>/<sha256>.json`, each file written atomically, so
/// concurrent shards can share one folder.
#[derive(Debug, Clone)]
pub struct CurveCache {
    dir: PathBuf,
}

impl CurveCache {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, digest: &str) -> PathBuf {
        self.dir.join(&digest[..2]).join(format!("{digest}.json"))
    }

    /// The curves stored under `key`, if any. An entry that cannot be read back or holds another
    /// key counts as absent (it is rewritten by the next [`CurveCache::put`]).
    pub fn get(&self, key: &CurveKey) -> Option<MethodCurves> {
        let bytes = std::fs::read(self.path(&key.digest())).ok()?;
        let entry: Entry = serde_json::from_slice(&bytes).ok()?;
        (entry.key == *key).then_some(entry.curves)
    }

    pub fn put(&self, key: &CurveKey, curves: &MethodCurves) -> Result<()> {
        let path = self.path(&key.digest());
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, "creating the curve cache", e))?;
        }
        let entry = Entry { key: key.clone(), curves: curves.clone() };
        let bytes = serde_json::to_vec(&entry).expect("curves serialise");
        facelens_board::run_dir::write_atomic(&path, &bytes)?;
        Ok(())
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> CurveKey {
        CurveKey {
            version: CACHE_VERSION,
            weights_sha256: "ab".into(),
            threshold: 0.2,
            fill: 0.0,
            road: None,
            method: "{\"kind\":\"fggb\"}".into(),
            jacobian_rows: 32,
            batch: 32,
            step: 5,
            perturb: Perturb::Probe,
            crops_sha256: "cd".into(),
            genuine: true,
        }
    }

    #[test]
    fn curves_come_back_under_their_key_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = CurveCache::new(dir.path());
        let curves = MethodCurves { deletion: vec![0.5, 0.25], insertion: vec![0.1, 0.5] };
        assert_eq!(cache.get(&key()), None);
        cache.put(&key(), &curves).expect("put");
        assert_eq!(cache.get(&key()), Some(curves.clone()));
        for other in [
            CurveKey { perturb: Perturb::Both, ..key() },
            CurveKey { threshold: 0.21, ..key() },
            CurveKey { crops_sha256: "ce".into(), ..key() },
            CurveKey { version: CACHE_VERSION + 1, ..key() },
            CurveKey { road: Some(facelens_eval::road::Road { noise: 2.55, mean: 127.5, std: 127.5, seed: 0 }), ..key() },
        ] {
            assert_ne!(other.digest(), key().digest());
            assert_eq!(cache.get(&other), None);
        }
        // A damaged entry is a miss, and the next put repairs it.
        let path = cache.path(&key().digest());
        std::fs::write(&path, b"{").expect("damage");
        assert_eq!(cache.get(&key()), None);
        cache.put(&key(), &curves).expect("put");
        assert_eq!(cache.get(&key()), Some(curves));
    }
}
