//! Strict weight loading and atomic saving.
//!
//! candle's `VarBuilder` only notices a missing tensor when a layer asks for it and never
//! notices extra ones, which hides a mismatched checkpoint until much later. Here a
//! checkpoint is checked against the full parameter layout of the architecture first:
//! missing keys, unexpected keys, shapes, dtypes and non-finite values each get their own
//! error naming the file.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Mutex;

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder};
use safetensors::{Dtype as StDtype, SafeTensors};

use crate::error::{ModelError, Result};

/// Names and shapes of every parameter of a model, in construction (forward) order.
#[derive(Debug, Clone, Default)]
pub struct ParamLayout {
    pub params: Vec<(String, Vec<usize>)>,
}

impl ParamLayout {
    /// Builds the model once on a recording backend and returns what it asked for.
    pub fn record<M>(build: impl FnOnce(VarBuilder) -> candle_core::Result<M>) -> Result<Self> {
        let backend = Recorder::default();
        let params = std::sync::Arc::new(backend);
        let vb = VarBuilder::from_backend(Box::new(RecorderHandle(params.clone())), DType::F32, Device::Cpu);
        build(vb)?;
        let params = params.seen.lock().map(|v| v.clone()).unwrap_or_default();
        Ok(Self { params })
    }

    pub fn shapes(&self) -> HashMap<String, Vec<usize>> {
        self.params.iter().cloned().collect()
    }

    /// Module prefixes (name without the last component), deduplicated, in order.
    pub fn prefixes(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for (name, _) in &self.params {
            let prefix = name.rsplit_once('.').map(|(p, _)| p.to_string()).unwrap_or_default();
            if !out.contains(&prefix) {
                out.push(prefix);
            }
        }
        out
    }

    pub fn num_parameters(&self) -> usize {
        self.params.iter().map(|(_, s)| s.iter().product::<usize>()).sum()
    }
}

#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<(String, Vec<usize>)>>,
}

struct RecorderHandle(std::sync::Arc<Recorder>);

impl SimpleBackend for RecorderHandle {
    fn get(&self, s: Shape, name: &str, _h: Init, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        if let Ok(mut seen) = self.0.seen.lock() {
            if !seen.iter().any(|(n, _)| n == name) {
                seen.push((name.to_string(), s.dims().to_vec()));
            }
        }
        Tensor::zeros(s, dtype, dev)
    }
    fn get_unchecked(&self, name: &str, _dtype: DType, _dev: &Device) -> candle_core::Result<Tensor> {
        candle_core::bail!("recording backend cannot provide `{name}` without a shape")
    }
    fn contains_tensor(&self, _name: &str) -> bool {
        true
    }
}

/// A checked set of f32 tensors plus the file's metadata.
#[derive(Debug)]
pub struct Checkpoint {
    pub tensors: HashMap<String, Tensor>,
    pub metadata: BTreeMap<String, String>,
}

impl Checkpoint {
    pub fn var_builder(&self, device: &Device) -> Result<VarBuilder<'static>> {
        let mut map = HashMap::new();
        for (k, v) in &self.tensors {
            map.insert(k.clone(), v.to_device(device)?);
        }
        Ok(VarBuilder::from_tensors(map, DType::F32, device))
    }
}

/// Reads only the metadata header of a safetensors file (cheap; used to infer the arch).
pub fn read_metadata(path: &Path) -> Result<BTreeMap<String, String>> {
    let bytes = facelens_core::fs::read(path).map_err(|e| ModelError::io(path, e))?;
    let (_, meta) = SafeTensors::read_metadata(&bytes)
        .map_err(|e| ModelError::CorruptSafetensors { path: path.to_path_buf(), reason: e.to_string() })?;
    Ok(meta.metadata().clone().map(|m| m.into_iter().collect()).unwrap_or_default())
}

/// Loads `path` and checks it against `layout`: every parameter present with the right
/// shape, nothing extra, float dtypes only, all values finite.
pub fn load_checked(path: &Path, layout: &ParamLayout, arch: &str) -> Result<Checkpoint> {
    let bytes = facelens_core::fs::read(path).map_err(|e| ModelError::io(path, e))?;
    let corrupt = |reason: String| ModelError::CorruptSafetensors { path: path.to_path_buf(), reason };
    if bytes.is_empty() {
        return Err(corrupt("file is empty".into()));
    }
    let st = SafeTensors::deserialize(&bytes).map_err(|e| corrupt(e.to_string()))?;
    let (_, header) = SafeTensors::read_metadata(&bytes).map_err(|e| corrupt(e.to_string()))?;
    let metadata: BTreeMap<String, String> =
        header.metadata().clone().map(|m| m.into_iter().collect()).unwrap_or_default();

    let expected = layout.shapes();
    // PyTorch's BatchNorm step counters are bookkeeping, not weights: ignore them.
    let present: Vec<String> =
        st.names().into_iter().filter(|n| !n.ends_with(".num_batches_tracked")).map(String::from).collect();
    let mut missing: Vec<String> =
        layout.params.iter().map(|(n, _)| n.clone()).filter(|n| !present.contains(n)).collect();
    let mut unexpected: Vec<String> = present.iter().filter(|n| !expected.contains_key(*n)).cloned().collect();
    if !missing.is_empty() {
        missing.sort();
        return Err(ModelError::MissingKeys { path: path.to_path_buf(), names: missing });
    }
    if !unexpected.is_empty() {
        unexpected.sort();
        return Err(ModelError::UnexpectedKeys { path: path.to_path_buf(), arch: arch.into(), names: unexpected });
    }

    let mut tensors = HashMap::new();
    for (name, shape) in &layout.params {
        let view = st.tensor(name).map_err(|e| corrupt(e.to_string()))?;
        if view.shape() != shape.as_slice() {
            return Err(ModelError::WrongShape {
                path: path.to_path_buf(),
                name: name.clone(),
                expected: shape.clone(),
                got: view.shape().to_vec(),
            });
        }
        let values = to_f32(view.dtype(), view.data()).ok_or_else(|| ModelError::WrongDtype {
            path: path.to_path_buf(),
            name: name.clone(),
            got: format!("{:?}", view.dtype()),
        })?;
        let bad = values.iter().filter(|v| !v.is_finite()).count();
        if bad > 0 {
            return Err(ModelError::NonFinite { path: path.to_path_buf(), name: name.clone(), count: bad });
        }
        tensors.insert(name.clone(), Tensor::from_vec(values, shape.as_slice(), &Device::Cpu)?);
    }
    Ok(Checkpoint { tensors, metadata })
}

fn to_f32(dtype: StDtype, data: &[u8]) -> Option<Vec<f32>> {
    Some(match dtype {
        StDtype::F32 => data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        StDtype::F64 => data
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("chunk of 8")) as f32)
            .collect(),
        StDtype::F16 => data
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        StDtype::BF16 => data
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        _ => return None,
    })
}

/// Writes f32 tensors plus metadata to `path` atomically (temp file in the same
/// directory, fsync, rename), so an interrupted write never leaves a partial file.
pub fn save_atomic(
    path: &Path,
    tensors: &[(String, Vec<usize>, Vec<f32>)],
    metadata: &BTreeMap<String, String>,
) -> Result<()> {
    write_atomic(path, &serialize_f32(path, tensors, metadata)?)
}

/// Named f32 tensors (with shapes) plus string metadata as safetensors bytes; `path` is where
/// they are going, for messages.
pub fn serialize_f32(
    path: &Path,
    tensors: &[(String, Vec<usize>, Vec<f32>)],
    metadata: &BTreeMap<String, String>,
) -> Result<Vec<u8>> {
    let bytes_per: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(n, s, d)| (n.clone(), s.clone(), d.iter().flat_map(|v| v.to_le_bytes()).collect()))
        .collect();
    let mut views = Vec::with_capacity(bytes_per.len());
    for (n, s, b) in &bytes_per {
        let view = safetensors::tensor::TensorView::new(StDtype::F32, s.clone(), b)
            .map_err(|e| ModelError::CorruptSafetensors { path: path.to_path_buf(), reason: e.to_string() })?;
        views.push((n.clone(), view));
    }
    let meta: HashMap<String, String> = metadata.clone().into_iter().collect();
    safetensors::serialize(views, Some(meta))
        .map_err(|e| ModelError::CorruptSafetensors { path: path.to_path_buf(), reason: e.to_string() })
}

/// Writes `data` to `path` atomically ([`facelens_core::write_atomic`]), creating its folder.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
    }
    facelens_core::write_atomic(path, data).map_err(|e| ModelError::io(path, e))
}

/// Fills every variable of `map` with pseudo-random values that depend only on `seed` and the
/// variable's name, so that randomly initialised networks (tests, synthetic benchmarks) are the
/// same on every run and machine: candle's CPU generator cannot be seeded.
///
/// By name: BatchNorm `running_var` in [0.5, 2], `running_mean` and biases in [-0.3, 0.3], other
/// 1-D weights (norm scales, PReLU slopes) in [0.1, 1], and weights of rank >= 2 uniform in
/// `±sqrt(3 / fan_in)` (unit-variance preserving), with `fan_in` = dim 1 times the kernel size.
pub fn fill_deterministic(map: &candle_nn::VarMap, seed: u64) -> candle_core::Result<()> {
    let data = map.data().lock().map_err(|_| candle_core::Error::Msg("variable map lock poisoned".into()))?;
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    for name in names {
        let var = &data[name];
        let dims = var.dims().to_vec();
        let numel: usize = dims.iter().product();
        // One stream per variable: its values do not depend on which other variables exist.
        let mut state = name.bytes().fold(seed ^ 0x9E37_79B9_7F4A_7C15, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01B3));
        let mut uniform = |lo: f64, hi: f64| {
            let z = facelens_core::rng::splitmix64(&mut state);
            (lo + (hi - lo) * facelens_core::rng::unit_from_hash(z)) as f32
        };
        let (lo, hi) = if name.ends_with("running_var") {
            (0.5, 2.0)
        } else if name.ends_with("running_mean") || name.ends_with("bias") {
            (-0.3, 0.3)
        } else if dims.len() <= 1 {
            (0.1, 1.0)
        } else {
            let fan_in = (dims[1] * dims[2..].iter().product::<usize>()).max(1) as f64;
            let b = (3.0 / fan_in).sqrt();
            (-b, b)
        };
        let values: Vec<f32> = (0..numel).map(|_| uniform(lo, hi)).collect();
        var.set(&Tensor::from_vec(values, dims, var.device())?)?;
    }
    Ok(())
}
