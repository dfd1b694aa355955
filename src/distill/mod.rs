//! What a student learns from: an [`Objective`] turns a window of stored rows into a [`Loss`] over
//! batches of them. A loss sees a whole batch: the student's logits for its rows and, through the
//! prepared window, every target of those rows (soft labels in any stored form, hard labels).
//!
//! Today's objective is [`kd::Kd`] (Hinton et al. 2015) for dense, top-k and sampled labels.

pub mod kd;
pub mod logit;
pub mod relation;

use ndarray::{ArrayView2, ArrayViewMut2};

pub use kd::Kd;
pub use logit::{Divergence, LogitLoss};
pub use relation::{Relation, WithRelations};

use crate::error::Result;
use crate::store::TeacherOutputs;
use crate::student::Tap;

/// A loss over a batch of rows of one prepared window.
pub trait Loss: Sync {
    /// Whether the loss is a sum of per-row terms: the trainer may then evaluate it on each worker's
    /// share of a batch in parallel. A loss that relates rows to each other returns false and is
    /// evaluated once on the whole batch.
    fn row_wise(&self) -> bool {
        true
    }

    /// For the batch's `rows` (indices into the window) with student `logits` (`[rows.len(), K]`):
    /// writes `scale * d loss / d logits` into `grad` (same shape) and returns the loss summed over
    /// the rows (unscaled).
    fn eval(&self, logits: ArrayView2<f32>, rows: &[usize], scale: f32, grad: ArrayViewMut2<f32>) -> f64;

    /// The student layers the loss has terms on (feature- and relation-based terms): the trainer then
    /// gathers the batch's values at each and calls [`Loss::eval_taps`]. None by default.
    fn taps(&self) -> Vec<Tap> {
        Vec::new()
    }

    /// For the batch's `rows` with the student's `values` at each of [`Loss::taps`] (same order,
    /// `[rows.len(), width]`): adds d terms / d values into `grads` (same order and shapes) and returns
    /// each term times the batch size (so that, like [`Loss::eval`]'s sums, dividing by the batch size
    /// gives the batch's value), one per term in the objective's order. `aux` are the objective's
    /// auxiliary parameters ([`Objective::aux_params`], trained with the student and never exported);
    /// their gradients are added into `aux_grad`.
    fn eval_taps(
        &self,
        _values: &[ArrayView2<f32>],
        _rows: &[usize],
        _grads: &mut [ArrayViewMut2<f32>],
        _aux: &[ndarray::ArrayD<f32>],
        _aux_grad: &mut [ndarray::ArrayD<f32>],
    ) -> Vec<f64> {
        Vec::new()
    }
}

/// The distillation loss of every row of `rows` for the student `logits` (`[rows, K]`, in the rows'
/// order): each row's term of `objective`, as training sums it (the mean of these is a batch's loss).
/// For checking another implementation (the Python reader's losses) against the one training uses.
pub fn row_losses(objective: &dyn Objective, rows: &TeacherOutputs, logits: ArrayView2<f32>) -> Result<Vec<f64>> {
    let n = rows.len();
    if logits.nrows() != n {
        return Err(crate::Error::Config(format!("{} rows of logits for {n} rows of labels", logits.nrows())));
    }
    let loss = objective.prepare(rows)?;
    let mut grad = ndarray::Array2::<f32>::zeros((1, logits.ncols()));
    Ok((0..n).map(|i| loss.eval(logits.slice(ndarray::s![i..i + 1, ..]), &[i], 1.0, grad.view_mut())).collect())
}

/// Prepares the targets of a window of rows once (e.g. the teacher's softened distribution).
pub trait Objective: Sync {
    /// The loss over batches of `rows`.
    fn prepare<'a>(&self, rows: &'a TeacherOutputs) -> Result<Box<dyn Loss + 'a>>;

    /// Fresh auxiliary parameters (FitNets' regressors), drawn from `seed`; none by default.
    fn aux_params(&self, _seed: u64) -> Vec<ndarray::ArrayD<f32>> {
        Vec::new()
    }
}
