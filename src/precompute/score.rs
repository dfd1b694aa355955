//! Scoring one batch of source rows: this shard's rows with finite inputs, their labels checked, their
//! views expanded, run through the teacher, the rows before the resume point dropped, ids checked for
//! duplicates and the teacher's logits for NaN. No threads: [`Scorer::score`] is a plain function of a
//! batch, an [`Infer`] and what earlier batches left (the ids seen).

use std::path::Path;

use crate::augment::Views;
use crate::data::Batch;
use crate::error::{Error, Result};
use crate::store::{ScoredRows, Shard};
use crate::teacher::Ensemble;

/// Runs a model on a batch: `[rows, classes]` logits, row-major, and the number of classes.
pub trait Infer {
    /// The logits of `batch`'s rows.
    fn infer(&mut self, batch: &Batch) -> Result<(crate::teacher::Logits, usize)>;
    /// The model, named in errors about its outputs.
    fn path(&self) -> &Path;
    /// The stored features of the last [`Infer::infer`] (one `rows * width` vector each), taken.
    fn take_features(&mut self) -> Vec<Vec<f32>> {
        Vec::new()
    }
}

impl Infer for crate::teacher::Imported {
    fn infer(&mut self, batch: &Batch) -> Result<(crate::teacher::Logits, usize)> {
        self.lookup(batch).map(|(v, k)| (v.into(), k))
    }

    fn path(&self) -> &Path {
        crate::teacher::Imported::path(self)
    }
}

impl Infer for Ensemble {
    fn infer(&mut self, batch: &Batch) -> Result<(crate::teacher::Logits, usize)> {
        self.run(batch)
    }

    fn take_features(&mut self) -> Vec<Vec<f32>> {
        self.first_mut().take_features()
    }

    fn path(&self) -> &Path {
        self.first().path()
    }
}

/// A batch the teacher already ran on, with its outputs (the plan's probe of the first batch).
#[derive(Debug)]
pub struct Probe {
    /// The batch as the source gave it.
    pub batch: Batch,
    /// The teacher's logits for it, row-major.
    pub logits: crate::teacher::Logits,
    /// Classes.
    pub num_classes: usize,
    /// The teacher's stored features for it.
    pub features: Vec<Vec<f32>>,
}

impl Probe {
    /// Whether `batch` is the probed batch: the same rows of the same file with the same input values.
    fn matches(&self, batch: &Batch) -> bool {
        let p = &self.batch;
        p.file == batch.file
            && p.first_source_row == batch.first_source_row
            && p.width == batch.width
            && p.ids == batch.ids
            && p.input.as_ref() == batch.input.as_ref()
            && p.extra.len() == batch.extra.len()
            && p.extra
                .iter()
                .zip(&batch.extra)
                .all(|(a, b)| a.width == b.width && a.values.as_ref() == b.values.as_ref())
    }
}

/// A teacher whose first call may already have been made: a batch equal to the probe's gets the probe's
/// outputs (once), any other batch goes to the teacher.
pub struct Primed<'t, T: Infer + ?Sized> {
    /// The teacher.
    pub teacher: &'t mut T,
    /// The probe, until its batch comes or another batch does.
    pub probe: Option<Probe>,
    /// The probe's features, when the last call was answered by it.
    pub features: Option<Vec<Vec<f32>>>,
}

impl<T: Infer + ?Sized> Infer for Primed<'_, T> {
    fn infer(&mut self, batch: &Batch) -> Result<(crate::teacher::Logits, usize)> {
        self.features = None;
        match self.probe.take() {
            Some(p) if p.matches(batch) => {
                self.features = Some(p.features);
                Ok((p.logits, p.num_classes))
            }
            _ => self.teacher.infer(batch),
        }
    }

    fn take_features(&mut self) -> Vec<Vec<f32>> {
        match self.features.take() {
            Some(f) => f,
            None => self.teacher.take_features(),
        }
    }

    fn path(&self) -> &Path {
        self.teacher.path()
    }
}

/// What one source batch became.
#[derive(Debug)]
pub enum Scored {
    /// Rows for the writer, with the source rows skipped for non-finite inputs in the same batch.
    Rows(Box<ScoredRows>, Vec<u64>),
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
    /// Renders crop views from the source's originals (an image folder), for crop views.
    pub renderer: Option<std::sync::Arc<dyn crate::data::RenderViews>>,
    /// Source rows before this one are already committed.
    pub skip: u64,
    /// The label column, named in errors.
    pub label_column: &'a str,
    /// The id column, named in errors.
    pub id_column: &'a str,
    /// Ids scored so far, committed parts' included: compressed bitmaps (about 0.13 byte an id for dense
    /// ids; a hash set took 16, 93 MB of precompute's peak memory at 6M rows).
    pub seen: roaring::RoaringTreemap,
    /// Values per row of each further teacher input (as the first batch had them).
    pub extra_widths: Vec<usize>,
    /// A sequence teacher's dataset: each source row becomes one row per unmasked position.
    pub sequence: Option<crate::store::Sequence>,
}

impl Scorer<'_> {
    /// Scores one batch with `teacher`.
    pub fn score(&mut self, batch: Batch, teacher: &mut dyn Infer) -> Result<Scored> {
        let (width, num_classes, skip) = (self.width, self.num_classes, self.skip);
        super::plan::check_width(&batch, width, self.column)?;
        for (e, &w) in batch.extra.iter().zip(&self.extra_widths) {
            if e.width != w {
                return Err(Error::data(
                    &batch.file,
                    format!(
                        "column '{}', row {}: rows have {} values, earlier rows have {w}",
                        e.column, batch.first_row, e.width
                    ),
                ));
            }
        }
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
                let (b, rows, cols) = match (&v.crop, &self.renderer) {
                    (Some(_), Some(render)) => v.expand_crops(&batch, &source_rows, render.as_ref())?,
                    (Some(_), None) => return Err(Error::Internal("crop views without a renderer".into())),
                    (None, _) => v.expand(&batch, &source_rows)?,
                };
                (b, rows, Some(cols))
            }
            None => (batch, source_rows, None),
        };
        let (mut logits, k) = teacher.infer(&batch)?;
        let features = teacher.take_features();
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
        let (mut ids, mut labels) = (batch.ids[from..].to_vec(), batch.labels[from..].to_vec());
        let mut input = batch.input.slice(from * width, n * width);
        let per_row = k * self.sequence.as_ref().map_or(1, |s| s.length);
        // split_off(0) would copy every value into a new allocation.
        let logits = if from == 0 { logits } else { logits.split_off(from * per_row) };
        let mut source_rows = source_rows[from..].to_vec();
        let views = view_cols.map(|v| v.slice(from, n));
        let paths = batch.paths.get(from..).map(<[String]>::to_vec).unwrap_or_default();
        let rows_in = batch.len().max(1);
        let features: Vec<Vec<f32>> = features
            .into_iter()
            .map(|mut f| {
                let w = f.len() / rows_in;
                f.split_off(from * w)
            })
            .collect();
        for (i, id) in ids.iter().enumerate() {
            // A row's views share its id; its first view is checked.
            if *id > i64::MAX as u64 {
                return Err(Error::data(
                    &batch.file,
                    format!(
                        "column '{}', row {}: id {id} is above 2^63 - 1 (soft-label datasets store ids as int64)",
                        self.id_column,
                        row_in_file(&batch, source_rows[i])
                    ),
                ));
            }
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
        let (mut positions, mut logit_rows) = (Vec::new(), Vec::new());
        if let Some(seq) = &self.sequence {
            let token_labels = batch.token_labels.get(from * width..).unwrap_or_default();
            let rows = SequenceRows { seq, k, column: self.label_column, batch: &batch };
            // The writer reads the kept positions' logits in place (a vocabulary's logits are most of the
            // bytes: copying them cost the scoring thread as much as a tenth of inference) and checks them.
            (ids, labels, input, source_rows, positions, logit_rows) =
                rows.expand(&ids, &input, token_labels, logits.len(), &source_rows)?;
        }
        // Rows read in place (a sequence's) are checked by the writer, the same way.
        let invalid = match self.sequence {
            Some(_) => None,
            None => {
                logits.chunks_exact(k).enumerate().find_map(|(r, z)| crate::soften::invalid_logit(z).map(|v| (r, v)))
            }
        };
        if let Some((r, v)) = invalid {
            return Err(Error::model(
                teacher.path(),
                format!(
                    "teacher produced a non-finite logit ({v}) for {}, row {} (id {})",
                    batch.file.display(),
                    row_in_file(&batch, source_rows[r]),
                    ids[r]
                ),
            ));
        }
        Ok(Scored::Rows(
            Box::new(ScoredRows {
                ids,
                labels,
                input,
                logits,
                source_rows,
                views,
                paths,
                features,
                positions,
                logit_rows,
            }),
            skipped,
        ))
    }
}

/// The rows of a sequence teacher's batch: one per (source row, unmasked position).
struct SequenceRows<'a> {
    seq: &'a crate::store::Sequence,
    k: usize,
    column: &'a str,
    /// The batch, for the file and rows named in errors.
    batch: &'a Batch,
}

/// Per stored row: ids, labels, the position's token, source rows, positions, and its row of the
/// teacher's logits (source row * length + position).
type Expanded = (Vec<u64>, Vec<Option<i64>>, arrow_array::ArrayRef, Vec<u64>, Vec<u32>, Vec<u32>);

impl SequenceRows<'_> {
    /// Expands source rows (`input`: `length` tokens each; `logits`: `length * k` each) into one row per
    /// position whose token is not the pad id. Labels: the tagger's own (`token_labels`, one per
    /// position), or with `--targets next` the next position's token (none at the last unmasked one).
    fn expand(
        &self,
        ids: &[u64],
        input: &arrow_array::ArrayRef,
        token_labels: &[Option<i64>],
        logit_values: usize,
        source_rows: &[u64],
    ) -> Result<Expanded> {
        let (l, k) = (self.seq.length, self.k);
        let tokens = crate::data::numeric_to_f64(input.as_ref())
            .ok_or_else(|| Error::Internal("a sequence teacher's input is not numeric".into()))?;
        if tokens.len() != ids.len() * l || logit_values != ids.len() * l * k || tokens.len() > u32::MAX as usize {
            return Err(Error::Internal(format!(
                "{} rows, {} tokens, {logit_values} logits for {l} positions of {k} classes",
                ids.len(),
                tokens.len(),
            )));
        }
        let row = |r: usize| row_in_file(self.batch, source_rows[r]);
        if !token_labels.is_empty() && token_labels.len() != tokens.len() {
            return Err(Error::data(
                &self.batch.file,
                format!(
                    "column '{}', row {}: {} labels a row, the input has {l} positions: a tagger's labels are one per \
                     position",
                    self.column,
                    row(0),
                    token_labels.len() / ids.len().max(1)
                ),
            ));
        }
        let pad = self.seq.pad_id.map(|p| p as f64);
        let keep = |j: usize| pad != Some(tokens[j]);
        let kept: Vec<usize> = (0..tokens.len()).filter(|&j| keep(j)).collect();
        let (mut out_ids, mut labels, mut rows, mut positions) = (
            Vec::with_capacity(kept.len()),
            Vec::with_capacity(kept.len()),
            Vec::with_capacity(kept.len()),
            Vec::with_capacity(kept.len()),
        );
        for &j in &kept {
            let (r, t) = (j / l, j % l);
            out_ids.push(ids[r]);
            rows.push(source_rows[r]);
            positions.push(t as u32);
            labels.push(match self.seq.targets {
                crate::store::Targets::Same => token_labels.get(j).copied().flatten(),
                crate::store::Targets::Next => (t + 1 < l && keep(j + 1)).then(|| tokens[j + 1] as i64),
            });
        }
        if let Some((j, y)) =
            kept.iter().zip(&labels).find_map(|(&j, l)| l.filter(|&y| y as u64 >= k as u64).map(|y| (j, y)))
        {
            return Err(Error::data(
                &self.batch.file,
                format!(
                    "column '{}', row {} (id {}), position {}: label {y} is outside [0, {k}) (the teacher has {k} \
                     classes)",
                    self.column,
                    row(j / l),
                    ids[j / l],
                    j % l
                ),
            ));
        }
        let index = arrow_array::UInt64Array::from_iter_values(kept.iter().map(|&j| j as u64));
        let input = arrow_select::take::take(input.as_ref(), &index, None)
            .map_err(|e| Error::Internal(format!("take tokens: {e}")))?;
        let logit_rows = kept.iter().map(|&j| j as u32).collect();
        Ok((out_ids, labels, input, rows, positions, logit_rows))
    }
}

/// The position in its file of the batch row at `source_row`.
fn row_in_file(batch: &Batch, source_row: u64) -> u64 {
    batch.first_row + (source_row - batch.first_source_row)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::Arc;

    use arrow_array::Float32Array;

    use super::*;

    /// A two-class "teacher": logits (sum of the row, -sum), or NaN for a row whose first value is 99.
    struct Sum;

    impl Infer for Sum {
        fn infer(&mut self, batch: &Batch) -> Result<(crate::teacher::Logits, usize)> {
            let x = batch.input_f32();
            let mut out = Vec::new();
            for row in x.chunks_exact(batch.width) {
                let s: f32 = row.iter().sum();
                out.extend(if row[0] == 99.0 { [f32::NAN, 0.0] } else { [s, -s] });
            }
            Ok((out.into(), 2))
        }
        fn path(&self) -> &Path {
            Path::new("sum.onnx")
        }
    }

    fn batch(first_source_row: u64, ids: &[u64], values: &[f32], nonfinite: Vec<usize>) -> Batch {
        Batch {
            file: PathBuf::from("d.parquet"),
            first_row: first_source_row,
            first_source_row,
            ids: ids.to_vec(),
            labels: ids.iter().map(|&i| Some((i % 2) as i64)).collect(),
            input: Arc::new(Float32Array::from(values.to_vec())),
            width: 2,
            nonfinite,
            extra: Vec::new(),
            paths: Vec::new(),
            token_labels: Vec::new(),
        }
    }

    fn scorer(shard: Option<Shard>, skip: u64) -> Scorer<'static> {
        Scorer {
            width: 2,
            column: "input",
            num_classes: 2,
            shard,
            views: None,
            skip,
            label_column: "label",
            id_column: "id",
            seen: roaring::RoaringTreemap::new(),
            extra_widths: Vec::new(),
            renderer: None,
            sequence: None,
        }
    }

    #[test]
    fn scores_rows_skips_nonfinite_and_rows_before_the_resume_point() {
        let mut s = scorer(None, 1);
        let b = batch(0, &[10, 11, 12], &[1.0, 2.0, f32::NAN, 0.0, 3.0, 4.0], vec![1]);
        let Scored::Rows(rows, skipped) = s.score(b, &mut Sum).unwrap() else { panic!("no rows") };
        // Row 0 is before the resume point, row 1 is non-finite (and at/after it, so reported).
        assert_eq!((rows.ids, rows.source_rows, skipped), (vec![12], vec![2], vec![1]));
        assert_eq!(rows.logits.to_vec(), vec![7.0, -7.0]);
        // A batch wholly before the resume point gives nothing.
        let mut s = scorer(None, 10);
        assert!(matches!(s.score(batch(0, &[1, 2], &[0.0; 4], vec![]), &mut Sum).unwrap(), Scored::Nothing));
    }

    /// Counts the calls that reach the teacher.
    struct Counting(usize);

    impl Infer for Counting {
        fn infer(&mut self, batch: &Batch) -> Result<(crate::teacher::Logits, usize)> {
            self.0 += 1;
            Sum.infer(batch)
        }
        fn path(&self) -> &Path {
            Path::new("counting.onnx")
        }
    }

    #[test]
    fn the_probed_batch_is_not_run_twice_and_any_other_batch_is() {
        let first = batch(0, &[1, 2], &[1.0, 2.0, 3.0, 4.0], vec![]);
        let mut teacher = Counting(0);
        let (logits, num_classes) = teacher.infer(&first).unwrap();
        let probe = Probe { batch: first.clone(), logits, num_classes, features: Vec::new() };
        let mut primed = Primed { teacher: &mut teacher, probe: Some(probe), features: None };
        let mut s = scorer(None, 0);
        let Scored::Rows(rows, _) = s.score(first, &mut primed).unwrap() else { panic!("no rows") };
        assert_eq!(rows.logits.to_vec(), vec![3.0, -3.0, 7.0, -7.0]);
        s.score(batch(2, &[3], &[5.0, 6.0], vec![]), &mut primed).unwrap();
        assert_eq!(primed.teacher.0, 2, "the probe's batch ran once, the next batch once");
        // A first batch that differs from the probe's (other values) goes to the teacher.
        let probe = Probe {
            batch: batch(0, &[1], &[1.0, 2.0], vec![]),
            logits: vec![0.0, 0.0].into(),
            num_classes: 2,
            features: Vec::new(),
        };
        let mut primed = Primed { teacher: &mut teacher, probe: Some(probe), features: None };
        let Scored::Rows(rows, _) = scorer(None, 0).score(batch(0, &[1], &[1.0, 5.0], vec![]), &mut primed).unwrap()
        else {
            panic!("no rows")
        };
        assert_eq!((rows.logits.to_vec(), primed.teacher.0), (vec![6.0, -6.0], 3));
    }

    #[test]
    fn keeps_only_this_shards_rows_and_refuses_duplicates_and_nan() {
        let shard = Shard { index: 0, count: 2 };
        let ids: Vec<u64> = (0..8).collect();
        let mut s = scorer(Some(shard), 0);
        let Scored::Rows(rows, _) = s.score(batch(0, &ids, &[1.0; 16], vec![]), &mut Sum).unwrap() else {
            panic!("no rows")
        };
        assert!(!rows.ids.is_empty() && rows.ids.iter().all(|&id| shard.owns(id)), "{:?}", rows.ids);
        let again = rows.ids[0];
        let e = s.score(batch(8, &[again], &[1.0, 1.0], vec![]), &mut Sum).unwrap_err().to_string();
        assert!(e.contains("column 'id', row 8: duplicate id"), "{e}");
        let e = scorer(None, 0).score(batch(0, &[1], &[99.0, 0.0], vec![]), &mut Sum).unwrap_err().to_string();
        assert!(e.contains("sum.onnx") && e.contains("non-finite logit (NaN)") && e.contains("row 0 (id 1)"), "{e}");
        let mut bad = batch(0, &[1], &[1.0, 1.0], vec![]);
        bad.labels = vec![Some(5)];
        let e = scorer(None, 0).score(bad, &mut Sum).unwrap_err().to_string();
        assert!(e.contains("column 'label', row 0: label 5 is outside [0, 2)"), "{e}");
    }
}
