//! The other logit losses against dense soft labels, each in place of the KL of Hinton et al.'s loss:
//!
//! `alpha * T^2 * D(p_T(teacher), q_T(student)) + (1 - alpha) * CE(label, q_1(student))`
//!
//! - `dkd`: decoupled KD (Zhao et al. 2022, mdistiller's `dkd_loss`): with the row's hard label t,
//!   D = a * KL([p_t, 1 - p_t] || [q_t, 1 - q_t]) + b * KL(p over the other classes, renormalised ||
//!   q over them): the target-class and the non-target parts, weighted `--dkd-alpha` (a) and
//!   `--dkd-beta` (b). A row without a label uses the teacher's top class as t.
//! - `jsd`: the Jensen-Shannon divergence (p and q against their mean m).
//! - `tvd`: the total variation distance, half the L1 distance (its subgradient: sign).
//! - `reverse-kl`: KL(q || p), mode-seeking.
//!
//! Gradients are analytic; every one is checked by central finite differences and against PyTorch
//! 2.15's autograd on the same row (tests below).

use ndarray::{Array2, ArrayView2, ArrayViewMut2};

use super::kd::ce_row;
use super::{Loss, Objective};
use crate::error::{Error, Result};
use crate::soften::softmax_t;
use crate::store::{Outputs, TeacherOutputs};

/// Which divergence replaces the KL.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind", deny_unknown_fields)]
pub enum Divergence {
    /// Decoupled KD, with the weights of its target-class and non-target parts.
    Dkd {
        /// Weight of the target-class part (TCKD).
        alpha: f32,
        /// Weight of the non-target part (NCKD).
        beta: f32,
    },
    /// Jensen-Shannon divergence.
    Jsd,
    /// Total variation distance.
    Tvd,
    /// KL(student || teacher).
    ReverseKl,
}

/// The objective: `alpha * T^2 * D + (1 - alpha) * CE`, for dense labels.
#[derive(Debug, Clone)]
pub struct LogitLoss {
    /// The divergence.
    pub divergence: Divergence,
    /// Temperature.
    pub t: f32,
    /// Weight of the divergence term.
    pub alpha: f32,
    /// K.
    pub num_classes: usize,
    /// The dataset, named in errors.
    pub origin: std::path::PathBuf,
}

impl Objective for LogitLoss {
    fn prepare<'a>(&self, rows: &'a TeacherOutputs) -> Result<Box<dyn Loss + 'a>> {
        let labels = rows.label_indices(self.num_classes, &self.origin)?;
        if let (Outputs::TopK { index, logit, logsumexp_t, label_logit }, Divergence::Dkd { .. }) =
            (&rows.outputs, self.divergence)
        {
            let (stored, labels) = ((index, logit, logsumexp_t.as_slice()), labels);
            return Ok(Box::new(self.prepare_topk_dkd(stored, label_logit.as_deref(), labels, &rows.ids)?));
        }
        let Outputs::Dense { logits } = &rows.outputs else {
            return Err(Error::dataset(
                &self.origin,
                "this loss needs the teacher's whole distribution: dense labels (top-k and sampled labels hold part \
                 of it; dkd also takes top-k labels)",
            ));
        };
        let mut p = Array2::<f64>::zeros(logits.raw_dim());
        let mut row = vec![0f32; self.num_classes];
        for (i, z) in logits.outer_iter().enumerate() {
            softmax_t(z.as_slice().unwrap_or(&z.to_vec()), self.t, &mut row);
            p.row_mut(i).iter_mut().zip(&row).for_each(|(d, &s)| *d = f64::from(s));
        }
        Ok(Box::new(Prepared { p, labels, loss: self.clone() }))
    }
}

impl LogitLoss {
    /// DKD's targets from top-k labels: the k stored classes' probabilities, the target class's (from
    /// `label_logit` when it is outside the top k) and the mass of the classes in neither.
    fn prepare_topk_dkd(
        &self,
        (index, logit, lse): (&Array2<u32>, &Array2<f32>, &[f64]),
        label_logit: Option<&[f32]>,
        labels: Vec<Option<usize>>,
        ids: &[u64],
    ) -> Result<TopKDkd> {
        let tt = f64::from(self.t);
        let p = Array2::from_shape_fn(logit.raw_dim(), |(i, j)| (f64::from(logit[[i, j]]) / tt - lse[i]).exp());
        let (mut target, mut pt, mut rest) = (Vec::new(), Vec::new(), Vec::new());
        for (i, label) in labels.iter().enumerate() {
            // A row without a label: the teacher's top class (as dense DKD does).
            let t = label.unwrap_or(index[[i, 0]] as usize);
            let p_t = match index.row(i).iter().position(|&c| c as usize == t) {
                Some(j) => p[[i, j]],
                None => match label_logit.map(|v| v[i]).filter(|v| !v.is_nan()) {
                    Some(z) => (f64::from(z) / tt - lse[i]).exp(),
                    None => {
                        return Err(Error::dataset(
                            &self.origin,
                            format!(
                                "row id {}: its label {t} is outside the top k, and these labels do not store its \
                                 logit (label_logit, schema 2.11): dkd needs it; make the labels again with this \
                                 softlabel, or use dense labels",
                                ids[i]
                            ),
                        ))
                    }
                },
            };
            let stored: f64 = p.row(i).sum() + if index.row(i).iter().any(|&c| c as usize == t) { 0.0 } else { p_t };
            target.push(t);
            pt.push(p_t);
            rest.push((1.0 - stored).max(0.0));
        }
        Ok(TopKDkd { index: index.clone(), p, target, pt, rest, labels, loss: self.clone() })
    }
}

/// DKD against top-k labels (prepared by [`LogitLoss::prepare_topk_dkd`]).
struct TopKDkd {
    index: Array2<u32>,
    p: Array2<f64>,
    target: Vec<usize>,
    pt: Vec<f64>,
    rest: Vec<f64>,
    labels: Vec<Option<usize>>,
    loss: LogitLoss,
}

impl Loss for TopKDkd {
    fn eval(&self, logits: ArrayView2<f32>, rows: &[usize], scale: f32, mut grad: ArrayViewMut2<f32>) -> f64 {
        let Divergence::Dkd { alpha: wa, beta: wb } = self.loss.divergence else { return 0.0 };
        let mut total = 0f64;
        for (r, &i) in rows.iter().enumerate() {
            let z = logits.row(r).to_vec();
            let mut g = vec![0f32; z.len()];
            let classes: Vec<usize> = self.index.row(i).iter().map(|&c| c as usize).collect();
            let p = self.p.row(i).to_vec();
            let teacher =
                TopKTeacher { classes: &classes, p: &p, target: self.target[i], pt: self.pt[i], rest: self.rest[i] };
            let l = &self.loss;
            total += dkd_topk_row(&z, &teacher, (wa, wb), l.t, l.alpha, scale, &mut g);
            total += ce_row(&z, self.labels[i], l.alpha, scale, &mut g);
            grad.row_mut(r).iter_mut().zip(&g).for_each(|(o, &v)| *o = v);
        }
        total
    }
}

/// One row's top-k teacher for DKD: the stored classes and their p_T, the target class, its p_T and
/// the mass of the classes neither stored nor the target.
pub struct TopKTeacher<'a> {
    /// The stored classes.
    pub classes: &'a [usize],
    /// Their probabilities at T.
    pub p: &'a [f64],
    /// The target class.
    pub target: usize,
    /// Its probability at T.
    pub pt: f64,
    /// The rest's mass.
    pub rest: f64,
}

/// DKD's target-class part for one row: `KL([pt, 1 - pt] || [qt, 1 - qt])`, its gradient (times `wa`,
/// over z / T) added into `dz`.
fn tckd(pt: f64, q: &[f64], target: usize, wa: f32, tt: f64, dz: &mut [f64]) -> f64 {
    let qt = q[target];
    let kl2 = |a: f64, b: f64| if a > 0.0 { a * (a / b).ln() } else { 0.0 };
    let factor = if qt < 1.0 { (qt - pt) / (1.0 - qt) } else { 0.0 };
    for (j, d) in dz.iter_mut().enumerate() {
        *d += f64::from(wa) * factor * (f64::from(u8::from(j == target)) - q[j]) / tt;
    }
    kl2(pt, qt) + kl2(1.0 - pt, 1.0 - qt)
}

/// `alpha * T^2 * DKD` for one row against a top-k teacher: the target-class part is exact (the
/// target's probability is known); the non-target part is the KL between the renormalised non-target
/// distributions over the buckets {each stored class but the target} and {the rest}, as top-k KD
/// buckets the residual. With every class stored it is dense DKD. Adds `scale * d/dz` to `grad`.
pub fn dkd_topk_row(
    z: &[f32],
    teacher: &TopKTeacher,
    (wa, wb): (f32, f32),
    t: f32,
    alpha: f32,
    scale: f32,
    grad: &mut [f32],
) -> f64 {
    scaled_row(z, t, alpha, scale, grad, |_, q| {
        let mut dz = vec![0f64; q.len()];
        (dkd(q, teacher, (wa, wb), f64::from(t), &mut dz), dz)
    })
}

/// `alpha * T^2 * D` for one row of student logits `z`: `divergence(log q_T, q_T)` gives D and
/// d D / dz; adds `scale * alpha * T^2 * d D / dz` to `grad` and returns the scaled value.
fn scaled_row(
    z: &[f32],
    t: f32,
    alpha: f32,
    scale: f32,
    grad: &mut [f32],
    divergence: impl FnOnce(&[f64], &[f64]) -> (f64, Vec<f64>),
) -> f64 {
    if alpha <= 0.0 {
        return 0.0;
    }
    let (a, tt) = (f64::from(alpha), f64::from(t));
    let lse = crate::soften::logsumexp_t(z, t);
    let log_q: Vec<f64> = z.iter().map(|&v| f64::from(v) / tt - lse).collect();
    let q: Vec<f64> = log_q.iter().map(|v| v.exp()).collect();
    let (value, dz) = divergence(&log_q, &q);
    for (g, d) in grad.iter_mut().zip(&dz) {
        *g += scale * (a * tt * tt * d) as f32;
    }
    a * tt * tt * value
}

/// DKD (unscaled by alpha T^2) of the student's `q` (at T) against `teacher`; d / d(z / T) into `dz`.
/// The non-target part's buckets: each stored class but the target, and the rest (empty for dense
/// labels).
fn dkd(q: &[f64], teacher: &TopKTeacher, (wa, wb): (f32, f32), tt: f64, dz: &mut [f64]) -> f64 {
    let target = teacher.target;
    let mut value = f64::from(wa) * tckd(teacher.pt, q, target, wa, tt, dz);
    let (rest_p, rest_q) = (1.0 - teacher.pt, 1.0 - q[target]);
    if rest_p > 0.0 && rest_q > 0.0 {
        let mut in_bucket = vec![false; q.len()];
        in_bucket[target] = true;
        let mut nckd = 0f64;
        for (&c, &pc) in teacher.classes.iter().zip(teacher.p).filter(|(&c, _)| c != target) {
            in_bucket[c] = true;
            let (ph, qh) = (pc / rest_p, q[c] / rest_q);
            if ph > 0.0 {
                nckd += ph * (ph / qh).ln();
            }
            dz[c] += f64::from(wb) * (qh - ph) / tt;
        }
        // The rest bucket: its share of the teacher's mass goes to its classes in the student's proportions.
        let q_rest: f64 = (0..q.len()).filter(|&j| !in_bucket[j]).map(|j| q[j]).sum::<f64>() / rest_q;
        let p_rest = teacher.rest / rest_p;
        if p_rest > 0.0 && q_rest > 0.0 {
            nckd += p_rest * (p_rest / q_rest).ln();
        }
        for j in (0..q.len()).filter(|&j| !in_bucket[j]) {
            let qh = q[j] / rest_q;
            let share = if q_rest > 0.0 { p_rest * qh / q_rest } else { 0.0 };
            dz[j] += f64::from(wb) * (qh - share) / tt;
        }
        value += f64::from(wb) * nckd;
    }
    value
}

struct Prepared {
    p: Array2<f64>,
    labels: Vec<Option<usize>>,
    loss: LogitLoss,
}

impl Loss for Prepared {
    fn eval(&self, logits: ArrayView2<f32>, rows: &[usize], scale: f32, mut grad: ArrayViewMut2<f32>) -> f64 {
        let mut total = 0f64;
        for (r, &i) in rows.iter().enumerate() {
            let z = logits.row(r);
            let z = z.as_slice().map(<[f32]>::to_vec).unwrap_or_else(|| z.to_vec());
            let p = self.p.row(i);
            let p = p.as_slice().map(<[f64]>::to_vec).unwrap_or_else(|| p.to_vec());
            let mut g = vec![0f32; z.len()];
            let l = &self.loss;
            total += divergence_row(&z, &p, self.labels[i], l.divergence, l.t, l.alpha, scale, &mut g);
            total += ce_row(&z, self.labels[i], l.alpha, scale, &mut g);
            grad.row_mut(r).iter_mut().zip(&g).for_each(|(o, &v)| *o = v);
        }
        total
    }
}

/// `alpha * T^2 * D(p, q_T(z))` for one row; adds `scale * d/dz` to `grad` and returns the value.
#[allow(clippy::too_many_arguments)]
pub fn divergence_row(
    z: &[f32],
    p: &[f64],
    label: Option<usize>,
    divergence: Divergence,
    t: f32,
    alpha: f32,
    scale: f32,
    grad: &mut [f32],
) -> f64 {
    scaled_row(z, t, alpha, scale, grad, |log_q, q| divergence_of(p, label, divergence, f64::from(t), log_q, q))
}

/// D(p, q) and d D / dz for one row, `log_q` and `q` the student's at T.
fn divergence_of(
    p: &[f64],
    label: Option<usize>,
    divergence: Divergence,
    tt: f64,
    log_q: &[f64],
    q: &[f64],
) -> (f64, Vec<f64>) {
    // d/dz_k of a function of q with d/dq_j = g_j: (q_k / T) (g_k - sum_j g_j q_j).
    let through_softmax = |dq: &[f64]| -> Vec<f64> {
        let mean: f64 = dq.iter().zip(q).map(|(g, q)| g * q).sum();
        q.iter().zip(dq).map(|(&qk, &gk)| qk / tt * (gk - mean)).collect()
    };
    match divergence {
        Divergence::Jsd => {
            let (mut v, mut dq) = (0f64, vec![0f64; q.len()]);
            for j in 0..q.len() {
                let m = 0.5 * (p[j] + q[j]);
                if p[j] > 0.0 {
                    v += 0.5 * p[j] * (p[j] / m).ln();
                }
                if q[j] > 0.0 {
                    v += 0.5 * q[j] * (q[j] / m).ln();
                    dq[j] = 0.5 * (q[j] / m).ln();
                }
            }
            (v, through_softmax(&dq))
        }
        Divergence::Tvd => {
            let v = 0.5 * p.iter().zip(q).map(|(p, q)| (p - q).abs()).sum::<f64>();
            let dq: Vec<f64> =
                p.iter().zip(q).map(|(p, q)| 0.5 * (q - p).signum() * f64::from(u8::from(q != p))).collect();
            (v, through_softmax(&dq))
        }
        Divergence::ReverseKl => {
            let lp: Vec<f64> = p.iter().map(|&p| p.max(1e-300).ln()).collect();
            let v = q.iter().zip(log_q).zip(&lp).map(|((q, lq), lp)| q * (lq - lp)).sum();
            let dq: Vec<f64> = log_q.iter().zip(&lp).map(|(lq, lp)| lq - lp).collect();
            (v, through_softmax(&dq))
        }
        Divergence::Dkd { alpha: wa, beta: wb } => {
            let target = label
                .unwrap_or_else(|| p.iter().enumerate().fold(0, |best, (j, &v)| if v > p[best] { j } else { best }));
            // Every class stored, nothing in the rest bucket.
            let classes: Vec<usize> = (0..q.len()).collect();
            let teacher = TopKTeacher { classes: &classes, p, target, pt: p[target], rest: 0.0 };
            let mut dz = vec![0f64; q.len()];
            (dkd(q, &teacher, (wa, wb), tt, &mut dz), dz)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const Z: [f32; 5] = [0.3, -1.2, 2.0, 0.1, -0.4];
    const TEACHER: [f32; 5] = [6.0, -7.0, 1.0, 3.0, -1.0];

    fn teacher_p(t: f32) -> Vec<f64> {
        let mut p = vec![0f32; 5];
        softmax_t(&TEACHER, t, &mut p);
        p.iter().map(|&v| f64::from(v)).collect()
    }

    fn value_and_grad(z: &[f32], label: Option<usize>, d: Divergence) -> (f64, Vec<f32>) {
        let mut g = vec![0f32; 5];
        let v = divergence_row(z, &teacher_p(2.0), label, d, 2.0, 1.0, 1.0, &mut g);
        (v, g)
    }

    /// PyTorch 2.15, float64, T = 2, alpha 1 (the divergence term alone), autograd for the gradient:
    ///
    /// ```python
    /// z = torch.tensor([[0.3, -1.2, 2.0, 0.1, -0.4]], dtype=torch.float64, requires_grad=True)
    /// zt = torch.tensor([[6.0, -7.0, 1.0, 3.0, -1.0]], dtype=torch.float64); T = 2.0
    /// q, p = F.softmax(z / T, 1), F.softmax(zt / T, 1); m = (p + q) / 2
    /// jsd = T**2 * 0.5 * ((p * (p / m).log()).sum() + (q * (q / m).log()).sum())
    /// tvd = T**2 * 0.5 * (p - q).abs().sum();  rkl = T**2 * (q * (q.log() - p.log())).sum()
    /// # dkd: mdistiller's dkd_loss(z, zt, y, alpha=1.0, beta=8.0, temperature=2.0) for one row
    /// ```
    #[test]
    fn values_and_gradients_equal_pytorch() {
        let cases: [(Divergence, Option<usize>, f64, [f64; 5]); 5] = [
            (
                Divergence::Jsd,
                Some(0),
                0.8717467951258324,
                [-0.2077836861, 0.041916913, 0.1557445978, -0.0332513145, 0.0433734899],
            ),
            (
                Divergence::Tvd,
                Some(0),
                2.2541722627501075,
                [-0.2392876823, 0.0612240267, 0.3032445892, -0.2165164486, 0.0913355151],
            ),
            (
                Divergence::ReverseKl,
                Some(0),
                4.758968150783278,
                [-0.9553583703, 0.5506899245, 0.6561612234, -0.3971330011, 0.1456402236],
            ),
            (
                Divergence::Dkd { alpha: 1.0, beta: 8.0 },
                Some(0),
                19.742768985869866,
                [-1.127081374, 1.75834089, 5.1645720915, -7.0914196357, 1.2955880282],
            ),
            (
                Divergence::Dkd { alpha: 1.0, beta: 8.0 },
                Some(2),
                19.544796728171775,
                [-7.799313423, 2.3197094834, 0.7402957191, 1.6351485574, 3.1041596631],
            ),
        ];
        for (d, label, want, want_grad) in cases {
            let (v, g) = value_and_grad(&Z, label, d);
            // The teacher's p_T is rounded to float32 as softlabel stores soft labels: 1e-6 relative.
            assert!((v - want).abs() < 1e-5 * want.abs().max(1.0), "{d:?}: {v} vs {want}");
            for (a, b) in g.iter().zip(want_grad) {
                assert!((f64::from(*a) - b).abs() < 1e-5, "{d:?}: {g:?} vs {want_grad:?}");
            }
        }
    }

    #[test]
    fn gradients_match_central_finite_differences() {
        let divergences = [
            Divergence::Jsd,
            Divergence::ReverseKl,
            Divergence::Dkd { alpha: 1.0, beta: 8.0 },
            Divergence::Dkd { alpha: 0.5, beta: 2.0 },
        ];
        for d in divergences {
            for label in [Some(0), Some(3), None] {
                let (_, g) = value_and_grad(&Z, label, d);
                for k in 0..5 {
                    let h = 1e-2f32;
                    let (mut zp, mut zm) = (Z, Z);
                    zp[k] += h;
                    zm[k] -= h;
                    let fd = (value_and_grad(&zp, label, d).0 - value_and_grad(&zm, label, d).0) / f64::from(2.0 * h);
                    assert!(
                        (fd - f64::from(g[k])).abs() < 2e-3 * fd.abs().max(1.0),
                        "{d:?} {label:?} {k}: fd {fd}, grad {}",
                        g[k]
                    );
                }
            }
        }
    }

    /// DKD on top-k labels: with at most one class in the rest bucket (every class stored, or all but
    /// one with the label's logit beside them) it is dense DKD, which equals mdistiller's `dkd_loss`
    /// (the PyTorch test above); with a larger rest bucket its gradient matches finite differences and
    /// its non-target part is at most dense DKD's (bucketing a distribution never raises a KL).
    #[test]
    fn topk_dkd_is_dense_dkd_when_the_rest_is_one_class() {
        let (wa, wb, t) = (1.0f32, 8.0f32, 2.0f32);
        let p = teacher_p(t);
        // The teacher's classes by descending logit: 0 (6.0), 3 (3.0), 2 (1.0), 4 (-1.0), 1 (-7.0).
        let row = |z: &[f32], classes: &[usize], target: usize, g: &mut [f32]| {
            let pc: Vec<f64> = classes.iter().map(|&c| p[c]).collect();
            let stored: f64 = pc.iter().sum::<f64>() + if classes.contains(&target) { 0.0 } else { p[target] };
            let teacher = TopKTeacher { classes, p: &pc, target, pt: p[target], rest: 1.0 - stored };
            dkd_topk_row(z, &teacher, (wa, wb), t, 1.0, 1.0, g)
        };
        let dkd = Divergence::Dkd { alpha: wa, beta: wb };
        for (classes, target) in [(&[0, 3, 2, 4, 1][..], 3), (&[0, 3, 2][..], 4), (&[0, 3, 2, 4][..], 1)] {
            let (want, want_g) = value_and_grad(&Z, Some(target), dkd);
            let mut g = vec![0f32; 5];
            let v = row(&Z, classes, target, &mut g);
            // teacher_p is float32 softmax: its sum is 1 only within ~1e-7, which the rest bucket
            // (1 - the stored mass) inherits; hence 1e-6 relative, not 1e-9.
            assert!((v - want).abs() < 1e-6 * want.abs().max(1.0), "{classes:?} {target}: {v} vs dense {want}");
            for (a, b) in g.iter().zip(&want_g) {
                assert!((a - b).abs() < 1e-6, "{classes:?} {target}: grad {g:?} vs dense {want_g:?}");
            }
        }
        // Two classes in the rest (1 and 2): finite differences, and no more than dense DKD.
        for (classes, target) in [(&[0, 3][..], 4), (&[0, 3, 4][..], 0)] {
            let mut g = vec![0f32; 5];
            let v = row(&Z, classes, target, &mut g);
            assert!(v <= value_and_grad(&Z, Some(target), dkd).0 + 1e-12);
            for k in 0..5 {
                let h = 1e-2f32;
                let (mut zp, mut zm) = (Z, Z);
                zp[k] += h;
                zm[k] -= h;
                let mut scratch = vec![0f32; 5];
                let fd = (row(&zp, classes, target, &mut scratch) - row(&zm, classes, target, &mut scratch))
                    / f64::from(2.0 * h);
                assert!((fd - f64::from(g[k])).abs() < 2e-3 * fd.abs().max(1.0), "{k}: fd {fd}, grad {}", g[k]);
            }
        }
    }
}
