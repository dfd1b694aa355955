//! int8 export in ONNX's QDQ form, written without Python.
//!
//! - Weights of every Gemm and Conv: int8, symmetric, one scale per output channel
//!   (`scale[c] = max |w[c, ...]| / 127`), through `DequantizeLinear(axis = 0)`; biases int32 at scale
//!   `input scale * weight scale[c]`, as ONNX Runtime's QLinearConv / QGemm take them.
//! - Activations: uint8, asymmetric, one scale per tensor, from the range of that tensor over calibration
//!   rows (stored inputs; the range always holds 0). Each quantized layer reads `DequantizeLinear(x_q)`, and
//!   its output (after its ReLU) goes through `QuantizeLinear` with the range measured there; max-pooling
//!   and flattening keep the scale of their input (`DequantizeLinear -> MaxPool -> QuantizeLinear` with the same
//!   parameters, which ONNX Runtime runs on uint8 directly). The logits stay float.
//! - An embedding table: int8 with one scale, gathered as int8 and dequantized after the gather (so only
//!   the rows a batch reads are converted).
//!
//! ONNX Runtime fuses these patterns into integer kernels (QLinearConv, QGemm) at session load.

use ndarray::{Array1, Array2, ArrayView2, ArrayViewD, Axis};

use super::{interp, node, Pb};
use crate::error::{Error, Result};
use crate::student::Op;

/// Rows of calibration data used at most.
pub const CALIBRATION_ROWS: usize = 1024;

/// The range of every tensor the ops produce over `x`: `[0]` the raw input, `[k + 1]` op `k`'s output.
pub fn calibrate(ops: &[Op], x: ArrayView2<f32>) -> Result<Vec<(f32, f32)>> {
    if x.nrows() == 0 {
        return Err(Error::Config("int8 export needs calibration rows; the calibration data has none".into()));
    }
    let mut ranges = vec![(f32::INFINITY, f32::NEG_INFINITY); ops.len() + 1];
    let widen = |r: &mut (f32, f32), v: f32| {
        if v.is_finite() {
            *r = (r.0.min(v), r.1.max(v));
        }
    };
    for chunk in x.axis_chunks_iter(Axis(0), 256) {
        chunk.iter().for_each(|&v| widen(&mut ranges[0], v));
        interp::run_ops(ops, chunk, |k, out| out.iter().for_each(|&v| widen(&mut ranges[k + 1], v)))?;
    }
    Ok(ranges)
}

/// uint8 scale and zero point for a range (widened to hold 0).
fn activation_params((lo, hi): (f32, f32)) -> (f32, u8) {
    let (lo, hi) = (lo.min(0.0), hi.max(0.0));
    let scale = if hi > lo && (hi - lo).is_finite() { (hi - lo) / 255.0 } else { 1.0 };
    let zp = (-lo / scale).round().clamp(0.0, 255.0) as u8;
    (scale, zp)
}

/// A tensor of `dims` with ONNX element type `elem` and raw little-endian `bytes`.
fn raw(name: &str, dims: &[usize], elem: i64, bytes: Vec<u8>) -> Pb {
    let mut t = Pb::default();
    for &d in dims {
        t.int(1, d as i64);
    }
    t.int(2, elem).str(8, name);
    t.bytes(9, &bytes);
    t
}

fn f32s(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// The state of a quantized export: the ranges, and which tensor is the current dequantized one.
pub(super) struct Quantizer<'a> {
    ranges: &'a [(f32, f32)],
    /// The last DequantizeLinear output and its parameter set.
    current: Option<(String, usize)>,
    /// Scale of each parameter set, in order.
    scales: Vec<f32>,
    /// Nodes emitted, for unique names.
    emitted: usize,
}

impl<'a> Quantizer<'a> {
    /// A quantizer over ranges from [`calibrate`].
    pub(super) fn new(ranges: &'a [(f32, f32)]) -> Self {
        Quantizer { ranges, current: None, scales: Vec::new(), emitted: 0 }
    }

    fn params(&mut self, range: (f32, f32), inits: &mut Vec<Pb>) -> usize {
        let (scale, zp) = activation_params(range);
        let set = self.scales.len();
        self.scales.push(scale);
        inits.push(raw(&format!("softlabel/q{set}.scale"), &[], 1, f32s(&[scale])));
        inits.push(raw(&format!("softlabel/q{set}.zero_point"), &[], 2, vec![zp]));
        set
    }

    /// `QuantizeLinear -> DequantizeLinear` of `x` with parameter set `set`; returns the dequantized name.
    fn qdq(&mut self, x: &str, set: usize, nodes: &mut Vec<Pb>) -> String {
        self.emitted += 1;
        let (qn, dqn) = (format!("softlabel/quant{}", self.emitted), format!("softlabel/dequant{}", self.emitted));
        let (s, z) = (format!("softlabel/q{set}.scale"), format!("softlabel/q{set}.zero_point"));
        nodes.push(node("QuantizeLinear", &[x, &s, &z], &[&qn], &qn, &[]));
        nodes.push(node("DequantizeLinear", &[&qn, &s, &z], &[&dqn], &dqn, &[]));
        self.current = Some((dqn.clone(), set));
        dqn
    }

    /// The input `x` of the quantized layer that is op `k`: as it is when it is already the current
    /// dequantized tensor, else quantized with the range measured at op `k`'s input.
    pub(super) fn input(&mut self, x: &str, k: usize, nodes: &mut Vec<Pb>, inits: &mut Vec<Pb>) -> String {
        if self.current.as_ref().is_some_and(|(name, _)| name == x) {
            return x.to_string();
        }
        let set = self.params(self.ranges[k], inits);
        self.qdq(x, set, nodes)
    }

    /// The weights `w` (`[out, ...]`, output channels on axis 0) and bias `b` of the layer whose input
    /// was the last [`Quantizer::input`], as DequantizeLinear outputs; returns their names.
    pub(super) fn weights(
        &mut self,
        wn: &str,
        bn: &str,
        w: ArrayViewD<f32>,
        b: &Array1<f32>,
        nodes: &mut Vec<Pb>,
        inits: &mut Vec<Pb>,
    ) -> (String, String) {
        let x_scale = self.current.as_ref().map_or(1.0, |(_, set)| self.scales[*set]);
        let out = w.shape()[0];
        let per = w.len() / out.max(1);
        let flat: Vec<f32> = w.iter().copied().collect();
        let rows = Array2::from_shape_vec((out, per), flat).unwrap_or_else(|_| Array2::zeros((out, per)));
        let scales: Vec<f32> = rows
            .rows()
            .into_iter()
            .map(|r| {
                let m = r.fold(0f32, |m, v| m.max(v.abs()));
                if m > 0.0 {
                    m / 127.0
                } else {
                    1.0
                }
            })
            .collect();
        let q: Vec<u8> = rows
            .rows()
            .into_iter()
            .zip(&scales)
            .flat_map(|(r, s)| {
                r.iter().map(move |v| (v / s).round().clamp(-127.0, 127.0) as i8 as u8).collect::<Vec<_>>()
            })
            .collect();
        let bias_scales: Vec<f32> = scales.iter().map(|s| s * x_scale).collect();
        let bq: Vec<u8> = b
            .iter()
            .zip(&bias_scales)
            .flat_map(|(v, s)| ((v / s).round().clamp(i32::MIN as f32, i32::MAX as f32) as i32).to_le_bytes())
            .collect();
        let (wq, ws, wz) = (format!("{wn}_quantized"), format!("{wn}_scale"), format!("{wn}_zero_point"));
        let (bq_n, bs, bz) = (format!("{bn}_quantized"), format!("{bn}_scale"), format!("{bn}_zero_point"));
        inits.push(raw(&wq, w.shape(), 3, q));
        inits.push(raw(&ws, &[out], 1, f32s(&scales)));
        inits.push(raw(&wz, &[out], 3, vec![0u8; out]));
        inits.push(raw(&bq_n, &[out], 6, bq));
        inits.push(raw(&bs, &[out], 1, f32s(&bias_scales)));
        inits.push(raw(&bz, &[out], 6, vec![0u8; 4 * out]));
        let (wd, bd) = (format!("softlabel/{wn}"), format!("softlabel/{bn}"));
        nodes.push(node("DequantizeLinear", &[&wq, &ws, &wz], &[&wd], &wd, &[("axis", 0)]));
        nodes.push(node("DequantizeLinear", &[&bq_n, &bs, &bz], &[&bd], &bd, &[("axis", 0)]));
        (wd, bd)
    }

    /// The output `y` of the quantized layer that is op `k`: with `relu_next`, the ReLU (op `k + 1`) is
    /// emitted here and quantized with the range after it; returns the dequantized name and whether the
    /// ReLU was emitted.
    pub(super) fn output(
        &mut self,
        y: &str,
        k: usize,
        relu_next: bool,
        nodes: &mut Vec<Pb>,
        inits: &mut Vec<Pb>,
    ) -> (String, bool) {
        let mut y = y.to_string();
        if relu_next {
            let r = format!("{y}/relu");
            nodes.push(node("Relu", &[&y], &[&r], &r, &[]));
            y = r;
        }
        let set = self.params(self.ranges[k + 1 + usize::from(relu_next)], inits);
        (self.qdq(&y, set, nodes), relu_next)
    }

    /// After an op that keeps its input's range (max-pooling, flattening) on `input`: `out` quantized with
    /// the input's parameters when the input was quantized, else `out` as it is.
    pub(super) fn same(&mut self, input: &str, out: &str, nodes: &mut Vec<Pb>, _inits: &mut Vec<Pb>) -> String {
        match self.current.clone() {
            Some((name, set)) if name == input => self.qdq(out, set, nodes),
            _ => out.to_string(),
        }
    }

    /// An embedding table as int8 with one scale, gathered as int8: returns the name of a tensor that
    /// Gather reads and whose rows the graph dequantizes after gathering (see [`Quantizer::gathered`]).
    pub(super) fn table(&mut self, table: &Array2<f32>, _nodes: &mut Vec<Pb>, inits: &mut Vec<Pb>) -> String {
        let m = table.fold(0f32, |m, v| m.max(v.abs()));
        let scale = if m > 0.0 { m / 127.0 } else { 1.0 };
        let q: Vec<u8> = table.iter().map(|v| (v / scale).round().clamp(-127.0, 127.0) as i8 as u8).collect();
        inits.push(raw("embedding.weight_quantized", &[table.nrows(), table.ncols()], 3, q));
        inits.push(raw("embedding.weight_scale", &[], 1, f32s(&[scale])));
        inits.push(raw("embedding.weight_zero_point", &[], 3, vec![0]));
        "embedding.weight_quantized".to_string()
    }
}

/// The DequantizeLinear after gathering from a table made by [`Quantizer::table`]: `gathered` (int8)
/// to `out` (float).
pub(super) fn gathered(gathered: &str, out: &str) -> Pb {
    node("DequantizeLinear", &[gathered, "embedding.weight_scale", "embedding.weight_zero_point"], &[out], out, &[])
}
