//! Training and evaluation data for the decoder.
//!
//! * [`CropSource`]: aligned 112x112 crops by index — UTKFace files aligned on the fly with their
//!   landmark CSV ([`AlignedFiles`]), or crops held in memory ([`InMemoryFaces`], tests).
//! * [`EmbeddingTable`]: the backbone's embeddings of every training crop (colour, and grey when
//!   grey augmentation is on), computed once and stored next to the run as safetensors.
//! * [`BatchPlan`]: which samples make up step `s` — a pure function of the seed and `s`
//!   (one permutation per epoch), so a resumed run sees exactly the batches the uninterrupted
//!   run would have seen, whatever the number of worker threads.
//! * [`BatchLoader`]: decodes and aligns batches on worker threads behind bounded channels.
//! * [`lfw_genuine_faces`]: held-out evaluation faces with a second image of the same person.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use candle_core::{Device, Tensor};
use facelens_data::{
    align_face, decode_image, DataError, LandmarkStatus, LandmarkTable, Pair, RgbImage,
};
use facelens_models::preprocess::l2_normalise;
use facelens_models::FaceModel;
use rayon::prelude::*;

use crate::decoder::{crop_to_unit, OUTPUT_SIDE};
use crate::error::{ReconError, Result};
use crate::losses::border_mask;
use facelens_core::rng::{hash_words, unit_from_hash, Xoshiro256};

/// Aligned crops by index.
pub trait CropSource: Send + Sync {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// A stable name of item `index` (its file path relative to the dataset).
    fn name(&self, index: usize) -> &str;
    /// The aligned 112x112 RGB crop of item `index`.
    fn crop(&self, index: usize) -> Result<RgbImage>;
}

/// Image files aligned with their 5 landmarks when loaded.
#[derive(Debug, Clone)]
pub struct AlignedFiles {
    root: PathBuf,
    items: Vec<(String, [[f32; 2]; 5])>,
}

impl AlignedFiles {
    /// Every row of `table` with keypoints (`nodet` rows are left out), sorted by file name so
    /// the index order does not depend on the CSV's row order; `limit` (0 = all) keeps that
    /// many spread evenly over the sorted list. UTKFace names start with the age, so a prefix
    /// of the sorted list would be a biased (mostly young) sample.
    pub fn from_landmarks(images_root: &Path, table: &LandmarkTable, limit: usize) -> Result<Self> {
        let mut items: Vec<(String, [[f32; 2]; 5])> = table
            .iter()
            .filter(|r| r.status != LandmarkStatus::NoDet)
            .filter_map(|r| r.keypoints.map(|k| (r.file.clone(), k)))
            .collect();
        items.sort_by(|a, b| a.0.cmp(&b.0));
        if limit > 0 && limit < items.len() {
            let n = items.len();
            items = (0..limit).map(|i| items[i * n / limit].clone()).collect();
        }
        if items.is_empty() {
            return Err(ReconError::Config(format!(
                "no usable landmark rows for the images under {}",
                images_root.display()
            )));
        }
        Ok(Self {
            root: images_root.to_path_buf(),
            items,
        })
    }
}

impl CropSource for AlignedFiles {
    fn len(&self) -> usize {
        self.items.len()
    }
    fn name(&self, index: usize) -> &str {
        &self.items[index].0
    }
    fn crop(&self, index: usize) -> Result<RgbImage> {
        let (file, kps) = &self.items[index];
        let path = self.root.join(file);
        let img = decode_image(&path)?;
        Ok(
            align_face(&img, kps, OUTPUT_SIDE as u32).map_err(|e| match e {
                DataError::DegenerateLandmarks { reason } => DataError::DegenerateLandmarks {
                    reason: format!("{}: {reason}", path.display()),
                },
                other => other,
            })?,
        )
    }
}

/// Crops already in memory.
#[derive(Debug, Clone)]
pub struct InMemoryFaces {
    pub names: Vec<String>,
    pub crops: Vec<RgbImage>,
}

impl CropSource for InMemoryFaces {
    fn len(&self) -> usize {
        self.crops.len()
    }
    fn name(&self, index: usize) -> &str {
        &self.names[index]
    }
    fn crop(&self, index: usize) -> Result<RgbImage> {
        Ok(self.crops[index].clone())
    }
}

/// BT.601 luma replicated to three channels, the way grayscale LFW decodes to RGB. Exactly
/// black pixels stay black, so the alignment border is still recognised.
pub fn to_grey(img: &RgbImage) -> RgbImage {
    let mut out = img.clone();
    for p in out.pixels_mut() {
        let y = (0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32)
            .round()
            .clamp(0.0, 255.0) as u8;
        p.0 = [y; 3];
    }
    out
}

const EMB_COLOUR: &str = "colour";
const EMB_GREY: &str = "grey";
const EMB_META: &str = "facelens.recon.embeddings";

/// L2-normalised embeddings of every training crop.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingTable {
    pub dim: usize,
    pub names: Vec<String>,
    /// `[len][dim]` of the colour crops.
    pub colour: Vec<f32>,
    /// `[len][dim]` of the grey crops, when grey augmentation needs them.
    pub grey: Option<Vec<f32>>,
    /// The model reference the embeddings come from.
    pub model: String,
}

impl EmbeddingTable {
    /// Embeds every crop of `source` (and its grey version when `with_grey`), `batch` at a time;
    /// `progress(done, total)` is called after each batch.
    pub fn compute(
        source: &dyn CropSource,
        model: &FaceModel,
        with_grey: bool,
        batch: usize,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Self> {
        let n = source.len();
        let dim = model.spec.embedding_dim;
        let mut colour = Vec::with_capacity(n * dim);
        let mut grey = with_grey.then(|| Vec::with_capacity(n * dim));
        let idx: Vec<usize> = (0..n).collect();
        for chunk in idx.chunks(batch.max(1)) {
            let crops: Vec<RgbImage> = chunk
                .par_iter()
                .map(|&i| source.crop(i))
                .collect::<Result<_>>()?;
            let refs: Vec<&[u8]> = crops.iter().map(|c| c.as_raw().as_slice()).collect();
            for e in model.embed_crops(&refs, refs.len())? {
                colour.extend(l2_normalise(&e));
            }
            if let Some(g) = grey.as_mut() {
                let greys: Vec<RgbImage> = crops.iter().map(to_grey).collect();
                let refs: Vec<&[u8]> = greys.iter().map(|c| c.as_raw().as_slice()).collect();
                for e in model.embed_crops(&refs, refs.len())? {
                    g.extend(l2_normalise(&e));
                }
            }
            progress(colour.len() / dim, n);
        }
        Ok(Self {
            dim,
            names: (0..n).map(|i| source.name(i).to_string()).collect(),
            colour,
            grey,
            model: model.spec.name.clone(),
        })
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Embedding of item `index` (grey version when `grey` and available).
    pub fn get(&self, index: usize, grey: bool) -> &[f32] {
        let table = match (&self.grey, grey) {
            (Some(g), true) => g,
            _ => &self.colour,
        };
        &table[index * self.dim..(index + 1) * self.dim]
    }

    /// Writes the table atomically as safetensors (names and model in the metadata).
    pub fn save(&self, path: &Path) -> Result<()> {
        let n = self.len();
        let mut tensors = vec![(
            EMB_COLOUR.to_string(),
            Tensor::from_slice(&self.colour, (n, self.dim), &Device::Cpu)?,
        )];
        if let Some(g) = &self.grey {
            tensors.push((
                EMB_GREY.to_string(),
                Tensor::from_slice(g, (n, self.dim), &Device::Cpu)?,
            ));
        }
        let meta = serde_json::json!({ "names": self.names, "model": self.model, "dim": self.dim });
        let mut info = HashMap::new();
        info.insert(EMB_META.to_string(), meta.to_string());
        let bytes =
            safetensors::serialize(tensors.iter().map(|(k, v)| (k.as_str(), v)), Some(info))
                .map_err(|e| ReconError::Encode {
                    path: path.into(),
                    reason: e.to_string(),
                })?;
        crate::checkpoint::write_atomic(path, &bytes)
    }

    /// Reads a table written by [`save`](Self::save).
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = facelens_core::fs::read(path)
            .map_err(|e| ReconError::io(path, "cannot read embedding table", e))?;
        let corrupt = |reason: String| ReconError::CorruptCheckpoint {
            path: path.into(),
            reason,
        };
        let (_, header) =
            safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| corrupt(e.to_string()))?;
        let meta_text = header
            .metadata()
            .as_ref()
            .and_then(|m| m.get(EMB_META).cloned())
            .ok_or_else(|| corrupt(format!("no `{EMB_META}` metadata")))?;
        #[derive(serde::Deserialize)]
        struct Meta {
            names: Vec<String>,
            model: String,
            dim: usize,
        }
        let meta: Meta = serde_json::from_str(&meta_text).map_err(|e| corrupt(e.to_string()))?;
        let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)?;
        let read = |name: &str| -> Result<Option<Vec<f32>>> {
            let Some(t) = tensors.get(name) else {
                return Ok(None);
            };
            let expected = vec![meta.names.len(), meta.dim];
            if t.dims() != expected.as_slice() {
                return Err(ReconError::WrongShape {
                    path: path.into(),
                    name: name.into(),
                    expected,
                    got: t.dims().to_vec(),
                });
            }
            let v: Vec<f32> = t.flatten_all()?.to_vec1()?;
            let bad = v.iter().filter(|x| !x.is_finite()).count();
            if bad > 0 {
                return Err(ReconError::NonFinite {
                    path: path.into(),
                    name: name.into(),
                    count: bad,
                });
            }
            Ok(Some(v))
        };
        let colour = read(EMB_COLOUR)?.ok_or_else(|| ReconError::MissingTensor {
            path: path.into(),
            name: EMB_COLOUR.into(),
        })?;
        let grey = read(EMB_GREY)?;
        Ok(Self {
            dim: meta.dim,
            names: meta.names,
            colour,
            grey,
            model: meta.model,
        })
    }
}

/// One sample of a batch: dataset index and whether it is shown in grey.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    pub index: usize,
    pub grey: bool,
}

/// The deterministic data order.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchPlan {
    pub seed: u64,
    pub batch_size: usize,
    pub len: usize,
    /// Fraction of samples converted to grey (needs grey embeddings).
    pub grey_fraction: f64,
}

impl BatchPlan {
    /// The samples of (0-based) step `step`: positions `step * B .. (step + 1) * B` of the endless
    /// sequence of per-epoch permutations.
    pub fn samples(&self, step: u64) -> Vec<Sample> {
        let len = self.len.max(1) as u64;
        let mut cache: Option<(u64, Vec<usize>)> = None;
        (0..self.batch_size as u64)
            .map(|j| {
                let pos = step * self.batch_size as u64 + j;
                let (epoch, k) = (pos / len, (pos % len) as usize);
                if cache.as_ref().map(|c| c.0) != Some(epoch) {
                    let perm =
                        Xoshiro256::new(hash_words(&[self.seed, 0xDA7A, epoch])).permutation(len as usize);
                    cache = Some((epoch, perm));
                }
                let index = cache.as_ref().map(|c| c.1[k]).unwrap_or(k);
                let grey = self.grey_fraction > 0.0
                    && unit_from_hash(hash_words(&[self.seed, 0x6E7, epoch, k as u64]))
                        < self.grey_fraction;
                Sample { index, grey }
            })
            .collect()
    }
}

/// A training batch on the CPU, ready to be moved to the device.
#[derive(Debug, Clone)]
pub struct Batch {
    pub step: u64,
    pub samples: Vec<Sample>,
    /// `(N, 3, 112, 112)` RGB in `[-1, 1]`.
    pub images: Vec<f32>,
    /// `(N, 1, 112, 112)`: 0 on the black alignment border.
    pub masks: Vec<f32>,
    /// `(N, D)` L2-normalised target embeddings.
    pub embeddings: Vec<f32>,
    pub dim: usize,
}

impl Batch {
    pub fn len(&self) -> usize {
        self.samples.len()
    }
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }
}

/// Everything a worker needs to build the batch of a step.
pub struct TrainData {
    pub source: Arc<dyn CropSource>,
    pub table: EmbeddingTable,
    pub plan: BatchPlan,
}

impl TrainData {
    pub fn new(
        source: Arc<dyn CropSource>,
        table: EmbeddingTable,
        plan: BatchPlan,
    ) -> Result<Self> {
        if table.len() != source.len() || plan.len != source.len() {
            return Err(ReconError::Config(format!(
                "data size mismatch: {} crops, {} embeddings, plan over {}",
                source.len(),
                table.len(),
                plan.len
            )));
        }
        if (0..source.len()).any(|i| source.name(i) != table.names[i]) {
            return Err(ReconError::Config(
                "the embedding table lists other files than the data set".into(),
            ));
        }
        if plan.grey_fraction > 0.0 && table.grey.is_none() {
            return Err(ReconError::Config(
                "grey augmentation needs grey embeddings in the table".into(),
            ));
        }
        Ok(Self {
            source,
            table,
            plan,
        })
    }

    pub fn batch(&self, step: u64) -> Result<Batch> {
        let samples = self.plan.samples(step);
        let plane = OUTPUT_SIDE * OUTPUT_SIDE;
        let n = samples.len();
        let mut images = Vec::with_capacity(n * 3 * plane);
        let mut masks = Vec::with_capacity(n * plane);
        let mut embeddings = Vec::with_capacity(n * self.table.dim);
        for s in &samples {
            let mut crop = self.source.crop(s.index)?;
            if s.grey {
                crop = to_grey(&crop);
            }
            crop_to_unit(crop.as_raw(), &mut images);
            masks.extend(border_mask(crop.as_raw()));
            embeddings.extend_from_slice(self.table.get(s.index, s.grey));
        }
        Ok(Batch {
            step,
            samples,
            images,
            masks,
            embeddings,
            dim: self.table.dim,
        })
    }
}

/// Batches of steps `start..end` built on worker threads; batch `s` is made by worker
/// `(s - start) % workers` and read back in step order, each worker at most `prefetch` ahead.
pub struct BatchLoader {
    receivers: Vec<Receiver<Result<Batch>>>,
    handles: Vec<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    next: u64,
    start: u64,
    end: u64,
}

impl BatchLoader {
    pub fn spawn(
        data: Arc<TrainData>,
        start: u64,
        end: u64,
        workers: usize,
        prefetch: usize,
    ) -> Self {
        let workers = workers.max(1);
        let stop = Arc::new(AtomicBool::new(false));
        let mut receivers = Vec::with_capacity(workers);
        let mut handles = Vec::with_capacity(workers);
        for w in 0..workers {
            let (tx, rx) = sync_channel(prefetch.max(1));
            let (data, stop) = (data.clone(), stop.clone());
            handles.push(std::thread::spawn(move || {
                let mut step = start + w as u64;
                while step < end && !stop.load(Ordering::Relaxed) {
                    if tx.send(data.batch(step)).is_err() {
                        break;
                    }
                    step += workers as u64;
                }
            }));
            receivers.push(rx);
        }
        Self {
            receivers,
            handles,
            stop,
            next: start,
            start,
            end,
        }
    }

    /// The batch of the next step, `None` after the last one.
    pub fn next_batch(&mut self) -> Option<Result<Batch>> {
        if self.next >= self.end {
            return None;
        }
        let w = ((self.next - self.start) % self.receivers.len() as u64) as usize;
        self.next += 1;
        Some(
            self.receivers[w]
                .recv()
                .unwrap_or_else(|_| Err(ReconError::Loader("a worker thread exited early".into()))),
        )
    }
}

impl Iterator for BatchLoader {
    type Item = Result<Batch>;
    fn next(&mut self) -> Option<Self::Item> {
        self.next_batch()
    }
}

impl Drop for BatchLoader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Dropping the receivers unblocks workers waiting on a full channel.
        self.receivers.clear();
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

/// A held-out face with a second image of the same person.
#[derive(Debug, Clone)]
pub struct EvalFace {
    /// Path of the source image relative to the LFW images folder.
    pub name: String,
    pub source: RgbImage,
    pub other_name: String,
    pub other: RgbImage,
}

/// The first `n` genuine pairs of `pairs` whose two images both have landmarks, one pair per
/// person, aligned.
pub fn lfw_genuine_faces(
    images_root: &Path,
    landmarks: &LandmarkTable,
    pairs: &[Pair],
    n: usize,
) -> Result<Vec<EvalFace>> {
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for p in pairs.iter().filter(|p| p.genuine) {
        if out.len() >= n {
            break;
        }
        let person = p.a.parent().map(|x| x.to_path_buf()).unwrap_or_default();
        if !seen.insert(person) {
            continue;
        }
        let load =
            |rel: &Path| facelens_data::load_aligned(rel, Some(landmarks), images_root, false);
        let (a, b) = match (load(&p.a), load(&p.b)) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(e), _) | (_, Err(e)) if e.is_no_detection() => continue,
            (Err(e), _) | (_, Err(e)) => return Err(e.into()),
        };
        out.push(EvalFace {
            name: p.a.to_string_lossy().replace('\\', "/"),
            source: a,
            other_name: p.b.to_string_lossy().replace('\\', "/"),
            other: b,
        });
    }
    Ok(out)
}
