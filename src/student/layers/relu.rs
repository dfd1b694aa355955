//! The rectifier, in place.

use ndarray::{ArrayView2, ArrayViewMut2, Zip};

/// `max(x, 0)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Relu;

impl Relu {
    /// Rectifies `x` in place.
    pub fn forward(x: ArrayViewMut2<f32>) {
        let mut x = x;
        x.mapv_inplace(|v| v.max(0.0));
    }

    /// Zeroes the gradient `d` where the rectified output `y` is not positive. Every element is written
    /// (a select, not a branch around a store), so the loop vectorises.
    pub fn backward(y: ArrayView2<f32>, d: ArrayViewMut2<f32>) {
        Zip::from(d).and(y).for_each(|g, &a| *g = if a <= 0.0 { 0.0 } else { *g });
    }
}
