//! Evaluating a student against hard labels and, when given, the teacher's outputs for the same rows.

use std::collections::HashMap;

use ndarray::{Array2, Axis};
use serde::Serialize;

use crate::data::{Batch, Source};
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::soften::{argmax, kl_t, softmax_t};
use crate::store::TeacherOutputs;
use crate::student::Student;

/// Calibration bins for the expected calibration error (as in Guo et al. 2017).
pub const ECE_BINS: usize = 15;

/// What `eval` reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalReport {
    /// Rows evaluated.
    pub rows: u64,
    /// Rows skipped for NaN or infinite inputs (`--skip-nonfinite`).
    pub skipped_nonfinite_rows: u64,
    /// Rows with a label.
    pub labeled_rows: u64,
    /// Student top-1 accuracy on labeled rows.
    pub accuracy: Option<f64>,
    /// Student errors on labeled rows.
    pub errors: Option<u64>,
    /// Student expected calibration error (15 equal-width confidence bins) on labeled rows.
    pub ece: Option<f64>,
    /// Student mean negative log-likelihood of the labels.
    pub nll: Option<f64>,
    /// Rows that have teacher outputs (matched by id).
    pub teacher_rows: Option<u64>,
    /// Fraction of those rows where student and teacher pick the same class.
    pub teacher_agreement: Option<f64>,
    /// Mean KL(teacher || student) at T = 1, in nats.
    pub kl_to_teacher: Option<f64>,
    /// Teacher top-1 accuracy on labeled rows that have teacher outputs.
    pub teacher_accuracy: Option<f64>,
    /// Teacher errors on those rows.
    pub teacher_errors: Option<u64>,
    /// Teacher expected calibration error on those rows.
    pub teacher_ece: Option<f64>,
    /// Labeled rows per class (empty without labels).
    pub class_rows: Vec<u64>,
    /// Student errors per true class (empty without labels).
    pub class_errors: Vec<u64>,
}

/// Accumulates calibration statistics.
#[derive(Debug, Clone)]
pub struct Calibration {
    count: Vec<u64>,
    conf: Vec<f64>,
    correct: Vec<u64>,
}

impl Default for Calibration {
    fn default() -> Self {
        Calibration { count: vec![0; ECE_BINS], conf: vec![0.0; ECE_BINS], correct: vec![0; ECE_BINS] }
    }
}

impl Calibration {
    /// Adds one prediction with its top-1 probability.
    pub fn add(&mut self, confidence: f64, correct: bool) {
        let b = ((confidence * ECE_BINS as f64).ceil() as usize).clamp(1, ECE_BINS) - 1;
        self.count[b] += 1;
        self.conf[b] += confidence;
        self.correct[b] += u64::from(correct);
    }

    /// sum_b |acc_b - conf_b| * n_b / n.
    pub fn ece(&self) -> Option<f64> {
        let n: u64 = self.count.iter().sum();
        (n > 0).then(|| {
            (0..ECE_BINS)
                .filter(|&b| self.count[b] > 0)
                .map(|b| (self.correct[b] as f64 - self.conf[b]).abs())
                .sum::<f64>()
                / n as f64
        })
    }
}

/// Evaluates `student` on every row of `data`; `teacher` outputs are matched by id.
pub fn evaluate(
    student: &dyn Student,
    data: &dyn Source,
    teacher: Option<&TeacherOutputs>,
    progress: &dyn Progress,
) -> Result<EvalReport> {
    let k = student.num_classes();
    if let Some(logits) = teacher.and_then(TeacherOutputs::dense_logits) {
        if logits.ncols() != k {
            return Err(Error::Config(format!("--labels have {} classes, the student has {k}", logits.ncols())));
        }
    }
    // Sparse labels give the teacher's top class (agreement, accuracy) but not its full distribution.
    let dense = teacher.is_some_and(|t| t.dense_logits().is_some());
    let index: Option<HashMap<u64, usize>> = teacher.map(TeacherOutputs::id_index);
    let (mut rows, mut labeled, mut errors, mut nll, mut skipped) = (0u64, 0u64, 0u64, 0f64, 0u64);
    let (mut t_rows, mut agree, mut kl, mut t_labeled, mut t_errors) = (0u64, 0u64, 0f64, 0u64, 0u64);
    let mut matched = 0u64;
    let mut cal = Calibration::default();
    let mut t_cal = Calibration::default();
    let mut probs = vec![0f32; k];
    let (mut class_rows, mut class_errors) = (vec![0u64; k], vec![0u64; k]);
    progress.begin("eval", Some(data.rows()));
    for batch in data.batches(4096) {
        let batch = batch?;
        let logits = batch_logits(student, data, &batch)?;
        for (i, z) in logits.axis_iter(Axis(0)).enumerate() {
            if batch.nonfinite.binary_search(&i).is_ok() {
                skipped += 1;
                continue;
            }
            let z = z.to_vec();
            let pred = argmax(&z).unwrap_or(0);
            rows += 1;
            if let Some(y) = batch.labels[i] {
                check_label(data, &batch, i, y, k)?;
                labeled += 1;
                class_rows[y as usize] += 1;
                class_errors[y as usize] += u64::from(pred != y as usize);
                softmax_t(&z, 1.0, &mut probs);
                errors += u64::from(pred != y as usize);
                nll -= f64::from(probs[y as usize].max(f32::MIN_POSITIVE)).ln();
                cal.add(f64::from(probs[pred]), pred == y as usize);
            }
            if let (Some(t), Some(ix)) = (teacher, &index) {
                if let Some(&r) = ix.get(&batch.ids[i]) {
                    matched += 1;
                    let Some(tpred) = t.teacher_top1(r) else { continue };
                    t_rows += 1;
                    agree += u64::from(tpred == pred);
                    let tz = t.dense_logits().map(|l| l.row(r).to_vec());
                    if let Some(tz) = &tz {
                        kl += kl_t(tz, &z, 1.0);
                    }
                    if let Some(y) = batch.labels[i] {
                        t_labeled += 1;
                        t_errors += u64::from(tpred != y as usize);
                        if let Some(tz) = &tz {
                            softmax_t(tz, 1.0, &mut probs);
                            t_cal.add(f64::from(probs[tpred]), tpred == y as usize);
                        }
                    }
                }
            }
        }
        progress.advance(batch.len() as u64);
    }
    progress.end();
    if teacher.is_some() && matched == 0 {
        return Err(Error::Config("--labels share no ids with --data: they describe other rows".into()));
    }
    let frac = |a: u64, b: u64| (b > 0).then(|| a as f64 / b as f64);
    Ok(EvalReport {
        rows,
        skipped_nonfinite_rows: skipped,
        labeled_rows: labeled,
        accuracy: frac(labeled - errors, labeled),
        errors: (labeled > 0).then_some(errors),
        ece: cal.ece(),
        nll: (labeled > 0).then(|| nll / labeled as f64),
        teacher_rows: teacher.filter(|_| t_rows > 0).map(|_| t_rows),
        teacher_agreement: teacher.and(frac(agree, t_rows)),
        kl_to_teacher: (dense && t_rows > 0).then(|| kl / t_rows as f64),
        teacher_accuracy: teacher.and(frac(t_labeled - t_errors, t_labeled)),
        teacher_errors: teacher.and((t_labeled > 0).then_some(t_errors)),
        teacher_ece: if dense { t_cal.ece() } else { None },
        class_rows: if labeled > 0 { class_rows } else { Vec::new() },
        class_errors: if labeled > 0 { class_errors } else { Vec::new() },
    })
}

/// The student's logits for a batch of `data`, whose rows must have the student's input width.
fn batch_logits(student: &dyn Student, data: &dyn Source, batch: &Batch) -> Result<Array2<f32>> {
    if batch.width != student.input_width() {
        return Err(Error::data(
            &batch.file,
            format!(
                "column '{}' has {} values per row, the student expects {}",
                data.input_name(),
                batch.width,
                student.input_width()
            ),
        ));
    }
    let x = Array2::from_shape_vec((batch.len(), batch.width), batch.input_f32())
        .map_err(|e| Error::Internal(e.to_string()))?;
    Ok(student.forward(x.view()))
}

/// Refuses a label outside the student's `k` classes, naming the column and row.
fn check_label(data: &dyn Source, batch: &Batch, i: usize, y: i64, k: usize) -> Result<()> {
    if y < 0 || y as usize >= k {
        return Err(Error::data(
            &batch.file,
            format!(
                "column '{}', row {}: label {y} is outside [0, {k})",
                data.label_column().unwrap_or("label"),
                batch.first_row + i as u64
            ),
        ));
    }
    Ok(())
}

/// The result of [`tune_bias`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BiasTuning {
    /// The class whose output bias moves.
    pub class: usize,
    /// The chosen change of its bias.
    pub by: f32,
    /// Labeled rows it was tuned on.
    pub rows: u64,
    /// Errors on those rows before and after.
    pub errors_before: u64,
    /// Errors after the change.
    pub errors_after: u64,
}

/// Finds the change of `class`'s output bias, on the grid `-range..=range` in steps of `step`, that
/// minimises the student's errors on the labeled rows of `data` (ties: the smallest change). This is
/// Hinton et al. 2015's bias adjustment for a class left out of the transfer set, chosen on data the
/// caller names rather than on the test set.
pub fn tune_bias(student: &dyn Student, data: &dyn Source, class: usize, range: f32, step: f32) -> Result<BiasTuning> {
    let k = student.num_classes();
    if class >= k {
        return Err(Error::Config(format!("--class {class} is outside the student's {k} classes")));
    }
    if !(range.is_finite() && range > 0.0 && step.is_finite() && step > 0.0) {
        return Err(Error::Config("the search range and step must be finite and > 0".into()));
    }
    // Per labeled row: the true class, the best other logit besides `class`, and `class`'s logit.
    let mut rows: Vec<(usize, f32, f32, f32)> = Vec::new(); // (y, z_y, best other than class, z_class)
    for batch in data.batches(4096) {
        let batch = batch?;
        let logits = batch_logits(student, data, &batch)?;
        for (i, z) in logits.axis_iter(Axis(0)).enumerate() {
            let Some(y) = batch.labels[i] else { continue };
            check_label(data, &batch, i, y, k)?;
            let best_other =
                z.iter().enumerate().filter(|&(j, _)| j != class).map(|(_, &v)| v).fold(f32::NEG_INFINITY, f32::max);
            rows.push((y as usize, z[y as usize], best_other, z[class]));
        }
    }
    if rows.is_empty() {
        return Err(Error::Config("the tuning data has no labeled rows".into()));
    }
    // With the class's logit raised by b, the prediction is `class` iff z_class + b > best other (ties go
    // to the lower index, as argmax does; negligible on real logits), else the argmax of the others.
    let errors = |b: f32| -> u64 {
        rows.iter()
            .map(|&(y, zy, other, zc)| {
                let picks_class = zc + b > other;
                let wrong = if y == class { !picks_class } else { picks_class || zy < other };
                u64::from(wrong)
            })
            .sum()
    };
    let steps = (range / step).round() as i64;
    let mut best = (errors(0.0), 0.0f32);
    for s in (-steps..=steps).filter(|&s| s != 0) {
        let b = s as f32 * step;
        let e = errors(b);
        if e < best.0 || (e == best.0 && b.abs() < best.1.abs()) {
            best = (e, b);
        }
    }
    Ok(BiasTuning { class, by: best.1, rows: rows.len() as u64, errors_before: errors(0.0), errors_after: best.0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ece_of_perfectly_calibrated_bins_is_zero_and_of_overconfidence_positive() {
        let mut c = Calibration::default();
        // 10 predictions at confidence 0.7, 7 correct: calibrated.
        for i in 0..10 {
            c.add(0.7, i < 7);
        }
        assert!(c.ece().unwrap() < 1e-12);
        let mut o = Calibration::default();
        for _ in 0..10 {
            o.add(0.99, false);
        }
        assert!((o.ece().unwrap() - 0.99).abs() < 1e-12);
    }
}
