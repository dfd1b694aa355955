//! Validation rows, measured after each epoch: held out of the labels (`--val-fraction`), or read from
//! other data (`--val DATA`; a soft-label dataset brings its teacher outputs too).

use std::path::Path;

use ndarray::Array2;

use crate::data::DataSpec;
use crate::error::{Error, Result};
use crate::soften::{argmax, kl_t};
use crate::store::{SoftLabels, TeacherOutputs};
use crate::student::Student;

/// Validation rows: raw inputs, hard labels where known, and the teacher's outputs where known.
#[derive(Debug, Clone)]
pub struct ValSet {
    /// Raw inputs, `[rows, width]`.
    pub inputs: Array2<f32>,
    /// Hard labels (`None`: unlabeled row).
    pub labels: Vec<Option<i64>>,
    /// The teacher's top class per row and, for dense labels, its logits (for the KL at T = 1).
    pub teacher: Option<ValTeacher>,
    /// What the rows are, recorded in student.json (a finished student is reused only when validated on
    /// the same rows): the source's fingerprint, or the soft-label dataset's manifest sha256.
    pub identity: String,
    /// The fingerprint of the data the rows come from, where known (validating on the rows the labels
    /// were made from is refused).
    pub source_fingerprint: Option<String>,
}

/// The teacher's side of the validation rows.
#[derive(Debug, Clone)]
pub struct ValTeacher {
    /// Its top-1 class per row.
    pub top1: Vec<usize>,
    /// Its logits (dense labels only).
    pub logits: Option<Array2<f32>>,
}

/// What a student scores on the validation rows.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ValMetrics {
    /// Top-1 accuracy on the labelled rows.
    pub accuracy: Option<f64>,
    /// Errors on the labelled rows.
    pub errors: Option<u64>,
    /// Share of rows where student and teacher pick the same class.
    pub agreement: Option<f64>,
    /// Mean KL(teacher || student) at T = 1, in nats (dense labels only).
    pub kl: Option<f64>,
}

impl ValMetrics {
    /// The metric `--keep best` and `--early-stop` follow (higher is better): accuracy when the
    /// validation rows have labels, else agreement with the teacher.
    pub fn score(&self) -> Option<f64> {
        self.accuracy.or(self.agreement)
    }
}

impl ValSet {
    /// Rows from a soft-label dataset read into memory: inputs, labels and the teacher's outputs.
    pub fn from_outputs(d: &TeacherOutputs, identity: String) -> Result<ValSet> {
        let top1 = (0..d.len()).map(|r| d.teacher_top1(r)).collect::<Option<Vec<usize>>>();
        let teacher = top1.map(|top1| ValTeacher { top1, logits: d.dense_logits().cloned() });
        Ok(ValSet { inputs: d.inputs.clone(), labels: d.labels.clone(), teacher, identity, source_fingerprint: None })
    }

    /// Rows.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Scores `student` on these rows.
    pub fn measure(&self, student: &dyn Student) -> ValMetrics {
        let logits = student.forward(self.inputs.view());
        let (mut labeled, mut errors, mut agree, mut kl) = (0u64, 0u64, 0u64, 0f64);
        for (r, z) in logits.rows().into_iter().enumerate() {
            let z = z.to_vec();
            let pred = argmax(&z);
            if let Some(y) = self.labels[r] {
                labeled += 1;
                errors += u64::from(pred != Some(y as usize));
            }
            if let Some(t) = &self.teacher {
                agree += u64::from(pred == Some(t.top1[r]));
                if let Some(tz) = &t.logits {
                    kl += kl_t(tz.row(r).as_slice().unwrap_or(&[]), &z, 1.0);
                }
            }
        }
        let n = self.len().max(1) as f64;
        ValMetrics {
            accuracy: (labeled > 0).then(|| (labeled - errors) as f64 / labeled as f64),
            errors: (labeled > 0).then_some(errors),
            agreement: self.teacher.as_ref().map(|_| agree as f64 / n),
            kl: self.teacher.as_ref().and_then(|t| t.logits.as_ref()).map(|_| kl / n),
        }
    }

    /// Reads the validation rows of `path` (`train --val`): a soft-label dataset (with its teacher
    /// outputs) or labelled data. Every label must lie in [0, `classes`) and every row have `width` input
    /// values. A sequence dataset's rows become windows of `window` tokens each side (as in training).
    pub fn load(
        path: &Path,
        spec: &DataSpec,
        classes: usize,
        width: usize,
        (window, student_pad): (usize, Option<u32>),
    ) -> Result<ValSet> {
        if path.join(crate::store::MANIFEST).is_file() {
            let labels = SoftLabels::open(path)?;
            let m = labels.manifest();
            if !m.input.stored {
                return Err(Error::dataset(path, "--val labels were made with --no-inputs: they hold no inputs"));
            }
            if m.num_classes != classes || m.input.width != width {
                return Err(Error::dataset(
                    path,
                    format!(
                        "--val has {} classes and {} input values per row; the training labels have {classes} and \
                         {width}",
                        m.num_classes, m.input.width
                    ),
                ));
            }
            let mut d = labels.load()?;
            d.label_indices(classes, path)?;
            if let Some(seq) = &m.sequence {
                crate::store::sequence::windows(&mut d, seq, window, seq.fill(student_pad)?)?;
            }
            let mut v = ValSet::from_outputs(&d, format!("soft-label dataset {}", labels.manifest_sha256()?))?;
            v.source_fingerprint = Some(m.source.fingerprint.clone());
            return Ok(v);
        }
        let source = crate::data::open(path, spec)?;
        let fingerprint = source.source_info()?.fingerprint;
        let identity = format!("data {fingerprint}");
        let Some(label_column) = source.label_column().map(str::to_string) else {
            return Err(Error::data(path, "--val data has no label column (pass --label-column)"));
        };
        let mut inputs = Vec::new();
        let mut labels = Vec::new();
        for b in source.batches(8192) {
            let b = b?;
            b.check_labels_width(width, &source.input_name())?;
            let flat = b.input_f32();
            for (i, l) in b.labels.iter().enumerate() {
                if b.nonfinite.binary_search(&i).is_ok() {
                    continue;
                }
                inputs.extend_from_slice(&flat[i * width..(i + 1) * width]);
                let row = b.first_row + i as u64;
                match l {
                    Some(y) if *y >= 0 && (*y as usize) < classes => labels.push(Some(*y)),
                    Some(y) => {
                        return Err(Error::data(
                            &b.file,
                            format!(
                                "column '{label_column}', row {row}: label {y} is outside [0, {classes}): --val has \
                                 other classes than the labels"
                            ),
                        ))
                    }
                    None => {
                        return Err(Error::data(&b.file, format!("column '{label_column}', row {row}: label is null")))
                    }
                }
            }
        }
        let rows = labels.len();
        let inputs = Array2::from_shape_vec((rows, width), inputs).map_err(|e| Error::Internal(e.to_string()))?;
        Ok(ValSet { inputs, labels, teacher: None, identity, source_fingerprint: Some(fingerprint) })
    }
}
