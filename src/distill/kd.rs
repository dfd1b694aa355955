//! The distillation loss of Hinton, Vinyals and Dean (2015), for each stored form of the teacher's
//! outputs (dense, top-k, sampled), as a batch [`Loss`] built from per-row terms:
//!
//! `alpha * T^2 * KL(p_T(teacher) || p_T(student)) + (1 - alpha) * CE(label, p_1(student))`
//!
//! Its gradient with respect to the student's logits z is
//! `alpha * T * (p_T(z) - p_T(teacher)) + (1 - alpha) * (p_1(z) - onehot(label))`.
//! Rows without a label contribute only the KL term.

use std::path::PathBuf;

use ndarray::{Array2, ArrayView2, ArrayViewMut2, Zip};

use super::{Loss, Objective};
use crate::error::Result;
use crate::soften::{log_softmax_t, softmax_t};
use crate::store::{Outputs, TeacherOutputs};

/// The KD objective: `alpha * T^2 * KL + (1 - alpha) * CE`, at temperature `t`.
#[derive(Debug, Clone)]
pub struct Kd {
    /// Temperature.
    pub t: f32,
    /// Weight of the distillation term.
    pub alpha: f32,
    /// K.
    pub num_classes: usize,
    /// The dataset the rows come from, named in errors.
    pub origin: PathBuf,
}

impl Objective for Kd {
    fn prepare<'a>(&self, rows: &'a TeacherOutputs) -> Result<Box<dyn Loss + 'a>> {
        let labels = rows.label_indices(self.num_classes, &self.origin)?;
        let (t, alpha) = (self.t, self.alpha);
        Ok(match &rows.outputs {
            Outputs::Dense { logits } => {
                let n = rows.len();
                let mut soft = Array2::<f32>::zeros((n, self.num_classes));
                let mut log_soft = Array2::<f32>::zeros((n, self.num_classes));
                Zip::from(soft.rows_mut()).and(log_soft.rows_mut()).and(logits.rows()).par_for_each(
                    |mut p, mut lp, z| {
                        let z = z.to_vec();
                        if let (Some(p), Some(lp)) = (p.as_slice_mut(), lp.as_slice_mut()) {
                            softmax_t(&z, t, p);
                            log_softmax_t(&z, t, lp);
                        }
                    },
                );
                Box::new(DenseKd { soft, log_soft, labels, t, alpha })
            }
            Outputs::TopK { index, logit, logsumexp_t, .. } => {
                let tt = f64::from(t);
                let p = Array2::from_shape_fn(logit.raw_dim(), |(i, j)| {
                    (f64::from(logit[[i, j]]) / tt - logsumexp_t[i]).exp()
                });
                let residual = p.rows().into_iter().map(|r| (1.0 - r.sum()).max(0.0)).collect();
                Box::new(TopKKd { index, p, residual, labels, t, alpha })
            }
            Outputs::Sampled { index } => Box::new(SampledKd { index, labels, t, alpha }),
        })
    }
}

/// Runs `row(i, z, g)` for every row: `i` the row in the window, `z` its logits, `g` its gradient
/// (zeroed first); returns the summed loss.
fn each_row(
    logits: ArrayView2<f32>,
    rows: &[usize],
    mut grad: ArrayViewMut2<f32>,
    mut row: impl FnMut(usize, &[f32], &mut [f32]) -> f64,
) -> f64 {
    let mut loss = 0f64;
    for (r, &i) in rows.iter().enumerate() {
        let z = logits.row(r);
        let mut g = grad.row_mut(r);
        g.fill(0.0);
        if let (Some(z), Some(g)) = (z.as_slice(), g.as_slice_mut()) {
            loss += row(i, z, g);
        }
    }
    loss
}

/// KD against dense soft labels: softmax(logits / T) and its log, `[rows, K]`.
struct DenseKd {
    soft: Array2<f32>,
    log_soft: Array2<f32>,
    labels: Vec<Option<usize>>,
    t: f32,
    alpha: f32,
}

impl Loss for DenseKd {
    fn eval(&self, logits: ArrayView2<f32>, rows: &[usize], scale: f32, grad: ArrayViewMut2<f32>) -> f64 {
        each_row(logits, rows, grad, |i, z, g| {
            let (p, lp) = (self.soft.row(i), self.log_soft.row(i));
            let (p, lp) = (p.as_slice().unwrap_or(&[]), lp.as_slice().unwrap_or(&[]));
            kd_row(z, p, lp, self.labels[i], self.t, self.alpha, scale, g)
        })
    }
}

/// KD against top-k labels: the stored classes, their exact p_T and the residual mass.
struct TopKKd<'a> {
    index: &'a Array2<u32>,
    p: Array2<f64>,
    residual: Vec<f64>,
    labels: Vec<Option<usize>>,
    t: f32,
    alpha: f32,
}

impl Loss for TopKKd<'_> {
    fn eval(&self, logits: ArrayView2<f32>, rows: &[usize], scale: f32, grad: ArrayViewMut2<f32>) -> f64 {
        each_row(logits, rows, grad, |i, z, g| {
            let (idx, p) = (self.index.row(i), self.p.row(i));
            let (idx, p) = (idx.as_slice().unwrap_or(&[]), p.as_slice().unwrap_or(&[]));
            kd_row_topk(z, idx, p, self.residual[i], self.labels[i], self.t, self.alpha, scale, g)
        })
    }
}

/// KD against sampled labels: k classes drawn from the teacher's p_T.
struct SampledKd<'a> {
    index: &'a Array2<u32>,
    labels: Vec<Option<usize>>,
    t: f32,
    alpha: f32,
}

impl Loss for SampledKd<'_> {
    fn eval(&self, logits: ArrayView2<f32>, rows: &[usize], scale: f32, grad: ArrayViewMut2<f32>) -> f64 {
        each_row(logits, rows, grad, |i, z, g| {
            let d = self.index.row(i);
            kd_row_sampled(z, d.as_slice().unwrap_or(&[]), self.labels[i], self.t, self.alpha, scale, g)
        })
    }
}

/// Adds `scale * d loss / d student_logits` to `grad` and returns the row's loss.
///
/// `teacher_soft` is softmax(teacher_logits / T) and `teacher_log_soft` its log (precomputed once per
/// row by the caller). `label` must be `< student.len()`.
#[allow(clippy::too_many_arguments)]
pub fn kd_row(
    student: &[f32],
    teacher_soft: &[f32],
    teacher_log_soft: &[f32],
    label: Option<usize>,
    t: f32,
    alpha: f32,
    scale: f32,
    grad: &mut [f32],
) -> f64 {
    let mut loss = 0f64;
    if alpha > 0.0 {
        let log_q = log_softmax_t64(student, t);
        let mut kl = 0f64;
        let a = f64::from(alpha);
        let tt = f64::from(t);
        for (i, &lq) in log_q.iter().enumerate() {
            let p = f64::from(teacher_soft[i]);
            if p > 0.0 {
                kl += p * (f64::from(teacher_log_soft[i]) - lq);
            }
            grad[i] += scale * (a * tt * (lq.exp() - p)) as f32;
        }
        loss += a * tt * tt * kl;
    }
    loss + ce_row(student, label, alpha, scale, grad)
}

/// log softmax(z / t) in f64.
fn log_softmax_t64(z: &[f32], t: f32) -> Vec<f64> {
    let lse = crate::soften::logsumexp_t(z, t);
    let t = f64::from(t);
    z.iter().map(|&v| f64::from(v) / t - lse).collect()
}

/// The hard-label term `(1 - alpha) * CE(label, p_1(student))`: adds its gradient, returns its value.
pub fn ce_row(student: &[f32], label: Option<usize>, alpha: f32, scale: f32, grad: &mut [f32]) -> f64 {
    let Some(y) = label.filter(|_| alpha < 1.0) else { return 0.0 };
    let log_q = log_softmax_t64(student, 1.0);
    let b = f64::from(1.0 - alpha);
    for (i, lq) in log_q.iter().enumerate() {
        let target = if i == y { 1.0 } else { 0.0 };
        grad[i] += scale * (b * (lq.exp() - target)) as f32;
    }
    -b * log_q[y]
}

/// Top-k distillation: KL between the teacher's distribution over the k stored classes plus one residual
/// bucket (the rest of its mass, `residual`) and the student's over the same buckets. The student's
/// probabilities come from its log-softmax over ALL classes (gathered at `index`), never a softmax over
/// the k alone. `p` are the teacher's p_T at `index` (exact: the stored normaliser covers all classes).
/// Gradient: `alpha * T * (q - target)`, target = p on the stored classes and the residual spread over
/// the others in proportion to the student's own probabilities.
#[allow(clippy::too_many_arguments)]
pub fn kd_row_topk(
    student: &[f32],
    index: &[u32],
    p: &[f64],
    residual: f64,
    label: Option<usize>,
    t: f32,
    alpha: f32,
    scale: f32,
    grad: &mut [f32],
) -> f64 {
    let mut loss = 0f64;
    if alpha > 0.0 {
        let log_q = log_softmax_t64(student, t);
        let (a, tt) = (f64::from(alpha), f64::from(t));
        let mut stored = vec![false; student.len()];
        let mut kl = 0f64;
        for (&i, &pi) in index.iter().zip(p) {
            let i = i as usize;
            stored[i] = true;
            if pi > 0.0 {
                kl += pi * (pi.ln() - log_q[i]);
            }
            grad[i] -= scale * (a * tt * pi) as f32;
        }
        // The residual bucket: log q_R = logsumexp of log q over the classes not stored.
        let rest_max = log_q.iter().zip(&stored).filter(|(_, &s)| !s).fold(f64::NEG_INFINITY, |m, (&v, _)| m.max(v));
        let log_q_rest = if rest_max.is_finite() {
            rest_max
                + log_q.iter().zip(&stored).filter(|(_, &s)| !s).map(|(&v, _)| (v - rest_max).exp()).sum::<f64>().ln()
        } else {
            f64::NEG_INFINITY
        };
        let r = residual.max(0.0);
        if r > 0.0 && log_q_rest.is_finite() {
            kl += r * (r.ln() - log_q_rest);
        }
        for (j, &lq) in log_q.iter().enumerate() {
            let mut g = lq.exp();
            if !stored[j] && log_q_rest.is_finite() {
                g -= r * (lq - log_q_rest).exp();
            }
            grad[j] += scale * (a * tt * g) as f32;
        }
        loss += a * tt * tt * kl;
    }
    loss + ce_row(student, label, alpha, scale, grad)
}

/// Sampled distillation (Anshumann et al. 2025): with `draws` drawn from the teacher's p_T, the mean of
/// -log q_T(draw) is an unbiased estimate of the cross-entropy H(p_T, q_T), which differs from the KL by
/// the teacher's entropy, a constant. Gradient: `alpha * T * (q - counts / k)`. Returns
/// `alpha * T^2 * estimate` plus the hard-label term.
#[allow(clippy::too_many_arguments)]
pub fn kd_row_sampled(
    student: &[f32],
    draws: &[u32],
    label: Option<usize>,
    t: f32,
    alpha: f32,
    scale: f32,
    grad: &mut [f32],
) -> f64 {
    let mut loss = 0f64;
    if alpha > 0.0 && !draws.is_empty() {
        let log_q = log_softmax_t64(student, t);
        let (a, tt) = (f64::from(alpha), f64::from(t));
        let w = 1.0 / draws.len() as f64;
        let mut ce = 0f64;
        for &d in draws {
            ce -= w * log_q[d as usize];
            grad[d as usize] -= scale * (a * tt * w) as f32;
        }
        for (j, &lq) in log_q.iter().enumerate() {
            grad[j] += scale * (a * tt * lq.exp()) as f32;
        }
        loss += a * tt * tt * ce;
    }
    loss + ce_row(student, label, alpha, scale, grad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::soften::{log_softmax_t, softmax_t};

    fn loss_only(z: &[f32], teacher: &[f32], label: Option<usize>, t: f32, alpha: f32) -> f64 {
        let mut p = vec![0f32; z.len()];
        let mut lp = vec![0f32; z.len()];
        softmax_t(teacher, t, &mut p);
        log_softmax_t(teacher, t, &mut lp);
        let mut g = vec![0f32; z.len()];
        kd_row(z, &p, &lp, label, t, alpha, 1.0, &mut g)
    }

    #[test]
    fn gradient_matches_central_finite_differences() {
        // Large teacher logits as real teachers produce them (spread ~130), several T and alpha.
        let teacher = [60.0f32, -70.0, 10.0, 3.0, -1.0];
        let z = [0.3f32, -1.2, 2.0, 0.1, -0.4];
        for &(t, alpha, label) in
            &[(1.0f32, 0.5f32, Some(2usize)), (4.0, 0.9, Some(0)), (20.0, 1.0, None), (2.0, 0.0, Some(4))]
        {
            let mut p = vec![0f32; 5];
            let mut lp = vec![0f32; 5];
            softmax_t(&teacher, t, &mut p);
            log_softmax_t(&teacher, t, &mut lp);
            let mut g = vec![0f32; 5];
            kd_row(&z, &p, &lp, label, t, alpha, 1.0, &mut g);
            for i in 0..5 {
                let h = 1e-2f32;
                let mut zp = z;
                zp[i] += h;
                let mut zm = z;
                zm[i] -= h;
                let fd = (loss_only(&zp, &teacher, label, t, alpha) - loss_only(&zm, &teacher, label, t, alpha))
                    / (2.0 * f64::from(h));
                assert!(
                    (fd - f64::from(g[i])).abs() < 2e-3 * (1.0 + fd.abs()),
                    "t={t} a={alpha} i={i}: fd {fd} vs {}",
                    g[i]
                );
            }
        }
    }

    #[test]
    fn matches_pytorch_reference() {
        // PyTorch 2.15:
        //   z = torch.tensor([[1., 2., 0.5]]); zt = torch.tensor([[3., 0., -1.]]); T = 2.; a = .7
        //   kl = F.kl_div(F.log_softmax(z/T, 1), F.log_softmax(zt/T, 1), log_target=True, reduction='batchmean')
        //   a * T * T * kl + (1 - a) * F.cross_entropy(z, torch.tensor([1]))  -> 1.322694
        let l = loss_only(&[1.0, 2.0, 0.5], &[3.0, 0.0, -1.0], Some(1), 2.0, 0.7);
        assert!((l - 1.322694).abs() < 1e-5, "{l}");
    }

    #[test]
    fn zero_kl_when_student_equals_teacher() {
        let z = [1.0f32, -3.0, 0.25];
        let l = loss_only(&z, &z, None, 3.0, 1.0);
        // Targets are stored as f32, so log p carries ~1e-7 relative rounding, times T^2 = 9.
        assert!(l.abs() < 1e-6, "{l}");
    }

    /// Central finite differences of `f` at `z`, against the gradient `g` it reports.
    fn check_grad(z: &[f32], f: &dyn Fn(&[f32], &mut [f32]) -> f64) {
        let mut g = vec![0f32; z.len()];
        f(z, &mut g);
        for i in 0..z.len() {
            let h = 1e-2f32;
            let (mut zp, mut zm) = (z.to_vec(), z.to_vec());
            zp[i] += h;
            zm[i] -= h;
            let mut scratch = vec![0f32; z.len()];
            let fd = (f(&zp, &mut scratch) - f(&zm, &mut scratch)) / (2.0 * f64::from(h));
            assert!((fd - f64::from(g[i])).abs() < 2e-3 * (1.0 + fd.abs()), "class {i}: fd {fd} vs {}", g[i]);
        }
    }

    #[test]
    fn topk_and_sampled_gradients_match_finite_differences() {
        let z = [0.3f32, -1.2, 2.0, 0.1, -0.4, 1.1];
        let teacher = [4.0f32, -3.0, 1.0, 2.5, -1.0, 0.0];
        let t = 2.0;
        let lse = crate::soften::logsumexp_t(&teacher, t);
        let index = crate::soften::top_k(&teacher, 3);
        let p: Vec<f64> = index.iter().map(|&i| (f64::from(teacher[i as usize]) / f64::from(t) - lse).exp()).collect();
        let residual = 1.0 - p.iter().sum::<f64>();
        check_grad(&z, &|z, g| kd_row_topk(z, &index, &p, residual, Some(1), t, 0.8, 1.0, g));
        let draws = crate::soften::sample_classes(&teacher, t, 7, 3, 11);
        check_grad(&z, &|z, g| kd_row_sampled(z, &draws, Some(2), t, 0.6, 1.0, g));
    }

    #[test]
    fn topk_with_all_classes_equals_the_dense_loss() {
        // k = K: no residual, the top-k KL is the dense KL.
        let z = [0.3f32, -1.2, 2.0, 0.1];
        let teacher = [1.0f32, -2.0, 3.5, 0.0];
        let t = 3.0;
        let dense = loss_only(&z, &teacher, Some(0), t, 0.7);
        let lse = crate::soften::logsumexp_t(&teacher, t);
        let index = crate::soften::top_k(&teacher, 4);
        let p: Vec<f64> = index.iter().map(|&i| (f64::from(teacher[i as usize]) / f64::from(t) - lse).exp()).collect();
        let mut g = vec![0f32; 4];
        let topk = kd_row_topk(&z, &index, &p, 0.0, Some(0), t, 0.7, 1.0, &mut g);
        // The dense path's targets are f32-rounded (~1e-7 relative), times T^2 = 9.
        assert!((dense - topk).abs() < 1e-6, "{dense} vs {topk}");
    }

    #[test]
    fn sampled_loss_is_unbiased_for_the_cross_entropy() {
        // Mean over many rows' draws of the estimate -> H(p, q) = KL(p||q) + H(p) (f64 reference).
        let z = [0.5f32, -0.5, 1.5, 0.0];
        let teacher = [2.0f32, 0.0, -1.0, 1.0];
        let t = 2.0;
        let mut p = [0f32; 4];
        softmax_t(&teacher, t, &mut p);
        let log_q = log_softmax_t64(&z, t);
        let h_pq: f64 = p.iter().zip(&log_q).map(|(&pi, lq)| -f64::from(pi) * lq).sum();
        let n = 20_000;
        let mut mean = 0f64;
        for id in 0..n {
            let d = crate::soften::sample_classes(&teacher, t, 5, 9, id);
            let mut g = vec![0f32; 4];
            mean += kd_row_sampled(&z, &d, None, t, 1.0, 1.0, &mut g) / (f64::from(t) * f64::from(t)) / n as f64;
        }
        assert!((mean - h_pq).abs() < 0.01, "{mean} vs {h_pq}");
    }
}
