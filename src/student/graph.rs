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
    /// A convolution with stride 1 and padding `kernel / 2` on each side (NCHW, or NCL in one dimension).
    Conv {
        /// Weights, `[cout, cin, kernel...]` (odd kernel sizes).
        w: ndarray::ArrayD<f32>,
        /// Bias, `[cout]`.
        b: Array1<f32>,
    },
    /// Max-pooling over windows of 2 (2x2 for images), stride 2.
    MaxPool {
        /// Spatial dimensions: 2 for images, 1 for sequences.
        dims: usize,
    },
    /// Token ids `[rows, len]` through an embedding table. Ids that are `pad_id` or outside the table are
    /// masked: they are left out of a bag and are zero vectors in a sequence.
    Embed {
        /// `[vocab, dim]`.
        table: Array2<f32>,
        /// The masked padding id.
        pad_id: Option<u32>,
        /// What comes out.
        output: EmbedOutput,
    },
    /// The maximum over positions: `[rows, c, positions...]` -> `[rows, c]`.
    GlobalMaxPool,
    /// `[rows, c, h, w]` -> `[rows, c * h * w]` (CHW order).
    Flatten,
    /// The mean over positions: `[rows, c, h, w]` -> `[rows, c]`.
    GlobalAveragePool,
}

/// What [`Op::Embed`] gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmbedOutput {
    /// The mean of the unmasked rows, `[rows, dim]` (zero when all are masked).
    Mean,
    /// The per-dimension maximum of the unmasked rows, `[rows, dim]` (zero when all are masked).
    Max,
    /// The sequence as channels, `[rows, dim, len]`, zero at masked positions.
    Sequence,
    /// The positions' rows side by side, `[rows, len * dim]` (position-major), zero at masked positions.
    Concat,
}
