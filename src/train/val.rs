//! Labelled rows to report accuracy on after each epoch.

use std::path::Path;

use ndarray::Array2;

use crate::data::DataSpec;
use crate::error::{Error, Result};
use crate::soften::argmax;
use crate::student::Student;

/// Labelled rows to report accuracy on after each epoch.
#[derive(Debug, Clone)]
pub struct ValSet {
    /// Raw inputs, `[rows, width]`.
    pub inputs: Array2<f32>,
    /// Labels.
    pub labels: Vec<i64>,
}

impl ValSet {
    /// Errors of `student` on this set.
    pub fn errors(&self, student: &dyn Student) -> u64 {
        let logits = student.forward(self.inputs.view());
        logits
            .rows()
            .into_iter()
            .zip(&self.labels)
            .filter(|(r, &y)| argmax(r.as_slice().unwrap_or(&[])) != Some(y as usize))
            .count() as u64
    }

    /// Reads the labeled rows of `path` (`train --val`): every row needs a label in [0, `classes`) and
    /// `width` input values.
    pub fn load(path: &Path, spec: &DataSpec, classes: usize, width: usize) -> Result<ValSet> {
        let source = crate::data::open(path, spec)?;
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
                    Some(y) if *y >= 0 && (*y as usize) < classes => labels.push(*y),
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
        Ok(ValSet { inputs, labels })
    }
}
