//! Scoring one batch of source rows: this shard's rows with finite inputs, their labels checked, their
//! views expanded, run through the teacher, the rows before the resume point dropped, ids checked for
//! duplicates and the teacher's logits for NaN. No threads: [`Scorer::score`] is a plain function of a
//! batch, an [`Infer`] and what earlier batches left (the ids seen).

use std::collections::HashSet;
use std::path::Path;

use crate::augment::Views;
use crate::data::Batch;
use crate::error::{Error, Result};
use crate::store::{ScoredRows, Shard};
use crate::teacher::Ensemble;

/// Runs a model on a batch: `[rows, classes]` logits, row-major, and the number of classes.
pub trait Infer {
    /// The logits of `batch`'s rows.
    fn infer(&mut self, batch: &Batch) -> Result<(Vec<f32>, usize)>;
    /// The model, named in errors about its outputs.
    fn path(&self) -> &Path;
}

impl Infer for Ensemble {
    fn infer(&mut self, batch: &Batch) -> Result<(Vec<f32>, usize)> {
        self.run(batch)
    }

    fn path(&self) -> &Path {
        self.first().path()
    }
}

/// What one source batch became.
#[derive(Debug)]
pub enum Scored {
    /// Rows for the writer, with the source rows skipped for non-finite inputs in the same batch.
    Rows(ScoredRows, Vec<u64>),
    /// No rows to write, only source rows skipped for non-finite inputs.
    Skipped(Vec<u64>),
    /// Nothing to write (another shard's rows, or rows before the resume point).
    Nothing,
}

/// Turns source batches into scored rows.
pub struct Scorer<'a> {
    /// Values per input row.
    pub width: usize,
    /// The input column(s), named in errors.
    pub column: &'a str,
    /// K.
    pub num_classes: usize,
    /// Only this shard's rows are scored.
    pub shard: Option<Shard>,
    /// Views every row is stored with.
    pub views: Option<&'a Views>,
    /// Source rows before this one are already committed.
    pub skip: u64,
    /// The label column, named in errors.
    pub label_column: &'a str,
    /// The id column, named in errors.
    pub id_column: &'a str,
    /// Ids written so far (committed parts included).
    pub seen: HashSet<u64>,
}

impl Scorer<'_> {
    /// Scores one batch with `teacher`.
    pub fn score(&mut self, batch: Batch, teacher: &mut dyn Infer) -> Result<Scored> {
        let (width, num_classes, skip) = (self.width, self.num_classes, self.skip);
        super::plan::check_width(&batch, width, self.column)?;
        // Only this shard's rows with finite inputs go to the teacher; otherwise the teacher gets every
        // batch whole, as an uninterrupted run does, even the first one after a resume point.
        let owned: Vec<bool> = batch.ids.iter().map(|&id| self.shard.is_none_or(|s| s.owns(id))).collect();
        let skipped: Vec<u64> = batch
            .nonfinite
            .iter()
            .filter(|&&i| owned[i])
            .map(|&i| batch.first_source_row + i as u64)
            .filter(|&r| r >= skip)
            .collect();
        let (batch, source_rows) = if self.shard.is_none() && batch.nonfinite.is_empty() {
            let rows = (batch.first_source_row..batch.first_source_row + batch.len() as u64).collect();
            (batch, rows)
        } else {
            let mut keep = owned;
            batch.nonfinite.iter().for_each(|&i| keep[i] = false);
            batch.retain(&keep)?
        };
        if batch.is_empty() {
            return Ok(if skipped.is_empty() { Scored::Nothing } else { Scored::Skipped(skipped) });
        }
        if let Some((i, y)) = batch
            .labels
            .iter()
            .enumerate()
            .find_map(|(i, l)| l.filter(|&y| y < 0 || y as usize >= num_classes).map(|y| (i, y)))
        {
            return Err(Error::data(
                &batch.file,
                format!(
                    "column '{}', row {}: label {y} is outside [0, {num_classes}) (the teacher has {num_classes} classes)",
                    self.label_column,
                    row_in_file(&batch, source_rows[i])
                ),
            ));
        }
        // Each row's views go to the teacher together, in order, as rows of one larger batch.
        let (batch, source_rows, view_cols) = match self.views {
            Some(v) => {
                let (b, rows, cols) = v.expand(&batch, &source_rows)?;
                (b, rows, Some(cols))
            }
            None => (batch, source_rows, None),
        };
        let (mut logits, k) = teacher.infer(&batch)?;
        if k != num_classes {
            return Err(Error::model(
                teacher.path(),
                format!("output has {k} classes, earlier batches had {num_classes}"),
            ));
        }
        // Rows before the resume point are already in committed parts.
        let from = source_rows.partition_point(|&r| r < skip);
        if from == source_rows.len() {
            return Ok(Scored::Nothing);
        }
        let n = batch.len() - from;
        let (ids, labels) = (batch.ids[from..].to_vec(), batch.labels[from..].to_vec());
        let input = batch.input.slice(from * width, n * width);
        let logits = logits.split_off(from * k);
        let source_rows = source_rows[from..].to_vec();
        let views = view_cols.map(|v| v.slice(from, n));
        for (i, id) in ids.iter().enumerate() {
            // A row's views share its id; its first view is checked.
            let first_view = views.as_ref().is_none_or(|v| v.view[i] == 0);
            if first_view && !self.seen.insert(*id) {
                return Err(Error::data(
                    &batch.file,
                    format!(
                        "column '{}', row {}: duplicate id {id}",
                        self.id_column,
                        row_in_file(&batch, source_rows[i])
                    ),
                ));
            }
        }
        // -inf is a valid logit (log of a probability of 0); NaN, +inf and all--inf rows are not.
        let bad_row = logits.chunks_exact(k).position(|r| r.iter().all(|&z| z == f32::NEG_INFINITY)).map(|r| r * k);
        if let Some(pos) = logits.iter().position(|z| z.is_nan() || *z == f32::INFINITY).or(bad_row) {
            return Err(Error::model(
                teacher.path(),
                format!(
                    "teacher produced a non-finite logit ({}) for {}, row {} (id {})",
                    logits[pos],
                    batch.file.display(),
                    row_in_file(&batch, source_rows[pos / k]),
                    ids[pos / k]
                ),
            ));
        }
        Ok(Scored::Rows(ScoredRows { ids, labels, input, logits, source_rows, views }, skipped))
    }
}

/// The position in its file of the batch row at `source_row`.
fn row_in_file(batch: &Batch, source_row: u64) -> u64 {
    batch.first_row + (source_row - batch.first_source_row)
}
