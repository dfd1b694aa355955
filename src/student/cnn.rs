//! A small convolutional student for image-shaped inputs:
//! `x -> (x - shift) * scale -> [Conv 3x3 (padding 1) -> (BatchNorm) -> ReLU -> MaxPool 2x2]* -> flatten ->
//! [Linear -> ReLU]* -> Linear -> logits`, or, with no hidden layers, global average pooling straight to the
//! output layer. Batch normalisation uses the whole batch's statistics in training (the passes stop at each
//! normalised block for the workers' sums: [`Student::sync_points`]) and is folded into the convolution for
//! inference and export.
//!
//! Activations are kept NHWC (a row per image position, a column per channel), so a convolution is one
//! GEMM of the im2col matrix `[positions, 9 * cin]` with the weights `[9 * cin, cout]` (the same GEMM the
//! MLP uses). The flattened features are in CHW order, as `torch.flatten(x, 1)` gives on NCHW, so the
//! weights load into the PyTorch module of the same architecture and export to ONNX unchanged.

use crate::util::gemm;
use ndarray::{s, Array1, Array2, ArrayD, ArrayView2, ArrayViewMut1, ArrayViewMut2, ArrayViewMutD, Ix1, Ix2};
use rand::Rng;

use super::layers::{
    head_backward, head_extras, head_forward, head_position, head_width, BatchNorm, HeadBuffers, InputScaling, Linear,
};
use super::{Op, Student, Tap, Tensor, Workspace};
use crate::error::{Error, Result};

/// A 3x3 convolution with padding 1 and stride 1.
#[derive(Debug, Clone, PartialEq)]
pub struct Conv {
    /// Weights, `[9 * cin, cout]`: row `(ky * 3 + kx) * cin + c`.
    pub w: Array2<f32>,
    /// Bias, `[cout]`.
    pub b: Array1<f32>,
}

impl Conv {
    /// PyTorch's default `nn.Conv2d` initialisation: uniform in +-1/sqrt(9 * cin), weights then biases.
    pub fn init(cin: usize, cout: usize, rng: &mut impl Rng) -> Self {
        let bound = 1.0 / ((9 * cin) as f32).sqrt();
        Conv {
            w: Array2::from_shape_simple_fn((9 * cin, cout), || rng.random_range(-bound..bound)),
            b: Array1::from_shape_simple_fn(cout, || rng.random_range(-bound..bound)),
        }
    }

    /// Input channels.
    pub fn inputs(&self) -> usize {
        self.w.nrows() / 9
    }

    /// Output channels.
    pub fn outputs(&self) -> usize {
        self.b.len()
    }

    /// The weights as PyTorch stores them, `[cout, cin, 3, 3]`.
    pub fn torch_weight(&self) -> ArrayD<f32> {
        let (cin, cout) = (self.inputs(), self.outputs());
        ArrayD::from_shape_fn(vec![cout, cin, 3, 3], |i| self.w[[(i[2] * 3 + i[3]) * cin + i[1], i[0]]])
    }

    /// From PyTorch's layout `[cout, cin, 3, 3]` (row-major values).
    pub fn from_torch(values: &[f32], cin: usize, cout: usize, b: Vec<f32>) -> Self {
        let w = Array2::from_shape_fn((9 * cin, cout), |(r, o)| {
            let (k, c) = (r / cin, r % cin);
            values[((o * cin + c) * 3 + k / 3) * 3 + k % 3]
        });
        Conv { w, b: Array1::from(b) }
    }
}

/// Image height and width at the input of each block, and after the last.
fn block_sizes(h: usize, w: usize, blocks: usize) -> Vec<(usize, usize)> {
    let mut out = vec![(h, w)];
    for _ in 0..blocks {
        let (h, w) = out[out.len() - 1];
        out.push((h / 2, w / 2));
    }
    out
}

/// The CNN student.
#[derive(Debug, Clone, PartialEq)]
pub struct Cnn {
    /// The input scaling (per input value, CHW order).
    pub scaling: InputScaling,
    /// Input channels, height, width.
    pub image: [usize; 3],
    /// The convolution blocks. A batch-normalised block's convolution has no bias (it stays zero).
    pub convs: Vec<Conv>,
    /// One batch normalisation per block after its convolution (`--batch-norm`), or none.
    pub norms: Vec<BatchNorm>,
    /// The fully connected layers after the blocks, the last producing logits.
    pub fcs: Vec<Linear>,
}

/// One worker's activations.
struct Buffers {
    /// Scaled input rows, CHW.
    x: Array2<f32>,
    /// The first block's input, NHWC `[rows * h * w, c]` (a later block reads the pooled output before it).
    image: Array2<f32>,
    /// Per block: the im2col matrix of its input, the (normalised) convolution output before the ReLU,
    /// the rectified pooled output and, per pooled value, the position of the maximum in the convolution
    /// output (ReLU and max-pool commute: the ReLU is applied to the pooled values only).
    cols: Vec<Array2<f32>>,
    z: Vec<Array2<f32>>,
    pooled: Vec<Array2<f32>>,
    argmax: Vec<Vec<u32>>,
    /// Batch-normalised blocks: the normalised convolution output, `1 / sqrt(var + eps)` per channel and
    /// the batch's positions, kept for the backward pass.
    xhat: Vec<Array2<f32>>,
    invstd: Vec<Vec<f32>>,
    count: Vec<f64>,
    /// Gradients of the same shapes (`dinput` for blocks after the first).
    drelu: Vec<Array2<f32>>,
    dcols: Vec<Array2<f32>>,
    dpooled: Vec<Array2<f32>>,
    /// Features after the blocks `[rows, features]` and their gradient, then the fully connected layers.
    feat: Array2<f32>,
    dfeat: Array2<f32>,
    head: HeadBuffers,
}

impl Cnn {
    /// A fresh network: `image` = [C, H, W], one block per entry of `channels` (batch-normalised with
    /// `batch_norm`), then `hidden` fully connected layers (none: global average pooling) and `classes`
    /// outputs.
    pub fn init(
        image: [usize; 3],
        channels: &[usize],
        batch_norm: bool,
        hidden: &[usize],
        classes: usize,
        rng: &mut impl Rng,
    ) -> Result<Self> {
        let [c, h, w] = image;
        let sizes = block_sizes(h, w, channels.len());
        let (hl, wl) = sizes[sizes.len() - 1];
        if hl == 0 || wl == 0 {
            return Err(Error::Config(format!(
                "--channels gives {} blocks, each halving the image: a {h}x{w} image has no pixels left after them",
                channels.len()
            )));
        }
        if channels.is_empty() || channels.contains(&0) {
            return Err(Error::Config("--channels needs at least one block, each with > 0 channels".into()));
        }
        let mut convs = Vec::new();
        let mut cin = c;
        for &cout in channels {
            let mut conv = Conv::init(cin, cout, rng);
            if batch_norm {
                conv.b.fill(0.0);
            }
            convs.push(conv);
            cin = cout;
        }
        let norms = if batch_norm { channels.iter().map(|&c| BatchNorm::new(c)).collect() } else { Vec::new() };
        let features = if hidden.is_empty() { cin } else { cin * hl * wl };
        let mut dims = vec![features];
        dims.extend(hidden);
        dims.push(classes);
        let fcs = dims.windows(2).map(|io| Linear::init(io[0], io[1], rng)).collect();
        Ok(Cnn { scaling: InputScaling::identity(c * h * w), image, convs, norms, fcs })
    }

    /// Rebuilds a network from tensors named as [`Student::tensors`] names them.
    pub fn from_tensors(
        t: &mut super::io::Tensors,
        image: [usize; 3],
        channels: &[usize],
        batch_norm: bool,
        dims: &[usize],
        path: &std::path::Path,
    ) -> Result<Self> {
        use super::io::take_tensor;
        let [c, h, w] = image;
        let Some(d) = c.checked_mul(h).and_then(|v| v.checked_mul(w)) else {
            return Err(Error::dataset(path, format!("image {image:?} holds more values than memory")));
        };
        if dims.len() < 2 || dims[0] != d {
            return Err(Error::dataset(path, format!("dims {dims:?} do not start with the image's {d} values")));
        }
        let scaling = super::io::scaling_from_tensors(t, d, path)?;
        let (mut convs, mut norms) = (Vec::new(), Vec::new());
        let mut cin = c;
        for (i, &cout) in channels.iter().enumerate() {
            let wv = take_tensor(t, &format!("convs.{i}.weight"), &[cout, cin, 3, 3], path)?;
            let b =
                if batch_norm { vec![0.0; cout] } else { take_tensor(t, &format!("convs.{i}.bias"), &[cout], path)? };
            convs.push(Conv::from_torch(&wv, cin, cout, b));
            if batch_norm {
                let mut take =
                    |name: &str| take_tensor(t, &format!("norms.{i}.{name}"), &[cout], path).map(Array1::from);
                let norm = BatchNorm {
                    gamma: take("weight")?,
                    beta: take("bias")?,
                    mean: take("running_mean")?,
                    var: take("running_var")?,
                };
                if let Some(v) = norm.var.iter().find(|v| v.is_nan() || **v < 0.0) {
                    return Err(Error::dataset(path, format!("norms.{i}.running_var holds {v}; a variance is >= 0")));
                }
                norms.push(norm);
            }
            cin = cout;
        }
        let sizes = block_sizes(h, w, channels.len());
        let (hl, wl) = sizes[sizes.len() - 1];
        let features = if dims.len() == 2 { cin } else { cin * hl * wl };
        let mut fc_dims = vec![features];
        fc_dims.extend(&dims[1..]);
        let fcs = super::io::linears_from_tensors(t, &fc_dims, path)?;
        Ok(Cnn { scaling, image, convs, norms, fcs })
    }

    /// Whether the features are globally average-pooled (no hidden layers).
    fn pooled_features(&self) -> bool {
        self.fcs.len() == 1
    }

    /// Whether the blocks are batch-normalised.
    fn normalised(&self) -> bool {
        !self.norms.is_empty()
    }

    /// Parameters per block: weights and bias, or weights, `gamma` and `beta`.
    fn block_params(&self) -> usize {
        if self.normalised() {
            3
        } else {
            2
        }
    }

    fn sizes(&self) -> Vec<(usize, usize)> {
        block_sizes(self.image[1], self.image[2], self.convs.len())
    }

    /// Output channels of each block.
    pub fn channels(&self) -> Vec<usize> {
        self.convs.iter().map(Conv::outputs).collect()
    }

    /// The convolutions inference runs: batch normalisation folded into each (the running statistics'
    /// `z * scale + shift` into the weights and bias), as export writes them.
    fn folded(&self) -> std::borrow::Cow<'_, [Conv]> {
        if !self.normalised() {
            return std::borrow::Cow::Borrowed(&self.convs);
        }
        let folded = self.convs.iter().zip(&self.norms).map(|(conv, norm)| {
            let (scale, shift) = norm.affine();
            Conv { w: &conv.w * &scale, b: &conv.b * &scale + &shift }
        });
        std::borrow::Cow::Owned(folded.collect())
    }

    fn param_shapes(&self) -> Vec<Vec<usize>> {
        let mut out = Vec::new();
        for conv in &self.convs {
            out.push(conv.w.shape().to_vec());
            out.push(vec![conv.outputs()]);
            if self.normalised() {
                out.push(vec![conv.outputs()]);
            }
        }
        out.extend(self.fcs.iter().flat_map(|l| [l.w.shape().to_vec(), l.b.shape().to_vec()]));
        out
    }

    fn buffers(&self, rows: usize) -> Buffers {
        let sizes = self.sizes();
        let mut cin = self.image[0];
        let (mut cols, mut z, mut pooled, mut argmax) = (vec![], vec![], vec![], vec![]);
        let (mut drelu, mut dcols, mut dpooled, mut xhat) = (vec![], vec![], vec![], vec![]);
        for (i, conv) in self.convs.iter().enumerate() {
            let ((h, w), (h2, w2)) = (sizes[i], sizes[i + 1]);
            let cout = conv.outputs();
            cols.push(Array2::zeros((rows * h * w, 9 * cin)));
            z.push(Array2::zeros((rows * h * w, cout)));
            pooled.push(Array2::zeros((rows * h2 * w2, cout)));
            argmax.push(vec![0u32; rows * h2 * w2 * cout]);
            drelu.push(Array2::zeros((rows * h * w, cout)));
            dcols.push(Array2::zeros((rows * h * w, 9 * cin)));
            dpooled.push(Array2::zeros((rows * h2 * w2, cout)));
            xhat.push(Array2::zeros(if self.normalised() { (rows * h * w, cout) } else { (0, cout) }));
            cin = cout;
        }
        let features = self.fcs[0].w.nrows();
        let blocks = self.convs.len();
        let [c0, h0, w0] = self.image;
        Buffers {
            x: Array2::zeros((rows, self.input_width())),
            image: Array2::zeros((rows * h0 * w0, c0)),
            cols,
            z,
            pooled,
            argmax,
            xhat,
            invstd: vec![Vec::new(); blocks],
            count: vec![0.0; blocks],
            drelu,
            dcols,
            dpooled,
            feat: Array2::zeros((rows, features)),
            dfeat: Array2::zeros((rows, features)),
            head: HeadBuffers::new(&self.fcs, rows),
        }
    }

    /// CHW rows in `b.x` -> NHWC positions in the first block's input.
    fn to_positions(&self, b: &mut Buffers, m: usize) {
        let [c0, h0, w0] = self.image;
        if let (Some(a), Some(x)) = (b.image.as_slice_mut(), b.x.as_slice()) {
            let hw = h0 * w0;
            for n in 0..m {
                let (row, img) = (&x[n * c0 * hw..(n + 1) * c0 * hw], &mut a[n * hw * c0..(n + 1) * hw * c0]);
                if c0 == 1 {
                    img.copy_from_slice(row);
                    continue;
                }
                for c in 0..c0 {
                    for p in 0..hw {
                        img[p * c0 + c] = row[c * hw + p];
                    }
                }
            }
        }
    }

    /// Block `i`'s convolution of its input into `b.z[i]`.
    fn convolve(&self, conv: &Conv, i: usize, b: &mut Buffers, m: usize) {
        let (h, w) = self.sizes()[i];
        let positions = m * h * w;
        let input = if i == 0 { &b.image } else { &b.pooled[i - 1] };
        im2col(input.slice(s![..positions, ..]), &mut b.cols[i], m, h, w);
        let mut z = b.z[i].slice_mut(s![..positions, ..]);
        gemm(1.0, &b.cols[i].slice(s![..positions, ..9 * conv.inputs()]), &conv.w, 0.0, &mut z);
        z += &conv.b;
    }

    /// Block `i` after its (normalised) convolution: max-pool, then ReLU on the pooled values.
    fn activate(&self, i: usize, b: &mut Buffers, m: usize) {
        let (h, w) = self.sizes()[i];
        maxpool_relu(b.z[i].slice(s![..m * h * w, ..]), &mut b.pooled[i], &mut b.argmax[i], m, h, w);
    }

    /// The features after the last block (flattened CHW, or the mean over positions), then the fully
    /// connected layers into `logits`.
    fn head(&self, b: &mut Buffers, m: usize, logits: ndarray::ArrayViewMut2<f32>) {
        let sizes = self.sizes();
        let (hl, wl) = sizes[sizes.len() - 1];
        let last = self.convs.len() - 1;
        let cl = self.convs[last].outputs();
        let pooled = &b.pooled[last];
        let hw = hl * wl;
        for n in 0..m {
            let mut f = b.feat.row_mut(n);
            if self.pooled_features() {
                for c in 0..cl {
                    f[c] = (0..hw).map(|p| pooled[[n * hw + p, c]]).sum::<f32>() / hw as f32;
                }
            } else {
                for c in 0..cl {
                    for p in 0..hw {
                        f[c * hw + p] = pooled[[n * hw + p, c]];
                    }
                }
            }
        }
        head_forward(&self.fcs, b.feat.slice(s![..m, ..]), &mut b.head, logits);
    }

    /// Inference on `m` rows already scaled into `b.x` with `convs` (batch normalisation folded in),
    /// logits into `logits`.
    fn run(&self, convs: &[Conv], b: &mut Buffers, m: usize, logits: ndarray::ArrayViewMut2<f32>) {
        self.to_positions(b, m);
        for (i, conv) in convs.iter().enumerate() {
            self.convolve(conv, i, b, m);
            self.activate(i, b, m);
        }
        self.head(b, m, logits);
    }

    /// The training forward pass from block `start`'s convolution on: it stops after the convolution of
    /// a batch-normalised block, leaving its sums in `partial`.
    fn train_from(&self, start: usize, b: &mut Buffers, m: usize, partial: &mut Vec<f64>, logits: ArrayViewMut2<f32>) {
        for i in start..self.convs.len() {
            self.convolve(&self.convs[i], i, b, m);
            if self.normalised() {
                let (h, w) = self.sizes()[i];
                let Some(z) = b.z[i].as_slice() else { return };
                BatchNorm::forward_sums(&z[..m * h * w * self.convs[i].outputs()], self.convs[i].outputs(), partial);
                return;
            }
            self.activate(i, b, m);
        }
        self.head(b, m, logits);
    }

    fn forward_block(&self, convs: &[Conv], x: ArrayView2<f32>) -> Array2<f32> {
        let m = x.nrows();
        let mut b = self.buffers(m);
        let idx: Vec<usize> = (0..m).collect();
        self.scaling.gather(x, &idx, &mut b.x);
        let mut out = Array2::zeros((m, self.num_classes()));
        self.run(convs, &mut b, m, out.view_mut());
        out
    }

    /// The backward pass from the gradient of block `top`'s pooled output (in `b.dpooled[top]`) down:
    /// it stops at a batch-normalised block once the gradient of its normalised output is known,
    /// leaving its sums in `partial`.
    fn backward_from(
        &self,
        top: usize,
        b: &mut Buffers,
        ws_grads: &mut [ndarray::ArrayD<f32>],
        grad_taps: &[(Tap, Array2<f32>)],
        m: usize,
        partial: &mut Vec<f64>,
    ) {
        let sizes = self.sizes();
        for i in (0..=top).rev() {
            let cout = self.convs[i].outputs();
            let ((h, w), (h2, w2)) = (sizes[i], sizes[i + 1]);
            let positions = m * h * w;
            // Terms on this block's output (CHW rows) add to its gradient (NHWC positions).
            for (_, g) in grad_taps.iter().filter(|(t, _)| *t == Tap::Block(i)) {
                let dp = &mut b.dpooled[i];
                let hw = h2 * w2;
                for n in 0..m {
                    let row = g.row(n);
                    for p in 0..hw {
                        for ch in 0..cout {
                            dp[[n * hw + p, ch]] += row[ch * hw + p];
                        }
                    }
                }
            }
            // ReLU and max-pool: each pooled gradient goes to where its maximum came from, if it was > 0.
            let dr = &mut b.drelu[i];
            if let (Some(d), Some(dp), Some(y)) = (dr.as_slice_mut(), b.dpooled[i].as_slice(), b.pooled[i].as_slice()) {
                d[..positions * cout].fill(0.0);
                let n = m * h2 * w2 * cout;
                let pooled =
                    b.argmax[i][..n].chunks_exact(cout).zip(dp[..n].chunks_exact(cout)).zip(y[..n].chunks_exact(cout));
                for ((at, g), y) in pooled {
                    for (ch, ((&at, &g), &y)) in at.iter().zip(g).zip(y).enumerate() {
                        if y > 0.0 {
                            d[at as usize * cout + ch] += g;
                        }
                    }
                }
            }
            if self.normalised() {
                let (Some(d), Some(x)) = (dr.as_slice(), b.xhat[i].as_slice()) else { return };
                let len = positions * cout;
                BatchNorm::backward_sums(&d[..len], &x[..len], cout, partial);
                return;
            }
            self.convolution_backward(i, b, ws_grads, m);
        }
    }

    /// Block `i`'s convolution backward from the gradient of its output in `b.drelu[i]`: the weight
    /// (and bias) gradients, and for blocks after the first the gradient of the previous block's output.
    fn convolution_backward(&self, i: usize, b: &mut Buffers, ws_grads: &mut [ndarray::ArrayD<f32>], m: usize) {
        let conv = &self.convs[i];
        let (h, w) = self.sizes()[i];
        let positions = m * h * w;
        let g = self.block_params() * i;
        let d = b.drelu[i].slice(s![..positions, ..]);
        if let Ok(mut gw) = ws_grads[g].view_mut().into_dimensionality::<Ix2>() {
            gemm(1.0, &b.cols[i].slice(s![..positions, ..9 * conv.inputs()]).t(), &d, 0.0, &mut gw);
        }
        if !self.normalised() {
            if let Ok(mut gb) = ws_grads[g + 1].view_mut().into_dimensionality::<Ix1>() {
                gb.fill(0.0);
                for row in d.rows() {
                    gb += &row;
                }
            }
        }
        if i > 0 {
            let mut dc = b.dcols[i].slice_mut(s![..positions, ..]);
            gemm(1.0, &d, &conv.w.t(), 0.0, &mut dc);
            let (before, _) = b.dpooled.split_at_mut(i);
            let mut da = before[i - 1].slice_mut(s![..positions, ..]);
            col2im(b.dcols[i].slice(s![..positions, ..]), &mut da, m, h, w);
        }
    }
}

/// The im2col matrix of NHWC `a` (`[m * h * w, cin]`) for a 3x3 kernel with padding 1:
/// `cols[position, (ky * 3 + kx) * cin + c] = a[position shifted by (ky - 1, kx - 1), c]`, zero outside.
/// Both are row-major and contiguous (buffers the network owns), so whole channel runs are copied.
fn im2col(a: ArrayView2<f32>, cols: &mut Array2<f32>, m: usize, h: usize, w: usize) {
    let cin = a.ncols();
    let width = 9 * cin;
    let (Some(a), Some(cols)) = (a.as_slice(), cols.as_slice_mut()) else { return };
    for n in 0..m {
        for y in 0..h {
            for x in 0..w {
                let row = (n * h + y) * w + x;
                let dst = &mut cols[row * width..(row + 1) * width];
                for ky in 0..3 {
                    for kx in 0..3 {
                        let k = (ky * 3 + kx) * cin;
                        let (sy, sx) = (y + ky, x + kx);
                        if sy == 0 || sx == 0 || sy > h || sx > w {
                            dst[k..k + cin].fill(0.0);
                        } else if cin == 1 {
                            // One value: a plain move, not a call to memmove.
                            dst[k] = a[(n * h + sy - 1) * w + sx - 1];
                        } else {
                            let src = ((n * h + sy - 1) * w + sx - 1) * cin;
                            dst[k..k + cin].copy_from_slice(&a[src..src + cin]);
                        }
                    }
                }
            }
        }
    }
}

/// The adjoint of [`im2col`]: sums each column block of `dcols` back into `da` (`[m * h * w, cin]`).
fn col2im(dcols: ArrayView2<f32>, da: &mut ndarray::ArrayViewMut2<f32>, m: usize, h: usize, w: usize) {
    let cin = da.ncols();
    let width = 9 * cin;
    let (Some(dcols), Some(da)) = (dcols.as_slice(), da.as_slice_mut()) else { return };
    da.fill(0.0);
    for n in 0..m {
        for y in 0..h {
            for x in 0..w {
                let row = (n * h + y) * w + x;
                let src = &dcols[row * width..(row + 1) * width];
                for ky in 0..3 {
                    for kx in 0..3 {
                        let (sy, sx) = (y + ky, x + kx);
                        if sy == 0 || sx == 0 || sy > h || sx > w {
                            continue;
                        }
                        let k = (ky * 3 + kx) * cin;
                        let dst = ((n * h + sy - 1) * w + sx - 1) * cin;
                        for (d, s) in da[dst..dst + cin].iter_mut().zip(&src[k..k + cin]) {
                            *d += s;
                        }
                    }
                }
            }
        }
    }
}

/// 2x2 max-pooling with stride 2 (an odd last row or column is dropped, as PyTorch's floor mode does),
/// recording where each maximum came from (the first on ties), then the ReLU on the pooled values:
/// `relu(max(a)) = max(relu(a))`, and the gradient reaches the maximum only where the output is > 0, as
/// through a ReLU before the pool (which passes none where the maximum is <= 0).
fn maxpool_relu(a: ArrayView2<f32>, out: &mut Array2<f32>, argmax: &mut [u32], m: usize, h: usize, w: usize) {
    let c = a.ncols();
    let (h2, w2) = (h / 2, w / 2);
    let (Some(a), Some(out)) = (a.as_slice(), out.as_slice_mut()) else { return };
    for n in 0..m {
        for y in 0..h2 {
            for x in 0..w2 {
                let o = (n * h2 + y) * w2 + x;
                let p00 = (n * h + 2 * y) * w + 2 * x;
                let corners = [p00, p00 + 1, p00 + w, p00 + w + 1];
                let (dst, at) = (&mut out[o * c..(o + 1) * c], &mut argmax[o * c..(o + 1) * c]);
                dst.copy_from_slice(&a[p00 * c..(p00 + 1) * c]);
                at.fill(p00 as u32);
                for &p in &corners[1..] {
                    // Selects, not branches: the loop vectorises.
                    for ((d, t), &v) in dst.iter_mut().zip(at.iter_mut()).zip(&a[p * c..(p + 1) * c]) {
                        let better = v > *d;
                        *t = if better { p as u32 } else { *t };
                        *d = if better { v } else { *d };
                    }
                }
                dst.iter_mut().for_each(|v| *v = v.max(0.0));
            }
        }
    }
}

impl Student for Cnn {
    fn arch(&self) -> super::Arch {
        super::Arch {
            kind: super::StudentKind::Cnn,
            dims: self.dims(),
            channels: self.channels(),
            image: self.image.to_vec(),
            embed: None,
            batch_norm: self.normalised(),
        }
    }

    fn input_width(&self) -> usize {
        self.scaling.width()
    }

    fn num_classes(&self) -> usize {
        self.fcs.last().map_or(0, Linear::outputs)
    }

    /// `[input, hidden..., classes]`, as for the MLP (the blocks are in `channels`).
    fn dims(&self) -> Vec<usize> {
        let mut d = vec![self.input_width()];
        d.extend(self.fcs.iter().map(Linear::outputs));
        d
    }

    fn scaling(&self) -> &InputScaling {
        &self.scaling
    }

    fn scaling_mut(&mut self) -> &mut InputScaling {
        &mut self.scaling
    }

    fn forward(&self, x: ArrayView2<f32>) -> Array2<f32> {
        let convs = self.folded();
        super::forward_in_blocks(x, self.num_classes(), 64, |xb| self.forward_block(&convs, xb))
    }

    fn tap_shape(&self, tap: Tap) -> Option<Vec<usize>> {
        if let Tap::Block(i) = tap {
            let (h, w) = *self.sizes().get(i + 1)?;
            return Some(vec![self.convs.get(i)?.outputs(), h, w]);
        }
        Some(vec![head_width(&self.fcs, head_position(&self.fcs, tap)?)])
    }

    fn read_tap(&self, ws: &Workspace, tap: Tap, mut out: ArrayViewMut2<f32>) -> bool {
        let Some(b) = ws.state.downcast_ref::<Buffers>() else { return false };
        let m = ws.rows;
        if let Tap::Block(i) = tap {
            let (Some(&(h, w)), Some(conv)) = (self.sizes().get(i + 1), self.convs.get(i)) else { return false };
            let (hw, c) = (h * w, conv.outputs());
            let pooled = &b.pooled[i];
            for n in 0..m {
                let mut row = out.row_mut(n);
                for p in 0..hw {
                    for ch in 0..c {
                        row[ch * hw + p] = pooled[[n * hw + p, ch]];
                    }
                }
            }
            return true;
        }
        let Some(j) = head_position(&self.fcs, tap) else { return false };
        out.assign(&b.head.at(b.feat.view(), j, m));
        true
    }

    fn workspace(&self, rows: usize) -> Workspace {
        Workspace::new(rows, self.num_classes(), &self.param_shapes(), Box::new(self.buffers(rows)))
    }

    fn forward_train(&self, inputs: ArrayView2<f32>, rows: &[usize], ws: &mut Workspace) {
        let m = rows.len();
        ws.rows = m;
        let Some(b) = ws.state.downcast_mut::<Buffers>() else { return };
        self.scaling.gather(inputs, rows, &mut b.x);
        self.to_positions(b, m);
        self.train_from(0, b, m, &mut ws.partial, ws.logits.slice_mut(s![..m, ..]));
    }

    fn backward(&self, ws: &mut Workspace) {
        let m = ws.rows;
        let Some(b) = ws.state.downcast_mut::<Buffers>() else { return };
        let nconv = self.convs.len();
        // The fully connected layers down to d loss / d features.
        let (feat, dfeat) = (b.feat.slice(s![..m, ..]), Some(b.dfeat.slice_mut(s![..m, ..])));
        let d = ws.grad_logits.slice(s![..m, ..]);
        let extras = head_extras(&self.fcs, &ws.grad_taps, m);
        let head_grads = &mut ws.grads[self.block_params() * nconv..];
        head_backward(&self.fcs, feat, &mut b.head, d, head_grads, dfeat, &extras);
        // Features -> the last block's pooled output.
        let (hl, wl) = self.sizes()[nconv];
        let hw = hl * wl;
        let cl = self.convs[nconv - 1].outputs();
        {
            let dp = &mut b.dpooled[nconv - 1];
            for n in 0..m {
                let f = b.dfeat.row(n);
                for p in 0..hw {
                    for c in 0..cl {
                        dp[[n * hw + p, c]] = if self.pooled_features() { f[c] / hw as f32 } else { f[c * hw + p] };
                    }
                }
            }
        }
        self.backward_from(nconv - 1, b, &mut ws.grads, &ws.grad_taps, m, &mut ws.partial);
    }

    /// One per batch-normalised block.
    fn sync_points(&self) -> usize {
        self.norms.len()
    }

    /// Normalises block `point`'s convolution output with the batch's statistics and goes on.
    fn forward_resume(&self, point: usize, batch: &[f64], ws: &mut Workspace) {
        let m = ws.rows;
        let Some(b) = ws.state.downcast_mut::<Buffers>() else { return };
        let (h, w) = self.sizes()[point];
        let len = m * h * w * self.convs[point].outputs();
        let (Some(z), Some(xhat)) = (b.z[point].as_slice_mut(), b.xhat[point].as_slice_mut()) else { return };
        b.count[point] = self.norms[point].normalise(batch, &mut z[..len], &mut xhat[..len], &mut b.invstd[point]);
        self.activate(point, b, m);
        self.train_from(point + 1, b, m, &mut ws.partial, ws.logits.slice_mut(s![..m, ..]));
    }

    /// Block `point`'s normalisation backward with the batch's sums, its convolution, and on down.
    fn backward_resume(&self, point: usize, batch: &[f64], ws: &mut Workspace) {
        let m = ws.rows;
        let Some(b) = ws.state.downcast_mut::<Buffers>() else { return };
        let (h, w) = self.sizes()[point];
        let len = m * h * w * self.convs[point].outputs();
        let g = self.block_params() * point;
        let (gg, gb) = ws.grads[g + 1..g + 3].split_at_mut(1);
        let (Ok(gg), Ok(gb)) =
            (gg[0].view_mut().into_dimensionality::<Ix1>(), gb[0].view_mut().into_dimensionality::<Ix1>())
        else {
            return;
        };
        let (Some(xhat), Some(dy)) = (b.xhat[point].as_slice(), b.drelu[point].as_slice_mut()) else { return };
        let norm = &self.norms[point];
        norm.backward(b.count[point], batch, &ws.partial, &b.invstd[point], &xhat[..len], &mut dy[..len], gg, gb);
        self.convolution_backward(point, b, &mut ws.grads, m);
        if point > 0 {
            self.backward_from(point - 1, b, &mut ws.grads, &ws.grad_taps, m, &mut ws.partial);
        }
    }

    fn record_batch(&mut self, sums: &[Vec<f64>]) {
        for (norm, s) in self.norms.iter_mut().zip(sums) {
            norm.record(s);
        }
    }

    fn params_mut(&mut self) -> Vec<ArrayViewMutD<'_, f32>> {
        let mut out: Vec<ArrayViewMutD<'_, f32>> = Vec::new();
        let normalised = !self.norms.is_empty();
        let mut norms = self.norms.iter_mut();
        for c in &mut self.convs {
            out.push(c.w.view_mut().into_dyn());
            match norms.next() {
                Some(n) if normalised => {
                    out.push(n.gamma.view_mut().into_dyn());
                    out.push(n.beta.view_mut().into_dyn());
                }
                _ => out.push(c.b.view_mut().into_dyn()),
            }
        }
        for l in &mut self.fcs {
            out.push(l.w.view_mut().into_dyn());
            out.push(l.b.view_mut().into_dyn());
        }
        out
    }

    fn num_parameters(&self) -> usize {
        let per_channel = self.block_params() - 1;
        self.convs.iter().map(|c| c.w.len() + per_channel * c.outputs()).sum::<usize>()
            + self.fcs.iter().map(|l| l.w.len() + l.b.len()).sum::<usize>()
    }

    /// `input.shift`, `input.scale`, `convs.{i}.weight` (`[cout, cin, 3, 3]`, as `torch.nn.Conv2d`),
    /// `convs.{i}.bias` or, batch-normalised, `norms.{i}.weight`, `.bias`, `.running_mean` and
    /// `.running_var` (as `torch.nn.BatchNorm2d`), then `layers.{j}.weight` (`[out, in]`) and
    /// `layers.{j}.bias`.
    fn tensors(&self) -> Vec<Tensor> {
        let mut out = super::io::scaling_tensors(&self.scaling);
        for (i, c) in self.convs.iter().enumerate() {
            let w = c.torch_weight();
            out.push((format!("convs.{i}.weight"), w.shape().to_vec(), w.iter().copied().collect()));
            match self.norms.get(i) {
                Some(n) => {
                    for (name, v) in
                        [("weight", &n.gamma), ("bias", &n.beta), ("running_mean", &n.mean), ("running_var", &n.var)]
                    {
                        out.push((format!("norms.{i}.{name}"), vec![v.len()], v.to_vec()));
                    }
                }
                None => out.push((format!("convs.{i}.bias"), vec![c.b.len()], c.b.to_vec())),
            }
        }
        out.extend(super::io::linear_tensors(&self.fcs));
        out
    }

    /// Batch normalisation is folded into the convolutions (inference uses the running statistics).
    fn graph(&self) -> Vec<Op> {
        let [c, h, w] = self.image;
        let mut ops = vec![
            Op::Scale { shift: self.scaling.shift.clone(), scale: self.scaling.scale.clone() },
            Op::Image { channels: c, height: h, width: w },
        ];
        for conv in self.folded().iter() {
            ops.push(Op::Conv { w: conv.torch_weight(), b: conv.b.clone() });
            ops.push(Op::Relu);
            ops.push(Op::MaxPool { dims: 2 });
        }
        ops.push(if self.pooled_features() { Op::GlobalAveragePool } else { Op::Flatten });
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

    /// A direct (loop) convolution + ReLU + pool + flatten/GAP + MLP forward pass on one CHW image, the
    /// reference the GEMM path must equal.
    fn naive(net: &Cnn, x: &[f32]) -> Vec<f32> {
        let [mut c, mut h, mut w] = net.image;
        let mut a: Vec<f32> =
            x.iter().zip(net.scaling.shift.iter().zip(&net.scaling.scale)).map(|(v, (s, k))| (v - s) * k).collect();
        for conv in &net.convs {
            let t = conv.torch_weight();
            let co = conv.outputs();
            let mut z = vec![0f32; co * h * w];
            for o in 0..co {
                for y in 0..h {
                    for xx in 0..w {
                        let mut acc = conv.b[o];
                        for ci in 0..c {
                            for ky in 0..3 {
                                for kx in 0..3 {
                                    let (sy, sx) = (y as i64 + ky as i64 - 1, xx as i64 + kx as i64 - 1);
                                    if sy >= 0 && sx >= 0 && (sy as usize) < h && (sx as usize) < w {
                                        acc += t[[o, ci, ky, kx]] * a[(ci * h + sy as usize) * w + sx as usize];
                                    }
                                }
                            }
                        }
                        z[(o * h + y) * w + xx] = acc.max(0.0);
                    }
                }
            }
            let (h2, w2) = (h / 2, w / 2);
            let mut p = vec![0f32; co * h2 * w2];
            for o in 0..co {
                for y in 0..h2 {
                    for xx in 0..w2 {
                        let v = [(0, 0), (0, 1), (1, 0), (1, 1)]
                            .iter()
                            .map(|(dy, dx)| z[(o * h + 2 * y + dy) * w + 2 * xx + dx])
                            .fold(f32::NEG_INFINITY, f32::max);
                        p[(o * h2 + y) * w2 + xx] = v;
                    }
                }
            }
            (a, c, h, w) = (p, co, h2, w2);
        }
        let mut f: Vec<f32> = if net.fcs.len() == 1 {
            (0..c).map(|ch| a[ch * h * w..(ch + 1) * h * w].iter().sum::<f32>() / (h * w) as f32).collect()
        } else {
            a
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

    fn net(hidden: &[usize]) -> (Cnn, Array2<f32>) {
        normalised_net(hidden, false)
    }

    /// A net with random `gamma`, `beta` and running statistics when batch-normalised.
    fn normalised_net(hidden: &[usize], batch_norm: bool) -> (Cnn, Array2<f32>) {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut net = Cnn::init([2, 7, 6], &[3, 4], batch_norm, hidden, 5, &mut rng).unwrap();
        for n in &mut net.norms {
            n.gamma.mapv_inplace(|_| rng.random_range(0.5f32..1.5));
            n.beta.mapv_inplace(|_| rng.random_range(-0.5f32..0.5));
            n.mean.mapv_inplace(|_| rng.random_range(-0.5f32..0.5));
            n.var.mapv_inplace(|_| rng.random_range(0.5f32..1.5));
        }
        // Random inputs: a periodic pattern repeats patches, and equal values tie in the max-pool, where
        // the gradient is one-sided.
        let x = Array2::from_shape_simple_fn((4, 2 * 7 * 6), || rng.random_range(-1.0f32..1.0));
        net.scaling.fit(x.view());
        (net, x)
    }

    #[test]
    fn the_gemm_forward_pass_equals_a_direct_convolution() {
        for hidden in [&[8][..], &[]] {
            let (net, x) = net(hidden);
            let got = net.forward(x.view());
            for (i, row) in x.rows().into_iter().enumerate() {
                let want = naive(&net, row.as_slice().unwrap());
                for (g, w) in got.row(i).iter().zip(&want) {
                    assert!((g - w).abs() < 1e-5 * (1.0 + w.abs()), "hidden {hidden:?} row {i}: {g} vs {w}");
                }
            }
            // The training forward pass gives the same logits.
            let mut ws = net.workspace(4);
            net.forward_train(x.view(), &[0, 1, 2, 3], &mut ws);
            assert_eq!(ws.logits, got);
        }
    }

    /// Every parameter's gradient in `ws` against central differences (h = 3e-4) of `loss`. A larger
    /// step moves some pre-activations across the ReLU's kink (a term on the first block's map sees
    /// every one of them), so differences of 1e-3 were off by up to 25% where the gradient is right.
    /// Where a kink (a ReLU or a max-pool's choice) lies within the step itself, the central difference
    /// averages two slopes; there the one-sided difference on the smooth side must agree instead, and
    /// such parameters must be rare (at most 1 in 20: batch normalisation moves every pre-activation of
    /// a channel at once, so its check meets 8 of 201 in the net without hidden layers).
    fn check_against_finite_differences(net: &Cnn, ws: &Workspace, loss: impl Fn(&Cnn) -> f64, hidden: &[usize]) {
        let h = 3e-4f32;
        let agrees = |fd: f64, g: f64| (fd - g).abs() < 2e-2 * (1.0 + fd.abs());
        let (mut total, mut kinks) = (0, 0);
        for p in 0..ws.grads.len() {
            for j in 0..ws.grads[p].len() {
                let (mut plus, mut minus) = (net.clone(), net.clone());
                plus.params_mut()[p].as_slice_mut().unwrap()[j] += h;
                minus.params_mut()[p].as_slice_mut().unwrap()[j] -= h;
                let (up, down) = (loss(&plus), loss(&minus));
                let fd = (up - down) / (2.0 * f64::from(h));
                let g = f64::from(ws.grads[p].as_slice().unwrap()[j]);
                total += 1;
                if agrees(fd, g) {
                    continue;
                }
                let at = loss(net);
                let (forward, backward) = ((up - at) / f64::from(h), (at - down) / f64::from(h));
                assert!(
                    agrees(forward, g) || agrees(backward, g),
                    "hidden {hidden:?} param {p}[{j}]: central {fd}, one-sided {forward} / {backward} vs {g}"
                );
                kinks += 1;
            }
        }
        assert!(kinks * 20 <= total, "hidden {hidden:?}: {kinks} of {total} parameters met a kink");
    }

    /// Finite-difference check of every parameter's gradient (central differences, h = 2e-3), with the loss
    /// sum(logits * c) for fixed c (so d loss / d logits = c).
    #[test]
    fn backprop_matches_finite_differences() {
        for hidden in [&[8][..], &[]] {
            let (net, x) = net(hidden);
            let c = Array2::from_shape_fn((4, 5), |(i, j)| ((i * 3 + j * 5) % 7) as f32 / 3.0 - 1.0);
            let loss = |n: &Cnn| -> f64 {
                let z = n.forward(x.view());
                z.iter().zip(c.iter()).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum()
            };
            let mut ws = net.workspace(4);
            net.forward_train(x.view(), &[0, 1, 2, 3], &mut ws);
            ws.grad_logits.assign(&c);
            net.backward(&mut ws);
            check_against_finite_differences(&net, &ws, loss, hidden);
        }
    }

    /// Finite differences of sum over `taps` of sum(values * e) + sum(logits * c) on the training pass
    /// (whole: through the sync points of a batch-normalised net) against its staged backward pass.
    fn check_tap_gradients(net: &Cnn, x: &Array2<f32>, taps: &[Tap], hidden: &[usize]) {
        let rows = [0, 1, 2, 3];
        let widths: Vec<usize> = taps.iter().map(|&t| net.tap_shape(t).unwrap().iter().product()).collect();
        let es: Vec<Array2<f32>> = widths
            .iter()
            .enumerate()
            .map(|(k, &w)| Array2::from_shape_fn((4, w), |(i, j)| ((i * 5 + j * 3 + k) % 11) as f32 / 5.0 - 1.0))
            .collect();
        let c = Array2::from_shape_fn((4, 5), |(i, j)| ((i * 3 + j * 5) % 7) as f32 / 3.0 - 1.0);
        let loss = |n: &Cnn| -> f64 {
            let mut ws = n.workspace(4);
            crate::student::forward_whole(n, x.view(), &rows, &mut ws);
            let mut total = ws.logits.iter().zip(c.iter()).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum::<f64>();
            for ((&tap, &w), e) in taps.iter().zip(&widths).zip(&es) {
                let mut v = Array2::zeros((4, w));
                assert!(n.read_tap(&ws, tap, v.view_mut()));
                total += v.iter().zip(e.iter()).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum::<f64>();
            }
            total
        };
        let mut ws = net.workspace(4);
        crate::student::forward_whole(net, x.view(), &rows, &mut ws);
        ws.grad_logits.assign(&c);
        ws.grad_taps = taps.iter().copied().zip(es.iter().cloned()).collect();
        crate::student::backward_whole(net, &mut ws);
        check_against_finite_differences(net, &ws, loss, hidden);
    }

    /// Gradients entering at the taps (feature- and relation-based terms) reach every parameter below
    /// them, with and without hidden layers, on every tap at once (the embedding is the last hidden
    /// layer's output, or the pooled features; the blocks' maps are read in CHW order and their gradients
    /// go back to NHWC).
    #[test]
    fn tap_gradients_match_finite_differences() {
        for hidden in [&[8, 6][..], &[]] {
            let (net, x) = net(hidden);
            let mut taps = vec![Tap::Embedding, Tap::Block(0), Tap::Block(1)];
            taps.extend((0..hidden.len()).map(Tap::Hidden));
            assert_eq!(net.tap_shape(Tap::Block(1)), Some(vec![4, 1, 1]));
            assert_eq!(net.tap_shape(Tap::Block(2)), None);
            assert_eq!(net.tap_shape(Tap::Hidden(hidden.len())), None);
            check_tap_gradients(&net, &x, &taps, hidden);
        }
    }

    #[test]
    fn torch_layout_round_trips_and_small_images_are_refused() {
        let (net, _) = net(&[8]);
        let c = &net.convs[1];
        let t = c.torch_weight();
        let back = Conv::from_torch(t.as_slice().unwrap(), c.inputs(), c.outputs(), c.b.to_vec());
        assert_eq!(&back, c);
        let mut t: crate::student::io::Tensors =
            net.tensors().into_iter().map(|(name, shape, v)| (name, (shape, v))).collect();
        let back = Cnn::from_tensors(&mut t, net.image, &net.channels(), false, &net.dims(), std::path::Path::new("x"))
            .unwrap();
        assert_eq!(back, net);
        let (net, _) = normalised_net(&[8], true);
        let mut t: crate::student::io::Tensors =
            net.tensors().into_iter().map(|(name, shape, v)| (name, (shape, v))).collect();
        let back = Cnn::from_tensors(&mut t, net.image, &net.channels(), true, &net.dims(), std::path::Path::new("x"))
            .unwrap();
        assert_eq!(back, net);
        let e = Cnn::init([1, 4, 4], &[2, 2, 2], false, &[], 3, &mut ChaCha8Rng::seed_from_u64(0)).unwrap_err();
        assert!(e.to_string().contains("a 4x4 image has no pixels left"), "{e}");
    }

    /// With batch normalisation the loss of the training pass (the batch's statistics) has the gradient
    /// the staged backward pass gives, for every parameter (gamma and beta included), through the taps too.
    #[test]
    fn batch_normalised_backprop_matches_finite_differences() {
        for hidden in [&[8][..], &[]] {
            let (net, x) = normalised_net(hidden, true);
            assert_eq!(net.param_shapes().len(), 3 * 2 + 2 * net.fcs.len());
            check_tap_gradients(&net, &x, &[Tap::Embedding, Tap::Block(0)], hidden);
        }
    }

    /// Two workers on halves of a batch, their sums added at each sync point as the trainer adds them,
    /// give the logits and (summed) gradients of one worker on the whole batch: the statistics are the
    /// batch's, not each worker's.
    #[test]
    fn batch_statistics_are_the_whole_batchs_across_workers() {
        let (net, x) = normalised_net(&[8], true);
        let c = Array2::from_shape_fn((4, 5), |(i, j)| ((i * 3 + j * 5) % 7) as f32 / 3.0 - 1.0);
        let mut whole = net.workspace(4);
        crate::student::forward_whole(&net, x.view(), &[0, 1, 2, 3], &mut whole);
        whole.grad_logits.assign(&c);
        crate::student::backward_whole(&net, &mut whole);

        let halves: [&[usize]; 2] = [&[0, 1], &[2, 3]];
        let mut spaces: Vec<Workspace> = halves.iter().map(|_| net.workspace(2)).collect();
        for (ws, rows) in spaces.iter_mut().zip(halves) {
            net.forward_train(x.view(), rows, ws);
        }
        for point in 0..net.sync_points() {
            let batch = crate::student::sum_partials(&spaces);
            spaces.iter_mut().for_each(|ws| net.forward_resume(point, &batch, ws));
        }
        for (k, ws) in spaces.iter_mut().enumerate() {
            ws.grad_logits.assign(&c.slice(s![2 * k..2 * k + 2, ..]));
            net.backward(ws);
        }
        for point in (0..net.sync_points()).rev() {
            let batch = crate::student::sum_partials(&spaces);
            spaces.iter_mut().for_each(|ws| net.backward_resume(point, &batch, ws));
        }
        for (k, ws) in spaces.iter().enumerate() {
            let want = whole.logits.slice(s![2 * k..2 * k + 2, ..]);
            assert!(ws.logits.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-5), "{:?} vs {want:?}", ws.logits);
        }
        for (p, g) in whole.grads.iter().enumerate() {
            for (j, want) in g.iter().enumerate() {
                let got = spaces[0].grads[p].as_slice().unwrap()[j] + spaces[1].grads[p].as_slice().unwrap()[j];
                assert!((got - want).abs() < 1e-4 * (1.0 + want.abs()), "param {p}[{j}]: {got} vs {want}");
            }
        }
        // Each half alone normalises differently: the sums matter.
        let mut alone = net.workspace(2);
        crate::student::forward_whole(&net, x.view(), &[0, 1], &mut alone);
        assert!(alone.logits.iter().zip(spaces[0].logits.iter()).any(|(a, b)| (a - b).abs() > 1e-3));
    }

    /// Inference folds the running statistics into the convolutions: equal to normalising after an
    /// unfolded convolution.
    #[test]
    fn folded_inference_equals_normalising_the_convolution() {
        let (net, x) = normalised_net(&[], true);
        let mut plain = net.clone();
        plain.norms.clear();
        let mut b = plain.buffers(4);
        plain.scaling.gather(x.view(), &[0, 1, 2, 3], &mut b.x);
        plain.to_positions(&mut b, 4);
        for i in 0..net.convs.len() {
            plain.convolve(&net.convs[i], i, &mut b, 4);
            let (scale, shift) = net.norms[i].affine();
            let (var, mean) = (&net.norms[i].var, &net.norms[i].mean);
            let (h, w) = net.sizes()[i];
            for mut row in b.z[i].slice_mut(s![..4 * h * w, ..]).rows_mut() {
                for (ch, v) in row.iter_mut().enumerate() {
                    let normalised = (*v - mean[ch]) / (var[ch] + 1e-5).sqrt();
                    *v = net.norms[i].gamma[ch] * normalised + net.norms[i].beta[ch];
                    assert!((*v - (scale[ch] * (*v - shift[ch]) / scale[ch] + shift[ch])).abs() < 1e-6);
                }
            }
            plain.activate(i, &mut b, 4);
        }
        let mut want = Array2::zeros((4, 5));
        plain.head(&mut b, 4, want.view_mut());
        let got = net.forward(x.view());
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-5 * (1.0 + w.abs()), "{got:?} vs {want:?}");
        }
    }
}
