//! The distillation loss of Hinton, Vinyals and Dean (2015), one row at a time:
//!
//! `alpha * T^2 * KL(p_T(teacher) || p_T(student)) + (1 - alpha) * CE(label, p_1(student))`
//!
//! Its gradient with respect to the student's logits z is
//! `alpha * T * (p_T(z) - p_T(teacher)) + (1 - alpha) * (p_1(z) - onehot(label))`.
//! Rows without a label contribute only the KL term.

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
    let k = student.len();
    let mut loss = 0f64;
    if alpha > 0.0 {
        // log p_T(student), stable: subtract the max before exp.
        let inv_t = 1.0 / f64::from(t);
        let max = student.iter().fold(f64::NEG_INFINITY, |m, &z| m.max(f64::from(z) * inv_t));
        let sum: f64 = student.iter().map(|&z| (f64::from(z) * inv_t - max).exp()).sum();
        let lse = max + sum.ln();
        let mut kl = 0f64;
        let a = f64::from(alpha);
        let tt = f64::from(t);
        for i in 0..k {
            let log_q = f64::from(student[i]) * inv_t - lse;
            let p = f64::from(teacher_soft[i]);
            if p > 0.0 {
                kl += p * (f64::from(teacher_log_soft[i]) - log_q);
            }
            grad[i] += scale * (a * tt * (log_q.exp() - p)) as f32;
        }
        loss += a * tt * tt * kl;
    }
    if alpha < 1.0 {
        if let Some(y) = label {
            let max = student.iter().fold(f32::NEG_INFINITY, |m, &z| m.max(z));
            let sum: f64 = student.iter().map(|&z| f64::from(z - max).exp()).sum();
            let lse = f64::from(max) + sum.ln();
            let b = f64::from(1.0 - alpha);
            for i in 0..k {
                let q = (f64::from(student[i]) - lse).exp();
                let target = if i == y { 1.0 } else { 0.0 };
                grad[i] += scale * (b * (q - target)) as f32;
            }
            loss += b * (lse - f64::from(student[y]));
        }
    }
    loss
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
}
