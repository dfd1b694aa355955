//! Batch normalisation over the channels of NHWC activations (a row per position, a column per channel),
//! as PyTorch's `nn.BatchNorm2d` computes it: eps 1e-5, momentum 0.1, the biased batch variance to
//! normalise, the unbiased one in the running estimate that inference uses.
//!
//! Training splits each pass at the layer: every worker sums its own rows ([`BatchNorm::forward_sums`],
//! [`BatchNorm::backward_sums`]), the trainer adds the workers' sums in a fixed order, and each worker
//! goes on with the batch's totals, so the statistics are the whole batch's whatever the thread count.
//! The sums are float64: the variance is `E[z^2] - E[z]^2` over up to millions of positions.

use ndarray::{Array1, ArrayViewMut1};

/// A batch-normalisation layer's parameters (`gamma`, `beta`) and running statistics.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchNorm {
    /// Scale per channel (PyTorch's `weight`).
    pub gamma: Array1<f32>,
    /// Shift per channel (PyTorch's `bias`).
    pub beta: Array1<f32>,
    /// Running mean per channel (`running_mean`).
    pub mean: Array1<f32>,
    /// Running (unbiased) variance per channel (`running_var`).
    pub var: Array1<f32>,
}

impl BatchNorm {
    /// Added to the variance before its square root.
    pub const EPS: f64 = 1e-5;
    /// Weight of a batch's statistics in the running ones.
    pub const MOMENTUM: f64 = 0.1;

    /// PyTorch's initial state: `gamma` 1, `beta` 0, running mean 0 and variance 1.
    pub fn new(channels: usize) -> Self {
        BatchNorm {
            gamma: Array1::ones(channels),
            beta: Array1::zeros(channels),
            mean: Array1::zeros(channels),
            var: Array1::ones(channels),
        }
    }

    /// Channels.
    pub fn channels(&self) -> usize {
        self.gamma.len()
    }

    /// The inference map `z -> z * scale + shift` per channel, from the running statistics (what export
    /// folds into the layer before).
    pub fn affine(&self) -> (Array1<f32>, Array1<f32>) {
        let scale: Array1<f32> = self
            .gamma
            .iter()
            .zip(&self.var)
            .map(|(&g, &v)| (f64::from(g) / (f64::from(v) + Self::EPS).sqrt()) as f32)
            .collect();
        let shift = self.beta.iter().zip(&self.mean).zip(&scale).map(|((&b, &m), &s)| b - m * s).collect();
        (scale, shift)
    }

    /// This worker's sums over the positions of `z` (row-major `[positions, channels]`): `[positions, sum
    /// per channel..., sum of squares per channel...]`.
    pub fn forward_sums(z: &[f32], channels: usize, out: &mut Vec<f64>) {
        let c = channels.max(1);
        out.clear();
        out.resize(1 + 2 * c, 0.0);
        out[0] = (z.len() / c) as f64;
        let (s1, s2) = out[1..].split_at_mut(c);
        for row in z.chunks_exact(c) {
            for ((a, b), &v) in s1.iter_mut().zip(s2.iter_mut()).zip(row) {
                let v = f64::from(v);
                *a += v;
                *b += v * v;
            }
        }
    }

    /// The batch's positions, mean and `1 / sqrt(var + eps)` per channel from its summed
    /// [`BatchNorm::forward_sums`].
    fn batch_stats(sums: &[f64]) -> (f64, Vec<f64>, Vec<f64>) {
        let c = (sums.len() - 1) / 2;
        let n = sums[0].max(1.0);
        let mean: Vec<f64> = sums[1..1 + c].iter().map(|s| s / n).collect();
        let invstd =
            sums[1 + c..].iter().zip(&mean).map(|(s, m)| 1.0 / ((s / n - m * m).max(0.0) + Self::EPS).sqrt()).collect();
        (n, mean, invstd)
    }

    /// Normalises `z` (`[positions, channels]`) in place with the batch's statistics (`sums`): `xhat = (z -
    /// mean) / sqrt(var + eps)` goes to `xhat`, `z` becomes `gamma * xhat + beta`; `invstd` keeps `1 /
    /// sqrt(var + eps)` for the backward pass. Returns the batch's positions.
    pub fn normalise(&self, sums: &[f64], z: &mut [f32], xhat: &mut [f32], invstd: &mut Vec<f32>) -> f64 {
        let (n, mean, inv) = Self::batch_stats(sums);
        let c = self.channels();
        let mean: Vec<f32> = mean.iter().map(|&m| m as f32).collect();
        invstd.clear();
        invstd.extend(inv.iter().map(|&v| v as f32));
        let (gamma, beta) = (self.gamma.as_slice().unwrap_or_default(), self.beta.as_slice().unwrap_or_default());
        for (zr, xr) in z.chunks_exact_mut(c).zip(xhat.chunks_exact_mut(c)) {
            let params = mean.iter().zip(invstd.iter()).zip(gamma.iter().zip(beta));
            for ((zv, xv), ((&m, &k), (&g, &b))) in zr.iter_mut().zip(xr.iter_mut()).zip(params) {
                let x = (*zv - m) * k;
                *xv = x;
                *zv = g * x + b;
            }
        }
        n
    }

    /// This worker's sums for the backward pass from the gradient `dy` of `gamma * xhat + beta` (both
    /// `[positions, channels]`): `[sum of dy per channel..., sum of dy * xhat per channel...]` (its
    /// `beta` and `gamma` gradients).
    pub fn backward_sums(dy: &[f32], xhat: &[f32], channels: usize, out: &mut Vec<f64>) {
        let c = channels.max(1);
        out.clear();
        out.resize(2 * c, 0.0);
        let (s1, s2) = out.split_at_mut(c);
        for (d, x) in dy.chunks_exact(c).zip(xhat.chunks_exact(c)) {
            for (((a, b), &g), &xv) in s1.iter_mut().zip(s2.iter_mut()).zip(d).zip(x) {
                *a += f64::from(g);
                *b += f64::from(g) * f64::from(xv);
            }
        }
    }

    /// Turns `dy` into d loss / d z in place, given the batch's positions `n` and summed
    /// [`BatchNorm::backward_sums`] `batch`: `dz = gamma * invstd * (dy - sum(dy) / n - xhat * sum(dy *
    /// xhat) / n)`. This worker's own sums `own` are its `beta` and `gamma` gradients.
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        n: f64,
        batch: &[f64],
        own: &[f64],
        invstd: &[f32],
        xhat: &[f32],
        dy: &mut [f32],
        mut ggamma: ArrayViewMut1<f32>,
        mut gbeta: ArrayViewMut1<f32>,
    ) {
        let c = self.channels();
        for ch in 0..c {
            gbeta[ch] = own[ch] as f32;
            ggamma[ch] = own[c + ch] as f32;
        }
        let mean_dy: Vec<f32> = batch[..c].iter().map(|s| (s / n) as f32).collect();
        let mean_dyx: Vec<f32> = batch[c..].iter().map(|s| (s / n) as f32).collect();
        let k: Vec<f32> = self.gamma.iter().zip(invstd).map(|(g, i)| g * i).collect();
        for (d, x) in dy.chunks_exact_mut(c).zip(xhat.chunks_exact(c)) {
            let per = k.iter().zip(&mean_dy).zip(&mean_dyx);
            for ((g, &xv), ((&k, &md), &mx)) in d.iter_mut().zip(x).zip(per) {
                *g = k * (*g - md - xv * mx);
            }
        }
    }

    /// Moves the running statistics towards a training step's batch (its summed forward sums).
    pub fn record(&mut self, sums: &[f64]) {
        let c = self.channels();
        let n = sums[0].max(1.0);
        for ch in 0..c {
            let mean = sums[1 + ch] / n;
            let var = (sums[1 + c + ch] / n - mean * mean).max(0.0) * n / (n - 1.0).max(1.0);
            let m = Self::MOMENTUM;
            self.mean[ch] = ((1.0 - m) * f64::from(self.mean[ch]) + m * mean) as f32;
            self.var[ch] = ((1.0 - m) * f64::from(self.var[ch]) + m * var) as f32;
        }
    }
}
