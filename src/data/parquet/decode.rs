//! Decoding a Parquet record batch into a [`Batch`]: ids, labels and the input values, each checked
//! (nulls, widths, integer ranges, non-finite values) with the file, column and row in the error.

use std::path::Path;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, Float32Array, GenericListArray, OffsetSizeTrait, RecordBatch};
use arrow_schema::DataType;

use super::{InputLayout, ParquetSource};
use crate::data::numeric::{integers_to_i128, numeric_to_f32};
use crate::data::{nonfinite_rows, Batch};
use crate::error::{Error, Result};

impl ParquetSource {
    /// The rows of `batch`, the `first_row`-th of `file` and the `first_in_source`-th of the source.
    pub(super) fn convert(
        &self,
        file: &Path,
        batch: &RecordBatch,
        first_row: u64,
        first_in_source: u64,
    ) -> Result<Batch> {
        let n = batch.num_rows();
        let row_err = |column: &str, i: usize, what: &str| {
            Error::data(file, format!("column '{column}', row {}: {what}", first_row + i as u64))
        };
        let col =
            |name: &str| batch.column_by_name(name).ok_or_else(|| Error::data(file, format!("no column '{name}'")));

        let ids = match &self.id_column {
            Some(c) => {
                let a = col(c)?;
                let v =
                    integers_to_i128(a).ok_or_else(|| Error::data(file, format!("id column '{c}' is not integer")))?;
                v.into_iter()
                    .enumerate()
                    .map(|(i, x)| match x {
                        None => Err(row_err(c, i, "id is null")),
                        Some(x) if x < 0 || x > u64::MAX as i128 => Err(row_err(c, i, &format!("id {x} is not a u64"))),
                        Some(x) => Ok(x as u64),
                    })
                    .collect::<Result<Vec<_>>>()?
            }
            None => (first_in_source..first_in_source + n as u64).collect(),
        };
        let mut token_labels = Vec::new();
        let labels = match &self.label_column {
            Some(c)
                if matches!(
                    col(c)?.data_type(),
                    DataType::FixedSizeList(..) | DataType::List(_) | DataType::LargeList(_)
                ) =>
            {
                let a = col(c)?;
                let (values, w) = list_values(a, None, n).map_err(|(i, what)| {
                    row_err(c, i, &what.replace("input row", "label list").replace("input value", "label"))
                })?;
                let v = integers_to_i128(&values)
                    .ok_or_else(|| Error::data(file, format!("label column '{c}' is not a list of integers")))?;
                token_labels = v
                    .into_iter()
                    .enumerate()
                    .map(|(j, x)| match x {
                        Some(x) if x > i64::MAX as i128 => {
                            Err(row_err(c, j / w.max(1), &format!("label {x} does not fit in int64")))
                        }
                        x => Ok(x.filter(|&x| x >= 0).map(|x| x as i64)),
                    })
                    .collect::<Result<Vec<_>>>()?;
                vec![None; n]
            }
            Some(c) => {
                let a = col(c)?;
                let v = integers_to_i128(a)
                    .ok_or_else(|| Error::data(file, format!("label column '{c}' is not integer")))?;
                v.into_iter()
                    .enumerate()
                    .map(|(i, x)| match x {
                        Some(x) if x < i64::MIN as i128 || x > i64::MAX as i128 => {
                            Err(row_err(c, i, &format!("label {x} does not fit in int64")))
                        }
                        x => Ok(x.map(|x| x as i64)),
                    })
                    .collect::<Result<Vec<_>>>()?
            }
            None => vec![None; n],
        };

        let (input, width, mut nonfinite) = self.input_values(&self.layout, file, batch, first_row)?;
        let mut extra = Vec::with_capacity(self.extra.len());
        for layout in &self.extra {
            let (values, width, bad) = self.input_values(layout, file, batch, first_row)?;
            nonfinite.extend(bad);
            let column = match layout {
                InputLayout::List { column, .. } => column.clone(),
                InputLayout::Scalars { columns } => columns.join(","),
            };
            extra.push(crate::data::ExtraInput { column, values, width });
        }
        nonfinite.sort_unstable();
        nonfinite.dedup();
        Ok(Batch {
            file: file.to_path_buf(),
            first_row,
            first_source_row: first_in_source,
            ids,
            labels,
            input,
            width,
            nonfinite,
            extra,
            paths: Vec::new(),
            token_labels,
        })
    }

    /// One input's values (`rows * width`, row-major), its width, and the rows holding NaN or infinity
    /// (with --skip-nonfinite; without, such a row is an error).
    fn input_values(
        &self,
        layout: &InputLayout,
        file: &Path,
        batch: &RecordBatch,
        first_row: u64,
    ) -> Result<(ArrayRef, usize, Vec<usize>)> {
        let n = batch.num_rows();
        let row_err = |column: &str, i: usize, what: &str| {
            Error::data(file, format!("column '{column}', row {}: {what}", first_row + i as u64))
        };
        let col =
            |name: &str| batch.column_by_name(name).ok_or_else(|| Error::data(file, format!("no column '{name}'")));
        let mut nonfinite = Vec::new();
        let (input, width) = match layout {
            InputLayout::List { column, width, element } => {
                let a = col(column)?;
                let (values, width) = list_values(a, *width, n).map_err(|(i, what)| row_err(column, i, &what))?;
                if element.is_float() {
                    let flat = numeric_to_f32(values.as_ref()).unwrap_or_default();
                    nonfinite = nonfinite_rows(&flat, width, self.skip_nonfinite).map_err(|(i, j, v)| {
                        row_err(
                            column,
                            i,
                            &format!("input value {j} of the row is {v} (--skip-nonfinite skips such rows)"),
                        )
                    })?;
                }
                (values, width)
            }
            InputLayout::Scalars { columns } => {
                let width = columns.len();
                let mut flat = vec![0f32; n * width];
                for (j, name) in columns.iter().enumerate() {
                    let a = col(name)?;
                    if let Some(i) = (0..n).find(|&i| a.is_null(i)) {
                        return Err(row_err(name, i, "value is null"));
                    }
                    let v = numeric_to_f32(a)
                        .ok_or_else(|| Error::data(file, format!("column '{name}' is not numeric")))?;
                    for (i, x) in v.into_iter().enumerate() {
                        if !x.is_finite() {
                            if !self.skip_nonfinite {
                                return Err(row_err(
                                    name,
                                    i,
                                    &format!("value is {x} (--skip-nonfinite skips such rows)"),
                                ));
                            }
                            nonfinite.push(i);
                        }
                        flat[i * width + j] = x;
                    }
                }
                (Arc::new(Float32Array::from(flat)) as ArrayRef, width)
            }
        };
        Ok((input, width, nonfinite))
    }
}

fn list_values(
    a: &ArrayRef,
    width: Option<usize>,
    n: usize,
) -> std::result::Result<(ArrayRef, usize), (usize, String)> {
    if let Some(i) = (0..n).find(|&i| a.is_null(i)) {
        return Err((i, "input row is null".into()));
    }
    let (values, w) = match a.data_type() {
        DataType::FixedSizeList(_, w) => {
            let l = a.as_fixed_size_list();
            let w = *w as usize;
            (l.values().slice(l.value_offset_at(0), n * w), w)
        }
        DataType::List(_) => variable_rows(a.as_list::<i32>(), width, n)?,
        DataType::LargeList(_) => variable_rows(a.as_list::<i64>(), width, n)?,
        dt => return Err((0, format!("unexpected type {dt}"))),
    };
    if values.null_count() > 0 {
        let pos = (0..values.len()).find(|&p| values.is_null(p)).unwrap_or(0);
        return Err((pos / w.max(1), format!("input value {} of the row is null", pos % w.max(1))));
    }
    Ok((values, w))
}

/// The values of a list or large list whose `n` rows must all have `width` values (`None`: the first
/// row's count); the first row that differs on error.
fn variable_rows<O: OffsetSizeTrait>(
    l: &GenericListArray<O>,
    width: Option<usize>,
    n: usize,
) -> std::result::Result<(ArrayRef, usize), (usize, String)> {
    let offs: Vec<usize> = l.value_offsets().iter().map(|o| o.as_usize()).collect();
    let w = width.unwrap_or_else(|| if n > 0 { offs[1] - offs[0] } else { 0 });
    if let Some(i) = (0..n).find(|&i| offs[i + 1] - offs[i] != w) {
        return Err((i, format!("row has {} values, earlier rows have {w}", offs[i + 1] - offs[i])));
    }
    Ok((l.values().slice(offs[0], n * w), w))
}
