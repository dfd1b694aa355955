//! An embedding student for integer inputs (token ids, bytes):
//! `ids -> embedding table -> (mean or max bag | [Conv1d k5 (padding 2) -> ReLU -> MaxPool 2]* -> global
//! max-pool) -> [Linear -> ReLU]* -> Linear -> logits`.
//!
//! An input value is a token id; ids that are the pad id or outside `[0, vocab)` are masked: they
//! contribute nothing to a bag, and a zero vector to a convolution (as its padding does). The teacher's
//! raw inputs are used as they are: there is no input scaling.
//!
//! Only the rows of the table that a batch touched get a gradient. The student lists them in
//! [`Workspace::touched`], and the trainer sums, clips and updates only those rows, as PyTorch's
//! `nn.Embedding(sparse=True)` with `SparseAdam` does, so a large vocabulary costs what a batch reads,
//! not what the table holds.

use crate::util::gemm;
use ndarray::{s, Array1, Array2, ArrayD, ArrayView2, ArrayViewMut1, ArrayViewMut2, ArrayViewMutD, Ix1, Ix2};
use rand::Rng;

use super::layers::{
    head_backward, head_extras, head_forward, head_position, head_width, HeadBuffers, InputScaling, Linear, Relu,
};
use super::{Op, Student, Tap, Tensor, Workspace};
use crate::error::{Error, Result};

/// The convolution's kernel width (padding `KERNEL / 2` on each side).
pub const KERNEL: usize = 5;
/// A masked position.
const MASKED: u32 = u32::MAX;

/// How a bag of embeddings becomes one vector (students without convolutions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Bag {
    /// The mean over the unmasked positions (fastText); zero when all are masked.
    #[default]
    Mean,
    /// The per-dimension maximum over the unmasked positions; zero when all are masked.
    Max,
    /// The positions' embeddings side by side, `[len * dim]` (position-major), zero at masked positions:
    /// a window tagger over the tokens around a position (Collobert and Weston 2011), which keeps the
    /// order a mean or max would lose.
    Concat,
}

/// The embedding table's shape and masking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbedSpec {
    /// Rows of the table: ids `0..vocab`.
    pub vocab: usize,
    /// Values per row.
    pub dim: usize,
    /// The id of padding positions (masked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pad_id: Option<u32>,
    /// The bag's pooling (without convolutions).
    #[serde(default)]
    pub bag: Bag,
}

/// A 1-D convolution of width [`KERNEL`], padding `KERNEL / 2`, stride 1.
#[derive(Debug, Clone, PartialEq)]
pub struct Conv1 {
    /// Weights, `[KERNEL * cin, cout]`: row `k * cin + c`.
    pub w: Array2<f32>,
    /// Bias, `[cout]`.
    pub b: Array1<f32>,
}

impl Conv1 {
    /// PyTorch's default `nn.Conv1d` initialisation: uniform in +-1/sqrt(KERNEL * cin), weights then biases.
    fn init(cin: usize, cout: usize, rng: &mut impl Rng) -> Self {
        let bound = 1.0 / ((KERNEL * cin) as f32).sqrt();
        Conv1 {
            w: Array2::from_shape_simple_fn((KERNEL * cin, cout), || rng.random_range(-bound..bound)),
            b: Array1::from_shape_simple_fn(cout, || rng.random_range(-bound..bound)),
        }
    }

    fn inputs(&self) -> usize {
        self.w.nrows() / KERNEL
    }

    fn outputs(&self) -> usize {
        self.b.len()
    }

    /// PyTorch's layout `[cout, cin, KERNEL]`.
    fn torch_weight(&self) -> ArrayD<f32> {
        let (cin, cout) = (self.inputs(), self.outputs());
        ArrayD::from_shape_fn(vec![cout, cin, KERNEL], |i| self.w[[i[2] * cin + i[1], i[0]]])
    }

    fn from_torch(values: &[f32], cin: usize, cout: usize, b: Vec<f32>) -> Self {
        let w = Array2::from_shape_fn((KERNEL * cin, cout), |(r, o)| values[(o * cin + r % cin) * KERNEL + r / cin]);
        Conv1 { w, b: Array1::from(b) }
    }
}

/// The embedding student.
#[derive(Debug, Clone, PartialEq)]
pub struct Embed {
    /// The identity: ids are used as they are.
    scaling: InputScaling,
    /// The table, `[vocab, dim]`.
    pub table: Array2<f32>,
    /// The masked id.
    pub pad_id: Option<u32>,
    /// The bag's pooling (no convolutions).
    pub bag: Bag,
    /// The convolution blocks (none: a bag).
    pub convs: Vec<Conv1>,
    /// The fully connected layers, the last producing logits.
    pub fcs: Vec<Linear>,
}

/// One worker's activations.
struct Buffers {
    /// Per input position: its table row, or [`MASKED`].
    ids: Vec<u32>,
    /// Bag: unmasked positions per row; for the max bag, the position of each maximum (or [`MASKED`]).
    count: Vec<f32>,
    arg: Vec<u32>,
    /// Convolutions: the embedded sequence `[rows * len, dim]` and its gradient; per block its im2col
    /// matrix, rectified output, pooled output, where each pooled maximum came from, and the gradients.
    x0: Array2<f32>,
    dx0: Array2<f32>,
    cols: Vec<Array2<f32>>,
    relu: Vec<Array2<f32>>,
    pooled: Vec<Array2<f32>>,
    argmax: Vec<Vec<u32>>,
    dcols: Vec<Array2<f32>>,
    drelu: Vec<Array2<f32>>,
    dpooled: Vec<Array2<f32>>,
    /// Features `[rows, features]`, their gradient, and the fully connected layers.
    feat: Array2<f32>,
    dfeat: Array2<f32>,
    head: HeadBuffers,
}

/// Sequence length at the input of each block, and after the last.
fn lengths(len: usize, blocks: usize) -> Vec<usize> {
    (0..=blocks).map(|i| len >> i).collect()
}

/// A standard normal draw (Box-Muller), as `nn.Embedding` initialises its table.
fn normal(rng: &mut impl Rng) -> f32 {
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random_range(0.0..1.0);
    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
}

impl Embed {
    /// A fresh network over rows of `len` ids: the table, one block per entry of `channels` (none: a
    /// bag), then `hidden` fully connected layers and `classes` outputs.
    pub fn init(
        len: usize,
        spec: &EmbedSpec,
        channels: &[usize],
        hidden: &[usize],
        classes: usize,
        rng: &mut impl Rng,
    ) -> Result<Self> {
        check_shape(len, spec, channels)?;
        let table = Array2::from_shape_simple_fn((spec.vocab, spec.dim), || normal(rng));
        let mut convs = Vec::new();
        let mut cin = spec.dim;
        for &cout in channels {
            convs.push(Conv1::init(cin, cout, rng));
            cin = cout;
        }
        if channels.is_empty() && spec.bag == Bag::Concat {
            cin = len * spec.dim;
        }
        let mut dims = vec![cin];
        dims.extend(hidden);
        dims.push(classes);
        let fcs = dims.windows(2).map(|io| Linear::init(io[0], io[1], rng)).collect();
        Ok(Embed { scaling: InputScaling::identity(len), table, pad_id: spec.pad_id, bag: spec.bag, convs, fcs })
    }

    /// Rebuilds a network from tensors named as [`Student::tensors`] names them.
    pub fn from_tensors(
        t: &mut super::io::Tensors,
        spec: &EmbedSpec,
        channels: &[usize],
        dims: &[usize],
        path: &std::path::Path,
    ) -> Result<Self> {
        use super::io::take_tensor;
        let Some(&len) = dims.first() else {
            return Err(Error::dataset(path, "dims is empty"));
        };
        check_shape(len, spec, channels).map_err(|e| Error::dataset(path, e.to_string()))?;
        let Some(cells) = spec.vocab.checked_mul(spec.dim) else {
            return Err(Error::dataset(
                path,
                format!("a {}x{} table holds more values than memory", spec.vocab, spec.dim),
            ));
        };
        let values = take_tensor(t, "embedding.weight", &[spec.vocab, spec.dim], path)?;
        debug_assert_eq!(values.len(), cells);
        let table = Array2::from_shape_vec((spec.vocab, spec.dim), values)
            .map_err(|e| Error::dataset(path, format!("embedding.weight: {e}")))?;
        let mut convs = Vec::new();
        let mut cin = spec.dim;
        for (i, &cout) in channels.iter().enumerate() {
            let wv = take_tensor(t, &format!("convs.{i}.weight"), &[cout, cin, KERNEL], path)?;
            let b = take_tensor(t, &format!("convs.{i}.bias"), &[cout], path)?;
            convs.push(Conv1::from_torch(&wv, cin, cout, b));
            cin = cout;
        }
        if channels.is_empty() && spec.bag == Bag::Concat {
            cin = len * spec.dim;
        }
        let mut fc_dims = vec![cin];
        fc_dims.extend(&dims[1..]);
        let fcs = super::io::linears_from_tensors(t, &fc_dims, path)?;
        Ok(Embed { scaling: InputScaling::identity(len), table, pad_id: spec.pad_id, bag: spec.bag, convs, fcs })
    }

    /// The table's shape and masking.
    pub fn spec(&self) -> EmbedSpec {
        EmbedSpec { vocab: self.table.nrows(), dim: self.table.ncols(), pad_id: self.pad_id, bag: self.bag }
    }

    /// Ids per row.
    fn len(&self) -> usize {
        self.scaling.width()
    }

    /// Output channels of each block.
    pub fn channels(&self) -> Vec<usize> {
        self.convs.iter().map(Conv1::outputs).collect()
    }

    fn param_shapes(&self) -> Vec<Vec<usize>> {
        let mut out = vec![self.table.shape().to_vec()];
        out.extend(self.convs.iter().flat_map(|c| [c.w.shape().to_vec(), c.b.shape().to_vec()]));
        out.extend(self.fcs.iter().flat_map(|l| [l.w.shape().to_vec(), l.b.shape().to_vec()]));
        out
    }

    fn buffers(&self, rows: usize) -> Buffers {
        let (len, dim) = (self.len(), self.table.ncols());
        let lens = lengths(len, self.convs.len());
        let conv = !self.convs.is_empty();
        let seq = if conv { rows * len } else { 0 };
        let (mut cols, mut relu, mut pooled, mut argmax) = (vec![], vec![], vec![], vec![]);
        let (mut dcols, mut drelu, mut dpooled) = (vec![], vec![], vec![]);
        for (i, c) in self.convs.iter().enumerate() {
            let (l, l2, cin, cout) = (lens[i], lens[i + 1], c.inputs(), c.outputs());
            cols.push(Array2::zeros((rows * l, KERNEL * cin)));
            dcols.push(Array2::zeros((rows * l, KERNEL * cin)));
            relu.push(Array2::zeros((rows * l, cout)));
            drelu.push(Array2::zeros((rows * l, cout)));
            pooled.push(Array2::zeros((rows * l2, cout)));
            dpooled.push(Array2::zeros((rows * l2, cout)));
            argmax.push(vec![0u32; rows * l2 * cout]);
        }
        let features = self.fcs[0].w.nrows();
        Buffers {
            ids: vec![MASKED; rows * len],
            count: vec![0.0; rows],
            arg: vec![MASKED; if self.bag == Bag::Max && !conv { rows * dim } else { 0 }],
            x0: Array2::zeros((seq, dim)),
            dx0: Array2::zeros((seq, dim)),
            cols,
            relu,
            pooled,
            argmax,
            dcols,
            drelu,
            dpooled,
            feat: Array2::zeros((rows, features)),
            dfeat: Array2::zeros((rows, features)),
            head: HeadBuffers::new(&self.fcs, rows),
        }
    }

    /// The table row of an input value, or [`MASKED`] (the pad id, or outside the vocabulary). A value
    /// is truncated toward zero, as ONNX's Cast to int64 does.
    fn row_of(&self, v: f32) -> u32 {
        let id = v as i64;
        if id < 0 || id >= self.table.nrows() as i64 || self.pad_id.is_some_and(|p| i64::from(p) == id) {
            MASKED
        } else {
            id as u32
        }
    }

    /// The forward pass of input rows `rows` of `inputs`, logits into `logits`.
    fn run(&self, inputs: ArrayView2<f32>, rows: &[usize], b: &mut Buffers, logits: ndarray::ArrayViewMut2<f32>) {
        let (m, len) = (rows.len(), self.len());
        for (n, &r) in rows.iter().enumerate() {
            for (t, &v) in inputs.row(r).iter().enumerate() {
                b.ids[n * len + t] = self.row_of(v);
            }
        }
        if self.convs.is_empty() {
            self.bag_forward(b, m);
        } else {
            // The embedded sequence, zero at masked positions.
            for (p, &id) in b.ids[..m * len].iter().enumerate() {
                let mut x = b.x0.row_mut(p);
                if id == MASKED {
                    x.fill(0.0);
                } else {
                    x.assign(&self.table.row(id as usize));
                }
            }
            let lens = lengths(len, self.convs.len());
            for (i, conv) in self.convs.iter().enumerate() {
                let (l, cin) = (lens[i], conv.inputs());
                let positions = m * l;
                let (done, rest) = b.pooled.split_at_mut(i);
                let input =
                    if i == 0 { b.x0.slice(s![..positions, ..]) } else { done[i - 1].slice(s![..positions, ..]) };
                im2col(input, &mut b.cols[i], m, l);
                let mut z = b.relu[i].slice_mut(s![..positions, ..]);
                gemm(1.0, &b.cols[i].slice(s![..positions, ..KERNEL * cin]), &conv.w, 0.0, &mut z);
                z += &conv.b;
                Relu::forward(z.view_mut());
                maxpool(b.relu[i].slice(s![..positions, ..]), &mut rest[0], &mut b.argmax[i], m, l);
            }
            // The global max over the last block's positions (the first on ties).
            let last = self.convs.len() - 1;
            let (l, c) = (lens[last + 1], self.convs[last].outputs());
            let pooled = &b.pooled[last];
            for n in 0..m {
                for ch in 0..c {
                    let mut best = pooled[[n * l, ch]];
                    for p in 1..l {
                        best = best.max(pooled[[n * l + p, ch]]);
                    }
                    b.feat[[n, ch]] = best;
                }
            }
        }
        head_forward(&self.fcs, b.feat.slice(s![..m, ..]), &mut b.head, logits);
    }

    fn bag_forward(&self, b: &mut Buffers, m: usize) {
        let (len, dim) = (self.len(), self.table.ncols());
        for n in 0..m {
            let ids = &b.ids[n * len..(n + 1) * len];
            let mut f = b.feat.row_mut(n);
            f.fill(0.0);
            let mut count = 0usize;
            match self.bag {
                Bag::Mean => {
                    for &id in ids.iter().filter(|&&id| id != MASKED) {
                        f += &self.table.row(id as usize);
                        count += 1;
                    }
                    if count > 0 {
                        f /= count as f32;
                    }
                }
                Bag::Concat => {
                    for (t, &id) in ids.iter().enumerate().filter(|(_, &id)| id != MASKED) {
                        f.slice_mut(s![t * dim..(t + 1) * dim]).assign(&self.table.row(id as usize));
                        count += 1;
                    }
                }
                Bag::Max => {
                    let arg = &mut b.arg[n * dim..(n + 1) * dim];
                    arg.fill(MASKED);
                    for (t, &id) in ids.iter().enumerate().filter(|(_, &id)| id != MASKED) {
                        let row = self.table.row(id as usize);
                        for d in 0..dim {
                            if count == 0 || row[d] > f[d] {
                                f[d] = row[d];
                                arg[d] = t as u32;
                            }
                        }
                        count += 1;
                    }
                }
            }
            b.count[n] = count as f32;
        }
    }

    fn forward_block(&self, x: ArrayView2<f32>) -> Array2<f32> {
        let m = x.nrows();
        let mut b = self.buffers(m);
        let idx: Vec<usize> = (0..m).collect();
        let mut out = Array2::zeros((m, self.num_classes()));
        self.run(x, &idx, &mut b, out.view_mut());
        out
    }
}

/// The shape checks `init` and `from_tensors` share.
fn check_shape(len: usize, spec: &EmbedSpec, channels: &[usize]) -> Result<()> {
    if len == 0 || spec.vocab == 0 || spec.dim == 0 {
        return Err(Error::Config(format!(
            "an embed student needs ids per row, a vocabulary and an embedding size > 0; got {len} ids per row, \
             vocabulary {}, --embed-dim {}",
            spec.vocab, spec.dim
        )));
    }
    if channels.contains(&0) {
        return Err(Error::Config("--channels: each block needs > 0 channels".into()));
    }
    if channels.len() >= usize::BITS as usize || len >> channels.len() == 0 {
        return Err(Error::Config(format!(
            "--channels gives {} blocks, each halving the sequence: {len} ids per row leave no position after them",
            channels.len()
        )));
    }
    Ok(())
}

/// The im2col matrix of `a` (`[m * l, cin]`, rows of `l` positions) for a kernel of [`KERNEL`] with
/// padding `KERNEL / 2`: `cols[position, k * cin + c] = a[position + k - KERNEL / 2, c]`, zero outside the row.
fn im2col(a: ArrayView2<f32>, cols: &mut Array2<f32>, m: usize, l: usize) {
    let cin = a.ncols();
    let width = KERNEL * cin;
    let (Some(a), Some(cols)) = (a.as_slice(), cols.as_slice_mut()) else { return };
    for n in 0..m {
        for t in 0..l {
            let row = n * l + t;
            let dst = &mut cols[row * width..(row + 1) * width];
            for k in 0..KERNEL {
                let st = t + k;
                if st < KERNEL / 2 || st - KERNEL / 2 >= l {
                    dst[k * cin..(k + 1) * cin].fill(0.0);
                } else {
                    let src = (n * l + st - KERNEL / 2) * cin;
                    dst[k * cin..(k + 1) * cin].copy_from_slice(&a[src..src + cin]);
                }
            }
        }
    }
}

/// The adjoint of [`im2col`]: sums each column block of `dcols` back into `da` (`[m * l, cin]`).
fn col2im(dcols: ArrayView2<f32>, da: &mut ndarray::ArrayViewMut2<f32>, m: usize, l: usize) {
    let cin = da.ncols();
    let width = KERNEL * cin;
    let (Some(dcols), Some(da)) = (dcols.as_slice(), da.as_slice_mut()) else { return };
    da.fill(0.0);
    for n in 0..m {
        for t in 0..l {
            let row = n * l + t;
            let src = &dcols[row * width..(row + 1) * width];
            for k in 0..KERNEL {
                let st = t + k;
                if st < KERNEL / 2 || st - KERNEL / 2 >= l {
                    continue;
                }
                let dst = (n * l + st - KERNEL / 2) * cin;
                for (d, s) in da[dst..dst + cin].iter_mut().zip(&src[k * cin..(k + 1) * cin]) {
                    *d += s;
                }
            }
        }
    }
}

/// Max-pooling of width 2, stride 2 (an odd last position is dropped, as PyTorch's floor mode does),
/// recording where each maximum came from (the first on ties).
fn maxpool(a: ArrayView2<f32>, out: &mut Array2<f32>, argmax: &mut [u32], m: usize, l: usize) {
    let c = a.ncols();
    let l2 = l / 2;
    let (Some(a), Some(out)) = (a.as_slice(), out.as_slice_mut()) else { return };
    for n in 0..m {
        for t in 0..l2 {
            let o = n * l2 + t;
            let p = n * l + 2 * t;
            for ch in 0..c {
                let (x0, x1) = (a[p * c + ch], a[(p + 1) * c + ch]);
                let (v, at) = if x1 > x0 { (x1, p + 1) } else { (x0, p) };
                out[o * c + ch] = v;
                argmax[o * c + ch] = at as u32;
            }
        }
    }
}

impl Student for Embed {
    fn arch(&self) -> super::Arch {
        super::Arch {
            kind: super::StudentKind::Embed,
            dims: self.dims(),
            channels: self.channels(),
            image: Vec::new(),
            embed: Some(self.spec()),
            batch_norm: false,
        }
    }

    fn input_width(&self) -> usize {
        self.len()
    }

    fn num_classes(&self) -> usize {
        self.fcs.last().map_or(0, Linear::outputs)
    }

    /// `[ids per row, hidden..., classes]` (the table is in `embed`, the blocks in `channels`).
    fn dims(&self) -> Vec<usize> {
        let mut d = vec![self.len()];
        d.extend(self.fcs.iter().map(Linear::outputs));
        d
    }

    fn scaling(&self) -> &InputScaling {
        &self.scaling
    }

    fn scaling_mut(&mut self) -> &mut InputScaling {
        &mut self.scaling
    }

    fn scales_input(&self) -> bool {
        false
    }

    fn sparse_param(&self) -> Option<usize> {
        Some(0)
    }

    fn forward(&self, x: ArrayView2<f32>) -> Array2<f32> {
        super::forward_in_blocks(x, self.num_classes(), 64, |xb| self.forward_block(xb))
    }

    fn tap_shape(&self, tap: Tap) -> Option<Vec<usize>> {
        Some(vec![head_width(&self.fcs, head_position(&self.fcs, tap)?)])
    }

    fn read_tap(&self, ws: &Workspace, tap: Tap, mut out: ArrayViewMut2<f32>) -> bool {
        let (Some(b), Some(j)) = (ws.state.downcast_ref::<Buffers>(), head_position(&self.fcs, tap)) else {
            return false;
        };
        out.assign(&b.head.at(b.feat.view(), j, ws.rows));
        true
    }

    fn workspace(&self, rows: usize) -> Workspace {
        Workspace::new(rows, self.num_classes(), &self.param_shapes(), Box::new(self.buffers(rows)))
    }

    fn forward_train(&self, inputs: ArrayView2<f32>, rows: &[usize], ws: &mut Workspace) {
        let m = rows.len();
        ws.rows = m;
        let Some(b) = ws.state.downcast_mut::<Buffers>() else { return };
        self.run(inputs, rows, b, ws.logits.slice_mut(s![..m, ..]));
    }

    fn backward(&self, ws: &mut Workspace) {
        let m = ws.rows;
        let Some(b) = ws.state.downcast_mut::<Buffers>() else { return };
        let (len, dim) = (self.len(), self.table.ncols());
        let nconv = self.convs.len();
        let (table_grad, rest) = ws.grads.split_at_mut(1);
        {
            let (feat, dfeat) = (b.feat.slice(s![..m, ..]), Some(b.dfeat.slice_mut(s![..m, ..])));
            let d = ws.grad_logits.slice(s![..m, ..]);
            let extras = head_extras(&self.fcs, &ws.grad_taps, m);
            head_backward(&self.fcs, feat, &mut b.head, d, &mut rest[2 * nconv..], dfeat, &extras);
        }
        let Ok(mut gt) = table_grad[0].view_mut().into_dimensionality::<Ix2>() else { return };
        if nconv == 0 {
            for n in 0..m {
                let ids = &b.ids[n * len..(n + 1) * len];
                let df = b.dfeat.row(n);
                match self.bag {
                    Bag::Mean => {
                        if b.count[n] == 0.0 {
                            continue;
                        }
                        let inv = 1.0 / b.count[n];
                        for &id in ids.iter().filter(|&&id| id != MASKED) {
                            gt.row_mut(id as usize).scaled_add(inv, &df);
                        }
                    }
                    Bag::Concat => {
                        for (t, &id) in ids.iter().enumerate().filter(|(_, &id)| id != MASKED) {
                            gt.row_mut(id as usize).scaled_add(1.0, &df.slice(s![t * dim..(t + 1) * dim]));
                        }
                    }
                    Bag::Max => {
                        for d in 0..dim {
                            let t = b.arg[n * dim + d];
                            if t != MASKED {
                                gt[[ids[t as usize] as usize, d]] += df[d];
                            }
                        }
                    }
                }
            }
        } else {
            let lens = lengths(len, nconv);
            // The global max: each feature's gradient goes to the position it came from.
            let last = nconv - 1;
            let (l, c) = (lens[nconv], self.convs[last].outputs());
            {
                let (pooled, dp) = (&b.pooled[last], &mut b.dpooled[last]);
                dp.slice_mut(s![..m * l, ..]).fill(0.0);
                for n in 0..m {
                    for ch in 0..c {
                        let mut at = n * l;
                        for p in 1..l {
                            if pooled[[n * l + p, ch]] > pooled[[at, ch]] {
                                at = n * l + p;
                            }
                        }
                        dp[[at, ch]] += b.dfeat[[n, ch]];
                    }
                }
            }
            for i in (0..nconv).rev() {
                let conv = &self.convs[i];
                let (l, l2, cin, cout) = (lens[i], lens[i + 1], conv.inputs(), conv.outputs());
                let positions = m * l;
                let dr = &mut b.drelu[i];
                if let (Some(d), Some(dp)) = (dr.as_slice_mut(), b.dpooled[i].as_slice()) {
                    d[..positions * cout].fill(0.0);
                    let n = m * l2 * cout;
                    for (j, (&at, &g)) in b.argmax[i][..n].iter().zip(&dp[..n]).enumerate() {
                        d[at as usize * cout + j % cout] += g;
                    }
                }
                Relu::backward(b.relu[i].slice(s![..positions, ..]), dr.slice_mut(s![..positions, ..]));
                let (gw, gb) = rest[2 * i..2 * i + 2].split_at_mut(1);
                let (Ok(mut gw), Ok(mut gb)) =
                    (gw[0].view_mut().into_dimensionality::<Ix2>(), gb[0].view_mut().into_dimensionality::<Ix1>())
                else {
                    return;
                };
                let d = dr.slice(s![..positions, ..]);
                gemm(1.0, &b.cols[i].slice(s![..positions, ..KERNEL * cin]).t(), &d, 0.0, &mut gw);
                gb.fill(0.0);
                for row in d.rows() {
                    gb += &row;
                }
                let mut dc = b.dcols[i].slice_mut(s![..positions, ..]);
                gemm(1.0, &d, &conv.w.t(), 0.0, &mut dc);
                let (before, _) = b.dpooled.split_at_mut(i);
                let mut da = if i == 0 {
                    b.dx0.slice_mut(s![..positions, ..])
                } else {
                    before[i - 1].slice_mut(s![..positions, ..])
                };
                col2im(b.dcols[i].slice(s![..positions, ..]), &mut da, m, l);
            }
            for (p, &id) in b.ids[..m * len].iter().enumerate() {
                if id != MASKED {
                    gt.row_mut(id as usize).scaled_add(1.0, &b.dx0.row(p));
                }
            }
        }
        ws.touched.clear();
        ws.touched.extend(b.ids[..m * len].iter().copied().filter(|&id| id != MASKED));
        ws.touched.sort_unstable();
        ws.touched.dedup();
    }

    fn params_mut(&mut self) -> Vec<ArrayViewMutD<'_, f32>> {
        let mut out: Vec<ArrayViewMutD<'_, f32>> = vec![self.table.view_mut().into_dyn()];
        for c in &mut self.convs {
            out.push(c.w.view_mut().into_dyn());
            out.push(c.b.view_mut().into_dyn());
        }
        for l in &mut self.fcs {
            out.push(l.w.view_mut().into_dyn());
            out.push(l.b.view_mut().into_dyn());
        }
        out
    }

    fn num_parameters(&self) -> usize {
        self.table.len()
            + self.convs.iter().map(|c| c.w.len() + c.b.len()).sum::<usize>()
            + self.fcs.iter().map(|l| l.w.len() + l.b.len()).sum::<usize>()
    }

    /// `embedding.weight` (`[vocab, dim]`, as `torch.nn.Embedding`), `convs.{i}.weight` (`[cout, cin, 5]`, as
    /// `torch.nn.Conv1d`) and `convs.{i}.bias`, then `layers.{j}.weight` (`[out, in]`) and `layers.{j}.bias`.
    fn tensors(&self) -> Vec<Tensor> {
        let mut out =
            vec![("embedding.weight".to_string(), self.table.shape().to_vec(), self.table.iter().copied().collect())];
        for (i, c) in self.convs.iter().enumerate() {
            let w = c.torch_weight();
            out.push((format!("convs.{i}.weight"), w.shape().to_vec(), w.iter().copied().collect()));
            out.push((format!("convs.{i}.bias"), vec![c.b.len()], c.b.to_vec()));
        }
        out.extend(super::io::linear_tensors(&self.fcs));
        out
    }

    fn graph(&self) -> Vec<Op> {
        let output = match (self.convs.is_empty(), self.bag) {
            (false, _) => super::graph::EmbedOutput::Sequence,
            (true, Bag::Mean) => super::graph::EmbedOutput::Mean,
            (true, Bag::Max) => super::graph::EmbedOutput::Max,
            (true, Bag::Concat) => super::graph::EmbedOutput::Concat,
        };
        let mut ops = vec![Op::Embed { table: self.table.clone(), pad_id: self.pad_id, output }];
        for conv in &self.convs {
            ops.push(Op::Conv { w: conv.torch_weight(), b: conv.b.clone() });
            ops.push(Op::Relu);
            ops.push(Op::MaxPool { dims: 1 });
        }
        if !self.convs.is_empty() {
            ops.push(Op::GlobalMaxPool);
        }
        for (i, l) in self.fcs.iter().enumerate() {
            if i > 0 {
                ops.push(Op::Relu);
            }
            ops.push(Op::Linear { w: l.w.clone(), b: l.b.clone() });
        }
        ops
    }

    fn output_bias_mut(&mut self) -> ArrayViewMut1<'_, f32> {
        match self.fcs.last_mut() {
            Some(l) => l.b.view_mut(),
            None => ArrayViewMut1::from(&mut [][..]),
        }
    }

    fn boxed(&self) -> Box<dyn Student> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;

    /// A direct (loop) forward pass over one row of ids, the reference the buffered pass must equal.
    fn naive(net: &Embed, ids: &[f32]) -> Vec<f32> {
        let (vocab, dim) = (net.table.nrows() as i64, net.table.ncols());
        let keep = |v: f32| {
            let id = v as i64;
            (id >= 0 && id < vocab && net.pad_id.is_none_or(|p| i64::from(p) != id)).then_some(id as usize)
        };
        let mut f: Vec<f32> = if net.convs.is_empty() && net.bag == Bag::Concat {
            ids.iter().flat_map(|&v| (0..dim).map(move |d| keep(v).map_or(0.0, |r| net.table[[r, d]]))).collect()
        } else if net.convs.is_empty() {
            let rows: Vec<usize> = ids.iter().filter_map(|&v| keep(v)).collect();
            (0..dim)
                .map(|d| {
                    let col = rows.iter().map(|&r| net.table[[r, d]]);
                    match (net.bag, rows.is_empty()) {
                        (_, true) => 0.0,
                        (Bag::Mean, false) => col.sum::<f32>() / rows.len() as f32,
                        (Bag::Max, false) => col.fold(f32::NEG_INFINITY, f32::max),
                        (Bag::Concat, false) => unreachable!("handled above"),
                    }
                })
                .collect()
        } else {
            // [channels][positions]
            let mut a: Vec<Vec<f32>> =
                (0..dim).map(|d| ids.iter().map(|&v| keep(v).map_or(0.0, |r| net.table[[r, d]])).collect()).collect();
            for conv in &net.convs {
                let t = conv.torch_weight();
                let l = a[0].len();
                let z: Vec<Vec<f32>> = (0..conv.outputs())
                    .map(|o| {
                        (0..l)
                            .map(|x| {
                                let mut acc = conv.b[o];
                                for (c, ac) in a.iter().enumerate() {
                                    for k in 0..KERNEL {
                                        let p = x as i64 + k as i64 - 2;
                                        if p >= 0 && (p as usize) < l {
                                            acc += t[[o, c, k]] * ac[p as usize];
                                        }
                                    }
                                }
                                acc.max(0.0)
                            })
                            .collect()
                    })
                    .collect();
                a = z.iter().map(|zc| (0..l / 2).map(|x| zc[2 * x].max(zc[2 * x + 1])).collect()).collect();
            }
            a.iter().map(|c| c.iter().copied().fold(f32::NEG_INFINITY, f32::max)).collect()
        };
        for (i, l) in net.fcs.iter().enumerate() {
            let mut z: Vec<f32> =
                (0..l.outputs()).map(|o| l.b[o] + (0..f.len()).map(|j| f[j] * l.w[[j, o]]).sum::<f32>()).collect();
            if i + 1 < net.fcs.len() {
                z.iter_mut().for_each(|v| *v = v.max(0.0));
            }
            f = z;
        }
        f
    }

    /// The three forms (mean bag, max bag, convolutions) on rows of 9 ids from a vocabulary of 7 with
    /// pad id 6, including ids outside the vocabulary (-1 is truncated from -0.5 to 0, as Cast does; 7 and
    /// 9 are masked) and a row that is all padding.
    fn nets() -> Vec<(Embed, Array2<f32>)> {
        let mut out = Vec::new();
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        for (bag, channels, hidden) in [
            (Bag::Mean, &[][..], &[6][..]),
            (Bag::Max, &[], &[]),
            (Bag::Mean, &[4, 3], &[5]),
            (Bag::Mean, &[3], &[]),
            (Bag::Concat, &[], &[5]),
        ] {
            let spec = EmbedSpec { vocab: 7, dim: 3, pad_id: Some(6), bag };
            let net = Embed::init(9, &spec, channels, hidden, 4, &mut rng).unwrap();
            let mut x = Array2::from_shape_simple_fn((5, 9), || rng.random_range(0..10) as f32);
            x[[0, 1]] = -0.5;
            x.row_mut(4).fill(6.0);
            out.push((net, x));
        }
        out
    }

    #[test]
    fn the_forward_pass_equals_a_direct_one() {
        for (net, x) in nets() {
            let got = net.forward(x.view());
            for (i, row) in x.rows().into_iter().enumerate() {
                let want = naive(&net, row.as_slice().unwrap());
                for (g, w) in got.row(i).iter().zip(&want) {
                    assert!((g - w).abs() < 1e-5 * (1.0 + w.abs()), "{:?} row {i}: {g} vs {w}", net.arch());
                }
            }
            let mut ws = net.workspace(5);
            net.forward_train(x.view(), &[0, 1, 2, 3, 4], &mut ws);
            assert_eq!(ws.logits, got);
        }
    }

    /// Finite-difference check of every parameter's gradient (central differences), with the loss
    /// sum(logits * c) for fixed c; the table's gradient is non-zero only on the rows listed as touched,
    /// which are exactly the unmasked ids of the batch.
    #[test]
    fn backprop_matches_finite_differences_and_touches_only_the_rows_read() {
        for (net, x) in nets() {
            let c = Array2::from_shape_fn((5, 4), |(i, j)| ((i * 3 + j * 5) % 7) as f32 / 3.0 - 1.0);
            let loss = |n: &Embed| -> f64 {
                let z = n.forward(x.view());
                z.iter().zip(c.iter()).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum()
            };
            let mut ws = net.workspace(5);
            net.forward_train(x.view(), &[0, 1, 2, 3, 4], &mut ws);
            ws.grad_logits.assign(&c);
            net.backward(&mut ws);
            let mut read: Vec<u32> =
                x.iter().map(|&v| v as i64).filter(|&i| (0..6).contains(&i)).map(|i| i as u32).collect();
            read.sort_unstable();
            read.dedup();
            assert_eq!(ws.touched, read);
            let h = 1e-3f32;
            for p in 0..ws.grads.len() {
                for j in 0..ws.grads[p].len() {
                    let (mut plus, mut minus) = (net.clone(), net.clone());
                    plus.params_mut()[p].as_slice_mut().unwrap()[j] += h;
                    minus.params_mut()[p].as_slice_mut().unwrap()[j] -= h;
                    let fd = (loss(&plus) - loss(&minus)) / (2.0 * f64::from(h));
                    let g = f64::from(ws.grads[p].as_slice().unwrap()[j]);
                    assert!(
                        (fd - g).abs() < 2e-2 * (1.0 + fd.abs()),
                        "{:?} param {p}[{j}]: fd {fd} vs {g}",
                        net.arch()
                    );
                    if p == 0 && !read.contains(&((j / 3) as u32)) {
                        assert_eq!(g, 0.0);
                    }
                }
            }
        }
    }

    #[test]
    fn torch_layout_round_trips_and_short_rows_are_refused() {
        for (net, _) in nets() {
            let mut t: crate::student::io::Tensors =
                net.tensors().into_iter().map(|(name, shape, v)| (name, (shape, v))).collect();
            let back =
                Embed::from_tensors(&mut t, &net.spec(), &net.channels(), &net.dims(), std::path::Path::new("x"))
                    .unwrap();
            assert_eq!(back, net);
        }
        let spec = EmbedSpec { vocab: 4, dim: 2, pad_id: None, bag: Bag::Mean };
        let e = Embed::init(4, &spec, &[2, 2, 2], &[], 3, &mut ChaCha8Rng::seed_from_u64(0)).unwrap_err();
        assert!(e.to_string().contains("4 ids per row leave no position"), "{e}");
    }
}
