//! An ONNX model's graph read and edited just enough to see inside it: the values its nodes compute
//! ([`node_values`]) and the model with chosen values added as graph outputs ([`with_outputs`]), which
//! ONNX Runtime then returns (it only returns graph outputs). The output entries carry only the value's
//! name: ONNX Runtime infers their types and shapes. Everything else is copied through byte for byte.

use std::path::Path;

use crate::error::{Error, Result};
use crate::util::protobuf::{pb_fields, put_bytes, PbValue};

/// ModelProto.graph, GraphProto.node / .output, NodeProto.output / .name / .op_type, ValueInfoProto.name.
const MODEL_GRAPH: u64 = 7;
const GRAPH_NODE: u64 = 1;
const GRAPH_OUTPUT: u64 = 12;
const NODE_OUTPUT: u64 = 2;
const NODE_NAME: u64 = 3;
const NODE_OP_TYPE: u64 = 4;
const VALUE_NAME: u64 = 1;

/// The largest model read into memory to be edited (`inspect-teacher`, `precompute --features`).
pub const MAX_MODEL_BYTES: u64 = 1 << 36;

/// A value a node of the graph computes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NodeValue {
    /// The value's name (what `precompute --features` takes).
    pub name: String,
    /// The node's operator (Conv, Relu, Gemm, ...).
    pub op_type: String,
    /// The node's name (may be empty).
    pub node: String,
    /// Whether the value is already one of the graph's outputs.
    pub is_output: bool,
}

fn malformed(path: &Path) -> Error {
    Error::model(path, "cannot read the ONNX protobuf (malformed or not an ONNX model)")
}

fn text(v: PbValue<'_>, path: &Path) -> Result<String> {
    let b = v.bytes().ok_or_else(|| malformed(path))?;
    Ok(String::from_utf8_lossy(b).into_owned())
}

/// The model's (last) graph message.
fn graph<'a>(model: &'a [u8], path: &Path) -> Result<&'a [u8]> {
    pb_fields(model)
        .ok_or_else(|| malformed(path))?
        .into_iter()
        .filter(|(f, _, _)| *f == MODEL_GRAPH)
        .filter_map(|(_, v, _)| v.bytes())
        .next_back()
        .ok_or_else(|| Error::model(path, "the ONNX model has no graph"))
}

/// Every value the graph's nodes compute, in node order (the main graph's; subgraphs of If and Loop
/// nodes are not listed).
pub fn node_values(model: &[u8], path: &Path) -> Result<Vec<NodeValue>> {
    let g = graph(model, path)?;
    let fields = pb_fields(g).ok_or_else(|| malformed(path))?;
    let mut outputs = std::collections::HashSet::new();
    for (f, v, _) in &fields {
        if *f == GRAPH_OUTPUT {
            let info = v.bytes_ref().ok_or_else(|| malformed(path))?;
            for (vf, vv, _) in pb_fields(info).ok_or_else(|| malformed(path))? {
                if vf == VALUE_NAME {
                    outputs.insert(text(vv, path)?);
                }
            }
        }
    }
    let mut out = Vec::new();
    for (f, v, _) in fields {
        if f != GRAPH_NODE {
            continue;
        }
        let node = v.bytes().ok_or_else(|| malformed(path))?;
        let (mut names, mut op_type, mut node_name) = (Vec::new(), String::new(), String::new());
        for (nf, nv, _) in pb_fields(node).ok_or_else(|| malformed(path))? {
            match nf {
                NODE_OUTPUT => names.push(text(nv, path)?),
                NODE_OP_TYPE => op_type = text(nv, path)?,
                NODE_NAME => node_name = text(nv, path)?,
                _ => {}
            }
        }
        for name in names.into_iter().filter(|n| !n.is_empty()) {
            let is_output = outputs.contains(&name);
            out.push(NodeValue { name, op_type: op_type.clone(), node: node_name.clone(), is_output });
        }
    }
    Ok(out)
}

/// `model` with `names` added to its graph's outputs (name only: ONNX Runtime infers type and shape).
pub fn with_outputs(model: &[u8], names: &[&str], path: &Path) -> Result<Vec<u8>> {
    let fields = pb_fields(model).ok_or_else(|| malformed(path))?;
    let last_graph = fields.iter().rposition(|(f, _, _)| *f == MODEL_GRAPH);
    let mut out = Vec::with_capacity(model.len() + 64 * names.len());
    for (i, (f, v, raw)) in fields.into_iter().enumerate() {
        if f != MODEL_GRAPH || Some(i) != last_graph {
            out.extend_from_slice(raw);
            continue;
        }
        let mut g = v.bytes().ok_or_else(|| malformed(path))?.to_vec();
        for name in names {
            let mut info = Vec::new();
            put_bytes(&mut info, VALUE_NAME, name.as_bytes());
            put_bytes(&mut g, GRAPH_OUTPUT, &info);
        }
        put_bytes(&mut out, MODEL_GRAPH, &g);
    }
    if last_graph.is_none() {
        return Err(Error::model(path, "the ONNX model has no graph"));
    }
    Ok(out)
}

/// A value inside a model, as `inspect-teacher` lists it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ValueInfo {
    /// The value's name.
    pub name: String,
    /// The operator computing it (`input` for a graph input).
    pub op_type: String,
    /// The node's name (may be empty).
    pub node: String,
    /// The element type ONNX Runtime infers (`Float32`, `Int64`, ...), or what else the value is.
    pub element_type: String,
    /// The shape ONNX Runtime infers (-1: dynamic or unknown).
    pub shape: Vec<i64>,
    /// Whether it is a graph output already (the teacher's outputs).
    pub is_output: bool,
}

/// Every input of the model and every value its nodes compute, with the element type and shape ONNX
/// Runtime infers for it (loading the model with every value exposed as an output).
pub fn inspect(path: &Path, options: &super::TeacherOptions) -> Result<Vec<ValueInfo>> {
    use ort::value::ValueType;
    let model = crate::util::read_bounded(path, crate::util::Links::Follow, MAX_MODEL_BYTES, "an ONNX model")?;
    let values = node_values(&model, path)?;
    let extra: Vec<&str> = values.iter().filter(|v| !v.is_output).map(|v| v.name.as_str()).collect();
    let edited = with_outputs(&model, &extra, path)?;
    let session = super::session_builder(options)?
        .commit_from_memory(&edited)
        .map_err(|e| Error::model(path, format!("cannot load as an ONNX model: {e}")))?;
    let describe = |t: &ValueType| match t {
        ValueType::Tensor { ty, shape, .. } => (format!("{ty:?}"), shape.to_vec()),
        other => (format!("{other:?}"), Vec::new()),
    };
    let mut out: Vec<ValueInfo> = session
        .inputs()
        .iter()
        .map(|i| {
            let (element_type, shape) = describe(i.dtype());
            ValueInfo {
                name: i.name().to_string(),
                op_type: "input".into(),
                node: String::new(),
                element_type,
                shape,
                is_output: false,
            }
        })
        .collect();
    let outputs: std::collections::HashMap<&str, &ort::value::Outlet> =
        session.outputs().iter().map(|o| (o.name(), o)).collect();
    for v in values {
        let (element_type, shape) = match outputs.get(v.name.as_str()) {
            Some(o) => describe(o.dtype()),
            None => ("unknown".to_string(), Vec::new()),
        };
        out.push(ValueInfo {
            name: v.name,
            op_type: v.op_type,
            node: v.node,
            element_type,
            shape,
            is_output: v.is_output,
        });
    }
    Ok(out)
}
