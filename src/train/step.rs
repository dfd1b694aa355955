//! One optimizer step per batch, data-parallel over rayon workers.
//!
//! Each batch is split into one contiguous chunk per worker; every worker runs the student's forward
//! pass on its chunk into its own preallocated [`Workspace`] (no allocation per step). A row-wise loss
//! is evaluated by each worker on its chunk; a batch-level loss once on the whole batch's logits. Each
//! worker then runs the backward pass, the gradients are summed in a fixed order, optionally clipped,
//! and the optimizer updates the parameters in parallel; without clipping the sum happens inside the
//! optimizer's pass ([`crate::optim::Optimizer::update_sum`]), one pass over the weights instead of two.
//! Same seed and thread count: bit-identical weights.

use ndarray::{s, Array2, ArrayD, ArrayView2, ArrayViewD, ArrayViewMut2, Axis, Zip};
use rayon::prelude::*;

use crate::config::TrainSettings;
use crate::distill::Loss;
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::student::{sum_partials, Student, Tap, Workspace};

/// The student, its optimizer state and the workers' buffers between steps.
pub(crate) struct Trainer<'s> {
    pub settings: &'s TrainSettings,
    pub student: Box<dyn Student>,
    /// Per parameter: the optimizer's [m, v].
    pub state: Vec<[ArrayD<f32>; 2]>,
    spaces: Vec<Workspace>,
    workers: usize,
    batch: usize,
    pub global_step: u64,
    total_steps: u64,
    warmup: u64,
    /// The objective's auxiliary parameters (FitNets' regressor), their optimizer [m, v] and gradient.
    pub aux: Vec<ArrayD<f32>>,
    pub aux_state: Vec<[ArrayD<f32>; 2]>,
    aux_grads: Vec<ArrayD<f32>>,
    /// The whole batch's logits and gradient, for batch-level losses.
    batch_logits: Array2<f32>,
    batch_grad: Array2<f32>,
}

/// Per-epoch running totals.
#[derive(Default)]
pub(crate) struct EpochTotals {
    pub loss: f64,
    /// Each feature or relation term's share of `loss`, summed over steps.
    pub terms: Vec<f64>,
    pub steps: usize,
    pub lr: f32,
}

impl<'s> Trainer<'s> {
    /// A trainer for `student` at `global_step`, stepping `batch` rows at a time over `steps_per_epoch`.
    pub fn new(
        settings: &'s TrainSettings,
        student: Box<dyn Student>,
        state: Vec<[ArrayD<f32>; 2]>,
        global_step: u64,
        batch: usize,
        steps_per_epoch: u64,
    ) -> Self {
        let workers = rayon::current_num_threads().max(1);
        let cap = batch.div_ceil(workers);
        let spaces = (0..workers).map(|_| student.workspace(cap)).collect();
        let k = student.num_classes();
        Trainer {
            settings,
            student,
            state,
            spaces,
            workers,
            batch,
            global_step,
            total_steps: steps_per_epoch * settings.epochs as u64,
            warmup: (f64::from(settings.warmup_epochs) * steps_per_epoch as f64).round() as u64,
            aux: Vec::new(),
            aux_state: Vec::new(),
            aux_grads: Vec::new(),
            batch_logits: Array2::zeros((0, k)),
            batch_grad: Array2::zeros((0, k)),
        }
    }

    /// Sets the auxiliary parameters and their optimizer state (fresh: zero moments).
    pub fn set_aux(&mut self, aux: Vec<ArrayD<f32>>, state: Option<Vec<[ArrayD<f32>; 2]>>) {
        self.aux_state = state
            .unwrap_or_else(|| aux.iter().map(|a| [ArrayD::zeros(a.raw_dim()), ArrayD::zeros(a.raw_dim())]).collect());
        self.aux_grads = aux.iter().map(|a| ArrayD::zeros(a.raw_dim())).collect();
        self.aux = aux;
    }

    /// Steps over the whole run.
    pub fn total_steps(&self) -> u64 {
        self.total_steps
    }

    /// Zero optimizer state for every parameter of `student`.
    pub fn fresh_state(student: &mut dyn Student) -> Vec<[ArrayD<f32>; 2]> {
        student
            .params_mut()
            .iter()
            .map(|p| {
                let z = ArrayD::zeros(p.shape());
                [z.clone(), z]
            })
            .collect()
    }

    /// One optimizer step per `batch` rows of `order` (indices into `inputs` and the loss's window).
    pub fn steps(
        &mut self,
        inputs: ArrayView2<f32>,
        loss: &dyn Loss,
        order: &[usize],
        epoch: usize,
        totals: &mut EpochTotals,
        progress: &dyn Progress,
    ) -> Result<()> {
        let (settings, workers) = (self.settings, self.workers);
        for idx in order.chunks(self.batch) {
            let scale = 1.0 / idx.len() as f32;
            let chunk = idx.len().div_ceil(workers);
            let student = self.student.as_ref();
            let part = |w: usize| &idx[(w * chunk).min(idx.len())..((w + 1) * chunk).min(idx.len())];
            let row_wise = loss.row_wise();
            // A student with sync points (batch normalisation) runs its passes in stages, with the
            // workers' sums added between them.
            let points = student.sync_points();
            let eval_and_backward = |rows: &[usize], ws: &mut Workspace| {
                let m = rows.len();
                ws.loss = loss.eval(ws.logits.slice(s![..m, ..]), rows, scale, ws.grad_logits.slice_mut(s![..m, ..]));
                student.backward(ws);
            };
            self.spaces.par_iter_mut().enumerate().for_each(|(w, ws)| {
                let rows = part(w);
                ws.rows = rows.len();
                ws.loss = 0.0;
                if rows.is_empty() {
                    return;
                }
                student.forward_train(inputs, rows, ws);
                if row_wise && points == 0 {
                    eval_and_backward(rows, ws);
                }
            });
            let mut batch_sums = Vec::with_capacity(points);
            for point in 0..points {
                let batch = sum_partials(&self.spaces);
                self.spaces
                    .par_iter_mut()
                    .filter(|ws| ws.rows > 0)
                    .for_each(|ws| student.forward_resume(point, &batch, ws));
                batch_sums.push(batch);
            }
            if row_wise && points > 0 {
                self.spaces
                    .par_iter_mut()
                    .enumerate()
                    .filter(|(_, ws)| ws.rows > 0)
                    .for_each(|(w, ws)| eval_and_backward(part(w), ws));
            }
            if !row_wise {
                let terms = self.batch_level(loss, idx, scale, chunk);
                totals.terms.resize(terms.len().max(totals.terms.len()), 0.0);
                totals.terms.iter_mut().zip(terms).for_each(|(t, v)| *t += v);
            }
            let student = self.student.as_ref();
            for point in (0..points).rev() {
                let batch = sum_partials(&self.spaces);
                self.spaces
                    .par_iter_mut()
                    .filter(|ws| ws.rows > 0)
                    .for_each(|ws| student.backward_resume(point, &batch, ws));
            }
            self.student.record_batch(&batch_sums);
            let (first, rest) = self.spaces.split_at_mut(1);
            let acc = &mut first[0];
            let loss: f64 = (acc.loss + rest.iter().map(|w| w.loss).sum::<f64>()) / idx.len() as f64;
            totals.steps += 1;
            if !loss.is_finite() {
                progress.end();
                return Err(Error::Diverged { epoch, step: totals.steps, loss: loss as f32 });
            }
            totals.loss += loss;
            // A sparse parameter (an embedding table): only the rows some worker touched.
            let sparse = self.student.sparse_param();
            let mut touched: Vec<u32> = Vec::new();
            if sparse.is_some() {
                touched.extend(acc.touched.iter().copied());
                for other in rest.iter().filter(|w| w.rows > 0) {
                    touched.extend(other.touched.iter().copied());
                }
                touched.sort_unstable();
                touched.dedup();
            }
            // The workers' gradients are summed here only where something needs the sum before the
            // update (the sparse table; every parameter when clipping); otherwise the update sums them.
            let clipping = settings.clip_norm.is_some();
            for other in rest.iter().filter(|w| w.rows > 0) {
                for (p, (a, g)) in acc.grads.iter_mut().zip(&other.grads).enumerate() {
                    if Some(p) == sparse {
                        for &r in &other.touched {
                            let mut a = a.index_axis_mut(Axis(0), r as usize);
                            a += &g.index_axis(Axis(0), r as usize);
                        }
                    } else if clipping {
                        Zip::from(a).and(g).par_for_each(|a, &b| *a += b);
                    }
                }
            }
            if let Some(max_norm) = settings.clip_norm {
                clip(&mut acc.grads, max_norm, sparse.map(|p| (p, touched.as_slice())));
            }
            let others: Vec<&Workspace> =
                if clipping { Vec::new() } else { rest.iter().filter(|w| w.rows > 0).collect() };
            self.global_step += 1;
            totals.lr =
                settings.schedule.rate(settings.optimizer.lr(), self.global_step - 1, self.total_steps, self.warmup);
            let params = self.student.params_mut().into_iter().zip(&acc.grads).zip(&mut self.state);
            for (p, ((mut w, g), [m, v])) in params.enumerate() {
                let opt = &settings.optimizer;
                if Some(p) == sparse {
                    for &r in &touched {
                        let r = r as usize;
                        let (w, g) = (w.index_axis_mut(Axis(0), r), g.index_axis(Axis(0), r));
                        let (m, v) = (m.index_axis_mut(Axis(0), r), v.index_axis_mut(Axis(0), r));
                        opt.update_serial(w, g, m, v, self.global_step, totals.lr);
                    }
                } else {
                    let parts: Vec<ArrayViewD<f32>> =
                        std::iter::once(g.view()).chain(others.iter().map(|o| o.grads[p].view())).collect();
                    opt.update_sum(w, &parts, m.view_mut(), v.view_mut(), self.global_step, totals.lr);
                }
            }
            // The auxiliary parameters take the same optimizer step (their gradient is not clipped).
            for ((w, g), [m, v]) in self.aux.iter_mut().zip(&mut self.aux_grads).zip(&mut self.aux_state) {
                settings.optimizer.update(
                    w.view_mut(),
                    g.view(),
                    m.view_mut(),
                    v.view_mut(),
                    self.global_step,
                    totals.lr,
                );
                g.fill(0.0);
            }
            // The rows used are zeroed for the next backward, which writes only the rows it touches.
            if let Some(p) = sparse {
                for &r in &touched {
                    acc.grads[p].index_axis_mut(Axis(0), r as usize).fill(0.0);
                }
                acc.touched.clear();
                for other in rest.iter_mut().filter(|w| w.rows > 0) {
                    for &r in &other.touched {
                        other.grads[p].index_axis_mut(Axis(0), r as usize).fill(0.0);
                    }
                    other.touched.clear();
                }
            }
            progress.advance(1);
        }
        Ok(())
    }

    /// A batch-level loss: gathers the workers' logits (and, for embedding terms, their embeddings)
    /// into one batch, evaluates the loss once, hands each worker its rows' gradients and runs the
    /// backward passes. Returns each feature or relation term's value (a mean over the batch).
    fn batch_level(&mut self, loss: &dyn Loss, idx: &[usize], scale: f32, chunk: usize) -> Vec<f64> {
        let k = self.student.num_classes();
        if self.batch_logits.nrows() < idx.len() {
            self.batch_logits = Array2::zeros((idx.len(), k));
            self.batch_grad = Array2::zeros((idx.len(), k));
        }
        for (w, ws) in self.spaces.iter().enumerate() {
            let lo = (w * chunk).min(idx.len());
            self.batch_logits.slice_mut(s![lo..lo + ws.rows, ..]).assign(&ws.logits.slice(s![..ws.rows, ..]));
        }
        let n = idx.len();
        let mut total =
            loss.eval(self.batch_logits.slice(s![..n, ..]), idx, scale, self.batch_grad.slice_mut(s![..n, ..]));
        let mut terms = Vec::new();
        let taps = loss.taps();
        if !taps.is_empty() {
            terms = self.tap_terms(loss, &taps, idx, chunk);
            total += terms.iter().sum::<f64>();
        }
        let student = self.student.as_ref();
        let grad = &self.batch_grad;
        self.spaces.par_iter_mut().enumerate().for_each(|(w, ws)| {
            let lo = (w * chunk).min(idx.len());
            ws.loss = if w == 0 { total } else { 0.0 };
            if ws.rows > 0 {
                ws.grad_logits.slice_mut(s![..ws.rows, ..]).assign(&grad.slice(s![lo..lo + ws.rows, ..]));
                student.backward(ws);
            }
        });
        terms.iter().map(|v| v / n as f64).collect()
    }

    /// Gathers the batch's values at each of `taps`, evaluates the loss's terms on them and hands each
    /// worker its rows' gradients (in `Workspace::grad_taps`); returns the terms as
    /// [`Loss::eval_taps`] gives them.
    fn tap_terms(&mut self, loss: &dyn Loss, taps: &[Tap], idx: &[usize], chunk: usize) -> Vec<f64> {
        let student = self.student.as_ref();
        let n = idx.len();
        let widths: Vec<usize> = taps.iter().map(|&t| student.tap_shape(t).map_or(0, |s| s.iter().product())).collect();
        let mut values: Vec<Array2<f32>> = widths.iter().map(|&w| Array2::zeros((n, w))).collect();
        for (w, ws) in self.spaces.iter().enumerate().filter(|(_, ws)| ws.rows > 0) {
            let lo = (w * chunk).min(n);
            for (&tap, v) in taps.iter().zip(values.iter_mut()) {
                student.read_tap(ws, tap, v.slice_mut(s![lo..lo + ws.rows, ..]));
            }
        }
        let mut grads: Vec<Array2<f32>> = widths.iter().map(|&w| Array2::zeros((n, w))).collect();
        let views: Vec<ArrayView2<f32>> = values.iter().map(|v| v.view()).collect();
        let mut grad_views: Vec<ArrayViewMut2<f32>> = grads.iter_mut().map(|g| g.view_mut()).collect();
        let value = loss.eval_taps(&views, idx, &mut grad_views, &self.aux, &mut self.aux_grads);
        for (w, ws) in self.spaces.iter_mut().enumerate() {
            let lo = (w * chunk).min(n);
            let cap = ws.logits.nrows();
            ws.grad_taps.retain(|(t, _)| taps.contains(t));
            for ((&tap, &width), g) in taps.iter().zip(&widths).zip(&grads) {
                let slot = match ws.grad_taps.iter().position(|(t, a)| *t == tap && a.ncols() == width) {
                    Some(i) => i,
                    None => {
                        ws.grad_taps.retain(|(t, _)| *t != tap);
                        ws.grad_taps.push((tap, Array2::zeros((cap, width))));
                        ws.grad_taps.len() - 1
                    }
                };
                ws.grad_taps[slot].1.slice_mut(s![..ws.rows, ..]).assign(&g.slice(s![lo..lo + ws.rows, ..]));
            }
        }
        value
    }
}

/// Scales `grads` so their global L2 norm is at most `max_norm`. The squares are summed over the
/// matrices (in parallel) and then over the vectors, in parameter order. A sparse parameter `(index,
/// rows)` is zero outside its rows, which alone are summed and scaled.
fn clip(grads: &mut [ArrayD<f32>], max_norm: f32, sparse: Option<(usize, &[u32])>) {
    let sq = |g: &ArrayD<f32>| -> f64 {
        if g.ndim() >= 2 {
            g.par_iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>()
        } else {
            g.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>()
        }
    };
    let rows_sq = |g: &ArrayD<f32>, rows: &[u32]| -> f64 {
        rows.iter()
            .map(|&r| g.index_axis(Axis(0), r as usize).iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>())
            .sum()
    };
    let mut matrices = 0f64;
    for (i, g) in grads.iter().enumerate().filter(|(_, g)| g.ndim() >= 2) {
        matrices += match sparse {
            Some((p, rows)) if p == i => rows_sq(g, rows),
            _ => sq(g),
        };
    }
    let vectors: f64 = grads.iter().filter(|g| g.ndim() < 2).map(sq).sum();
    let norm = (matrices + vectors).sqrt() as f32;
    if norm > max_norm {
        let c = max_norm / norm;
        grads.iter_mut().enumerate().for_each(|(i, g)| match sparse {
            Some((p, rows)) if p == i => {
                for &r in rows {
                    g.index_axis_mut(Axis(0), r as usize).mapv_inplace(|v| v * c);
                }
            }
            _ if g.ndim() >= 2 => g.par_mapv_inplace(|v| v * c),
            _ => g.mapv_inplace(|v| v * c),
        });
    }
}
