//! A student as a sequence of operations, which exporters ([`crate::export`]) translate to their format.

use ndarray::{Array1, Array2};

/// One operation on a batch `[rows, features]`.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// `(x - shift) * scale`, per feature.
    Scale {
        /// Subtracted.
        shift: Array1<f32>,
        /// Then multiplied.
        scale: Array1<f32>,
    },
    /// `x W + b`, `W` stored `[in, out]`.
    Linear {
        /// Weights, `[in, out]`.
        w: Array2<f32>,
        /// Bias, `[out]`.
        b: Array1<f32>,
    },
    /// `max(x, 0)`.
    Relu,
}
