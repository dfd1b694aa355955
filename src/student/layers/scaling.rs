//! The input scaling a student learns from its training data: `(x - shift) * scale` per feature.

use ndarray::{s, Array1, Array2, ArrayView2};

/// `(x - shift) * scale`, per feature.
#[derive(Debug, Clone, PartialEq)]
pub struct InputScaling {
    /// Subtracted from each input feature.
    pub shift: Array1<f32>,
    /// Multiplies each shifted input feature.
    pub scale: Array1<f32>,
}

impl InputScaling {
    /// The identity for `width` features.
    pub fn identity(width: usize) -> Self {
        InputScaling { shift: Array1::zeros(width), scale: Array1::ones(width) }
    }

    /// Features.
    pub fn width(&self) -> usize {
        self.shift.len()
    }

    /// Sets `shift` to each feature's mean and `scale` to 1/(pooled standard deviation) over `x`: every
    /// feature is centred and all share one scale, so near-constant features (image borders) are not blown up.
    pub fn fit(&mut self, x: ArrayView2<f32>) {
        let mut stats = InputStats::default();
        stats.add(x);
        stats.apply(self);
    }

    /// Copies rows `idx` of `x` into the first `idx.len()` rows of `out`, scaled.
    pub fn gather(&self, x: ArrayView2<f32>, idx: &[usize], out: &mut Array2<f32>) {
        for (r, &i) in idx.iter().enumerate() {
            let mut dst = out.slice_mut(s![r, ..]);
            let src = x.row(i);
            ndarray::Zip::from(&mut dst)
                .and(&src)
                .and(&self.shift)
                .and(&self.scale)
                .for_each(|d, &v, &m, &c| *d = (v - m) * c);
        }
    }
}

/// Running sums for the input scaling, accumulated over rows in order (streamed data gives exactly
/// the sums of the same rows in memory).
#[derive(Debug, Clone, Default)]
pub struct InputStats {
    rows: u64,
    sum: Vec<f64>,
    sq: Vec<f64>,
    /// The smallest and largest value, and the first value that is not an integer (token ids must be).
    range: Option<(f32, f32)>,
    fractional: Option<f32>,
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
            for &v in row {
                let (lo, hi) = self.range.get_or_insert((v, v));
                (*lo, *hi) = (lo.min(v), hi.max(v));
                if self.fractional.is_none() && v.fract() != 0.0 {
                    self.fractional = Some(v);
                }
            }
        }
        self.rows += x.nrows() as u64;
    }

    /// The smallest and largest input value (`None`: no rows).
    pub fn range(&self) -> Option<(f32, f32)> {
        self.range
    }

    /// The first input value that is not an integer.
    pub fn fractional(&self) -> Option<f32> {
        self.fractional
    }

    /// Sets the input scaling: subtract each feature's mean, divide by the mean of the features'
    /// standard deviations (one scale for all, so the features' relative sizes are kept).
    pub fn apply(&self, scaling: &mut InputScaling) {
        let n = self.rows.max(1) as f64;
        let d = self.sum.len();
        let mean: Vec<f64> = self.sum.iter().map(|s| s / n).collect();
        let var: f64 = self.sq.iter().zip(&mean).map(|(q, m)| (q / n - m * m).max(0.0)).sum::<f64>() / d.max(1) as f64;
        let std = var.sqrt();
        let scale = if std > 1e-12 { (1.0 / std) as f32 } else { 1.0 };
        scaling.shift = mean.iter().map(|&m| m as f32).collect();
        scaling.scale = Array1::from_elem(d, scale);
    }
}
