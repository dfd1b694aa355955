//! A multi-layer perceptron with ReLU hidden layers and the input scaling it was trained with.

use ndarray::{s, Array1, Array2, ArrayView2, Axis};
use rand::Rng;
use rayon::prelude::*;

/// One fully connected layer: `y = x W + b`, with `W` stored `[in, out]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Dense {
    /// Weights, `[in, out]`.
    pub w: Array2<f32>,
    /// Bias, `[out]`.
    pub b: Array1<f32>,
}

/// The student network: `x -> (x - shift) * scale -> [Dense -> ReLU]* -> Dense -> logits`.
#[derive(Debug, Clone, PartialEq)]
pub struct Mlp {
    /// Layers, the last one producing logits.
    pub layers: Vec<Dense>,
    /// Subtracted from each input feature.
    pub shift: Array1<f32>,
    /// Multiplies each shifted input feature.
    pub scale: Array1<f32>,
}

impl Mlp {
    /// A freshly initialised network for `dims = [input, hidden..., classes]`, with PyTorch's default
    /// `nn.Linear` init (uniform in +-1/sqrt(fan_in) for weights and biases) and identity input scaling.
    pub fn init(dims: &[usize], rng: &mut impl Rng) -> Self {
        let layers = dims
            .windows(2)
            .map(|io| {
                let bound = 1.0 / (io[0] as f32).sqrt();
                Dense {
                    w: Array2::from_shape_simple_fn((io[0], io[1]), || rng.random_range(-bound..bound)),
                    b: Array1::from_shape_simple_fn(io[1], || rng.random_range(-bound..bound)),
                }
            })
            .collect();
        let d = dims[0];
        Mlp { layers, shift: Array1::zeros(d), scale: Array1::ones(d) }
    }

    /// Input features.
    pub fn input_dim(&self) -> usize {
        self.shift.len()
    }

    /// Classes.
    pub fn num_classes(&self) -> usize {
        self.layers.last().map_or(0, |l| l.b.len())
    }

    /// Hidden layer sizes.
    pub fn hidden(&self) -> Vec<usize> {
        self.layers[..self.layers.len().saturating_sub(1)].iter().map(|l| l.b.len()).collect()
    }

    /// `[input, hidden..., classes]`.
    pub fn dims(&self) -> Vec<usize> {
        let mut d = vec![self.input_dim()];
        d.extend(self.layers.iter().map(|l| l.b.len()));
        d
    }

    /// Trainable parameters (weights and biases).
    pub fn num_parameters(&self) -> usize {
        self.layers.iter().map(|l| l.w.len() + l.b.len()).sum()
    }

    /// Logits for raw inputs `[rows, input_dim]`, computed in parallel blocks of rows.
    pub fn forward(&self, x: ArrayView2<f32>) -> Array2<f32> {
        let k = self.num_classes();
        let mut out = Array2::<f32>::zeros((x.nrows(), k));
        const BLOCK: usize = 256;
        out.axis_chunks_iter_mut(Axis(0), BLOCK)
            .into_par_iter()
            .zip(x.axis_chunks_iter(Axis(0), BLOCK).into_par_iter())
            .for_each(|(mut o, xb)| o.assign(&self.forward_block(xb)));
        out
    }

    fn forward_block(&self, x: ArrayView2<f32>) -> Array2<f32> {
        let mut a = (&x - &self.shift.view().insert_axis(Axis(0))) * self.scale.view().insert_axis(Axis(0));
        let last = self.layers.len() - 1;
        for (i, layer) in self.layers.iter().enumerate() {
            let mut z = a.dot(&layer.w);
            z += &layer.b;
            if i < last {
                z.mapv_inplace(|v| v.max(0.0));
            }
            a = z;
        }
        a
    }

    /// Sets `shift` to each feature's mean and `scale` to 1/(pooled standard deviation) over `x`: every
    /// feature is centred and all share one scale, so near-constant features (image borders) are not blown up.
    pub fn fit_input_scaling(&mut self, x: ArrayView2<f32>) {
        let mut stats = InputStats::default();
        stats.add(x);
        stats.apply(self);
    }
}

/// Running sums for the input scaling, accumulated over rows in order (streamed data gives exactly
/// the sums of the same rows in memory).
#[derive(Debug, Clone, Default)]
pub struct InputStats {
    rows: u64,
    sum: Vec<f64>,
    sq: Vec<f64>,
}

impl InputStats {
    /// Adds rows.
    pub fn add(&mut self, x: ArrayView2<f32>) {
        let d = x.ncols();
        if self.sum.len() != d {
            self.sum = vec![0f64; d];
            self.sq = vec![0f64; d];
        }
        for row in x.rows() {
            for (j, &v) in row.iter().enumerate() {
                self.sum[j] += f64::from(v);
                self.sq[j] += f64::from(v) * f64::from(v);
            }
        }
        self.rows += x.nrows() as u64;
    }

    /// Sets `mlp`'s input scaling: subtract each feature's mean, divide by the mean of the features'
    /// standard deviations (one scale for all, so the features' relative sizes are kept).
    pub fn apply(&self, mlp: &mut Mlp) {
        let n = self.rows.max(1) as f64;
        let d = self.sum.len();
        let mean: Vec<f64> = self.sum.iter().map(|s| s / n).collect();
        let var: f64 = self.sq.iter().zip(&mean).map(|(q, m)| (q / n - m * m).max(0.0)).sum::<f64>() / d.max(1) as f64;
        let std = var.sqrt();
        let scale = if std > 1e-12 { (1.0 / std) as f32 } else { 1.0 };
        mlp.shift = mean.iter().map(|&m| m as f32).collect();
        mlp.scale = Array1::from_elem(d, scale);
    }
}

/// Copies rows `idx` of `x` into the first `idx.len()` rows of `out`, applying the input scaling.
pub(crate) fn gather_scaled(
    x: ArrayView2<f32>,
    idx: &[usize],
    shift: &Array1<f32>,
    scale: &Array1<f32>,
    out: &mut Array2<f32>,
) {
    for (r, &i) in idx.iter().enumerate() {
        let mut dst = out.slice_mut(s![r, ..]);
        let src = x.row(i);
        ndarray::Zip::from(&mut dst).and(&src).and(shift).and(scale).for_each(|d, &v, &m, &c| *d = (v - m) * c);
    }
}
