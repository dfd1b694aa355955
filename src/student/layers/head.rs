//! The fully connected stack every student ends in: `features -> [Linear -> ReLU]* -> Linear -> logits`,
//! with the per-worker buffers between its layers.

use ndarray::{s, Array2, ArrayD, ArrayView2, ArrayViewMut2, Ix1, Ix2};

use super::{Linear, Relu};
use crate::student::Tap;

/// Each hidden layer's output (after ReLU) and d loss / d that output, for up to `rows` rows.
pub struct HeadBuffers {
    acts: Vec<Array2<f32>>,
    deltas: Vec<Array2<f32>>,
}

impl HeadBuffers {
    /// Buffers for `layers` (the last produces logits) and up to `rows` rows.
    pub fn new(layers: &[Linear], rows: usize) -> Self {
        let hidden = &layers[..layers.len().saturating_sub(1)];
        HeadBuffers {
            acts: hidden.iter().map(|l| Array2::zeros((rows, l.outputs()))).collect(),
            deltas: hidden.iter().map(|l| Array2::zeros((rows, l.outputs()))).collect(),
        }
    }
}

impl HeadBuffers {
    /// The values at head position `j` ([`head_position`]) of the last forward pass's first `m` rows:
    /// `input` for 0, hidden layer `j - 1`'s output otherwise.
    pub fn at<'a>(&'a self, input: ArrayView2<'a, f32>, j: usize, m: usize) -> ArrayView2<'a, f32> {
        match j.checked_sub(1).and_then(|i| self.acts.get(i)) {
            Some(a) => a.slice(s![..m, ..]),
            None => input.slice_move(s![..m, ..]),
        }
    }
}

/// Where `tap` is in a head of `layers`: 0 for its input, `j` for hidden layer `j - 1`'s output (the
/// embedding is the last of these); `None` for a tap the head does not have.
pub fn head_position(layers: &[Linear], tap: Tap) -> Option<usize> {
    let hidden = layers.len().saturating_sub(1);
    match tap {
        Tap::Embedding => Some(hidden),
        Tap::Hidden(i) if i < hidden => Some(i + 1),
        _ => None,
    }
}

/// The width of head position `j`.
pub fn head_width(layers: &[Linear], j: usize) -> usize {
    match j.checked_sub(1) {
        Some(i) => layers[i].outputs(),
        None => layers[0].w.nrows(),
    }
}

/// The tap gradients of `grad_taps` that enter a head of `layers`, by head position, first `m` rows.
pub fn head_extras<'a>(
    layers: &[Linear],
    grad_taps: &'a [(Tap, Array2<f32>)],
    m: usize,
) -> Vec<(usize, ArrayView2<'a, f32>)> {
    grad_taps.iter().filter_map(|(t, g)| Some((head_position(layers, *t)?, g.slice(s![..m, ..])))).collect()
}

/// The forward pass of the first `input.nrows()` rows into `logits`.
pub fn head_forward(layers: &[Linear], input: ArrayView2<f32>, b: &mut HeadBuffers, mut logits: ArrayViewMut2<f32>) {
    let m = input.nrows();
    let last = layers.len() - 1;
    for (l, layer) in layers.iter().enumerate() {
        let (before, after) = b.acts.split_at_mut(l);
        let x = if l == 0 { input } else { before[l - 1].slice(s![..m, ..]) };
        if l < last {
            let mut out = after[0].slice_mut(s![..m, ..]);
            layer.forward(x, out.view_mut());
            Relu::forward(out);
        } else {
            layer.forward(x, logits.view_mut());
        }
    }
}

/// The backward pass from `grad_logits` for the rows of the last [`head_forward`] on `input`: the
/// layers' weight and bias gradients into `grads` (two per layer, in order) and, with `dinput`,
/// d loss / d input. `extras` (head position, d loss / d the values there) are added where the
/// gradient of that position forms (position 0 into `dinput`).
pub fn head_backward(
    layers: &[Linear],
    input: ArrayView2<f32>,
    b: &mut HeadBuffers,
    grad_logits: ArrayView2<f32>,
    grads: &mut [ArrayD<f32>],
    mut dinput: Option<ArrayViewMut2<f32>>,
    extras: &[(usize, ArrayView2<f32>)],
) {
    let m = input.nrows();
    let last = layers.len() - 1;
    for l in (0..=last).rev() {
        let (before, rest) = b.deltas.split_at_mut(l);
        let d = if l == last { grad_logits } else { rest[0].slice(s![..m, ..]) };
        let x = if l == 0 { input } else { b.acts[l - 1].slice(s![..m, ..]) };
        let (gw, gb) = grads[2 * l..2 * l + 2].split_at_mut(1);
        let (Ok(gw), Ok(gb)) =
            (gw[0].view_mut().into_dimensionality::<Ix2>(), gb[0].view_mut().into_dimensionality::<Ix1>())
        else {
            return;
        };
        let dx = if l > 0 { Some(before[l - 1].slice_mut(s![..m, ..])) } else { dinput.as_mut().map(|d| d.view_mut()) };
        layers[l].backward(x, d, gw, gb, dx);
        for (_, extra) in extras.iter().filter(|(j, _)| *j == l) {
            let target =
                if l > 0 { Some(before[l - 1].slice_mut(s![..m, ..])) } else { dinput.as_mut().map(|d| d.view_mut()) };
            if let Some(mut t) = target {
                t += &extra.slice(s![..m, ..]);
            }
        }
        if l > 0 {
            Relu::backward(b.acts[l - 1].slice(s![..m, ..]), before[l - 1].slice_mut(s![..m, ..]));
        }
    }
}
