//! Content-addressed stores of Deletion/Insertion curves ([`CurveCache`]) and of explanation
//! maps ([`MapCache`]).
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
use facelens_saliency::SaliencyMaps;

/// Bumped whenever the code that turns a key into curves changes what it computes, so that
/// curves of older code are never served.
pub const CACHE_VERSION: u32 = 1;

/// Largest curve entry read back (a pair's curves at `--step 1` are tens of kilobytes).
const MAX_CURVE_ENTRY: u64 = 4 << 20;

/// Room for a map entry's safetensors header (tensor table and the key as metadata).
const MAX_MAP_HEADER: usize = 64 << 10;

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
        digest_of(self)
    }
}

/// sha256 of a key's JSON: the name it is stored under.
fn digest_of(key: &impl Serialize) -> String {
    let json = serde_json::to_vec(key).expect("a key of plain fields serialises");
    hex(&Sha256::digest(json))
}

/// `<dir>/<first 2 hex digits>/<digest>.<ext>`: where every store keeps an entry.
fn entry_path(dir: &Path, digest: &str, ext: &str) -> PathBuf {
    dir.join(&digest[..2]).join(format!("{digest}.{ext}"))
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
        entry_path(&self.dir, digest, "json")
    }

    /// The curves stored under `key`, if any. An entry that cannot be read back or holds another
    /// key counts as absent (it is rewritten by the next [`CurveCache::put`]).
    pub fn get(&self, key: &CurveKey) -> Option<MethodCurves> {
        let bytes = facelens_core::fs::read_at_most(self.path(&key.digest()), MAX_CURVE_ENTRY).ok()?;
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

/// Everything one method's maps of one pair depend on (what [`CurveKey`] holds before the
/// protocol settings): explained once, a pair's maps serve every fill, step and perturbation
/// (`facelens eval xfv --maps DIR` with `--fill grey`, then `--fill road`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MapKey {
    pub version: u32,
    pub weights_sha256: String,
    /// The threshold explainers are given (FGGB shifts its weights by it).
    pub threshold: f32,
    /// The method's kind and settings (a decoder's weights by sha256), as canonical JSON.
    pub method: String,
    pub jacobian_rows: usize,
    /// sha256 of both aligned crops (RGB bytes, A then B).
    pub crops_sha256: String,
}

impl MapKey {
    pub fn digest(&self) -> String {
        digest_of(self)
    }
}

/// A pair's maps as they were explained, with what explaining them cost.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredMaps {
    pub maps: SaliencyMaps,
    /// Wall-clock seconds of the explanation that produced them.
    pub seconds: f64,
}

/// Names of the four maps in a stored entry (safetensors, `[height, width]` each).
const MAP_NAMES: [&str; 4] = ["sa_pos", "sa_neg", "sb_pos", "sb_neg"];
/// Metadata field of a stored entry holding its key and seconds as JSON.
const MAP_META: &str = "facelens_maps";

/// The store of maps: `<dir>/<first 2 hex digits>/<sha256>.safetensors` (readable by any
/// safetensors reader; the key is kept in the metadata and checked on lookup), each file written
/// atomically, so concurrent runs can share one folder.
#[derive(Debug, Clone)]
pub struct MapCache {
    dir: PathBuf,
}

impl MapCache {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    fn path(&self, digest: &str) -> PathBuf {
        entry_path(&self.dir, digest, "safetensors")
    }

    /// The maps stored under `key`, if any, with `height` x `width` maps. An entry that cannot be
    /// read back, holds another key or maps of another size counts as absent (it is rewritten by
    /// the next [`MapCache::put`]).
    pub fn get(&self, key: &MapKey, height: usize, width: usize) -> Option<StoredMaps> {
        // Four f32 maps and a header of a few hundred bytes: anything much larger is not ours.
        let max = (MAP_NAMES.len() * height * width * 4 + MAX_MAP_HEADER) as u64;
        let bytes = facelens_core::fs::read_at_most(self.path(&key.digest()), max).ok()?;
        let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).ok()?;
        let meta: MapMeta = serde_json::from_str(header.metadata().as_ref()?.get(MAP_META)?).ok()?;
        if meta.key != *key || !meta.seconds.is_finite() {
            return None;
        }
        let st = safetensors::SafeTensors::deserialize(&bytes).ok()?;
        let mut maps = Vec::with_capacity(MAP_NAMES.len());
        for name in MAP_NAMES {
            let t = st.tensor(name).ok()?;
            if t.dtype() != safetensors::Dtype::F32 || t.shape() != [height, width] {
                return None;
            }
            let v: Vec<f32> =
                t.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
            if v.iter().any(|x| !x.is_finite()) {
                return None;
            }
            maps.push(v);
        }
        let [sa_pos, sa_neg, sb_pos, sb_neg] = <[Vec<f32>; 4]>::try_from(maps).ok()?;
        Some(StoredMaps { maps: SaliencyMaps { height, width, sa_pos, sa_neg, sb_pos, sb_neg }, seconds: meta.seconds })
    }

    pub fn put(&self, key: &MapKey, stored: &StoredMaps) -> Result<()> {
        let path = self.path(&key.digest());
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, "creating the map cache", e))?;
        }
        let m = &stored.maps;
        let bytes: Vec<Vec<u8>> = [&m.sa_pos, &m.sa_neg, &m.sb_pos, &m.sb_neg]
            .iter()
            .map(|v| v.iter().flat_map(|x| x.to_le_bytes()).collect())
            .collect();
        let mut views = Vec::with_capacity(MAP_NAMES.len());
        for (name, data) in MAP_NAMES.iter().zip(&bytes) {
            let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![m.height, m.width], data)
                .map_err(|e| Error::invalid(&path, format!("map {name}: {e}")))?;
            views.push((*name, view));
        }
        let meta = MapMeta { key: key.clone(), seconds: stored.seconds };
        let info = std::collections::HashMap::from([(
            MAP_META.to_string(),
            serde_json::to_string(&meta).expect("a key of plain fields serialises"),
        )]);
        let bytes = safetensors::serialize(views, Some(info))
            .map_err(|e| Error::invalid(&path, format!("encoding maps: {e}")))?;
        facelens_board::run_dir::write_atomic(&path, &bytes)?;
        Ok(())
    }
}

#[derive(Serialize, Deserialize)]
struct MapMeta {
    key: MapKey,
    seconds: f64,
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

    #[test]
    fn maps_come_back_bit_for_bit_under_their_key_and_size_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = MapCache::new(dir.path());
        let key = MapKey {
            version: CACHE_VERSION,
            weights_sha256: "ab".into(),
            threshold: 0.2,
            method: "{\"kind\":\"fggb\"}".into(),
            jacobian_rows: 32,
            crops_sha256: "cd".into(),
        };
        let (h, w) = (3, 2);
        let ramp = |k: f32| (0..h * w).map(|i| k * i as f32 + 0.1).collect::<Vec<f32>>();
        let stored = StoredMaps {
            maps: SaliencyMaps { height: h, width: w, sa_pos: ramp(1.0), sa_neg: ramp(-0.5), sb_pos: ramp(1e-7), sb_neg: ramp(3.0) },
            seconds: 12.5,
        };
        assert_eq!(cache.get(&key, h, w), None);
        cache.put(&key, &stored).expect("put");
        assert_eq!(cache.get(&key, h, w), Some(stored.clone()));
        assert_eq!(cache.get(&key, w, h), None, "maps of another size are a miss");
        for other in [
            MapKey { threshold: 0.21, ..key.clone() },
            MapKey { method: "{\"kind\":\"rise\"}".into(), ..key.clone() },
            MapKey { crops_sha256: "ce".into(), ..key.clone() },
            MapKey { version: CACHE_VERSION + 1, ..key.clone() },
        ] {
            assert_ne!(other.digest(), key.digest());
            assert_eq!(cache.get(&other, h, w), None);
        }
        // A damaged entry is a miss, and the next put repairs it.
        let path = cache.path(&key.digest());
        std::fs::write(&path, b"\x08\0\0\0\0\0\0\0{}").expect("damage");
        assert_eq!(cache.get(&key, h, w), None);
        cache.put(&key, &stored).expect("put");
        assert_eq!(cache.get(&key, h, w), Some(stored.clone()));
        // An entry far larger than four maps is not read: a miss, without allocating for it.
        let huge = std::fs::File::options().append(true).open(&path).expect("open");
        huge.set_len(1 << 40).expect("sparse file");
        assert_eq!(cache.get(&key, h, w), None);
        cache.put(&key, &stored).expect("put");
        assert_eq!(cache.get(&key, h, w), Some(stored));
    }
}
