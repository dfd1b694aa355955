//! Exporting a trained student as a standard ONNX model (opset 17, dynamic batch).
//!
//! The model takes the same input as the teacher did (same element type, same per-row shape, e.g.
//! uint8 `[batch, 1, 28, 28]`), so it drops in where the teacher ran:
//! `input -> Flatten -> Cast(float) -> Sub(shift) -> Mul(scale) -> [Gemm -> Relu]* -> Gemm -> logits`,
//! plus `probs = Softmax(logits)`. The protobuf is written directly (a few message types of onnx.proto),
//! with the student's description in the model's metadata.

use std::collections::BTreeMap;
use std::path::Path;

use ndarray::{Array2, ArrayView2};

use crate::data::ElementType;
use crate::error::{Error, Result};
use crate::student::graph::EmbedOutput;
use crate::student::io::{to_safetensors, StudentFile};
use crate::student::Op;
use crate::util::write_atomic;

pub mod int8;
pub mod interp;

/// The opset the exported graph uses.
pub const OPSET: i64 = 17;
/// ONNX IR version matching opset 17.
const IR_VERSION: i64 = 8;

/// A protobuf message being built (only the wire types ONNX needs).
#[derive(Default)]
struct Pb(Vec<u8>);

impl Pb {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }
    fn key(&mut self, field: u32, wire: u8) {
        self.varint((u64::from(field) << 3) | u64::from(wire));
    }
    fn int(&mut self, field: u32, v: i64) -> &mut Self {
        self.key(field, 0);
        self.varint(v as u64);
        self
    }
    fn bytes(&mut self, field: u32, b: &[u8]) -> &mut Self {
        self.key(field, 2);
        self.varint(b.len() as u64);
        self.0.extend_from_slice(b);
        self
    }
    fn str(&mut self, field: u32, s: &str) -> &mut Self {
        self.bytes(field, s.as_bytes())
    }
    fn msg(&mut self, field: u32, m: Pb) -> &mut Self {
        self.bytes(field, &m.0)
    }
}

/// TensorProto.DataType of an element type.
fn onnx_type(t: ElementType) -> i64 {
    match t {
        ElementType::F32 => 1,
        ElementType::U8 => 2,
        ElementType::I8 => 3,
        ElementType::U16 => 4,
        ElementType::I16 => 5,
        ElementType::I32 => 6,
        ElementType::I64 => 7,
        ElementType::F64 => 11,
        ElementType::U32 => 12,
        ElementType::U64 => 13,
    }
}

fn tensor(name: &str, dims: &[usize], values: &[f32]) -> Pb {
    let mut t = Pb::default();
    for &d in dims {
        t.int(1, d as i64);
    }
    t.int(2, 1).str(8, name);
    let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    t.bytes(9, &raw);
    t
}

/// An int64 tensor of one dimension (a shape for Reshape).
fn tensor_i64(name: &str, values: &[i64]) -> Pb {
    tensor_i64_shaped(name, &[values.len()], values)
}

/// An int64 tensor of shape `dims`.
fn tensor_i64_shaped(name: &str, dims: &[usize], values: &[i64]) -> Pb {
    let mut t = Pb::default();
    for &d in dims {
        t.int(1, d as i64);
    }
    t.int(2, 7).str(8, name);
    let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    t.bytes(9, &raw);
    t
}

/// Adds an INTS attribute to a node.
fn ints_attr(n: &mut Pb, name: &str, values: &[i64]) {
    let mut a = Pb::default();
    a.str(1, name);
    for &v in values {
        a.int(8, v);
    }
    a.int(20, 7); // type = INTS
    n.msg(5, a);
}

/// ValueInfoProto for a tensor with `dims` (`None`: a symbolic dimension: `batch` first, then
/// `positions`, a sequence student's `[batch, positions]`).
fn value_info(name: &str, elem: i64, dims: &[Option<usize>]) -> Pb {
    let mut shape = Pb::default();
    for (i, d) in dims.iter().enumerate() {
        let mut dim = Pb::default();
        match d {
            Some(v) => dim.int(1, *v as i64),
            None if i == 0 => dim.str(2, "batch"),
            None => dim.str(2, "positions"),
        };
        shape.msg(1, dim);
    }
    let mut tensor_type = Pb::default();
    tensor_type.int(1, elem).msg(2, shape);
    let mut ty = Pb::default();
    ty.msg(1, tensor_type);
    let mut vi = Pb::default();
    vi.str(1, name).msg(2, ty);
    vi
}

fn node(op: &str, inputs: &[&str], outputs: &[&str], name: &str, int_attrs: &[(&str, i64)]) -> Pb {
    let mut n = Pb::default();
    for i in inputs {
        n.str(1, i);
    }
    for o in outputs {
        n.str(2, o);
    }
    n.str(3, name).str(4, op);
    for (k, v) in int_attrs {
        let mut a = Pb::default();
        a.str(1, k).int(3, *v).int(20, 2); // type = INT
        n.msg(5, a);
    }
    n
}

/// A float32 tensor of one value, `[1]` (broadcasts against any shape).
fn scalar_f32(name: &str, v: f32) -> Pb {
    tensor(name, &[1], &[v])
}

/// The nodes of [`Op::Embed`] on int64 ids `x` `[rows, len]`, gathering from the float tensor `table`
/// (`[vocab, dim]`); returns the output's name.
fn embed_nodes(
    x: &str,
    table: &str,
    vocab: usize,
    pad_id: Option<u32>,
    output: EmbedOutput,
    nodes: &mut Vec<Pb>,
    inits: &mut Vec<Pb>,
) -> String {
    inits.push(tensor_i64("embed.zero", &[0]));
    inits.push(tensor_i64("embed.vocab", &[vocab as i64]));
    inits.push(tensor_i64("embed.axis1", &[1]));
    inits.push(tensor_i64("embed.axis2", &[2]));
    // Unmasked: 0 <= id < vocab and id != pad.
    nodes.push(node("GreaterOrEqual", &[x, "embed.zero"], &["softlabel/ge0"], "ge0", &[]));
    nodes.push(node("Less", &[x, "embed.vocab"], &["softlabel/ltv"], "ltv", &[]));
    nodes.push(node("And", &["softlabel/ge0", "softlabel/ltv"], &["softlabel/inrange"], "inrange", &[]));
    let mut valid = "softlabel/inrange";
    if let Some(p) = pad_id {
        inits.push(tensor_i64("embed.pad", &[i64::from(p)]));
        nodes.push(node("Equal", &[x, "embed.pad"], &["softlabel/ispad"], "ispad", &[]));
        nodes.push(node("Not", &["softlabel/ispad"], &["softlabel/notpad"], "notpad", &[]));
        nodes.push(node("And", &[valid, "softlabel/notpad"], &["softlabel/valid"], "valid", &[]));
        valid = "softlabel/valid";
    }
    nodes.push(node("Where", &[valid, x, "embed.zero"], &["softlabel/safe"], "safe", &[]));
    if table == "embedding.weight_quantized" {
        nodes.push(node("Gather", &[table, "softlabel/safe"], &["softlabel/emb_q"], "gather", &[("axis", 0)]));
        nodes.push(int8::gathered("softlabel/emb_q", "softlabel/emb"));
    } else {
        nodes.push(node("Gather", &[table, "softlabel/safe"], &["softlabel/emb"], "gather", &[("axis", 0)]));
    }
    nodes.push(node("Cast", &[valid], &["softlabel/maskf"], "maskf", &[("to", 1)]));
    nodes.push(node("Unsqueeze", &["softlabel/maskf", "embed.axis2"], &["softlabel/mask3"], "mask3", &[]));
    match output {
        EmbedOutput::Sequence => {
            nodes.push(node("Mul", &["softlabel/emb", "softlabel/mask3"], &["softlabel/masked"], "masked", &[]));
            let mut t = node("Transpose", &["softlabel/masked"], &["softlabel/seq"], "seq", &[]);
            ints_attr(&mut t, "perm", &[0, 2, 1]);
            nodes.push(t);
            "softlabel/seq".into()
        }
        EmbedOutput::Concat => {
            nodes.push(node("Mul", &["softlabel/emb", "softlabel/mask3"], &["softlabel/masked"], "masked", &[]));
            inits.push(tensor_i64("embed.flat", &[0, -1]));
            nodes.push(node("Reshape", &["softlabel/masked", "embed.flat"], &["softlabel/window"], "window", &[]));
            "softlabel/window".into()
        }
        EmbedOutput::Mean | EmbedOutput::Max => {
            inits.push(scalar_f32("embed.onef", 1.0));
            inits.push(scalar_f32("embed.zerof", 0.0));
            let count = [("keepdims", 1)];
            nodes.push(node("ReduceSum", &["softlabel/maskf", "embed.axis1"], &["softlabel/count"], "count", &count));
            if output == EmbedOutput::Mean {
                nodes.push(node("Mul", &["softlabel/emb", "softlabel/mask3"], &["softlabel/masked"], "masked", &[]));
                let sum = [("keepdims", 0)];
                nodes.push(node("ReduceSum", &["softlabel/masked", "embed.axis1"], &["softlabel/sum"], "sum", &sum));
                nodes.push(node("Max", &["softlabel/count", "embed.onef"], &["softlabel/denom"], "denom", &[]));
                nodes.push(node("Div", &["softlabel/sum", "softlabel/denom"], &["softlabel/bag"], "bag", &[]));
            } else {
                inits.push(scalar_f32("embed.neginf", f32::NEG_INFINITY));
                nodes.push(node("Unsqueeze", &[valid, "embed.axis2"], &["softlabel/valid3"], "valid3", &[]));
                let sel = ["softlabel/valid3", "softlabel/emb", "embed.neginf"];
                nodes.push(node("Where", &sel, &["softlabel/sel"], "sel", &[]));
                let mut mx = node("ReduceMax", &["softlabel/sel"], &["softlabel/max"], "max", &[("keepdims", 0)]);
                ints_attr(&mut mx, "axes", &[1]);
                nodes.push(mx);
                nodes.push(node("Greater", &["softlabel/count", "embed.zerof"], &["softlabel/any"], "any", &[]));
                let bag = ["softlabel/any", "softlabel/max", "embed.zerof"];
                nodes.push(node("Where", &bag, &["softlabel/bag"], "bag", &[]));
            }
            "softlabel/bag".into()
        }
    }
}

/// The nodes that turn the teacher's `[batch, positions]` ids (and its attention mask) into the windows a
/// sequence student reads, `[batch * positions, window]` int64: masked ids become the pad id, the
/// sequence is padded with it on both sides, and position t gathers t-W..t+W (t-W..t for `next`).
/// Returns the windows' name and the name of `[batch, positions]` (the output's leading shape).
fn sequence_windows(
    student: &StudentFile,
    seq: &crate::store::Sequence,
    ids: &str,
    input_type: ElementType,
    nodes: &mut Vec<Pb>,
    inits: &mut Vec<Pb>,
) -> Result<(String, String)> {
    let w = student.info.settings.window as i64;
    let width = student.student.input_width() as i64;
    let offsets: Vec<i64> = seq.window_offsets(w as usize).collect();
    if offsets.len() as i64 != width {
        return Err(Error::Internal(format!("a window of {} tokens, the student reads {width}", offsets.len())));
    }
    let pad = i64::from(seq.fill(student.student.arch().embed.and_then(|e| e.pad_id))? as i32);
    let (left, right) = (-offsets[0], *offsets.last().unwrap_or(&0));
    let mut x = ids.to_string();
    if input_type != ElementType::I64 {
        nodes.push(node("Cast", &[&x], &["softlabel/ids"], "cast_ids", &[("to", 7)]));
        x = "softlabel/ids".into();
    }
    if let Some(mask) = &seq.mask_input {
        inits.push(tensor_i64("sequence.pad", &[pad]));
        inits.push(tensor_i64("sequence.zero", &[0]));
        nodes.push(node("Equal", &[mask, "sequence.zero"], &["softlabel/padding"], "padding", &[]));
        nodes.push(node("Where", &["softlabel/padding", "sequence.pad", &x], &["softlabel/unmasked"], "unmask", &[]));
        x = "softlabel/unmasked".into();
    }
    inits.push(tensor_i64("sequence.pads", &[0, left, 0, right]));
    inits.push(tensor_i64("sequence.pad_value", &[pad]));
    // Pad takes a scalar constant: the pad id reshaped to [].
    inits.push(tensor_i64("sequence.scalar", &[]));
    nodes.push(node("Reshape", &["sequence.pad_value", "sequence.scalar"], &["softlabel/pad0"], "pad0", &[]));
    nodes.push(node("Pad", &[&x, "sequence.pads", "softlabel/pad0"], &["softlabel/padded"], "pad", &[]));
    nodes.push(node("Shape", &[&x], &["softlabel/shape"], "shape", &[]));
    inits.push(tensor_i64("sequence.one", &[1]));
    nodes.push(node("Gather", &["softlabel/shape", "sequence.one"], &["softlabel/len1"], "len1", &[("axis", 0)]));
    nodes.push(node("Reshape", &["softlabel/len1", "sequence.scalar"], &["softlabel/len"], "len", &[]));
    inits.push(tensor_i64("sequence.start", &[0]));
    inits.push(tensor_i64("sequence.step", &[1]));
    nodes.push(node("Reshape", &["sequence.start", "sequence.scalar"], &["softlabel/start"], "start", &[]));
    nodes.push(node("Reshape", &["sequence.step", "sequence.scalar"], &["softlabel/step"], "step", &[]));
    nodes.push(node(
        "Range",
        &["softlabel/start", "softlabel/len", "softlabel/step"],
        &["softlabel/positions"],
        "positions",
        &[],
    ));
    nodes.push(node(
        "Unsqueeze",
        &["softlabel/positions", "sequence.one"],
        &["softlabel/positions2"],
        "positions2",
        &[],
    ));
    let shifted: Vec<i64> = offsets.iter().map(|o| o + left).collect();
    inits.push(tensor_i64_shaped("sequence.offsets", &[1, width as usize], &shifted));
    nodes.push(node("Add", &["softlabel/positions2", "sequence.offsets"], &["softlabel/index"], "index", &[]));
    nodes.push(node(
        "Gather",
        &["softlabel/padded", "softlabel/index"],
        &["softlabel/windows3"],
        "windows3",
        &[("axis", 1)],
    ));
    inits.push(tensor_i64("sequence.flat", &[-1, width]));
    nodes.push(node("Reshape", &["softlabel/windows3", "sequence.flat"], &["softlabel/windows"], "windows", &[]));
    inits.push(tensor_i64("sequence.lead_start", &[0]));
    inits.push(tensor_i64("sequence.lead_end", &[2]));
    nodes.push(node(
        "Slice",
        &["softlabel/shape", "sequence.lead_start", "sequence.lead_end"],
        &["softlabel/lead"],
        "lead",
        &[],
    ));
    Ok(("softlabel/windows".into(), "softlabel/lead".into()))
}

/// Builds the ONNX model bytes for a student (float32).
pub fn onnx_model(student: &StudentFile) -> Result<Vec<u8>> {
    build(student, None, None)
}

/// Builds an int8 ONNX model for a student, its activation ranges calibrated on `calibration` (raw input
/// rows): see [`int8`].
pub fn onnx_model_int8(student: &StudentFile, calibration: ArrayView2<f32>) -> Result<Vec<u8>> {
    let ranges = int8::calibrate(&student.student.graph(), calibration)?;
    build(student, Some(&ranges), Some("int8 QDQ"))
}

/// Up to `max` rows of `data`'s input as float32 (rows with non-finite values left out), to calibrate an
/// int8 export on; refuses rows whose width is not the student's.
pub fn calibration_rows(student: &StudentFile, data: &dyn crate::data::Source, max: usize) -> Result<Array2<f32>> {
    let d = student.student.input_width();
    let mut values = Vec::new();
    let mut rows = 0;
    for batch in data.batches(max.clamp(1, 4096)) {
        let batch = batch?;
        if batch.width != d {
            return Err(Error::data(
                &batch.file,
                format!("column '{}' has {} values per row, the student expects {d}", data.input_name(), batch.width),
            ));
        }
        let x = batch.input_f32();
        for (i, row) in x.chunks_exact(d).enumerate() {
            if rows == max {
                break;
            }
            if batch.nonfinite.binary_search(&i).is_ok() || row.iter().any(|v| !v.is_finite()) {
                continue;
            }
            values.extend_from_slice(row);
            rows += 1;
        }
        if rows == max {
            break;
        }
    }
    Array2::from_shape_vec((rows, d), values).map_err(|e| Error::Internal(e.to_string()))
}

/// The rows an int8 export calibrates on when the user names none: the first
/// [`int8::CALIBRATION_ROWS`] inputs stored in the soft-label dataset the student learned from.
pub fn default_calibration(student: &StudentFile) -> Result<(Array2<f32>, String)> {
    let dir = Path::new(&student.info.labels_dir);
    let labels = crate::store::SoftLabels::open(dir).map_err(|e| {
        Error::Config(format!(
            "int8 export calibrates on the student's training inputs, but {} does not open ({e}); name data \
             with --calibration",
            dir.display()
        ))
    })?;
    if !labels.manifest().input.stored {
        return Err(Error::Config(format!(
            "int8 export calibrates on the student's training inputs, but {} stores none (--no-inputs); name \
             data with --calibration",
            dir.display()
        )));
    }
    let source = crate::data::open(dir, &crate::data::DataSpec::new("input"))?;
    let rows = calibration_rows(student, source.as_ref(), int8::CALIBRATION_ROWS)?;
    Ok((rows, dir.display().to_string()))
}

/// Writes the int8 model of `student` to `out`, calibrated on `calibration` (described as `source` in
/// the model's metadata under `softlabel.quantization`).
pub fn export_int8(student: &StudentFile, out: &Path, calibration: ArrayView2<f32>, source: &str) -> Result<()> {
    refuse_own_files(student, &[out])?;
    let _lock = crate::util::OutputLock::acquire(out)?;
    let ranges = int8::calibrate(&student.student.graph(), calibration)?;
    let note = format!(
        "int8 QDQ: weights int8 symmetric per output channel, activations uint8 per tensor calibrated on {} rows \
         of {source}",
        calibration.nrows()
    );
    write_atomic(out, &build(student, Some(&ranges), Some(&note))?)
}

fn build(student: &StudentFile, ranges: Option<&[(f32, f32)]>, quantization: Option<&str>) -> Result<Vec<u8>> {
    let net = student.student.as_ref();
    let info = &student.info;
    let d = net.input_width();
    let row_shape: Vec<usize> = if info.input_shape.iter().try_fold(1usize, |a, &x| a.checked_mul(x)) == Some(d) {
        info.input_shape.clone()
    } else {
        vec![d]
    };
    let mut graph = Pb::default();
    // The teacher's input name and element type: the student drops in where the teacher ran.
    // Internal values are named `softlabel/...` and the outputs `logits` and `probs`; a teacher input named
    // like one of those (or like a weight) falls back to `input`.
    let taken = |n: &str| {
        n.starts_with("softlabel/")
            || ["logits", "probs"].contains(&n)
            || n.starts_with("input.")
            || n.contains(".weight")
            || n.contains(".bias")
            || n == "image.shape"
            || n.starts_with("embed")
    };
    let input_name =
        info.teacher_input_name.clone().filter(|n| !n.is_empty() && !taken(n)).unwrap_or_else(|| "input".to_string());
    let input_type = info.teacher_input_type.unwrap_or(info.input_dtype);
    let mut cur = input_name.clone();
    let mut nodes = Vec::new();
    let mut inits = Vec::new();
    // A sequence student takes the teacher's [batch, positions] ids (and its mask) and runs on the window
    // around every position, as it was trained.
    let sequence = match &info.sequence {
        Some(seq) => Some(sequence_windows(student, seq, &input_name, input_type, &mut nodes, &mut inits)?),
        None => None,
    };
    if let Some((windows, _)) = &sequence {
        cur = windows.clone();
    }
    if row_shape.len() > 1 && sequence.is_none() {
        nodes.push(node("Flatten", &[&cur], &["softlabel/flat"], "flatten", &[("axis", 1)]));
        cur = "softlabel/flat".into();
    }
    let ops = net.graph();
    // Token ids stay integers (int64, as Gather and the comparisons with the vocabulary take them);
    // everything else is computed in float.
    let ids = matches!(ops.first(), Some(Op::Embed { .. }));
    let (to, want) = if ids { (7, ElementType::I64) } else { (1, ElementType::F32) };
    if input_type != want && sequence.is_none() {
        nodes.push(node("Cast", &[&cur], &["softlabel/x"], "cast", &[("to", to)]));
        cur = "softlabel/x".into();
    }
    let linears = ops.iter().filter(|op| matches!(op, Op::Linear { .. })).count();
    // A sequence student's last layer gives [batch * positions, classes], reshaped to the teacher's
    // [batch, positions, classes].
    let last = if sequence.is_some() { "softlabel/position_logits" } else { "logits" };
    let mut i = 0; // Linear layers so far
    let mut conv = 0; // convolutions so far
    let mut step = 0; // a unique number per node
    let mut q = ranges.map(int8::Quantizer::new);
    let mut consumed = false; // the op was emitted with the one before it (a ReLU after a quantized layer)
    for (k, op) in ops.iter().enumerate() {
        step += 1;
        if std::mem::take(&mut consumed) {
            continue;
        }
        let prev = cur.clone();
        let relu_next = matches!(ops.get(k + 1), Some(Op::Relu));
        match op {
            Op::Scale { shift, scale } => {
                nodes.push(node("Sub", &[&cur, "input.shift"], &["softlabel/centred"], "shift", &[]));
                nodes.push(node("Mul", &["softlabel/centred", "input.scale"], &["softlabel/h0"], "scale", &[]));
                inits.push(tensor("input.shift", &[shift.len()], &shift.to_vec()));
                inits.push(tensor("input.scale", &[scale.len()], &scale.to_vec()));
                cur = "softlabel/h0".into();
            }
            Op::Linear { w, b } => {
                let (wn, bn) = (format!("layers.{i}.weight"), format!("layers.{i}.bias"));
                let wt = w.t().to_owned();
                let z = if i + 1 == linears { last.to_string() } else { format!("softlabel/z{i}") };
                if let Some(q) = q.as_mut() {
                    let x = q.input(&cur, k, &mut nodes, &mut inits);
                    let (wd, bd) = q.weights(&wn, &bn, wt.view().into_dyn(), b, &mut nodes, &mut inits);
                    nodes.push(node("Gemm", &[&x, &wd, &bd], &[&z], &format!("gemm{i}"), &[("transB", 1)]));
                    cur = z;
                    if i + 1 < linears {
                        (cur, consumed) = q.output(&cur, k, relu_next, &mut nodes, &mut inits);
                    }
                } else {
                    inits.push(tensor(&wn, &[wt.nrows(), wt.ncols()], &wt.iter().copied().collect::<Vec<_>>()));
                    inits.push(tensor(&bn, &[b.len()], &b.to_vec()));
                    nodes.push(node("Gemm", &[&cur, &wn, &bn], &[&z], &format!("gemm{i}"), &[("transB", 1)]));
                    cur = z;
                }
                i += 1;
            }
            Op::Relu => {
                let h = format!("softlabel/relu{step}");
                nodes.push(node("Relu", &[&cur], &[&h], &h, &[]));
                cur = h;
            }
            Op::Image { channels, height, width } => {
                let shape = [-1, *channels as i64, *height as i64, *width as i64];
                inits.push(tensor_i64("image.shape", &shape));
                nodes.push(node("Reshape", &[&cur, "image.shape"], &["softlabel/image"], "image", &[]));
                cur = "softlabel/image".into();
            }
            Op::Conv { w, b } => {
                let (wn, bn) = (format!("convs.{conv}.weight"), format!("convs.{conv}.bias"));
                let out = format!("softlabel/conv{conv}");
                let (x, wd, bd) = match q.as_mut() {
                    Some(q) => {
                        let x = q.input(&cur, k, &mut nodes, &mut inits);
                        let (wd, bd) = q.weights(&wn, &bn, w.view(), b, &mut nodes, &mut inits);
                        (x, wd, bd)
                    }
                    None => {
                        inits.push(tensor(&wn, w.shape(), &w.iter().copied().collect::<Vec<_>>()));
                        inits.push(tensor(&bn, &[b.len()], &b.to_vec()));
                        (cur.clone(), wn, bn)
                    }
                };
                let mut n = node("Conv", &[&x, &wd, &bd], &[&out], &out, &[]);
                let kernel: Vec<i64> = w.shape()[2..].iter().map(|&k| k as i64).collect();
                let pads: Vec<i64> = kernel.iter().chain(&kernel).map(|k| k / 2).collect();
                ints_attr(&mut n, "kernel_shape", &kernel);
                ints_attr(&mut n, "pads", &pads);
                nodes.push(n);
                cur = out;
                if let Some(q) = q.as_mut() {
                    (cur, consumed) = q.output(&cur, k, relu_next, &mut nodes, &mut inits);
                }
                conv += 1;
            }
            Op::MaxPool { dims } => {
                let out = format!("softlabel/pool{step}");
                let mut n = node("MaxPool", &[&cur], &[&out], &out, &[]);
                ints_attr(&mut n, "kernel_shape", &vec![2; *dims]);
                ints_attr(&mut n, "strides", &vec![2; *dims]);
                nodes.push(n);
                cur = out;
                if let Some(q) = q.as_mut() {
                    cur = q.same(&prev, &cur, &mut nodes, &mut inits);
                }
            }
            Op::GlobalMaxPool => {
                nodes.push(node("GlobalMaxPool", &[&cur], &["softlabel/gmp"], "gmp", &[]));
                nodes.push(node("Flatten", &["softlabel/gmp"], &["softlabel/features"], "features", &[("axis", 1)]));
                cur = "softlabel/features".into();
                if let Some(q) = q.as_mut() {
                    cur = q.same(&prev, &cur, &mut nodes, &mut inits);
                }
            }
            Op::Embed { table, pad_id, output } => {
                let table_name = match q.as_mut() {
                    Some(q) => q.table(table, &mut nodes, &mut inits),
                    None => {
                        let values: Vec<f32> = table.iter().copied().collect();
                        inits.push(tensor("embedding.weight", &[table.nrows(), table.ncols()], &values));
                        "embedding.weight".to_string()
                    }
                };
                cur = embed_nodes(&cur, &table_name, table.nrows(), *pad_id, *output, &mut nodes, &mut inits);
            }
            Op::Flatten => {
                nodes.push(node("Flatten", &[&cur], &["softlabel/features"], "features", &[("axis", 1)]));
                cur = "softlabel/features".into();
                if let Some(q) = q.as_mut() {
                    cur = q.same(&prev, &cur, &mut nodes, &mut inits);
                }
            }
            Op::GlobalAveragePool => {
                nodes.push(node("GlobalAveragePool", &[&cur], &["softlabel/gap"], "gap", &[]));
                nodes.push(node("Flatten", &["softlabel/gap"], &["softlabel/features"], "features", &[("axis", 1)]));
                cur = "softlabel/features".into();
            }
        }
    }
    if cur != last {
        return Err(Error::Internal(format!("student graph ends in '{cur}', not in a Linear layer")));
    }
    if let Some((_, shape)) = &sequence {
        inits.push(tensor_i64("sequence.classes", &[net.num_classes() as i64]));
        nodes.push(node("Concat", &[shape, "sequence.classes"], &["softlabel/out_shape"], "out_shape", &[("axis", 0)]));
        nodes.push(node("Reshape", &[last, "softlabel/out_shape"], &["logits"], "sequence_logits", &[]));
    }
    nodes.push(node("Softmax", &["logits"], &["probs"], "softmax", &[("axis", -1)]));
    for n in nodes {
        graph.msg(1, n);
    }
    graph.str(2, "softlabel_student");
    for t in inits {
        graph.msg(5, t);
    }
    let k = Some(net.num_classes());
    match &info.sequence {
        Some(seq) => {
            graph.msg(11, value_info(&input_name, onnx_type(input_type), &[None, None]));
            if let Some(mask) = &seq.mask_input {
                graph.msg(11, value_info(mask, onnx_type(ElementType::I64), &[None, None]));
            }
            graph.msg(12, value_info("logits", 1, &[None, None, k]));
            graph.msg(12, value_info("probs", 1, &[None, None, k]));
        }
        None => {
            let mut in_dims = vec![None];
            in_dims.extend(row_shape.iter().map(|&v| Some(v)));
            graph.msg(11, value_info(&input_name, onnx_type(input_type), &in_dims));
            graph.msg(12, value_info("logits", 1, &[None, k]));
            graph.msg(12, value_info("probs", 1, &[None, k]));
        }
    }

    let mut model = Pb::default();
    model.int(1, IR_VERSION).str(2, "softlabel").str(3, env!("CARGO_PKG_VERSION"));
    let mut opset = Pb::default();
    opset.str(1, "").int(2, OPSET);
    model.msg(8, opset).msg(7, graph);
    let json = serde_json::to_string(info).map_err(|e| Error::Internal(e.to_string()))?;
    let mut meta =
        vec![("softlabel.student", json.as_str()), ("softlabel.teacher_sha256", info.teacher_sha256.as_str())];
    if let Some(q) = quantization {
        meta.push(("softlabel.quantization", q));
    }
    for (k, v) in meta {
        let mut entry = Pb::default();
        entry.str(1, k).str(2, v);
        model.msg(14, entry);
    }
    Ok(model.0)
}

/// Writes `out` (the ONNX model) and, beside it, `<out>.safetensors`: the weights with the student's full
/// description (student.json) in the metadata under `config`.
pub fn export(student: &StudentFile, out: &Path) -> Result<(std::path::PathBuf, std::path::PathBuf)> {
    let st = out.with_extension("safetensors");
    refuse_own_files(student, &[out, st.as_path()])?;
    let _lock = crate::util::OutputLock::acquire(out)?;
    write_atomic(out, &onnx_model(student)?)?;
    let mut meta = BTreeMap::new();
    meta.insert("format".to_string(), "softlabel-student".to_string());
    meta.insert(
        "config".to_string(),
        serde_json::to_string(&student.info).map_err(|e| Error::Internal(e.to_string()))?,
    );
    write_atomic(&st, &to_safetensors(student.student.as_ref(), &meta))?;
    Ok((out.to_path_buf(), st))
}

/// Never writes over the student's own files (`--out STUDENT_DIR/student.onnx` would replace its weights).
fn refuse_own_files(student: &StudentFile, written: &[&Path]) -> Result<()> {
    let own =
        [crate::student::io::WEIGHTS, crate::student::io::INFO].map(|f| crate::util::resolve(&student.dir.join(f)));
    for w in written {
        let resolved = crate::util::resolve(w)?;
        if own.iter().any(|o| o.as_ref().is_ok_and(|o| *o == resolved)) {
            return Err(Error::Config(format!(
                "--out {}: exporting would overwrite {}, the student's own file; choose another --out",
                written[0].display(),
                w.display()
            )));
        }
    }
    Ok(())
}
