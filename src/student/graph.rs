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
    /// The flat rows as images `[rows, channels, height, width]`.
    Image {
        /// Channels.
        channels: usize,
        /// Height.
        height: usize,
        /// Width.
        width: usize,
    },
    /// A 3x3 convolution, padding 1, stride 1 (NCHW).
    Conv3x3 {
        /// Weights, `[cout, cin, 3, 3]`.
        w: ndarray::ArrayD<f32>,
        /// Bias, `[cout]`.
        b: Array1<f32>,
    },
    /// 2x2 max-pooling, stride 2.
    MaxPool2,
    /// `[rows, c, h, w]` -> `[rows, c * h * w]` (CHW order).
    Flatten,
    /// The mean over positions: `[rows, c, h, w]` -> `[rows, c]`.
    GlobalAveragePool,
}
