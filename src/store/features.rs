//! The teacher's stored features (`feature.NAME` columns, `precompute --features`) as a table keyed by
//! row id and view, for the feature- and relation-based losses: read once, checked finite, and looked
//! up by the rows of each window whatever order or split they come in.

use std::collections::HashMap;
use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float16Type, Float32Type, UInt16Type};
use arrow_array::Array;
use ndarray::Array2;

use super::{columns, SoftLabels};
use crate::error::{Error, Result};

/// One stored feature of every row: `values[index[(id, view)]]`.
#[derive(Debug, Clone)]
pub struct FeatureTable {
    /// The feature's name in the teacher (the column is `feature.` and the name).
    pub name: String,
    /// Values per row.
    pub width: usize,
    /// A row's shape as the teacher computed it, before pooling or projection.
    pub shape: Vec<usize>,
    /// How it was pooled.
    pub pool: crate::teacher::FeaturePool,
    /// Whether it was randomly projected (`--feature-dim`).
    pub projected: bool,
    /// `[rows, width]`.
    pub values: Array2<f32>,
    index: HashMap<(u64, u16), u32>,
}

impl FeatureTable {
    /// The row of `(id, view)`, if the dataset has it.
    pub fn row(&self, id: u64, view: u16) -> Option<usize> {
        self.index.get(&(id, view)).map(|&r| r as usize)
    }

    /// Bytes the table holds.
    pub fn bytes(&self) -> usize {
        self.values.len() * 4 + self.index.len() * 24
    }
}

/// The values of the fixed-size list column `name` (`width` a row) of float32 or float16, as f32.
pub(crate) fn float_list(path: &Path, rb: &arrow_array::RecordBatch, name: &str, width: usize) -> Result<Vec<f32>> {
    let col = rb.column_by_name(name).ok_or_else(|| Error::dataset(path, format!("no column '{name}'")))?;
    let list = col
        .as_fixed_size_list_opt()
        .ok_or_else(|| Error::dataset(path, format!("column '{name}' is not a fixed-size list")))?;
    if list.null_count() > 0 {
        return Err(Error::dataset(path, format!("column '{name}': a row is null")));
    }
    let values = list.values().slice(list.value_offset_at(0), list.len() * width);
    match (values.as_primitive_opt::<Float32Type>(), values.as_primitive_opt::<Float16Type>()) {
        (Some(v), _) => Ok(v.values().to_vec()),
        (_, Some(v)) => Ok(v.values().iter().map(|h| h.to_f32()).collect()),
        _ => Err(Error::dataset(path, format!("column '{name}' is not float32 or float16"))),
    }
}

impl SoftLabels {
    /// Reads the stored feature `name` of every row (one pass over its column, the ids and views),
    /// refusing a dataset that did not store it (naming the ones it did) and non-finite values.
    pub fn feature_table(&self, name: &str) -> Result<FeatureTable> {
        let m = self.manifest();
        let Some(info) = m.features.iter().find(|f| f.name == name || f.column == name) else {
            let stored: Vec<&str> = m.features.iter().map(|f| f.name.as_str()).collect();
            return Err(Error::dataset(
                self.dir(),
                if stored.is_empty() {
                    format!(
                        "stores no teacher features, so '{name}' cannot be used: make the labels with \
                         `precompute --features {name}` (`softlabel inspect-teacher` lists the model's values)"
                    )
                } else {
                    format!("stores no feature '{name}'; it stores {}", stored.join(", "))
                },
            ));
        };
        let width = info.width;
        let mut names = vec![columns::ID];
        if m.views.is_some() {
            names.push(columns::VIEW);
        }
        names.push(info.column.as_str());
        let mut values = Vec::with_capacity(m.rows.min(1 << 24) as usize * width);
        let mut index = HashMap::with_capacity(m.rows.min(1 << 24) as usize);
        for part in &m.parts {
            let path = self.dir().join(&part.file);
            let mut first_row = 0u64;
            for rb in self.projected_reader(&path, &names)? {
                let rb =
                    rb.map_err(|e| Error::dataset(&path, format!("cannot decode rows after row {first_row}: {e}")))?;
                let ids = super::decode::id_values(&path, rb.column(0).as_ref(), first_row)?;
                let views: Vec<u16> = match m.views {
                    Some(_) => rb
                        .column(1)
                        .as_primitive_opt::<UInt16Type>()
                        .ok_or_else(|| Error::dataset(&path, "column 'view' is not uint16"))?
                        .values()
                        .to_vec(),
                    None => vec![0; ids.len()],
                };
                let v = float_list(&path, &rb, &info.column, width)?;
                if let Some(i) = v.iter().position(|x| !x.is_finite()) {
                    return Err(Error::dataset(
                        &path,
                        format!(
                            "column '{}', row {}: value {} is {}",
                            info.column,
                            first_row + (i / width.max(1)) as u64,
                            i % width.max(1),
                            v[i]
                        ),
                    ));
                }
                for (&id, &view) in ids.iter().zip(&views) {
                    index.insert((id, view), index.len() as u32);
                }
                values.extend_from_slice(&v);
                first_row += rb.num_rows() as u64;
            }
        }
        let rows = index.len();
        let values = Array2::from_shape_vec((rows, width), values).map_err(|e| Error::Internal(e.to_string()))?;
        Ok(FeatureTable {
            name: info.name.clone(),
            width,
            shape: info.shape.clone(),
            pool: info.pool,
            projected: info.projection_seed.is_some(),
            values,
            index,
        })
    }
}
