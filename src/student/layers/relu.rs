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

    /// Zeroes the gradient `d` where the rectified output `y` is not positive.
    pub fn backward(y: ArrayView2<f32>, d: ArrayViewMut2<f32>) {
        Zip::from(d).and(y).for_each(|g, &a| {
            if a <= 0.0 {
                *g = 0.0;
            }
        });
    }
}
