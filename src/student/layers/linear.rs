//! A fully connected layer: `y = x W + b`.

use crate::util::gemm;
use ndarray::{Array1, Array2, ArrayView2, ArrayViewMut1, ArrayViewMut2};
use rand::Rng;

/// `y = x W + b`, with `W` stored `[in, out]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Linear {
    /// Weights, `[in, out]`.
    pub w: Array2<f32>,
    /// Bias, `[out]`.
    pub b: Array1<f32>,
}

impl Linear {
    /// PyTorch's default `nn.Linear` initialisation: weights, then biases, uniform in +-1/sqrt(fan_in).
    pub fn init(inputs: usize, outputs: usize, rng: &mut impl Rng) -> Self {
        let bound = 1.0 / (inputs as f32).sqrt();
        Linear {
            w: Array2::from_shape_simple_fn((inputs, outputs), || rng.random_range(-bound..bound)),
            b: Array1::from_shape_simple_fn(outputs, || rng.random_range(-bound..bound)),
        }
    }

    /// Output features.
    pub fn outputs(&self) -> usize {
        self.b.len()
    }

    /// `out = x W + b` for the rows of `x` (`out` has as many rows).
    pub fn forward(&self, x: ArrayView2<f32>, mut out: ArrayViewMut2<f32>) {
        gemm(1.0, &x, &self.w, 0.0, &mut out);
        out += &self.b;
    }

    /// Gradients from `d` = d loss / d out for inputs `x`: `gw = x^T d`, `gb` = the column sums of `d`
    /// (row by row, in order), and, with `dx`, d loss / d x = `d W^T`.
    pub fn backward(
        &self,
        x: ArrayView2<f32>,
        d: ArrayView2<f32>,
        mut gw: ArrayViewMut2<f32>,
        mut gb: ArrayViewMut1<f32>,
        dx: Option<ArrayViewMut2<f32>>,
    ) {
        gemm(1.0, &x.t(), &d, 0.0, &mut gw);
        gb.fill(0.0);
        for row in d.rows() {
            gb += &row;
        }
        if let Some(mut dx) = dx {
            gemm(1.0, &d, &self.w.t(), 0.0, &mut dx);
        }
    }
}
