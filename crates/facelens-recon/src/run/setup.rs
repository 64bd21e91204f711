//! Inputs of a run: held-out LFW faces, the cached training embeddings, and `losses.csv`.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

use facelens_data::{load_pairs, LandmarkTable};
use facelens_models::FaceModel;

use crate::checkpoint::write_atomic;
use crate::data::{lfw_genuine_faces, EmbeddingTable, EvalFace, CropSource};
use crate::error::{ReconError, Result};
use crate::trainer::{StepOutcome, StepReport};

use super::config::LfwConfig;

/// The first `n` LFW genuine pairs (one per person) as held-out faces; fewer when the pairs
/// file has fewer usable pairs (callers compare the length with `n`).
pub fn lfw_faces(lfw: &LfwConfig, n: usize) -> Result<Vec<EvalFace>> {
    if n == 0 {
        return Ok(Vec::new());
    }
    let table = LandmarkTable::load(Path::new(&lfw.landmarks))?;
    let pairs = load_pairs(Path::new(&lfw.pairs))?;
    lfw_genuine_faces(Path::new(&lfw.images), &table, &pairs, n)
}

/// Why cached embeddings were not used.
pub(crate) enum Cached {
    Hit(EmbeddingTable),
    Stale,
    Missing,
}

/// Embeddings cached at `path` if they were computed from exactly these crops by `model`.
pub(crate) fn cached_embeddings(
    path: &Path,
    source: &dyn CropSource,
    need_grey: bool,
    model: &str,
) -> Result<Cached> {
    if !path.is_file() {
        return Ok(Cached::Missing);
    }
    let t = EmbeddingTable::load(path)?;
    let same = t.model == model
        && t.len() == source.len()
        && (0..source.len()).all(|i| t.names[i] == source.name(i));
    Ok(if same && (!need_grey || t.grey.is_some()) {
        Cached::Hit(t)
    } else {
        Cached::Stale
    })
}

/// Embeds every training crop once and saves the table to `path`.
pub(crate) fn compute_embeddings(
    path: &Path,
    source: &dyn CropSource,
    model: &FaceModel,
    need_grey: bool,
    batch: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<EmbeddingTable> {
    let table = EmbeddingTable::compute(source, model, need_grey, batch, progress)?;
    table.save(path)?;
    Ok(table)
}

/// Appends one line per step to `losses.csv`; on resume, rows of steps that the checkpoint does
/// not cover are dropped first (they will be recomputed identically).
pub(crate) struct LossLog {
    file: std::fs::File,
    path: std::path::PathBuf,
}

impl LossLog {
    pub(crate) fn open(path: &Path, resume_step: u64) -> Result<Self> {
        let header = "step,loss,pixel,identity,ssim,perceptual,tv,lr,grad_norm,outcome\n";
        let mut kept = header.to_string();
        if let Ok(text) = facelens_core::fs::read_to_string(path) {
            let covered = text.lines().skip(1).filter(|l| {
                l.split(',')
                    .next()
                    .and_then(|s| s.parse::<u64>().ok())
                    .is_some_and(|s| s < resume_step)
            });
            for row in covered {
                kept.push_str(row);
                kept.push('\n');
            }
        }
        write_atomic(path, kept.as_bytes())?;
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|e| ReconError::io(path, "cannot open", e))?;
        Ok(Self {
            file,
            path: path.to_path_buf(),
        })
    }

    pub(crate) fn write(&mut self, r: &StepReport) -> Result<()> {
        let opt = |v: Option<f64>| v.map(|x| format!("{x:.9e}")).unwrap_or_default();
        let outcome = match &r.outcome {
            StepOutcome::Updated => "updated".to_string(),
            StepOutcome::Skipped { .. } => "skipped".to_string(),
            StepOutcome::Recovered { lr_scale, .. } => format!("recovered(lr_scale={lr_scale})"),
        };
        writeln!(
            self.file,
            "{},{:.9e},{},{},{},{},{},{:.9e},{},{}",
            r.step,
            r.loss,
            opt(r.pixel),
            opt(r.identity),
            opt(r.ssim),
            opt(r.perceptual),
            opt(r.tv),
            r.lr,
            opt(r.grad_norm),
            outcome
        )
        .map_err(|e| ReconError::io(&self.path, "cannot append to", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Names(Vec<String>);

    impl CropSource for Names {
        fn len(&self) -> usize {
            self.0.len()
        }
        fn name(&self, index: usize) -> &str {
            &self.0[index]
        }
        fn crop(&self, _: usize) -> Result<image::RgbImage> {
            Ok(image::RgbImage::new(112, 112))
        }
    }

    #[test]
    fn cached_embeddings_must_match_crops_model_and_grey() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("embeddings.safetensors");
        let names: Vec<String> = vec!["a.jpg".into(), "b.jpg".into()];
        let table = EmbeddingTable {
            dim: 2,
            names: names.clone(),
            colour: vec![1.0, 0.0, 0.0, 1.0],
            grey: None,
            model: "w600k_mbf".into(),
        };
        table.save(&path).unwrap();
        let source = Names(names);
        assert!(matches!(cached_embeddings(&path, &source, false, "w600k_mbf").unwrap(), Cached::Hit(t) if t == table));
        // Another model, other crops, or grey embeddings that are not there: not reused.
        assert!(matches!(cached_embeddings(&path, &source, false, "sface").unwrap(), Cached::Stale));
        let other = Names(vec!["a.jpg".into(), "c.jpg".into()]);
        assert!(matches!(cached_embeddings(&path, &other, false, "w600k_mbf").unwrap(), Cached::Stale));
        assert!(matches!(cached_embeddings(&path, &source, true, "w600k_mbf").unwrap(), Cached::Stale));
        assert!(matches!(cached_embeddings(&dir.path().join("none"), &source, false, "w600k_mbf").unwrap(), Cached::Missing));
    }
}
