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
        let bytes = facelens_core::fs::read(path).map_err(|e| ModelError::io(path, e))?;
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
        let mut graph = Self { path: path.to_path_buf(), nodes: graph.node, initializers, opset };
        graph.fold_weight_quantisation().map_err(corrupt)?;
        Ok(graph)
    }

    /// Replaces `DequantizeLinear` (and a following `Reshape`) of stored weights by the float
    /// tensors they compute, so weight-only quantised graphs (int8 with per-axis or blocked
    /// scales, as the OpenCV zoo ships) import like float ones. Nodes reading activations are
    /// left alone.
    fn fold_weight_quantisation(&mut self) -> std::result::Result<(), String> {
        let mut kept = Vec::with_capacity(self.nodes.len());
        for node in std::mem::take(&mut self.nodes) {
            let constant = |i: usize| node.input.get(i).and_then(|n| self.initializers.get(n));
            let folded = match node.op_type.as_str() {
                "DequantizeLinear" => match (constant(0), constant(1)) {
                    (Some(x), Some(scale)) => Some(dequantize(&node, x, scale, constant(2))?),
                    _ => None,
                },
                "Reshape" => match (constant(0), constant(1)) {
                    (Some(x), Some(shape)) => Some(reshape(x, shape)?),
                    _ => None,
                },
                _ => None,
            };
            match (folded, node.output.first()) {
                (Some(mut init), Some(out)) => {
                    init.name = out.clone();
                    self.initializers.insert(out.clone(), init);
                }
                _ => kept.push(node),
            }
        }
        self.nodes = kept;
        Ok(())
    }

    /// Nodes that carry weights (ops with parameters, see [`param_suffixes`]), in graph order,
    /// with their initializer inputs. Constants of other ops (input scaling, dropout ratios)
    /// are not parameters.
    pub fn parameter_nodes(&self) -> Vec<(&NodeProto, Vec<&Initializer>)> {
        self.nodes
            .iter()
            .filter(|n| param_suffixes(&n.op_type).is_some())
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

/// `DequantizeLinear` on constants: `y = (x - zero_point) * scale`, with a scalar scale, one
/// scale per slice along `axis`, or (opset 21) one per `block_size` elements along `axis`.
fn dequantize(
    node: &NodeProto,
    x: &Initializer,
    scale: &Initializer,
    zero_point: Option<&Initializer>,
) -> std::result::Result<Initializer, String> {
    let what = |r: String| format!("DequantizeLinear `{}`: {r}", node.name);
    let rank = x.dims.len() as i64;
    let axis = attr_i(node, "axis", 1);
    let axis = if axis < 0 { axis + rank } else { axis };
    let block = attr_i(node, "block_size", 0);
    // Index of the scale that applies to element `i` of `x`.
    let dims = &x.dims;
    let scale_index: Box<dyn Fn(usize) -> usize> = if scale.data.len() == 1 {
        Box::new(|_| 0)
    } else {
        if !(0..rank).contains(&axis) {
            return Err(what(format!("axis {axis} out of range for rank {rank}")));
        }
        let a = axis as usize;
        let inner: usize = dims[a + 1..].iter().product();
        if block > 0 {
            let b = block as usize;
            let mut want = dims.clone();
            want[a] = dims[a].div_ceil(b);
            if scale.dims != want {
                return Err(what(format!("scales {:?} do not match data {:?} with block_size {b}", scale.dims, dims)));
            }
            let (n_axis, n_blocks) = (dims[a], want[a]);
            Box::new(move |i| {
                let (outer, rest) = (i / (n_axis * inner), i % (n_axis * inner));
                let (k, j) = (rest / inner, rest % inner);
                (outer * n_blocks + k / b) * inner + j
            })
        } else {
            if scale.data.len() != dims[a] {
                return Err(what(format!("{} scales for axis {a} of length {}", scale.data.len(), dims[a])));
            }
            let n_axis = dims[a];
            Box::new(move |i| (i / inner) % n_axis)
        }
    };
    if let Some(z) = zero_point {
        if z.data.len() != scale.data.len() {
            return Err(what(format!("{} zero points for {} scales", z.data.len(), scale.data.len())));
        }
    }
    let data = (0..x.data.len())
        .map(|i| {
            let s = scale_index(i);
            (x.data[i] - zero_point.map_or(0.0, |z| z.data[s])) * scale.data[s]
        })
        .collect();
    Ok(Initializer { name: String::new(), dims: x.dims.clone(), data })
}

/// `Reshape` on a constant, with ONNX's `0` (keep) and `-1` (infer) entries.
fn reshape(x: &Initializer, shape: &Initializer) -> std::result::Result<Initializer, String> {
    let numel = x.data.len();
    let mut dims = Vec::with_capacity(shape.data.len());
    let mut infer = None;
    for (i, &d) in shape.data.iter().enumerate() {
        match d as i64 {
            0 => dims.push(*x.dims.get(i).ok_or("Reshape: 0 past the input's rank")?),
            -1 if infer.is_none() => {
                infer = Some(i);
                dims.push(1);
            }
            d if d > 0 => dims.push(d as usize),
            d => return Err(format!("Reshape: bad dimension {d}")),
        }
    }
    let known: usize = dims.iter().product();
    if let Some(i) = infer {
        if known == 0 || (numel / known) * known != numel {
            return Err(format!("Reshape: cannot infer -1 for {numel} values into {:?}", shape.data));
        }
        dims[i] = numel / known;
    }
    if dims.iter().product::<usize>() != numel {
        return Err(format!("Reshape: {:?} does not hold {numel} values", dims));
    }
    Ok(Initializer { name: String::new(), dims, data: x.data.clone() })
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
        data_type::INT8 if !t.raw_data.is_empty() => t.raw_data.iter().map(|&b| b as i8 as f32).collect(),
        data_type::UINT8 if !t.raw_data.is_empty() => t.raw_data.iter().map(|&b| b as f32).collect(),
        // 8-bit values travel in int32_data when there is no raw_data.
        data_type::INT8 | data_type::UINT8 => t.int32_data.iter().map(|&v| v as f32).collect(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use proto::AttributeProto;

    fn init(dims: &[usize], data: &[f32]) -> Initializer {
        Initializer { name: String::new(), dims: dims.to_vec(), data: data.to_vec() }
    }

    fn node(attrs: &[(&str, i64)]) -> NodeProto {
        NodeProto {
            name: "dq".into(),
            op_type: "DequantizeLinear".into(),
            attribute: attrs.iter().map(|(n, i)| AttributeProto { name: n.to_string(), i: *i, ..Default::default() }).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn blocked_dequantisation_uses_one_scale_per_block_along_the_axis() {
        // 2 x 5 int8 weights, blocks of 2 along axis 1 -> scales of shape 2 x 3.
        let x = init(&[2, 5], &[1., 2., 3., 4., 5., -1., -2., -3., -4., -5.]);
        let scale = init(&[2, 3], &[1., 10., 100., 0.5, 0.25, 2.]);
        let zero = init(&[2, 3], &[0., 1., 0., 1., 0., -1.]);
        let y = dequantize(&node(&[("axis", 1), ("block_size", 2)]), &x, &scale, Some(&zero)).expect("dq");
        assert_eq!(y.data, vec![1., 2., 20., 30., 500., -1., -1.5, -0.75, -1., -8.]);
        assert_eq!(y.dims, vec![2, 5]);
        let bad = init(&[2, 2], &[1.; 4]);
        assert!(dequantize(&node(&[("axis", 1), ("block_size", 2)]), &x, &bad, None).unwrap_err().contains("block_size"));
    }

    #[test]
    fn per_axis_and_scalar_dequantisation() {
        let x = init(&[2, 2, 2], &[1., 2., 3., 4., 5., 6., 7., 8.]);
        let per_axis = dequantize(&node(&[("axis", 1)]), &x, &init(&[2], &[1., 10.]), None).expect("dq");
        assert_eq!(per_axis.data, vec![1., 2., 30., 40., 5., 6., 70., 80.]);
        let scalar = dequantize(&node(&[]), &x, &init(&[], &[0.5]), Some(&init(&[], &[1.]))).expect("dq");
        assert_eq!(scalar.data, vec![0., 0.5, 1., 1.5, 2., 2.5, 3., 3.5]);
    }

    #[test]
    fn constant_reshape_keeps_and_infers_dimensions() {
        let x = init(&[4, 6], &[0.; 24]);
        assert_eq!(reshape(&x, &init(&[3], &[0., -1., 3.])).expect("reshape").dims, vec![4, 2, 3]);
        assert!(reshape(&x, &init(&[2], &[5., -1.])).is_err());
    }
}
