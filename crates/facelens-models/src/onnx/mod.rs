//! ONNX import: decode the protobuf in Rust and map initializers onto candle parameter names.
//!
//! ONNX graphs exported from PyTorch name most initializers by number (`518`, `519`, ...)
//! once BatchNorm has been folded, so names cannot be matched directly. Instead the
//! parameter-bearing nodes are taken in graph (topological) order and paired with the
//! module prefixes of the candle model in forward order; the strict loader then checks
//! every name and shape, so a graph of a different architecture cannot slip through.

pub mod proto;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use prost::Message;

use crate::error::{ModelError, Result};
use proto::{data_type, AttributeProto, ModelProto, NodeProto, TensorProto};

/// A decoded initializer: ONNX name, dims, f32 data.
#[derive(Debug, Clone)]
pub struct Initializer {
    pub name: String,
    pub dims: Vec<usize>,
    pub data: Vec<f32>,
}

/// A decoded ONNX graph: nodes in topological order plus f32 initializers.
#[derive(Debug)]
pub struct OnnxGraph {
    pub path: PathBuf,
    pub nodes: Vec<NodeProto>,
    pub initializers: HashMap<String, Initializer>,
    pub opset: i64,
}

impl OnnxGraph {
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| ModelError::io(path, e))?;
        Self::from_bytes(path, &bytes)
    }

    pub fn from_bytes(path: &Path, bytes: &[u8]) -> Result<Self> {
        let corrupt = |reason: String| ModelError::CorruptOnnx { path: path.to_path_buf(), reason };
        if bytes.is_empty() {
            return Err(corrupt("file is empty".into()));
        }
        let model = ModelProto::decode(bytes).map_err(|e| corrupt(format!("protobuf decode failed: {e}")))?;
        let graph = model.graph.ok_or_else(|| corrupt("no graph in model".into()))?;
        if graph.node.is_empty() {
            return Err(corrupt("graph has no nodes".into()));
        }
        let opset = model
            .opset_import
            .iter()
            .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
            .map(|o| o.version)
            .unwrap_or(0);
        let mut initializers = HashMap::new();
        for t in &graph.initializer {
            let init = decode_tensor(t).map_err(|r| corrupt(format!("initializer `{}`: {r}", t.name)))?;
            initializers.insert(t.name.clone(), init);
        }
        // Constant nodes carry weights in some exporters; treat them as initializers.
        for n in &graph.node {
            if n.op_type == "Constant" {
                if let (Some(out), Some(t)) = (n.output.first(), n.attribute.iter().find_map(|a| a.t.as_ref())) {
                    let mut init = decode_tensor(t).map_err(|r| corrupt(format!("constant `{out}`: {r}")))?;
                    init.name = out.clone();
                    initializers.insert(out.clone(), init);
                }
            }
        }
        Ok(Self { path: path.to_path_buf(), nodes: graph.node, initializers, opset })
    }

    /// Nodes that carry weights, in graph order, with their initializer inputs.
    pub fn parameter_nodes(&self) -> Vec<(&NodeProto, Vec<&Initializer>)> {
        self.nodes
            .iter()
            .filter(|n| n.op_type != "Constant")
            .filter_map(|n| {
                let inits: Vec<&Initializer> =
                    n.input.iter().skip(1).filter_map(|i| self.initializers.get(i)).collect();
                (!inits.is_empty()).then_some((n, inits))
            })
            .collect()
    }
}

/// Attribute lookup helpers.
pub fn attr<'a>(node: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}

pub fn attr_i(node: &NodeProto, name: &str, default: i64) -> i64 {
    attr(node, name).map(|a| a.i).unwrap_or(default)
}

pub fn attr_ints(node: &NodeProto, name: &str) -> Vec<i64> {
    attr(node, name).map(|a| a.ints.clone()).unwrap_or_default()
}

fn decode_tensor(t: &TensorProto) -> std::result::Result<Initializer, String> {
    if t.data_location == 1 {
        return Err("external data is not supported; re-export with weights embedded".into());
    }
    let dims: Vec<usize> = t
        .dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| format!("negative dimension {d}")))
        .collect::<std::result::Result<_, _>>()?;
    let numel: usize = dims.iter().product();
    let data: Vec<f32> = match t.data_type {
        data_type::FLOAT if !t.raw_data.is_empty() => {
            if t.raw_data.len() != numel * 4 {
                return Err(format!("raw_data has {} bytes, expected {}", t.raw_data.len(), numel * 4));
            }
            t.raw_data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
        }
        data_type::FLOAT => t.float_data.clone(),
        data_type::DOUBLE if !t.raw_data.is_empty() => t
            .raw_data
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("chunk of 8")) as f32)
            .collect(),
        data_type::DOUBLE => t.double_data.iter().map(|&v| v as f32).collect(),
        data_type::INT64 if !t.raw_data.is_empty() => t
            .raw_data
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().expect("chunk of 8")) as f32)
            .collect(),
        data_type::INT64 => t.int64_data.iter().map(|&v| v as f32).collect(),
        data_type::INT32 if !t.raw_data.is_empty() => t
            .raw_data
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f32)
            .collect(),
        data_type::INT32 => t.int32_data.iter().map(|&v| v as f32).collect(),
        data_type::FLOAT16 if !t.raw_data.is_empty() => t
            .raw_data
            .chunks_exact(2)
            .map(|c| half_to_f32(u16::from_le_bytes([c[0], c[1]])))
            .collect(),
        other => return Err(format!("unsupported data type {other}")),
    };
    if data.len() != numel {
        return Err(format!("holds {} values, dims {:?} need {}", data.len(), dims, numel));
    }
    Ok(Initializer { name: t.name.clone(), dims, data })
}

fn half_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let mant = (h & 0x3ff) as u32;
    let bits = match (exp, mant) {
        (0, 0) => sign,
        (0, m) => {
            // Subnormal: renormalise.
            let mut e = 127 - 15 + 1;
            let mut m = m;
            while m & 0x400 == 0 {
                m <<= 1;
                e -= 1;
            }
            sign | (e << 23) | ((m & 0x3ff) << 13)
        }
        (0x1f, m) => sign | 0x7f80_0000 | (m << 13),
        (e, m) => sign | ((e + 127 - 15) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

/// Parameter names each weight-bearing ONNX op maps to, in ONNX input order.
pub fn param_suffixes(op_type: &str) -> Option<&'static [&'static str]> {
    match op_type {
        "Conv" | "Gemm" | "ConvTranspose" => Some(&["weight", "bias"]),
        "PRelu" => Some(&["weight"]),
        "BatchNormalization" => Some(&["weight", "bias", "running_mean", "running_var"]),
        _ => None,
    }
}

/// Pairs parameter nodes with module prefixes (forward order) and returns named tensors.
///
/// `prefixes[i]` receives the initializers of the i-th parameter node. Trailing singleton
/// dimensions that PyTorch's exporter adds (PReLU slopes `[C,1,1]`) are squeezed when the
/// expected shape asks for fewer dims.
pub fn map_by_order(
    graph: &OnnxGraph,
    arch: &str,
    prefixes: &[(String, &'static str)],
    expected: &HashMap<String, Vec<usize>>,
) -> Result<Vec<(String, Vec<usize>, Vec<f32>)>> {
    let mismatch = |reason: String| ModelError::GraphMismatch { path: graph.path.clone(), arch: arch.into(), reason };
    let nodes = graph.parameter_nodes();
    if nodes.len() != prefixes.len() {
        return Err(mismatch(format!(
            "graph has {} weight-bearing nodes, the model has {} layers",
            nodes.len(),
            prefixes.len()
        )));
    }
    let mut out = Vec::new();
    for (i, ((node, inits), (prefix, op))) in nodes.iter().zip(prefixes).enumerate() {
        if node.op_type != *op {
            return Err(mismatch(format!(
                "node {i} (`{}`) is {}, expected {op} for `{prefix}`",
                node.name, node.op_type
            )));
        }
        let suffixes = param_suffixes(op).ok_or_else(|| mismatch(format!("unsupported op {op}")))?;
        for (init, suffix) in inits.iter().zip(suffixes.iter()) {
            let name = format!("{prefix}.{suffix}");
            let want = expected
                .get(&name)
                .ok_or_else(|| mismatch(format!("the model has no parameter `{name}`")))?;
            let squeezed: Vec<usize> = squeeze_to(&init.dims, want.len());
            if &squeezed != want {
                return Err(ModelError::WrongShape {
                    path: graph.path.clone(),
                    name: format!("{name} (ONNX `{}`)", init.name),
                    expected: want.clone(),
                    got: init.dims.clone(),
                });
            }
            out.push((name, squeezed, init.data.clone()));
        }
    }
    Ok(out)
}

fn squeeze_to(dims: &[usize], rank: usize) -> Vec<usize> {
    let mut d = dims.to_vec();
    while d.len() > rank && d.last() == Some(&1) {
        d.pop();
    }
    d
}
