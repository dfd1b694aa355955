//! Decoding a part's record batches into rows ([`Columns`], checked against the manifest as they are
//! read) and turning them into [`TeacherOutputs`].

use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float16Type, Float32Type, Float64Type, Int16Type, Int64Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow_array::{Array, RecordBatch};
use ndarray::Array2;

use super::{columns, LabelForm, Manifest, Outputs, RowFilter, TeacherOutputs};
use crate::augment::ViewColumns;
use crate::data::numeric_to_f32;
use crate::error::{Error, Result};

impl Columns {
    /// The rows read so far as [`TeacherOutputs`].
    pub(super) fn finish(self, m: &Manifest) -> Result<TeacherOutputs> {
        let acc = self;
        let w = m.input.width;
        let n = acc.ids.len();
        let shape = |cols: usize, what: &str, len: usize| {
            if len == n * cols {
                Ok((n, cols))
            } else {
                Err(Error::Internal(format!("{what}: {len} values for {n} rows of {cols}")))
            }
        };
        let w = if m.input.stored { w } else { 0 };
        let inputs = Array2::from_shape_vec(shape(w, "input", acc.inputs.len())?, acc.inputs)
            .map_err(|e| Error::Internal(e.to_string()))?;
        let outputs = match m.form {
            LabelForm::Dense => Outputs::Dense {
                logits: Array2::from_shape_vec(shape(m.num_classes, "logits", acc.logits.len())?, acc.logits)
                    .map_err(|e| Error::Internal(e.to_string()))?,
            },
            LabelForm::TopK { k } => Outputs::TopK {
                index: Array2::from_shape_vec(shape(k, "topk_index", acc.index.len())?, acc.index)
                    .map_err(|e| Error::Internal(e.to_string()))?,
                logit: Array2::from_shape_vec(shape(k, "topk_logit", acc.logits.len())?, acc.logits)
                    .map_err(|e| Error::Internal(e.to_string()))?,
                logsumexp_t: acc.lse,
                label_logit: m.label_logit.then_some(acc.label_logit),
            },
            LabelForm::Sampled { k, .. } => Outputs::Sampled {
                index: Array2::from_shape_vec(shape(k, "sample_index", acc.index.len())?, acc.index)
                    .map_err(|e| Error::Internal(e.to_string()))?,
            },
        };
        let views = m.views.is_some().then_some(acc.views);
        let positions = m.sequence.is_some().then_some(acc.positions);
        Ok(TeacherOutputs { ids: acc.ids, labels: acc.labels, inputs, outputs, views, positions })
    }
}

/// Values read so far.
#[derive(Default)]
pub(super) struct Columns {
    ids: Vec<u64>,
    labels: Vec<Option<i64>>,
    inputs: Vec<f32>,
    /// Dense logits, or top-k logits.
    logits: Vec<f32>,
    /// Top-k or sampled indices.
    index: Vec<u32>,
    lse: Vec<f64>,
    /// Top-k with `label_logit`: the label's logit, NaN for a row without a label.
    label_logit: Vec<f32>,
    views: ViewColumns,
    /// Sequence datasets: each row's position.
    positions: Vec<u32>,
}

/// The flat values of a non-null fixed-size list column.
fn list_values(path: &Path, rb: &RecordBatch, name: &str, first_row: u64) -> Result<arrow_array::ArrayRef> {
    let col = rb.column_by_name(name).ok_or_else(|| Error::dataset(path, format!("no column '{name}'")))?;
    let list = col
        .as_fixed_size_list_opt()
        .ok_or_else(|| Error::dataset(path, format!("column '{name}' is not a fixed-size list")))?;
    if list.null_count() > 0 {
        let row = (0..list.len()).find(|&i| list.is_null(i)).unwrap_or(0) as u64 + first_row;
        return Err(Error::dataset(path, format!("column '{name}', row {row}: value is null")));
    }
    let width = list.value_length() as usize;
    Ok(list.values().slice(list.value_offset_at(0), list.len() * width))
}

impl Columns {
    /// Empty, with room for `rows` rows of `m`.
    pub(super) fn with_capacity(m: &Manifest, rows: usize) -> Self {
        let (per_logits, per_index) = match m.form {
            LabelForm::Dense => (m.num_classes, 0),
            LabelForm::TopK { k } => (k, k),
            LabelForm::Sampled { k, .. } => (0, k),
        };
        let views = if m.views.is_some() { rows } else { 0 };
        Columns {
            ids: Vec::with_capacity(rows),
            labels: Vec::with_capacity(rows),
            inputs: Vec::with_capacity(if m.input.stored { rows * m.input.width } else { 0 }),
            logits: Vec::with_capacity(rows * per_logits),
            index: Vec::with_capacity(rows * per_index),
            lse: Vec::with_capacity(if matches!(m.form, LabelForm::TopK { .. }) { rows } else { 0 }),
            label_logit: Vec::with_capacity(if m.label_logit { rows } else { 0 }),
            views: ViewColumns {
                view: Vec::with_capacity(views),
                shift_x: Vec::with_capacity(views),
                shift_y: Vec::with_capacity(views),
                crop: Vec::with_capacity(views),
            },
            positions: Vec::with_capacity(if m.sequence.is_some() { rows } else { 0 }),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.ids.len()
    }

    /// Appends `other`'s rows.
    pub(super) fn extend(&mut self, other: Columns) {
        self.ids.extend(other.ids);
        self.labels.extend(other.labels);
        self.inputs.extend(other.inputs);
        self.logits.extend(other.logits);
        self.index.extend(other.index);
        self.lse.extend(other.lse);
        self.label_logit.extend(other.label_logit);
        self.views.view.extend(other.views.view);
        self.views.shift_x.extend(other.views.shift_x);
        self.views.shift_y.extend(other.views.shift_y);
        self.views.crop.extend(other.views.crop);
        self.positions.extend(other.positions);
    }

    /// Values per row of each per-row vector: (inputs, logits, index, lse, views, label_logit, positions).
    fn widths(&self) -> [usize; 7] {
        let n = self.len().max(1);
        [
            self.inputs.len() / n,
            self.logits.len() / n,
            self.index.len() / n,
            self.lse.len() / n,
            self.views.view.len() / n,
            self.label_logit.len() / n,
            self.positions.len() / n,
        ]
    }

    /// Moves the rows from `at` on into a new `Columns` (the rows before stay, without reallocating).
    pub(super) fn split_off(&mut self, at: usize, m: &Manifest) -> Columns {
        let [wi, wl, wx, ws, wv, wz, wp] = self.widths();
        let mut tail = Columns::with_capacity(m, 0);
        tail.positions = self.positions.split_off(at * wp);
        tail.label_logit = self.label_logit.split_off(at * wz);
        tail.ids = self.ids.split_off(at);
        tail.labels = self.labels.split_off(at);
        tail.inputs = self.inputs.split_off(at * wi);
        tail.logits = self.logits.split_off(at * wl);
        tail.index = self.index.split_off(at * wx);
        tail.lse = self.lse.split_off(at * ws);
        tail.views.view = self.views.view.split_off(at * wv);
        tail.views.shift_x = self.views.shift_x.split_off(at * wv);
        tail.views.shift_y = self.views.shift_y.split_off(at * wv);
        tail.views.crop = self.views.crop.split_off(at * wv);
        tail
    }

    /// Drops, among the rows from `start` on, those `filter` does not keep (compacting in place).
    pub(super) fn retain_from(&mut self, start: usize, filter: &RowFilter) {
        if filter.keeps_all() {
            return;
        }
        let n = self.len();
        let wv = self.widths()[4];
        let view = |r: usize| if wv == 0 { 0 } else { self.views.view[r * wv] };
        let rows: Vec<usize> = (start..n).filter(|&r| filter.keeps(self.ids[r], self.labels[r], view(r))).collect();
        if rows.len() == n - start {
            return;
        }
        let [wi, wl, wx, ws, wv, wz, wp] = self.widths();
        fn compact<T: Copy>(v: &mut Vec<T>, width: usize, rows: &[usize], start: usize) {
            if width == 0 {
                return;
            }
            for (dst, &src) in (start..).zip(rows) {
                v.copy_within(src * width..(src + 1) * width, dst * width);
            }
            v.truncate((start + rows.len()) * width);
        }
        compact(&mut self.ids, 1, &rows, start);
        compact(&mut self.labels, 1, &rows, start);
        compact(&mut self.inputs, wi, &rows, start);
        compact(&mut self.logits, wl, &rows, start);
        compact(&mut self.index, wx, &rows, start);
        compact(&mut self.lse, ws, &rows, start);
        compact(&mut self.label_logit, wz, &rows, start);
        compact(&mut self.views.view, wv, &rows, start);
        compact(&mut self.views.shift_x, wv, &rows, start);
        compact(&mut self.views.shift_y, wv, &rows, start);
        compact(&mut self.views.crop, wv, &rows, start);
        compact(&mut self.positions, wp, &rows, start);
    }

    pub(super) fn read(&mut self, path: &Path, rb: &RecordBatch, m: &Manifest, first_row: u64) -> Result<()> {
        let col =
            |name: &str| rb.column_by_name(name).ok_or_else(|| Error::dataset(path, format!("no column '{name}'")));
        let id = id_values(path, col(columns::ID)?.as_ref(), first_row)?;
        self.ids.extend_from_slice(&id);
        let label = col(columns::LABEL)?
            .as_primitive_opt::<Int64Type>()
            .ok_or_else(|| Error::dataset(path, "column 'label' is not int64"))?;
        self.labels.extend((0..label.len()).map(|i| (!label.is_null(i)).then(|| label.value(i))));
        if let Some(v) = m.views.as_ref().filter(|v| v.crop.is_some()) {
            let (view, crops) = read_crops(path, rb)?;
            for (i, (&view, b)) in view.iter().zip(&crops).enumerate() {
                // A box is checked against the source image when it is rendered (joins); here, its form.
                if view >= v.count || (view == 0) != (b.w == 0) || (b.w == 0) != (b.h == 0) || (view == 0 && b.flip) {
                    return Err(Error::dataset(
                        path,
                        format!(
                            "columns 'view', 'crop_w', 'crop_h', row {}: view {view} with a {}x{} crop: view 0 has \
                             none, every other view one",
                            first_row + i as u64,
                            b.w,
                            b.h
                        ),
                    ));
                }
            }
            self.views.view.extend_from_slice(view);
            self.views.shift_x.extend(std::iter::repeat_n(0, view.len()));
            self.views.shift_y.extend(std::iter::repeat_n(0, view.len()));
            self.views.crop.extend(crops);
        } else if let Some(v) = &m.views {
            let (view, sx, sy) = read_views(path, rb)?;
            for (i, ((&view, &dx), &dy)) in view.iter().zip(sx).zip(sy).enumerate() {
                if view >= v.count || v.shift(id[i], view) != (dx, dy) {
                    return Err(Error::dataset(
                        path,
                        format!(
                            "columns 'view', 'shift_x', 'shift_y', row {}: view {view} shift ({dx}, {dy}) is not \
                             the one the manifest's views rule gives",
                            first_row + i as u64
                        ),
                    ));
                }
            }
            self.views.view.extend_from_slice(view);
            self.views.shift_x.extend_from_slice(sx);
            self.views.shift_y.extend_from_slice(sy);
            self.views.crop.extend(std::iter::repeat_n(crate::augment::CropBox::default(), view.len()));
        }
        let before = self.inputs.len();
        if m.input.stored {
            let input = list_values(path, rb, columns::INPUT, first_row)?;
            self.inputs.extend(
                numeric_to_f32(input.as_ref()).ok_or_else(|| Error::dataset(path, "column 'input' is not numeric"))?,
            );
        }
        if let Some(seq) = &m.sequence {
            let positions = values_of::<UInt32Type>(path, rb, columns::POSITION, "uint32")?;
            let labels = &self.labels[self.labels.len() - positions.len()..];
            let tokens = &self.inputs[before..];
            check_positions(path, seq, first_row, (&id, positions, labels), tokens)?;
            self.positions.extend_from_slice(positions);
        }
        let floats = |name: &str, width: usize| -> Result<Vec<f32>> {
            let v = list_values(path, rb, name, first_row)?;
            let v: Vec<f32> = if m.float16 {
                v.as_primitive_opt::<Float16Type>()
                    .ok_or_else(|| Error::dataset(path, format!("column '{name}' is not float16")))?
                    .values()
                    .iter()
                    .map(|h| h.to_f32())
                    .collect()
            } else {
                v.as_primitive_opt::<Float32Type>()
                    .ok_or_else(|| Error::dataset(path, format!("column '{name}' is not float32")))?
                    .values()
                    .to_vec()
            };
            if let Some(pos) = v.iter().position(|x| x.is_nan() || *x == f32::INFINITY) {
                return Err(Error::dataset(
                    path,
                    format!(
                        "column '{name}', row {}: value {} is {}",
                        first_row + (pos / width.max(1)) as u64,
                        pos % width.max(1),
                        v[pos]
                    ),
                ));
            }
            Ok(v)
        };
        let indices = |name: &str, width: usize| -> Result<Vec<u32>> {
            let v = list_values(path, rb, name, first_row)?;
            let v: Vec<u32> = match m.index_type() {
                arrow_schema::DataType::UInt16 => v
                    .as_primitive_opt::<UInt16Type>()
                    .ok_or_else(|| Error::dataset(path, format!("column '{name}' is not uint16")))?
                    .values()
                    .iter()
                    .map(|&c| u32::from(c))
                    .collect(),
                _ => v
                    .as_primitive_opt::<UInt32Type>()
                    .ok_or_else(|| Error::dataset(path, format!("column '{name}' is not uint32")))?
                    .values()
                    .to_vec(),
            };
            if let Some(pos) = v.iter().position(|&c| c as usize >= m.num_classes) {
                return Err(Error::dataset(
                    path,
                    format!(
                        "column '{name}', row {}: class {} is outside [0, {})",
                        first_row + (pos / width.max(1)) as u64,
                        v[pos],
                        m.num_classes
                    ),
                ));
            }
            Ok(v)
        };
        let at = |name: &str, i: usize, what: String| {
            Err(Error::dataset(path, format!("column '{name}', row {}: {what}", first_row + i as u64)))
        };
        match m.form {
            LabelForm::Dense => {
                let k = m.num_classes;
                let z = floats(columns::LOGITS, k)?;
                if let Some(i) = z.chunks_exact(k).position(|row| row.iter().all(|&v| v == f32::NEG_INFINITY)) {
                    return at(columns::LOGITS, i, "every logit is -inf (no class has any probability)".into());
                }
                self.logits.extend(z);
            }
            LabelForm::TopK { k } => {
                let index = indices(columns::TOPK_INDEX, k)?;
                let z = floats(columns::TOPK_LOGIT, k)?;
                let lse = col(columns::LOGSUMEXP_T)?
                    .as_primitive_opt::<Float64Type>()
                    .ok_or_else(|| Error::dataset(path, "column 'logsumexp_t' is not float64"))?;
                if let Some(i) = lse.values().iter().position(|v| !v.is_finite()) {
                    return at(columns::LOGSUMEXP_T, i, format!("{} is not finite", lse.value(i)));
                }
                // What the writer guarantees (SCHEMA.md): k distinct classes by descending logit, whose
                // probabilities exp(z / T - logsumexp_t) sum to at most 1 (the rest is the tail's).
                let t = f64::from(m.temperature);
                let slack = if m.float16 { 2e-3 } else { 1e-5 };
                let mut seen = vec![false; m.num_classes.min(1 << 20)];
                for (i, (idx, row)) in index.chunks_exact(k).zip(z.chunks_exact(k)).enumerate() {
                    if row.windows(2).any(|w| w[1] > w[0]) {
                        return at(columns::TOPK_LOGIT, i, "logits are not in descending order".into());
                    }
                    if let Some(c) = distinct(idx, &mut seen) {
                        return at(columns::TOPK_INDEX, i, format!("class {c} appears twice"));
                    }
                    let mass: f64 = row.iter().map(|&v| (f64::from(v) / t - lse.value(i)).exp()).sum();
                    if mass > 1.0 + slack {
                        return at(
                            columns::TOPK_LOGIT,
                            i,
                            format!(
                                "the top-k probabilities sum to {mass} (over 1): logsumexp_t {} is too small",
                                lse.value(i)
                            ),
                        );
                    }
                }
                if m.label_logit {
                    self.label_logit_column(path, rb, m, first_row, (&index, &z, lse.values()), k)?;
                }
                self.index.extend(index);
                self.logits.extend(z);
                self.lse.extend_from_slice(lse.values());
            }
            LabelForm::Sampled { k, .. } => {
                let index = indices(columns::SAMPLE_INDEX, k)?;
                if let Some(i) = index.chunks_exact(k).position(|row| row.windows(2).any(|w| w[1] < w[0])) {
                    return at(columns::SAMPLE_INDEX, i, "draws are not in ascending order".into());
                }
                self.index.extend(index);
            }
        }
        Ok(())
    }
}

impl Columns {
    /// Reads and checks the `label_logit` column of a top-k batch whose labels were just read (the
    /// batch's last `rows` labels) against its top-k values `(index, logit, logsumexp_t)`: null exactly
    /// where the label is; equal to the stored logit where the label is among the top k, else at most
    /// the k-th logit with the probability mass of the k classes and the label's still at most 1.
    fn label_logit_column(
        &mut self,
        path: &Path,
        rb: &RecordBatch,
        m: &Manifest,
        first_row: u64,
        (index, z, lse): (&[u32], &[f32], &[f64]),
        k: usize,
    ) -> Result<()> {
        let name = columns::LABEL_LOGIT;
        let col = rb.column_by_name(name).ok_or_else(|| Error::dataset(path, format!("no column '{name}'")))?;
        let values: Vec<f32> = if m.float16 {
            let a = col
                .as_primitive_opt::<Float16Type>()
                .ok_or_else(|| Error::dataset(path, format!("column '{name}' is not float16")))?;
            (0..a.len()).map(|i| if a.is_null(i) { f32::NAN } else { a.value(i).to_f32() }).collect()
        } else {
            let a = col
                .as_primitive_opt::<Float32Type>()
                .ok_or_else(|| Error::dataset(path, format!("column '{name}' is not float32")))?;
            (0..a.len()).map(|i| if a.is_null(i) { f32::NAN } else { a.value(i) }).collect()
        };
        let labels = &self.labels[self.labels.len() - values.len()..];
        let t = f64::from(m.temperature);
        let slack = if m.float16 { 2e-3 } else { 1e-5 };
        for (i, (&v, label)) in values.iter().zip(labels).enumerate() {
            let (idx, row) = (&index[i * k..(i + 1) * k], &z[i * k..(i + 1) * k]);
            let fail = |what: String| {
                Err(Error::dataset(path, format!("column '{name}', row {}: {what}", first_row + i as u64)))
            };
            let Some(label) = label.filter(|&l| usize::try_from(l).is_ok_and(|l| l < m.num_classes)) else {
                if !v.is_nan() {
                    return fail(format!("{v} for a row without a label"));
                }
                continue;
            };
            if !v.is_finite() && v != f32::NEG_INFINITY {
                return fail(format!("{v} for label {label}"));
            }
            match idx.iter().position(|&c| i64::from(c) == label) {
                Some(j) if row[j].to_bits() != v.to_bits() => {
                    return fail(format!("{v}, but label {label} is among the top k with logit {}", row[j]));
                }
                Some(_) => {}
                None => {
                    let mass: f64 = row.iter().chain([&v]).map(|&x| (f64::from(x) / t - lse[i]).exp()).sum();
                    if v > row[k - 1] || mass > 1.0 + slack {
                        return fail(format!(
                            "{v} for label {label}, outside the top k: it must be at most the k-th logit {} and \
                             leave the probabilities summing to at most 1 (they sum to {mass})",
                            row[k - 1]
                        ));
                    }
                }
            }
        }
        self.label_logit.extend(values);
        Ok(())
    }
}

/// What the writer guarantees of a sequence dataset's rows (SCHEMA.md, "Sequences"), checked on every
/// read of a record batch: positions inside the sequence, ascending within an id's rows; no stored token
/// is the pad id (masked positions are not stored, so an id's row count is its unmasked positions);
/// with `--targets next`, a label equal to the next stored position's token where that position follows.
fn check_positions(
    path: &Path,
    seq: &super::Sequence,
    first_row: u64,
    (ids, positions, labels): (&[u64], &[u32], &[Option<i64>]),
    tokens: &[f32],
) -> Result<()> {
    let at = |name: &str, i: usize, what: String| {
        Err(Error::dataset(path, format!("column '{name}', row {}: {what}", first_row + i as u64)))
    };
    for (i, &p) in positions.iter().enumerate() {
        if p as usize >= seq.length {
            return at(
                columns::POSITION,
                i,
                format!("position {p} is outside the sequence's {} positions", seq.length),
            );
        }
        if i > 0 && ids[i - 1] == ids[i] && positions[i - 1] >= p {
            return at(
                columns::POSITION,
                i,
                format!("position {p} follows position {} of the same id: positions must ascend", positions[i - 1]),
            );
        }
        if let (Some(pad), Some(&t)) = (seq.pad_id, tokens.get(i)) {
            if f64::from(t) == pad as f64 {
                return at(columns::INPUT, i, format!("token {t} is the pad id: masked positions are not stored"));
            }
        }
        if seq.targets == super::Targets::Next
            && i + 1 < positions.len()
            && ids[i + 1] == ids[i]
            && positions[i + 1] == p + 1
        {
            if let (Some(&next), Some(label)) = (tokens.get(i + 1), labels[i]) {
                if label as f64 != f64::from(next) {
                    return at(columns::LABEL, i, format!("label {label} is not the next position's token {next}"));
                }
            }
        }
    }
    Ok(())
}

/// The first class that appears twice in `idx` (classes below `seen.len()` use `seen` as scratch,
/// left all false again; larger ones are compared pairwise).
fn distinct(idx: &[u32], seen: &mut [bool]) -> Option<u32> {
    let mut dup = None;
    for &c in idx {
        match seen.get_mut(c as usize) {
            Some(s) if *s => {
                dup = Some(c);
                break;
            }
            Some(s) => *s = true,
            None => {}
        }
    }
    for &c in idx {
        if let Some(s) = seen.get_mut(c as usize) {
            *s = false;
        }
    }
    if dup.is_some() {
        return dup;
    }
    let large: Vec<u32> = idx.iter().copied().filter(|&c| c as usize >= seen.len()).collect();
    (0..large.len()).find_map(|i| large[i + 1..].contains(&large[i]).then_some(large[i]))
}

/// The `id` column's values: int64 (schema 2) or uint64 (1.x), never null or negative; errors name the
/// file and the row (`first_row` is the batch's first row in its part).
pub(crate) fn id_values(path: &Path, col: &dyn Array, first_row: u64) -> Result<Vec<u64>> {
    if col.null_count() > 0 {
        let row = (0..col.len()).find(|&i| col.is_null(i)).unwrap_or(0) as u64 + first_row;
        return Err(Error::dataset(path, format!("column 'id', row {row}: id is null")));
    }
    if let Some(a) = col.as_primitive_opt::<UInt64Type>() {
        return Ok(a.values().to_vec());
    }
    let a = col
        .as_primitive_opt::<Int64Type>()
        .ok_or_else(|| Error::dataset(path, format!("column 'id' is {}, not int64", col.data_type())))?;
    a.values()
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            u64::try_from(v).map_err(|_| {
                Error::dataset(path, format!("column 'id', row {}: id {v} is negative", first_row + i as u64))
            })
        })
        .collect()
}

/// The values of the primitive column `name` (Arrow type `T`, named `what` in errors) of a record batch.
fn values_of<'a, T: arrow_array::ArrowPrimitiveType>(
    path: &Path,
    rb: &'a RecordBatch,
    name: &str,
    what: &str,
) -> Result<&'a [T::Native]> {
    let c = rb.column_by_name(name).ok_or_else(|| Error::dataset(path, format!("no column '{name}'")))?;
    Ok(c.as_primitive_opt::<T>()
        .ok_or_else(|| Error::dataset(path, format!("column '{name}' is not {what}")))?
        .values()
        .as_ref())
}

/// The `view` column and the crop boxes (`crop_x`, `crop_y`, `crop_w`, `crop_h`, `flip`) of a record batch.
fn read_crops<'a>(path: &Path, rb: &'a RecordBatch) -> Result<(&'a [u16], Vec<crate::augment::CropBox>)> {
    use arrow_array::types::UInt32Type;
    let view = values_of::<UInt16Type>(path, rb, columns::VIEW, "uint16")?;
    let u32s = |name: &str| values_of::<UInt32Type>(path, rb, name, "uint32");
    let (x, y, w, h) = (u32s(columns::CROP_X)?, u32s(columns::CROP_Y)?, u32s(columns::CROP_W)?, u32s(columns::CROP_H)?);
    let flip = rb
        .column_by_name(columns::FLIP)
        .ok_or_else(|| Error::dataset(path, "no column 'flip'"))?
        .as_boolean_opt()
        .ok_or_else(|| Error::dataset(path, "column 'flip' is not bool"))?;
    if flip.null_count() > 0 {
        return Err(Error::dataset(path, "column 'flip' has nulls"));
    }
    let boxes = (0..view.len())
        .map(|i| crate::augment::CropBox { x: x[i], y: y[i], w: w[i], h: h[i], flip: flip.value(i) })
        .collect();
    Ok((view, boxes))
}

/// The `view`, `shift_x` and `shift_y` columns of a record batch.
fn read_views<'a>(path: &Path, rb: &'a RecordBatch) -> Result<(&'a [u16], &'a [i16], &'a [i16])> {
    let shift = |name: &str| values_of::<Int16Type>(path, rb, name, "int16");
    Ok((
        values_of::<UInt16Type>(path, rb, columns::VIEW, "uint16")?,
        shift(columns::SHIFT_X)?,
        shift(columns::SHIFT_Y)?,
    ))
}
