//! A soft-label dataset's rows in memory: ids, labels, inputs and the teacher's outputs in their
//! stored form, and joining a label-only dataset's inputs back from its source.

use std::collections::HashMap;
use std::path::Path;

use ndarray::Array2;

use super::Manifest;
use crate::augment::ViewColumns;
use crate::data::Source;
use crate::error::{Error, Result};

/// Everything a student learns from, in memory.
#[derive(Debug, Clone)]
pub struct TeacherOutputs {
    /// Row ids.
    pub ids: Vec<u64>,
    /// Hard labels (`None`: unlabeled).
    pub labels: Vec<Option<i64>>,
    /// Inputs as f32, `[rows, width]`.
    pub inputs: Array2<f32>,
    /// The teacher's outputs, in the form the dataset stores them.
    pub outputs: Outputs,
    /// The view columns of a dataset with augmented views.
    pub views: Option<ViewColumns>,
    /// Each row's position in its source row (sequence datasets).
    pub positions: Option<Vec<u32>>,
}

/// The teacher's outputs for each row, as the dataset stores them.
#[derive(Debug, Clone)]
pub enum Outputs {
    /// Raw logits, `[rows, classes]`.
    Dense {
        /// The logits.
        logits: Array2<f32>,
    },
    /// The k largest logits per row and the normaliser over all classes.
    TopK {
        /// Class indices, by descending logit, `[rows, k]`.
        index: Array2<u32>,
        /// Their logits, `[rows, k]`.
        logit: Array2<f32>,
        /// logsumexp(logits / T) over all classes, per row.
        logsumexp_t: Vec<f64>,
        /// Each row's logit of its label (NaN without one), when the dataset stores it (schema 2.11).
        label_logit: Option<Vec<f32>>,
    },
    /// k classes drawn from softmax(logits / T), `[rows, k]`.
    Sampled {
        /// Class indices, ascending.
        index: Array2<u32>,
    },
}

impl TeacherOutputs {
    /// Fills `inputs` of a label-only dataset (made with `--no-inputs`) from its source, joined by id.
    /// The source must be the data the labels were made from (same fingerprint) unless
    /// `ignore_fingerprint`; every id must be found.
    pub fn join_inputs(
        &mut self,
        m: &Manifest,
        source: &dyn Source,
        source_path: &Path,
        ignore_fingerprint: bool,
    ) -> Result<()> {
        let fingerprint = source.source_info()?.fingerprint;
        if fingerprint != m.source.fingerprint && !ignore_fingerprint {
            return Err(Error::dataset(
                source_path,
                format!(
                    "fingerprint {fingerprint} differs from the data the labels were made from ({}): not the same \
                     files; pass --ignore-fingerprint to join by id anyway",
                    m.source.fingerprint
                ),
            ));
        }
        let w = m.input.width;
        // Every row of an id (one per view) takes that id's source row, shifted as its view says.
        let mut index: HashMap<u64, Vec<usize>> = HashMap::with_capacity(self.ids.len());
        for (r, &id) in self.ids.iter().enumerate() {
            index.entry(id).or_default().push(r);
        }
        let shifts = match (&m.views, &self.views) {
            (Some(v), Some(cols)) => Some((v, cols)),
            (None, None) => None,
            _ => return Err(Error::Internal("view columns do not match the manifest".into())),
        };
        let mut inputs = Array2::<f32>::zeros((self.ids.len(), w));
        let mut found = vec![false; self.ids.len()];
        // Crop views are rendered again from the source's originals (an image folder), by their boxes.
        if let Some((_, cols)) = shifts.filter(|(v, _)| v.crop.is_some()) {
            let render = source.view_renderer().ok_or_else(|| {
                Error::dataset(source_path, "is not an image folder: the labels' crop views are rendered from images")
            })?;
            for b in source.batches(256) {
                let b = b?;
                for (i, id) in b.ids.iter().enumerate() {
                    let Some(rows) = index.get(id) else { continue };
                    let boxes: Vec<_> = rows.iter().map(|&r| cols.crop[r]).collect();
                    let values = render.render_boxes(b.first_source_row + i as u64, &boxes)?;
                    let flat = crate::data::numeric_to_f32(values.as_ref())
                        .ok_or_else(|| Error::Internal("rendered values not numeric".into()))?;
                    for (k, &r) in rows.iter().enumerate() {
                        inputs.row_mut(r).iter_mut().zip(&flat[k * w..(k + 1) * w]).for_each(|(o, &x)| *o = x);
                        found[r] = true;
                    }
                }
            }
            if let Some(r) = found.iter().position(|f| !f) {
                return Err(Error::dataset(
                    source_path,
                    format!("no row with id {} (which the labels have)", self.ids[r]),
                ));
            }
            self.inputs = inputs;
            return Ok(());
        }
        for b in source.batches(8192) {
            let b = b?;
            b.check_labels_width(w, &source.input_name())?;
            let flat = b.input_f32();
            for (i, id) in b.ids.iter().enumerate() {
                let src = &flat[i * w..(i + 1) * w];
                for &r in index.get(id).map_or(&[][..], Vec::as_slice) {
                    let mut row = inputs.row_mut(r);
                    let out = row.as_slice_mut().ok_or_else(|| Error::Internal("input row not contiguous".into()))?;
                    match shifts {
                        Some((v, cols)) => v.shift_row(src, cols.shift_x[r], cols.shift_y[r], out),
                        None => out.copy_from_slice(src),
                    }
                    found[r] = true;
                }
            }
        }
        if let Some(r) = found.iter().position(|f| !f) {
            return Err(Error::dataset(source_path, format!("no row with id {} (which the labels have)", self.ids[r])));
        }
        self.inputs = inputs;
        Ok(())
    }

    /// Checks that `source` is the data these labels were made from, so rows are never paired by id
    /// across different data (the labels of the train split against the test split): the same files
    /// (fingerprint), or the same rows: every source row's id among the labels with the input the labels
    /// stored (rows skipped for non-finite inputs aside). Refuses naming both fingerprints.
    pub fn check_made_from(&self, m: &Manifest, source: &dyn Source, source_path: &Path) -> Result<()> {
        let fingerprint = source.source_info()?.fingerprint;
        if fingerprint == m.source.fingerprint {
            return Ok(());
        }
        let differ = |why: String| {
            Error::dataset(
                source_path,
                format!(
                    "is not the data the labels were made from: its fingerprint is {fingerprint}, the labels' is {} \
                     ({why})",
                    m.source.fingerprint
                ),
            )
        };
        if !m.input.stored || self.inputs.ncols() != m.input.width {
            return Err(differ("and the labels store no inputs to compare its rows with".into()));
        }
        let w = m.input.width;
        // View 0 of each id is its source row as it was.
        let index: HashMap<u64, usize> = (0..self.ids.len())
            .filter(|&r| self.views.as_ref().is_none_or(|v| v.view[r] == 0))
            .map(|r| (self.ids[r], r))
            .collect();
        for b in source.batches(8192) {
            let b = b?;
            if b.width != w {
                return Err(differ(format!("its rows have {} values, the labels' {w}", b.width)));
            }
            let flat = b.input_f32();
            for (i, id) in b.ids.iter().enumerate() {
                let src = &flat[i * w..(i + 1) * w];
                match index.get(id) {
                    Some(&r) if self.inputs.row(r).iter().eq(src.iter()) => {}
                    Some(_) => {
                        return Err(differ(format!("the row with id {id} holds another input than the labels'")))
                    }
                    None if m.skipped_nonfinite_rows > 0 && src.iter().any(|x| !x.is_finite()) => {}
                    None => return Err(differ(format!("the labels have no row with id {id}"))),
                }
            }
        }
        Ok(())
    }

    /// The hard labels as class indices, each checked against `num_classes` (an error names `origin`, the
    /// column and the row's id).
    pub fn label_indices(&self, num_classes: usize, origin: &Path) -> Result<Vec<Option<usize>>> {
        self.labels
            .iter()
            .zip(&self.ids)
            .map(|(l, id)| match *l {
                Some(y) if y < 0 || y as usize >= num_classes => Err(Error::dataset(
                    origin,
                    format!("column 'label', id {id}: label {y} is outside [0, {num_classes})"),
                )),
                Some(y) => Ok(Some(y as usize)),
                None => Ok(None),
            })
            .collect()
    }

    /// A map from id to row (with views: to the row of view 0, the unshifted one).
    pub fn id_index(&self) -> HashMap<u64, usize> {
        let first = |i: usize| self.views.as_ref().is_none_or(|v| v.view[i] == 0);
        self.ids.iter().enumerate().filter(|&(i, _)| first(i)).map(|(i, &id)| (id, i)).collect()
    }

    /// Rows held.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether no rows are held.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The teacher's top class for `row`: the largest logit, or the first top-k index. `None` for sampled
    /// labels, whose draws do not identify it.
    pub fn teacher_top1(&self, row: usize) -> Option<usize> {
        match &self.outputs {
            Outputs::Dense { logits } => crate::soften::argmax(&logits.row(row).to_vec()),
            Outputs::TopK { index, .. } => Some(index[[row, 0]] as usize),
            Outputs::Sampled { .. } => None,
        }
    }

    /// The raw logits of a dense dataset (`None` for sparse forms, which do not hold them all).
    pub fn dense_logits(&self) -> Option<&Array2<f32>> {
        match &self.outputs {
            Outputs::Dense { logits } => Some(logits),
            _ => None,
        }
    }
}
